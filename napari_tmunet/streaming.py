"""Segmenting images larger than memory: a band of tiles at a time.

:func:`napari_tmunet.inference.segment` hands a lazily read 2-D image over the pixel budget
(``data.budget``) to :func:`segment_bands`. The tiles and their blending are
:func:`napari_tmunet.inference.sliding_window`'s; only the order of work differs: one
band of tiles' height at a time, rows finished as soon as no later band reaches them.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch

from .checkpoint import Checkpoint
from .data.budget import sample_rows
from .data.preprocess import robust_range
from .inference import (
    FrameInput,
    SegmentationResult,
    _blend_tiles,
    _blend_window,
    _model_device,
    _tile_starts,
    check_output,
    foreground_probability,
    forward_logits,
    resolve_device,
)


def segment_bands(
    image,
    checkpoint: Checkpoint,
    threshold: float,
    mode: str = "tile",
    instances: bool = False,
    device: str | torch.device | None = None,
    tile_overlap: float = 0.25,
    batch_size: int = 4,
) -> Generator[tuple[int, int], None, SegmentationResult]:
    """Binary mask of a large 2-D image read one band of tiles at a time; a generator.

    The image (any sliceable (H, W) or (H, W, C) array: memmap, zarr, dask) is read in
    bands of one tile's height; each band's tiles are blended exactly as
    :func:`sliding_window` would, and the rows no later band reaches are thresholded into
    the mask and dropped. Memory: one band of the image and of the blend, plus the mask.
    Intensities other than uint8/bool are mapped by a range estimated on 64 rows spread
    over the image. Yields ``(tiles done, tiles)``; the result has no probability map.
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
    config = checkpoint.input_config
    channels = checkpoint.model_config.in_channels
    value_range = _sampled_range(image)
    th, tw = min(config.size[0], H), min(config.size[1], W)
    ys = _tile_starts(H, config.size[0], tile_overlap)
    xs = _tile_starts(W, config.size[1], tile_overlap)
    window = _blend_window(th, tw)
    labels = np.zeros((H, W), np.uint8)
    acc = np.zeros((th, W), np.float32)  # rows [ys[i], ys[i] + th) of the blend
    norm = np.zeros((th, W), np.float32)
    total = len(ys) * len(xs)
    mapping = ""
    yield 0, total
    for i, y in enumerate(ys):
        frame = FrameInput(np.asarray(image[y : y + th]), channels, config, value_range)
        mapping = mapping or frame.mapping
        steps = _band_steps(frame, checkpoint, device, xs, window, batch_size)
        while True:
            try:
                band_done, _ = next(steps)
            except StopIteration as stop:
                band_acc, band_norm = stop.value
                break
            yield i * len(xs) + band_done, total
        acc += check_output(band_acc)
        norm += band_norm
        rows = (ys[i + 1] if i + 1 < len(ys) else H) - y  # rows no later band reaches
        labels[y : y + rows] = acc[:rows] > threshold * norm[:rows]
        acc[: th - rows], norm[: th - rows] = acc[rows:].copy(), norm[rows:].copy()
        acc[th - rows :], norm[th - rows :] = 0.0, 0.0
    return SegmentationResult(
        labels=labels,
        probability=None,
        mapping=mapping + " (streamed in bands)",
        threshold=float(threshold),
        mode=mode,
        instances=False,
    )


def _band_steps(frame, checkpoint, device, xs, window, batch_size):
    """Unnormalised blend of one band's tiles (see ``_blend_tiles``): ((th, W), (th, W))."""
    model = checkpoint.model
    dev = resolve_device(device) if device is not None else _model_device(model)
    if dev != _model_device(model):
        model.to(dev)
    model.eval()

    def probability(x: torch.Tensor) -> torch.Tensor:
        return foreground_probability(forward_logits(model, x))[:, None]  # (n, 1, h, w)

    def crop(b: int, y: int, x: int, h: int, w: int) -> torch.Tensor:
        return torch.from_numpy(frame.crop(y, x, h, w))

    th, W = window.shape[0], frame.hw[1]
    positions = [(0, 0, x) for x in xs]
    acc, norm = yield from _blend_tiles(
        probability, crop, positions, (1, th, W), window, batch_size, dev
    )
    return acc[0, 0], norm


def _sampled_range(image) -> tuple[float, float] | None:
    """Robust intensity range of a lazy image from 64 rows spread over it; None for uint8/bool."""
    if np.dtype(image.dtype) in (np.uint8, np.dtype(bool)):
        return None
    sample = sample_rows(image)  # (64, W[, C])
    if sample.dtype.kind == "f" and not np.isfinite(sample).any():
        raise ValueError("image has no finite pixels in 64 rows spread over it (all NaN/Inf)")
    return robust_range(sample)
