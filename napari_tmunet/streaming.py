"""Segmenting images larger than memory: a band of tiles at a time.

:func:`napari_tmunet.inference.segment` hands a lazily read 2-D image over the pixel budget
(``data.budget``) to :func:`segment_bands`. The tiles and their blending are
:func:`napari_tmunet.inference.sliding_window`'s; only the order of work differs: one
band of tiles' height at a time, rows finished as soon as no later band reaches them.
"""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .checkpoint import Checkpoint
from .config import InputConfig
from .data.budget import sample_rows
from .data.preprocess import robust_range
from .inference import (
    FrameInput,
    SegmentationResult,
    check_output,
    prepared_model,
    window_probability,
)
from .tiling import batch_size_for, blend_tiles, blend_window, tile_starts


def segment_bands(
    image,
    checkpoint: Checkpoint,
    threshold: float,
    mode: str = "tile",
    instances: bool = False,
    device: str | torch.device | None = None,
    tile_overlap: float = 0.25,
    batch_size: int | None = None,
    precision: str | None = None,
) -> Generator[tuple[int, int], None, SegmentationResult]:
    """Binary mask of a large 2-D image read one band of tiles at a time; a generator.

    The image (any sliceable (H, W) or (H, W, C) array: memmap, zarr, dask) is read in
    bands of one tile's height, the next band while the model works on this one; each
    band's tiles are blended exactly as :func:`sliding_window` would, on the model's
    device, and the rows no later band reaches are thresholded into the mask. Memory:
    two bands of the image, one of the blend, plus the mask. Intensities other than
    uint8/bool are mapped by a range estimated on 64 rows spread over the image. Yields
    ``(tiles done, tiles)``; the result has no probability map.
    """
    H, W = (int(n) for n in image.shape[:2])
    if mode != "tile":
        raise ValueError(
            f"image of {H}x{W} pixels is over the pixel budget and is segmented in parts, "
            "which needs tile mode: choose mode 'tile' (--mode tile)"
        )
    if instances:
        raise ValueError(
            f"image of {H}x{W} pixels is over the pixel budget: instance labels need the "
            "whole mask at once; segment a binary mask, or raise the pixel budget"
        )
    channels = checkpoint.model_config.in_channels
    value_range = _sampled_range(image)
    config = checkpoint.input_config
    stats = _whole_image_stats(config, image, channels, value_range)
    model, dev, amp = prepared_model(checkpoint, device, precision)
    th, tw = min(config.size[0], H), min(config.size[1], W)
    ys = tile_starts(H, config.size[0], tile_overlap)
    xs = tile_starts(W, config.size[1], tile_overlap)
    window = blend_window(th, tw)
    batch_size = batch_size or batch_size_for(dev, (th, tw))
    labels = np.zeros((H, W), np.uint8)
    acc = torch.zeros((th, W), device=dev)  # rows [ys[i], ys[i] + th) of the blend
    norm = torch.zeros((th, W), device=dev)
    total = len(ys) * len(xs)
    mapping = ""

    probability = window_probability(model, amp)  # (n, C, h, w) -> (n, 1, h, w)

    def read(i: int) -> FrameInput:
        band = np.asarray(image[ys[i] : ys[i] + th])
        return FrameInput(band, channels, config, value_range, own_stats=stats)

    pending: _Rows | None = None  # finished rows on their way to the host
    yield 0, total
    with ThreadPoolExecutor(max_workers=1) as reader:  # the next band, read meanwhile
        coming = reader.submit(read, 0)
        for i, y in enumerate(ys):
            frame = coming.result()
            if i + 1 < len(ys):
                coming = reader.submit(read, i + 1)
            mapping = mapping or frame.mapping
            steps = _band_steps(frame, probability, xs, window, batch_size, dev)
            while True:
                try:
                    band_done, _ = next(steps)
                except StopIteration as stop:
                    band_acc, band_norm = stop.value
                    break
                yield i * len(xs) + band_done, total
            acc += band_acc.to(dev)
            norm += band_norm.to(dev)
            rows = (ys[i + 1] if i + 1 < len(ys) else H) - y  # rows no later band reaches
            finished = _Rows(y, acc[:rows] > threshold * norm[:rows], acc[:rows])
            acc[: th - rows], norm[: th - rows] = acc[rows:].clone(), norm[rows:].clone()
            acc[th - rows :], norm[th - rows :] = 0.0, 0.0
            if pending is not None:  # the band before: done while this one was queued
                pending.write(labels)
            pending = finished
    pending.write(labels)
    return SegmentationResult(
        labels=labels,
        probability=None,
        mapping=mapping + " (streamed in bands)",
        threshold=float(threshold),
        mode=mode,
        instances=False,
        windows=total,
    )


def _band_steps(frame, probability, xs, window, batch_size, dev):
    """Unnormalised blend of one band's tiles (see ``tiling.blend_tiles``): two (th, W)."""
    th, W = window.shape[0], frame.hw[1]

    def crops(batch, h, w):
        return frame.windows([(y, x) for _, y, x in batch], h, w, dev)

    positions = [(0, 0, x) for x in xs]
    acc, norm = yield from blend_tiles(
        probability, crops, positions, (1, th, W), window, batch_size, dev
    )
    return acc[0, 0], norm


class _Rows:
    """Finished rows of the mask, copied to the host without waiting for the device.

    On a GPU the copy goes to pinned memory behind the band's work, so the host can
    queue the next band before it waits (:meth:`write`); on the CPU it is immediate.
    """

    def __init__(self, y: int, mask: torch.Tensor, blend: torch.Tensor):
        self.y = y
        finite = torch.isfinite(blend).all()  # ()
        self.event = None
        if mask.device.type == "cuda":
            self.mask = torch.empty(mask.shape, dtype=torch.bool, pin_memory=True)
            self.finite = torch.empty((), dtype=torch.bool, pin_memory=True)
            self.mask.copy_(mask, non_blocking=True)
            self.finite.copy_(finite, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.mask, self.finite = mask, finite

    def write(self, labels: np.ndarray) -> None:
        """Put the rows into ``labels``; a RuntimeError for NaN/Inf (``check_output``)."""
        if self.event is not None:
            self.event.synchronize()
        if not bool(self.finite):
            check_output(np.array([np.nan], np.float32))  # raises its error
        labels[self.y : self.y + self.mask.shape[0]] = self.mask.numpy()


def _whole_image_stats(
    config: InputConfig, image, channels: int, value_range: tuple[float, float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The whole image's own mean and std per channel (from 64 rows spread over it) for a
    ``per_image_norm`` model, so that every band is normalised alike; None for a model of
    fixed normalisation."""
    if not config.per_image_norm:
        return None
    sample = FrameInput(sample_rows(image), channels, config, value_range)
    return sample.mean, sample.std


def _sampled_range(image) -> tuple[float, float] | None:
    """Robust intensity range of a lazy image from 64 rows spread over it; None for uint8/bool."""
    if np.dtype(image.dtype) in (np.uint8, np.dtype(bool)):
        return None
    sample = sample_rows(image)  # (64, W[, C])
    if sample.dtype.kind == "f" and not np.isfinite(sample).any():
        raise ValueError("image has no finite pixels in 64 rows spread over it (all NaN/Inf)")
    return robust_range(sample)
