"""``napari-tmunet``: open napari with the Segment and Metrics docks and a sample image.

Interactive (the README's main command)::

    napari-tmunet [--sample colonoscopy|nuclei|ultrasound] [FILE_OR_FOLDER ...]
    napari-tmunet FOLDER --from N

opens napari ready to click Segment, on the files or folders given (a dataset folder with
``images/`` and ``masks/`` through the TM-UNet reader; of several pictures the first is
shown and chosen, the others hidden; a picture's mask, given (paired by name) or found
beside it, over it as a Labels layer, a file of any name that holds a mask too when it
is given with its one picture: ``_open_paths``), else on a sample image. A folder opens
its first 25 pictures (``_reader.MAX_FOLDER_PAIRS``); ``--from N`` opens the next ones,
from its N-th picture in the reader's order, as the reader's warning says.
Non-interactive check (CI)::

    napari-tmunet --smoke [--screenshot PATH]

opens napari under Xvfb (started through ``xvfb-run`` when there is no display), clicks
Segment on the sample twice (the Segment dock's worker thread), reports the seconds from
click to Labels layer (the first click loads the model), checks the layer (shape, not
empty, Dice against the sample's mask), saves a screenshot of the window (to the temporary
folder unless ``--screenshot`` says where) and exits non-zero on any failure. It checks the
installation: it runs the shipped model of the sample's modality (or ``--model``), with
settings of its own in a temporary folder, so a model the user made active (a fine-tune)
or picked is neither used nor changed; its first line and report name the model. The
tests check what the canvas draws (tests/test_segment_widget.py).

Where napari or a Qt binding cannot be imported (installed without the ``napari`` extra),
it exits with code 2 and one line naming what is missing and the pip command that installs
it; the headless commands (napari-tmunet-predict, napari-tmunet-train) need neither.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ._reader import (
    CAN_OPEN,  # what can be opened, said when a path given cannot be
    showing_file_warnings,
)
from .data.mask_names import MASK_FOLDERS, mask_name_parts
from .options import DEVICES, MODALITIES

PLUGIN = "napari-tmunet"
SAMPLES = MODALITIES  # one sample image per modality
_UNDER_XVFB_ENV = "NAPARI_TMUNET_UNDER_XVFB"
DEFAULT_SCREENSHOT = Path(tempfile.gettempdir()) / "napari-tmunet-smoke.png"
POLL_S = 0.05  # the smoke check looks at the Segment dock's state this often
WINDOW_SIZE = (1500, 950)  # width, height; smaller on a smaller screen (fit_window_to_screen)
# pyproject.toml's extra that installs napari and a Qt binding (tests/test_no_napari180.py
# checks that it is there); the command said when either is missing
GUI_EXTRA = "napari"
INSTALL_GUI = f'pip install "napari-tmunet[{GUI_EXTRA}]"'
# napari 0.9's notice under PyQt5, which it shows as a warning toast when its first window
# opens (the launcher says it in the terminal instead: _pyqt5_notice_to_terminal)
PYQT5_NOTICE = "napari support for the PyQt5 backend is deprecated"
QT6_EXTRA = "pyqt6"  # pyproject.toml's extra that installs napari with PyQt6


class CannotOpen(RuntimeError):
    """A file given on the command line that napari's readers cannot open."""


# A picture's reference mask: NAME.* in a folder of MASK_FOLDERS' names (a dataset's
# ROOT/masks, or one beside the picture), or NAME<sep><word>.* beside it (NAME_mask.png,
# NAME-mask.tif, "NAME mask.tif", NAME_labels.png, and extras NAME_mask_1.png, ...): the
# rule of data.mask_names, which the TM-UNet reader follows for a folder of both.


def build_parser() -> argparse.ArgumentParser:
    from .registry import describe_models

    parser = argparse.ArgumentParser(
        prog="napari-tmunet",
        description="Open napari with the TM-UNet Segment and Metrics docks and a sample image. "
        "Research use only, not a medical device.",
        epilog="shipped models (--model NAME or its modality):\n" + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="FILE_OR_FOLDER",
        help="images, or a folder of them (e.g. a dataset with images/ and masks/), to open "
        "instead of the sample; a picture's mask (NAME_mask.png, NAME-mask.tif, masks/NAME.png, "
        "...) given or found beside it opens over it, paired by name, and so does a file of "
        "any name that holds a mask (0/255, 0/1 or object ids) given with its one picture "
        "(IMAGE MASK)",
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=int,
        default=None,
        metavar="N",
        help="with one folder: open its pictures (with their masks) from the N-th on, in the "
        "order the folder opens them, as many as a folder opens at once; a large folder's "
        "warning gives this command for the next ones",
    )
    parser.add_argument(
        "--sample",
        choices=SAMPLES,
        default=None,
        help="sample image to open when no file is given (default: colonoscopy)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a shipped model's name or modality (listed below) or a checkpoint file to select",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="non-interactive check of the installation: segment the sample with its "
        "shipped model (or --model; not the model you made active, and your settings are "
        "left as they are), check the result, save a screenshot, exit",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=DEFAULT_SCREENSHOT,
        help=f"where --smoke saves the window screenshot (default: {DEFAULT_SCREENSHOT})",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="with --smoke, also save the canvas at the image's pixel grid (export_figure)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="with --smoke, write the checks as JSON here"
    )
    parser.add_argument(
        "--min-dice",
        type=float,
        default=0.0,
        help="with --smoke, fail when Dice against the sample's mask is lower",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="with --smoke, seconds to wait for Segment"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    problem = _gui_problem()
    if problem:  # a pip install without the extra: say what to install, not a traceback
        print(f"napari-tmunet: error: {problem}", file=sys.stderr)
        return 2
    problem = _model_problem(args.model) or _paths_problem(args)
    if problem:  # before napari starts: a typo should not open a window, then a traceback
        print(f"napari-tmunet: error: {problem}", file=sys.stderr)
        return 2
    if not args.paths:
        args.sample = args.sample or "colonoscopy"
    if args.smoke and not _has_display():
        return _rerun_under_xvfb(argv)
    if args.smoke:
        os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    elif not _has_display():
        print(
            "napari-tmunet: no display found (DISPLAY/WAYLAND_DISPLAY unset). Run it on a "
            "desktop, or use --smoke for the non-interactive check under Xvfb.",
            file=sys.stderr,
        )
        return 2
    try:
        return _smoke(args) if args.smoke else _interactive(args)
    except CannotOpen as err:
        print(f"napari-tmunet: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the smoke check's contract: any failure -> non-zero exit
        if not args.smoke:
            raise
        if not isinstance(err, RuntimeError):  # the checks' own failures need no traceback
            import traceback

            traceback.print_exc()
        print(f"SMOKE FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def _gui_problem() -> str | None:
    """Why the napari window cannot open here (napari, or a Qt binding for it, cannot be
    imported), in a sentence with the pip command that installs them, or None."""
    try:
        import napari  # noqa: F401
    except ImportError as err:
        missing = f"napari cannot be imported ({err})"
    else:
        try:  # napari itself installs no Qt binding (PyQt5, PyQt6, ...): qtpy says so
            import qtpy  # noqa: F401
        except ImportError as err:
            missing = f"napari has no Qt binding ({err})"
        else:
            return None
    return (
        f"{missing}; the napari-tmunet window needs napari and a Qt binding, installed with "
        f"the package's {GUI_EXTRA!r} extra: {INSTALL_GUI} (napari-tmunet-predict and "
        "napari-tmunet-train run without them)"
    )


def _model_problem(model: str | None) -> str | None:
    """Why ``--model`` cannot be used (a sentence naming the choices), or None."""
    from .registry import resolve_model

    if model is None:
        return None
    try:
        resolve_model(model)
    except (ValueError, RuntimeError) as err:  # unknown name; unreadable registry
        return str(err)
    return None


def _paths_problem(args: argparse.Namespace) -> str | None:
    """Why the files given cannot be opened (a sentence naming the first missing one, a
    mask given that goes with no picture or several, or one whose size is not its
    picture's), or None."""
    if args.paths and args.smoke:
        return "--smoke checks a sample image; it opens no files (use --sample)"
    if args.paths and args.sample:
        return "give files to open or --sample, not both"
    problem = next(filter(None, map(_path_problem, args.paths)), None)
    if problem:
        return problem
    if args.start is not None:
        return _start_problem(args.paths, args.start)
    try:
        given = _given_masks(args.paths)
    except CannotOpen as err:
        return str(err)
    return next(filter(None, (_size_problem(*pair) for pair in given)), None)


def _start_problem(paths: list[str], start: int) -> str | None:
    """Why ``--from start`` cannot open ``paths`` (one folder the TM-UNet reader opens,
    a position from 1), or None."""
    if start < 1:
        return f"--from {start}: give a picture's position, from 1"
    if len(paths) != 1 or not os.path.isdir(paths[0]) or not _tmunet_reads(paths[0]):
        return (
            "--from N opens one folder from its N-th picture: give one folder (napari-tmunet "
            "FOLDER --from N) that napari-tmunet opens picture by picture: a dataset with "
            "images/ and masks/, pictures with their masks beside them, or images of "
            "different sizes"
        )
    return None


def _size_problem(mask: Path, picture: Path | None) -> str | None:
    """Why ``mask`` cannot be ``picture``'s mask (``data.mask_names.mask_size_problem``),
    or None; None too without a picture."""
    from .data.mask_names import mask_size_problem

    return None if picture is None else mask_size_problem(mask, picture)


def _path_problem(path: str) -> str | None:
    """Why ``path`` cannot be opened (a sentence naming it and, where it is not an image,
    what can be), or None. Reads image headers only, not pixels."""
    from .data.images import IMAGE_SUFFIXES, ImageReadError, read_header

    if not os.path.exists(path):
        return f"{path} does not exist"
    if os.path.isdir(path):
        from ._reader import folder_problem

        return folder_problem(Path(path))  # the reader's words, which napari shows too
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        try:
            read_header(path)  # a damaged file: this one line, not a decoder's traceback
        except ImageReadError as err:
            return str(err)
        return None
    if not _has_reader(path):
        return f"{path}: not a file napari-tmunet can open; {CAN_OPEN}"
    return None


def _tmunet_reads(path: str) -> bool:
    """Whether the TM-UNet reader opens ``path`` (TIFFs, dataset folders, folders of
    images of different sizes)."""
    from ._reader import reads

    return reads(path)


def _has_reader(path: str) -> bool:
    """Whether a napari reader (this plugin's or napari's own, which ``_open_path``
    chooses between) says it can open ``path``; by file name, nothing is read."""
    from npe2 import PluginManager

    if _tmunet_reads(path):
        return True
    manager = PluginManager.instance()
    manager.discover()  # napari's own reader is a plugin too; napari discovers them later
    return any(reader.plugin_name == "napari" for reader in manager.iter_compatible_readers([path]))


def open_viewer(args: argparse.Namespace, show: bool = True):
    """A napari viewer with the files given (else the sample) and the plugin's docks;
    returns (viewer, segment)."""
    import napari

    from ._docks import open_dock
    from .registry import resolve_model

    _pyqt5_notice_to_terminal()
    viewer = napari.Viewer(title="napari-tmunet", show=show)
    fit_window_to_screen(viewer.window._qt_window, WINDOW_SIZE)
    if args.paths:
        _open_paths(viewer, args.paths, start=args.start)
    else:
        viewer.open_sample(PLUGIN, args.sample)
    # Under the names napari's Plugins menu gives them, so that its items find them
    try:
        open_dock(viewer, "Metrics")
    except Exception as err:  # the Metrics dock is optional for segmenting
        print(f"napari-tmunet: the Metrics dock is not available: {err}", file=sys.stderr)
    # Tabbed with Metrics; the tab added last is the one in front.
    _, segment = open_dock(viewer, "Segment", tabify=True)
    # the first image: the one shown (a dataset folder's others, and later files, are hidden)
    images = [layer for layer in viewer.layers if _is_image(layer)]
    image = next((layer for layer in images if layer.visible), images[0] if images else None)
    if image is not None:
        segment.image.value = image
    segment.device.value = args.device
    if args.model is not None:
        from ._segment_widget import CHECKPOINT_CHOICE

        name, path, _ = resolve_model(args.model)
        if name == str(args.model) or any(name == v for v in segment.model.choices):
            segment.model.value = name
        else:
            segment.model.value = CHECKPOINT_CHOICE
            segment.checkpoint.value = path
    if image is not None:
        viewer.layers.selection.active = image
    fit_view_when_settled(viewer)
    return viewer, segment


def _pyqt5_notice_to_terminal() -> None:
    """Under PyQt5, print napari's PyQt5 deprecation notice, with what to do about it, to
    stderr instead of as napari's warning toast in the window, where a clinician can do
    nothing about it. napari 0.9 shows that toast once, when its first window is shown,
    while ``napari._qt.qt_main_window.SHOW_QT_WARNING`` is true (its own test fixture
    ``make_napari_viewer`` turns it off the same way); with no such flag (another napari)
    nothing changes. Only this launcher does it: plain ``napari`` shows the toast."""
    try:
        from napari._qt import qt_main_window
    except ImportError:  # napari's Qt layer moved: leave its notices as they are
        return
    if not getattr(qt_main_window, "SHOW_QT_WARNING", False):
        return  # PyQt6 or PySide, or a napari window shown already in this process
    qt_main_window.SHOW_QT_WARNING = False
    print(
        f"napari-tmunet: note: {PYQT5_NOTICE} (napari's notice: the window works on PyQt5 "
        f"now, a later napari drops it). To move to PyQt6, install the package's "
        f'{QT6_EXTRA!r} extra (pip install "napari-tmunet[{QT6_EXTRA}]") into an '
        "environment without PyQt5, or set QT_API=pyqt6 where both are installed "
        '(docs/guide.md, "Qt: PyQt5 or PyQt6, and the warnings at start").',
        file=sys.stderr,
    )


def fit_window_to_screen(window, size: tuple[int, int]) -> None:
    """Resize the Qt ``window`` to ``size`` (width, height), or smaller where its screen's
    available area (less the window frame) is smaller, and move it inside that area."""
    from qtpy.QtWidgets import QApplication

    screen = window.screen() or QApplication.primaryScreen()
    if screen is None:  # no screen to fit (offscreen platforms report one; be safe)
        window.resize(*size)
        return
    area = screen.availableGeometry()
    frame = window.frameGeometry().size() - window.geometry().size()
    width = min(size[0], area.width() - frame.width())
    height = min(size[1], area.height() - frame.height())
    window.resize(width, height)
    x = min(max(window.x(), area.left()), area.right() + 1 - width - frame.width())
    y = min(max(window.y(), area.top()), area.bottom() + 1 - height - frame.height())
    window.move(x, y)


def fit_view_when_settled(viewer) -> None:
    """Fit the layers to the canvas once the window and its docks have their sizes: now
    (after the pending layout events) and again when the event loop starts, as the window
    is shown and laid out there (``napari.run``)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    viewer.reset_view()
    QTimer.singleShot(0, lambda: _reset_view_if_open(viewer))


def _reset_view_if_open(viewer) -> None:
    """``viewer.reset_view()`` unless the window was closed meanwhile."""
    try:
        viewer.reset_view()
    except RuntimeError:  # the Qt canvas is gone (closed before the event loop ran)
        pass


@showing_file_warnings  # the core's warnings about the files opened: one napari warning
def _open_paths(viewer, paths: list[str], start: int | None = None) -> None:
    """Open the files and folders given as a dataset folder's pictures open: the first
    picture shown, later ones hidden (pictures of other sizes and kinds stacked at the
    origin would cover it). A path that opens only masks (Labels) goes with the picture
    before it, as a mask follows its image in a dataset folder. A mask file (by its name
    or folder, less the pictures so named, or by what it holds) opens as the mask of the
    picture of its name (:func:`_given_masks`) wherever it is given, and a picture given
    without one gets the masks found beside it (:func:`_found_masks`; see :func:`_open_masks`).
    ``start`` (``--from``, 1-based, with one folder) opens the folder from that picture.
    The masks are drawn as references' outlines (``_layer_style``)."""
    from ._layer_style import outline_references

    outline_references(viewer)
    given = _given_masks(paths)
    masks = {mask for mask, _ in given}
    shown, seen_image = True, False
    for path in paths:
        if Path(path) in masks:
            continue
        before = len(viewer.layers)
        _open_path(viewer, path, start)
        added = list(viewer.layers)[before:]
        has_image = any(_is_image(layer) for layer in added)
        if has_image and seen_image:
            shown = False
        seen_image = seen_image or has_image
        if not shown:
            for layer in added:
                if layer.visible:  # a set redraws every layer, even to the same value
                    layer.visible = False
    # after the pictures: each picture's masks go over it (one family's several as one)
    for picture, group in _by_picture(given):
        _open_masks(viewer, group, picture)
    with_mask = {_mask_picture(mask) for mask, _ in given}
    with_mask |= {picture.stem for _, picture in given if picture is not None}
    for path in paths:
        given_one = Path(path) in masks or Path(path).stem in with_mask
        found = [] if given_one else _found_masks(path)
        fitting = []
        for mask in found:
            problem = _size_problem(mask, Path(path))
            if problem:  # found, not given: the picture still opens
                print(f"napari-tmunet: not opened: {problem}", file=sys.stderr)
            else:
                fitting.append(mask)
        if fitting:
            _open_masks(viewer, fitting, Path(path))


def _by_picture(given: list[tuple[Path, Path | None]]) -> list[tuple[Path | None, list[Path]]]:
    """The masks of ``given`` (mask, picture) grouped by their picture, in the order
    given; each mask without a picture alone."""
    groups: dict[object, tuple[Path | None, list[Path]]] = {}
    for mask, picture in given:
        groups.setdefault(picture if picture is not None else mask, (picture, []))[1].append(mask)
    return list(groups.values())


def _mask_picture(path: str | Path) -> str | None:
    """The name of the picture that the existing image file ``path`` is the mask of by its
    name or folder (``data.mask_names.mask_picture``), or None when it is no mask."""
    from .data.mask_names import mask_picture

    return mask_picture(path) if _is_image_file(path) else None


def _given_masks(paths: list[str]) -> list[tuple[Path, Path | None]]:
    """The mask files among ``paths``, each with its picture among them, or None when no
    picture is given at all. Masks are files named as masks or in a mask folder
    (:func:`_mask_picture`) but for the pictures among them
    (:func:`_pictures_named_as_masks`), and files of any other name that hold a mask
    (:func:`_holds_mask`: 0/255, 0/1 or object ids); the other image files are pictures.
    A mask goes with the picture of its name (``data.datasets.match_by_name``: NAME.jpg
    for NAME_mask.png, masks/NAME.png or a mask file NAME.png), never by size (several
    pictures often share one); a mask of another name only in ``napari-tmunet PICTURE
    MASK``, with the one picture given.

    Raises:
        CannotOpen: naming the files, for a mask whose name matches no picture given, or
            several, and for several masks of one picture.
    """
    from .data.datasets import match_by_name

    named_pictures = _pictures_named_as_masks(paths)
    masks = [
        Path(path)
        for path in paths
        if Path(path) not in named_pictures and (_mask_picture(path) or _holds_mask(path))
    ]
    pictures = [Path(path) for path in paths if _is_image_file(path) and Path(path) not in masks]
    match = match_by_name(pictures, masks, mask_name=_mask_name)
    picture_of = {mask: picture for _, picture, mask in match.rows if mask}
    for name, files in match.ambiguous:
        owners = [picture for picture in pictures if picture.stem == name]
        if len(owners) == 1 and all(_named_mask(file) for file in files):
            picture_of.update((file, owners[0]) for file in files)  # NAME_mask + NAME_mask_1
        else:
            _refuse_ambiguous(name, files, masks)
    unmatched = [mask for mask, picture in picture_of.items() if picture is None]
    alone = [picture for _, picture, mask in match.rows if picture and not mask]
    for mask in unmatched:
        if not pictures:  # opens alone, as Labels
            continue
        if len(pictures) == len(alone) == len(unmatched) == 1 and not _mask_picture(mask):
            picture_of[mask] = pictures[0]  # napari-tmunet PICTURE MASK: no doubt
        else:
            raise CannotOpen(_unmatched_text(mask, pictures))
    return [(mask, picture_of[mask]) for mask in masks]  # in the order given


def _pictures_named_as_masks(paths: list[str]) -> set[Path]:
    """The files among ``paths`` named as masks or in a mask folder (:func:`_mask_picture`)
    that are pictures, as the TM-UNet reader tells them in a folder
    (``data.mask_names.pair_by_mask_names`` and ``judge_orphans``): one whose picture is
    not given (an orphan) is a picture when another file given is named as its mask
    (``x_mask.png`` with ``x_mask_mask.png``), else when it holds no mask
    (``data.mask_names.orphan_holds_mask``, the reader's rule: a photo named
    ``x_mask.png``, an ultrasound picture ``liver-labels.png``; one all of one value, an
    empty mask, is a mask by its name). One whose picture is given stays its mask, by
    name."""
    from collections import Counter

    named = {Path(path): _mask_picture(path) for path in paths if _is_image_file(path)}
    # counted once, not scanned per file (a shell pattern gives thousands of files)
    stems = Counter(file.stem for file in named)  # files given per base name
    wanted = Counter(name for name in named.values() if name)  # files named as NAME's mask
    pictures: set[Path] = set()
    for file, picture in named.items():
        own = file.stem == picture  # masks/NAME.png: named as its own picture
        if picture is None or stems[picture] > own:
            continue  # no mask by name, or its picture is given (another file of its name)
        has_mask = wanted[file.stem] > own  # another file is named as its mask
        if has_mask or not _orphan_holds_mask(file):
            pictures.add(file)
    return pictures


def _orphan_holds_mask(path: Path) -> bool:
    """Whether the image file ``path``, named as a mask with its picture not given, holds
    a mask (``data.mask_names.orphan_holds_mask``, the rule of the reader's
    ``judge_orphans``); judged once per file version: the check and the opening both ask."""
    return _orphan_holds_mask_cached(*_file_version(path))


def _file_version(path: str | Path) -> tuple[str, int, int]:
    """(absolute path, modification time in ns, size) of the file ``path``: the key of a
    judgement cached per file version (a file rewritten is judged again)."""
    file = Path(path)
    stat = file.stat()
    return str(file.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=256)
def _orphan_holds_mask_cached(path: str, _mtime_ns: int, _size: int) -> bool:
    """:func:`_orphan_holds_mask` for one version of a file."""
    from .data.mask_names import orphan_holds_mask

    return orphan_holds_mask(path)


def _named_mask(path: Path) -> bool:
    """Whether ``path`` is named as a mask beside its picture (``NAME_mask.png``,
    ``NAME_mask_1.png``, ...): one picture's several such masks open as one."""
    return path.parent.name.lower() not in MASK_FOLDERS and mask_name_parts(path.stem) is not None


def _mask_name(mask: Path) -> str:
    """The name of the picture that the mask file ``mask`` goes with: the one its name or
    folder gives (:func:`_mask_picture`), else its own base name."""
    return _mask_picture(mask) or mask.stem


def _refuse_ambiguous(name: str, files: list[Path], masks: list[Path]) -> None:
    """Raise CannotOpen when ``files`` (of one ``name``) are several masks, or several
    pictures that one of ``masks`` would go with."""
    listed = ", ".join(str(file) for file in files)
    if files[0] in masks:
        raise CannotOpen(f"several masks given for the picture {name}: {listed}; give one")
    mask = next((mask for mask in masks if _mask_name(mask) == name), None)
    if mask is not None:
        raise CannotOpen(
            f"the mask {mask} could go with several pictures named {name}: {listed}; "
            "give one of them"
        )


def _unmatched_text(mask: Path, pictures: list[Path]) -> str:
    """Why the mask file ``mask`` goes with none of ``pictures``, and how to say which."""
    shown = ", ".join(str(picture) for picture in pictures[:4])
    shown += f" and {len(pictures) - 4} more" if len(pictures) > 4 else ""
    named = _mask_picture(mask)
    if named:
        return (
            f"the mask {mask} is named for the picture {named}, which is not given (the "
            f"pictures given: {shown}): give that picture, or name the mask after its picture"
        )
    return (
        f"{mask} holds a mask but its name matches none of the pictures given ({shown}): "
        f"name it after its picture (NAME_mask{mask.suffix} beside NAME{pictures[0].suffix}, "
        "or NAME.* in a masks/ folder), or give it with its picture alone "
        "(napari-tmunet PICTURE MASK)"
    )


def _is_image_file(path: str | Path) -> bool:
    """Whether ``path`` is a file of an image type (by its suffix; nothing is read)."""
    from .data.images import IMAGE_SUFFIXES

    return Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file()


def _holds_mask(path: str) -> bool:
    """Whether the image file ``path`` holds a mask by what it holds, whatever its name
    (``data.images.file_looks_like_mask``: one rule with the Segment and Metrics docks)."""
    if not _is_image_file(path):
        return False
    # judged once per file version: the check and the opening both ask
    return _holds_mask_cached(*_file_version(path))


@functools.lru_cache(maxsize=256)
def _holds_mask_cached(path: str, _mtime_ns: int, _size: int) -> bool:
    """:func:`_holds_mask` for one version of a file; a TIFF of 32/64-bit ids is left to
    the TM-UNet reader, which opens it as Labels with its ids."""
    from ._reader import LABEL_DTYPES
    from .data.images import ImageReadError, file_looks_like_mask, read_header

    try:
        if read_header(path).dtype in LABEL_DTYPES:
            return False
    except ImageReadError:  # told before napari starts (_path_problem)
        return False
    return file_looks_like_mask(path)


def _found_masks(path: str) -> list[Path]:
    """The reference masks of the picture ``path`` (an image file), or []: beside it,
    ``NAME_mask.*``, ``NAME-mask.*`` and the other names of ``data.mask_names.MASK_NAME``,
    with its numbered extras (``NAME_mask_1.*``: a second object), else those of a
    :data:`MASK_FOLDERS` folder in its folder or beside it (a dataset folder's ``masks/``
    beside ``images/``): ``NAME.*`` and the files named as its mask there
    (``data.mask_names.masks_in_folder``: a correction saved as ``NAME mask.tif``)."""
    from .data.mask_names import folder_image_files, masks_beside, masks_in_folder

    picture = Path(path)
    if not _is_image_file(picture):
        return []
    beside = masks_beside(picture)
    if beside:
        return beside
    folder = picture.parent
    for base in (folder, folder.parent):
        for place in (base / name for name in MASK_FOLDERS if base / name != folder):
            try:
                files = folder_image_files(place) if place.is_dir() else []
            except OSError:  # unreadable: no mask found there
                continue
            files = sorted(file for file in files if file != picture)
            plain, named = masks_in_folder([picture.stem], files)
            found = [file for file in plain if file.stem == picture.stem]
            found += named.get(picture.stem, [])
            if found:
                return found
    return []


def _open_masks(viewer, paths: list[Path], picture_path: Path | None = None) -> None:
    """Open mask files of one picture as the TM-UNet reader opens a folder's: each family
    (``data.mask_names.mask_families``: NAME_mask + NAME_mask_1; the writer's "NAME
    mask.tif"; NAME_gt) as one Labels layer over the picture (:func:`_open_mask`), only
    the first (a saved one) shown; several families said in an info notification."""
    from ._reader import separate_note
    from .data.mask_names import mask_families

    families = mask_families(paths, picture=picture_path.stem if picture_path else None)
    opened = []
    for family in families:
        name = _open_mask(viewer, family, picture_path, len(families) > 1, shown=not opened)
        opened.append((name, family.paths))
    if len(opened) > 1:
        picture = picture_path or Path(_mask_picture(paths[0]) or paths[0].stem)
        separate_note(paths[0].parent, [(picture, opened)])


def _open_mask(
    viewer, family, picture_path: Path | None = None, several: bool = False, shown: bool = True
) -> str:
    """Open the mask files of one family (a ``data.mask_names.MaskFamily``) of a picture
    as the TM-UNet reader opens a dataset folder's masks: a Labels layer "<picture> mask"
    (among ``several`` families, named by the family: ``MaskFamily.layer_name``) over the
    picture they belong to (``picture_path``, else the one their name gives,
    :func:`_mask_picture`; the layer of that name by ``_reader.layer_picture``: a file of
    channels' first channel, "NAME [ch 0] mask", as a folder opens it; shown or hidden
    with it, and only if ``shown``, so Metrics pairs them), never an image that Segment
    could be run on. A mask this plugin's writer saved
    keeps its instance ids; several masks open as their union
    (``_reader.mask_layer_data``), said in an info notification naming them. Returns the
    layer's name."""
    from ._layer_style import as_reference
    from ._reader import (
        layer_picture,
        mask_layer_data,
        merged_note,
        picture_metadata,
        saved_mask_layer_data,
    )
    from .data.images import read_saved_mask

    paths = family.paths
    path = paths[0]
    name = picture_path.stem if picture_path is not None else _mask_picture(path) or path.stem
    picture = next(  # a file of channels: its first channel's layer, as a folder opens it
        (layer for layer in viewer.layers if _is_image(layer) and layer_picture(layer) == name),
        None,
    )
    like = None
    if picture is not None:  # the picture layer's name and file (Metrics pairs by them), size
        kwargs = {"name": picture.name, "metadata": dict(picture.metadata)}
        if len(picture.scale) == 2:
            kwargs["scale"] = tuple(picture.scale)
        like = (None, kwargs, "image")
    visible = shown and (picture.visible if picture is not None else True)
    try:
        saved = read_saved_mask(path) if len(paths) == 1 else None
        if saved is None:
            data, kwargs, _ = mask_layer_data(paths, like=like, visible=visible)
        else:  # instance ids (or a stack) as written, over the picture as the others
            data, kwargs, _ = saved_mask_layer_data(path, saved)
            kwargs["visible"] = visible
            as_reference(kwargs, data)
            if picture is not None:
                kwargs["metadata"].update(picture_metadata(picture.name, picture.metadata))
                if data.ndim == len(picture.scale):
                    kwargs["scale"] = tuple(picture.scale)
    except Exception as err:  # a reader's error: one line, not a traceback
        viewer.close()
        named = ", ".join(str(p) for p in paths)
        raise CannotOpen(f"cannot open the mask {named}: {' '.join(str(err).split())}") from err
    kwargs["name"] = family.layer_name(picture.name if picture is not None else name, several)
    layer = viewer.add_labels(data, **kwargs)
    if len(paths) > 1:
        merged_note(paths[0].parent, [(picture_path or Path(name), paths)])
    return layer.name  # napari's, should the name be taken


def _is_image(layer) -> bool:
    return layer.__class__.__name__ == "Image"


def _open_path(viewer, path: str, start: int | None = None) -> None:
    """Open ``path`` with the TM-UNet reader where it reads it (TIFFs, dataset folders,
    folders of images of different sizes), else with napari's own: napari asks which
    reader to use when two can, and a command line cannot answer. A PNG, JPEG or BMP
    that napari's reader would keep as stored (CMYK inks drawn as RGBA, dark; grey +
    alpha; a JPEG not turned as its EXIF orientation says, unlike its mask) is read by
    the TM-UNet reader's code, in RGB or grey, turned: napari offers it only TIFFs
    (napari.yaml), so that plain pictures open without a "Choose reader" question. With
    ``start`` (``--from``, 1-based) the folder ``path`` opens from that picture, by the
    TM-UNet reader's order and pairing (``_reader.read_from``)."""
    from .data.colour_spaces import napari_keeps_as_stored
    from .data.images import orientation_applied

    try:
        with _one_update(viewer):
            if start is not None:  # read_from tells its folder apart itself
                from ._reader import read_from

                layers = [layer for layer in read_from(path, start - 1) if len(layer) == 3]
                for data, kwargs, kind in layers:  # (None,): nothing read, said by the reader
                    getattr(viewer, f"add_{kind}")(data, **kwargs)
                return
            plugin = PLUGIN if _tmunet_reads(path) else "napari"
            keeps = plugin == "napari" and napari_keeps_as_stored(path)
            if keeps or (plugin == "napari" and orientation_applied(path)):
                from ._reader import image_layer_data

                data, kwargs, _ = image_layer_data(Path(path))
                viewer.add_image(data, **kwargs)
            else:
                viewer.open(path, plugin=plugin)
    except Exception as err:  # a reader's error: one line, not a traceback
        viewer.close()
        raise CannotOpen(f"cannot open {path}: {' '.join(str(err).split())}") from err


def _one_update(viewer):
    """A block in which the layers added to ``viewer`` update napari's scene once, at its
    end (``LayerList.batched_update``, napari 0.6 and later; else nothing). napari
    otherwise updates every layer's overlays and draws the canvas on each add: opening a
    folder's 50 layers took about 1 s more of its 5-6 s so (bench/open_folder.py)."""
    batched = getattr(viewer.layers, "batched_update", None)
    return batched() if batched is not None else contextlib.nullcontext()


def _interactive(args: argparse.Namespace) -> int:
    import napari

    viewer, _ = open_viewer(args)
    from ._dock_texts import START_HINT

    viewer.status = START_HINT
    napari.run()
    return 0


def _smoke(args: argparse.Namespace) -> int:
    """Segment the sample through the Segment dock (twice), check the labels, screenshot;
    with settings of its own (:func:`_own_settings`): the installation is checked, not the
    model the user made active."""
    from .registry import available_models

    if args.model is None and not available_models():
        raise RuntimeError(
            "no shipped model is installed (napari_tmunet/weights/); pass --model PATH to a "
            "checkpoint made by napari-tmunet-train"
        )
    with _own_settings():
        viewer, segment = open_viewer(args)
        try:
            return _smoke_viewer(args, viewer, segment)
        finally:  # closing it stops and waits for the dock's workers: none outlives Python
            _close_viewer(viewer)


@contextlib.contextmanager
def _own_settings() -> Iterator[None]:
    """Within the block, the settings file is a new one in a temporary folder
    (``settings.SETTINGS_DIR_ENV``): no active or remembered model of the user's is used,
    and nothing the docks save reaches the user's settings."""
    from .settings import SETTINGS_DIR_ENV

    before = os.environ.get(SETTINGS_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="napari-tmunet-smoke-") as folder:
        os.environ[SETTINGS_DIR_ENV] = folder
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(SETTINGS_DIR_ENV, None)
            else:
                os.environ[SETTINGS_DIR_ENV] = before


def _close_viewer(viewer) -> None:
    """Close ``viewer`` unless it is closed already."""
    try:
        viewer.close()
    except RuntimeError:  # its Qt window is gone
        pass


def _smoke_viewer(args: argparse.Namespace, viewer, segment) -> int:
    """:func:`_smoke` in the opened ``viewer``."""
    from ._sample_data import load_sample
    from .metrics import dice_score

    reference = next(layer for layer in viewer.layers if layer.__class__.__name__ == "Labels")
    reference.visible = False  # the sample's own mask; the screenshot shows the prediction
    image = segment.image.value
    # the dock's own words: "Runs TM-UNet colonoscopy: <why>."
    note = (
        ""
        if args.model
        else " (--smoke checks the installation: a model you made active is not used)"
    )
    print(
        f"opened napari with {image.name!r} {image.data.shape}; {segment.model_reason.value}{note}"
    )
    # What the user waits from the click to the Labels layer: the first click loads the
    # model, a second click reuses it.
    first = _click_segment(segment, args.timeout)
    again = _click_segment(segment, args.timeout)
    labels = np.asarray(segment.last_layer.data)
    spatial = image.data.shape[:-1] if image.rgb else image.data.shape
    if labels.shape != tuple(spatial) or not labels.any():
        raise RuntimeError(
            f"labels of shape {labels.shape} with {int((labels > 0).sum())} foreground "
            f"pixels for an image of shape {tuple(spatial)}"
        )
    report = {
        "sample": args.sample,
        "model": str(segment.last_layer.metadata.get("model")),
        "seconds_first_click": round(first, 2),
        "seconds_second_click": round(again, 2),
        "foreground_pixels": int((labels > 0).sum()),
        "dice": round(dice_score(labels > 0, load_sample(args.sample)[1] > 0), 4),
        "screenshot": str(args.screenshot),
    }
    viewer.reset_view()
    _run_events(0.2)  # the dock's new texts take two layout passes: let them settle
    if args.figure is not None:  # the canvas at the image's pixel grid
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        viewer.export_figure(str(args.figure))
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.screenshot), canvas_only=False)
    print(json.dumps(report))
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
    if report["dice"] < args.min_dice:
        raise RuntimeError(f"Dice {report['dice']:.3f} below --min-dice {args.min_dice}")
    print(
        f"smoke OK: labels {first:.1f} s after the first click, {again:.1f} s after the "
        f"second; screenshot {args.screenshot}"
    )
    return 0


def _run_events(seconds: float) -> None:
    """Run the Qt event loop for ``seconds``."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _run_events_until(done: Callable[[], bool], seconds: float) -> bool:
    """Run the Qt event loop until ``done()`` or for ``seconds``; whether ``done()``."""
    deadline = time.perf_counter() + seconds
    while not done() and time.perf_counter() < deadline:
        _run_events(min(POLL_S, max(0.0, deadline - time.perf_counter())))
    return done()


def _click_segment(segment, timeout: float) -> float:
    """Click Segment and wait on the Qt event loop for its run to start and end (a
    checkpoint file chosen a moment ago is read first: the dock's click waits for that,
    then runs); the seconds from the click to the Labels layer."""
    start = time.perf_counter()
    before = segment.worker  # each run has its own worker
    segment.segment()
    # the dock's state: its click waiting for a file read, then its run under way
    check = segment._file_check
    ended = _run_events_until(lambda: not (check.waiting or segment.running), timeout)
    seconds = time.perf_counter() - start
    if not ended:
        segment.cancel()
        raise RuntimeError(f"Segment did not finish within {timeout:g} s")
    status = segment.status.value
    if segment.worker is before:
        raise RuntimeError(f"Segment did not start (status: {status!r})")
    if status != "done" or segment.last_layer is None:
        raise RuntimeError(f"Segment made no Labels layer (status: {status!r})")
    return seconds


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _rerun_under_xvfb(argv: list[str]) -> int:
    """Run this command again inside ``xvfb-run`` (the smoke check needs an X server)."""
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or os.environ.get(_UNDER_XVFB_ENV):
        print(
            "napari-tmunet --smoke needs an X server: install Xvfb (apt-get install xvfb) or "
            "run it under xvfb-run.",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", **{_UNDER_XVFB_ENV: "1"})
    command = [
        xvfb_run,
        "--auto-servernum",
        "--server-args=-screen 0 1600x1000x24",
        sys.executable,
        "-m",
        "napari_tmunet",
        *argv,
    ]
    return subprocess.call(command, env=env)
