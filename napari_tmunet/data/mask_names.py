"""Pictures and their masks kept side by side in one folder, told apart by name.

A picture's reference mask beside it is named ``NAME<sep><word>.*``: ``NAME_mask.png``,
``NAME-mask.tif``, ``NAME mask.tif`` (as this plugin's writer names a saved correction),
``NAME_gt.png``, ``NAME_labels.png``, ...; a picture with several objects marked apart
may have numbered extra masks ``NAME_mask_1.png``, ``NAME_mask_2.png`` (BUSI's Kaggle
layout: a second lesion). The separator and word name a family of masks
(:func:`mask_families`): only one family's files are one mask (their union); masks of
other families (``NAME mask.tif``, a correction the writer saved beside BUSI's
``NAME_mask.png``; ``NAME_gt.png`` beside ``NAME_mask.png``) stay apart, as does each mask
the writer saved (the user's work, whole). Masks in a folder of their own (:data:`MASK_FOLDERS`, a
dataset's ``masks/``, see ``datasets.py``) are named as their picture instead
(``masks/NAME.png``: a family of its own, kind ""), or by this rule
(:func:`masks_in_folder`: the writer's ``masks/NAME mask.tif`` saved there).

A file named as a mask whose picture is not among the files (an orphan) is a mask only
if it is one: a picture when another file is named as its mask (``A_mask.png`` beside
``A_mask_mask.png``, by name: :func:`pair_by_mask_names`), else by its pixels
(:func:`judge_orphans`: :func:`orphan_holds_mask`): a picture named
``liver-labels.png`` is a picture, a mask without its picture a mask alone, and so is
one whose pixels are all one value (an empty mask: BUSI's ``normal (3)_mask.png``),
where the pixels cannot tell and the name decides.

The one rule for the TM-UNet reader (a folder of pictures and masks), and for
``napari-tmunet PICTURE`` (the masks found beside it). No Qt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    image_shape,
    read_mask_labels,
    turned_sizes_note,
)

# Folders whose files are masks named as their pictures (NAME.*).
MASK_FOLDERS = ("masks", "labels", "ground_truth", "groundtruth")
# NAME<sep><word>[<sep><number>]: the word says mask, the number an extra mask (a second
# object); "picture" is NAME (the shortest that fits, so "A_mask_mask" is A_mask's mask);
# "kind" (separator and word) names the family.
MASK_NAME = re.compile(
    r"^(?P<picture>.+?)(?P<kind>[ _-](?:masks?|labels?|gt|ground_truth))"
    r"(?:[ _-]?(?P<number>\d+))?$",
    re.I,
)


def mask_name_parts(stem: str) -> tuple[str, int | None] | None:
    """(picture name, extra mask number or None) for a mask's base name by
    :data:`MASK_NAME`, e.g. ``("benign (2)", 1)`` for ``benign (2)_mask_1``; None for a
    name that is no mask's."""
    named = MASK_NAME.match(stem)
    if named is None:
        return None
    number = named["number"]
    return named["picture"], (int(number) if number is not None else None)


def mask_picture(path: str | Path) -> str | None:
    """The name of the picture whose mask the image file ``path`` is by its name, or None
    when its name says no mask: NAME for ``.../masks/NAME.png`` (:data:`MASK_FOLDERS`, a
    dataset folder's mask; also ``labels/``, ``ground_truth/``) and for ``NAME_mask.png``,
    ``NAME-mask.tif``, ``NAME mask.tif``, ``NAME_labels.png``, ``NAME_mask_1.png``
    (:data:`MASK_NAME`). Nothing is read (the file need not exist)."""
    file = Path(path)
    if file.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    if file.parent.name.lower() in MASK_FOLDERS:
        return file.stem
    named = mask_name_parts(file.stem)
    return named[0] if named else None


def mask_kind(stem: str) -> str | None:
    """The separator and word of a mask's base name by :data:`MASK_NAME`, as written
    (``"_mask"`` for ``benign (2)_mask_1``, ``" mask"`` for the writer's ``NAME mask``);
    None for a name that is no mask's."""
    named = MASK_NAME.match(stem)
    return named["kind"] if named else None


@dataclass
class MaskFamily:
    """Mask files of one picture that open as one Labels layer (:func:`mask_families`).

    Attributes:
        paths: the files (several: their union).
        kind: the separator and word of their names as the first writes them (``"_mask"``,
            ``" mask"``, ``"_gt"``); "" for a mask named as its picture.
        saved: whether this plugin's writer saved it (``data.images.saved_mask_kind``).
    """

    paths: list[Path]
    kind: str = ""
    saved: bool = False

    def layer_name(self, picture: str, several: bool) -> str:
        """The Labels layer's name over the picture layer ``picture``: "<picture> mask"
        for a picture's only family; among several, ``picture`` and the family's kind
        ("benign (2)_mask", "benign (2)_gt"; the writer's "benign (2) mask"); a mask named
        as its picture (in a mask folder: ``masks/1.png`` beside the writer's
        ``masks/1 mask.tif``) "<picture> mask (<its file name>)", so the two differ."""
        if not several:
            return f"{picture} mask"
        return f"{picture}{self.kind}" if self.kind else f"{picture} mask ({self.paths[0].name})"


def mask_families(masks: Sequence[Path], picture: str | None = None) -> list[MaskFamily]:
    """One picture's mask files (``masks``, as :class:`PictureMasks` or
    :func:`masks_in_folder` give them) by family: the files whose names have one kind
    (:func:`mask_kind`, compared case-insensitively: ``NAME_mask``, ``NAME_mask_1``) are
    one family, and so are those named exactly ``picture`` (the picture's base name: a
    mask folder's ``masks/NAME.png``, of kind ""); each mask this plugin's writer saved
    is a family of its own (a whole mask as the user left it: merged with none). The
    saved ones come first (the user's latest work, shown), then the others in the order
    of ``masks``."""
    from .images import saved_mask_kind

    saved, families = [], {}
    for path in masks:
        kind = "" if path.stem == picture else (mask_kind(path.stem) or "")
        if saved_mask_kind(path) is not None:
            saved.append(MaskFamily([path], kind, saved=True))
        elif kind.lower() in families:
            families[kind.lower()].paths.append(path)
        else:
            families[kind.lower()] = MaskFamily([path], kind)
    return saved + list(families.values())


@dataclass
class PictureMasks:
    """A picture and the mask files named for it (the plain one first, then the numbered
    extras in their order; empty when it has none)."""

    picture: Path
    masks: list[Path] = field(default_factory=list)


@dataclass
class FolderPairing:
    """The image files of one folder told apart by name (:func:`pair_by_mask_names`).

    Attributes:
        items: every picture with its masks, in natural order of the names.
        orphans: files named as masks whose picture is not among the files, not yet
            judged by their pixels (:func:`judge_orphans` tells the masks from the
            pictures among them).
        ambiguous: (mask, pictures) for a mask whose name fits several pictures
            (``A.png`` and ``A.jpg``): it goes with none of them.
        lone_masks: orphans that hold a mask (:func:`judge_orphans`): masks alone.
        named_masks: whether some file is named as a mask (picture, mask or orphan).
    """

    items: list[PictureMasks] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    ambiguous: list[tuple[Path, list[Path]]] = field(default_factory=list)
    lone_masks: list[Path] = field(default_factory=list)
    named_masks: bool = False

    @property
    def paired(self) -> bool:
        """Whether some picture has a mask beside it (the folder holds both kinds)."""
        return any(item.masks for item in self.items)

    @property
    def masks(self) -> list[Path]:
        """Every file that is a mask: the pictures' masks, the ambiguous ones, the masks
        alone (orphans not yet judged are not counted)."""
        paired = [mask for item in self.items for mask in item.masks]
        return paired + [mask for mask, _ in self.ambiguous] + self.lone_masks


def pair_by_mask_names(files: Iterable[Path]) -> FolderPairing:
    """Tell the pictures among ``files`` (image files of one folder) from their masks by
    name (:data:`MASK_NAME`) and give each picture its masks. A file named as a mask whose
    picture is missing is a picture when another file is named as its mask
    (``A_mask.png`` with ``A_mask_mask.png``), else an orphan, to be judged by its pixels
    (:func:`judge_orphans`); nothing is read here."""
    from .datasets import natural_key

    pictures: dict[str, list[Path]] = {}
    named: list[tuple[str, int, Path]] = []
    for path in files:
        parts = mask_name_parts(path.stem)
        if parts is None:
            pictures.setdefault(path.stem, []).append(path)
        else:
            named.append((parts[0], -1 if parts[1] is None else parts[1], path))
    wanted = {name for name, _, _ in named}  # picture names that some file is a mask of
    masks, orphans = [], []
    # shortest first: a mask-named file's picture (a shorter name) is settled before it
    for name, number, path in sorted(named, key=lambda m: len(m[2].stem)):
        if name in pictures:
            masks.append((name, number, path))
        elif path.stem in wanted:  # another file is named as its mask: a picture
            pictures.setdefault(path.stem, []).append(path)
        else:
            orphans.append((name, number, path))
    pairing = FolderPairing(named_masks=bool(named))
    found: dict[Path, list[Path]] = {}
    for name, _, mask in sorted(masks, key=lambda m: (natural_key(m[0]), m[1], m[2].name)):
        owners = pictures[name]
        if len(owners) == 1:
            found.setdefault(owners[0], []).append(mask)
        else:
            pairing.ambiguous.append((mask, sorted(owners, key=lambda p: p.name)))
    for _, _, orphan in sorted(orphans, key=lambda m: (natural_key(m[0]), m[1], m[2].name)):
        pairing.orphans.append(orphan)
    for name in sorted(pictures, key=natural_key):
        for picture in sorted(pictures[name], key=lambda p: p.name):
            pairing.items.append(PictureMasks(picture, found.get(picture, [])))
    return pairing


def orphan_holds_mask(path: str | Path) -> bool:
    """Whether the image file ``path``, named as a mask (or in a mask folder) with its
    picture missing (an orphan), holds a mask, its file read once within the size limits
    of ``images.file_looks_like_mask``: by its pixels (that rule, the Segment dock's
    "looks like a mask" hint's), and when they are all one value, which pixels cannot
    tell from a plain black or white picture, by its name: a mask. An all-0 file is an
    empty mask (BUSI's lesion-free "normal" pictures have one), an all-255 (or all-1)
    file a mask all foreground. The one rule for the TM-UNet reader
    (:func:`judge_orphans`), ``napari-tmunet-predict`` and the launcher."""
    from .images import file_looks_like_mask

    return file_looks_like_mask(path, one_value_is_mask=True)


def judge_orphans(pairing: FolderPairing) -> FolderPairing:
    """``pairing`` with its orphans (files named as masks whose picture is missing) told
    apart, each file read once (:func:`orphan_holds_mask`: by its pixels, by its name
    when they are all one value): one that holds a mask goes to ``lone_masks`` (it opens
    alone: an empty mask as empty Labels), any other is a picture (``liver-labels.png``,
    an ultrasound picture) among ``items``, in natural order of the names."""
    from .datasets import natural_key

    judged = FolderPairing(
        list(pairing.items),
        [],
        list(pairing.ambiguous),
        list(pairing.lone_masks),
        pairing.named_masks,
    )
    for orphan in pairing.orphans:
        if orphan_holds_mask(orphan):
            judged.lone_masks.append(orphan)
        else:
            judged.items.append(PictureMasks(orphan))
    judged.items.sort(key=lambda item: (natural_key(item.picture.stem), item.picture.name))
    return judged


def masks_in_folder(
    pictures: Iterable[str], masks: Iterable[Path]
) -> tuple[list[Path], dict[str, list[Path]]]:
    """The files of a mask folder (:data:`MASK_FOLDERS`: a dataset's ``masks/``) told
    apart by the base names of the pictures (``pictures``): (the files named as a picture,
    ``masks/NAME.png``, or as no picture's mask, in their order; per picture name, the
    files that :data:`MASK_NAME` names as its mask: the writer's ``NAME mask.tif`` (a
    correction saved into ``masks/``), ``NAME_mask.png``, ``NAME_mask_1.png``..., the
    plain one first, then the numbered extras). Which of a picture's masks are one mask
    is :func:`mask_families`' to say; nothing is read here."""
    names = set(pictures)
    plain: list[Path] = []
    named: dict[str, list[tuple[int, str, Path]]] = {}
    for path in masks:
        parts = None if path.stem in names else mask_name_parts(path.stem)
        if parts is None or parts[0] not in names:
            plain.append(path)
        else:
            number = -1 if parts[1] is None else parts[1]
            named.setdefault(parts[0], []).append((number, path.name, path))
    return plain, {name: [path for *_, path in sorted(files)] for name, files in named.items()}


def folder_image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), hidden ones left out."""
    return [
        path
        for path in folder.iterdir()
        if not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
    ]


def masks_beside(picture: Path) -> list[Path]:
    """The mask files beside the image file ``picture`` named for it (:data:`MASK_NAME`:
    the plain one first, then the numbered extras); [] when the folder cannot be listed."""
    try:
        files = folder_image_files(picture.parent)
    except OSError:  # unreadable: no mask found there
        return []
    named = [file for file in files if (mask_name_parts(file.stem) or ("",))[0] == picture.stem]
    pairing = pair_by_mask_names([picture, *named])
    return next((item.masks for item in pairing.items if item.picture == picture), [])


def mask_size_problem(mask: Path, picture: Path) -> str | None:
    """Why ``mask`` cannot be ``picture``'s mask (a sentence naming both and their sizes,
    and what to do), or None; headers only (a stack's pages are compared by their height
    and width). An unreadable header gives its read error."""
    try:
        mask_hw, picture_hw = image_shape(mask), image_shape(picture)
    except ImageReadError as err:
        return str(err)
    if mask_hw == picture_hw:
        return None
    return (
        f"the mask {mask} is {mask_hw[0]} x {mask_hw[1]} pixels but its picture {picture} is "
        f"{picture_hw[0]} x {picture_hw[1]}: give the mask made for that picture"
    ) + turned_sizes_note(picture, picture_hw, mask, mask_hw)


def read_mask_union(
    paths: Sequence[Path], read: Callable[[Path], tuple[np.ndarray, str]] = read_mask_labels
) -> tuple[np.ndarray, str]:
    """Labels of one picture's mask files: one file's as ``read`` reads it
    (``read_mask_labels``: instance ids kept; ``read_mask``: bool, for training,
    ``datasets.read_pair_mask``); several files' union (a pixel is foreground where any
    file has foreground) as uint8 0/1, with their rules joined by "; ".

    Raises:
        ImageReadError: naming the files, when their sizes differ.
    """
    labels, rule = read(paths[0])
    if len(paths) == 1:
        return labels, rule
    union, rules = labels > 0, [rule]
    for path in paths[1:]:
        more, rule = read(path)
        if more.shape != union.shape:
            raise ImageReadError(
                f"the masks {paths[0]} ({union.shape[0]} x {union.shape[1]} pixels) and {path} "
                f"({more.shape[0]} x {more.shape[1]}) of one picture differ in size: give "
                "each the size of its picture"
            )
        union |= more > 0
        rules.append(rule)
    return union.astype(np.uint8), "; ".join(dict.fromkeys(rules))
