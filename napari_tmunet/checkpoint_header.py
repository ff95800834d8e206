"""A checkpoint's settings without torch and without its weights (no Qt, no torch).

A checkpoint file (:mod:`napari_tmunet.checkpoint`) is a zip written by ``torch.save``:
its ``data.pkl`` holds the plain dicts (``input_config``, ``metadata``...) and refers to
the weights by key. :func:`read_header` unpickles ``data.pkl`` alone, with every tensor
replaced by None, so the Segment dock can show a model's threshold and confidence as soon
as the model is chosen (a few ms), before the model is loaded. Only the few names a torch
checkpoint's pickle uses are accepted; anything else is refused, so nothing is executed.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

# what torch.save pickles beside the plain dicts: tensors, their storages, ordered dicts
ALLOWED_TORCH = {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_tensor"}


def _stub(*_args, **_kwargs) -> None:
    """Stands for a tensor or a storage: the header needs neither."""
    return None


class _HeaderUnpickler(pickle.Unpickler):
    """Unpickles a torch checkpoint's structure, tensors as None, and nothing else."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ALLOWED_TORCH:
            return _stub
        if module == "torch" and name.endswith("Storage"):
            return _stub
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint header")

    def persistent_load(self, _pid) -> None:
        return None


def read_header(path: str | os.PathLike) -> dict | None:
    """The plain parts of the checkpoint ``path`` (``input_config``, ``metadata``...), its
    weights left out; None when it cannot be read this way (an old or damaged file: the
    full load says why when the model runs)."""
    path = Path(path)
    try:
        stat = path.stat()
        return _read(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return None


@lru_cache(maxsize=16)
def _read(path: str, _mtime_ns: int, _size: int) -> dict | None:
    """:func:`read_header` of one version of a file (its time and size are the cache key)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(names) != 1:
                return None
            payload = _HeaderUnpickler(io.BytesIO(archive.read(names[0]))).load()
    except Exception:  # noqa: BLE001 - not readable this way; the full load reports it
        return None
    return payload if isinstance(payload, dict) else None
