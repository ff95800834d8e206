"""The registry of models shipped inside the package, and loading models by name or path.

``napari_tmunet/weights/registry.json`` lists the shipped checkpoints::

    {"models": [{"name": ..., "modality": "colonoscopy" | "nuclei" | "ultrasound",
                 "file": "tmunet-b-nuclei.pt", "provisional": false, "description": ...,
                 "test_dice": 0.71}]}

``test_dice`` is the mean over the seeds of the model card; what a checkpoint knows about
itself (its mode, threshold, normalisation, its own run's test metrics) stays in the
checkpoint (``Checkpoint.inference_mode``, ``input_config``, ``metrics``).

An entry whose file is absent (e.g. in a source checkout without weights) is listed by
:func:`registry_entries` but not offered by :func:`available_models`.

The environment variable ``NAPARI_TMUNET_WEIGHTS_DIR`` points the registry at another
folder (tests and development only): its own ``registry.json`` if it has one, else the
package's registry with the files looked up in that folder.

Importing this module does not import torch; loading a model does.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .options import MODALITIES  # noqa: F401  (their one home)

# The user's choices live in settings.py; these names stay importable from here.
from .settings import SETTINGS_DIR_ENV, remember_model, remembered_models  # noqa: F401

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

PACKAGE_WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_DIR_ENV = "NAPARI_TMUNET_WEIGHTS_DIR"
REGISTRY_FILE = "registry.json"
CACHE_SIZE = 3  # loaded models kept in memory
# guess_modality: a pixel is clearly coloured when its channels lie this share of the
# image's intensity range apart; an image is colour when this share of its pixels are.
COLOURED_CHROMA = 0.1
COLOURED_SHARE = 0.1
# The texts that say why a shipped model runs on an image: what guess_modality saw, and
# what that modality's shipped model was trained on (weights/registry.json).
MODALITY_CUES = {
    "colonoscopy": "a colour endoscopy image",
    "nuclei": "H&E-stained tissue",
    "ultrasound": "a grey image",
}
TRAINED_ON = {
    "colonoscopy": "colonoscopy (Kvasir-SEG, CVC-ClinicDB)",
    "nuclei": "H&E nuclei (MoNuSeg, CPM-15)",
    "ultrasound": "breast ultrasound (BUSI, UDIAT)",
}


@dataclass(frozen=True)
class ModelEntry:
    """One shipped model of the registry."""

    name: str
    modality: str
    file: str
    provisional: bool
    description: str
    path: Path  # where the checkpoint file is expected
    test_dice: float | None = None  # mean test Dice of its model card, when known

    @property
    def exists(self) -> bool:
        return self.path.is_file()


def weights_dir() -> Path:
    """The folder holding the registry's checkpoint files."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(override) if override else PACKAGE_WEIGHTS_DIR


def registry_entries() -> list[ModelEntry]:
    """Every entry of the registry, whether or not its file is present."""
    folder = weights_dir()
    registry = folder / REGISTRY_FILE
    if not registry.is_file():
        registry = PACKAGE_WEIGHTS_DIR / REGISTRY_FILE
    try:
        data = json.loads(registry.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RuntimeError(f"cannot read the model registry {registry}: {err}") from err
    entries = []
    for raw in data.get("models", []):
        try:
            entry = ModelEntry(
                name=str(raw["name"]),
                modality=str(raw["modality"]),
                file=str(raw["file"]),
                provisional=bool(raw.get("provisional", False)),
                description=str(raw.get("description", "")),
                path=folder / str(raw["file"]),
                test_dice=float(raw["test_dice"]) if "test_dice" in raw else None,
            )
        except KeyError as err:
            raise RuntimeError(f"{registry}: an entry lacks {err}; entry: {raw}") from err
        if entry.modality not in MODALITIES:
            raise RuntimeError(
                f"{registry}: model {entry.name!r} has modality {entry.modality!r}; "
                f"expected one of {MODALITIES}"
            )
        entries.append(entry)
    return entries


def available_models() -> list[ModelEntry]:
    """The registry's models whose checkpoint file is present, in registry order."""
    return [entry for entry in registry_entries() if entry.exists]


def find_model(name: str) -> ModelEntry | None:
    """The available model called ``name``, or None."""
    return next((e for e in available_models() if e.name == name), None)


def model_for_modality(modality: str) -> ModelEntry | None:
    """The available model for ``modality`` (e.g. "colonoscopy"; any case), preferring a
    final model to a provisional one; None when there is none."""
    matching = [e for e in available_models() if e.modality == modality.strip().lower()]
    return min(matching, key=lambda e: e.provisional) if matching else None


def describe_models() -> str:
    """One line per available model, ``name (modality)``, for command-line help."""
    try:
        entries = available_models()
    except RuntimeError as err:  # an unreadable registry must not break --help
        return f"(the model registry cannot be read: {err})"
    return "\n".join(f"  {e.name!r} (or {e.modality})" for e in entries) or "  none installed"


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, Path, bool]:
    """``(display name, checkpoint path, provisional)`` of a shipped model's name, a
    checkpoint file, or a modality name (its shipped model), tried in that order.

    Raises:
        ValueError: for a name that is none of these.
    """
    entry = find_model(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if entry is None and not path.is_file():
        entry = model_for_modality(str(name_or_path))
    if entry is not None:
        return entry.name, entry.path, entry.provisional
    if path.is_file():
        return path.name, path, False
    names = [f"{e.name!r} ({e.modality})" for e in available_models()]
    raise ValueError(
        f"model {str(name_or_path)!r} is neither a shipped model or modality "
        f"({', '.join(names) if names else 'none installed'}) nor an existing checkpoint file."
    )


_cache: OrderedDict[tuple, Checkpoint] = OrderedDict()
_cache_lock = threading.Lock()


def load_model(name_or_path: str | os.PathLike, device: str = "auto") -> Checkpoint:
    """Load a shipped model by name, or a trainer checkpoint by path, on ``device``.

    The last :data:`CACHE_SIZE` loaded models are kept (keyed by file, its modification
    time and the device), so segmenting again does not reload. Callers must not modify
    the returned model.

    Raises:
        ValueError: unknown name or missing file; ``checkpoint.CheckpointError`` for a
        file that is not a valid checkpoint.
    """
    from .checkpoint import load_checkpoint
    from .inference import resolve_device

    name, path, provisional = resolve_model(name_or_path)
    dev = resolve_device(device)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(dev))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    checkpoint = load_checkpoint(path, dev)
    checkpoint.metadata.setdefault("provisional", provisional)
    with _cache_lock:
        _cache[key] = checkpoint
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return checkpoint


def clear_cache() -> None:
    """Forget the loaded models (frees their memory once no one else holds them)."""
    with _cache_lock:
        _cache.clear()


def guess_modality(image: np.ndarray, rgb: bool | None = None) -> str:
    """Guess the modality of an image from its colours.

    Grey -> "ultrasound"; colour whose blue exceeds its green, as in haematoxylin and eosin
    stains (pink and purple) -> "nuclei"; other colour (the reds and oranges of endoscopy)
    -> "colonoscopy". An RGB image counts as grey unless at least :data:`COLOURED_SHARE`
    of its pixels are clearly coloured (channels :data:`COLOURED_CHROMA` of its intensity
    range apart): ultrasound exports are often RGB with a coloured caliper box, text or a
    faint tint, which must not make them "colour". (On the Segment dock's thumbnails,
    the most coloured BUSI image has 1.5% of such pixels; every CVC-ClinicDB, Kvasir-SEG,
    MoNuSeg and CPM-15 image at least 25%.)
    """
    image = np.asarray(image)
    if rgb is None:
        rgb = image.ndim in (3, 4) and image.shape[-1] in (3, 4)
    if not rgb or image.shape[-1] < 3:
        return "ultrasound"
    while image.ndim > 3:  # a stack: judge by its first frame
        image = image[0]
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))
    rgb_values = image[::step, ::step, :3].reshape(-1, 3).astype(np.float64)  # (N, 3)
    spread = max(rgb_values.max() - rgb_values.min(), 1e-12)
    chroma = (rgb_values.max(axis=1) - rgb_values.min(axis=1)) / spread  # (N,)
    if np.mean(chroma > COLOURED_CHROMA) < COLOURED_SHARE:
        return "ultrasound"
    red, green, blue = rgb_values.mean(axis=0)
    if (blue - green) / spread > 0.02 and blue >= 0.6 * red:
        return "nuclei"
    return "colonoscopy"


def not_ultrasound_sign(image: np.ndarray) -> str:
    """What says that a grey image is not an ultrasound scan, in words ("" when nothing
    does): ultrasound machines export 8-bit images, so integer data above 255 (16-bit
    microscopy or CT) or floating-point data come from something else."""
    image = np.asarray(image)
    if image.dtype.kind == "f":
        return f"floating-point ({image.dtype}) data"
    if image.dtype.kind in "iu" and image.size and int(image.max()) > 255:
        return f"{8 * image.dtype.itemsize}-bit data"
    return ""


def shipped_model_reason(modality: str, image: np.ndarray) -> tuple[str, bool]:
    """(why, matches): why the shipped model of ``modality`` (guessed by
    :func:`guess_modality`) is chosen for ``image``, in words, and whether the image
    looks like what that model was trained on. Grey is only a weak hint of ultrasound, so
    the words for it say which grey images the model is for."""
    trained, cue = TRAINED_ON.get(modality, modality), MODALITY_CUES.get(modality, modality)
    if modality != "ultrasound":
        return f"chosen because this looks like {cue}; trained on {trained}", True
    sign = not_ultrasound_sign(image)
    if sign:
        return (
            f"the only shipped model for grey images, but trained on {trained} only, and "
            f"this image holds {sign} (ultrasound exports are 8-bit): no shipped model is "
            "meant for it; check the result, or choose a model of your own",
            False,
        )
    return (
        f"chosen because this is {cue}; trained on {trained} only, not meant for "
        "other grey images such as fluorescence",
        True,
    )


def default_model_for(image: np.ndarray, rgb: bool | None = None) -> ModelEntry | None:
    """The model for the image's guessed modality: the one the user last chose for that
    modality (:func:`remember_model`), else the shipped one, else the first available."""
    models = available_models()
    if not models:
        return None
    modality = guess_modality(image, rgb)
    remembered = find_model(remembered_models().get(modality, ""))
    if remembered is not None:
        return remembered
    return next((m for m in models if m.modality == modality), models[0])
