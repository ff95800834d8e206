"""napari reader: TIFF files (stacks, OME, pixel sizes), ``images/`` + ``masks/`` folders,
folders of pictures with their masks beside them (``NAME.png`` + ``NAME_mask.png``, the
rule of ``data.mask_names``), and folders of images of different sizes (one layer per
image: napari's own reader would stack them into one layer of the first image's size,
which cannot be read or segmented).

TIFF masks that this plugin's writer saved (marked by ``data.images.write_mask``), 2-D
or stacks, open as Labels layers, so a saved correction can be painted, fine-tuned on and
scored again; so do unmarked TIFFs of 32/64-bit integers (napari's own writer saves
labels as uint32), as napari's reader guesses, a stack of 3 or 4 frames too (which the
TIFF marks RGB: ``data.images.LABEL_DTYPES``).

A TIFF of separate channels that are not one colour picture (fluorescence: 2 or 4
channels, 16-bit; ``data.images.read_image_channels``) opens as one grey layer per channel,
as napari's ``channel_axis`` does, its Z/T frames kept as each layer's frames, named by
the file's channel names where it has them ("NAME [DAPI]", else "NAME [ch 0]"), said in
one info notification (:func:`image_layers_data`); :func:`layer_picture` maps such a
layer back to its file's name.

Plain PNG, JPEG and BMP files are left to napari's own reader, which gives the same
arrays (so Segment treats them alike) without a "Choose reader" question; inside a
dataset folder they are read here, paired with their masks.

Decoding is ``napari_tmunet.data.images``'s; this module only turns arrays into layer data
and reports unreadable files as napari notifications instead of tracebacks. What the core
logs as a warning about a file it reads (a mask rule that leaves out flat regions of a
mask, ...) is shown in one napari warning too (:func:`file_warnings_shown`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._layer_style import as_reference, outline_in_current_viewer
from ._unsaved import note_kept

# Integers this wide are label ids, not intensities (napari's own rule, guess_labels): a
# mask saved with napari's writer (uint32, unmarked; a stack of 3 or 4 frames too, which
# the TIFF calls RGB) reopens here as Labels; 8/16-bit grey images stay images.
from .data.images import LABEL_DTYPES, PICTURE_KEY

# napari adds each layer more slowly the more layers it holds (each add updates every
# layer's visual and draws): on 2 CPU cores 100 pairs (200 layers) took 38-47 s of CPU
# with the window frozen, 25 pairs 6 s; reading the files is under 2 s of that
# (bench/folder_open_speed.py, docs/benchmarks.md). A folder with more opens in part, with
# a warning saying how to open the others.
MAX_FOLDER_LAYERS = 50
MAX_FOLDER_PAIRS = MAX_FOLDER_LAYERS // 2  # a picture and its mask: two layers

# What can be opened, said when a path given cannot be (by the reader and the launcher).
CAN_OPEN = (
    "give PNG, JPEG, BMP or TIFF images, a folder of them, or a dataset folder with images/ "
    "and masks/"
)

FILE_SUFFIXES = {".tif", ".tiff"}  # single files claimed (napari.yaml's filename_patterns)

LayerData = tuple  # (data, kwargs, layer_type) or the null sentinel (None,)

# The core's loggers' parent: the core (Qt-free) says what a user should know about a file
# it reads as a logging warning naming the file, which headless tools print.
CORE_LOGGER = "napari_tmunet"
_reading = threading.local()  # .on: a file_warnings_shown block is open in this thread


class _FileWarnings(logging.Handler):
    """Collects the texts of the warnings logged in the thread that made it, each once (a
    file read twice says it once). With ``echo`` it also prints every warning as Python
    does when no handler is set (``logging.lastResort``), which this handler stops."""

    def __init__(self, echo: bool):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.echo = echo
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        # another thread's (a dock's worker) is not about the files being opened
        if record.thread == self.thread and text not in self.texts:
            self.texts.append(text)
        if self.echo and logging.lastResort is not None:
            logging.lastResort.handle(record)


@contextlib.contextmanager
def file_warnings_shown():
    """A block in which the warnings the core logs in this thread (``data.images``: a mask
    rule leaving out flat regions of a mask, naming the file, ...) are collected and, when
    it ends without an error, shown in one napari warning notification, each text once, as
    the reader's other notes are: napari shows no log, and a napari started from a desktop
    launcher has no terminal. They still reach the terminal as before. Blocks nest: the
    outermost one shows them."""
    if getattr(_reading, "on", False):
        yield
        return
    logger = logging.getLogger(CORE_LOGGER)
    collector = _FileWarnings(echo=not logger.hasHandlers())
    logger.addHandler(collector)
    _reading.on = True
    try:
        yield
    finally:
        _reading.on = False
        logger.removeHandler(collector)
    texts = collector.texts
    if len(texts) == 1:
        _notify_warning(texts[0])
    elif texts:
        title = f"napari-tmunet: {len(texts)} warnings about the files opened"
        _notify_warning(_listed(title, texts, limit=MAX_FOLDER_LAYERS))


def showing_file_warnings(opens: Callable) -> Callable:
    """``opens`` (a reader function, the launcher's opening) run in a
    :func:`file_warnings_shown` block."""

    @functools.wraps(opens)
    def opening(*args: Any, **kwargs: Any) -> Any:
        with file_warnings_shown():
            return opens(*args, **kwargs)

    return opening


def _image_suffixes() -> set[str]:
    from .data.images import IMAGE_SUFFIXES

    return {s.lower() if s.startswith(".") else f".{s.lower()}" for s in IMAGE_SUFFIXES}


def _is_image_file(path: Path, suffixes: set[str]) -> bool:
    return path.suffix.lower() in suffixes and path.is_file()


def _is_dataset_dir(path: Path, suffixes: set[str]) -> bool:
    images = path / "images"
    if not (images.is_dir() and (path / "masks").is_dir()):
        return False
    return any(_is_image_file(p, suffixes) for p in images.iterdir())


def napari_get_reader(path: str | Sequence[str]) -> Callable[..., list[LayerData]] | None:
    """Return a reader for TIFF files or a dataset folder; for a folder with nothing to
    open, a reader that raises why (:func:`folder_problem`); else None.

    napari calls this only for the reader chosen (in its "Choose reader" dialog, by a
    saved preference, or as the only one whose manifest patterns match): it lists the
    candidates by ``napari.yaml`` alone. A None then reads "refused the file", with no
    reason, so the reason goes in the error the returned reader raises, which napari
    shows. Cheap checks only (suffix, existence, a folder's listing); never raises.
    The viewer opening it outlines the reference masks read (:func:`as_reference`).
    """
    reader = _reader_for(path)
    if reader is not None:
        outline_in_current_viewer()
        return reader
    try:
        folder = Path(path) if isinstance(path, str | os.PathLike) else None
        problem = folder_problem(folder) if folder is not None and folder.is_dir() else None
    except Exception:
        return None
    return _refusal(problem) if problem else None


def reads(path: str | Sequence[str]) -> bool:
    """Whether this reader opens ``path`` (TIFFs, dataset folders, folders of pictures
    with their masks, folders of images of different sizes)."""
    return _reader_for(path) is not None


def read_from(path: str, start: int) -> list[LayerData]:
    """The layers this reader opens of the folder ``path`` from its ``start``-th picture
    (0-based) on (the launcher's ``--from``): the same order, pairing, cap and warning as
    the folder opened whole.

    Raises:
        ValueError: ``path`` is no folder this reader opens, or ``start`` is past its end.
    """
    reader = _reader_for(path)
    if reader not in (read_dataset, read_paired_folder, read_folder):
        raise ValueError(f"{path}: --from takes a folder of pictures; {CAN_OPEN}")
    return reader(path, start=start)


def _reader_for(path: str | Sequence[str]) -> Callable[..., list[LayerData]] | None:
    """The reader function that opens ``path``, or None; never raises."""
    try:
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        if not paths:
            return None
        paths = [Path(p) for p in paths]
        suffixes = _image_suffixes()
        if len(paths) == 1 and paths[0].is_dir():
            if _is_dataset_dir(paths[0], suffixes):
                return read_dataset
            files = _folder_images(paths[0], suffixes)
            if _pairing(files).named_masks:  # pictures with their masks, or masks alone
                return read_paired_folder
            return read_folder if _sizes_differ(files) else None
        if all(_is_image_file(p, FILE_SUFFIXES) for p in paths):
            return read_images
    except Exception:
        return None
    return None


def folder_problem(folder: Path) -> str | None:
    """Why nothing in ``folder`` can be opened (a sentence naming it and saying what can
    be), or None when it is a dataset folder or holds images. The launcher and the reader
    both say this."""
    suffixes = _image_suffixes()
    try:
        if _is_dataset_dir(folder, suffixes) or _folder_images(folder, suffixes):
            return None
    except OSError as err:
        return f"{folder}: cannot list the folder ({err.strerror})"
    missing = ""
    if (folder / "images").is_dir() and not (folder / "masks").is_dir():
        missing = ", and its images/ has no masks/ beside it"
    return f"{folder}: no images in this folder{missing}; {CAN_OPEN}"


def _refusal(problem: str) -> Callable[..., list[LayerData]]:
    """A reader function that raises ``problem``: napari shows it as the reason."""

    def refuse(path: str | Sequence[str], **_kwargs: Any) -> list[LayerData]:
        raise ValueError(problem)

    return refuse


def _folder_images(folder: Path, suffixes: set[str]) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if _is_image_file(p, suffixes))


def _sizes_differ(files: list[Path]) -> bool:
    """True when the files' headers give more than one (H, W); unreadable ones are skipped
    (read_folder reports them)."""
    from .data.images import image_shape

    sizes = set()
    for path in files[:MAX_FOLDER_LAYERS]:
        try:
            sizes.add(image_shape(path))
        except Exception:  # noqa: BLE001 - reported when the folder is read
            continue
        if len(sizes) > 1:
            return True
    return False


@showing_file_warnings
def read_folder(path: str | Sequence[str], start: int = 0) -> list[LayerData]:
    """Read a folder of images of different sizes: one image layer per file, the first
    visible, for its first :data:`MAX_FOLDER_LAYERS` files from the ``start``-th (0-based,
    in name order; :func:`_first_ones` warns of the others); unreadable files are
    notified."""
    root = Path(path if isinstance(path, str | os.PathLike) else path[0])
    files = _folder_images(root, _image_suffixes())
    files = _first_ones(root, files, "images", MAX_FOLDER_LAYERS, _open_files_hint, start)
    layers = [layer for layer in read_images(files) if len(layer) == 3]  # not the null sentinel
    for _, kwargs, _ in layers:  # the first file's layers (its channels) shown: others cover it
        kwargs["visible"] = kwargs["metadata"].get("path") == layers[0][1]["metadata"].get("path")
    return layers or [(None,)]


def _first_ones(
    root: Path, items: list, what: str, limit: int, hint: Callable, start: int = 0
) -> list:
    """``limit`` of ``items`` (of the folder ``root``) from the ``start``-th (0-based: the
    launcher's ``--from``); when there are more after them, a warning naming how many of
    ``what`` are left out, why, and how to open the next ones (``hint(root, left_out,
    position)``, a sentence; ``position`` 1-based, as ``--from`` takes it).

    Raises:
        ValueError: ``start`` past the last of ``items``, naming how many there are.
    """
    if start and start >= len(items):
        raise ValueError(
            f"{root} has {len(items)} {what}: --from takes a position from 1 to {len(items)}"
        )
    end = start + limit
    if len(items) > end:
        opened = f"the first {limit}" if not start else f"{what} {start + 1} to {end}"
        _notify_warning(
            f"{root}: opened {opened} of {len(items)} {what}: napari slows down with "
            "every layer it holds (200 layers can take a minute to add, the window frozen). "
            + hint(root, items[end:], end + 1)
        )
    return items[start:end]


def _launcher_hint(root: Path, _pictures: list, position: int) -> str:
    """How to open the pictures of the folder ``root`` from ``position`` (1-based) on,
    with their masks: the launcher's ``--from``, the folder given whole (absolute)."""
    return (
        f"Open a folder holding at most {MAX_FOLDER_PAIRS} of them, or, to open the next "
        f"ones with their masks ({MAX_FOLDER_PAIRS} at a time), run: "
        + _from_command(root, position)
    )


def _open_files_hint(root: Path, files: list[Path], position: int) -> str:
    """How to open ``files`` (images left out of the folder ``root``): File > Open
    File(s)..., or the launcher's ``--from``."""
    return (
        f"To open others, choose them in File > Open File(s)... (from {files[0].name} on), "
        f"or, to open the next {MAX_FOLDER_LAYERS}, run: " + _from_command(root, position)
    )


def _from_command(root: Path, position: int) -> str:
    """The launcher command that opens the folder ``root`` from its ``position``-th
    picture (1-based), as a shell takes it: the folder absolute and quoted."""
    return f"napari-tmunet {shlex.quote(os.path.abspath(root))} --from {position}"


def _first_part(root: Path, pairing, start: int = 0):
    """``pairing`` (of the folder ``root``, orphans not judged) cut to
    :data:`MAX_FOLDER_PAIRS` entries from the ``start``-th (0-based) in natural order of
    the names, an entry being a picture with its masks or a file named as a mask whose
    picture is missing (an orphan), with :func:`_first_ones`' warning when there are
    more; then its orphans judged (``data.mask_names.judge_orphans``). Only the orphans
    kept are read, so a folder of thousands of masks is not read whole."""
    from dataclasses import replace

    from .data.datasets import natural_key
    from .data.mask_names import judge_orphans

    entries = [(item.picture, item) for item in pairing.items]
    entries += [(orphan, None) for orphan in pairing.orphans]
    entries.sort(key=lambda entry: (natural_key(entry[0].stem), entry[0].name))
    what = "pictures and their masks"
    kept = _first_ones(root, entries, what, MAX_FOLDER_PAIRS, _launcher_hint, start)
    orphans = {path for path, item in kept if item is None}
    cut = replace(
        pairing,
        items=[item for _, item in kept if item is not None],
        orphans=[orphan for orphan in pairing.orphans if orphan in orphans],
    )
    return judge_orphans(cut)


def _pairing(files: list[Path]):
    """The pictures among ``files`` and their masks by name (``data.mask_names``), hidden
    files left out."""
    from .data.mask_names import pair_by_mask_names

    return pair_by_mask_names(p for p in files if not p.name.startswith("."))


@showing_file_warnings
def read_paired_folder(path: str | Sequence[str], start: int = 0) -> list[LayerData]:
    """Read a folder of pictures with their masks beside them (``NAME.png`` and
    ``NAME_mask.png``, ``NAME_gt.png``, ..., ``data.mask_names``): one image layer per
    picture and one Labels layer over it for its mask, as a dataset folder opens
    (:func:`read_dataset`); the first pair visible. A file named as a mask whose picture
    is missing is judged by its pixels (``data.mask_names.judge_orphans``): a mask opens
    alone as Labels "<picture> mask" (as ``napari-tmunet MASK`` opens it), said in one
    info notification, a picture as any picture. A picture's several masks of one
    family (``NAME_mask_1.png``: a second object) open as their union; masks of several
    families (``NAME mask.tif`` the writer saved beside ``NAME_mask.png``; ``NAME_gt`` and
    ``NAME_mask``: ``data.mask_names.mask_families``) open as separate Labels layers, only
    the first (a saved one) shown; both said in an info notification. Masks that fit no
    one picture (several of their name, another size, unreadable) are not opened, said
    in a warning naming them. Only the folder's first :data:`MAX_FOLDER_PAIRS` pictures
    and lone masks (from the ``start``-th, 0-based: the launcher's ``--from``) are read
    and opened (:func:`_first_part`)."""
    from .data.images import decoding_once

    root = Path(path if isinstance(path, str | os.PathLike) else path[0])
    try:
        pairing = _pairing(_folder_images(root, _image_suffixes()))
    except OSError as err:
        _notify_error(f"napari-tmunet could not list the folder {root}: {err.strerror or err}")
        return [(None,)]
    with decoding_once():  # a lone mask (or picture) judged by its pixels is decoded once
        return _read_pairing(root, _first_part(root, pairing, start))


def _read_pairing(root: Path, pairing) -> list[LayerData]:
    """:func:`read_paired_folder`'s layers of ``pairing`` (of the folder ``root``, cut to
    the pictures and lone masks to open, orphans judged), with its notifications."""
    items = pairing.items
    layers: list[LayerData] = []
    merged, separate, left_out = [], [], _masks_left_out(pairing)
    for item in items:
        visible = not layers
        images = read_images([item.picture])  # as a folder's images open: (None,) if unread
        if len(images[0]) != 3:
            continue
        for _, kwargs, _ in images:  # one layer, or one per channel
            kwargs["visible"] = visible
        layers += images
        image = images[0]
        masks = _fitting_masks(item.picture, item.masks, left_out)
        opened = _add_mask_layers(layers, image, item.picture, masks)
        merged += [(item.picture, paths) for _, paths in opened if len(paths) > 1]
        if len(opened) > 1:
            separate.append((item.picture, opened))
    alone = _lone_masks(pairing.lone_masks, layers)
    if alone:
        lines = [f'{mask.name}: opened alone as Labels "{name}"' for mask, name in alone]
        title = "masks without their picture beside them (open it to pair them)"
        _notify_info(_listed(f"{root}: {title}", lines))
    if left_out:
        _notify_warning(_listed(f"{root}: masks not opened", left_out))
    if merged:
        merged_note(root, merged)
    if separate:
        separate_note(root, separate)
    return layers or [(None,)]


def _add_mask_layers(
    layers: list[LayerData], image: LayerData, picture: Path, masks: list[Path]
) -> list[tuple[str, list[Path]]]:
    """Append to ``layers`` a Labels layer over ``image`` (the layer data of the picture
    file ``picture``) for each family of its mask files ``masks``
    (``data.mask_names.mask_families``: one family's files as their union; a mask named
    as the picture, in a dataset's masks/, a family of its own), named by
    ``MaskFamily.layer_name``, only the first shown, and only when the picture is; an
    unreadable mask is notified. Returns (layer name, files) of each layer added."""
    from .data.mask_names import mask_families

    families = mask_families(masks, picture=picture.stem)
    opened = []
    for family in families:
        name = family.layer_name(image[1]["name"], len(families) > 1)
        shown = image[1]["visible"] and not opened
        try:  # only the first shown: one picture's masks drawn over each other hide it
            layer = picture_mask_layer_data(family.paths, like=image, visible=shown, name=name)
        except Exception as err:
            _notify_error(_failure(family.paths[-1], err, "the mask "))
            continue
        layers.append(layer)
        opened.append((layer[1]["name"], family.paths))  # another channel's result: its own
    return opened


def _lone_masks(masks: list[Path], layers: list[LayerData]) -> list[tuple[Path, str]]:
    """Append to ``layers`` a Labels layer for each mask file of ``masks`` (a mask without
    its picture) named "<picture> mask" after the picture its name gives, so the Metrics
    dock pairs it with that picture once opened; the first shown when ``layers`` is
    empty. Returns (mask, layer name) of those opened; an unreadable one is notified."""
    from .data.images import read_saved_mask

    opened = []
    for mask in masks:
        name = f"{_picture_name(mask)} mask"
        try:
            saved = read_saved_mask(mask)  # the writer's: its ids as saved
            if saved is None:
                data, kwargs, kind = mask_layer_data(mask)
            else:
                data, kwargs, kind = saved_mask_layer_data(mask, saved)
                as_reference(kwargs, data)
        except Exception as err:  # any decoder failure becomes a notification
            _notify_error(_failure(mask, err, "the mask "))
            continue
        kwargs.update(name=name, visible=not layers)
        layers.append((data, kwargs, kind))
        opened.append((mask, name))
    return opened


def merged_note(folder: Path, merged: list[tuple[Path, list[Path]]]) -> None:
    """Say in one info notification which pictures' several masks (in ``folder``) opened
    as one Labels layer, their union: each picture and its mask files by name."""
    lines = [f"{picture.name}: {', '.join(m.name for m in masks)}" for picture, masks in merged]
    _notify_info(_listed(f"{folder}: the masks of a picture opened as one (their union)", lines))


def separate_note(folder: Path, separate: list[tuple[Path, list[tuple[str, list[Path]]]]]) -> None:
    """Say in one info notification which pictures' masks (in ``folder``) of different
    families opened as separate Labels layers: each picture, each layer's name and its
    mask files."""
    lines = [
        f"{picture.name}: "
        + "; ".join(f'"{name}" ({", ".join(m.name for m in paths)})' for name, paths in opened)
        for picture, opened in separate
    ]
    title = "masks of a picture named differently opened as separate layers, not merged"
    _notify_info(_listed(f"{folder}: {title} (the first shown)", lines))


def picture_mask_layer_data(
    paths: Sequence[Path], like: LayerData, visible: bool = True, name: str | None = None
) -> LayerData:
    """Labels layer data ``name`` (default "<picture> mask") for the mask file(s) of the
    picture of layer data ``like``, over it: a mask this plugin's writer saved as it was
    written (:func:`saved_mask_layer_data`: instance ids, a Segment result's origin), else
    :func:`mask_layer_data`'s (several files: their union). A Segment result saved of
    another channel of ``like``'s file (its origin names the file's picture) keeps the
    channel it was made of, in its metadata and name (Fine-tune pairs it with that
    channel)."""
    from .data.images import read_saved_mask

    name = name or f"{like[1]['name']} mask"
    saved = read_saved_mask(paths[0]) if len(paths) == 1 else None
    if saved is None:
        data, kwargs, kind = mask_layer_data(paths, like=like, visible=visible)
        kwargs["name"] = name
        return data, kwargs, kind
    data, kwargs, kind = saved_mask_layer_data(Path(paths[0]), saved)
    placed = picture_metadata(like[1]["name"], like[1].get("metadata"))
    made_of = kwargs["metadata"].get("image")
    if made_of and kwargs["metadata"].get(PICTURE_KEY) == placed.get(PICTURE_KEY, ""):
        placed["image"] = made_of  # a channel of this file: the one it was made of
        if name.startswith(like[1]["name"]):
            name = made_of + name[len(like[1]["name"]) :]
    kwargs.update(name=name, visible=visible)
    as_reference(kwargs, data)
    kwargs["metadata"].update(placed)
    scale = like[1].get("scale")
    if scale is not None and data.ndim == len(scale):
        kwargs["scale"] = tuple(scale)
    return data, kwargs, kind


def _masks_left_out(pairing) -> list[str]:
    """Lines naming the mask files of ``pairing`` that go with no one picture, and why."""
    lines = [
        f"{mask.name}: its name fits several pictures ({', '.join(p.name for p in pictures)}); "
        "rename one of them"
        for mask, pictures in pairing.ambiguous
    ]
    return lines


def _picture_name(mask: Path) -> str:
    from .data.mask_names import mask_name_parts

    return (mask_name_parts(mask.stem) or (mask.stem,))[0]


def _fitting_masks(picture: Path, masks: list[Path], left_out: list[str]) -> list[Path]:
    """The mask files ``masks`` of ``picture`` that are its size; a line for each other
    one goes to ``left_out`` (headers only)."""
    from .data.mask_names import mask_size_problem

    fitting = []
    for mask in masks:
        problem = mask_size_problem(mask, picture)
        if problem:
            left_out.append(f"{mask.name}: {problem}")
        else:
            fitting.append(mask)
    return fitting


def _listed(title: str, lines: list[str], limit: int = 10) -> str:
    """``title`` then one indented line each (at most ``limit``, then how many more)."""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join([f"{title}:", *shown])


@showing_file_warnings
def read_images(path: str | Sequence[str]) -> list[LayerData]:
    """Read one or more files into image layers, or Labels layers for the masks this
    plugin's writer saved; unreadable files are notified."""
    from .data.images import read_saved_mask

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers = []
    for p in paths:
        try:
            mask = read_saved_mask(p)  # the file opened once: kind, pixels, shape, size
            if mask is not None:
                layers.append(saved_mask_layer_data(Path(p), mask))
            else:
                layers += [_labels_if_ids(layer) for layer in image_layers_data(Path(p))]
        except Exception as err:  # any decoder failure becomes a notification
            _notify_error(_failure(Path(p), err))
    return layers or [(None,)]


@showing_file_warnings
def read_dataset(path: str | Sequence[str], start: int = 0) -> list[LayerData]:
    """Read a ``ROOT/images`` + ``ROOT/masks`` folder: one image layer per image and a
    Labels layer over it for its mask, for its first :data:`MAX_FOLDER_PAIRS` images from
    the ``start``-th (0-based: the launcher's ``--from``; :func:`_first_ones` warns of the
    others and how to open them). Its masks in
    ``masks/`` are ``masks/NAME.*`` and those named by ``data.mask_names``' rule
    (``data.datasets.scan_pairs``): a correction the writer saved there as ``masks/NAME
    mask.tif`` opens beside ``masks/NAME.png`` as a separate Labels layer, shown, never
    merged with it, as in a folder of pictures with their masks beside them
    (:func:`read_paired_folder`), said in the same info notification; one family's files
    (``NAME_mask.png`` + ``NAME_mask_1.png``) open as their union.

    Only the first pair starts visible; the others are hidden so they do not cover it.
    """
    root = Path(path if isinstance(path, str | os.PathLike) else path[0])
    try:
        items, skipped = _dataset_items(root, start)
    except Exception as err:
        _notify_error(f"napari-tmunet could not list the dataset {root}: {err}")
        return [(None,)]
    if skipped:
        _notify_warning(skipped)
    items = _first_ones(root, items, "images", MAX_FOLDER_PAIRS, _launcher_hint, start)

    layers: list[LayerData] = []
    merged, separate, left_out = [], [], []
    for image_path, masks in items:
        try:
            images = image_layers_data(image_path)  # one layer, or one per channel
        except Exception as err:
            _notify_error(_failure(image_path, err))
            continue
        for _, kwargs, _ in images:
            kwargs["visible"] = not layers
        layers += images
        image = images[0]
        if len(masks) > 1:  # several kinds are not size-checked by scan_pairs (left out there)
            masks = _fitting_masks(image_path, masks, left_out)
        opened = _add_mask_layers(layers, image, image_path, masks)
        merged += [(image_path, paths) for _, paths in opened if len(paths) > 1]
        if len(opened) > 1:
            separate.append((image_path, opened))
    if left_out:
        _notify_warning(_listed(f"{root / 'masks'}: masks not opened", left_out))
    if merged:
        merged_note(root / "masks", merged)
    if separate:
        separate_note(root / "masks", separate)
    return layers or [(None,)]


def _labels_if_ids(layer: LayerData) -> LayerData:
    """An image layer's data as Labels when its pixels are ids by napari's rule
    (:data:`LABEL_DTYPES`, one channel, in memory), else unchanged."""
    data, kwargs, _ = layer
    if type(data) is not np.ndarray or kwargs.get("rgb") or data.dtype not in LABEL_DTYPES:
        return layer
    kwargs = {k: v for k, v in kwargs.items() if k not in ("rgb", "contrast_limits")}
    note_kept(data)  # as its file keeps them: closing napari asks only once they change
    return data, kwargs, "labels"


def image_layer_data(path: Path) -> LayerData:
    """Layer data for one image file: native dtype, RGB flag, contrast range and scale.

    A TIFF over the pixel budget (``data.budget``) opens lazily, as a multiscale layer
    (see ``_lazy_layer_data``). A TIFF of separate channels gives them as frames
    (:func:`image_layers_data` opens one layer each).
    """
    from .data.images import open_image

    return _layer_data(path, open_image(path))


# The layer metadata keys of a channel that image_layers_data opened apart: its index in
# the file, and how many the file has (the Segment dock tells it from a colour image split
# into layers by them).
CHANNEL_KEY = "channel"
CHANNELS_KEY = "channels"
# napari's colours for channels it opens apart (``channel_axis``): magenta and green for
# two, else these in turn; added together, as napari blends them.
_TWO_CHANNEL_COLOURS = ("magenta", "green")
_CHANNEL_COLOURS = ("cyan", "magenta", "yellow", "red", "green", "blue")


def layer_picture(layer) -> str:
    """The name of the picture an image layer shows, as its file is named: for a channel
    :func:`image_layers_data` opened apart ("NAME [DAPI]", "NAME [ch 1]"), its file's base
    name NAME; for any other layer, its name. A picture's masks go over the layer of its
    name by this rule (the launcher), over its first channel for a file of channels, as
    a folder opens them."""
    return _channel_file(layer.metadata) or layer.name


def picture_metadata(name: str, metadata: dict | None) -> dict[str, str]:
    """The metadata by which a layer made from, or laid over, the image layer ``name``
    (of ``metadata``) names its picture: "image", that layer's name, and for a channel
    :func:`image_layers_data` opened apart, :data:`PICTURE_KEY`, its file's name
    (:func:`layer_picture`): the Metrics dock pairs a result of any channel with the
    file's mask, laid over its first channel (``_image_layers.owning_picture``)."""
    named = {"image": name}
    file = _channel_file(metadata)
    if file:
        named[PICTURE_KEY] = file
    return named


def _channel_file(metadata: dict | None) -> str:
    """The base name of the file a channel layer (of ``metadata``) was opened apart from
    by :func:`image_layers_data`; "" for any other layer."""
    metadata = metadata or {}
    if CHANNEL_KEY in metadata and metadata.get("path"):
        return Path(metadata["path"]).stem
    return ""


def image_layers_data(path: Path) -> list[LayerData]:
    """Layer data for one image file (:func:`image_layer_data`); for a TIFF of separate
    channels (``data.images.read_image_channels``: fluorescence, not one colour picture),
    one grey image layer per channel, named by the file's own channel names where it
    has them, "NAME [DAPI]", else "NAME [ch 0]", ... (``Channels.labels``: unique,
    readable), each with its Z/T frames,
    in napari's channel colours, added together; said in one info notification ("NAME:
    2 channels opened as 2 layers, 5 slices each"), so no channel is taken for a frame
    or for colour."""
    from .data.images import open_image_channels

    data, channels = open_image_channels(path)
    if channels is None:
        return [_layer_data(path, data)]
    colours = _TWO_CHANNEL_COLOURS if channels.count == 2 else _CHANNEL_COLOURS
    labels = channels.labels()
    layers = []
    for index, channel in enumerate(data):  # (Z, H, W) or (H, W) each
        channel_data, kwargs, kind = _layer_data(path, channel)
        kwargs["name"] = f"{path.stem} [{labels[index]}]"
        kwargs["metadata"].update({CHANNEL_KEY: index, CHANNELS_KEY: channels.count})
        kwargs["colormap"] = colours[index % len(colours)]
        kwargs["blending"] = "additive" if index else "translucent_no_depth"
        layers.append((channel_data, kwargs, kind))
    each = channels.frames_words()
    _notify_info(
        f"{path.stem}: {channels.count} channels opened as {channels.count} layers"
        + (f", {each} each" if each else "")
        + " (grey images: the file marks no RGB colour)"
    )
    return layers


def _layer_data(path: Path, data) -> LayerData:
    """Image layer data for the pixels ``data`` read from ``path``."""
    from .data.images import read_pixel_size

    if type(data) is not np.ndarray:  # memmap or zarr: over the pixel budget
        return _lazy_layer_data(path, data)
    data, converted = _cmyk_as_rgb(path, data)
    if data.dtype == bool:  # 1-bit images: napari's image layer wants numbers; 0/255 keeps
        data = data.astype(np.uint8) * np.uint8(255)  # Segment's intensities (bool -> 0/1)
    rgb = data.ndim >= 3 and data.shape[-1] in (3, 4) and data.shape[-2] > 4
    spatial_ndim = data.ndim - 1 if rgb else data.ndim
    kwargs: dict[str, Any] = {"name": path.stem, "rgb": rgb, "metadata": {"path": str(path)}}
    if converted:
        kwargs["metadata"]["colour_conversion"] = converted
    _note_orientation(path, kwargs["metadata"])

    if data.dtype != np.uint8 and data.size:
        finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            kwargs["contrast_limits"] = [lo, hi if hi > lo else lo + 1.0]
    elif not rgb:
        kwargs["contrast_limits"] = [0.0, 255.0]

    kwargs.update(_physical_kwargs(path, spatial_ndim, read_pixel_size))
    return data, kwargs, "image"


def _note_orientation(path: Path, metadata: dict) -> None:
    """When ``data.images`` read ``path`` turned by its EXIF orientation: say so in the
    layer's ``metadata`` ("orientation") and in a notification naming the file (napari's
    own reader shows it as stored, so the two differ)."""
    from .data.images import orientation_applied

    turned = orientation_applied(path)
    if turned:
        metadata["orientation"] = turned
        _notify_info(
            f"{path.name}: shown {turned} (as photo viewers show it; napari's own reader "
            "shows its pixels as stored)"
        )


def _cmyk_as_rgb(path: Path, data: np.ndarray) -> tuple[np.ndarray, str]:
    """A CMYK file's pixels as RGB (Pillow's conversion) and a note saying so; other
    images unchanged, with "".

    napari would draw the four ink channels as RGBA, the black ink as alpha: the picture
    shows black or transparent. ``data.images`` converts CMYK JPEGs and TIFFs of unsigned
    inks when it reads them; float inks come as stored (a warning here).
    """
    from .data.colour_spaces import (
        CMYK,
        CONVERSION_NOTES,
        conversion_problem,
        convert_colours,
        stored_colour_space,
    )

    if stored_colour_space(path) != CMYK:
        return data, ""
    if data.shape[-1:] == (4,):
        problem = conversion_problem(data, CMYK)
        if problem:  # shown as stored; Segment says the same when asked to segment it
            _notify_warning(f"{path.name}: shown as stored, ink as RGBA: {problem}")
            return data, ""
        data = convert_colours(data, CMYK)  # (..., 4) inks -> (..., 3) RGB
    return data, CONVERSION_NOTES[CMYK]


# Lazily opened images get coarser levels until the coarsest fits a screen this wide.
_COARSEST_SIDE = 2048


def _lazy_layer_data(path: Path, data) -> LayerData:
    """Multiscale layer data for a lazy (H, W[, C]) image: napari then reads only the
    visible part at the level the view needs. Levels are the file's own pyramid when it
    has one, else every 2nd, 4th... pixel of the full image (read chunk by chunk).
    Contrast limits come from 64 rows spread over the image."""
    import dask.array as da

    from .data.budget import sample_rows
    from .data.images import read_pixel_size

    _cmyk_as_rgb(path, data)  # too large to convert: only warns that it shows as stored
    levels = _file_levels(path, data)
    base = da.from_array(data, chunks=getattr(data, "chunks", None) or "auto")
    if len(levels) == 1:
        levels = [base]
        step = 2
        while max(base.shape[:2]) // step > _COARSEST_SIDE // 2 and step < 1 << 12:
            levels.append(base[::step, ::step])
            step *= 2
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    kwargs: dict[str, Any] = {
        "name": path.stem,
        "rgb": rgb,
        "multiscale": True,
        "metadata": {"path": str(path), "lazy": True},
    }
    sample = sample_rows(data)
    if sample.dtype != np.uint8:
        finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        kwargs["contrast_limits"] = [lo, hi if hi > lo else lo + 1.0]
    elif not rgb:
        kwargs["contrast_limits"] = [0.0, 255.0]
    kwargs.update(_physical_kwargs(path, 2, read_pixel_size))
    return levels, kwargs, "image"


def _file_levels(path: Path, data) -> list:
    """The TIFF's own pyramid levels (zarr arrays), or just ``[data]``."""
    try:
        import tifffile
        import zarr

        with tifffile.TiffFile(path) as tif:
            n_levels = len(tif.series[0].levels)
        if n_levels < 2:
            return [data]
        store = tifffile.imread(path, aszarr=True, series=0)
        group = zarr.open_group(store, mode="r")
        return [group[str(i)] for i in range(n_levels)]
    except Exception:  # no usable pyramid: levels are made from the full image
        return [data]


def saved_mask_layer_data(path: Path, mask) -> LayerData:
    """Labels layer data for a TIFF that ``data.images.write_mask`` wrote (``mask``, a
    ``data.images.SavedMask`` read from it), in the shape it was written ((H, W) or a
    stack): instance ids as stored, a binary mask's 0/255 back to 0/1 (the labels it was
    written from). Scale, translate and units are those the writer stored for the layer
    (``_placement_kwargs``), else the file's resolution tags' pixel size; a Segment
    result's origin goes to the metadata (``_origin_metadata``)."""
    labels = mask.labels  # (H, W) or (Z, H, W): uint8 0/255, or uint16/32 ids
    shape = mask.shape
    if shape and labels.ndim > 2 and np.prod(shape) == labels.size:
        labels = labels.reshape(shape)  # e.g. (T, Z, H, W), which the read made (T*Z, H, W)
    if mask.kind == "binary":
        labels = (labels > 0).astype(np.uint8)
    kwargs: dict[str, Any] = {
        "name": path.stem,
        "metadata": {"path": str(path), "output": mask.kind, **_origin_metadata(mask, labels)},
    }
    placed = _placement_kwargs(mask.placement, labels.ndim)
    kwargs.update(placed or _physical_kwargs(path, labels.ndim, lambda _path: mask.pixel_size))
    note_kept(labels)  # as its file keeps them: closing napari asks only once they change
    return labels, kwargs, "labels"


def _origin_metadata(mask, labels: np.ndarray) -> dict[str, Any]:
    """A saved Segment result's origin as layer metadata: the model, model label, image
    name and, for a channel's result, its file's picture (``data.images.ORIGIN_NAMES``,
    those the file keeps: one saved before the picture was kept pairs by its image's
    name, as then), and the model's own foreground (``postprocess.SAVED_PREDICTION_KEY``)
    when the file keeps one of the labels' size; {} for other masks."""
    from .data.images import ORIGIN_NAMES
    from .postprocess import SAVED_PREDICTION_KEY

    origin = mask.origin or {}
    names = {k: origin[k] for k in ORIGIN_NAMES if k in origin}
    prediction = origin.get("prediction")
    if prediction is None or prediction.size != labels.size:
        return names  # the user's edits unknown (Fine-tune says so)
    return {**names, SAVED_PREDICTION_KEY: prediction.reshape(labels.shape)}


def _placement_kwargs(placement: dict | None, ndim: int) -> dict[str, Any]:
    """``scale``/``translate``/``units`` from the placement ``data.images.write_mask``
    stored, each kept only with one usable value per axis (finite non-zero scales, finite
    offsets, unit names napari knows); {} without a usable scale."""
    placement = placement or {}
    try:
        scale = [float(v) for v in placement.get("scale") or ()]
        translate = [float(v) for v in placement.get("translate") or ()]
        units = [str(v) for v in placement.get("units") or ()]
    except (TypeError, ValueError):  # a hand-edited description: use the resolution tags
        return {}
    if len(scale) != ndim or not all(np.isfinite(v) and v != 0 for v in scale):
        return {}
    out: dict[str, Any] = {"scale": tuple(scale)}
    if len(translate) == ndim and all(np.isfinite(translate)):
        out["translate"] = tuple(translate)
    if len(units) == ndim and all(_valid_unit(u) for u in units):
        out["units"] = tuple(units)
    return out


def mask_layer_data(
    path: Path | Sequence[Path], like: LayerData | None = None, visible: bool = True
) -> LayerData:
    """Labels layer data for a mask file: its instance ids as stored (a 16-bit PNG the
    writer saved), else binarised by ``read_mask``'s rules as uint8 0/1
    (``data.images.read_mask_labels``); for several mask files of one picture, their
    union as uint8 0/1 (``data.mask_names.read_mask_union``; metadata "paths" names
    them). Named "<picture> mask" after ``like``, the picture's layer data, when given."""
    from .data.mask_names import read_mask_union

    paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
    mask, rule = read_mask_union(paths)
    kwargs: dict[str, Any] = {
        "name": f"{paths[0].stem} mask",
        "visible": visible,
        "metadata": {"path": str(paths[0]), "mask_rule": str(rule)},
    }
    as_reference(kwargs, mask)  # drawn as outlines
    if len(paths) > 1:
        kwargs["metadata"]["paths"] = [str(p) for p in paths]
    for file in paths:
        _note_orientation(file, kwargs["metadata"])
    if like is not None:  # overlay the image it belongs to; Metrics pairs by its name
        kwargs["name"] = f"{like[1]['name']} mask"
        kwargs["metadata"].update(picture_metadata(like[1]["name"], like[1].get("metadata")))
        for key in ("scale", "units"):
            if key in like[1]:
                kwargs[key] = like[1][key]
    note_kept(mask)  # as its files keep it: closing napari asks only once it changes
    return mask, kwargs, "labels"


def _physical_kwargs(path: Path, spatial_ndim: int, read_pixel_size) -> dict[str, Any]:
    """``scale``/``units`` (and metadata) from the file's pixel size; {} if it has none."""
    try:
        size = read_pixel_size(path)
    except Exception:  # a missing or odd resolution tag is not an error
        size = None
    if not size:
        return {}
    y, x, unit = size
    lead = spatial_ndim - 2  # e.g. the page axis of a stack: spacing unknown, kept at 1
    out: dict[str, Any] = {"scale": (1.0,) * lead + (float(y), float(x))}
    if unit and _valid_unit(unit):
        out["units"] = ("pixel",) * lead + (unit, unit)
    return out


def _valid_unit(unit: str) -> bool:
    try:
        from napari.utils.transforms._units import get_units_from_name

        get_units_from_name(unit)
    except Exception:  # napari without units support, or an unknown name
        return False
    return True


def _dataset_items(root: Path, start: int = 0) -> tuple[list[tuple[Path, list[Path]]], str | None]:
    """(image, its mask files) per image in ``root/images``, and a note on what was
    skipped.

    Pairs come from ``data.scan_pairs``; an image with masks of several families (the
    writer's ``masks/NAME mask.tif`` beside ``masks/NAME.png``), which it leaves out of
    training, comes with all of them (each opens as its own layer, which the reader's
    note says instead of the skip); images it could not pair (no mask yet, or a mask of
    another size) still open alone, so they can be annotated. Sizes are read only for
    the :data:`MAX_FOLDER_PAIRS` images from the ``start``-th (0-based), those that open
    (:func:`_sized_items`).
    """
    from dataclasses import replace

    from .data.datasets import natural_key, scan_pairs

    report = scan_pairs(root, check_sizes=False)
    items = [(p.image_path, list(p.mask_paths)) for p in report.pairs]
    items += [(image, list(masks)) for image, masks in report.several_kinds]
    listed = {image for image, _ in items}
    suffixes = _image_suffixes()
    items += [
        (p, [])
        for p in (root / "images").iterdir()
        if _is_image_file(p, suffixes) and not p.name.startswith(".") and p not in listed
    ]
    items.sort(key=lambda item: natural_key(item[0].stem))
    items = _sized_items(report, items, start)
    opened_apart = {str(image) for image, _ in report.several_kinds}
    skipped = [item for item in report.skipped if item[0] not in opened_apart]
    return items, (replace(report, skipped=skipped).summary() if skipped else None)


def _sized_items(report, items: list[tuple[Path, list[Path]]], start: int) -> list:
    """``items`` (image, its mask files) of the scan ``report`` (sizes not checked), the
    :data:`MAX_FOLDER_PAIRS` from the ``start``-th (those that open) checked as
    ``data.scan_pairs`` checks a pair (``data.datasets.pair_size_problem``): one that
    makes no pair (a mask of another size, an unreadable header) opens its image alone,
    its reason in ``report.skipped`` and the pair out of ``report.pairs``. The others are
    not read: a folder of thousands of pairs opens 25."""
    from .data.datasets import pair_size_problem

    pairs = {pair.image_path: pair for pair in report.pairs}
    sized = list(items)
    for index in range(start, min(start + MAX_FOLDER_PAIRS, len(items))):
        image, masks = items[index]
        pair = pairs.get(image)
        problem = pair and pair_size_problem(image, masks)
        if problem:
            report.skipped.append((pair.name, problem))
            report.pairs.remove(pair)
            sized[index] = (image, [])
    return sized


def _failure(path: Path, err: Exception, what: str = "") -> str:
    """A one-line message naming the file (the imageio errors already start with it)."""
    text = str(err)
    if path.name in text:
        return f"napari-tmunet could not read {what}{text}"
    return f"napari-tmunet could not read {what}{path}: {type(err).__name__}: {text}"


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)
