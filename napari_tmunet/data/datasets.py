"""Dataset folders: ``ROOT/images/<name>.<ext>`` + ``ROOT/masks/<name>.<ext>``, or a
folder of pictures with their masks beside them (``NAME.png`` + ``NAME_mask.png``, BUSI's
Kaggle layout, named by ``mask_names``' rule).

Pairing by base name, checks, and content-aware train/valid/test splits in the released
code's JSON format. The decoded-dataset cache built from such a folder is in ``cache.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..storage import write_json
from .images import (
    IMAGE_SUFFIXES,
    MIN_SIDE,
    ImageReadError,
    image_shape,
    read_image,
    read_mask,
    turned_sizes_note,
)

logger = logging.getLogger(__name__)

SPLIT_PARTS: tuple[str, ...] = ("train", "valid", "test")
_PART_ALIASES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}

Split = dict[str, list[str]]


class DatasetError(ValueError):
    """A dataset folder, pair, split or cache that cannot be used as it is."""


class SplitNamesError(DatasetError):
    """A split whose names are not all in the dataset: ``unknown`` (sorted) of its
    ``total`` names. Callers that know why (a run's split on other data) say so."""

    def __init__(self, message: str, unknown: list[str], total: int):
        super().__init__(message)
        self.unknown, self.total = unknown, total


PYTHON_SKIP = "skip_bad=True"  # how the Python API leaves problem pairs out


def skippable(cls: type[Exception], problems: str, fix: str, skip: str) -> Exception:
    """``cls`` for problem pairs that ``skip_bad`` would leave out: ``problems``, then
    "FIX, or SKIP (skip_bad=True)". It keeps its parts, so that a command line names
    its own option instead (:func:`skip_message`)."""
    error = cls(_skip_text((problems, fix, skip), PYTHON_SKIP))
    error.skip_parts = (problems, fix, skip)
    return error


def skip_message(error: BaseException, option: str | None) -> str | None:
    """The message of a :func:`skippable` error with ``option`` (e.g. "--skip-bad") as
    the way to skip, or without one when ``option`` is None; None for another error."""
    parts = getattr(error, "skip_parts", None)
    return None if parts is None else _skip_text(parts, option)


def _skip_text(parts: tuple[str, str, str], option: str | None) -> str:
    problems, fix, skip = parts
    return f"{problems}\n{fix}" + (f", or {skip} ({option})" if option else "")


LAYOUT_FOLDERS = ("images", "masks")  # a dataset folder's subfolders, in the first layout
# The two layouts of a dataset folder, as messages name them (one source for the words).
LAYOUTS = (
    "ROOT/images/<name>.<ext> and ROOT/masks/<name>.<ext>, or pictures with their masks "
    "beside them (NAME.png and NAME_mask.png; also NAME-mask, NAME_gt, NAME_labels, and "
    "NAME_mask_1.png... merged with NAME_mask.png)"
)


# What --data and the Folder take, as messages name it.
DATASET_FOLDER = "a dataset folder (images/ + masks/, or pictures with their masks beside them)"


@dataclass(frozen=True)
class Pair:
    """An image and its mask, paired by base name. A picture beside its masks
    (:func:`scan_pairs`) may have several mask files of one family, ``NAME_mask.png`` and
    ``extra_masks`` ``NAME_mask_1.png``... (BUSI's second lesion): its mask is their union
    (:func:`read_pair_mask`)."""

    name: str
    image_path: Path
    mask_path: Path
    extra_masks: tuple[Path, ...] = ()

    @property
    def mask_paths(self) -> tuple[Path, ...]:
        """Every mask file of the pair: ``mask_path``, then ``extra_masks``."""
        return (self.mask_path, *self.extra_masks)


@dataclass
class PairingReport:
    """Pairs found in a dataset folder and the items left out, with reasons."""

    root: Path
    pairs: list[Pair] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or name, reason)
    sizes_checked: bool = False  # image and mask sizes compared (scan_pairs' check_sizes)
    side_by_side: bool = False  # pictures with their masks beside them, not images/ + masks/
    # pictures skipped for masks of several families (mask_names.mask_families), each with
    # its mask files: the reader opens them as separate layers
    several_kinds: list[tuple[Path, list[Path]]] = field(default_factory=list)

    def layout_note(self) -> str:
        """A line saying how a folder of pictures with their masks beside them was paired
        (the pairs whose several mask files are merged, e.g. BUSI's ``NAME_mask_1.png``);
        "" for an ``images/`` + ``masks/`` folder."""
        if not self.side_by_side:
            return ""
        merged = [pair for pair in self.pairs if pair.extra_masks]
        count = len(self.pairs)
        note = f"{self.root}: pictures with their masks beside them, {count} pair"
        note += "s" if count != 1 else ""
        if merged:
            files = " + ".join(path.name for path in merged[0].mask_paths)
            note += f"; {len(merged)} with several mask files merged (their union: e.g. {files})"
        return note

    def summary(self, limit: int = 10, refused: bool = False) -> str:
        """One line per skipped item (at most ``limit``), after a count line; ``refused``:
        the items are problems that stop the data (nothing skipped), counted as such."""
        count = len(self.skipped)
        left = f"{count} problem{'s' if count != 1 else ''}" if refused else f"{count} skipped"
        lines = [f"{self.root}: {len(self.pairs)} pairs, {left}"]
        lines += [f"  {item}: {reason}" for item, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def natural_key(name: str) -> tuple:
    """Sort key that orders "2" before "10"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


@dataclass
class NameMatch:
    """Image and mask files matched by name (:func:`match_by_name`).

    Attributes:
        rows: (name, image or None, mask or None) for each name that at most one image and
            at most one mask have, in natural order of the names.
        ambiguous: (name, files) for each name that several images, or several masks,
            have: those files, sorted by file name; the images' names first. These names
            are in no row.
    """

    rows: list[tuple[str, Path | None, Path | None]] = field(default_factory=list)
    ambiguous: list[tuple[str, list[Path]]] = field(default_factory=list)


def _stem(path: Path) -> str:
    return path.stem


def match_by_name(
    images: Iterable[Path], masks: Iterable[Path], mask_name: Callable[[Path], str] = _stem
) -> NameMatch:
    """Match mask files to image files by name: an image's name is its base name, a
    mask's is ``mask_name(mask)`` (its base name by default: ``masks/12.png`` is the mask
    of ``images/12.jpg``). A name that several images, or several masks, have is
    ambiguous: it is matched to nothing and listed apart. The one pairing rule of dataset
    folders (:func:`scan_pairs`) and of the files given to ``napari-tmunet``."""
    image_files, mask_files = _by_name(images, _stem), _by_name(masks, mask_name)
    match = NameMatch()
    for files in (image_files, mask_files):
        for name in sorted(files, key=natural_key):
            if len(files[name]) > 1:
                match.ambiguous.append((name, sorted(files[name], key=lambda p: p.name)))
    left_out = {name for name, _ in match.ambiguous}
    for name in sorted((image_files.keys() | mask_files.keys()) - left_out, key=natural_key):
        image, mask = image_files.get(name, [None])[0], mask_files.get(name, [None])[0]
        match.rows.append((name, image, mask))
    return match


def _by_name(files: Iterable[Path], name_of: Callable[[Path], str]) -> dict[str, list[Path]]:
    """``files`` grouped by ``name_of`` each file, in their order."""
    grouped: dict[str, list[Path]] = {}
    for path in files:
        grouped.setdefault(name_of(path), []).append(path)
    return grouped


def scan_pairs(
    root: str | os.PathLike, check_sizes: bool = True, max_sized: int | None = None
) -> PairingReport:
    """Pair the images and masks of a dataset folder, collecting problems.

    Two layouts: ``images/`` + ``masks/``, paired by base name, a mask in ``masks/`` also
    by ``mask_names``' rule (:func:`_scan_images_and_masks`: the writer's ``NAME
    mask.tif`` saved there); or, in a folder without them, pictures with their masks
    beside them (:func:`_scan_side_by_side`: named by ``mask_names``' rule, a picture's
    numbered masks merged). Files whose suffix is not in
    ``IMAGE_SUFFIXES`` and hidden files are ignored. Problems (image without mask, mask
    without image, two files with one base name, masks of several kinds for one picture,
    unreadable header, image and mask of different sizes) go to ``skipped``.

    Args:
        root: dataset folder.
        check_sizes: compare image and mask sizes from the file headers (cheap; it
            also catches files that are not images at all).
        max_sized: with ``check_sizes``, compare them only when the folder has at most
            this many image/mask pairs (the report's ``sizes_checked`` says whether they
            were): the folder is listed once either way.

    Raises:
        DatasetError: when the folder is missing, or has no ``images/`` or ``masks/``
            and no picture with a mask beside it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    missing = [sub for sub in LAYOUT_FOLDERS if not (root / sub).is_dir()]
    if missing:
        pairing = _beside_pairing(root)
        if pairing is None or not pairing.paired:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DatasetError(
                f"{root} has no {missing[0]}/ folder (subfolders: {present or 'none'}); "
                f"expected {LAYOUTS}" + _layout_hint(root, pairing)
            )
        report, rows = _scan_side_by_side(root, pairing)
    else:
        report, rows = _scan_images_and_masks(root)
    report.sizes_checked = check_sizes and (max_sized is None or len(rows) <= max_sized)
    for name, image, masks in rows:
        _add_pair(report, name, image, masks)
    return report


# A scan's pairs before their sizes are checked: (name, image, its mask files)
Rows = list[tuple[str, Path, list[Path]]]


def _scan_images_and_masks(root: Path) -> tuple[PairingReport, Rows]:
    """:func:`scan_pairs` of an ``images/`` + ``masks/`` folder: a mask named as its image
    (``masks/NAME.png``), and those that ``mask_names``' rule names as its image's
    (``mask_names.masks_in_folder``: the writer's ``masks/NAME mask.tif``, a correction
    saved there; ``NAME_mask.png`` + ``NAME_mask_1.png``, merged). An image with masks of
    several families (``masks/NAME.png`` and ``masks/NAME mask.tif``) is skipped, naming
    them, as beside its picture (:func:`_scan_side_by_side`): never merged, which one
    trains is the user's choice."""
    from .mask_names import masks_in_folder

    images, masks = (root / sub for sub in LAYOUT_FOLDERS)
    report = PairingReport(root)
    image_files = _image_files(images)
    plain, named = masks_in_folder((path.stem for path in image_files), _image_files(masks))
    match = match_by_name(image_files, plain)
    for name, files in match.ambiguous:
        listed = ", ".join(file.name for file in files + named.get(name, []))
        reason = f"several files with one base name: {listed}"
        report.skipped.append((str(files[0].parent / name), reason))
    rows = []
    for name, image, mask in match.rows:
        if image is None:
            report.skipped.append((str(mask), f"no image named {name}.* in {images}"))
            continue
        files = ([mask] if mask is not None else []) + named.get(name, [])
        if not files:
            report.skipped.append((str(image), f"no mask named {name}.* in {masks}"))
            continue
        if _one_family(report, image, files, masks, keep="in masks/"):
            rows.append((name, image, files))
    return report, rows


def _one_family(
    report: PairingReport, image: Path, masks: list[Path], folder: Path, keep: str
) -> bool:
    """Whether the mask files ``masks`` of ``image`` are of one family
    (``mask_names.mask_families``: one mask, their union); else ``image`` is skipped in
    ``report``, naming them and what to do (:func:`_several_families`)."""
    from .mask_names import mask_families

    if len(masks) == 1:  # one file is one family (no file read to tell)
        return True
    families = mask_families(masks, picture=image.stem)
    if len(families) == 1:
        return True
    report.skipped.append((str(image), _several_families(families, folder, keep)))
    report.several_kinds.append((image, masks))
    return False


def _add_pair(report: PairingReport, name: str, image: Path, masks: list[Path]) -> None:
    """Add the pair (``image``, ``masks``) to ``report``, or, where its sizes are checked
    (``report.sizes_checked``), the reason it is skipped: an unreadable header, a mask of
    another size than the image, an image too small to train on."""
    problem = pair_size_problem(image, masks) if report.sizes_checked else None
    if problem:
        report.skipped.append((name, problem))
        return
    report.pairs.append(Pair(name, image, masks[0], tuple(masks[1:])))


def pair_size_problem(image: Path, masks: Sequence[Path]) -> str | None:
    """Why ``image`` and its mask files ``masks`` make no pair, from their headers: an
    unreadable header, a mask of another size than the image, an image too small to
    train on (a sentence naming the files); None when they make one."""
    try:
        image_hw = image_shape(image)
        masks_hw = [image_shape(mask) for mask in masks]
    except ImageReadError as error:
        return str(error)
    for mask, mask_hw in zip(masks, masks_hw, strict=True):
        if image_hw != mask_hw:
            return _mismatch(image, image_hw, mask, mask_hw)
    if min(image_hw) < MIN_SIDE:
        return _too_small(image, image_hw)
    return None


def _beside_pairing(root: Path):
    """The image files directly in ``root`` told apart by name into pictures and their
    masks (``mask_names.pair_by_mask_names``); None when ``root`` cannot be listed."""
    from .mask_names import pair_by_mask_names

    try:
        return pair_by_mask_names(_image_files(root))
    except DatasetError:  # cannot be listed: the missing folder is the message
        return None


def _scan_side_by_side(root: Path, pairing) -> tuple[PairingReport, Rows]:
    """:func:`scan_pairs` of a folder of pictures with their masks beside them, by the rule
    of the TM-UNet reader (``mask_names``): a picture's mask is the union of its mask
    files of one family (``NAME_mask.png`` + ``NAME_mask_1.png``, BUSI's second lesion),
    its name the picture's base name. Skipped, as in ``images/`` + ``masks/``: a picture
    without a mask, a file named as a mask whose picture is not there, several pictures
    of one base name; and a picture with masks of several families (``NAME_mask.png``
    and the writer's ``NAME mask.tif``, a saved correction; ``NAME_gt.png``), which are
    never merged: which one trains is the user's choice, not guessed."""
    from .mask_names import mask_name_parts

    report = PairingReport(root, side_by_side=True)
    by_name: dict[str, list] = {}
    for item in pairing.items:
        by_name.setdefault(item.picture.stem, []).append(item)
    shared: dict[str, list[Path]] = {}  # picture name -> masks that fit several pictures
    for mask, _ in pairing.ambiguous:
        shared.setdefault(mask_name_parts(mask.stem)[0], []).append(mask)
    rows = []
    for name, items in by_name.items():
        if len(items) > 1:
            files = [item.picture for item in items] + shared.get(name, [])
            listed = ", ".join(file.name for file in files)
            report.skipped.append((str(root / name), f"several files with one base name: {listed}"))
        elif not items[0].masks:
            report.skipped.append((str(items[0].picture), _no_mask_beside(name, root)))
        elif _one_family(report, items[0].picture, items[0].masks, root, "beside the picture"):
            rows.append((name, items[0].picture, items[0].masks))
    for orphan in pairing.orphans:
        picture = mask_name_parts(orphan.stem)[0]
        reason = (
            f"named as the mask of {picture}.*, but no picture of that name is beside it in "
            f"{root} (if it is a picture, its mask is missing)"
        )
        report.skipped.append((str(orphan), reason))
    return report, rows


def _no_mask_beside(name: str, root: Path) -> str:
    return f"no mask named {name}_mask.* (or {name}-mask.*, {name}_gt.*...) beside it in {root}"


def _several_families(families, root: Path, keep: str) -> str:
    """Why a picture with masks of several families (``mask_names.mask_families``) in the
    folder ``root`` does not train, naming the files (the one napari-tmunet saved), and
    what to do: keep one kind (``keep``: where) and move the others out of ``root``."""
    kinds = []
    for family in families:
        kind = " + ".join(path.name for path in family.paths)
        kinds.append(f"{kind} (saved by napari-tmunet)" if family.saved else kind)
    return (
        f"masks of {len(families)} different kinds, never merged: {'; '.join(kinds)}; which "
        f"one trains is yours to say: keep one kind {keep} and move the others out of "
        f"{root}"
    )


def find_pairs(
    root: str | os.PathLike, skip_bad: bool = False, check_sizes: bool = True
) -> list[Pair]:
    """Image/mask pairs of a dataset folder, sorted by name (natural order).

    Args:
        root: dataset folder (either layout of ``scan_pairs``).
        skip_bad: leave problem items out and log a summary instead of raising.
        check_sizes: see ``scan_pairs``.

    Raises:
        DatasetError: for a missing folder, no pairs at all, or (unless ``skip_bad``)
            any problem, naming the files.
    """
    report = _scan_to_train(root, skip_bad, check_sizes)
    if report.skipped:
        logger.warning(report.summary())
    if not report.pairs:
        raise DatasetError(f"{report.root}: no image/mask pairs found")
    return report.pairs


def _scan_to_train(
    root: str | os.PathLike, skip_bad: bool, check_sizes: bool = True
) -> PairingReport:
    """:func:`scan_pairs` of the dataset folder ``root`` that trains: a DatasetError
    listing its problems unless they are to be skipped (``skip_bad``); how a folder of
    pictures with their masks beside them was paired is logged
    (:meth:`PairingReport.layout_note`)."""
    report = scan_pairs(root, check_sizes=check_sizes)
    if report.skipped and not skip_bad:
        problems = report.summary(refused=True)
        raise skippable(DatasetError, problems, "fix these files", "skip them")
    note = report.layout_note()
    if note:
        logger.info(note)
    return report


def check_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, str]:
    """Decode a pair fully and check that the sizes agree.

    Returns:
        The image (native dtype, (H, W) or (H, W, C)), the (H, W) bool mask, and the
        mask binarisation rule used.
    """
    image = read_image(pair.image_path, allow_stack=False)
    mask, rule = read_pair_mask(pair)
    if image.shape[:2] != mask.shape:
        raise DatasetError(_mismatch(pair.image_path, image.shape[:2], pair.mask_path, mask.shape))
    if min(mask.shape) < MIN_SIDE:
        raise DatasetError(_too_small(pair.image_path, mask.shape))
    _check_finite(pair.image_path, image)
    return image, mask, rule


def read_pair_mask(pair: Pair) -> tuple[np.ndarray, str]:
    """The (H, W) bool mask of a pair and its binarisation rule (``read_mask``): of its
    several mask files (``Pair.extra_masks``), their union (a pixel is foreground where
    any file's is), with their rules joined by "; " where they differ
    (``mask_names.read_mask_union``, as the TM-UNet reader opens them).

    Raises:
        ImageReadError: naming the files, when its mask files differ in size.
    """
    from .mask_names import read_mask_union

    mask, rule = read_mask_union(pair.mask_paths, read=read_mask)
    return mask.astype(bool, copy=False), rule


def _check_finite(path: Path, image: np.ndarray) -> None:
    """Refuse an image without finite pixels; warn about some NaN/Inf ones (mapped to 0/1)."""
    if image.dtype.kind != "f":
        return
    finite = np.isfinite(image)
    if not finite.any():
        raise DatasetError(
            f"image {path} has no finite pixels (all NaN or infinite): nothing to train on"
        )
    bad = finite.size - int(np.count_nonzero(finite))
    if bad:
        logger.warning(
            "image %s: %d NaN or infinite values (%.2g%%) are mapped to 0 (NaN, -inf) or 1 "
            "(+inf) after scaling",
            path,
            bad,
            100.0 * bad / finite.size,
        )


def content_hash(image: np.ndarray) -> str:
    """Hash of decoded pixel content (dtype, shape and values)."""
    digest = hashlib.sha1(f"{image.dtype.str}{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def content_groups(pairs: Sequence[Pair]) -> list[int]:
    """Group id per pair; pairs whose images decode to identical pixels share an id.

    Ids count from 0 in order of first appearance.
    """
    return _group_ids([content_hash(read_image(p.image_path)) for p in pairs])


def make_split(
    pairs: Sequence[Pair] | Sequence[str],
    seed: int,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
    groups: Sequence[int] | None = None,
) -> Split:
    """Random train/valid/test split, deterministic in the seed and the set of names.

    Images with identical content (see ``content_groups``) always land in the same
    part. Sizes: test = round(n * ratios[2]), valid = round(n * ratios[1]) (each at
    least 1 when its ratio is > 0), train the rest; with duplicates a part may be off
    by one.

    Args:
        pairs: the dataset's pairs, or its names together with ``groups``.
        seed: random seed.
        ratios: train, valid, test fractions summing to 1.
        groups: content group per item (e.g. ``NativeCache.groups``); computed by
            decoding the images when ``pairs`` are Pairs and this is None.

    Returns:
        ``{"train": [names], "valid": [...], "test": [...]}``, names in natural order.
    """
    names = _names(pairs)
    n = len(names)
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"ratios must be 3 non-negative fractions summing to 1, got {ratios}")
    if len(set(names)) != n:
        raise DatasetError(f"duplicate names: {_dupes(names)}")
    if groups is None:
        if not all(isinstance(p, Pair) for p in pairs):
            raise ValueError("pass groups= (e.g. cache.groups) when splitting by names")
        groups = content_groups(pairs)  # type: ignore[arg-type]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} names")
    n_valid, n_test = (_part_size(n, r) for r in ratios[1:])
    if n < 3 or n - n_valid - n_test < 1:
        raise DatasetError(f"cannot split {n} images with ratios {ratios}; need at least 3")

    members: dict[int, list[str]] = {}
    for name, group in zip(names, groups, strict=True):
        members.setdefault(int(group), []).append(name)
    # Canonical order (independent of the input order), then a seeded shuffle.
    ordered = sorted(members.values(), key=lambda m: min(natural_key(x) for x in m))
    split: Split = {part: [] for part in SPLIT_PARTS}
    for index in np.random.default_rng(seed).permutation(len(ordered)):
        group = ordered[index]
        if len(split["test"]) + len(group) <= n_test:
            split["test"] += group
        elif len(split["valid"]) + len(group) <= n_valid:
            split["valid"] += group
        else:
            split["train"] += group
    return {part: sorted(split[part], key=natural_key) for part in SPLIT_PARTS}


def save_split(path: str | os.PathLike, split: Split) -> Path:
    """Write a split as JSON ``{"train": [...], "valid": [...], "test": [...]}``."""
    path = Path(path)
    unknown = set(split) - set(SPLIT_PARTS)
    if unknown:
        raise ValueError(f"split parts must be {SPLIT_PARTS}, got extra {sorted(unknown)}")
    return write_json(path, {part: list(split.get(part, [])) for part in SPLIT_PARTS})


def load_split(
    path: str | os.PathLike, pairs: Sequence[Pair] | Sequence[str], seed: int = 0
) -> tuple[Split, list[str]]:
    """Read a split JSON file and check it against a dataset (see ``resolve_split``).

    Returns:
        The complete split and notes on what was changed (e.g. a carved "valid").
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"split file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"split file {path} is not valid JSON: {error}") from None
    return resolve_split(raw, pairs, seed, source=str(path))


def split_from_lists(train_txt: str | os.PathLike, test_txt: str | os.PathLike) -> Split:
    """Split from two text files with one name per line (e.g. MoNuSeg's official lists).

    Blank lines and lines starting with "#" are ignored. The result has no "valid"
    part: pass it through ``resolve_split`` to check it and carve one from train.
    """
    split: Split = {}
    for part, file in (("train", Path(train_txt)), ("test", Path(test_txt))):
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise DatasetError(f"cannot read split list {file}: {error}") from None
        split[part] = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    return split


def resolve_split(
    split: dict,
    pairs: Sequence[Pair] | Sequence[str],
    seed: int = 0,
    valid_fraction: float = 0.1,
    source: str = "split",
) -> tuple[Split, list[str]]:
    """Check a user's split against a dataset and complete it.

    Names may carry an image suffix ("12.png"); "val"/"validation" mean "valid".
    Without a (non-empty) "valid" part, ``valid_fraction`` of train (at least 1) is
    carved from train, deterministically from ``seed``. A missing "test" is empty.

    Returns:
        The split with the three parts and notes (human-readable) on any change.

    Raises:
        DatasetError: unknown part keys, unknown names (listed), a name in two parts,
            no train part.
    """
    if not isinstance(split, dict):
        raise DatasetError(f"{source}: expected an object with train/valid/test lists")
    known = set(_names(pairs))
    bad_keys = [k for k in split if k not in _PART_ALIASES]
    if bad_keys:
        raise DatasetError(f"{source}: unknown parts {bad_keys}; expected {list(SPLIT_PARTS)}")
    parts: Split = {}
    for key, names in split.items():
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise DatasetError(f"{source}: part {key!r} must be a list of names")
        parts.setdefault(_PART_ALIASES[key], []).extend(_base_name(x, known) for x in names)
    unknown = sorted({x for names in parts.values() for x in names} - known, key=natural_key)
    everything = [x for names in parts.values() for x in names]
    if unknown:
        raise SplitNamesError(
            f"{source}: {len(unknown)} names are not in the dataset: {_listing(unknown)}; "
            "names are image base names without the extension",
            unknown,
            len(set(everything)),
        )
    if len(set(everything)) != len(everything):
        raise DatasetError(f"{source}: names listed twice: {_listing(_dupes(everything))}")
    if not parts.get("train"):
        raise DatasetError(f"{source}: no 'train' part")

    notes: list[str] = []
    if not parts.get("test"):
        parts["test"] = []
        notes.append(f"{source}: no 'test' part; nothing will be tested")
    if not parts.get("valid"):
        train = sorted(parts["train"], key=natural_key)
        if len(train) < 2:
            raise DatasetError(f"{source}: no 'valid' part and too few train images to carve one")
        count = max(1, _part_size(len(train), valid_fraction))
        chosen = set(np.random.default_rng(seed).permutation(len(train))[:count].tolist())
        parts["valid"] = [x for i, x in enumerate(train) if i in chosen]
        parts["train"] = [x for i, x in enumerate(train) if i not in chosen]
        notes.append(
            f"{source}: no 'valid' part; carved {count} validation images "
            f"({valid_fraction:.0%} of {len(train)} train, seed {seed}) from train"
        )
    unused = len(known) - len(everything)
    if unused:
        notes.append(f"{source}: {unused} images of the dataset are in no part and are unused")
    for note in notes:
        logger.info(note)
    return {p: sorted(parts[p], key=natural_key) for p in SPLIT_PARTS}, notes


def _image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (by suffix), hidden ones left out."""
    try:
        entries = list(folder.iterdir())
    except OSError as error:
        raise DatasetError(f"cannot list {folder}: {error.strerror or error}") from None
    return [
        path
        for path in entries
        if not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
    ]


def _layout_hint(root: Path, pairing) -> str:
    """For a folder in neither layout (``pairing``: its image files told apart by name,
    no picture with a mask beside it; None when it cannot be listed): what it holds that
    is near one, or its subfolders that hold pictures with masks beside them (BUSI's
    ``benign/``, ``malignant/``, ``normal/``); else ""."""
    above = dataset_above_hint(root)
    if above:
        return above
    if pairing is not None and pairing.orphans:
        return (
            f"; its files named as masks (e.g. {pairing.orphans[0].name}) have no picture of "
            "their name beside them"
        )
    if pairing is not None and pairing.items:
        picture = pairing.items[0].picture
        return (
            f"; none of its {len(pairing.items)} pictures has a mask beside it (e.g. "
            f"{picture.name}'s would be {picture.stem}_mask.png)"
        )
    beside = [sub.name for sub in _subfolders(root) if holds_pictures_with_masks(sub)]
    if len(beside) == 1:
        return f"; its subfolder {beside[0]} holds pictures with their masks beside them: give it"
    if beside:
        return (
            f"; its subfolders {', '.join(beside)} hold pictures with their masks beside "
            "them: give one of them, or put their files in one folder"
        )
    return ""


def dataset_above_hint(folder: Path) -> str:
    """For a dataset folder's ``images/`` or ``masks/`` given as ``folder``: "; give the
    dataset folder that holds it, TOP"; else ""."""
    top = folder.resolve().parent
    if folder.name in LAYOUT_FOLDERS and all((top / sub).is_dir() for sub in LAYOUT_FOLDERS):
        return f"; give the dataset folder that holds it, {top}"
    return ""


def holds_pictures_with_masks(folder: Path) -> bool:
    """Whether some picture directly in ``folder`` has a mask beside it."""
    pairing = _beside_pairing(folder)
    return pairing is not None and pairing.paired


def _subfolders(root: Path, limit: int = 20) -> list[Path]:
    """Up to ``limit`` folders directly in ``root`` (hidden ones left out), by name."""
    try:
        found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(found, key=lambda p: natural_key(p.name))[:limit]


def _too_small(image: Path, hw) -> str:
    return (
        f"image {image} is {hw[0]}x{hw[1]} (HxW): too small to train on; images and masks "
        f"must be at least {MIN_SIDE} pixels high and wide"
    )


def _mismatch(image: Path, image_hw, mask: Path, mask_hw) -> str:
    return (
        f"size mismatch: image {image} is {image_hw[0]}x{image_hw[1]} (HxW) but "
        f"mask {mask} is {mask_hw[0]}x{mask_hw[1]}"
    ) + turned_sizes_note(image, image_hw, mask, mask_hw)


def _names(items: Sequence[Pair] | Sequence[str]) -> list[str]:
    return [item.name if isinstance(item, Pair) else str(item) for item in items]


def _base_name(name: str, known: set[str]) -> str:
    """A split entry as a base name: "12.png" -> "12" when only "12" is known."""
    name = name.strip()
    path = Path(name)
    if name not in known and path.suffix.lower() in IMAGE_SUFFIXES and path.stem in known:
        return path.stem
    return name


def _part_size(n: int, ratio: float) -> int:
    """round(n * ratio) half up, at least 1 when the ratio is > 0 and n >= 3."""
    size = int(math.floor(n * ratio + 0.5))
    return max(size, 1) if ratio > 0 and n >= 3 else size


def _group_ids(keys: Sequence[str]) -> list[int]:
    ids: dict[str, int] = {}
    return [ids.setdefault(key, len(ids)) for key in keys]


def _dupes(names: Sequence[str]) -> list[str]:
    return sorted((n for n, c in Counter(names).items() if c > 1), key=natural_key)


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
