"""napari writer: a Labels layer as a mask file that drops straight into a dataset.

The file rules are ``data.images.write_mask``'s: binary labels -> PNG/TIFF 0/255, instance
labels -> 16-bit PNG or uint16 (or uint32) TIFF; TIFFs are marked so that the reader opens
them as Labels again, stacks included (one multi-page TIFF). For PNG, a binary Segment
output (metadata ``output: "binary"``) is written with every label > 0 as foreground, as
Fine-tune and Metrics read it, and so is a layer with one label value; a PNG holds one 2-D
mask, so a stack gives one PNG per slice.

A TIFF also keeps where the layer lies: its scale, translate and units, which the TM-UNet
reader gives back, so a reopened mask lies over its image; the yx pixel size is also in
the resolution tags that ImageJ/Fiji read. A TIFF of a Segment result also keeps the
model that made it, its image's name, for a channel's result its file's picture (so the
reopened result pairs with that file's mask in Metrics, as before saving), and the
model's own foreground, so that Fine-tune still tells the user's edits apart once it is
reopened (``data.images.ORIGIN_NAMES``, one JSON description). Rotation, shear and affine
are not kept, and a PNG keeps no scale, model, picture or foreground at all (save as
.tif for that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class LabelsNotSaved(Exception):
    """A Labels layer that cannot be saved as asked; the message names the layer and says
    what to choose instead.

    Not a ValueError: napari takes a writer's ValueError for "no writer for this file" and
    shows its own "No data written!" instead of the message.
    """


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer to ``path`` (.png, .tif or .tiff); return the paths written.

    A 2-D layer gives one file. A stack (Z, H, W) gives one multi-page TIFF, or one PNG per
    slice, ``<stem>_<z>.png``, since a PNG (and the dataset layout) holds one 2-D mask.

    Raises:
        LabelsNotSaved: labels the chosen file type cannot hold (e.g. ids above 65535 in
            a PNG, negative labels), naming the layer; nothing is written.
        FileExistsError: a PNG stack whose slice files already exist (napari's save dialog
            only asked about ``path``, so they are never replaced).
    """
    from ._unsaved import note_kept
    from .data.images import drop_leading_singletons

    target = Path(path)
    array = _as_array(data)
    written = _write(target, drop_leading_singletons(array), meta)
    note_kept(array)  # the layer's corrections are in a file now (closing napari asks no more)
    return written


def _write(target: Path, labels: np.ndarray, meta: dict) -> list[str]:
    """:func:`write_labels` for ``labels`` (..., H, W) without their leading 1-axes."""
    from .data.images import write_mask

    try:
        if target.suffix.lower() != ".png":
            origin = _origin(meta)
            return [str(write_mask(target, labels, _placement(meta, labels.ndim), origin))]
        labels = _png_labels(labels, meta)
        if labels.ndim == 2:
            return [str(write_mask(target, labels))]
        return _write_png_slices(target, labels.reshape(-1, *labels.shape[-2:]))  # (Z, H, W)
    except ValueError as err:
        raise LabelsNotSaved(f"Layer {meta.get('name', target.stem)!r} not saved: {err}") from err


def _write_png_slices(target: Path, slices: np.ndarray) -> list[str]:
    """One PNG per slice of (Z, H, W) labels, ``<stem>_000.png``...; none if any exists."""
    from .data.images import write_mask

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


def _placement(meta: dict, ndim: int) -> dict:
    """The layer's scale, translate and unit names (from napari's ``meta``) for the last
    ``ndim`` axes, those written (a stack of one loses its first)."""
    place = {}
    for key in ("scale", "translate", "units"):
        values = meta.get(key)
        if values is not None and len(values) >= ndim:
            place[key] = [str(v) if key == "units" else float(v) for v in values][-ndim:]
    return place


def _origin(meta: dict) -> dict | None:
    """For a Segment result (its metadata name the model that made it, as Metrics tells a
    prediction): the model, its label, the image, a channel's file's picture
    (``data.images.ORIGIN_NAMES``) and the model's own foreground (so a reopened,
    corrected result still tells the user's edits apart in Fine-tune; None when it has
    none, e.g. segmented in bands); None for other layers."""
    from .data.images import ORIGIN_NAMES
    from .postprocess import kept_prediction

    metadata = meta.get("metadata") or {}
    if not metadata.get("model"):
        return None
    names = {k: metadata.get(k) for k in ORIGIN_NAMES}
    return {**names, "prediction": kept_prediction(metadata)}


def _as_array(data: Any) -> np.ndarray:
    """Labels layer data (numpy, dask, zarr or a multiscale list) as a numpy array."""
    if isinstance(data, list | tuple):  # multiscale: level 0 is full resolution
        data = data[0]
    return np.asarray(data)


def _png_labels(labels: np.ndarray, meta: dict) -> np.ndarray:
    """The labels to write as PNG: a binary output's labels > 0 as foreground (0/255), as
    are those of a layer with one label value (e.g. a 0/255 PNG mask opened as Labels);
    other layers' instance ids as they are (``write_mask`` makes them a 16-bit PNG)."""
    if (meta.get("metadata") or {}).get("output") == "binary":
        return labels > 0  # e.g. a second object painted as label 2
    if labels.size and labels.min() >= 0 and np.count_nonzero(np.unique(labels)) <= 1:
        return labels > 0
    return labels
