"""Overlapping tiles of an image through a model, cut, batched and blended on its device.

:func:`sliding_window` is the tile mode of the Segment dock, ``napari-tmunet-predict``
and the evaluation, and resize mode's way with an elongated image (:func:`resize_window`);
``streaming.segment_bands`` runs its :func:`blend_tiles` one band of an image at a time.
Tiles are cut from the image where the model runs (an image that fits is uploaded once,
as stored: uint8 stays uint8), mapped to the model's input there
(``inference.FrameInput.windows``), and their outputs are added up there, so on a GPU
the host only queues work. No Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from .tile_grid import MAX_RESIZE_STRETCH, resize_window, tile_starts  # noqa: F401  (importable from here too)

MAX_OVERLAP = 0.9  # tile overlap fraction; more would multiply the work for nothing
BLEND_WEIGHTS: tuple[str, ...] = ("gaussian", "constant")
# Pixels per forward pass on a GPU: 64 tiles of 256 x 256, 16 of 512 x 512; enough to
# keep an H200 busy with TM-UNet b, a few GB of activations.
GPU_BATCH_PIXELS = 64 * 256 * 256
# On the CPU, two tiles per thread, at most 4 (2 threads, TM-UNet b, 256 x 256, the
# bundled H&E repeated: 0.165 s per tile at batch 1, 0.13 at 2 and 4, 0.17 at 8: bigger
# batches leave the caches; docs/benchmarks.md).
CPU_TILES_PER_THREAD = 2
CPU_MAX_BATCH = 4
DEVICE_SHARE = 0.25  # at most this share of free GPU memory for an uploaded image + sums

Crops = Callable[[list[tuple[int, int, int]], int, int], torch.Tensor]


def batch_size_for(device: torch.device | str, tile: Sequence[int]) -> int:
    """Tiles per forward pass on ``device`` for tiles of ``tile`` (h, w) pixels."""
    if torch.device(device).type == "cuda":
        return max(1, min(64, GPU_BATCH_PIXELS // max(1, tile[0] * tile[1])))
    return max(1, min(CPU_MAX_BATCH, CPU_TILES_PER_THREAD * torch.get_num_threads()))


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` more may live on ``device`` (a share of a GPU's free memory)."""
    if device.type != "cuda":
        return True
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return False
    return nbytes <= DEVICE_SHARE * free


def sliding_window(
    model: Callable[[torch.Tensor], torch.Tensor],
    image,
    tile: Sequence[int],
    overlap: float = 0.25,
    batch_size: int | None = None,
    weight: str = "gaussian",
    device: torch.device | str | None = None,
) -> Generator[tuple[int, int], None, torch.Tensor]:
    """Blend a model's outputs over overlapping tiles of an image; a generator.

    Tiles of ``tile`` pixels (clipped to the image) start at evenly spaced positions, the
    first and last flush with the borders, neighbours sharing about ``overlap`` of a tile.
    ``batch_size`` tiles go through ``model`` per call (None: :func:`batch_size_for` the
    device), so memory is bounded whatever the image size; the outputs are blended with
    ``weight``: "gaussian" (sigma = tile / 8, tile borders, where the model sees least
    context, count least) or "constant" (plain average). The sums are kept on the device
    when they fit (:func:`fits_on`), else on the CPU. Drain it with
    ``inference.run_to_completion``; closing it stops after the current forward pass.

    Args:
        model: maps (n, C, h, w) inputs on ``device`` to (n, K, h, w) outputs (logits,
            probabilities, ...); called without autograd.
        image: a normalised (B, C, H, W) tensor, or an ``inference.FrameInput`` (cut
            and mapped lazily, B = 1).
        tile: (h, w) of a tile, usually the model's input size.
        overlap: fraction of a tile shared with its neighbour, in [0, MAX_OVERLAP].
        batch_size: tiles per forward pass; None: by device.
        device: where the tiles go; None: the tensor's device (the CPU for a FrameInput).

    Yields:
        (tiles done, tiles in all) after each forward pass.
    Returns:
        (B, K, H, W) float32 CPU tensor.
    """
    if weight not in BLEND_WEIGHTS:
        raise ValueError(f"weight={weight!r}: expected one of {BLEND_WEIGHTS}.")
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise ValueError(f"overlap={overlap}: expected a fraction in [0, {MAX_OVERLAP}].")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected at least 1.")
    if isinstance(image, torch.Tensor):
        if image.ndim != 4:
            raise ValueError(f"image of shape {tuple(image.shape)}: expected (B, C, H, W).")
        n_images, (H, W) = image.shape[0], tuple(image.shape[-2:])
        dev = torch.device(device) if device is not None else image.device

        def crops(batch, h, w):  # (n, C, h, w) on dev
            return torch.stack([image[b, :, y : y + h, x : x + w] for b, y, x in batch]).to(dev)
    else:
        n_images, (H, W) = 1, image.hw
        dev = torch.device(device) if device is not None else torch.device("cpu")

        def crops(batch, h, w):
            return image.windows([(y, x) for _, y, x in batch], h, w, dev)

    th, tw = min(tile[0], H), min(tile[1], W)
    ys, xs = tile_starts(H, tile[0], overlap), tile_starts(W, tile[1], overlap)
    positions = [(b, y, x) for b in range(n_images) for y in ys for x in xs]
    window = blend_window(th, tw) if weight == "gaussian" else np.ones((th, tw), np.float32)
    batch_size = batch_size or batch_size_for(dev, (th, tw))
    acc, norm = yield from blend_tiles(
        model, crops, positions, (n_images, H, W), window, batch_size, dev
    )
    return (acc / norm).cpu()


def blend_tiles(
    model: Callable[[torch.Tensor], torch.Tensor],
    crops: Crops,
    positions: list[tuple[int, int, int]],
    shape: tuple[int, int, int],
    window: np.ndarray,
    batch_size: int,
    dev: torch.device,
) -> Generator[tuple[int, int], None, tuple[torch.Tensor, torch.Tensor]]:
    """Weighted sums of a model's outputs over tiles at ``positions`` (b, y, x).

    ``crops(batch, h, w)`` gives the (n, C, h, w) inputs of a batch of positions on
    ``dev``. Returns the (B, K, H, W) sum of window-weighted outputs and the (H, W) sum
    of weights, unnormalised (so that bands of an image can be added up before
    dividing), on ``dev`` when they fit there, else on the CPU. Nothing here waits for
    the device: the host queues batch after batch. A batch that runs out of GPU memory
    is halved, and so are the batches after it.
    """
    n_images, H, W = shape
    th, tw = window.shape
    window_dev = torch.from_numpy(window).to(dev)  # (th, tw)
    acc: torch.Tensor | None = None  # (B, K, H, W)
    norm: torch.Tensor | None = None  # (H, W)
    start = 0
    while start < len(positions):
        batch = positions[start : start + batch_size]
        try:
            with torch.no_grad():
                out = model(crops(batch, th, tw)).float() * window_dev  # (n, K, th, tw)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
            batch_size = len(batch) // 2  # a smaller GPU: halve the batch and go on
            torch.cuda.empty_cache()
            continue
        if acc is None:
            sums = dev if fits_on(dev, 4 * H * W * (n_images * out.shape[1] + 1)) else "cpu"
            acc = torch.zeros((n_images, out.shape[1], H, W), device=sums)
            norm = torch.zeros((H, W), device=sums)
            window_sums = window_dev.to(sums)
        out = out.to(acc.device)
        for (b, y, x0), tile_out in zip(batch, out, strict=True):
            acc[b, :, y : y + th, x0 : x0 + tw] += tile_out
            if b == 0:  # every image has the same tiles
                norm[y : y + th, x0 : x0 + tw] += window_sums
        start += len(batch)
        yield start, len(positions)
    return acc, norm


def blend_window(h: int, w: int) -> np.ndarray:
    """(h, w) Gaussian weight (sigma = size / 8), highest at the centre, never zero.

    Tile borders, where the model sees least context, count least where tiles overlap.
    """

    def axis(n: int) -> np.ndarray:
        t = np.arange(n, dtype=np.float32) - (n - 1) / 2.0
        return np.exp(-0.5 * (t / (n / 8.0)) ** 2)

    window = np.outer(axis(h), axis(w))
    window /= window.max()
    return np.maximum(window, 1e-3).astype(np.float32)
