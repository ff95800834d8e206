"""Fine-tuning on the user's corrected masks: the run folder, the job and its scores (no Qt).

Before anything is trained, the training pairs and the configuration are written to a
run folder, so nothing painted is lost if training or napari crashes::

    RUN/data/images, RUN/data/masks   the training data (masks as painted: PNG 0/255,
                                      or TIFF instance labels)
    RUN/data/split.json               which images train and which are held out
    RUN/data/whole-image/             the image a strip is held out of, whole, its mask
                                      and (when known) the map of the user's edits: the
                                      held-out strip is scored inside it
    RUN/data/held-out-edits/          images held out whole: their edit maps
    RUN/finetune.json                 starting model, layers, held-out part, commands
    RUN/config.json                   the TrainConfig (same format as napari-tmunet-train)
    RUN/train/                        the engine's run folder: best.pt, last.pt,
                                      metrics.jsonl, curves.png, train.log
    RUN/comparison.json               Dice / HD of the old and new model, held-out part,
                                      their scores where the edits are and the verdict
                                      (compare_models); Dice null and false-positive
                                      pixels where the held-out part has no foreground
    RUN/start_scores.json             the starting model's held-out scores, keyed by the
                                      model and the held-out part: a resumed run takes
                                      them instead of scoring it again (_score_start)

Images are written in the colours Segment gives the model: a grey + alpha image as its
grey, a CMYK one as RGB (``training_pairs``' ``conversion``), never the stored inks.

Held out for validation: where the fewest of the user's edits are, so that the
corrections train (a pathologist's fixes are what the fine-tune is for; held-out pixels
are never trained on). A Segment output keeps the model's own prediction, so the pixels
the user changed are known; with a single image, the 25% strip (across its longer side)
holding the fewest edited pixels is held out (none when a strip without edits exists,
at most about a quarter of them), written as a separate file so that no training crop
overlaps it; among equals, or when the edits are unknown (e.g. a hand-painted mask), the
last strip holding enough of the mask's foreground to compare the models on, else the
right-most or bottom strip; always among the strips that leave a quarter of the mask's
foreground to train on (a small lesion is not held out whole). With several images, the
eighth of them with the fewest edits, whole (the last ones of equals: a dataset folder's
reference masks, whose edits are unknown, before corrected layers), unless the other
images' masks are all empty (a stroma tile whose false nuclei were erased): then a strip
of it, as of a single image, and the rest of it and the other images train. The held-out part
then guards the rest (is the model as good where the user did not correct?), and
whether the corrections were learnt is scored on those trained on (a strip's image is
run whole, so its trained edits are scored too, :func:`trained_edit_scores`). The
fine-tuned model is named after what trains (the pairs' images of which some pixels
train, and the dataset folder), never after an image held out whole. A
strip is scored the way Segment sees it: the model runs on the whole image and only the
strip's pixels count (a strip run alone, stretched to a resize-mode model's input, is
not what Segment sees: colonoscopy Dice 0.94 -> 0.00); the engine's validation, which
picks ``best.pt``, does the same (its ``validate`` callback), as do the verdict's scores
(:func:`held_out_scores`): a checkpoint whose weights a validation of the run scored
(``best.pt`` written at the last step) takes that validation's scores, not a second
scoring of minutes on a CPU (:func:`weights_key`).
A headless ``fit --resume`` of such a run (and its restart and rerun commands) validates
the same way: ``napari-tmunet-train fit`` gets the callback from the run's finetune.json
(:func:`recorded_validation`); ``napari-tmunet-train evaluate RUN/train/best.pt --part
valid`` scores the strip so too (:func:`recorded_strip`). Pairs the user did not edit
where others are edited (e.g. the untouched frames of a Segment output stack: the model's
own output) are left out of the data, and so are a dataset folder's images that are also
open as pairs (the open pair, with the corrections, is the one trained on or held out);
the plan (finetune.json ``left_out``) and the status name them.
A held-out part without foreground (tiles without nuclei, lesion-free frames kept out)
gives no Dice worth the name (1.0 for a model that finds nothing, 0.0 for one false
pixel): the models are scored there by their false-positive pixels (``false_positive_px``,
``val_false_positive_px`` in metrics.jsonl, Dice null in comparison.json), no ``best.pt``
is picked by it and the last checkpoint is the model (the result's ``checkpoint_note``).
The report says how many edited pixels and objects the before/after comparison rests on,
and when they are too few to mean much. :func:`compare_models` is the rule that makes the
fine-tuned model active, or not, or leaves the choice to the user: with known edits, where
the user's corrections are (the held-out reference is then mostly the starting model's own
output, so Dice against it alone favours the starting model), else by held-out Dice. Stop
is checked between the phases and between forward passes of the scoring; a run stopped
before a training step is not scored again (:func:`run_folder_state` tells such a folder,
"not started", from others). A run trained to its end but stopped before its comparison
(napari killed or closed then: "uncompared", or a resume at its last step) is compared
when resumed, training nothing; a comparison written but never shown
(comparison.json ``shown`` false, :func:`saved_verdict`) is shown when its folder is
chosen, then marked shown (:func:`mark_shown`).

Training is :func:`napari_tmunet.training.engine.fit`, the code path of ``napari-tmunet-train``,
started from the given model and in the mode that model segments in
(``Checkpoint.inference_mode``): whole images resized to its input size for a resize-mode
model (colonoscopy, ultrasound), random crops at native resolution of that size for a
tile-mode one (nuclei). The run's ``train_config.mode`` is what Segment reads, so the
fine-tuned checkpoints segment as the starting model does; they also keep its input size,
normalisation, threshold and what it is (its modality, hence Segment's instance output
for nuclei; ``engine.INHERITED_METADATA``). The held-out before/after comparison scores
each model in that mode too.
:func:`run_finetune` is the whole job; progress reaches the caller through plain
callbacks, and a ``threading.Event`` stops it (the best checkpoint is kept). A stopped
run goes on headless::

    napari-tmunet-train fit --run-dir RUN/train --resume
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from shlex import quote
from typing import Any

import numpy as np

from .. import active_model, registry, settings
from ..data.colour_spaces import conversion_problem, convert_colours
from ..data.images import write_image, write_mask
from ..evaluation import EvaluationStopped
from ..storage import atomic_path, write_json

PLAN_FILE = active_model.RUN_PLAN  # RUN/finetune.json: the run's record (module docstring)
START_SCORES = "start_scores.json"  # RUN/start_scores.json: the starting model's scores
HOLDOUT_FRACTION = 0.25  # strip of an image kept for validation (_strip_of)
# Fewer edited pixels or objects than this in the held-out part: the comparison of the
# old and new model rests on too little to mean much (the report says so).
MIN_EDITED_PIXELS = 300
MIN_EDITED_OBJECTS = 3
MIN_TRAIN_SIDE = 16  # pixels; a thinner piece beside the held-out strip is not trained on
# a single image's training pieces keep this share of its foreground where a strip allows
MIN_TRAIN_FOREGROUND = 0.25
# The comparison where the user's corrections are (compare_models): the edited pixels of
# the held-out part and this many pixels around them
EDIT_MARGIN = 3
# ... with a guard on the whole held-out part (mostly the starting model's output, which
# the user saw and left as it was): the fine-tuned model is made active only when its
# Dice there is not lower than the starting model's (to the 4 decimals shown); the user
# decides up to REST_RUIN lower, beyond it the fine-tune ruins the rest. Measured (CPM-15
# image01, 6 boxes corrected, 60 steps): held-out Dice 0.967 -> 0.901 went with
# ground-truth Dice on two other images 0.891 -> 0.813 and 0.842 -> 0.798: a drop there
# can be real harm, so no drop is let through unseen (tester33 #8: 0.4330 -> 0.4108 was).
REST_RUIN = 0.20
# Why a gain on the corrections trained on alone does not make the model active (the
# held-out strip holds too few of them): a model can memorise the pixels it trained on
TRAINED_ONLY = (
    "only of those it trained on (too few are held out), which is not an independent test"
)
# ... and the one-clause reason (a headline's) where the held-out part holds too few edits
FEW_HELD_OUT = "too few of your edits were held out to decide"
# ... and a difference in the correction zone counts when it is more than this many
# standard errors (zone_difference)
ZONE_Z = 2.0
# Reference masks: a held-out Dice below this for both models means neither finds the
# objects there (e.g. a held-out image of another modality than the starting model's, which
# scores 0.0000 -> 0.0000): a tie at zero is no evidence for the fine-tuned model.
NOTHING_FOUND_DICE = 0.05
# Reference masks: a starting model that scores this much on the held-out part is scored
# against (nearly) its own output, e.g. a Segment result saved, corrected and reopened
# (the file keeps no record of which pixels were edited: 0.9888 on a nuclei tile with 1571
# corrected pixels); any change, the corrections learnt included, lowers the fine-tuned
# model's score there. An independent reference scores lower (the colonoscopy model on
# CVC-ClinicDB frame 2, its best: 0.9689).
OWN_OUTPUT_DICE = 0.98
# The comparison rows' note when the held-out part has no foreground (their scores blank)
NO_HELD_OUT_FOREGROUND = "no foreground in the held-out part"
# The result's note on the model when the held-out part has no foreground: no best.pt
LAST_CHECKPOINT_NOTE = (
    "the model is the last checkpoint, step {step}: with no foreground held out, no best "
    "one is picked"
)
# held_out_scores' overlap scores and distances, None where the held-out part has no
# foreground (a model that finds nothing scores Dice 1.0 there, one false pixel 0.0)
_OVERLAP_SCORES = ("dice", "iou", "precision", "recall", "hd", "hd95")
# comparison_rows' columns and the scores they show
_ROW_SCORES = {
    "dice": "dice", "iou": "iou", "precision": "precision", "recall": "recall",
    "hd_px": "hd", "hd95_px": "hd95",
}  # fmt: skip
TRAINING_PHASE = "training..."  # the phase text while the engine trains
VALIDATING_PHASE = "step {step}/{total}: scoring the held-out part..."  # between steps
FOLDER_PROBLEMS_SHOWN = 5  # problem files a dataset folder's message lists (the rest counted)
_TURNS = {"hflip": 0.5, "vflip": 0.5, "rot90": True}
AUGMENTATIONS = {  # name -> TrainConfig augmentation fields (see batches.Augment)
    "flips + 90° turns": _TURNS,
    "flips, turns, zoom, rotation, colour": {**_TURNS, "zoom": 0.25, "rotate": 45, "colour": 0.2},
    "horizontal flips (paper)": {"hflip": 0.25, "vflip": 0.0, "rot90": False},
    "none": {"hflip": 0.0, "vflip": 0.0, "rot90": False},
}


def new_run_folder() -> Path:
    """A fresh, not yet existing run folder in the user's runs folder (a time stamp)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = settings.runs_dir() / stamp
    path, k = base, 2
    while path.exists():
        path, k = base.with_name(f"{stamp}-{k}"), k + 1
    return path


# ------------------------------------------------------------------------- data


@dataclass
class TrainingPair:
    """One image and its corrected mask (labels as painted; > 0 is foreground)."""

    name: str
    image: np.ndarray  # (H, W) or (H, W, C)
    labels: np.ndarray  # (H, W) integer or bool
    source: str = ""  # where it came from, for finetune.json
    predicted: np.ndarray | None = None  # (H, W) the model's own labels, when known

    def edited(self) -> np.ndarray | None:
        """(H, W) bool: pixels whose foreground the user changed; None when unknown."""
        if self.predicted is None:
            return None
        return (np.asarray(self.labels) > 0) != (np.asarray(self.predicted) > 0)


def training_pairs(
    image: np.ndarray,
    labels: np.ndarray,
    name: str,
    rgb: bool,
    source: str = "",
    predicted: np.ndarray | None = None,
    conversion: str = "",
) -> list[TrainingPair]:
    """Pairs of a 2-D image (one) or a stack of frames (one per frame) and its labels.

    ``predicted``: the model's own labels before the user's corrections (same shape as
    ``labels``), when known; the held-out part is then chosen where the fewest edits are.
    ``conversion``: how the image's colours are converted for the model, as Segment does
    (:func:`~napari_tmunet.data.colour_spaces.colour_conversion`): a grey + alpha image
    trains as grey, a CMYK one as RGB.

    Raises:
        ValueError: shapes that do not match, labels that are not integers, or colours
            that cannot be converted.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    problem = conversion_problem(image, conversion)
    if problem:
        raise ValueError(f"cannot train on {source or name}: {problem}")
    image = convert_colours(image, conversion)  # grey + alpha: (H, W); CMYK: (H, W, 3)
    spatial = image.shape[:-1] if rgb else image.shape
    if labels.dtype != bool and labels.dtype.kind not in "iu":
        raise ValueError(f"{source or name}: labels of dtype {labels.dtype}; expected integers")
    if tuple(labels.shape) != tuple(spatial) or len(spatial) not in (2, 3):
        raise ValueError(
            f"{source or name}: the image is {tuple(spatial)} (spatial) but the labels are "
            f"{tuple(labels.shape)}; pick the Labels layer painted on this image (2-D, or a "
            "stack of 2-D frames)"
        )
    if predicted is not None and np.shape(predicted) != tuple(labels.shape):
        predicted = None  # not the prediction of these labels: edits unknown
    if len(spatial) == 2:
        return [TrainingPair(name, image, labels, source, predicted)]
    return [
        TrainingPair(
            f"{name}-z{z}",
            image[z],
            labels[z],
            f"{source} frame {z}",
            None if predicted is None else predicted[z],
        )
        for z in range(spatial[0])
    ]


def holdout_strip(
    shape: tuple[int, int], edited: np.ndarray | None = None, foreground: np.ndarray | None = None
) -> tuple[int, int, int]:
    """``(axis, start, stop)``: the held-out strip of a single image, 25% across its longer side.

    Of the strips at steps of 1/16 of the side, the one holding the fewest ``edited``
    pixels (the user's corrections train: at most about a quarter of them is held out,
    none when a strip without edits exists), then the one holding
    :data:`MIN_EDITED_PIXELS` of ``foreground`` (else the most of it: a strip without any
    compares nothing), then the last; without either, the right-most (axis 1), or the
    bottom (axis 0) of an image taller than wide. With ``foreground`` (the mask), only
    strips whose training pieces keep :data:`MIN_TRAIN_FOREGROUND` of it are chosen,
    else ones that keep some (a small lesion inside one strip is not held out whole:
    nothing would be left to train on).
    """
    h, w = shape[:2]
    axis = 1 if w >= h else 0
    n = shape[axis]
    if n < 2:
        raise ValueError(f"image of shape {tuple(shape)} is too small to hold a part out")
    width = max(1, round(n * HOLDOUT_FRACTION))
    starts = sorted({*range(0, n - width + 1, max(1, n // 16)), n - width})
    edits = _profile(edited, axis, n)
    fewest = [edits[s] - edits[s + width] for s in starts]  # minus the edits held out
    held = _profile(None if foreground is None else np.asarray(foreground) > 0, axis, n)
    enough = [min(held[s + width] - held[s], MIN_EDITED_PIXELS) for s in starts]
    kept = _train_foreground(foreground, axis, n, starts, width)
    best = max(range(len(starts)), key=lambda i: (*kept[i], fewest[i], enough[i], i))
    return axis, starts[best], starts[best] + width


def _profile(mask: np.ndarray | None, axis: int, n: int) -> np.ndarray:
    """Cumulative count of ``mask``'s pixels along ``axis`` ((n + 1,), zeros for None)."""
    if mask is None:
        return np.zeros(n + 1, int)
    return np.concatenate([[0], np.cumsum(np.asarray(mask).sum(axis=1 - axis))])


def train_pieces(start: int, stop: int, n: int) -> list[tuple[int, int]]:
    """The pieces beside a held-out strip that train: those at least
    :data:`MIN_TRAIN_SIDE` thick, else the thicker one (a tiny image)."""
    pieces = [(a, b) for a, b in ((0, start), (stop, n)) if b - a >= MIN_TRAIN_SIDE]
    return pieces or [max(((0, start), (stop, n)), key=lambda p: p[1] - p[0])]


def _train_foreground(foreground, axis: int, n: int, starts: list[int], width: int) -> list:
    """For each strip start: whether its training pieces keep :data:`MIN_TRAIN_FOREGROUND`
    of ``foreground`` and whether they keep any ((True, True) for all without it)."""
    if foreground is None or not np.any(foreground):
        return [(True, True)] * len(starts)
    profile = _profile(np.asarray(foreground) > 0, axis, n)
    kept = []
    for s in starts:
        pixels = sum(profile[b] - profile[a] for a, b in train_pieces(s, s + width, n))
        kept.append((pixels >= MIN_TRAIN_FOREGROUND * profile[-1], pixels > 0))
    return kept


def edit_summary(edited: np.ndarray | None) -> dict[str, Any]:
    """Edited pixels and objects (connected regions) of an edit map, and whether they
    are enough for a meaningful before/after comparison."""
    if edited is None:
        return {"known": False, "pixels": 0, "objects": 0, "enough": False}
    from scipy import ndimage as ndi

    edited = np.asarray(edited, bool)
    objects = int(ndi.label(edited)[1]) if edited.any() else 0
    pixels = int(edited.sum())
    enough = pixels >= MIN_EDITED_PIXELS and objects >= MIN_EDITED_OBJECTS
    return {"known": True, "pixels": pixels, "objects": objects, "enough": enough}


def write_dataset(
    pairs: list[TrainingPair], data_dir: str | Path, folder: str | Path | None = None
) -> dict[str, Any]:
    """Write pairs (and copy a dataset folder's pairs) to ``data_dir`` with a fixed split.

    Masks are written first (they are what the user made), then images, then
    ``split.json``. Names: ``01-<layer name>``..., ``folder-<name>`` for copied pairs
    (file-safe; the texts name the layers and the folder's files as they are,
    :func:`shown_name`). A folder image that is also an open pair is left out
    (:func:`folder_copies_left_out`).

    Returns:
        ``{"split": {...}, "held_out": text, "names": [...], "pairs": [...] (the
        written pairs' name, source, shape), "trained_on": [...] (what trains, for the
        model's name: :func:`_trained_on`), "edits": {...}, "left_out": text,
        "region": {...} or None, "edit_maps": {...}}`` (see :func:`edited_only`);
        ``region``, when a strip is held out (:func:`_strip_of`): the strip (``axis``,
        ``start``, ``stop``) and its image's whole picture, mask and, when known, map of
        the user's edits (``image``, ``mask``, ``edited``, relative to ``data_dir``);
        ``edit_maps``, for images held out whole: their edit maps, when known (name ->
        path).
    Raises:
        ValueError: no data, or every mask empty; a dataset folder with problems
            (:func:`folder_pairs`); nothing but the model's own output
            (:func:`nothing_corrected`).
    """
    from ..data.datasets import check_pair, save_split
    from .run_data import check_foreground

    data_dir = Path(data_dir)
    copied = folder_pairs(folder) if folder else []
    if not pairs and not copied:
        raise ValueError("no training data: add an (image, Labels) pair or choose a dataset folder")
    pairs, left_out = edited_only(pairs)
    copied, open_note = folder_copies_left_out(pairs, copied)
    problem = nothing_corrected(pairs, bool(copied))
    if problem:
        raise ValueError(problem)
    left_out = "; ".join(note for note in (left_out, open_note) if note)
    folder = folder if copied else None
    if pairs and not copied:
        fix = "paint (or correct) some foreground first"
        check_foreground({"train": [p.labels for p in pairs]}, "the Labels layers", fix)
    used: set[str] = set()

    def unique(name: str) -> str:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
        out, k = base, 2
        while out.lower() in used:
            out, k = f"{base}-{k}", k + 1
        used.add(out.lower())
        return out

    items = [(unique(f"{i + 1:02d}-{p.name}"), p) for i, p in enumerate(pairs)]
    items += [(unique(f"folder-{pair.name}"), pair) for pair in copied]
    if len(items) == 1 and not pairs:  # one folder image: decode it to split it
        image, mask, _ = check_pair(copied[0])
        source = str(copied[0].image_path)
        items = [(items[0][0], TrainingPair(copied[0].name, image, mask, source))]

    region, edit_maps = None, {}
    strip = _strip_of(items)
    if strip is None:
        written, split, held, edits = _split_many(items)
        edit_maps = _write_edit_maps(items, split["valid"], data_dir)
    else:
        written, split, held, edits, region = _split_strip(items, strip, data_dir)
    edits["all_pixels"] = _all_edited_pixels(items)
    _check_train_foreground(written, split, folder)

    for name, _, labels in written:
        suffix = ".tif" if labels.size and int(labels.max()) > 1 else ".png"
        write_mask(data_dir / "masks" / f"{name}{suffix}", labels)
    for name, pair in items:  # copied pairs keep their files and formats
        if not isinstance(pair, TrainingPair):
            _copy_folder_pair(pair, name, data_dir)
    for name, image, _ in written:
        write_image(data_dir / "images" / f"{name}.tif", image)
    save_split(data_dir / "split.json", split)
    names = [name for name, _ in items]
    kept = [(name, p) for name, p in items if isinstance(p, TrainingPair)]
    described = [{"name": n, "source": p.source, "shape": list(p.labels.shape)} for n, p in kept]
    info = {"split": split, "held_out": held, "names": names, "pairs": described}
    info["trained_on"] = _trained_on(items, split["train"], pairs, folder)
    return {**info, "edits": edits, "left_out": left_out, "region": region, "edit_maps": edit_maps}


def _copy_folder_pair(pair, name: str, data_dir: Path) -> None:
    """Copy a dataset folder's pair (a ``datasets.Pair``) into the run's ``data_dir`` as
    ``images/NAME.*`` and ``masks/NAME.*``, each file as it is; a picture's several mask
    files (BUSI's ``NAME_mask.png`` + ``NAME_mask_1.png``) as their union, which is what
    trains (``datasets.read_pair_mask``), written as ``masks/NAME.png``."""
    from ..data.datasets import read_pair_mask

    copies = [(pair.image_path, "images")]
    if pair.extra_masks:
        write_mask(data_dir / "masks" / f"{name}.png", read_pair_mask(pair)[0])
    else:
        copies.insert(0, (pair.mask_path, "masks"))
    for src, sub in copies:
        dest = data_dir / sub / f"{name}{Path(src).suffix.lower()}"
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)


def _trained_on(items: list, train: list[str], pairs: list, folder) -> list[str]:
    """What the run trains on, for the fine-tuned model's name: the open pairs' images
    (a stack's frames as its layer) of which some pixels train, in order, then the
    dataset folder when some of its images train; never a held-out image."""
    names: list[str] = []
    for name, item in items:
        if name not in train and f"{name}-train" not in train:
            continue  # held out whole
        if any(item is p for p in pairs):
            label = _layer_name(item)
        else:
            label = Path(folder).name if folder else item.name
        if label not in names:
            names.append(label)
    return names


def _layer_name(pair: TrainingPair) -> str:
    """The name of the layer a pair comes from (a stack's frame ``NAME-zK``: ``NAME``)."""
    if re.search(r" frame \d+$", pair.source):
        return re.sub(r"-z\d+$", "", pair.name)
    return pair.name


def trained_on_text(names: list[str]) -> str:
    """The names of what a run trains on, short enough for a model's name: ``A``,
    ``A + B``, ``A + 2 more``."""
    if len(names) <= 2:
        return " + ".join(names)
    return f"{names[0]} + {len(names) - 1} more"


def _check_train_foreground(written: list, split: dict, folder) -> None:
    """Refuse layer data whose training part has no foreground, saying what to do in the
    dock's terms (a dataset folder's copied masks are checked by the engine)."""
    from .run_data import check_foreground

    if folder:
        return
    masks = {name: labels for name, _, labels in written}
    parts = {part: [masks[n] for n in split[part] if n in masks] for part in ("train", "valid")}
    fix = "add a second corrected image whose mask has foreground (Add image / mask pair)"
    check_foreground(parts, "the Labels layers", fix, split_fix=fix)


def _all_edited_pixels(items: list) -> int | None:
    """The pixels the user edited in all pairs (held out or trained on), None when no
    pair's edits are known."""
    maps = [p.edited() for _, p in items if isinstance(p, TrainingPair)]
    known = [m for m in maps if m is not None]
    return int(sum(int(m.sum()) for m in known)) if known else None


def _write_edit_maps(items: list, valid: list[str], data_dir: Path) -> dict[str, str]:
    """Write the edit map of each held-out pair whose edits are known to
    ``held-out-edits/NAME.png``; returns ``{NAME: path relative to data_dir}``."""
    maps = {}
    for name, pair in items:
        edited = pair.edited() if isinstance(pair, TrainingPair) and name in valid else None
        if edited is not None:
            maps[name] = f"held-out-edits/{name}.png"
            write_mask(data_dir / maps[name], edited)
    return maps


def edited_only(pairs: list[TrainingPair]) -> tuple[list[TrainingPair], str]:
    """The pairs to learn from, and a note naming those left out ('' when none are).

    When some pair has edits, a pair whose prediction is known but unedited (e.g. an
    untouched frame of a Segment output stack) is the model's own output, not ground
    truth: it is left out. Pairs with unknown edits (a reference mask) are always kept.
    """
    edited = [None if p.predicted is None else bool(p.edited().any()) for p in pairs]
    if True not in edited or False not in edited:
        return pairs, ""
    dropped = [p.source or p.name for p, e in zip(pairs, edited, strict=True) if e is False]
    note = "not trained on (not edited: the model's own output): " + _grouped_frames(dropped)
    return [p for p, e in zip(pairs, edited, strict=True) if e is not False], note


def nothing_corrected(pairs: list[TrainingPair], folder: bool = False) -> str:
    """Why ``pairs`` would teach the model nothing, in a sentence ("" when they can train):
    every one is a Segment output left as the model made it (its prediction known, no
    pixel edited), and no reference mask (edits unknown: a mask not made by Segment) nor
    ``folder`` (a dataset folder's pairs train too) comes with them. Trained on, the
    model would learn its own output (tester37 #4); :func:`edited_only` keeps such pairs
    beside a reference, leaves them out beside a corrected one."""
    if folder or not pairs:
        return ""
    if any(p.predicted is None or p.edited().any() for p in pairs):
        return ""
    names = _grouped_frames([p.source or p.name for p in pairs])
    return (
        f"Nothing to learn: the masks are Segment's output as the model made it, not "
        f"corrected ({names}); training on them would teach the model its own output. "
        "Correct one first (paint missed objects, erase wrong ones), or pair an image with "
        "a reference mask (one not made by Segment), or choose a dataset folder."
    )


def _grouped_frames(sources: list[str]) -> str:
    """``sources`` joined, a stack's frames ("SOURCE frame K") named once per stack
    ("SOURCE frames 0, 2-5"): the note stays short for a stack of many frames."""
    frames: dict[str, list[int]] = {}
    for source in sources:
        match = re.fullmatch(r"(.*) frame (\d+)", source)
        key, frame = (match.group(1), int(match.group(2))) if match else (source, None)
        frames.setdefault(key, [])
        if frame is not None:
            frames[key].append(frame)
    parts = [
        f"{key} frame{'s' * (len(numbers) > 1)} {number_runs(numbers)}" if numbers else key
        for key, numbers in frames.items()
    ]
    return ", ".join(parts)


def number_runs(numbers: list[int]) -> str:
    """Sorted numbers as runs: ``0, 2-5``."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def folder_copies_left_out(pairs: list[TrainingPair], copied: list) -> tuple[list, str]:
    """The dataset folder's pairs whose image is not also an open pair's, and a note
    naming those left out ('' when none are).

    An image both open as a pair and in the folder is one item: the open pair is kept
    (it holds the user's corrections); else the same pixels would be trained on twice
    with two masks, or held out as the pair and trained on as the folder copy. Images are
    the same when their decoded pixels are (``content_hash``); only folder images of an
    open pair's size are decoded.
    """
    from ..data.datasets import content_hash
    from ..data.images import ImageReadError, read_header, read_image

    sizes = {tuple(p.image.shape[:2]) for p in pairs}
    hashes = {content_hash(np.asarray(p.image)) for p in pairs}
    kept, dropped = [], []
    for pair in copied:
        try:
            header = read_header(pair.image_path)
            same_size = (header.height, header.width) in sizes
            same = same_size and content_hash(read_image(pair.image_path)) in hashes
        except ImageReadError:  # the engine reports the file when it reads the folder
            same = False
        (dropped if same else kept).append(pair)
    if not dropped:
        return kept, ""
    count = f"{len(dropped)} folder image{'s' if len(dropped) != 1 else ''}"
    names = ", ".join(Path(p.image_path).name for p in dropped)
    note = f"{count} left out (open as pairs: your corrected masks train instead): {names}"
    return kept, note


def _split_one(name: str, pair: TrainingPair):
    """One image: the strip with the fewest edits is held out (:func:`holdout_strip`), the
    rest (1-2 pieces) trains.

    Returns the pieces written, the split, the held-out part in words, the edits in it
    and the strip (``axis``, ``start``, ``stop``).
    """
    edited = pair.edited()
    axis, start, stop = holdout_strip(pair.labels.shape, edited, np.asarray(pair.labels) > 0)
    n = pair.labels.shape[axis]

    def part(a: int, b: int) -> tuple:
        cut = [slice(None), slice(None)]
        cut[axis] = slice(a, b)
        return tuple(cut)

    pieces = train_pieces(start, stop, n)
    suffixes = ["-train"] if len(pieces) == 1 else ["-train", "-train-2"]
    written = [
        (f"{name}{suffix}", pair.image[part(a, b)], pair.labels[part(a, b)])
        for suffix, (a, b) in zip(suffixes, pieces, strict=True)
    ]
    written.append((f"{name}-valid", pair.image[part(start, stop)], pair.labels[part(start, stop)]))
    split = {"train": [w[0] for w in written[:-1]], "valid": [f"{name}-valid"], "test": []}
    what = "columns" if axis == 1 else "rows"
    edits = edit_summary(None if edited is None else edited[part(start, stop)])
    held_foreground = bool(np.any(np.asarray(pair.labels[part(start, stop)]) > 0))
    where = _strip_place(edits["pixels"], edited, held_foreground, (axis, stop == n))
    held = f"{what} {start}-{stop - 1} of {n} ({where}) of {pair.source or pair.name}"
    return written, split, held, edits, {"axis": axis, "start": start, "stop": stop}


def _strip_place(held_edits: int, edited, held_foreground: bool, place: tuple) -> str:
    """Where a single image's held-out strip is, in words: away from the user's edits
    (all of them train), where the fewest of them are (the rest train), the right-most
    (bottom) strip, one with part of the mask's foreground (edits unknown), or one
    leaving foreground to train on. ``place``: the strip's axis and whether it is the
    last."""
    axis, last = place
    if held_edits:
        return "with the fewest of your edits: the others train"
    if edited is not None and np.any(edited):
        return "away from your edits: all of them train"
    if last:
        return "right-most" if axis == 1 else "bottom"
    if held_foreground:
        return "with part of the mask's foreground"
    return "leaving foreground to train on"


def _split_strip(items: list[tuple[str, Any]], index: int, data_dir: Path):
    """A strip of image ``index`` held out (:func:`_split_one`); the rest of it and every
    other image train. The image's whole picture, mask and (when known) edit map are
    written to ``whole-image/``: the strip is scored inside it.

    Returns the pieces and images written, the split, the held-out part in words, the
    edits in it and the region (the strip and those files)."""
    name, pair = items[index]
    pieces, strip_split, held, edits, region = _split_one(name, pair)
    region = {**region, "image": f"whole-image/{name}.tif", "mask": f"whole-image/{name}.png"}
    write_mask(data_dir / region["mask"], np.asarray(pair.labels) > 0)
    write_image(data_dir / region["image"], pair.image)
    edited = pair.edited() if isinstance(pair, TrainingPair) else None
    if edited is not None:  # the whole image's edits: the strip's are compared
        region["edited"] = f"whole-image/{name}-edited.png"
        write_mask(data_dir / region["edited"], edited)
    written, train = [], []
    for i, (other, item) in enumerate(items):
        if i == index:
            written += pieces
            train += strip_split["train"]
            continue
        if isinstance(item, TrainingPair):  # a folder's pairs are copied as they are
            written.append((other, item.image, item.labels))
        train.append(other)
    split = {"train": train, "valid": strip_split["valid"], "test": []}
    return written, split, held, edits, region


def _edit_counts(items: list[tuple[str, Any]]) -> list[int]:
    """The pixels the user edited in each item (0 where unknown)."""
    maps = [p.edited() if isinstance(p, TrainingPair) else None for _, p in items]
    return [0 if e is None else int(e.sum()) for e in maps]


def _held_out_whole(counts: list[int]) -> list[int]:
    """The indices of the images held out whole: the eighth with the fewest edits (the
    last of equals: the last ones when the edits are unknown, e.g. a dataset folder's
    reference masks before corrected layers), so the corrections train."""
    n_valid = max(1, len(counts) // 8)
    order = sorted(range(len(counts)), key=lambda i: (counts[i], -i))
    return sorted(order[:n_valid])


def _strip_of(items: list[tuple[str, Any]]) -> int | None:
    """The image a strip is held out of, or None when images are held out whole.

    A single image: that one. Several: None (those with the fewest edits are held out
    whole, :func:`_held_out_whole`, and hold at most their share of the user's
    corrections), unless the others' masks are all empty (e.g. a stroma tile whose false
    nuclei were erased): then a strip of the held-out image with the most foreground, so
    that some foreground trains.
    """
    if len(items) == 1:
        return 0
    valid = _held_out_whole(_edit_counts(items))
    if any(_has_foreground(item) for i, (_, item) in enumerate(items) if i not in valid):
        return None
    layers = [i for i in valid if isinstance(items[i][1], TrainingPair)]  # not a folder's
    if not layers:
        return None
    return max(layers, key=lambda i: int(np.count_nonzero(np.asarray(items[i][1].labels))))


def _has_foreground(item) -> bool:
    """Whether an item's mask has foreground (a dataset folder's pair: assumed; the
    engine checks its files)."""
    return not isinstance(item, TrainingPair) or bool(np.any(np.asarray(item.labels)))


def _split_many(items: list[tuple[str, Any]]):
    """Several images: the eighth with the fewest edits is held out whole (the last when
    unknown)."""
    edit_maps = {name: p.edited() if isinstance(p, TrainingPair) else None for name, p in items}
    valid = _held_out_whole(_edit_counts(items))
    names = [name for name, _ in items]
    split = {
        "train": [n for i, n in enumerate(names) if i not in valid],
        "valid": [names[i] for i in valid],
        "test": [],
    }
    written = [(name, p.image, p.labels) for name, p in items if isinstance(p, TrainingPair)]
    held_maps = [edit_maps[names[i]] for i in valid if edit_maps[names[i]] is not None]
    edits = edit_summary(np.concatenate([m.ravel() for m in held_maps]) if held_maps else None)
    if held_maps:  # objects counted per image
        edits["objects"] = sum(edit_summary(m)["objects"] for m in held_maps)
        edits["enough"] = (
            edits["pixels"] >= MIN_EDITED_PIXELS and edits["objects"] >= MIN_EDITED_OBJECTS
        )
    held = "whole image(s): " + ", ".join(shown_name(items[i][1]) for i in valid)
    return written, split, held, edits


def shown_name(pair) -> str:
    """How the texts name an item of the data: a dataset folder's pair by its image file
    (``Ünïcødé-kern.tif``), a layer pair by where it came from (its layers), as they are;
    the run folder's file names are made file-safe."""
    if isinstance(pair, TrainingPair):
        return pair.source or repr(pair.name)
    return Path(pair.image_path).name


def folder_pairs(folder: str | Path) -> list:
    """The pairs of dataset folder ``folder``, every image's and mask's size checked.

    Raises:
        DatasetError: the folder or its images/ or masks/ is missing, it has no pairs, or
            it has problem files, named in :func:`folder_problems`' words.
    """
    from ..data.datasets import DatasetError, scan_pairs

    report = scan_pairs(folder)
    problems = folder_problems(report, ", then Start again")
    if problems:
        raise DatasetError(problems)
    return report.pairs


def folder_problems(report, then: str) -> str:
    """What stops the dataset folder of ``report`` (a ``PairingReport``) from being
    trained on, in the Fine-tune dock's words; "" when nothing does: no pairs, or the
    problem files and why (the first :data:`FOLDER_PROBLEMS_SHOWN`), how many pairs can
    be used and to fix or move the others, ``then`` (e.g. ", then Start again")."""
    usable = len(report.pairs)
    if not report.skipped:
        if usable:
            return ""
        return (
            f"{report.root}: no image/mask pairs found; put the images in images/ and "
            "their masks, with the same names, in masks/"
        )
    can = (
        f"{usable} pair{'s' if usable != 1 else ''} can be used"
        if usable
        else "no pair can be used"
    )
    problems = report.summary(FOLDER_PROBLEMS_SHOWN, refused=True)
    return f"{problems}\n{can}; fix or move the others{then}"


# -------------------------------------------------------------------------- job


@dataclass
class FinetuneJob:
    """Everything a fine-tuning run needs (the Fine-tune widget's settings, as a snapshot).

    ``resume=True`` continues ``run_dir`` with its saved configuration (only ``device``
    and ``threads`` are taken from here).
    """

    run_dir: Path
    pairs: list[TrainingPair] = field(default_factory=list)
    dataset_folder: str = ""
    start_model: str = ""  # registry name or checkpoint path
    start_label: str = ""
    name: str = ""  # the fine-tuned model's name (active_model.run_name), for people
    # the kind of the images trained on as the dock sees them ("": guessed from the data);
    # the fine-tuned model is for it when the starting model records no modality
    modality: str = ""
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 4
    augmentation: str = "flips + 90° turns"
    device: str = "auto"
    threads: int = 0  # torch threads in the worker (0: torch's default)
    resume: bool = False
    seed: int = 0


def evaluation_periods(steps: int) -> int:
    """Validation points of a run: every 10-20 steps, 10 for long runs."""
    return max(1, min(10, steps // 10))


def make_config(job: FinetuneJob, checkpoint, start_path: Path):
    """The engine's TrainConfig for a fresh fine-tuning run of ``job``."""
    from ..config import VARIANTS
    from .config import TrainConfig

    mc = checkpoint.model_config
    variant = next((k for k, v in VARIANTS.items() if tuple(v) == tuple(mc.channels)), "b")
    data = Path(job.run_dir).resolve() / "data"
    return TrainConfig(
        data=str(data),
        dataset_name="fine-tune",
        split_file=str(data / "split.json"),
        arch=mc.arch,
        variant=variant,
        init_checkpoint=str(Path(start_path).resolve()),
        num_classes=mc.num_classes,
        size=tuple(checkpoint.input_config.size),
        # Segment reads the saved train_config.mode: a fine-tuned model must keep its
        # starting model's (a resize model run in tile mode collapses: Dice 0.95 -> 0.44)
        mode=checkpoint.inference_mode,
        steps=job.steps,
        epochs=evaluation_periods(job.steps),
        batch_size=job.batch_size,
        lr=job.lr,
        ema=0.0,  # the dock's short runs keep the raw weights (no average of them)
        **AUGMENTATIONS[job.augmentation],
        seed=job.seed,
        device=job.device,
        num_workers=2,
        eval_batch_size=4,
        test=False,
        efficiency=False,
        progress=False,
    )


def held_out_scores(
    model,
    samples,
    input_config,
    mode,
    device,
    region: tuple[slice, slice] | None = None,
    edit_maps: list | None = None,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[float, int], None] | None = None,
) -> dict[str, float]:
    """Dice, IoU, HD, HD95 at native resolution on the held-out samples, the model run in
    ``mode`` ("resize" or "tile": the way Segment runs it, ``Checkpoint.inference_mode``)
    on each whole sample; with ``region``, only the pixels inside it are scored.

    When the scored part holds no foreground (tiles without nuclei, lesion-free frames),
    those scores are None (they mean nothing there: Dice is 1.0 for a model that finds
    nothing, 0.0 for one with a single false pixel) and ``false_positive_px``
    (:func:`false_positive_pixels`) is what tells two models apart.

    ``edit_maps``: per sample, the (H, W) map of the user's edits or None; when one is
    known, the scores where the edits are are added (:func:`edit_zone_scores`), and with
    ``region`` (a strip) those where the edits outside it are, the ones trained on, as
    ``trained_*`` (whether the corrections were learnt; no other forward pass: the model
    runs on the whole image anyway).
    ``stop``: checked between forward passes (``EvaluationStopped`` when True);
    ``on_progress``: told how far the scoring is (``evaluation.evaluate``'s).
    """
    no_foreground = _foreground_pixels(samples, region) == 0
    keep = _edits_known(edit_maps) or no_foreground
    ev = _evaluate_held_out(
        model, samples, input_config, mode, device, region, keep, stop, on_progress
    )
    return _scores_of(ev, region, edit_maps, no_foreground)


def _edits_known(edit_maps: list | None) -> bool:
    """Whether the map of the user's edits is known for a held-out sample."""
    return edit_maps is not None and any(m is not None for m in edit_maps)


def _scores_of(ev, region, edit_maps: list | None, no_foreground: bool) -> dict[str, Any]:
    """:func:`held_out_scores` of an evaluation of the held-out samples (its predictions
    kept where the edits are known or the scored part has no foreground)."""
    edits_known = _edits_known(edit_maps)
    if no_foreground:
        false_positives = false_positive_pixels(ev.predictions, region)
        scores = {**dict.fromkeys(_OVERLAP_SCORES), "false_positive_px": false_positives}
    else:
        agg = ev.aggregate()
        scores = {key: float(agg[f"native_{key}_mean"]) for key in _OVERLAP_SCORES}
    if edits_known:
        scores.update(edit_zone_scores(ev.predictions, edit_maps, region))
    if edits_known and region is not None:
        scores.update(trained_edit_scores(ev.predictions, edit_maps, region))
    return scores


def trained_edit_scores(predictions, edit_maps, region: tuple[slice, slice]) -> dict:
    """:func:`edit_zone_scores` of the user's edits outside the held-out ``region`` (those
    trained on), their keys prefixed ``trained_``."""
    outside = []
    for edited in edit_maps:
        if edited is not None:
            edited = np.array(edited, bool)
            edited[region] = False
        outside.append(edited)
    return {f"trained_{k}": v for k, v in edit_zone_scores(predictions, outside).items()}


def _evaluate_held_out(
    model, samples, input_config, mode, device, region, keep_predictions, stop=None, progress=None
):
    """``evaluation.evaluate`` of a fine-tune's held-out samples, as Segment runs the model
    (``mode``), scored inside ``region`` when given; the one call of the scores shown and
    of the engine's validation."""
    from ..evaluation import evaluate

    return evaluate(
        model,
        samples,
        input_config,
        mode,
        device=device,
        batch_size=4,
        region=region,
        stop=stop,
        keep_predictions=keep_predictions,
        on_progress=progress,
    )


def false_positive_pixels(predictions, region: tuple[slice, slice] | None = None) -> int:
    """The pixels predicted as foreground where the reference mask is background, in the
    scored part (``region``) of ``evaluate``'s kept predictions."""
    count = 0
    for _, pred, mask in predictions:  # (H, W) bool each
        if region is not None:
            pred, mask = pred[region], mask[region]
        count += int((np.asarray(pred) & ~np.asarray(mask)).sum())
    return count


def edit_zone_scores(predictions, edit_maps, region=None) -> dict[str, Any]:
    """Scores of a model where the user's corrections are, in the scored part of each
    sample whose edit map is known: ``edited_pixels`` (the user's edits),
    ``edited_correct`` (of them, those predicted as the user painted them: 0 for the
    model that made the mask, by construction), ``zone_pixels`` (the zone: the edits and
    :data:`EDIT_MARGIN` pixels around them), ``zone_correct`` and ``zone_accuracy`` (the
    zone's pixels predicted as the user's mask has them, and their share; None without
    edits)."""
    from scipy import ndimage as ndi

    edited_px = edited_right = correct = zone_px = 0
    for (_, pred, mask), edited in zip(predictions, edit_maps, strict=True):
        if edited is None:
            continue
        edited = np.asarray(edited, bool)
        if region is not None:
            pred, mask, edited = pred[region], mask[region], edited[region]
        zone = ndi.binary_dilation(edited, iterations=EDIT_MARGIN) if edited.any() else edited
        right = pred == mask
        edited_px += int(edited.sum())
        edited_right += int(right[edited].sum())
        zone_px += int(zone.sum())
        correct += int(right[zone].sum())
    return {
        "edited_pixels": edited_px,
        "edited_correct": edited_right,
        "zone_pixels": zone_px,
        "zone_correct": correct,
        "zone_accuracy": correct / zone_px if zone_px else None,
    }


def held_out_validation(
    samples,
    mode: str,
    device,
    region: tuple[slice, slice] | None = None,
    edit_maps: list | None = None,
    scored: dict[str, dict] | None = None,
    on_progress: Callable[[float, int], None] | None = None,
) -> Callable:
    """The engine's ``validate`` callback for a fine-tune's held-out part: a strip
    (``region``) is scored inside its whole image, as Segment sees it (the ``val_*``
    entries of the engine's validation). A held-out part without foreground gets only
    ``val_false_positive_px``, no ``val_dice``: a Dice there means nothing, so the engine
    picks no ``best.pt`` by it and the last checkpoint is the model (:func:`run_finetune`).

    ``scored``: a dict that gets each scored model's :func:`held_out_scores` (with
    ``edit_maps``: the scores where the user's edits are too), under its
    :func:`weights_key`: the run's verdict takes them for a checkpoint of the same weights
    instead of scoring it again. ``on_progress``: told how far each scoring is."""
    no_foreground = _foreground_pixels(samples, region) == 0
    keep = no_foreground or (scored is not None and _edits_known(edit_maps))

    def validate(model, input_config) -> dict[str, float]:
        from .validation import validation_record  # torch: imported when training runs

        ev = _evaluate_held_out(
            model, samples, input_config, mode, device, region, keep, progress=on_progress
        )
        if scored is not None:
            key = weights_key(model, input_config, mode)
            scored[key] = _scores_of(ev, region, edit_maps, no_foreground)
        if no_foreground:
            return {"val_false_positive_px": false_positive_pixels(ev.predictions, region)}
        return validation_record(ev.aggregate())

    return validate


def weights_key(model, input_config, mode: str) -> str:
    """A digest of what a held-out scoring depends on: the model's weights (parameters and
    buffers, e.g. BatchNorm statistics, byte for byte), its input settings and ``mode``.
    Equal keys score alike: a ``best.pt`` holds the weights the validation of its step
    scored (the engine saves the model it validated)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in getattr(model, "module", model).state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    inputs = input_config.to_dict() if hasattr(input_config, "to_dict") else input_config
    digest.update(json.dumps(inputs, sort_keys=True, default=list).encode())
    digest.update(str(mode).encode())
    return digest.hexdigest()


class ScoringWords:
    """The phase texts of a held-out scoring that takes a while on a CPU: ``begin(text)``
    says it, then each call (``evaluate``'s ``on_progress``: samples scored, samples)
    says how far it is, "TEXT (N images): P%", at each whole percent.
    ``quiet``: True while nothing is to be said (e.g. after a Stop, whose own words say
    that the run is scored)."""

    def __init__(self, phase: Callable[[str], None], quiet: Callable[[], bool] = lambda: False):
        self.phase, self.quiet = phase, quiet
        self.text, self.shown = "", -1

    def begin(self, text: str) -> None:
        self.text, self.shown = text, -1
        if not self.quiet():
            self.phase(text)

    def __call__(self, done: float, total: int) -> None:
        percent = int(100 * done / total) if total else 100
        if percent == self.shown or self.quiet():
            return
        self.shown = percent
        images = f"{total} image{'' if total == 1 else 's'}"
        self.phase(f"{self.text.removesuffix('...')} ({images}): {percent}%...")


def run_finetune(
    job: FinetuneJob,
    stop_event: threading.Event | None = None,
    callbacks: dict[str, Callable] | None = None,
) -> dict[str, Any]:
    """The whole fine-tuning job; the Fine-tune widget runs it in a worker thread.

    Writes the data and configuration, scores the starting model on the held-out part (a
    resumed run takes the scores its first session saved, :func:`_score_start`), trains
    with :func:`napari_tmunet.training.engine.fit`, and takes the held-out scores of the
    best checkpoint (the last where the held-out part has no foreground: no best
    one is picked there): those its step's validation gave the same weights, else (e.g. a
    ``best.pt`` of an earlier session of a resumed run) it is scored, the phase saying
    how far.

    Args:
        callbacks: optional ``on_phase(text)``, ``on_step(step, total, loss)``,
            ``on_eval(record)`` (engine records; the starting model's score comes as a
            record with ``step`` 0 and ``baseline`` True).

    Returns:
        run_dir, best_checkpoint, stopped, step, total_steps, trained (steps this call
        trained: 0 after a Stop before the first, when nothing is scored again, and
        for a resumed run that had trained all its steps, which is compared then),
        held_out, edits (see :func:`edit_summary`), left_out (the pairs and folder
        images not trained on, in words; "" when none), held_out_foreground (reference
        pixels in the held-out part), modality (the starting model's, else that of the
        images trained on: both models are for such images), old / new scores (dicts or
        None; with the scores where the user's edits are, :func:`edit_zone_scores`),
        start_model, old_label, rows (for the Metrics dock; their note ends with the
        pairs left out), checkpoint_note (only where the held-out part has no
        foreground: the model is the last checkpoint, which ``best_checkpoint`` then
        names).
    """
    import torch

    from ..inference import resolve_device

    callbacks = dict(callbacks or {})
    phase = callbacks.get("on_phase") or (lambda text: None)
    stop = stop_event or threading.Event()
    if job.threads:
        torch.set_num_threads(job.threads)  # a new thread does not inherit the GUI's setting
    run_dir = Path(job.run_dir).expanduser().resolve()
    device = resolve_device(job.device)
    start = (_resumed_start if job.resume else _new_start)(job, run_dir, device, phase)
    if stop.is_set():  # Stop during setup: the folder is left as written, not trained
        return _untrained_result(start, run_dir, None)
    config = start.config
    cache, valid, region = _training_data(config, start.region, phase)
    edit_maps = _edit_maps(Path(config.data), start, valid)
    foreground = _foreground_pixels(valid, region)
    if stop.is_set():
        return _untrained_result(start, run_dir, None)
    try:
        held_out = (valid, region, edit_maps)
        old = _score_start(start, held_out, device, callbacks, stop.is_set, run_dir)
    except EvaluationStopped:
        return _untrained_result(start, run_dir, None)
    start.checkpoint = None  # free it before training

    phase(TRAINING_PHASE)
    scored: dict[str, dict] = {}  # weights_key -> held-out scores of the validations
    if job.resume and run_folder_state(run_dir) == "uncompared":
        # trained to its end, then stopped (killed, napari closed) before its comparison
        result, trained = _trained_to_end(run_dir), 0
    else:
        control = (callbacks, stop)
        result, trained = _train(config, run_dir, cache, held_out, device, control, scored)
    # a resume at the run's last step trains none but goes on to the comparison
    if not trained and not _reached_end(result):  # the model is the one scored above
        return _untrained_result(start, run_dir, old, result)
    model, new = _score_tuned(result, held_out, device, phase, scored)
    outcome = {
        **_result_base(start, run_dir),
        "best_checkpoint": str(model),
        "stopped": bool(result["stopped"]),
        "step": int(result["step"]),
        "total_steps": int(result["total_steps"]),
        "trained": trained,
        "held_out_foreground": foreground,
        "old": old,
        "new": new,
    }
    if not foreground:
        outcome["checkpoint_note"] = LAST_CHECKPOINT_NOTE.format(step=outcome["step"])
    note = f"{start.held_out}; {describe_edits(start.edits)}"
    if not foreground:
        note = f"{NO_HELD_OUT_FOREGROUND}: false-positive pixels scored, no Dice; {note}"
    if start.left_out:  # what was not trained on nor scored, also in the Metrics dock
        note += f"\n{start.left_out}"
    models = (start.model, str(model))
    outcome["rows"] = comparison_rows(old, new, start.label, outcome["name"], note, models)
    _write_comparison(run_dir, start, outcome)
    return outcome


def _train(
    config, run_dir: Path, cache, held_out, device, control, scored: dict
) -> tuple[dict, int]:
    """:func:`~napari_tmunet.training.engine.fit` on the run's decoded data ``cache``;
    returns its result and the steps this call trained. ``held_out``: (samples,
    region, edit maps); ``control``: (callbacks, stop event); ``scored`` gets the
    validations' held-out scores (:func:`held_out_validation`)."""
    from .engine import fit

    valid, region, edit_maps = held_out
    callbacks, stop = control
    trained = [0]
    on_step = callbacks.get("on_step")

    def count_step(step: int, total: int, loss: float) -> None:
        trained[0] += 1
        if on_step is not None:
            on_step(step, total, loss)

    engine_callbacks = {"on_step": count_step}
    words = None
    if "on_phase" in callbacks:  # the held-out scoring takes seconds on a CPU: say so
        words = ScoringWords(callbacks["on_phase"], stop.is_set)  # a Stop's own words say it

        def validating(step: int, total: int) -> None:
            words.begin(VALIDATING_PHASE.format(step=step, total=total))

        engine_callbacks["on_validate"] = validating
    if "on_eval" in callbacks:
        engine_callbacks["on_eval"] = callbacks["on_eval"]
    # the held-out part is scored as the verdict scores it (held_out_scores), which then
    # takes these scores for a checkpoint of the same weights: a strip inside its whole
    # image, as Segment sees it; a part without foreground by its false-positive pixels
    # (no Dice, no best.pt by it)
    validate = held_out_validation(valid, config.mode, device, region, edit_maps, scored, words)
    engine_callbacks["validate"] = _unless_untrained(validate, stop, trained)
    result = fit(
        config, run_dir / "train", callbacks=engine_callbacks, stop_event=stop, dataset=cache
    )
    return result, trained[0]


def _reached_end(fit_result: dict) -> bool:
    """Whether the engine's result is that of a run trained to its last step."""
    return not fit_result["stopped"] and fit_result["step"] >= fit_result["total_steps"]


def _trained_to_end(run_dir: Path) -> dict:
    """The engine's result for a run whose training ended (``train/summary.json``) but
    whose models were not compared: nothing is trained again."""
    train = run_dir / "train"
    step = run_progress(run_dir)[0]
    return {
        "stopped": False,
        "step": step,
        "total_steps": step,
        "best_checkpoint": str(train / "best.pt"),
        "last_checkpoint": str(train / "last.pt"),
    }


# the entries of run_finetune's result kept in comparison.json, for the verdict shown
# later (saved_verdict): a dock closed, or napari killed, before it was shown
_SAVED_RESULT = (
    "best_checkpoint", "stopped", "step", "total_steps", "held_out_foreground",
    "checkpoint_note", "start_model", "old_label", "name", "modality", "left_out",
    "start_problem",
)  # fmt: skip


def _write_comparison(run_dir: Path, start: _Start, outcome: dict) -> None:
    """RUN/comparison.json: the held-out part, the edits, both models' scores, the rows,
    the verdict (:func:`compare_models`), what the dock shows with it, and ``shown``:
    False until the dock has shown it (:func:`mark_shown`)."""
    comparison = {"held_out": start.held_out, "edits": start.edits, "rows": outcome["rows"]}
    comparison.update(old=outcome["old"], new=outcome["new"], verdict=compare_models(outcome))
    comparison.update({key: outcome[key] for key in _SAVED_RESULT if key in outcome})
    comparison["shown"] = False
    write_json(run_dir / "comparison.json", comparison)


def saved_verdict(run_dir: str | Path) -> dict | None:
    """The result (as :func:`run_finetune` returns it) of the run in ``run_dir`` whose
    comparison was written but never shown (``shown`` false in comparison.json; missing
    in one of an older version, which may have been shown); None when it was shown, or
    there is none (or it cannot be read). ``result["shown"]``: that key (False / None)."""
    run_dir = Path(run_dir).expanduser()
    try:
        saved = _read_json(run_dir / "comparison.json")
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("shown") or "new" not in saved:
        return None
    try:
        plan = _read_json(run_dir / PLAN_FILE)
    except (OSError, ValueError):  # damaged: the names are then the run folder's
        plan = {}
    plan = plan if isinstance(plan, dict) else {}
    step, total = run_progress(run_dir)
    after = [r for r in saved.get("rows") or [] if r.get("stage") == "after"]
    older = {  # a comparison.json of an older version: from the plan and checkpoints
        "best_checkpoint": after[0]["model_id"] if after else str(run_dir / "train/best.pt"),
        "stopped": not (run_dir / "train" / "summary.json").is_file(),
        "step": step,
        "total_steps": total,
        "start_model": plan.get("start_model", ""),
        "old_label": plan.get("start_label", ""),
        "name": plan.get("name") or f"fine-tuned: {run_dir.name}",
        "modality": plan.get("modality", ""),
        "left_out": str(plan.get("left_out") or ""),
    }
    result = {**older, **saved, "run_dir": str(run_dir), "shown": saved.get("shown")}
    result.pop("verdict", None)
    return result


def mark_shown(run_dir: str | Path) -> None:
    """Record in RUN/comparison.json that its verdict has been shown (and decided as
    :func:`compare_models` says, or by the user); not when it cannot be written (it is
    then shown again when the folder is chosen)."""
    path = Path(run_dir).expanduser() / "comparison.json"
    try:
        saved = _read_json(path)
        if saved and isinstance(saved, dict) and saved.get("shown") is not True:
            write_json(path, {**saved, "shown": True})
    except (OSError, ValueError):  # gone, damaged, a read-only folder: nothing to keep
        return


def run_progress(run_dir: str | Path) -> tuple[int, int]:
    """(step, total steps) of the run's ``train/last.pt``, read from its header (no
    weights loaded: :func:`run_folder.checkpoint_progress`); 0 for what it does not hold."""
    from .run_folder import checkpoint_progress

    step, total = checkpoint_progress(Path(run_dir).expanduser() / "train" / "last.pt")
    return step or 0, total


def _unless_untrained(validate: Callable, stop: threading.Event, trained: list) -> Callable:
    """The engine's ``validate`` callback, but no scoring at a Stop before any step: the
    model is then the starting one, already scored (an empty record)."""

    def checked(model, input_config) -> dict:
        if stop.is_set() and not trained[0]:
            return {}
        return validate(model, input_config)

    return checked


def _result_base(start: _Start, run_dir: Path) -> dict[str, Any]:
    """The entries of :func:`run_finetune`'s result that come from the run's start."""
    return {
        "run_dir": str(run_dir),
        "held_out": start.held_out,
        "edits": start.edits,
        "modality": start.modality,
        "start_model": start.model,
        "old_label": start.label,
        "name": start.name or f"fine-tuned: {run_dir.name}",
        "left_out": start.left_out,
        "start_problem": start.start_problem,
    }


def _untrained_result(start: _Start, run_dir: Path, old, fit_result: dict | None = None) -> dict:
    """:func:`run_finetune`'s result for a run stopped before any training step (nothing
    more is scored): a new run stopped before the engine started is left as written, its
    data and configuration but no ``train/`` checkpoint (:func:`run_folder_state`)."""
    step = int(fit_result["step"]) if fit_result else int(start.step)
    total = int(fit_result["total_steps"]) if fit_result else int(start.config.steps)
    return {
        **_result_base(start, run_dir),
        "best_checkpoint": fit_result["best_checkpoint"] if fit_result else "",
        "stopped": True,
        "step": step,
        "total_steps": total,
        "trained": 0,
        "held_out_foreground": None,
        "old": old,
        "new": None,
        "rows": [],
    }


@dataclass
class _Start:
    """Where a fine-tuning job starts: its TrainConfig and the model it fine-tunes."""

    config: Any  # TrainConfig
    checkpoint: Any  # the starting Checkpoint; None when it cannot be loaded (resume)
    model: str  # registry name or checkpoint path, as chosen
    label: str
    held_out: str
    edits: dict[str, Any]
    region: dict | None = None  # the held-out strip of an image (write_dataset)
    modality: str = ""  # the starting model's (its metadata, else the registry's)
    edit_maps: dict | None = None  # several images: held-out name -> edit map (write_dataset)
    step: int = 0  # the step the run starts at (a resumed run's)
    name: str = ""  # the fine-tuned model's (finetune.json "name")
    left_out: str = ""  # the pairs and folder images not trained on (finetune.json)
    start_problem: str = ""  # why the starting model cannot be scored (resume): "" when it can


def _resumed_start(job: FinetuneJob, run_dir: Path, device, phase: Callable) -> _Start:
    """The saved configuration and plan of the run in ``run_dir``; the model if it loads."""
    from ..checkpoint import CheckpointError, load_checkpoint
    from .config import TrainConfig

    train_dir = run_dir / "train"
    if not (train_dir / "last.pt").is_file():
        raise FileNotFoundError(f"nothing to resume: {train_dir / 'last.pt'} does not exist")
    config = TrainConfig.load(train_dir / "config.json")
    config.resume, config.device = True, job.device
    plan = _read_json(run_dir / PLAN_FILE)
    start_path = Path(config.init_checkpoint)
    checkpoint, problem = None, ""
    try:
        checkpoint = load_checkpoint(start_path, device)
    except (CheckpointError, FileNotFoundError) as err:  # e.g. moved since
        problem = _start_problem(start_path, err)
        phase(f"cannot score the starting model: {problem}")
    model = plan.get("start_model") or str(start_path)
    return _Start(
        config,
        checkpoint,
        model=model,
        label=plan.get("start_label") or start_path.name,
        held_out=plan.get("held_out", ""),
        edits=plan.get("edits") or edit_summary(None),
        region=plan.get("held_out_region"),
        modality=plan.get("modality") or _modality_of(checkpoint, model),
        edit_maps=plan.get("held_out_edits") or {},
        step=_last_step(train_dir),
        name=active_model.model_label(train_dir / "best.pt"),
        left_out=str(plan.get("left_out") or ""),
        start_problem=problem,
    )


def _start_problem(path: Path, err: Exception) -> str:
    """Why a resumed run's starting model ``path`` cannot be scored, naming the file."""
    if isinstance(err, FileNotFoundError) or not path.is_file():
        return f"its file {path} is not found (moved or deleted since the run began)"
    return str(err)  # a CheckpointError names the file


def _last_step(train_dir: Path) -> int:
    """The step of a run's latest metrics record (0 when it has none)."""
    step = 0
    path = train_dir / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        try:
            step = int(json.loads(line).get("step", step))
        except (ValueError, AttributeError):
            continue
    return step


def _new_start(job: FinetuneJob, run_dir: Path, device, phase: Callable) -> _Start:
    """Write the training data, finetune.json and config.json of a new run; load the model."""
    from ..checkpoint import load_checkpoint

    train_dir = run_dir / "train"
    if train_dir.exists() and any(train_dir.iterdir()):
        raise FileExistsError(f"{train_dir} already holds a run: resume it or pick a new folder")
    start_name, start_path, _ = registry.resolve_model(job.start_model)
    start_label = job.start_label or start_name
    problem = batch_size_problem(job.batch_size, start_path, start_label)
    if problem:  # before anything is written: the run would stop at its first step
        raise ValueError(problem)
    phase(f"saving the training data to {run_dir / 'data'}...")
    written = write_dataset(job.pairs, run_dir / "data", job.dataset_folder or None)
    if written["left_out"]:
        phase(written["left_out"])
    phase(f"loading {start_label}...")
    checkpoint = load_checkpoint(start_path, device)
    # a start that records no modality (e.g. a checkpoint of `napari-tmunet-train fit`):
    # the fine-tuned model is for the kind of images it was trained on
    modality = _modality_of(checkpoint, job.start_model) or _data_modality(job)
    plan = _plan(job, run_dir, start_label, start_path, written, modality)
    write_json(run_dir / PLAN_FILE, plan)
    config = make_config(job, checkpoint, start_path)
    config.modality = modality  # saved in the fine-tuned checkpoints' metadata
    write_json(run_dir / "config.json", config.to_dict())
    held_out, edits = written["held_out"], written["edits"]
    return _Start(
        config,
        checkpoint,
        job.start_model,
        start_label,
        held_out,
        edits,
        region=written["region"],
        modality=modality,
        edit_maps=written["edit_maps"],
        name=plan["name"],
        left_out=written["left_out"],
    )


def batch_size_problem(batch_size: int, start_path, start_label: str) -> str:
    """Why ``batch_size`` cannot train the checkpoint ``start_path`` (read from its header,
    without the weights), in the dock's words; "" when it can (or the header cannot be
    read: the engine's own check then says it, ``engine.Trainer.check_batch_size``).
    A TM-UNet trained at 32 x 32 needs 2 images per batch: its deepest BatchNorm then
    normalises a 1 x 1 map (``config.samples_for_batchnorm``)."""
    from ..checkpoint_header import read_header
    from ..config import samples_for_batchnorm

    header = read_header(start_path) or {}
    try:
        arch = header["model_config"].get("arch", "tmunet")
        h, w = (int(side) for side in header["input_config"]["size"])
        need = samples_for_batchnorm(arch, (h, w))
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""
    if batch_size >= need:
        return ""
    return (
        f"Batch size {batch_size} is too small for {start_label}: it takes {h} x {w} inputs, "
        f"where its deepest BatchNorm layer normalises a 1 x 1 map, so a training batch needs "
        f"at least {need} images (one image gives no batch statistics); set Batch size to "
        f"{need} or more."
    )


def _modality_of(checkpoint, model: str) -> str:
    """The kind of image a model is for: its checkpoint's metadata (an old fine-tune's
    lineage's, ``load_checkpoint``), else :func:`registry.model_modality` ("" when neither
    says)."""
    metadata = checkpoint.metadata if checkpoint is not None else {}
    modality = str(metadata.get("modality") or "") if isinstance(metadata, dict) else ""
    return modality or registry.model_modality(model)


def _data_modality(job: FinetuneJob) -> str:
    """The kind of image a job trains on: the dock's (``job.modality``), else the guess of
    its first pair's image, else of its dataset folder's images; "" when none can be read."""
    if job.modality:
        return job.modality
    if job.pairs:
        return registry.guess_modality(job.pairs[0].image)
    return registry.guess_folder_modality(job.dataset_folder) if job.dataset_folder else ""


def _plan(
    job: FinetuneJob, run_dir: Path, start_label: str, start_path, written, modality: str
) -> dict:
    """The content of RUN/finetune.json: what the run starts from and how to go on."""
    train_dir = run_dir / "train"
    restart = (
        f"napari-tmunet-train fit --config {quote(str(run_dir / 'config.json'))} "
        f"--run-dir {quote(str(train_dir))}"
    )
    return {
        "created": datetime.now().isoformat(timespec="seconds"),
        "name": job.name or active_model.run_name(trained_on_text(written["trained_on"])),
        "start_model": job.start_model,
        "start_label": start_label,
        "start_checkpoint": str(Path(start_path).resolve()),
        "modality": modality,
        "pairs": written["pairs"],
        "trained_on": written["trained_on"],
        "left_out": written["left_out"],
        "dataset_folder": job.dataset_folder,
        "held_out": written["held_out"],
        "edits": written["edits"],
        "held_out_region": written["region"],
        "held_out_edits": written["edit_maps"],
        "split": written["split"],
        "headless": {
            # quoted: run folders may hold spaces ("my runs/...") and still paste into a shell
            "resume": f"napari-tmunet-train fit --run-dir {quote(str(train_dir))} --resume",
            # killed before its first checkpoint (no last.pt): start it again
            "restart": restart,
            "rerun": (
                f"napari-tmunet-train fit --config {quote(str(run_dir / 'config.json'))} "
                f"--run-dir {quote(str(run_dir / 'rerun'))}"
            ),
        },
    }


def _training_data(config, region: dict | None, phase: Callable):
    """The run's data folder decoded (a NativeCache), the held-out samples and the part of
    them to score: the whole image a strip is held out of and the strip (``region``), else the
    valid items, whole (None)."""
    from ..data.cache import decode_folder

    phase("reading the training data back...")
    cache = decode_folder(config.data, workers=2)
    if region is not None:
        return (cache, *_held_out_strip(Path(config.data), region))
    split = _read_json(Path(config.data) / "split.json")
    index = {name: i for i, name in enumerate(cache.names)}
    valid = [cache[index[name]] for name in split.get("valid", []) if name in index]
    return cache, valid, None


def _held_out_strip(data: Path, region: dict) -> tuple[list, tuple[slice, slice]]:
    """The held-out sample of a strip (its whole image and mask in ``data``, as
    ``region`` names them) and the strip of it to score."""
    from ..data.images import read_image, read_mask

    image = read_image(data / region["image"], allow_stack=False)
    mask = read_mask(data / region["mask"])[0]
    cut = [slice(None), slice(None)]
    cut[int(region["axis"])] = slice(int(region["start"]), int(region["stop"]))
    return [("held-out strip", image, mask)], tuple(cut)


def _edit_maps(data: Path, start: _Start, samples) -> list | None:
    """Per held-out sample, the map of the user's edits (None where unknown), as
    :func:`write_dataset` wrote them; None when none is known (e.g. an older run)."""
    from ..data.images import read_mask

    if start.region is not None:
        paths = [start.region.get("edited")]
    else:
        names = [str(getattr(s, "name", "")) for s in samples]
        paths = [(start.edit_maps or {}).get(name) for name in names]
    if not any(paths):
        return None
    return [read_mask(data / path)[0] if path else None for path in paths]


def recorded_validation(config, device) -> Callable | None:
    """The ``validate`` callback of the fine-tuning run whose data folder ``config.data``
    is, for a headless run on it (``fit --resume``, the restart and rerun commands in
    finetune.json): a held-out strip scored inside its whole image, as the
    run recorded it (finetune.json's ``held_out_region``), and images held out whole
    without foreground scored by their false-positive pixels, as the run did
    (:func:`held_out_validation`). None for other data (the engine then validates on the
    split's valid part)."""
    held_out = recorded_strip(config.data) or _recorded_empty_images(config.data)
    if held_out is None:
        return None
    samples, cut = held_out
    return held_out_validation(samples, config.mode, device, cut)


def _recorded_empty_images(data: str | None) -> tuple[list, None] | None:
    """The images the fine-tuning run whose data folder is ``data`` held out whole, as
    (name, image, mask) samples, when none of their masks holds foreground; None when one
    does, and for other data."""
    from ..data.datasets import read_pair_mask, scan_pairs
    from ..data.images import read_image

    if recorded_plan(data) is None:
        return None
    valid = set(_read_json(Path(data) / "split.json").get("valid") or [])
    pairs = [p for p in scan_pairs(data, check_sizes=False).pairs if p.name in valid]
    masks = [read_pair_mask(p)[0] for p in pairs]
    if not pairs or any(m.any() for m in masks):
        return None
    images = (read_image(p.image_path, allow_stack=False) for p in pairs)
    return [(p.name, i, m) for p, i, m in zip(pairs, images, masks, strict=True)], None


def recorded_strip(data: str | None) -> tuple[list, tuple[slice, slice]] | None:
    """The held-out sample (the whole image and mask) and the strip of it to score, as
    the fine-tuning run whose data folder is ``data`` recorded them (finetune.json's
    ``held_out_region``); None for other data and for runs that held out whole images.
    Headless validation (:func:`recorded_validation`) and ``napari-tmunet-train evaluate
    --part valid`` score with it, as the run did."""
    if not data or not Path(data).is_dir():
        return None
    region = _read_json(_plan_path(data)).get("held_out_region")
    if not region:
        return None
    return _held_out_strip(Path(data), region)


def recorded_plan(data: str | None) -> Path | None:
    """The finetune.json of the fine-tuning run whose data folder is ``data``, else None."""
    plan = _plan_path(data) if data else None
    return plan if plan is not None and plan.is_file() else None


def _plan_path(data: str) -> Path:
    """Where the fine-tuning run whose data folder is ``data`` keeps its finetune.json
    (RUN/data -> RUN/finetune.json), whether or not it is there."""
    return Path(data).parent / PLAN_FILE


def _foreground_pixels(samples, region: tuple[slice, slice] | None) -> int:
    """Reference foreground pixels in the scored part of the held-out samples."""
    masks = (np.asarray(s.mask if hasattr(s, "mask") else s[2]) > 0 for s in samples)
    return int(sum(int((m if region is None else m[region]).sum()) for m in masks))


def _score_start(start: _Start, held_out, device, callbacks, stop, run_dir: Path) -> dict | None:
    """The starting model's held-out scores at the run's input size, in the mode Segment
    runs it in (None: not loaded). ``held_out``: (samples, region, edit maps).

    Saved with the run (``RUN/start_scores.json``) under the keys of what they depend on:
    the model (:func:`weights_key`) and the held-out part (:func:`held_out_key`). A
    resumed run takes them when both keys are the same, instead of scoring the model
    again (minutes on a CPU); it scores it when they differ (the start file replaced) or
    are not there (an older run, the file unreadable), and saves them then.

    ``on_eval`` gets them as a record with ``step`` 0 and ``baseline`` True. ``stop`` is
    checked between forward passes (``EvaluationStopped``).
    """
    from ..config import InputConfig

    if start.checkpoint is None:
        return None
    phase = callbacks.get("on_phase", lambda text: None)
    input_config = start.checkpoint.input_config.to_dict()
    at_size = InputConfig(**{**input_config, "size": list(start.config.size)})
    mode = start.checkpoint.inference_mode
    valid, region, edit_maps = held_out
    model = start.checkpoint.model
    keys = {"model": weights_key(model, at_size, mode), "held_out": held_out_key(*held_out)}
    old = saved_scores(run_dir / START_SCORES, keys)
    if old is not None:
        said = "its held-out scores from the run's start are used"
        phase(f"{start.label} is not scored again: {said}")
    else:
        words = ScoringWords(phase, stop)
        words.begin(f"scoring {start.label} on the held-out part...")
        old = held_out_scores(model, valid, at_size, mode, device, region, edit_maps, stop, words)
        _save_scores(run_dir / START_SCORES, keys, old)
    on_eval = callbacks.get("on_eval")
    if on_eval and old["dice"] is None:  # no foreground held out
        on_eval({"step": 0, "baseline": True, "val_false_positive_px": old["false_positive_px"]})
    elif on_eval:
        on_eval({"step": 0, "baseline": True, "val_dice": old["dice"], "val_hd": old["hd"]})
    return old


def held_out_key(samples, region: tuple[slice, slice] | None, edit_maps: list | None) -> str:
    """A digest of the held-out part a scoring depends on: each sample's image and mask
    (byte for byte), the strip scored (``region``) and the maps of the user's edits.
    With :func:`weights_key`, equal keys score alike."""
    import hashlib

    digest = hashlib.sha256(repr(region).encode())
    arrays = [a for _, image, mask in samples for a in (image, mask)]
    for array in [*arrays, *(edit_maps or [])]:
        if array is None:  # a sample whose edits are unknown
            digest.update(b"none;")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def saved_scores(path: Path, keys: dict[str, str]) -> dict | None:
    """The scores saved in ``path`` (:func:`_save_scores`) under these ``keys``; None when
    the file is missing, unreadable or saved under other keys (they are scored again)."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing (an older run), damaged: scored again
        return None
    if not isinstance(saved, dict) or saved.get("keys") != keys:
        return None
    scores = saved.get("scores")
    if not isinstance(scores, dict) or not all(key in scores for key in _OVERLAP_SCORES):
        return None
    return scores


def _save_scores(path: Path, keys: dict[str, str], scores: dict) -> None:
    """Save ``scores`` under ``keys`` in ``path`` for a resumed run (:func:`saved_scores`);
    not when JSON would change them (NaN or infinity would read back as null), nor when
    the file cannot be written: the scores are then only computed again at resume."""
    from ..storage import jsonable

    if jsonable(scores) != scores:
        return
    try:
        write_json(path, {"keys": keys, "scores": scores})
    except OSError:  # e.g. a full disk: nothing of the run depends on this file
        return


def _score_tuned(
    result: dict, held_out, device, phase: Callable, scored: dict
) -> tuple[Path, dict]:
    """The fine-tuned model's checkpoint and its held-out scores: ``best.pt``, else (none
    was picked: a held-out part without foreground, where Dice means nothing) the last
    checkpoint; a ``best.pt`` an older version picked in such a run by that Dice is not
    taken (it is kept in the run folder). ``held_out``: (samples, region, edit maps).

    The scores are those a validation of this run gave the same weights (``scored``, by
    :func:`weights_key`: e.g. ``best.pt`` written at the last step, which that step's
    validation scored); a checkpoint not scored so (a ``best.pt`` of an earlier session
    of a resumed run) is scored, the phase saying how far."""
    from ..checkpoint import load_checkpoint

    valid, region, edit_maps = held_out
    model = Path(result["best_checkpoint"])
    if not model.is_file() or _foreground_pixels(valid, region) == 0:
        model = Path(result["last_checkpoint"])
    tuned = load_checkpoint(model, device)
    step = tuned.metadata.get("step", "?")
    which = f"{model.name} of step {step}"
    known = scored.get(weights_key(tuned.model, tuned.input_config, tuned.inference_mode))
    if known is not None:  # the same weights, settings and mode: the same scores
        phase(f"the fine-tuned model ({which}) was scored at step {step}: its scores are used")
        return model, dict(known)
    words = ScoringWords(phase)
    words.begin(f"scoring the fine-tuned model ({which}) on the held-out part...")
    scores = held_out_scores(
        tuned.model, valid, tuned.input_config, tuned.inference_mode, device, region,
        edit_maps, on_progress=words,
    )  # fmt: skip
    return model, scores


def describe_edits(edits: dict[str, Any]) -> str:
    """What the held-out comparison rests on, in words."""
    if not edits.get("known") and edits.get("all_pixels"):  # corrected layers + references
        return (
            f"your {edits['all_pixels']} corrected pixels all train; the held-out masks are "
            "scored as references"
        )
    if not edits.get("known"):
        return (
            "edits unknown: the masks are not Segment results open in napari, "
            "so the comparison is rough"
        )
    pixels, regions = edits["pixels"], edits["objects"]
    text = (
        f"rests on {pixels} edited pixel{'' if pixels == 1 else 's'} "
        f"in {regions} region{'' if regions == 1 else 's'}"
    )
    total = edits.get("all_pixels") or 0
    if total > pixels:  # the others train (the held-out part is where the fewest are)
        text = f"{total - pixels} of your {total} corrected pixels train; the held-out part {text}"
    caveat = edits_caveat(edits)
    return f"{text} - {caveat}" if caveat else text


def edits_caveat(edits: dict[str, Any]) -> str:
    """Why the held-out part's known edits are too few for a meaningful comparison, in
    words ("" when they are enough, or unknown)."""
    if not edits.get("known") or edits.get("enough"):
        return ""
    pixels, regions = edits["pixels"], edits["objects"]
    short = []
    if pixels < MIN_EDITED_PIXELS:
        short.append(f"fewer than {MIN_EDITED_PIXELS} edited pixels")
    if regions < MIN_EDITED_OBJECTS:
        short.append(f"fewer than {MIN_EDITED_OBJECTS} edited regions")
    return f"{' and '.join(short) or 'too few edits'}: too few for a meaningful comparison"


def comparison_problem(result: dict[str, Any]) -> str:
    """Why the held-out before/after comparison of a run cannot decide which model is
    better, in words ("" when it can): no or little foreground in the held-out part (any
    two models score alike there), neither model finding anything there (both held-out
    Dice below :data:`NOTHING_FOUND_DICE`), or too few of the user's edits in it
    (:func:`edit_summary`)."""
    problem = foreground_problem(result)
    if problem or result.get("old") is None:
        return problem
    problem = nothing_found_problem(result) or own_output_problem(result)
    if problem:
        return problem
    edits = result.get("edits") or {}
    if edits.get("known") and not edits.get("enough"):
        return "not decided on so few edits in the held-out part"
    return ""


def own_output_problem(result: dict[str, Any]) -> str:
    """Why a lower held-out Dice of the fine-tuned model says nothing, in words ("" when
    it may): with the edits unknown, the starting model scores at least
    :data:`OWN_OUTPUT_DICE` on the held-out reference, as on its own output."""
    old, new = result.get("old"), result.get("new")
    if (result.get("edits") or {}).get("known") or old is None or new is None:
        return ""
    if old["dice"] < OWN_OUTPUT_DICE or new["dice"] >= old["dice"]:
        return ""
    return (
        f"the starting model scores {old['dice']:.4f} on the held-out mask, as on its own "
        "output (a Segment result saved and reopened?): a lower score for the fine-tuned "
        "model may only mean that it learnt your corrections, so you choose"
    )


def foreground_problem(result: dict[str, Any]) -> str:
    """Why the held-out part of a run cannot tell two models apart whatever the edits, in
    words ("" when it can, or when only the new model was scored): it holds no or little
    foreground, where any two models score alike."""
    if result.get("old") is None:
        return ""  # only the new model was scored: nothing to compare
    foreground = result.get("held_out_foreground", MIN_EDITED_PIXELS)
    if foreground == 0:
        return (
            "the held-out part had no foreground, so only their false positives could be "
            "compared: you choose"
        )
    if foreground < MIN_EDITED_PIXELS:
        return (
            f"the held-out part has {foreground} foreground pixels (fewer than "
            f"{MIN_EDITED_PIXELS}): too few to tell the models apart"
        )
    return ""


def nothing_found_problem(result: dict[str, Any]) -> str:
    """Why the held-out Dice of a run says nothing, in words ("" when it may): neither
    model finds the objects in the held-out part (both below :data:`NOTHING_FOUND_DICE`),
    so a tie there, 0.0000 -> 0.0000, is no evidence for either."""
    old, new = result.get("old"), result.get("new")
    if old is None or new is None or max(old["dice"], new["dice"]) >= NOTHING_FOUND_DICE:
        return ""
    return (
        "neither model finds the objects in the held-out part (held-out Dice below "
        f"{NOTHING_FOUND_DICE:.2f} for both, e.g. images of another kind than the starting "
        "model was trained on), so the scores say nothing: you choose"
    )


def compare_models(result: dict[str, Any]) -> dict[str, Any]:
    """Whether the fine-tuned model of a run should become active, and what was compared.

    Returns ``{"use_new": True / False / None (the user decides), "compared": the two
    models' numbers in words, "why": why the fine-tuned model is not made active ("" when
    it is), "short": that reason in one clause, for a headline ("" when it is made
    active)}``. The rule, in order:

    - only the fine-tuned model was scored (the starting one would not load, e.g. a
      resumed run's start file moved since: ``start_problem`` says why): nothing was
      compared, the user decides;
    - the user's edits are known (masks from Segment), where the held-out reference is
      mostly the starting model's own output: compared where the corrections are
      (:func:`edit_zone_scores`): the held-out part's when it holds enough of them
      (:func:`edit_summary`), else, for a strip (the held-out part is where the fewest
      edits are, :func:`holdout_strip`), the ones trained on: whether the fine-tuned
      model learnt them (:func:`trained_edit_scores`). No edits there, too few, or no
      clear difference (:func:`zone_difference`): the user decides; clearly fewer: not
      used. Clearly more of the correction zone right: used when its Dice on the
      held-out part is not lower than the starting model's and the corrections scored
      are held out (an independent test); the user decides when that Dice is lower (up
      to :data:`REST_RUIN`, not used beyond: a fine-tune that ruins the rest) or when
      the only evidence is the corrections it trained on (the held-out strip holds too
      few): it may have memorised them;
    - otherwise (reference masks): held-out Dice, the user decides when the held-out
      part cannot tell the models apart (:func:`comparison_problem`: e.g. neither model
      finds anything there, a tie at 0.0000, or the reference is about the starting
      model's own output), else the fine-tuned model is used unless it scores lower.
    """
    old, new = result.get("old"), result.get("new")
    if old is None:
        why = result.get("start_problem") or "it was not scored"
        why = f"the starting model could not be scored ({why}), so nothing was compared: you choose"
        return _verdict(None, "", why, "the starting model could not be scored")
    if "edited_pixels" in old and new is not None and "edited_pixels" in new:
        return _compare_on_edits(result, old, new)
    compared = held_out_scores_text(result)
    if not foreground_problem(result):  # else no edits can matter
        compared += f" ({describe_edits(result.get('edits') or {})})"
    problem = comparison_problem(result)
    if problem:
        return _verdict(None, compared, problem, _short_problem(result))
    if new["dice"] < old["dice"]:
        why = "the fine-tuned model scores lower on the held-out part than the starting model"
        return _verdict(False, compared, why, "it scores lower on the held-out part")
    return _verdict(True, compared, "", "")


def _verdict(use_new: bool | None, compared: str, why: str, short: str) -> dict[str, Any]:
    """:func:`compare_models`' answer."""
    return {"use_new": use_new, "compared": compared, "why": why, "short": short}


def _short_problem(result: dict[str, Any]) -> str:
    """:func:`comparison_problem`'s reason in one clause (its checks in its order)."""
    if foreground_problem(result):
        if result.get("held_out_foreground") == 0:
            return "no foreground was held out to compare on"
        return "too little foreground was held out to tell the models apart"
    if nothing_found_problem(result):
        return "neither model finds the held-out objects"
    if own_output_problem(result):
        return "the held-out mask looks like the starting model's own output"
    return FEW_HELD_OUT


def _compare_on_edits(result: dict, old: dict, new: dict) -> dict[str, Any]:
    """:func:`compare_models` where the user's edits are known: on the held-out part's
    edits when they are enough, else, a strip's image being scored whole, on the edits
    trained on (:func:`_compare_learnt`)."""
    pixels = old["edited_pixels"]
    edits = result.get("edits") or {}
    learnt = old.get("trained_edited_pixels") and "trained_zone_pixels" in new
    if learnt and not edits.get("enough"):
        return _compare_learnt(result, old, new)
    if not pixels:
        why = (
            "the held-out part holds none of your edits (they all train), so the models "
            "were not compared where you corrected"
        )
        short = "none of your edits were held out to compare on"
        return _verdict(None, held_out_scores_text(result), why, short)
    compared = (
        f"{_edits_held_out(result, pixels)}: start model {_right(old, 'edited')}, "
        f"fine-tuned {_right(new, 'edited')} right{_regions(edits)}; "
        f"with the {EDIT_MARGIN} px around them ({old['zone_pixels']} px): "
        f"{_right(old, 'zone')} -> {_right(new, 'zone')} right; "
        f"{held_out_scores_text(result)}"
    )
    if edits.get("known") and not edits.get("enough"):
        why = "not decided on so few edits in the held-out part"
        return _verdict(None, compared, why, FEW_HELD_OUT)
    zone = f"your corrected pixels and the {EDIT_MARGIN} px around them"
    return _zone_verdict(result, zone_difference(old, new), compared, zone)


def _compare_learnt(result: dict, old: dict, new: dict) -> dict[str, Any]:
    """:func:`compare_models` on the edits trained on (the held-out strip holds too few):
    whether the fine-tuned model learnt them, with the held-out Dice guarding the rest."""
    trained, held = old["trained_edited_pixels"], old["edited_pixels"]
    total = (result.get("edits") or {}).get("all_pixels") or trained + held
    scored = f"of these {trained}"
    if total != trained + held:  # other images' corrections trained too, unscored
        scored = f"of the {trained} in the image the strip is cut from"
    strip = f"{held} in the held-out strip"
    caveat = edits_caveat(result.get("edits") or {})  # the Metrics dock's note says it too
    if caveat:
        strip += f" - {caveat}"
    compared = (
        f"{total - held} of your {total} corrected pixels trained "
        f"({strip}); {scored}: start model "
        f"{_right(old, 'trained_edited')}, fine-tuned {_right(new, 'trained_edited')} right; "
        f"with the {EDIT_MARGIN} px around them ({old['trained_zone_pixels']} px): "
        f"{_right(old, 'trained_zone')} -> {_right(new, 'trained_zone')} right; "
        f"{held_out_scores_text(result)} (where you did not correct)"
    )
    zone = f"your trained corrections and the {EDIT_MARGIN} px around them"
    same = (
        f"the fine-tuned model has not clearly learnt your corrections (about as many of "
        f"{zone} right as the starting model): train longer (more Steps)"
    )
    difference = zone_difference(old, new, "trained_")
    return _zone_verdict(result, difference, compared, zone, same, trained=True)


def _zone_verdict(
    result: dict, difference: int, compared: str, zone: str, same: str = "", trained=False
) -> dict[str, Any]:
    """The verdict from a model's gain in the correction ``zone`` (``difference``,
    :func:`zone_difference`), with the held-out Dice guarding the rest; ``same``: why
    when there is no clear difference; ``trained``: the zone is the corrections trained
    on, no independent test, so a gain there only lets the user choose."""
    if difference == 0:
        why = same or f"the two models get about as many of {zone} right"
        short = "no clear difference where you corrected"
        if same:
            short = "it has not clearly learnt your corrections"
        return _verdict(None, compared, why, short)
    if difference < 0:
        why = f"the fine-tuned model gets fewer of {zone} right than the starting model"
        return _verdict(False, compared, why, "it gets fewer of your corrections right")
    old, new = result["old"], result["new"]
    drop = 0.0 if foreground_problem(result) else old["dice"] - new["dice"]  # else no say
    if drop > REST_RUIN:
        why = (
            "the fine-tuned model learnt your corrections but ruins the rest of the held-out "
            f"part (its Dice there is more than {REST_RUIN:.2f} below the starting model's)"
        )
        return _verdict(False, compared, why, "it ruins the rest of the held-out part")
    fell = drop > 0 and round(new["dice"], 4) < round(old["dice"], 4)  # lower as shown
    if not (fell or trained):
        return _verdict(True, compared, "", "")
    why = "the fine-tuned model learnt your corrections"
    short = "its held-out Dice fell"
    if trained:
        why = f"the fine-tuned model gets more of your corrected pixels right, but {TRAINED_ONLY}"
        short = "it gained only on pixels it trained on"
    if fell:
        why += f"{', and' if trained else ', but'} its held-out Dice fell "
        why += f"({old['dice']:.4f} -> {new['dice']:.4f})"
        short += ", and its held-out Dice fell" if trained else ""
    why += ": try it on an image before you choose"
    return _verdict(None, compared, why, short)


def held_out_scores_text(result: dict[str, Any]) -> str:
    """The two models' scores on the whole held-out part, in words: their Dice, or where
    it holds no foreground (Dice means nothing there) their false-positive pixels."""
    old, new = result["old"], result["new"]
    if result.get("held_out_foreground") != 0 and None not in (old.get("dice"), new.get("dice")):
        return f"held-out Dice {old['dice']:.4f} -> {new['dice']:.4f}"
    before, after = old.get("false_positive_px"), new.get("false_positive_px")
    if before is None or after is None:  # a run scored before they were counted
        return "held-out: no foreground"
    return f"held-out: no foreground; false-positive pixels {before} -> {after}"


def zone_difference(old: dict, new: dict, prefix: str = "") -> int:
    """1 when the fine-tuned model gets clearly more of the correction zone right than the
    starting model, -1 when clearly less, 0 when the difference is within
    :data:`ZONE_Z` standard errors of the difference of two shares of the same number
    of pixels (pooled): noise, e.g. 82.6% -> 83.0% of 4500 pixels. ``prefix``
    "trained_": the zone of the edits trained on (:func:`trained_edit_scores`)."""
    a, b = old[f"{prefix}zone_accuracy"], new[f"{prefix}zone_accuracy"]
    n = old[f"{prefix}zone_pixels"]
    pooled = (a + b) / 2
    error = math.sqrt(2 * pooled * (1 - pooled) / n) if n else 0.0
    if abs(b - a) <= ZONE_Z * error:
        return 0
    return 1 if b > a else -1


def _edits_held_out(result: dict, pixels: int) -> str:
    """The user's corrected pixels in the held-out part, and how many of all they are
    (those are used to score, not to train), in words."""
    total = (result.get("edits") or {}).get("all_pixels")
    part = "images" if str(result.get("held_out", "")).startswith("whole image") else "strip"
    if total is None or total < pixels:  # an older run's plan: the total is not known
        return f"of your {pixels} corrected pixels in the held-out part"
    return (
        f"{pixels} of your {total} corrected pixels are in the held-out {part}, used to "
        f"score, not to train; of these {pixels}"
    )


def _regions(edits: dict) -> str:
    """The held-out edits' regions and, when they are too few, why (:func:`edits_caveat`),
    in parentheses ("" when unknown)."""
    if not edits.get("known"):
        return ""
    regions = edits["objects"]
    caveat = edits_caveat(edits)
    words = f"in {regions} region{'' if regions == 1 else 's'}"
    return f" ({words} - {caveat})" if caveat else f" ({words})"


def _right(scores: dict, where: str) -> str:
    """A model's pixels right among the edited ones (``where`` "edited") or in the
    correction zone ("zone"); from the share for scores without the count."""
    count = scores.get(f"{where}_correct")
    if count is None and where == "zone" and scores.get("zone_accuracy") is not None:
        count = round(scores["zone_accuracy"] * scores["zone_pixels"])
    return "?" if count is None else str(count)


def run_folder_state(path: str | Path) -> str:
    """What a Fine-tune run folder holds: "empty" (or missing), "resumable" (a stopped
    run: ``train/last.pt``), "uncompared" (trained to its end, ``train/summary.json``,
    but stopped before its comparison.json: Resume compares), "finished"
    (``train/summary.json``), "not started" (data and plan written, never trained:
    stopped before the first step) or "other" (files that are not a fine-tuning run)."""
    path = Path(path).expanduser()
    if not path.is_dir() or not any(path.iterdir()):
        return "empty"
    train = path / "train"
    trained = (train / "last.pt").is_file() and (path / PLAN_FILE).is_file()
    if trained and (train / "summary.json").is_file() and not (path / "comparison.json").exists():
        return "uncompared"
    if (train / "summary.json").is_file():
        return "finished"
    if (train / "last.pt").is_file():
        return "resumable"
    if (path / PLAN_FILE).is_file() and not (train.is_dir() and any(train.iterdir())):
        return "not started"
    return "other"


def left_run_note(runs: str | Path) -> str:
    """A line on the newest run folder in ``runs`` (the one last written to) when it holds
    a run left undone: stopped before its end, trained to its end but not compared, or
    compared but its verdict never shown; "" when it holds none (or there is none)."""
    try:
        folders = [p for p in Path(runs).expanduser().iterdir() if p.is_dir()]
        newest = max(folders, key=lambda p: p.stat().st_mtime, default=None)
    except OSError:  # no runs folder yet, unreadable
        return ""
    if newest is None:
        return ""
    state = run_folder_state(newest)
    step, total = run_progress(newest)
    name = newest.name
    if state == "uncompared" or (state == "resumable" and total and step >= total):
        return f"run {name} trained all its steps but was not compared: pick it to compare"
    if state == "resumable":
        return f"run {name} stopped at step {step} of {total}: pick it to resume"
    verdict = saved_verdict(newest) if state == "finished" else None
    if verdict is not None and verdict["shown"] is False:
        return f"run {name} finished but its verdict was never shown: pick it to see it"
    return ""


def remove_unfinished_writes(runs: str | Path) -> str:
    """Delete what a write killed midway left in the ``train/`` folders of the Fine-tune
    runs in ``runs`` (``RUN/train/.best.pt.XXXXXXXX.tmp``, up to a checkpoint's size:
    69 MB for a ``last.pt``), each run's while holding its lock (``storage.folder_lock``,
    which the engine holds while it trains there): a run that a live process trains is
    left alone. Only the temporaries of files the engine writes under that lock go
    (``RUN_FILES``: not an ``evaluate``'s, which takes no lock).

    Returns what was removed, in words ("removed 1 unfinished write (69 MB) of run X");
    "" when nothing was.
    """
    from ..storage import FolderBusyError, folder_lock
    from .run_folder import RUN_FILES, STALE_TEMPORARY, remove_stale_temporaries

    try:  # a few listings: the runs' train/ folders holding a temporary
        trains = {
            p.parent
            for p in Path(runs).expanduser().glob("*/train/.*.tmp")
            if STALE_TEMPORARY.fullmatch(p.name) and (p.parent.parent / PLAN_FILE).is_file()
        }
    except OSError:  # an unreadable runs folder: nothing to clean there
        return ""
    names, count, size = [], 0, 0
    for train in sorted(trains):
        try:
            with folder_lock(train, "napari-tmunet Fine-tune (removing unfinished writes)"):
                removed = remove_stale_temporaries(train, of=RUN_FILES)
        except (FolderBusyError, OSError):  # trained by a live process; read-only
            continue
        if removed:
            names.append(train.parent.name)
            count, size = count + len(removed), size + sum(removed.values())
    if not count:
        return ""
    writes = "write" if count == 1 else "writes"
    runs_named = f"run {names[0]}" if len(names) == 1 else f"runs {', '.join(names)}"
    return f"removed {count} unfinished {writes} ({megabytes(size)}) of {runs_named}"


def run_size_note(run_dir: str | Path) -> str:
    """The room the run folder ``run_dir`` takes, and where it is: "run folder PATH takes
    92 MB (train/last.pt 69 MB, train/best.pt 23 MB)"."""
    run_dir = Path(run_dir).expanduser()
    parts = [
        f"train/{name} {megabytes(path.stat().st_size)}"
        for name in ("last.pt", "best.pt")
        if (path := run_dir / "train" / name).is_file()
    ]
    inside = f" ({', '.join(parts)})" if parts else ""
    return f"run folder {run_dir} takes {megabytes(folder_bytes(run_dir))}{inside}"


def folder_bytes(folder: str | Path) -> int:
    """The size of the files under ``folder``, in bytes (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # gone meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def megabytes(size: int) -> str:
    """``size`` bytes in words: "69 MB" (10^6 bytes), "0.4 MB" under one."""
    mb = size / 1e6
    return f"{mb:.0f} MB" if mb >= 1 else f"{mb:.1f} MB"


def next_free_folder(path: str | Path) -> Path:
    """A folder beside ``path`` that does not exist yet: ``NAME-2``, ``NAME-3``..."""
    path = Path(path).expanduser()
    k = 2
    while path.with_name(f"{path.name}-{k}").exists():
        k += 1
    return path.with_name(f"{path.name}-{k}")


def comparison_rows(
    old, new, old_label: str, new_label: str, held_out: str, models: tuple[str, str] = ("", "")
) -> list[dict]:
    """Rows for ``MetricsWidget.set_comparison``: before and after fine-tuning, with
    ``held_out`` as their note. The scores are blank where :func:`held_out_scores` has
    none (no foreground in the held-out part: two models that find nothing there both
    score 1.0, which says nothing); the false-positive pixels are given there instead.
    ``models``: the two models (registry name or checkpoint file), given as each row's
    ``model_id`` with its ``stage`` ("before", "after"): the Metrics dock names them
    short from these."""
    rows = []
    stages = (("before", old_label, models[0], old), ("after", new_label, models[1], new))
    for when, label, model, scores in stages:
        if scores is None:
            continue
        row = {"model": f"{when} fine-tuning: {label}", "image": "held-out part"}
        if model:
            row.update(stage=when, model_id=str(model))
        for column, key in _ROW_SCORES.items():
            row[column] = scores[key]
        if scores.get("false_positive_px") is not None:
            row["false_positive_px"] = scores["false_positive_px"]
        rows.append({**row, "note": held_out})
    return rows


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
