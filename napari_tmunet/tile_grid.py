"""Where tile mode's tiles and resize mode's windows go (no torch): :mod:`napari_tmunet.tiling`
cuts them there, and the Segment dock counts them before a run, with torch not yet imported."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Resize mode resizes an image whole when its aspect ratio is within this factor of the model
# input's: the resize-mode models were trained on whole frames of aspect ratio 1 to 2.1
# (Kvasir-SEG 1.0-1.79, CVC-ClinicDB 1.33, UDIAT up to 2.1) squeezed to 512 x 512.
# A more elongated image is cut into windows (4 Kvasir-SEG frames side by side, 4.6:1:
# Dice per frame 0.32 resized whole, 0.80 in windows; docs/benchmarks.md).
MAX_RESIZE_STRETCH = 2.2
TILE_OVERLAP = 0.25  # tile mode's overlap in the dock and napari-tmunet-predict (segment's default)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Window starts covering [0, length) with windows of ``tile`` overlapping by ``overlap``."""
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / step) + 1
    return sorted({round(i * (length - tile) / (n - 1)) for i in range(n)})


def tile_count(hw: tuple[int, int], tile: tuple[int, int], overlap: float = TILE_OVERLAP) -> int:
    """Tiles of ``tile`` (h, w) pixels that cover an image of ``hw`` (h, w) pixels."""
    return len(tile_starts(hw[0], tile[0], overlap)) * len(tile_starts(hw[1], tile[1], overlap))


def resize_window(
    hw: Sequence[int], size: Sequence[int], max_stretch: float = MAX_RESIZE_STRETCH
) -> tuple[int, int] | None:
    """The (h, w) windows resize mode cuts an image of ``hw`` pixels into; None: resize it whole.

    An image whose aspect ratio is within ``max_stretch`` of the model input's ``size``
    is resized whole, as the model was trained. A more elongated one, resized whole, would
    squeeze its objects far beyond anything the model saw, so it is cut along its long
    side into the largest windows of the model input's aspect ratio, each resized to
    ``size`` (``tiling.sliding_window`` with windows of this shape, blended as tiles are).
    """
    (H, W), (h, w) = hw, size
    stretch = (W / H) / (w / h)  # > 1: wider than the model input
    if max(stretch, 1.0 / stretch) <= max_stretch:
        return None
    if stretch > 1.0:
        return H, min(W, round(H * w / h))
    return min(H, round(W * h / w)), W
