"""Segmenting images with a loaded checkpoint: resize or sliding-window tiles, 2-D or stacks.

The computation is a plain generator (:func:`segment`) that yields ``(done, total)``
progress and returns a :class:`SegmentationResult`; the napari widget runs it in a
worker thread, the batch CLI and tests drain it with :func:`run_to_completion`.

Inputs are mapped to the checkpoint's domain exactly as in training
(:mod:`napari_tmunet.data.preprocess`): intensities to [0, 1], grey replicated or alpha
dropped to the model's channel count, then normalised with the checkpoint's mean/std.
No Qt and no napari here.

The building blocks are shared with the evaluation (``napari_tmunet.evaluation.evaluate``),
so that a validation score and the plugin's output are the same computation:
:class:`FrameInput` (one frame mapped to the model's domain), :func:`resize`,
:func:`forward_logits`, :func:`foreground_probability` and :func:`sliding_window`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import fast_forward
from .checkpoint import Checkpoint
from .config import InputConfig, checked_min_confidence
from .data.images import MIN_SIDE
from .data.preprocess import (
    channel_stats,
    describe_mapping,
    has_nominal_range,
    normalize,
    robust_range,
    to_channels,
    to_unit_float,
)
from .options import DEVICES, MODES, resolve_device  # noqa: F401  (their one home)
from .postprocess import drop_unsure, split_instances  # noqa: F401  (split: inference's)
from .tile_grid import TILE_OVERLAP, tile_count
from .tiling import (  # noqa: F401  (tile mode's home; names kept importable from here)
    BLEND_WEIGHTS,
    MAX_OVERLAP,
    batch_size_for,
    fits_on,
    resize_window,
    sliding_window,
    tile_starts,
)

EXPECTED_SHAPES = (
    "a 2-D image (H, W), an RGB(A) image (H, W, 3|4), a stack of 2-D frames (Z, H, W) "
    "or a stack of RGB(A) frames (Z, H, W, 3|4)"
)

Progress = Callable[[int, int], None]
PINNED_UPLOAD_BYTES = 64 * 2**20  # frames up to this go to a GPU without a host wait
# pixels: resize mode maps a larger frame to the model's input a band of rows at a time
# (bench/large_frames.py, peak memory of a run: 4976 x 4232 photo 1.55 GiB whole, 0.84 in
# bands; 8192 x 8192: 4.29 and 1.53 GiB)
MAPPED_BAND_PIXELS = 1 << 22
# pixels: the per-image mean and std (``InputConfig.per_image_norm``) come from a regular
# subsample of about this many (a 1024 x 1024 view of any photo: a small error, a fast read)
STATS_PIXELS = 1 << 20


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes:
        labels: (H, W) or (Z, H, W); uint8 0/1 for a binary mask, int32 instance ids
            (unique across a stack) when ``instances`` was asked for.
        probability: float32 foreground probability, same shape as ``labels``; None for
            an image segmented in bands (over the pixel budget, see :func:`segment`).
        mapping: how raw intensities were mapped to the model's input, in words.
        threshold, mode, instances, min_confidence: the options used.
        windows: the windows each frame went through the model in: its tiles, or in
            resize mode 1 (resized whole), more for an elongated frame.
    """

    labels: np.ndarray
    probability: np.ndarray | None
    mapping: str
    threshold: float
    mode: str
    instances: bool
    min_confidence: float = 0.0
    windows: int = 1


def split_frames(image: np.ndarray, rgb: bool | None = None) -> tuple[bool, bool]:
    """Interpret an image's shape: returns ``(is_stack, has_channels)``.

    Args:
        image: array of one of the :data:`EXPECTED_SHAPES`.
        rgb: whether the last axis holds colour channels (napari's ``layer.rgb``); None
            guesses from the shape: a last axis of 3 or 4 after at least two others.

    Raises:
        ValueError: naming the expected shapes.
    """
    shape = tuple(np.shape(image))
    if rgb is None:
        rgb = len(shape) in (3, 4) and shape[-1] in (3, 4)
    spatial = len(shape) - (1 if rgb else 0)
    if spatial > 3 and (not rgb or shape[-1] in (1, 2, 3, 4)):
        raise ValueError(_too_many_axes_message(shape, rgb))
    if rgb and (len(shape) not in (3, 4) or shape[-1] not in (1, 2, 3, 4)):
        raise ValueError(
            f"image of shape {shape} marked as colour: expected (H, W, C) or (Z, H, W, C) "
            "with C in 1..4"
        )
    if spatial not in (2, 3):
        hint = "; a 1-D signal is not an image" if spatial < 2 else ""
        raise ValueError(f"image of shape {shape}: expected {EXPECTED_SHAPES}{hint}.")
    h, w = shape[spatial - 2 : spatial]
    if spatial == 3 and shape[0] == 0:
        raise ValueError(
            f"image of shape {shape}: a stack of no frames; expected {EXPECTED_SHAPES}."
        )
    if min(h, w) < MIN_SIDE:
        raise ValueError(
            _small_colour_message(shape, rgb)
            or f"the image is {h} x {w} pixels, too small: height and width must be at least "
            f"{MIN_SIDE} pixels."
        )
    dtype = getattr(image, "dtype", None)
    dtype = np.asarray(image).dtype if dtype is None else np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"image of dtype {dtype}: expected a boolean, integer or float image.")
    return spatial == 3, bool(rgb)


def predict_probability(
    image: np.ndarray,
    checkpoint: Checkpoint,
    mode: str = "resize",
    device: str | torch.device | None = None,
    tile_overlap: float = 0.25,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, str]:
    """Foreground probability of one 2-D image.

    Args:
        image: (H, W) grey or (H, W, C) with C in 1..4, any dtype (see ``preprocess``).
        checkpoint: a loaded checkpoint; its model's device is used when ``device`` is None.
        mode: "resize" to the checkpoint's input size and back (as the paper), or "tile":
            overlapping windows of the input size blended with a Gaussian weight
            (:func:`sliding_window`). An image much wider or taller than the model's
            input is resized in overlapping windows of the input's shape, blended alike
            (``tiling.resize_window``), not squeezed whole.
        tile_overlap: fraction of a tile shared with its neighbour, in [0, 0.9].
        batch_size: tiles per forward pass; bounds memory whatever the image size;
            None: by device (``tiling.batch_size_for``).
        progress: called with (done, total) tiles after every forward pass.

    Returns:
        (H, W) float32 probability and the intensity mapping in words.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] > 4):
        raise ValueError(
            f"image of shape {image.shape}: predict_probability takes one 2-D image, (H, W) or "
            "(H, W, C) with C in 1..4; use segment() for a stack of frames."
        )
    split_frames(image, rgb=image.ndim == 3)
    frame = _frame_input(image, checkpoint)
    steps = _predict_frame(frame, checkpoint, mode, device, tile_overlap, batch_size)
    return run_to_completion(steps, progress), frame.mapping


def segment(
    image: np.ndarray,
    checkpoint: Checkpoint,
    threshold: float | None = None,
    mode: str = "resize",
    instances: bool = False,
    device: str | torch.device | None = None,
    tile_overlap: float = TILE_OVERLAP,
    batch_size: int | None = None,
    rgb: bool | None = None,
    split_depth: float = 2.0,
    max_pixels: int | None = None,
    precision: str | None = None,
    min_confidence: float | None = None,
) -> Generator[tuple[int, int], None, SegmentationResult]:
    """Segment a 2-D image or a stack of 2-D frames (slice by slice); a generator.

    Yields ``(done, total)`` work units (tiles, or frames in resize mode: the windows of
    an elongated one; plus one per frame for the instance split) and returns a
    :class:`SegmentationResult`. Closing the generator (``.close()``, or a napari
    worker's ``quit()``) stops the work after the current forward pass.

    A 2-D image that is not in memory (a memmap, zarr or dask array, e.g. from
    ``data.images.open_image``) and has more pixels than the pixel budget is read and
    segmented in bands of tiles (tile mode only, binary masks only), so memory stays that
    of a band plus the (H, W) uint8 mask; its result has no probability map.

    Args:
        threshold: probability threshold; None takes the checkpoint's default.
        mode: "resize" or "tile" (see :func:`predict_probability`).
        instances: split the binary mask into instances (touching objects separated by a
            distance-transform watershed).
        device: "auto", "cuda", "cpu"; None runs where the checkpoint's model is.
        batch_size: tiles per forward pass; None: by device (``tiling.batch_size_for``).
        rgb: whether the last axis holds colour channels (napari's ``layer.rgb``); None
            guesses from the shape.
        split_depth: in pixels; two touching objects are split when the neck between them
            is at least this much narrower (in distance-transform terms) than both.
        max_pixels: the pixel budget above which a lazy image is streamed in bands;
            None: ``data.budget.max_pixels()``.
        precision: "fp32" or "bf16" on CUDA; None: ``fast_forward.use_bf16``'s default.
        min_confidence: objects whose mean probability is below this are dropped
            (``postprocess.drop_unsure``); None takes the checkpoint's default.
    """
    threshold = _checked_threshold(mode, threshold, checkpoint)
    if min_confidence is None:
        min_confidence = checkpoint.input_config.min_confidence
    min_confidence = checked_min_confidence(min_confidence)
    is_stack, _ = split_frames(image, rgb)
    if not is_stack and _streamed(image, max_pixels):
        if min_confidence:
            raise ValueError(
                f"image of {'x'.join(map(str, image.shape[:2]))} pixels is over the pixel "
                f"budget and is segmented in parts, which cannot weigh whole objects' "
                f"confidence: set min_confidence 0 (--min-confidence 0), or raise the budget"
            )
        from .streaming import segment_bands

        return (
            yield from segment_bands(
                image,
                checkpoint,
                threshold,
                mode,
                instances,
                device,
                tile_overlap,
                batch_size,
                precision,
            )
        )
    frames = image if is_stack else [image]
    first = _frame_input(np.asarray(frames[0]), checkpoint)
    shape = (len(frames), *first.hw)
    probability = np.empty(shape, np.float32)  # (Z, H, W)
    labels = np.empty(shape, np.int32 if instances else np.uint8)  # (Z, H, W)
    total = (first.units(mode, tile_overlap) + (1 if instances else 0)) * len(frames)
    done, next_label = 0, 0
    yield done, total
    for z in range(len(frames)):
        frame = first if z == 0 else _frame_input(np.asarray(frames[z]), checkpoint)
        steps = _predict_frame(frame, checkpoint, mode, device, tile_overlap, batch_size, precision)
        probability[z] = check_output((yield from _shifted(steps, done, total)))
        done += frame.units(mode, tile_overlap)
        mask = probability[z] > threshold
        if min_confidence:
            mask = drop_unsure(mask, probability[z], min_confidence)
        if instances:
            labels[z] = _instances(mask, split_depth, next_label)
            next_label = max(next_label, int(labels[z].max()))
            done += 1
            yield done, total
        else:
            labels[z] = mask
    mapping = first.mapping
    if is_stack and "percentiles" in mapping:
        mapping = f"each frame by its own range, e.g. frame 0: {mapping}"
    if not is_stack:
        labels, probability = labels[0], probability[0]
    return SegmentationResult(
        labels,
        probability,
        mapping,
        float(threshold),
        mode,
        instances,
        min_confidence,
        first.units(mode, tile_overlap),
    )


def _checked_threshold(mode: str, threshold: float | None, checkpoint: Checkpoint) -> float:
    """The threshold to use (None: the checkpoint's); refuses an unknown mode or threshold."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}.")
    if threshold is None:
        threshold = checkpoint.input_config.threshold
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold={threshold}: expected a probability strictly in (0, 1).")
    return threshold


def _instances(mask: np.ndarray, split_depth: float, offset: int) -> np.ndarray:
    """(H, W) instance labels of a frame's mask, ids above ``offset`` (unique in a stack)."""
    frame_labels = split_instances(mask, split_depth=split_depth)
    frame_labels[frame_labels > 0] += offset
    return frame_labels


def _shifted(steps: Generator, done: int, total: int) -> Generator[tuple[int, int], None, Any]:
    """Run one frame's generator, its progress yielded as ``(done + its done, total)``;
    returns what it returns."""
    while True:
        try:
            frame_done, _ = next(steps)
        except StopIteration as stop:
            return stop.value
        yield done + frame_done, total


def run_to_completion(
    generator: Generator[tuple[int, int], None, Any],
    progress: Progress | None = None,
) -> Any:
    """Drain a progress generator (:func:`segment`, :func:`sliding_window`); returns its result.

    ``progress`` is called with every ``(done, total)`` the generator yields.
    """
    while True:
        try:
            done, total = next(generator)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)


class FrameInput:
    """One 2-D frame mapped to a model's domain, cut lazily into normalised model inputs.

    The one input path of inference and of the trainer's evaluation:
    ``preprocess.to_unit_float``, ``to_channels`` and ``normalize`` (what
    ``preprocess.to_model_input`` does), applied per crop.

    Args:
        frame: (H, W) or (H, W, C) with C in 1..4, any dtype (see ``preprocess``).
        channels: the model's input channels.
        input_config: the model's input size and normalisation.
        value_range: intensity range mapped to [0, 1] instead of the frame's own (for a
            band of a larger image).
        own_stats: (mean, std) per channel of the whole image a band comes from, used
            instead of the band's own when ``input_config.per_image_norm`` is set (every
            band of an image normalised alike).

    Raises:
        ValueError: a float frame without a single finite value (all NaN/Inf).
    """

    def __init__(
        self,
        frame: np.ndarray,
        channels: int,
        input_config: InputConfig,
        value_range: tuple[float, float] | None = None,
        own_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ):
        frame = np.asarray(frame)
        self.channels = channels
        self.mean = input_config.mean
        self.std = input_config.std
        self.size = tuple(input_config.size)  # (h, w) of the model input
        self.hw = frame.shape[:2]
        self.mapping = describe_mapping(frame, value_range)
        if value_range is None and frame.dtype.kind == "f":
            self.mapping += _nonfinite_note(frame)
        # bool and unsigned integers map pixel by pixel, so crops are mapped on demand and a
        # huge slide is never held as float32 in full; other dtypes need the whole frame's
        # range (or ``value_range``, that of the image a band comes from, which also decides
        # a wide unsigned band's rule: its own hot pixels must not change it).
        if value_range is None and frame.dtype.kind == "u" and frame.dtype.itemsize > 1:
            value_range = robust_range(frame)  # once: the rule and the mapping both need it
        self.per_frame_range = not has_nominal_range(frame, value_range)
        self._unit = to_unit_float(frame, value_range) if self.per_frame_range else frame
        # a crop is mapped by the frame's rule (its type's range), not one judged on the
        # crop alone: a dark window of a full-range uint32 frame would look like 14-bit data
        nominal = not self.per_frame_range and frame.dtype.kind == "u"
        self._crop_range = (0.0, float(np.iinfo(frame.dtype).max)) if nominal else None
        self._tensors: dict[tuple, Any] = {}  # device copies (windows)
        self.mapping += f"; {self._channel_rule(frame)}; normalised with "
        if input_config.per_image_norm:  # one wording for a whole frame and a band
            self.mean, self.std = own_stats or self._own_stats()
            self.mapping += "the image's own "
        normalize(np.zeros((channels, 1, 1), np.float32), self.mean, self.std)  # checks them
        self.mapping += f"mean {_fmt(self.mean)}, std {_fmt(self.std)}"

    def _own_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the mapped frame (``per_image_norm``), from a
        regular subsample of at most about :data:`STATS_PIXELS` pixels."""
        H, W = self.hw
        step = max(1, math.ceil(math.sqrt(H * W / STATS_PIXELS)))
        sample = self._unit[::step, ::step]
        if sample.dtype != np.float32:
            sample = to_unit_float(sample, self._crop_range)
        return channel_stats(to_channels(sample, self.channels))

    def _channel_rule(self, frame: np.ndarray) -> str:
        c = 1 if frame.ndim == 2 else frame.shape[-1]
        words = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}[c]
        steps = []
        if c in (2, 4):
            steps.append("alpha dropped")
        colour = 3 if c >= 3 else 1
        if colour == 1 and self.channels > 1:
            steps.append(f"grey replicated to {self.channels} channels")
        elif colour == 3 and self.channels == 1:
            steps.append("RGB averaged to grey")
        return f"{words} input" + (" (" + ", ".join(steps) + ")" if steps else "")

    def crop(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Normalised (C, h, w) float32 model input of a window."""
        window = self._unit[y : y + h, x : x + w]
        if window.dtype != np.float32:
            window = to_unit_float(window, self._crop_range)
        return normalize(to_channels(window, self.channels), self.mean, self.std)

    def resized(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The whole frame as a normalised (1, C, h, w) model input of the model's size.

        A frame over :data:`MAPPED_BAND_PIXELS` is mapped a band of rows at a time into
        one full-resolution input (the same values), so that the mapping's transients
        (the stored values as indices, 8 bytes each) are a band's, not the whole photo's.
        """
        H, W = self.hw
        rows = max(1, MAPPED_BAND_PIXELS // W)
        if rows >= H:
            return resize(self.windows([(0, 0)], H, W, device), self.size)
        full = torch.empty((1, self.channels, H, W), device=device)
        for y in range(0, H, rows):
            full[:, :, y : y + rows] = self.windows([(y, 0)], min(rows, H - y), W, device)
        return resize(full, self.size)

    def windows(
        self, starts: Sequence[tuple[int, int]], h: int, w: int, device: torch.device | str
    ) -> torch.Tensor:
        """Normalised (n, C, h, w) float32 model inputs of the windows at ``starts`` (y, x).

        Made on ``device``: the frame goes there once, as stored (uint8 stays uint8), when
        it fits (``tiling.fits_on``), and each batch of windows is mapped there: to [0, 1]
        by a table of ``to_unit_float``'s values (bool, uint8, uint16), so the inputs are
        :meth:`crop`'s to the bit, then channels and normalisation as ``preprocess``.
        uint32/uint64 frames are cut and mapped on the CPU by :meth:`crop`.
        """
        device = torch.device(device)
        if self._table(device) is None:
            return torch.from_numpy(np.stack([self.crop(y, x, h, w) for y, x in starts])).to(device)
        source = self._source(device)  # (H, W[, c])
        raw = torch.stack([source[y : y + h, x : x + w] for y, x in starts]).to(device)
        if raw.ndim == 3:
            raw = raw[:, None]  # (n, 1, h, w)
        else:
            raw = raw[..., :-1] if raw.shape[-1] in (2, 4) else raw  # alpha dropped
            raw = raw.permute(0, 3, 1, 2)  # (n, c, h, w)
        raw = raw.contiguous()
        if raw.dtype != torch.float32:  # stored values -> [0, 1] by the table
            index = raw.reshape(-1).long()
            if raw.dtype == torch.int16:
                index &= 0xFFFF  # uint16 stored as int16
            raw = self._table(device).index_select(0, index).view(raw.shape)
        if raw.shape[1] == 1:
            raw = raw.expand(-1, self.channels, -1, -1)
        elif self.channels == 1:
            raw = raw.mean(dim=1, keepdim=True)
        elif self.channels != 3:
            raise ValueError(f"cannot map an RGB image to {self.channels} channels")
        mean, std = self._norm(device)  # preprocess.normalize's (x - mean) / std, on device
        x = (raw - mean) / std  # (n, C, h, w)
        # plain strides even along size-1 axes: a (1, 1, h, w) tensor strided like
        # channels-last sends the CPU convolutions down another (rounding) path
        if x.stride() != _plain_strides(x.shape):
            x = x.clone(memory_format=torch.contiguous_format)
        return x

    def _norm(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, 1, 1) float32 mean and std on ``device``, uploaded once (no sync per batch)."""
        key = ("norm", device)
        if key not in self._tensors:
            self._tensors[key] = tuple(
                torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1).to(device)
                for values in (self.mean, self.std)
            )
        return self._tensors[key]

    def _table(self, device: torch.device) -> torch.Tensor | None:
        """``to_unit_float`` of every stored value (bool/uint8/uint16) on ``device``;
        an empty table for a float32 frame (already mapped); None for wider integers."""
        key = ("table", device)
        if key not in self._tensors:
            dtype = self._unit.dtype
            if dtype == np.float32:
                table = torch.empty(0, device=device)
            elif dtype in (np.bool_, np.uint8, np.uint16):
                values = np.arange(2 if dtype == np.bool_ else np.iinfo(dtype).max + 1)
                table = torch.from_numpy(to_unit_float(values.astype(dtype))).to(device)
            else:
                table = None
            self._tensors[key] = table
        return self._tensors[key]

    def _source(self, device: torch.device) -> torch.Tensor:
        """The stored frame as a tensor on ``device`` (on the CPU when it does not fit)."""
        key = ("source", device)
        if key not in self._tensors:
            unit = np.ascontiguousarray(self._unit)
            if unit.dtype == np.uint16:
                unit = unit.view(np.int16)  # torch's uint16 lacks ops; the table undoes it
            with warnings.catch_warnings():  # a read-only frame (memmap, napari's): never written
                warnings.simplefilter("ignore", UserWarning)
                source = torch.from_numpy(unit)
            if fits_on(device, unit.nbytes):
                # a band or a frame: through pinned memory, so the host does not wait for
                # the GPU's queued work; a whole large image: once, before any work
                pin = device.type == "cuda" and unit.nbytes <= PINNED_UPLOAD_BYTES
                source = (source.pin_memory() if pin else source).to(device, non_blocking=pin)
            self._tensors[key] = source
        return self._tensors[key]

    def window(self, mode: str) -> tuple[int, int] | None:
        """(h, w) of the windows this frame is cut into in ``mode``: the model's input size
        for tiles; in resize mode None (resized whole) unless the frame is elongated
        (``tiling.resize_window``)."""
        return tuple(self.size) if mode == "tile" else resize_window(self.hw, self.size)

    def units(self, mode: str, overlap: float) -> int:
        """Work units (forward passes' tiles or windows) this frame needs in ``mode``."""
        window = self.window(mode)
        return 1 if window is None else tile_count(self.hw, window, overlap)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) floats to ``size``, antialiased where it shrinks.

    Half-pixel centres. The antialiasing filter only acts along an axis that shrinks, so
    enlarging is plain bilinear. Model inputs, logits and masks are all resized with this.
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a (B, 1, H, W) binary mask like an image (:func:`resize`), then ``> 0.5``."""
    size = tuple(int(s) for s in size)
    if tuple(mask.shape[-2:]) == size:
        return mask.bool()
    return resize(mask.float(), size) > 0.5


def forward_logits(model: Callable, x: torch.Tensor, amp: bool = True) -> torch.Tensor:
    """Logits (B, K, H, W) in float32, without autograd; bf16 autocast on CUDA if ``amp``.

    The one forward of inference and evaluation: ``fast_forward.logits`` (CUDA-graph
    replays of a model in eval mode on CUDA, eager otherwise).
    """
    return fast_forward.logits(model, x, amp)


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> (B, H, W) foreground probability.

    One class: sigmoid. Several: one minus the softmax of class 0 (background). A mask is
    this probability above the threshold, in inference and in evaluation alike.
    """
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return 1.0 - torch.softmax(logits, dim=1)[:, 0]


def _streamed(image, max_pixels: int | None) -> bool:
    """Whether a 2-D image is read lazily and over the pixel budget (segmented in bands)."""
    from .data.budget import in_bands

    return in_bands(image, max_pixels)


def check_output(probability: np.ndarray) -> np.ndarray:
    """``probability`` itself; a RuntimeError if it holds NaN/Inf (it would give empty masks)."""
    if not np.isfinite(probability).all():
        raise RuntimeError(
            "the model's output holds NaN or infinite values (broken weights or input "
            "normalisation in the checkpoint): no mask written; use another checkpoint"
        )
    return probability


def _nonfinite_note(frame: np.ndarray) -> str:
    """ "; N NaN/Inf pixels ..." for a float frame with some; ValueError if it has no other."""
    finite = np.isfinite(frame)
    bad = finite.size - int(np.count_nonzero(finite))
    if bad == finite.size:
        raise ValueError(
            f"image of shape {frame.shape} has no finite pixels (all NaN or infinite): "
            "nothing to segment"
        )
    return f"; {bad} NaN/Inf values set to 0 (+Inf to 1)" if bad else ""


def _plain_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a C-contiguous tensor of ``shape`` (size-1 axes included)."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _frame_input(frame: np.ndarray, checkpoint: Checkpoint) -> FrameInput:
    return FrameInput(frame, checkpoint.model_config.in_channels, checkpoint.input_config)


def _predict_frame(
    frame: FrameInput,
    checkpoint: Checkpoint,
    mode: str,
    device: str | torch.device | None,
    overlap: float,
    batch_size: int | None,
    precision: str | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Probability of one frame; yields (tiles done, tiles) after each forward pass."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}.")
    model, dev, amp = prepared_model(checkpoint, device, precision)
    window = frame.window(mode)
    if window is None:  # resize mode, the whole frame
        logits = forward_logits(model, frame.resized(dev), amp)  # (1, K, h, w)
        yield 1, 1
        return foreground_probability(resize(logits, frame.hw))[0].cpu().numpy()
    resized_to = frame.size if mode == "resize" else None  # an elongated frame's windows
    probability = window_probability(model, amp, resized_to)
    blended = yield from sliding_window(
        probability, frame, window, overlap, batch_size, "gaussian", dev
    )
    return blended[0, 0].numpy()


def window_probability(
    model: Callable, amp: bool, resized_to: Sequence[int] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as :func:`sliding_window` runs it: (n, C, h, w) windows -> (n, 1, h, w)
    foreground probability.

    ``resized_to``: each window resized to this model input size and its logits resized
    back, as resize mode does with a whole frame (resize mode's windows of an elongated
    image); None: the windows go in as they are (tile mode).
    """

    def probability(x: torch.Tensor) -> torch.Tensor:
        if resized_to is None:
            return foreground_probability(forward_logits(model, x, amp))[:, None]
        logits = forward_logits(model, resize(x, resized_to), amp)  # (n, K, *resized_to)
        return foreground_probability(resize(logits, x.shape[-2:]))[:, None]

    return probability


def prepared_model(
    checkpoint: Checkpoint, device: str | torch.device | None, precision: str | None = None
) -> tuple[torch.nn.Module, torch.device, bool]:
    """``(model, device, amp)``: the checkpoint's model on ``device`` (None: where it is)
    in eval mode, and whether it runs in bf16 autocast there (``fast_forward.use_bf16``)."""
    model = checkpoint.model
    current = _model_device(model)
    dev = resolve_device(device) if device is not None else current
    if dev != current:
        model.to(dev)
    model.eval()
    return model, dev, fast_forward.use_bf16(dev, precision, checkpoint.metadata)


def _model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights are (CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def _too_many_axes_message(shape: tuple, rgb: bool) -> str:
    """For an image with more axes than a stack of frames (e.g. time and depth): what it
    is, and how to get an image or stack that can be segmented."""
    axes = len(shape) - 2 - int(rgb)
    if rgb:  # napari's Split Stack would split a colour layer into its channels instead
        return (
            f"image of shape {shape} has {axes} axes before its colour frames (e.g. time "
            "and depth), and only one colour picture or one stack of them can be "
            "segmented: save each time point of the series as a file of its own (one "
            "picture or one stack), open one of them in napari and segment that."
        )
    return (
        f"image of shape {shape} has {axes} axes before its frames (e.g. time and depth), "
        "and only one image (H, W) or one stack (Z, H, W) can be segmented: split it into "
        f"its {shape[0]} stacks (in napari: right-click the layer, Split Stack) and segment "
        "one of them."
    )


def _small_colour_message(shape: tuple, rgb: bool) -> str:
    """For a grey stack shaped like one colour image ((H, W, 3|4) not marked RGB, small) or
    one grey + alpha image ((H, W, 2)): what it was read as, and what to do; "" for any
    other shape."""
    if rgb or len(shape) != 3 or shape[-1] not in (2, 3, 4):
        return ""
    if shape[-1] == 2 and min(shape[:2]) >= MIN_SIDE:  # napari marks only 3|4 as colour
        return (
            f"image of shape {shape} looks like one {shape[0]} x {shape[1]} grey image with "
            f"an alpha channel, which napari read as {shape[0]} frames of {shape[1]} x 2 "
            "pixels: save it as a grey image without alpha and open it again, or segment the "
            "file with napari-tmunet-predict, which reads grey + alpha."
        )
    if shape[-1] == 2:
        return ""
    frames = "frame" if shape[0] == 1 else "frames"
    return (
        f"image of shape {shape} was read as {shape[0]} grey {frames} of {shape[1]} x "
        f"{shape[2]} pixels, not as one {shape[0]} x {shape[1]} colour image (napari reads "
        f"an image of 30 pixels or less a side as a stack), and frames need {MIN_SIDE} pixels "
        "a side: enlarge the picture, e.g. to 64 x 64, and open it again."
    )
