"""Training batches made on the device from images kept there.

Every image is mapped to the model's input once, at the start, by the plugin's own input
path (``inference.FrameInput``: intensity rule, channels, normalisation), and kept on
the training device as float16 with its mask:

- "resize": resized to the model's input size, (N, C, h, w); a batch is a gather.
- "tile": at native resolution, one (C, H, W) tensor per image; a batch is random crops
  (zero padding, the mean colour, where an image is smaller than the crop).

Flips, 90-degree turns and, when asked, random zoom, rotation, shift, colour jitter, tone
curve and blur (one affine resampling, one gain/offset, one gamma and one Gaussian
kernel per sample) are applied to the whole batch
with device-side choices, so a generalist model sees the scale and colour spread of
other sources without a host round trip. The random draws of a whole period are
computed on the host (``Schedule``) and copied to the device once per period, so making
a batch never waits for the GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..config import InputConfig
from ..data.preprocess import MIN_IMAGE_STD
from ..inference import FrameInput, resize_mask
from .schedule import Schedule

logger = logging.getLogger(__name__)
STORE_DTYPE = torch.float16  # mapped inputs: 11-bit mantissa, finer than an 8-bit image


DRAW_COLUMNS = 16  # uniforms per sample: see Schedule.draws and _augment


@dataclass
class Augment:
    """Augmentation of the training batches.

    Attributes:
        hflip, vflip: flip probabilities.
        rot90: random multiples of 90 degrees.
        zoom: zoom factor drawn log-uniformly in [1 / (1 + zoom), 1 + zoom]; a zoomed-in
            view is shifted at random within the image, a zoomed-out one is padded with
            the mean colour.
        rotate: rotation angle drawn uniformly in [-rotate, rotate] degrees.
        colour: strength s of colour jitter: contrast x (1 +- s), brightness +- s / 2 of
            the intensity range, each channel's gain x (1 +- s / 2); intensities stay in
            the range a real image can have.
        tone: a gamma curve on [0, 1] intensities, the exponent drawn log-uniformly in
            [1 / (1 + tone), 1 + tone] (another scanner's gain curve).
        blur: a Gaussian blur of standard deviation drawn uniformly in [0, blur] pixels of
            the model input (a softer scanner or a lower resolution).
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rot90: bool = False
    zoom: float = 0.0
    rotate: float = 0.0
    colour: float = 0.0
    tone: float = 0.0
    blur: float = 0.0

    @classmethod
    def of(cls, config) -> Augment:
        """The augmentation that ``config`` (a TrainConfig) asks for, field by field."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


class TrainingImages:
    """Mapped training images and masks on ``store``, batches on ``device``.

    Args:
        items: samples with ``image`` ((H, W[, C]) array) and ``mask`` ((H, W) bool).
        channels: the model's input channels.
        input_config: the model's input size and normalisation.
        mode: "resize" or "tile".
        device: where batches are made (the training device).
        store: where the mapped images are kept (default ``device``).
    """

    def __init__(
        self,
        items: Sequence,
        channels: int,
        input_config: InputConfig,
        mode: str,
        device: torch.device,
        store: torch.device | None = None,
    ):
        self.mode, self.device = mode, device
        self.size = tuple(input_config.size)
        # (1, C, 1, 1) normalisation of the model input, for colour jitter in intensity units
        self.mean = torch.tensor(input_config.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(input_config.std, device=device).view(1, -1, 1, 1)
        store = store or device
        # images are stored by the fixed mean/std; per-image standardisation (its own
        # stats) comes last, after the augmentation, so every sample is standardised
        self.per_image_norm = input_config.per_image_norm
        fixed = replace(input_config, per_image_norm=False)
        frames = [FrameInput(item.image, channels, fixed) for item in items]
        masks = [torch.from_numpy(np.asarray(item.mask, dtype=bool))[None] for item in items]
        if mode == "resize":  # (N, C, h, w), (N, 1, h, w)
            self.images = torch.cat([f.resized(store).to(STORE_DTYPE) for f in frames])
            self.masks = torch.cat([resize_mask(m[None].to(store), self.size) for m in masks])
        else:  # lists of (C, H, W), (1, H, W)
            self.images = [_full_frame(f).to(store, STORE_DTYPE) for f in frames]
            self.masks = [m.to(store) for m in masks]

    @staticmethod
    def nbytes(items: Sequence, channels: int, input_config: InputConfig, mode: str) -> int:
        """Bytes the mapped images of ``items`` will take."""
        if mode == "resize":
            h, w = input_config.size
            return len(items) * (channels * 2 + 1) * h * w
        return sum(np.asarray(i.mask).size * (channels * 2 + 1) for i in items)

    def batches(
        self, schedule: Schedule, start: int, end: int, rank: int, world: int, augment: Augment
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """(x, y, global batch size) for steps ``start`` .. ``end - 1`` of this rank.

        x: normalised (n, C, h, w) float32; y: (n, 1, h, w) float32 0/1.
        """
        plan = [schedule.indices(s) for s in range(start, end)]
        draws = [schedule.draws(s, len(ix)) for s, ix in zip(range(start, end), plan, strict=True)]
        mine = slice(rank, None, world)
        counts = [len(ix[mine]) for ix in plan]
        flat_ix = np.concatenate([np.asarray(ix[mine], dtype=np.int64) for ix in plan])
        flat_draws = np.concatenate([d[mine] for d in draws]).astype(np.float32)  # (n, 16)
        ix_dev = torch.from_numpy(flat_ix).to(self.device)  # one copy per period
        draws_dev = torch.from_numpy(flat_draws).to(self.device)
        offset = 0
        for count, ix in zip(counts, plan, strict=True):
            rows = slice(offset, offset + count)
            offset += count
            x, y = self._make(flat_ix[rows], flat_draws[rows], ix_dev[rows], draws_dev[rows])
            yield (*self._augment(x, y, draws_dev[rows], augment), len(ix))

    def batch(self, indices: Sequence[int], draws: np.ndarray, augment: Augment):
        """(x, y) of the samples ``indices`` with the (n, k) uniforms ``draws``.

        Columns of ``draws``: horizontal flip, vertical flip, turn, crop y, crop x, then
        (when ``augment`` zooms, rotates or jitters colours) zoom, angle, shift x, shift
        y, contrast, brightness, three channel gains, tone and blur.
        """
        ix, draws = np.asarray(indices, dtype=np.int64), np.asarray(draws, dtype=np.float32)
        draws_dev = torch.from_numpy(draws).to(self.device)
        x, y = self._make(ix, draws, torch.from_numpy(ix).to(self.device), draws_dev)
        return self._augment(x, y, draws_dev, augment)

    def _augment(self, x, y, draws, augment: Augment):
        x, y = _flips_and_turns(x, y, draws, augment)
        if augment.zoom or augment.rotate:
            x, y = _warp(x, y, draws[:, 5:9], augment)
        if augment.colour:
            x = _jitter(x, draws[:, 9:14], augment.colour, self.mean, self.std)
        if augment.tone:
            x = _tone(x, draws[:, 14], augment.tone, self.mean, self.std)
        if augment.blur:
            x = _blur(x, draws[:, 15], augment.blur)
        if self.per_image_norm:
            x = standardise(x, self.std)
        return x.contiguous(), y.contiguous()

    def _make(self, ix, draws, ix_dev, draws_dev) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "resize":
            return self._gather(ix_dev)
        return self._crops(ix, draws)

    def _gather(self, ix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ix = ix.to(self.images.device)
        x = self.images.index_select(0, ix).to(self.device, torch.float32, non_blocking=True)
        y = self.masks.index_select(0, ix).to(self.device, torch.float32, non_blocking=True)
        return x, y

    def _crops(self, ix: np.ndarray, draws: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.size
        xs, ys = [], []
        for i, (uy, ux) in zip(ix, draws[:, 3:5], strict=True):
            img, msk = self.images[i], self.masks[i]
            H, W = img.shape[-2:]
            y0, x0 = int(uy * (max(H - h, 0) + 1)), int(ux * (max(W - w, 0) + 1))
            pad = (0, max(w - W, 0), 0, max(h - H, 0))  # zeros: the mean colour
            xs.append(F.pad(img[:, y0 : y0 + h, x0 : x0 + w], pad))
            ys.append(F.pad(msk[:, y0 : y0 + h, x0 : x0 + w], pad))
        x = torch.stack(xs).to(self.device, torch.float32, non_blocking=True)
        y = torch.stack(ys).to(self.device, torch.float32, non_blocking=True)
        return x, y


def standardise(x: torch.Tensor, fixed_std: torch.Tensor) -> torch.Tensor:
    """Each sample's channels of (n, C, h, w) inputs normalised by the fixed mean and
    ``fixed_std`` ((1, C, 1, 1)) brought to mean 0 and std 1: the input inference makes
    with ``per_image_norm`` (the fixed map is affine per channel, so this undoes it; the
    std floor is ``preprocess.channel_stats``'s in [0, 1] units)."""
    mean = x.mean(dim=(2, 3), keepdim=True)  # (n, C, 1, 1)
    std = x.std(dim=(2, 3), keepdim=True, correction=0)
    return (x - mean) / torch.maximum(std, MIN_IMAGE_STD / fixed_std)


def _full_frame(frame: FrameInput) -> torch.Tensor:
    """The whole frame as a normalised (C, H, W) tensor (the plugin's mapping)."""
    H, W = frame.hw
    return torch.from_numpy(frame.crop(0, 0, H, W))


def _flips_and_turns(x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor, augment: Augment):
    """Per-sample flips and 90-degree turns chosen by ``draws`` (n, 5) uniforms.

    Columns: horizontal flip, vertical flip, turn. A square batch turns by 0-3 quarter
    turns, a non-square one by 0 or 2 (its shape must not change).
    """
    n = x.shape[0]
    for dim, column, p in ((-1, 0, augment.hflip), (-2, 1, augment.vflip)):
        if p > 0:
            chosen = (draws[:, column] < p).view(n, 1, 1, 1)
            x = torch.where(chosen, x.flip(dim), x)
            y = torch.where(chosen, y.flip(dim), y)
    if augment.rot90:
        square = x.shape[-1] == x.shape[-2]
        turns = (draws[:, 2] * (4 if square else 2)).long() * (1 if square else 2)  # (n,)
        for k in (1, 2, 3) if square else (2,):
            chosen = (turns == k).view(n, 1, 1, 1)
            x = torch.where(chosen, torch.rot90(x, k, (-2, -1)), x)
            y = torch.where(chosen, torch.rot90(y, k, (-2, -1)), y)
    return x, y


def _warp(x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, augment: Augment):
    """Zoom, rotate and shift each sample by one bilinear resampling.

    ``u``: (n, 4) uniforms (zoom, angle, shift x, shift y). Outside the source image
    the input is 0 (the mean colour after normalisation) and the mask background.
    """
    n, _, h, w = x.shape
    zoom = torch.exp((2 * u[:, 0] - 1) * math.log1p(augment.zoom))  # (n,)
    angle = (2 * u[:, 1] - 1) * math.radians(augment.rotate)
    room = (1 - 1 / zoom).clamp(min=0)  # a zoomed-in view may move this far and stay inside
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # output -> source in [-1, 1] coordinates; h / w keeps a rotation rigid on a
    # non-square image (the coordinates are normalised per axis)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, (2 * u[:, 2] - 1) * room], 1),
            torch.stack([sin * w / h, cos, (2 * u[:, 3] - 1) * room], 1),
        ],
        1,
    )  # (n, 2, 3)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x, (y > 0.5).to(y.dtype)


def _jitter(x, u, strength: float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Contrast, brightness and channel gains of each normalised sample.

    ``u``: (n, 5) uniforms (contrast, brightness, gains of up to three channels). The
    contrast turns about the normalisation mean; the result is clipped to the
    normalised image of [0, 1] intensities.
    """
    n, c = x.shape[:2]
    contrast = 1 + strength * (2 * u[:, 0] - 1)  # (n,)
    brightness = strength / 2 * (2 * u[:, 1] - 1)  # in intensity units, (n,)
    gains = 1 + strength / 2 * (2 * u[:, 2 : 2 + c] - 1)  # (n, C)
    x = x * (contrast[:, None] * gains).view(n, c, 1, 1) + brightness.view(n, 1, 1, 1) / std
    return torch.maximum(torch.minimum(x, (1 - mean) / std), -mean / std)


def _tone(x, u, tone: float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A gamma curve per normalised sample: [0, 1] intensities to the power
    exp((2u - 1) log(1 + tone)); ``u``: (n,) uniforms (0.5: unchanged)."""
    n = x.shape[0]
    power = torch.exp((2 * u - 1) * math.log1p(tone)).view(n, 1, 1, 1)
    unit = (x * std + mean).clamp(0, 1)  # (n, C, h, w) intensities
    return (unit**power - mean) / std


def _blur(x: torch.Tensor, u: torch.Tensor, blur: float) -> torch.Tensor:
    """A Gaussian blur per sample, standard deviation ``u * blur`` pixels (``u``: (n,)
    uniforms), by two 1-D convolutions with one kernel per sample; borders reflect."""
    n, c, h, w = x.shape
    radius = min(math.ceil(3 * blur), (min(h, w) - 1) // 2)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # (k,)
    sigma = (u * blur).clamp(min=1e-3).view(n, 1)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)  # (n, k); sigma 1e-3: a delta
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n * C, k)
    flat = F.pad(x.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)  # along W
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)  # along H
    return flat.view(n, c, h, w)
