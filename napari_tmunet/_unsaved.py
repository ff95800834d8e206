"""Which Labels layers of this plugin hold corrections that no file keeps, and saving them.

A Labels layer is the plugin's (:func:`is_ours`) when Segment made it, or this plugin
opened it (its reader, a sample, Layers > Convert to mask). Each of those records the
content of the label array it made in :data:`_KEPT` (:func:`note_kept`), and so does the
TM-UNet mask writer for the array of each layer it saves (File > Save Selected Layers,
type "TM-UNet mask": napari hands it the layer's own array), while a Segment output keeps
the digest of the labels as it wrote them in its metadata. A layer of ours whose labels
are neither (:func:`unsaved_layers`) holds corrections that would be lost with the
window. By content, not by paint events: a stroke undone leaves the layer as it was, and
labels changed without events show. By array, not by content alone: another window's
layer painted alike was not saved by this one's save.

A save by another writer (napari's own "labels" TIFF) is not seen: napari reports
neither the file nor the writer to the layer (``layer.source`` keeps the file it was
read from), so such a layer still counts as unsaved; saving it again is harmless.

No Qt here: the close question itself is ``_close_guard``'s.
"""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path

import numpy as np

PLUGIN = "napari-tmunet"
DIGEST_KEY = "tmunet_digest"  # metadata: the digest of the labels as Segment wrote them
# metadata keys that this plugin's reader and Convert to mask give the Labels they make
_OPENED_KEYS = ("path", "mask_rule")
# id of a label array -> (a weak reference to it, the digest of its content that a file
# keeps, or that this plugin made it with)
_KEPT: dict[int, tuple[weakref.ref, str]] = {}


def content_digest(data) -> str:
    """Content hash of a label array: its shape, dtype and bytes."""
    array = np.ascontiguousarray(np.asarray(data))
    h = hashlib.blake2b(digest_size=16)
    h.update(str((array.shape, array.dtype.str)).encode())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def note_kept(data) -> None:
    """Record the content of the label array ``data`` as kept: read from, or written to,
    a file, or made by this plugin as it is (a layer holding it has nothing to lose)."""
    if not isinstance(data, np.ndarray):  # lazy labels (never made here) are not read whole
        return
    key = id(data)
    # the entry goes with the array (its id may then be another array's)
    _KEPT[key] = (weakref.ref(data, lambda _ref: _KEPT.pop(key, None)), content_digest(data))


def _kept(data: np.ndarray, digest: str) -> bool:
    """Whether ``data`` holds the content last recorded for it (:func:`note_kept`)."""
    ref, kept = _KEPT.get(id(data), (None, None))
    return ref is not None and ref() is data and kept == digest


def is_ours(layer) -> bool:
    """Whether ``layer`` is a Labels layer that Segment made or this plugin opened (its
    reader, a sample, Convert to mask)."""
    from napari.layers import Labels

    from .postprocess import made_by_segment

    if not isinstance(layer, Labels):
        return False
    meta = layer.metadata or {}
    if made_by_segment(meta) or DIGEST_KEY in meta or any(k in meta for k in _OPENED_KEYS):
        return True
    source = getattr(layer, "source", None)
    sample = getattr(source, "sample", None) or ("",)
    return getattr(source, "reader_plugin", None) == PLUGIN or sample[0] == PLUGIN


def has_unsaved_edits(layer) -> bool:
    """Whether ``layer`` (one of ours) holds labels that neither Segment wrote nor a file
    keeps (:data:`_KEPT`)."""
    from ._widget_common import full_data

    data = full_data(layer)
    if not isinstance(data, np.ndarray):
        return False  # lazy labels: read from a file, never painted whole here
    digest = content_digest(data)
    return not _kept(data, digest) and digest != (layer.metadata or {}).get(DIGEST_KEY)


def unsaved_layers(layers) -> list:
    """The Labels layers of ours in ``layers`` with corrections no file keeps."""
    return [layer for layer in layers if is_ours(layer) and has_unsaved_edits(layer)]


def unsaved_text(layers) -> str:
    """'image03 labels has unsaved corrections', naming each layer."""
    names = [layer.name for layer in layers]
    if len(names) == 1:
        return f"{names[0]} has unsaved corrections."
    return f"{', '.join(names[:-1])} and {names[-1]} have unsaved corrections."


def picture_folder(layer, layers) -> Path | None:
    """The folder of the file of ``layer``'s picture: the image layer it was made from or
    belongs to (``_image_layers.owning_picture``), else the folder of the file it was
    read from; None when no such file is known."""
    from ._image_layers import layer_source_path, owning_picture

    picture = owning_picture(layer)
    images = [other for other in layers if other is not layer and other.name == picture]
    for candidate in [*images, layer]:
        path = layer_source_path(candidate)
        if path and Path(path).exists():
            path = Path(path)
            return path if path.is_dir() else path.parent
    return None


def free_path(folder: Path, name: str) -> Path:
    """``folder/<name>.tif``, or ``<name> 2.tif``, ``<name> 3.tif``... the first that does
    not exist (a save never replaces a file)."""
    stem = "".join("_" if c in '/\\:*?"<>|' else c for c in name).strip() or "labels"
    path, number = folder / f"{stem}.tif", 1
    while path.exists():
        number += 1
        path = folder / f"{stem} {number}.tif"
    return path


def save_layer(layer, layers, data_dir: Path) -> Path:
    """Write ``layer`` as napari's Save does with the TM-UNet mask writer (a TIFF keeps
    its place, and a Segment result its model and prediction), beside its picture
    (:func:`picture_folder`) under a new name (:func:`free_path`); where there is no
    picture file, or its folder cannot be written, into ``data_dir``. Returns the file.

    Raises:
        OSError or ``_writer.LabelsNotSaved``: it could not be written in either place
            (the message names the file).
    """
    from ._writer import write_labels

    _data, meta, _kind = layer.as_layer_data_tuple()
    folder = picture_folder(layer, layers)
    if folder is not None:
        try:
            return Path(write_labels(str(free_path(folder, layer.name)), layer.data, meta)[0])
        except OSError:
            pass  # e.g. a read-only folder of pictures: the data dir then
    data_dir.mkdir(parents=True, exist_ok=True)
    return Path(write_labels(str(free_path(data_dir, layer.name)), layer.data, meta)[0])
