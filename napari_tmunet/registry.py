"""The registry of models shipped inside the package, and loading models by name or path.

``napari_tmunet/weights/registry.json`` lists the shipped checkpoints::

    {"models": [{"name": ..., "modality": "colonoscopy" | "nuclei" | "ultrasound",
                 "file": "tmunet-b-nuclei.pt", "provisional": false, "description": ...,
                 "trained_on": "H&E nuclei (MoNuSeg, CPM-15)", "test_dice": 0.71}]}

``trained_on`` names the training data in the words shown beside the model (written by
``trainer.release``; an older file without it falls back on the description).
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
import logging
import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .options import MODALITIES  # noqa: F401  (their one home)

# The user's choices live in settings.py; these names stay importable from here.
from .settings import (  # noqa: F401
    SETTINGS_DIR_ENV,
    forget_model,
    remember_model,
    remembered_models,
)

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

log = logging.getLogger(__name__)
PACKAGE_WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_DIR_ENV = "NAPARI_TMUNET_WEIGHTS_DIR"
REGISTRY_FILE = "registry.json"
CACHE_SIZE = 3  # loaded models kept in memory
# guess_modality: a pixel is clearly coloured when its channels lie this share of the
# image's intensity range apart; an image is colour when this share of its pixels are.
COLOURED_CHROMA = 0.1
COLOURED_SHARE = 0.1
# guess_modality measures colour against the range between these percentiles of all channel
# values (not min to max: one hot pixel at 65535 in 14-bit data made an H&E slide "grey").
SPREAD_PERCENTILES = (0.1, 99.9)
# guess_modality: a colour image is stained microscopy when at least STAINED_SHARE of its
# strongly coloured pixels (channels STRONG_CHROMA of its range apart: the stain, not a
# faintly tinted background) are purple, pink or blue-violet (blue above green by
# STAIN_MARGIN of the range); measured shares in its docstring.
STRONG_CHROMA = 0.2
STAIN_MARGIN = 0.05
STAINED_SHARE = 0.3
# What guess_modality saw, in the words that say why a shipped model runs on an image (what
# the model was trained on is the registry's ``trained_on``).
MODALITY_CUES = {
    "colonoscopy": "a colour endoscopy image",
    "nuclei": "H&E or similarly stained tissue or cells",
    "ultrasound": "a grey image",
}
# fluorescence_sign: a pixel is near black below this share of the image's intensity range
# (1st to 99.5th percentile) and bright above BRIGHT_LEVEL; a grey image looks like
# fluorescence when at least FLUORESCENCE_DARK_SHARE of its pixels are near black and no
# connected bright region covers more than FLUORESCENCE_LARGEST_OBJECT of it. Measured on
# the Segment dock's thumbnails (tests/test_modality.py): 51 of DSB2018's 53 fluorescence
# images; no UDIAT or BUSI scan, whose tissue is one wide bright region (the smallest: 10.5%
# of a UDIAT scan, 15% of a BUSI one), nor any CVC-ClinicDB or Kvasir-SEG frame.
NEAR_BLACK_LEVEL = 0.1
BRIGHT_LEVEL = 0.25
FLUORESCENCE_DARK_SHARE = 0.35
FLUORESCENCE_LARGEST_OBJECT = 0.08


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
    trained_on: str = ""  # its training data in words, e.g. "breast ultrasound (BUSI, UDIAT)"

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
                trained_on=str(raw.get("trained_on") or _trained_on_fallback(raw)),
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


def _trained_on_fallback(raw: dict) -> str:
    """What a registry entry without ``trained_on`` (an older file) says of its training
    data: the first part of its description, which trainer.release writes from the runs."""
    description = str(raw.get("description", "")).split(";")[0].strip()
    if description:
        return f"what its description says ({description})"
    return f"{raw['modality']} images (the registry does not say which)"


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


def model_modality(name_or_path: str | os.PathLike) -> str:
    """The kind of image a model is for: a shipped model's registry modality, else what its
    checkpoint file records (:func:`checkpoint_modality`, read from the header: no torch,
    no weights); "" when neither says."""
    entry = find_model(str(name_or_path))
    if entry is None and not Path(name_or_path).expanduser().is_file():
        entry = model_for_modality(str(name_or_path))
    if entry is not None:
        return entry.modality
    from .checkpoint_header import read_header

    path = Path(name_or_path).expanduser()
    return checkpoint_modality(path, (read_header(path) or {}).get("metadata"))


def checkpoint_modality(path: str | os.PathLike, metadata: dict | None) -> str:
    """The kind of image the checkpoint ``path`` is for: the ``modality`` its ``metadata``
    records, else, for a Fine-tune run's checkpoint saved before 2026-12-05 that records
    none, its lineage's (:func:`lineage_modality`); "" when neither says. The loaders
    (``checkpoint.load_checkpoint``, the Segment dock's header read) take this rule, so an
    old checkpoint is read as its lineage says without its file being rewritten."""
    recorded = metadata.get("modality") if isinstance(metadata, dict) else None
    if isinstance(recorded, str) and recorded in MODALITIES:
        return recorded
    return lineage_modality(path)


def lineage_modality(path: str | os.PathLike) -> str:
    """The modality a Fine-tune run's checkpoint ``path`` (RUN/train/*.pt) inherits: its
    run's (finetune.json ``modality``), else its start model's, as ``engine.save`` records
    it now: a shipped model's registry modality, a checkpoint's own record, else that
    start's run's, the nearest first; "" for a file of no Fine-tune run, or when none says."""
    from .active_model import run_lineage, run_modality

    found = run_modality(str(path))
    for start in run_lineage(str(path)):
        if found:
            break
        found = _named_modality(start) or _recorded_modality(start) or run_modality(start)
    return found if found in MODALITIES else ""


def _named_modality(name: str) -> str:
    """The registry's modality of the shipped model called ``name`` (its file present or
    not: a run records the name it started from); "" for any other name."""
    try:
        entry = next((e for e in registry_entries() if e.name == name), None)
    except RuntimeError:  # an unreadable registry: the docks say so where it matters
        return ""
    return entry.modality if entry is not None else ""


def _recorded_modality(path: str) -> str:
    """The modality the checkpoint file ``path`` records in its metadata ("" when none)."""
    from .checkpoint_header import read_header

    metadata = (read_header(Path(path).expanduser()) or {}).get("metadata")
    modality = metadata.get("modality") if isinstance(metadata, dict) else ""
    return modality if isinstance(modality, str) and modality in MODALITIES else ""


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
    if path.is_dir():  # a run folder of napari-tmunet-train fit (RUN) or Fine-tune (RUN/train)
        inside = ("best.pt", "last.pt", "train/best.pt", "train/last.pt")
        found = [path / n for n in inside if (path / n).is_file()]
        where = (
            f"pass {found[0]}" if found else "pass a checkpoint file (.pt), e.g. a run's best.pt"
        )
        raise ValueError(f"model {str(name_or_path)!r} is a folder, not a checkpoint file: {where}")
    names = [f"{e.name!r} ({e.modality})" for e in available_models()]
    raise ValueError(
        f"model {str(name_or_path)!r} is neither a shipped model nor a modality "
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
        ValueError: unknown name, missing file or a pre-training checkpoint;
        ``checkpoint.CheckpointError`` for a file that is not a valid checkpoint.
    """
    from .cancel import stoppable
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
    check_segments(checkpoint, path)
    stoppable(checkpoint.model)  # a cancelled Segment run stops it part way
    checkpoint.metadata.setdefault("provisional", provisional)
    with _cache_lock:
        _cache[key] = checkpoint
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return checkpoint


def check_segments(checkpoint: Checkpoint, path: str | os.PathLike) -> None:
    """Raise ValueError naming ``path`` when ``checkpoint`` is a self-supervised
    pre-training checkpoint (``metadata["pretext"]``): it restores images, it does not
    segment, so neither Segment, predict nor evaluate may use it."""
    if checkpoint.metadata.get("pretext"):
        raise ValueError(_pretext_text(path))


def _pretext_text(path: str | os.PathLike) -> str:
    """Why the pre-training checkpoint ``path`` cannot segment, and what to do."""
    return (
        f"{path} is a self-supervised pre-training checkpoint: it restores images and "
        f"does not segment. Fine-tune it on masks first: napari-tmunet-train fit "
        f"--init-checkpoint {path} --data YOUR_DATASET"
    )


def checkpoint_problem(path: str | os.PathLike, segments: bool = True) -> str:
    """Why the checkpoint file ``path`` cannot be used, in the words :func:`load_model`
    raises it (:func:`~napari_tmunet.checkpoint.read_checkpoint`: its checksums, format
    and weights; with ``segments``, also a pre-training checkpoint, which does not
    segment); "" when it reads. It imports torch and reads the whole file (~0.1 s for a
    12 MB model; a picture fails at once): the docks call it off the GUI thread."""
    return _checkpoint_problem(str(path), file_version(path), segments)


def file_version(path: str | os.PathLike) -> tuple[int, int] | None:
    """A file's modification time and size (what tells a rewritten file from the one
    read before); None when it is not there."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=32)
def _checkpoint_problem(path: str, _version: tuple | None, segments: bool) -> str:
    """:func:`checkpoint_problem` of one version of a file (its time and size)."""
    from .checkpoint import CheckpointError, read_checkpoint

    try:
        payload = read_checkpoint(path)
    except CheckpointError as err:
        return str(err)
    metadata = payload.get("metadata") or {}
    return _pretext_text(path) if segments and metadata.get("pretext") else ""


def clear_cache() -> None:
    """Forget the loaded models (frees their memory once no one else holds them)."""
    with _cache_lock:
        _cache.clear()


def colour_shares(image: np.ndarray, rgb: bool | None = None) -> tuple[float, float]:
    """(coloured, stained): the shares of an image's pixels that are clearly coloured
    (channels :data:`COLOURED_CHROMA` of its intensity range apart), and of its strongly
    coloured pixels (:data:`STRONG_CHROMA` apart; the clearly coloured ones when none is)
    that are purple, pink or blue-violet (blue above green by :data:`STAIN_MARGIN` of the
    range). (0, 0) for a grey image, one with fewer than 3 channels, or one with no finite
    pixel. The intensity range is that of the :data:`SPREAD_PERCENTILES`, not min to max,
    so a few hot or saturated pixels change nothing; pixels with a NaN or infinite channel
    are left out (one NaN made every percentile NaN). A stack is judged by its first frame,
    a large image by every k-th pixel (about 65536 of them)."""
    image = np.asarray(image)
    if rgb is None:
        rgb = image.ndim in (3, 4) and image.shape[-1] in (3, 4)
    if not rgb or image.shape[-1] < 3:
        return 0.0, 0.0
    while image.ndim > 3:  # a stack: judge by its first frame
        image = image[0]
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))
    values = image[::step, ::step, :3].reshape(-1, 3).astype(np.float64)  # (N, 3)
    values = values[np.isfinite(values).all(axis=1)]
    if not len(values):  # all NaN (or empty): no colour to see
        return 0.0, 0.0
    low, high = np.percentile(values, SPREAD_PERCENTILES)
    unit = values / max(high - low, 1e-12)  # (N, 3): differences in shares of the range
    chroma = unit.max(axis=1) - unit.min(axis=1)  # (N,)
    coloured = chroma > COLOURED_CHROMA
    if not coloured.any():
        return 0.0, 0.0
    strong = chroma > STRONG_CHROMA
    judged = unit[strong if strong.any() else coloured]  # (M, 3)
    stained = judged[:, 2] - judged[:, 1] > STAIN_MARGIN
    return float(np.mean(coloured)), float(np.mean(stained))


def guess_modality(image: np.ndarray, rgb: bool | None = None) -> str:
    """Guess the modality of an image from its colours (:func:`colour_shares`).

    Grey -> "ultrasound": an RGB image counts as grey unless at least
    :data:`COLOURED_SHARE` of its pixels are clearly coloured, as ultrasound exports are
    often RGB with a coloured caliper box, text or a faint tint. Colour whose strongly
    coloured pixels are mostly purple, pink or blue-violet (at least :data:`STAINED_SHARE`
    of them), as in haematoxylin (and eosin) stains, -> "nuclei"; other colour (the reds,
    oranges and skin pinks of endoscopy) -> "colonoscopy". Only the strongly coloured
    pixels count: a stained slide's pale background is often faintly cream or yellow,
    which outweighed its purple nuclei when the mean colour decided (8 of DSB2018's 12
    stained brightfield images were "colonoscopy", tester37 #1).

    Measured on the Segment dock's thumbnails (``bench/modality_guess.py``, every image
    of each set): clearly coloured pixels, at most 1.6% in a BUSI image, at least 25% in
    every CVC-ClinicDB, Kvasir-SEG, MoNuSeg, CPM-15 and stained DSB2018 image; the stained
    share, at most 6% in every CVC-ClinicDB (550) and Kvasir-SEG (1000) frame (pink
    mucosa has blue about as low as green), at least 63% in every MoNuSeg (44), CPM-15
    (15) and stained DSB2018 (12) image. An image with neither pixels nor colour to judge
    is "ultrasound".
    """
    coloured, stained = colour_shares(image, rgb)
    if coloured < COLOURED_SHARE:
        return "ultrasound"
    return "nuclei" if stained >= STAINED_SHARE else "colonoscopy"


FOLDER_LOOKS = 3  # images of a dataset folder whose modality is guessed (first, middle, last)


def guess_folder_modality(folder: str | os.PathLike, pairs: list | None = None) -> str:
    """The modality most of a few images of a dataset folder look like
    (:func:`guess_modality` of :data:`FOLDER_LOOKS` of its paired images, spread over the
    folder); "" when none can be read (the run itself reports the folder's problems).
    ``pairs``: the folder's pairs when the caller has paired them already (``scan_pairs``)."""
    from .data.datasets import DatasetError, scan_pairs
    from .data.images import ImageReadError, read_image

    if pairs is None:
        try:
            pairs = scan_pairs(folder, check_sizes=False).pairs
        except (DatasetError, OSError):
            return ""
    last = len(pairs) - 1
    picks = sorted({round(i * last / (FOLDER_LOOKS - 1)) for i in range(FOLDER_LOOKS)})
    guesses = []
    for index in picks if pairs else []:
        try:
            image = read_image(pairs[index].image_path)
        except (ImageReadError, OSError):
            continue
        guesses.append(guess_modality(image))
    return Counter(guesses).most_common(1)[0][0] if guesses else ""  # a tie: the first


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


def fluorescence_sign(image: np.ndarray) -> str:
    """What says that a grey image is fluorescence microscopy, in words ("" when nothing
    does): a near-black background over much of it and bright objects that are small and
    apart (:data:`FLUORESCENCE_DARK_SHARE`, :data:`FLUORESCENCE_LARGEST_OBJECT`). Levels are
    shares of the image's own range, so 8-bit, 16-bit and float data are judged alike; an
    RGB image is judged by its channels' mean; NaN or infinite pixels are left out (one
    with none left gets no sign)."""
    from scipy import ndimage as ndi

    grey = np.asarray(image)
    if grey.ndim >= 3 and grey.shape[-1] in (3, 4):
        grey = grey[..., :3].mean(axis=-1)
    while grey.ndim > 2:  # a stack: judge by its first frame
        grey = grey[0]
    step = max(1, int(np.sqrt(grey.size / 65536)))
    grey = grey[::step, ::step].astype(np.float64)  # (h, w)
    finite = np.isfinite(grey)
    if not finite.any():
        return ""
    low, high = np.percentile(grey[finite], [1, 99.5])
    if high <= low:
        return ""
    unit = (grey - low) / (high - low)
    dark = float(np.mean(unit[finite] < NEAR_BLACK_LEVEL))
    if dark < FLUORESCENCE_DARK_SHARE:
        return ""
    labels, count = ndi.label(finite & (unit > BRIGHT_LEVEL), structure=np.ones((3, 3)))
    largest = np.bincount(labels.ravel())[1:].max() / unit.size if count else 0.0
    if largest > FLUORESCENCE_LARGEST_OBJECT:
        return ""
    return (
        f"{dark:.0%} of it near black, with small bright objects, the largest "
        f"{largest:.1%} of the image"
    )


def grey_image_caveat(entry: ModelEntry, image: np.ndarray) -> str:
    """Why the shipped model ``entry`` may not suit the grey ``image``, in words ("" when
    nothing says so): no shipped model is trained for fluorescence microscopy
    (:func:`fluorescence_sign`) or for other than 8-bit grey data (:func:`not_ultrasound_sign`)."""
    trained = entry.trained_on
    bits, fluorescence = not_ultrasound_sign(image), fluorescence_sign(image)
    if fluorescence:
        held = f" and holds {bits}" if bits else ""
        return (
            f"trained on {trained} only, and this image looks like fluorescence microscopy "
            f"({fluorescence}){held}: no shipped model is trained for fluorescence; check the "
            "result, or fine-tune a model on a few of your images with masks (Fine-tune dock) "
            "and run that"
        )
    if bits:
        return (
            f"trained on {trained} only, and this image holds {bits} (ultrasound exports are "
            "8-bit): no shipped model is meant for it; check the result, or choose a model of "
            "your own"
        )
    return ""


def colour_image_caveat(entry: ModelEntry, image: np.ndarray) -> str:
    """Why the shipped model ``entry`` may not suit the colour ``image``, in words ("" when
    nothing says so): the shipped colour models are trained on 8-bit pictures, so integer
    data above 255 (16-bit microscopy or camera data) is not what they know, as for grey
    images (:func:`grey_image_caveat`). Float colour data in [0, 1] is not warned about."""
    image = np.asarray(image)
    bits = not_ultrasound_sign(image) if image.dtype.kind in "iu" else ""
    if not bits:
        return ""
    return (
        f"trained on {entry.trained_on} only, and this image holds {bits} (the shipped "
        "models were trained on 8-bit pictures): no shipped model is meant for it; check the "
        "result, or choose a model of your own"
    )


def image_caveat(entry: ModelEntry, image: np.ndarray, modality: str) -> str:
    """Why the shipped model ``entry`` may not suit ``image``, seen as ``modality``, in
    words ("" when nothing says so): :func:`grey_image_caveat` for a grey image,
    :func:`colour_image_caveat` for a colour one."""
    if modality == "ultrasound":
        return grey_image_caveat(entry, image)
    return colour_image_caveat(entry, image)


def shipped_model_reason(entry: ModelEntry, image: np.ndarray) -> tuple[str, bool]:
    """(why, fits): why the shipped model ``entry``, of the modality that
    :func:`guess_modality` saw in ``image``, is chosen, in words, and whether the image looks
    like what it was trained on (``entry.trained_on``). Grey is only a weak hint of
    ultrasound, so the words for it say which grey images the model is for."""
    trained, cue = entry.trained_on, MODALITY_CUES.get(entry.modality, entry.modality)
    if entry.modality != "ultrasound":
        caveat = colour_image_caveat(entry, image)
        if caveat:
            return f"chosen because this looks like {cue}, but {caveat}", False
        return f"chosen because this looks like {cue}; trained on {trained}", True
    caveat = grey_image_caveat(entry, image)
    if caveat:
        return f"the only shipped model for grey images, but {caveat}", False
    return (
        f"chosen because this is {cue}; trained on {trained} only, not meant for "
        "other grey images such as fluorescence",
        True,
    )


# How :func:`other_modality_caveat` says to switch to the image's modality's shipped model
# ({model}: its name): in the Segment dock's words, or a command line's.
GO_BACK = "choose {model} to go back"


def users_choice(
    entry: ModelEntry, image: np.ndarray, modality: str, why: str, switch: str = GO_BACK
) -> ModelChoice:
    """The shipped model ``entry`` that the user chose for images of ``modality`` (``why``:
    how, in words), run on ``image``: it does not fit when it was trained on another
    modality, or when :func:`image_caveat` warns about the image (the choice is per
    modality, the caveat per image). ``switch``: as for :func:`other_modality_caveat`."""
    caveat = other_modality_caveat(entry, modality, switch) or image_caveat(entry, image, modality)
    if caveat:
        return ModelChoice(entry, f"{why}, but {caveat}", False)
    return ModelChoice(entry, why, True)


def other_modality_caveat(entry: ModelEntry, modality: str, switch: str = GO_BACK) -> str:
    """Why the shipped model ``entry`` does not suit an image of ``modality``, in words, and
    how to go back to that modality's shipped model; "" when ``entry`` is of ``modality``
    (:func:`modality_caveat`)."""
    return modality_caveat(entry.modality, modality, entry.name, switch=switch)


def modality_caveat(
    trained: str, modality: str, name: str = "", source: str = "", switch: str = GO_BACK
) -> str:
    """Why a model trained on ``trained`` images (``source``: how that is known, e.g.
    " (its checkpoint says so)") does not suit an image that looks like ``modality``, in
    words, and how to switch to that modality's shipped model if it is not the model
    (``name``) itself (``switch``, its name as ``{model}``); "" when ``trained`` is
    ``modality`` or not known ("")."""
    if not trained or trained == modality:
        return ""
    words = f"it was trained on {trained} images{source} and this image looks like {modality}"
    shipped = model_for_modality(modality)
    if shipped is not None and shipped.name != name:
        words += "; " + switch.format(model=shipped.name)
    return words


def remembered_model(modality: str) -> tuple[ModelEntry | None, str]:
    """(the shipped model the user chose for images of ``modality`` in an earlier session,
    or None; a note, or "").

    A remembered shipped model of another modality (written by an older version, which
    kept any model picked once) is not used: it is forgotten, and the note says so once.
    """
    entry = find_model(remembered_models().get(modality, ""))
    if entry is None or entry.modality == modality:
        return entry, ""
    forget_model(modality)
    note = (
        f"your earlier pick {entry.name} is no longer used for {modality} images, as it was "
        f"trained on {entry.modality} images"
    )
    log.warning("napari-tmunet: %s", note)
    return None, note


@dataclass(frozen=True)
class ModelChoice:
    """The model chosen for an image (None: no model installed), why in words, and whether
    the image looks like what the model was trained on (a shipped model the user chose is
    judged by the image too: :func:`users_choice`)."""

    entry: ModelEntry | None
    why: str
    fits: bool


def choose_model(
    image: np.ndarray, rgb: bool | None = None, modality: str | None = None
) -> ModelChoice:
    """The model for ``image`` (a thumbnail is enough) and why: the one the user last chose
    for its modality (:func:`remembered_model`: one of that modality; still warned about as
    :func:`users_choice` says), else the modality's shipped model, else the first available
    one.

    Args:
        rgb: whether the last axis holds colour (None: guessed from the shape).
        modality: the image's modality when already known (default: :func:`guess_modality`).
    """
    modality = modality or guess_modality(image, rgb)
    remembered, note = remembered_model(modality)
    if remembered is not None:
        return users_choice(
            remembered, image, modality, f"your earlier choice for {modality} images"
        )
    choice = _default_choice(image, modality)
    return replace(choice, why=f"{choice.why} ({note})") if note else choice


def _default_choice(image: np.ndarray, modality: str) -> ModelChoice:
    """The shipped model of ``modality`` for ``image``, else the first one installed."""
    models = available_models()
    shipped = model_for_modality(modality)
    if shipped is not None:
        return ModelChoice(shipped, *shipped_model_reason(shipped, image))
    if models:
        return ModelChoice(models[0], f"no {modality} model installed: the first one", True)
    return ModelChoice(None, "no model installed", True)


def default_model_for(image: np.ndarray, rgb: bool | None = None) -> ModelEntry | None:
    """The model :func:`choose_model` chooses for the image (None when none is installed)."""
    return choose_model(image, rgb).entry
