"""napari writer: a Labels layer as a mask file that drops straight into a dataset.

The file rules are ``data.images.write_mask``'s: binary labels -> PNG/TIFF 0/255, instance
labels -> uint16 (or uint32) TIFF, marked so that the reader opens them as Labels again.
For PNG, a binary Segment output (metadata ``output: "binary"``) is written with every
label > 0 as foreground, as Fine-tune and Metrics read it; other layers with labels
above 1 are refused with a message saying to save as .tif.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer to ``path`` (.png, .tif or .tiff); return the paths written.

    A 2-D layer gives one file. A stack (Z, H, W) gives one file per slice,
    ``<stem>_<z><suffix>``, since the dataset layout holds one 2-D mask per image.

    Raises:
        FileExistsError: a stack whose slice files already exist (napari's save dialog
            only asked about ``path``, so they are never replaced).
    """
    from .data.images import write_mask

    labels = _as_array(data)  # (..., H, W)
    # Leading singleton axes (e.g. a stack of one) carry no information.
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim < 2:
        raise ValueError(f"{path}: a mask needs 2 dimensions (H, W), got shape {labels.shape}")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError(f"{path}: labels must be >= 0 to be saved as a mask")

    target = Path(path)
    if target.suffix.lower() == ".png":
        labels = _png_labels(target, labels, meta)
    if labels.ndim == 2:
        return [str(write_mask(target, labels))]
    slices = labels.reshape(-1, *labels.shape[-2:])  # (Z, H, W)
    width = max(3, len(str(len(slices) - 1)))
    stem, suffix = target.stem, target.suffix
    paths = [target.with_name(f"{stem}_{z:0{width}d}{suffix}") for z in range(len(slices))]
    existing = [p.name for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"{target.parent}: saving {len(slices)} slices as {paths[0].name} ... "
            f"{paths[-1].name} would replace existing files ({', '.join(existing)}); "
            "nothing was written. Choose another name, or move those files first."
        )
    return [str(write_mask(p, s)) for p, s in zip(paths, slices, strict=True)]


def _as_array(data: Any) -> np.ndarray:
    """Labels layer data (numpy, dask, zarr or a multiscale list) as a numpy array."""
    if isinstance(data, list | tuple):  # multiscale: level 0 is full resolution
        data = data[0]
    return np.asarray(data)


def _png_labels(path: Path, labels: np.ndarray, meta: dict) -> np.ndarray:
    """The labels a PNG (0/255) can hold: a binary output's labels > 0 as foreground, as
    are those of a layer with one label value (e.g. a 0/255 PNG mask opened as Labels).

    Raises:
        ValueError: instance labels (several values in a layer that is not a binary output).
    """
    if (meta.get("metadata") or {}).get("output") == "binary":
        return labels > 0  # e.g. a second object painted as label 2
    values = np.unique(labels)
    if np.count_nonzero(values) <= 1:
        return labels > 0
    top = int(values[-1])
    if top > 1:
        raise ValueError(
            f"{path.name}: this layer has instance labels (up to {top}), which a PNG mask "
            "cannot keep; save it again with a .tif file name (e.g. "
            f"{path.stem}.tif) to keep each object."
        )
    return labels
