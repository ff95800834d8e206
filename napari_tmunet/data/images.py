"""Reading and writing images and masks: png, tif/tiff, jpg/jpeg, bmp.

TIFF goes through tifffile (multi-page, OME, ImageJ, any compression imagecodecs
decodes, 16-bit, float); everything else through Pillow, except 16-bit colour PNG,
which Pillow would reduce to 8 bits and imagecodecs decodes exactly.

A JPEG is turned as its EXIF orientation says (:data:`ORIENTATIONS`, Pillow's
``ImageOps.exif_transpose``), as cameras mean it and every photo viewer shows it, in
its header's size too (``image_shape``), so a mask drawn over the picture as it is shown
fits it (a mask has no EXIF orientation; a JPEG mask with one is turned alike). napari's
own reader does not turn it (the Segment dock and ``napari-tmunet`` say so or read it
here). PNG's eXIf and TIFF's Orientation tags are not applied (Fiji and tifffile ignore
them): those pixels stay as stored.

A TIFF of 3 or 4 samples per pixel is colour (RGB, RGBA, stored interleaved or planar),
except 32/64-bit integer samples (:data:`LABEL_DTYPES`): those are label ids, a stack
of 3 or 4 frames as napari's labels writer saves one. A TIFF's channel axis (C in its
ImageJ, OME or tifffile metadata) is colour only for 3 channels of 8 bits (an RGB
picture saved channel by channel, :func:`channels_are_colour`); other channels
(fluorescence: 2 channels, 16-bit, 4 of them) are kept apart from its Z/T frames by
:func:`read_image_channels` (the napari reader opens one layer each, named by the
file's channel names: OME's Channel Name, ImageJ's slice labels; ``Channels.labels``),
and :func:`read_image` gives them as frames, channel by channel.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import stat
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..storage import atomic_path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
# what to do about a file that is no readable image (an empty file, one of another type)
EXPORT_AGAIN = "export it again, or leave it out"
MASK_RULES: tuple[str, ...] = ("auto", ">0", ">127")
# The "auto" rule's name for an 8-bit instance-id mask whose ids reach 128..255
# (:func:`holds_instance_ids`): read as ">0", named apart from the 0/255 and 0/1 masks.
ID_RULE = ">0 (8-bit ids)"
# An 8-bit mask reaching 128..255 holds instance ids (one object per value), not a 0/255
# mask, when its objects are flat and either its top value holds less than this share of
# its non-zero pixels (one object of 128 or more holds about 1/N of an id mask)...
MASK_MIN_TOP_SHARE = 0.25
# ... or its values 1..127 form flat objects of their own (_low_objects), apart from every
# pixel above 127, holding at least this share of its non-zero pixels (the top id may be
# the largest object: tester38 #2). A 0/255 mask's values 1..127 lie at the edges of its
# 255 regions or are JPEG noise. Measured (bench/check_mask_rules.py): the top value
# holds at least 67% in every 0/255 mask of CVC-ClinicDB (stray values 1..127 at edges,
# up to 31% of the foreground, in regions glued to the 255 region), Kvasir-SEG (JPEG),
# MoNuSeg, UDIAT and BUSI; objects of their own hold 0 of a CVC-ClinicDB mask (apart from
# the 255 region only specks of 1-2 pixels) and at most 0.05% of a Kvasir-SEG one (its
# JPEG noise apart from the polyp, up to 10%, is not flat: 32% or more of neighbouring
# pairs differ); in DSB2018, CPM-15 and MoNuSeg nuclei as 8-bit ids (1..N, random, the
# largest 240, the larger half 128..255) they hold at least 5.3% where ids 1..127 exist.
MASK_MIN_OWN_SHARE = 0.01
# read_mask warns when its rule leaves out values 1..127 that lie inside flat regions of
# one value (as objects' pixels do; JPEG noise and blurred edges have none) holding at
# least this share of the non-zero pixels: 14 CVC-ClinicDB masks (up to 27%), no
# Kvasir-SEG one (JPEG edges leave out up to 17%, none of it flat).
MASK_WARN_FLAT_DROPPED = 0.05
# write_mask's mark in a TIFF's JSON ImageDescription (tifffile's shaped metadata):
# "binary" (labels 0/1 stored as 0/255) or "instances" (ids as stored). The reader
# opens marked files as Labels again (see ``saved_mask_kind``).
MASK_MARK = "napari_tmunet_mask"
# write_mask's key in the same description for where the mask lies: per-axis "scale",
# "translate" and "units" (names), as the napari layer it came from had them. The reader
# gives them back to the Labels layer; the yx pixel size is also in the resolution tags.
PLACEMENT_KEY = "napari_tmunet_placement"
# write_mask's key for where a Segment result came from: the model that made it, the
# image it was made of, and the model's own foreground (bit-packed, zlib, base64), so a
# saved, corrected and reopened result still tells the user's edits apart (Fine-tune).
ORIGIN_KEY = "napari_tmunet_origin"
# The layer metadata key of a layer made from, or laid over, a channel that the reader
# opened apart (a Segment result, the file's mask): the file's picture, which all its
# channels share, with their masks (``_reader.picture_metadata``).
PICTURE_KEY = "picture"
# The names ORIGIN_KEY keeps of a Segment result's layer metadata: its model, the model's
# label, its image's name and, for a channel's result, its file's picture (so a reopened
# result pairs with that file's mask: ``_image_layers.owning_picture``). A file saved
# before the picture was kept has none: its image's name is its picture, as then.
ORIGIN_NAMES = ("model", "model_label", "image", PICTURE_KEY)
MAX_ORIGIN_CHARS = 16 << 20  # a larger encoded foreground is not stored (edits unknown)

# Resolutions that image editors write by default without meaning a physical size.
_SCREEN_DPI = (72.0, 96.0)
# Length units -> micrometres.
_UM_PER_UNIT = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "micrometer": 1.0,
    "µm": 1.0,
    "\u03bcm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "meter": 1e6,
    "metre": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
}


# Smaller images have no meaningful segmentation (training or inference).
MIN_SIDE = 4

# EXIF Orientation (tag 274) of a JPEG: how its stored pixels are turned to be shown
# upright (Pillow's ImageOps.exif_transpose); 1 (or none) keeps them as stored. 5 to 8
# swap height and width.
EXIF_ORIENTATION_TAG = 0x0112
ORIENTATIONS = {
    2: "mirrored left to right",
    3: "turned 180°",
    4: "mirrored top to bottom",
    5: "mirrored along its main diagonal",
    6: "turned 90° clockwise",
    7: "mirrored along its other diagonal",
    8: "turned 90° anticlockwise",
}

# Integers this wide are label ids, never intensities or colours: napari's own rule
# (guess_labels), and its labels writer saves every Labels layer so (uint32 at least).
# A TIFF of 3 or 4 such samples per pixel is a stack of frames, not RGB(A): tifffile
# marks an array of shape (3, H, W) or (4, H, W) as planar RGB(A) when it writes one
# (napari's writer too), whereas a colour picture is 8 or 16 bits per channel.
LABEL_DTYPES = (np.int32, np.uint32, np.int64, np.uint64)


class ImageReadError(ValueError):
    """An image or mask file that cannot be read (missing, empty, corrupt, unsupported)."""


class ImageTooLargeError(ImageReadError):
    """An image whose header claims more pixels than the pixel budget (``data.budget``)."""


@dataclass(frozen=True)
class Channels:
    """A TIFF's separate channels as :func:`read_image_channels` read them.

    Attributes:
        count: how many channels (the first axis of the array read).
        stack: tifffile's letters of the axes merged into each channel's frames ("" for
            none, "Z", "T", "TZ"...).
        frames: frames per channel (1 without a stack).
        names: the file's own name of each channel as stored (OME's Channel Name,
            ImageJ's slice labels: :func:`_channel_names`), "" for one it does not name;
            () when it names none.
    """

    count: int
    stack: str = ""
    frames: int = 1
    names: tuple[str, ...] = ()

    def labels(self) -> tuple[str, ...]:
        """Each channel's short, readable name for layer names and messages, unique
        within the file: the file's name for it (:func:`_readable`: "DAPI") when that
        names it apart from the others, else "ch N" followed by any name it has ("ch 2",
        "ch 1 GFP" for a name two channels share, "ch 0 405" for a number, which napari
        would count up as its suffix for a repeated layer name)."""
        names = [_readable(name) for name in self.names] or [""] * self.count
        seen = Counter(name.casefold() for name in names)
        alone = [bool(name) and not name.isdigit() and seen[name.casefold()] == 1 for name in names]
        labels = [
            name if own else _indexed(i, name)
            for i, (name, own) in enumerate(zip(names, alone, strict=True))
        ]
        if len(set(labels)) < len(labels):  # a name that reads as another's "ch N"
            labels = [_indexed(i, name) for i, name in enumerate(names)]
        return tuple(labels)

    def frames_words(self) -> str:
        """Each channel's frames in words ("5 slices", "3 time points"), "" for one."""
        if self.frames < 2:
            return ""
        kind = {"Z": "slices", "T": "time points"}.get(self.stack, "frames")
        return f"{self.frames} {kind}"


# A channel's name in layer names and messages is cut to this many characters.
CHANNEL_NAME_CHARS = 32


def _readable(name: str) -> str:
    """A channel name as a file stores it, as one short line: characters that do not
    print (line breaks, tabs, control codes) as spaces, brackets as parentheses (a layer
    name holds it in "[...]"), runs of blanks as one, at most
    :data:`CHANNEL_NAME_CHARS` (cut with "…")."""
    text = "".join(char if char.isprintable() else " " for char in str(name))
    text = " ".join(text.translate(str.maketrans("[]", "()")).split())
    if len(text) > CHANNEL_NAME_CHARS:
        text = text[: CHANNEL_NAME_CHARS - 1].rstrip() + "…"
    return text


def _indexed(index: int, name: str) -> str:
    """A channel's label by its index, its name after it: "ch 2", "ch 1 GFP" (unique
    for each index whatever the name: the digits end at the space)."""
    return f"ch {index} {name}".rstrip()


def channels_are_colour(count: int, dtype) -> bool:
    """Whether ``count`` channels of ``dtype`` on a TIFF's channel axis (not samples the
    file marks RGB) are one colour picture: 3 channels of 8 bits, an RGB picture saved
    channel by channel (an ImageJ composite, OME channels), as this module always read
    them. Other channels (2 or 4 of them, or 16-bit: fluorescence) are separate images;
    no shipped model was trained on them as colour."""
    return count == 3 and np.dtype(dtype) == np.uint8


def read_image(
    path: str | os.PathLike, *, allow_stack: bool = True, max_pixels: int | None = None
) -> np.ndarray:
    """Read an image with its native dtype.

    Palette images become RGB(A) (or grey when the palette is grey), LA becomes grey
    (alpha dropped), 1-bit images become bool, CMYK (JPEG, or TIFF of unsigned inks)
    becomes RGB. RGBA keeps its 4 channels.

    Args:
        path: a file with one of ``IMAGE_SUFFIXES``.
        allow_stack: when False, a multi-page TIFF is an error instead of a stack.
        max_pixels: the pixel budget (``data.budget.max_pixels``); checked on the header,
            before decoding.

    Returns:
        (H, W) grey, (H, W, C) with C in {3, 4}, or for a multi-page TIFF
        (Z, H, W) / (Z, H, W, C); a TIFF's separate channels
        (:func:`read_image_channels`) as frames, channel by channel.

    Raises:
        ImageReadError: naming the path and the cause (ImageTooLargeError over budget);
            with ``allow_stack`` False, a TIFF of separate channels, saying so.
    """
    array, channels = read_image_channels(path, allow_stack=allow_stack, max_pixels=max_pixels)
    if channels is None:
        return array
    if not allow_stack:
        raise ImageReadError(
            f"{path}: {channels.count} separate channels (a fluorescence image?); expected "
            "a single grey or colour image: save each channel as its own file"
        )
    return array.reshape(-1, *array.shape[-2:])  # (C * Z, H, W)


def read_image_channels(
    path: str | os.PathLike, *, allow_stack: bool = True, max_pixels: int | None = None
) -> tuple[np.ndarray, Channels | None]:
    """:func:`read_image`, with a TIFF's separate channels kept apart: for a TIFF whose
    channel axis is not one colour picture (:func:`channels_are_colour`), its pixels as
    (C, H, W) or (C, Z, H, W) (several stack axes, T and Z, merged into Z) and
    :class:`Channels`; for any other file, read_image's array and None.

    Raises:
        ImageReadError: as :func:`read_image` (a multi-page stack with ``allow_stack``
            False; a TIFF of separate channels is returned, even a single page each).
    """
    path = Path(path)
    array, stacked, channels = _checked_pixels(path, max_pixels)
    if stacked and not allow_stack and channels is None:
        raise ImageReadError(
            f"{path}: a stack of {array.shape[0]} pages (shape {array.shape}); "
            "expected a single 2-D image: save one page per file"
        )
    return array, channels


# An image file's pixels, whether they are a stack of pages, and a TIFF's separate
# channels (or None) as _decode gives them.
Pixels = tuple[np.ndarray, bool, "Channels | None"]


def _checked_pixels(path: Path, max_pixels: int | None) -> Pixels:
    """(pixels, whether they are a stack of pages, separate channels: :data:`Pixels`) of
    the image file ``path``, its header checked against the pixel budget before, its
    pixels' type and size after (see :func:`read_image`); in a :func:`decoding_once`
    block, the pixels kept of this version of the file taken instead of decoding it
    again."""
    from .budget import check_budget
    from .budget import max_pixels as budget

    check_budget(path, read_header(path), budget(max_pixels))
    pixels = _take_kept(path) or _decode(path)
    array = pixels[0]
    if array.dtype.kind not in "biuf":
        raise ImageReadError(
            f"{path}: pixels of type {array.dtype}; expected real numbers (integers or floats)"
        )
    if array.size == 0:
        raise ImageReadError(f"{path}: the image has no pixels (shape {array.shape})")
    return pixels


def _decode(path: Path) -> Pixels:
    """(pixels, whether a stack of pages, separate channels) decoded from the image file
    ``path``."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _read_tiff(path)
        return _read_pillow(path), False, None
    except ImageReadError:
        raise
    except Exception as error:  # decoders raise many types; the caller needs one
        if isinstance(error, OSError) and error.errno is not None:  # permission, I/O
            raise _os_error(path, error) from None
        raise ImageReadError(
            f"{path}: cannot decode image ({type(error).__name__}: {error}); {EXPORT_AGAIN}"
        ) from error


# Pixels kept in a decoding_once() block, per thread (a dock's worker reading the same
# file meanwhile decodes its own): {file version: Pixels}, or None outside one.
_KEPT = threading.local()
# at most this many bytes kept at once (more: decoded again when opened)
KEEP_DECODED_BYTES = 256 << 20


@contextlib.contextmanager
def decoding_once() -> Iterator[None]:
    """Within the block, in this thread, the pixels that :func:`file_looks_like_mask`
    decodes are kept (up to :data:`KEEP_DECODED_BYTES` in all) for the next
    :func:`read_image` of that version of the file, which takes them instead of decoding
    the file again: a file named as a mask without its picture is judged by its pixels,
    then opened (``data.mask_names.judge_orphans``, then the reader), decoded once."""
    if getattr(_KEPT, "files", None) is not None:  # nested: the outer block keeps them
        yield
        return
    _KEPT.files = {}
    try:
        yield
    finally:
        _KEPT.files = None  # what was not taken is let go


def _keep(path: Path, pixels: Pixels) -> None:
    """Keep ``pixels`` of the file ``path`` in this thread's :func:`decoding_once` block,
    if one is open and they fit in :data:`KEEP_DECODED_BYTES`."""
    kept = getattr(_KEPT, "files", None)
    if kept is None:
        return
    held = sum(entry[0].nbytes for entry in kept.values())
    if held + pixels[0].nbytes <= KEEP_DECODED_BYTES:
        with contextlib.suppress(OSError):  # gone meanwhile: nothing to keep
            kept[file_version(path)[1:]] = pixels


def _take_kept(path: Path) -> Pixels | None:
    """The pixels kept of this version of the file ``path`` (:func:`_keep`), taken out of
    the block (used once), or None."""
    kept = getattr(_KEPT, "files", None)
    if not kept:
        return None
    try:
        return kept.pop(file_version(path)[1:], None)
    except OSError:  # gone: its read says so
        return None


def open_image(path: str | os.PathLike, *, max_pixels: int | None = None):
    """An image in memory (``read_image``), or read on demand when over the pixel budget.

    A TIFF over the budget comes as a lazy (H, W) or (H, W, C) array (numpy memmap or
    zarr array, see ``data.budget.open_lazy``) that decodes only the slices asked for;
    other formats over the budget are refused.

    Raises:
        ImageReadError: naming the path and the cause.
    """
    array, channels = open_image_channels(path, max_pixels=max_pixels)
    if channels is None:
        return array
    return array.reshape(-1, *array.shape[-2:])  # as read_image: (C * Z, H, W)


def open_image_channels(path: str | os.PathLike, *, max_pixels: int | None = None):
    """:func:`open_image`, with a TIFF's separate channels kept apart as
    :func:`read_image_channels` keeps them: (array, :class:`Channels` or None). An image
    over the pixel budget comes lazily, channels not told apart (None).

    Raises:
        ImageReadError: naming the path and the cause.
    """
    from .budget import open_lazy

    try:
        return read_image_channels(path, max_pixels=max_pixels)
    except ImageTooLargeError as error:
        if Path(path).suffix.lower() not in TIFF_SUFFIXES:
            raise
        too_large = error
    try:
        return open_lazy(Path(path)), None
    except ImageReadError as error:
        raise ImageReadError(f"{too_large}; {str(error).removeprefix(f'{path}: ')}") from None
    except Exception as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise _os_error(Path(path), error) from None
        raise ImageReadError(
            f"{path}: cannot open image in parts ({type(error).__name__}: {error})"
        ) from error


def read_header(path: str | os.PathLike):
    """The file's header (``data.budget.Header``: size, pages, TIFF dtype), no pixels decoded.

    Raises:
        ImageReadError: unsupported suffix, missing or empty file, unreadable or
            implausible header, complex or non-numeric pixel type.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"expected one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if not path.is_file():  # also keeps FIFOs and devices out: opening one would block
        what = "not a file" if path.exists() else "no such file"
        raise ImageReadError(f"{path}: {what}")
    info = path.stat()
    if info.st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes); {EXPORT_AGAIN}")
    try:
        return _header_of_version(*file_version(path, info))
    except ImageReadError:
        raise
    except Exception as error:
        if isinstance(error, OSError) and error.errno is not None:  # permission, I/O
            raise _os_error(path, error) from None
        raise ImageReadError(
            f"{path}: not a readable PNG, JPEG, BMP or TIFF image; {EXPORT_AGAIN}"
        ) from error


def file_version(path: Path, info: os.stat_result | None = None) -> tuple:
    """(path as given, device, inode, modification time in ns, size) of the file ``path``
    (``info``: its ``os.stat`` when already taken): the key of what is cached per version of
    a file, so a file rewritten or replaced is read again."""
    info = info or path.stat()
    return str(path), info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


# Opening a folder asks each file's header several times (its size check against its
# picture, the pixel budget before decoding, its orientation note, ...): one read per
# version of a file. Errors are not kept: a damaged file is read (and reported) again.
@functools.lru_cache(maxsize=1024)
def _header_of_version(path: str, *_version: int):
    """``data.budget.read_header`` of one version of the file ``path`` (:func:`file_version`)."""
    from .budget import read_header as header_of

    return header_of(Path(path))


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image from its header only, without decoding the pixels.

    Raises:
        ImageReadError: for a missing, empty or unrecognisable file.
    """
    header = read_header(path)
    if header.height < 1 or header.width < 1:
        raise ImageReadError(
            f"{path}: the header gives an empty image ({header.height} x {header.width} "
            "pixels); the file is damaged"
        )
    return header.height, header.width


def _os_error(path: Path, error: OSError) -> ImageReadError:
    if isinstance(error, PermissionError):
        return ImageReadError(f"{path}: permission denied: this user cannot read the file")
    return ImageReadError(f"{path}: cannot read the file ({type(error).__name__}: {error})")


def read_pixel_size(path: str | os.PathLike) -> tuple[float, float, str] | None:
    """Physical pixel size ``(y, x, unit)`` stored in the file, else None. Never raises.

    Sources: OME-TIFF ``PhysicalSizeY/X``, ImageJ TIFF (resolution tags + ``unit``),
    TIFF resolution tags in cm or inch, PNG/BMP/JPEG dpi. Known length units are
    converted to ``"µm"``; 72 and 96 dpi (editor defaults) count as no size.
    """
    try:
        path = Path(path)
        if not path.is_file():  # a FIFO would block the open for ever
            return None
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _tiff_pixel_size(path)
        from PIL import Image

        with Image.open(path) as image:
            dpi = image.info.get("dpi")
        if not dpi:
            return None
        dpi_x, dpi_y = float(dpi[0]), float(dpi[1])
        return _from_dpi(dpi_y, dpi_x)
    except Exception:
        return None


def read_mask(
    path: str | os.PathLike, rule: str = "auto", max_pixels: int | None = None
) -> tuple[np.ndarray, str]:
    """Read a mask file as a boolean foreground mask.

    Colour masks are collapsed by the max over colour channels (alpha dropped). The
    "auto" rule: ``>127`` for 0/255-style masks, whose max is above 127 and at most
    255, so that stray values 1..127 at the edges of their 255 regions (as in
    CVC-ClinicDB) and JPEG noise are background; :data:`ID_RULE` (``>0``) for 8-bit
    instance-id masks with ids up to 128..255 (:func:`holds_instance_ids`: flat objects
    whose top value holds little of the foreground, or whose values 1..127 form objects
    of their own);
    ``>0`` for every other mask: max <= 127 (0/1 masks, also as JPEG with
    noise values 2, 3..., and 8-bit label images 1..127) and integer label images
    wider than 8 bits (uint16/uint32/int32 instance labels). A mask with non-zero
    pixels that the rule leaves empty (only an explicit rule can), or whose left-out
    pixels lie in flat regions holding :data:`MASK_WARN_FLAT_DROPPED` of them, is logged
    as a warning naming the file (and the share left out).

    Args:
        path: mask file.
        rule: "auto", or an explicit threshold such as ">0" or ">127".
        max_pixels: the pixel budget (see ``read_image``).

    Returns:
        (H, W) bool mask and the rule used, e.g. ">127".
    """
    return _foreground(path, _mask_values(path, max_pixels), rule)


def read_mask_labels(
    path: str | os.PathLike, max_pixels: int | None = None
) -> tuple[np.ndarray, str]:
    """Read a mask file as labels: the instance ids as stored when it holds them
    (:func:`holds_instance_ids`, e.g. a 16-bit PNG that ``write_mask`` saved), with the
    rule "ids"; else ``read_mask``'s foreground as uint8 0/1 and its rule."""
    values = _mask_values(path, max_pixels)
    if holds_instance_ids(values):
        return values, "ids"
    mask, rule = _foreground(path, values, "auto")
    return mask.astype(np.uint8), rule


NOT_A_MASK = "it does not look like a mask (whole numbers: 0 and flat regions), but like a picture"


def mask_image_labels(values, *, colour: bool = False) -> tuple[np.ndarray, str]:
    """An image of a mask (a mask file opened as a picture) as labels by the rule for mask
    files (``read_mask``), and that rule: a 0/255-style 8-bit mask becomes uint8 0/1
    (">127": its stray values 1..127 and JPEG noise are background, as in CVC-ClinicDB);
    any other mask keeps its values (">0": 0/1 masks and instance ids stay as they are,
    also 8-bit ids up to 128..255, :data:`ID_RULE`, as in a mask file; bool gives 0/1).
    ``values`` is
    (..., H, W), grey + alpha (H, W, 2), or (..., H, W, C) when ``colour``;
    :func:`mask_grey` takes the channel axis away. Floats that are all whole numbers (a
    0.0/1.0 mask) count as the integers they hold.

    Raises:
        ValueError: ``values`` does not look like a mask (:func:`looks_like_mask`).
    """
    values = _whole_floats_as_integers(np.asarray(values))
    if not looks_like_mask(values):
        raise ValueError(NOT_A_MASK)
    return mask_labels(values, colour=colour)


def mask_labels(values, *, colour: bool = False) -> tuple[np.ndarray, str]:
    """:func:`mask_image_labels` of data already taken for a mask (the Metrics dock's mask
    images, judged by ``_image_layers.is_mask_image``, perhaps by a thumbnail): a
    0/255-style 8-bit mask as uint8 0/1, any other as its values (instance ids kept),
    and the rule; no check that it looks like a mask."""
    values = _whole_floats_as_integers(np.asarray(values))
    mask, rule = binarise_mask(values, colour=colour)
    if rule not in (">0", ID_RULE):
        return mask.astype(np.uint8), rule
    grey = mask_grey(values, colour=colour)
    return (grey.astype(np.uint8) if grey.dtype == bool else grey), rule


def _whole_floats_as_integers(values: np.ndarray) -> np.ndarray:
    """A float array whose values are all whole numbers from 0 to 65535 as uint8 (up to
    255) or uint16; any other array as it is."""
    if values.dtype.kind != "f" or values.size == 0 or not np.isfinite(values).all():
        return values
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 65535 or not (values == np.round(values)).all():
        return values
    return values.astype(np.uint8 if high <= 255 else np.uint16)


def holds_instance_ids(values: np.ndarray) -> bool:
    """Whether a mask file's (H, W) pixels ``values`` are instance ids (``read_mask_labels``,
    ``read_mask``'s :data:`ID_RULE`): :func:`_holds_ids` with 8-bit values 1..127 no ids.
    Other 8-bit masks are read as 0/255 or 0/1 (``read_mask``), their stray values
    background."""
    return values.ndim == 2 and _holds_ids(values, low_8bit_ids=False)


def holds_instance_labels(labels) -> bool:
    """Whether label data (..., H, W) hold instance ids, one per object, rather than a
    binary mask: the one rule by which the Metrics dock scores objects (PQ, AJI) where both
    layers hold them. :func:`_holds_ids` with 8-bit labels 1..127 ids (a Labels layer
    painted by hand). ``labels`` of a mask image come from :func:`mask_labels` (a 0/255
    one as 0/1)."""
    return _holds_ids(np.asarray(labels), low_8bit_ids=True)


def _holds_ids(values: np.ndarray, *, low_8bit_ids: bool) -> bool:
    """Whether (..., H, W) ``values`` are instance ids: integers (bool is binary), none
    negative, with more than one non-zero value (a 0/1 mask or a 0/255 one, a single id,
    is binary). Of 8 bits, those reaching 128..255 are ids by :func:`_holds_8bit_ids` (a
    0/255 mask's stray values 1..127 at its edges, as CVC-ClinicDB's, or JPEG noise make
    no objects), and those below 128 when ``low_8bit_ids``.

    The two questions differ there on purpose: a mask *file* (:func:`holds_instance_ids`)
    of 8-bit values 1..127 is read by ``>0`` as a foreground (a 0/1 mask saved as JPEG
    holds noise values 2, 3... that are no objects), while *labels* in napari
    (:func:`holds_instance_labels`) of 8-bit values 1..127 are ids (a Labels layer
    painted by hand); a file's (H, W) pixels are one picture, labels may be a stack."""
    if values.dtype.kind not in "iu" or values.size == 0:
        return False
    top = values.max()
    # the smallest non-zero value: a second one exists where it differs from the top
    low = values.min(where=values != 0, initial=top)
    if top <= 0 or low == top or values.min() < 0:
        return False
    if values.dtype.itemsize > 1:
        return True
    if top < 128:
        return low_8bit_ids
    return values.dtype == np.uint8 and _holds_8bit_ids(values.reshape(-1, values.shape[-1]))


def _holds_8bit_ids(values: np.ndarray) -> bool:
    """Whether 8-bit (H, W) mask pixels reaching 128..255 are instance ids rather than a
    0/255 mask with stray or JPEG values: their objects are flat (:func:`looks_like_mask`:
    each object one value, unlike a blurred or resized 0/255 mask whose edges ramp), and
    either their top value holds less than :data:`MASK_MIN_TOP_SHARE` of the non-zero
    pixels (in a 0/255 mask it holds most of them) or their values 1..127 form objects of
    their own holding at least :data:`MASK_MIN_OWN_SHARE` (:func:`_low_objects`; a 0/255
    mask's lie at the edges of its 255 regions)."""
    counts = np.bincount(values.ravel(), minlength=256)
    top = int(np.flatnonzero(counts)[-1])
    foreground = int(counts[1:].sum())
    few_top = counts[top] < MASK_MIN_TOP_SHARE * foreground
    enough_low = counts[1:128].sum() >= MASK_MIN_OWN_SHARE * foreground
    if top < 128 or not (few_top or enough_low) or not _flat(values):
        return False
    return few_top or _low_objects(values) >= MASK_MIN_OWN_SHARE * foreground


def _flat(values: np.ndarray) -> bool:
    """Whether at most :data:`MASK_MAX_CHANGING_PAIRS` of the neighbouring pairs of
    non-zero pixels of (H, W) ``values`` differ: flat objects, each one value."""
    pairs, changing = _neighbour_pairs(values)
    return changing <= MASK_MAX_CHANGING_PAIRS * pairs


def _low_objects(values: np.ndarray) -> int:
    """How many pixels of 8-bit (H, W) ``values`` are objects of values 1..127 of their
    own: 4-connected regions of such values that touch no pixel above 127 (of their 8
    neighbours) and have a pixel inside (its 4 neighbours in the region: no stray
    speck or line), when those regions are flat (:func:`_flat`); else 0 (JPEG noise)."""
    from scipy import ndimage

    low = (values > 0) & (values < 128)
    regions, count = ndimage.label(low)
    own = np.zeros(count + 1, bool)
    own[np.unique(regions[ndimage.binary_erosion(low)])] = True  # regions with an inside
    own[np.unique(regions[low & (ndimage.maximum_filter(values, size=3) > 127)])] = False
    own[0] = False
    pixels = own[regions]  # (H, W) bool
    return int(np.count_nonzero(pixels)) if _flat(np.where(pixels, values, 0)) else 0


def _mask_values(path: str | os.PathLike, max_pixels: int | None) -> np.ndarray:
    """A mask file's pixels without their channel axis (:func:`mask_grey`), (H, W)."""
    values = read_image(path, allow_stack=False, max_pixels=max_pixels)
    return mask_grey(values, colour=values.ndim == 3)


def _foreground(path: str | os.PathLike, values: np.ndarray, rule: str) -> tuple[np.ndarray, str]:
    """A mask's (H, W) pixels as a boolean foreground by ``rule`` (``read_mask``), warning
    when the rule leaves non-zero pixels empty, or leaves out flat regions of them
    (:func:`_warn_dropped`)."""
    mask, rule = binarise_mask(values, rule)
    if not mask.any() and values.any():
        logger.warning(
            "%s: the mask rule %s leaves it empty although %d pixels are non-zero "
            "(max %s); if they are foreground, read it with the rule '>0'",
            path,
            rule,
            int(np.count_nonzero(values)),
            values.max(),
        )
    elif mask.any():
        _warn_dropped(path, values, mask, rule)
    return mask, rule


def _warn_dropped(path: str | os.PathLike, values: np.ndarray, mask: np.ndarray, rule: str):
    """Warn, naming ``path`` and the share, when the non-zero pixels of (H, W) ``values``
    that ``rule`` leaves out of ``mask`` inside flat regions of one value (what objects
    are made of, unlike JPEG noise or ramped edges) hold at least
    :data:`MASK_WARN_FLAT_DROPPED` of the non-zero pixels."""
    nonzero = int(np.count_nonzero(values))
    dropped = (values != 0) & ~mask
    count = int(np.count_nonzero(dropped))
    if count < MASK_WARN_FLAT_DROPPED * nonzero:
        return
    from scipy import ndimage

    # a pixel inside a flat region equals each of its 8 neighbours
    inside = ndimage.minimum_filter(values, size=3) == ndimage.maximum_filter(values, size=3)
    flat = int(np.count_nonzero(dropped & inside))
    if flat < MASK_WARN_FLAT_DROPPED * nonzero:
        return
    threshold = rule.removeprefix(">")
    logger.warning(
        "%s: the mask rule '%s' leaves out %.0f%% of its non-zero pixels (values up to %s), "
        "%.0f%% in flat regions of one value as objects are; if those are objects, give "
        "them values above %s, or save instance ids as 16 bits",
        path,
        rule,
        100.0 * count / nonzero,
        threshold,
        100.0 * flat / nonzero,
        threshold,
    )


def binarise_mask(
    values: np.ndarray, rule: str = "auto", *, colour: bool = False
) -> tuple[np.ndarray, str]:
    """A mask's pixels as a boolean foreground by ``read_mask``'s rules, and the rule used.

    ``values`` is (..., H, W), grey + alpha (H, W, 2), or (..., H, W, C) when ``colour``;
    :func:`mask_grey` takes the channel axis away. The "auto" rule is ``read_mask``'s:
    ``>127`` for 0/255-style 8-bit masks (JPEG noise and stray values 1..127 are
    background), ``>0`` for the others (0/1 masks, instance ids).
    """
    values = mask_grey(values, colour=colour)
    if rule == "auto":
        rule = _auto_rule(values)
    return values > (0 if rule == ID_RULE else _parse_rule(rule)), rule


def is_grey_alpha(shape: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` holds grey + alpha pixels, (H, W, 2): what napari's
    own reader (File > Open) gives for an LA PNG, e.g. MoNuSeg's masks (``read_image``
    drops the alpha itself). No 2-D picture is 2 pixels wide, so such a last axis is the
    channels."""
    return len(shape) == 3 and shape[-1] == 2 and min(shape[:2]) > 2


def leading_singletons(shape: tuple[int, ...]) -> int:
    """How many leading axes of size 1 ``shape`` has before its last two (a stack of one,
    a TIFF's channel or Z axis of 1). They carry no information: a (1, H, W) mask covers
    the pixels of an (H, W) one (the writer drops them, Metrics compares without them)."""
    count = 0
    while len(shape) - count > 2 and shape[count] == 1:
        count += 1
    return count


def drop_leading_singletons(array):
    """``array`` (numpy, dask, ...) without its leading axes of size 1
    (:func:`leading_singletons`); a view, nothing is copied."""
    return array[(0,) * leading_singletons(tuple(array.shape))]


def mask_grey(values, *, colour: bool = False) -> np.ndarray:
    """A mask's values without their channel axis, by one rule for mask files
    (``read_mask``) and mask layers (the Metrics dock): grey + alpha
    (:func:`is_grey_alpha`) gives its grey channel; a colour mask (``colour``: a last axis
    of 3 or 4) the max over its colour channels; alpha is dropped; others stay as they
    are."""
    values = np.asarray(values)
    if is_grey_alpha(values.shape):
        return values[..., 0]
    return values[..., :3].max(axis=-1) if colour else values


def write_mask(
    path: str | os.PathLike,
    labels: np.ndarray,
    placement: dict | None = None,
    origin: dict | None = None,
) -> Path:
    """Write a mask or label image atomically (temp file + rename).

    Binary masks (max <= 1) become 0/255 uint8. Instance labels (max > 1) become uint16,
    or in a TIFF uint32 when the labels exceed 65535; always 16 bits or more, since
    ``read_mask`` reads 8-bit values up to 255 as a 0/255 mask (``>127``) but wider ones
    as labels (``>0``). TIFFs are zlib-compressed and carry ``MASK_MARK`` so that they
    reopen as masks (``saved_mask_kind``); a TIFF also holds a stack (..., H, W) as one
    multi-page file, and ``placement`` (under ``PLACEMENT_KEY``, plus the yx pixel size as
    resolution tags in pixels per cm when its unit is a length, as ImageJ reads them). A
    PNG keeps no placement.

    Args:
        path: .png, .tif or .tiff file; its folder is created if missing.
        labels: (H, W) bool or non-negative integer array; for a TIFF also (..., H, W).
        placement: ``{"scale": ..., "translate": ..., "units": ...}``, one value per axis
            of ``labels`` (units as names, e.g. "micrometer"); any key may be missing.
        origin: for a TIFF of a Segment result, its :data:`ORIGIN_NAMES` (model, model
            label, image, picture) and ``"prediction"`` (the model's own foreground, the
            shape of ``labels``, or None), stored under ``ORIGIN_KEY``
            (:func:`encode_origin`); a PNG keeps none.

    Returns:
        The path written.

    Raises:
        ValueError: labels the file cannot hold, naming the path and what to do.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    labels = np.asarray(labels)
    if suffix not in (".png", *TIFF_SUFFIXES):
        raise ValueError(f"{path}: masks are written as .png or .tif/.tiff, not {suffix!r}")
    if labels.ndim < 2 or labels.size == 0 or (labels.ndim > 2 and suffix == ".png"):
        raise ValueError(
            f"{path}: expected a 2-D (H, W) label image"
            + (" (or a stack in a .tif)" if suffix == ".png" else " or a stack of them")
            + f", got shape {labels.shape}"
        )
    if labels.dtype != bool and labels.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: expected a boolean or integer label image, got dtype {labels.dtype}; "
            "threshold probabilities first (e.g. prob > 0.5)"
        )
    top = int(labels.max())
    if labels.dtype != bool and int(labels.min()) < 0:
        raise ValueError(f"{path}: labels must be >= 0, got minimum {int(labels.min())}")
    if top <= 1:  # one copy: a 20000 x 20000 mask is 400 MB
        data = np.multiply(labels, np.uint8(255), dtype=np.uint8, casting="unsafe")
    elif top <= np.iinfo(np.uint16).max:
        data = labels.astype(np.uint16)
    elif suffix == ".png":
        raise ValueError(
            f"{path}: labels go up to {top}, more than a PNG holds (65535); save it as a "
            f"TIFF ({path.stem}.tif) to keep every label"
        )
    else:
        data = labels.astype(np.uint32)

    with atomic_path(path) as tmp_name:
        if suffix == ".png":
            from PIL import Image

            Image.fromarray(data).save(tmp_name, format="PNG")  # mode L (0/255) or I;16
        else:
            import tifffile

            kind = "binary" if top <= 1 else "instances"
            placed = _json_placement(placement, data.ndim)
            described = {MASK_MARK: kind, **({PLACEMENT_KEY: placed} if placed else {})}
            stored = encode_origin(origin, labels.shape)
            tifffile.imwrite(
                tmp_name,
                data,
                compression="zlib",
                photometric="minisblack",
                metadata={**described, **({ORIGIN_KEY: stored} if stored else {})},
                **_resolution_tags(placed),
            )
    return path


def encode_origin(origin: dict | None, shape: tuple[int, ...]) -> dict:
    """``origin``'s :data:`ORIGIN_NAMES` (those it has), and its ``prediction`` (bool, of
    ``shape``) bit-packed, zlib-compressed and base64-encoded, for a TIFF's JSON
    description. The names are kept without the prediction, which is left out when it is
    missing, of another shape or encodes larger than :data:`MAX_ORIGIN_CHARS` (a result
    segmented in bands keeps none: its edits are unknown, its picture is not); {} when
    nothing is left."""
    import base64
    import zlib

    origin = origin or {}
    names = {k: str(origin[k]) for k in ORIGIN_NAMES if origin.get(k)}
    prediction = origin.get("prediction")
    if not isinstance(prediction, np.ndarray) or prediction.size != math.prod(shape):
        return names
    packed = zlib.compress(np.packbits(prediction.reshape(shape) > 0).tobytes())
    text = base64.b64encode(packed).decode("ascii")
    if len(text) > MAX_ORIGIN_CHARS:
        return names
    return {**names, "shape": list(shape), "prediction": text}


def decode_origin(stored: dict | None) -> dict | None:
    """:func:`encode_origin`'s dict back: the :data:`ORIGIN_NAMES` it holds (a file saved
    before the picture was kept has none of it) and ``"prediction"``, a bool array, or
    None when it is missing or damaged (the user's edits are then unknown); None when it
    holds neither (the mask then reads as any other)."""
    import base64
    import binascii
    import zlib

    if not isinstance(stored, dict):
        return None
    names = {k: str(stored[k]) for k in ORIGIN_NAMES if stored.get(k)}
    try:
        shape = tuple(int(n) for n in stored["shape"])
        bits = np.frombuffer(zlib.decompress(base64.b64decode(stored["prediction"])), np.uint8)
        prediction = np.unpackbits(bits, count=math.prod(shape)).reshape(shape).astype(bool)
    except (KeyError, TypeError, ValueError, binascii.Error, zlib.error):
        prediction = None
    if not names and prediction is None:
        return None
    return {**names, "prediction": prediction}


def _json_placement(placement: dict | None, ndim: int) -> dict:
    """``placement``'s scale/translate (floats) and units (names) that have one value per
    axis of an ``ndim`` mask, for the TIFF's JSON description; {} if none."""
    out: dict = {}
    for key, kind in (("scale", float), ("translate", float), ("units", str)):
        values = (placement or {}).get(key)
        if values is not None and len(values) == ndim:
            out[key] = [kind(v) for v in values]
    return out


def _resolution_tags(placed: dict) -> dict:
    """tifffile's ``resolution``/``resolutionunit`` (pixels per cm) for the yx pixel size
    of a placement in a length unit; {} for none, or another unit (e.g. "pixel")."""
    scale, units = placed.get("scale"), placed.get("units")
    if not scale or not units or units[-1] != units[-2]:
        return {}
    size = _to_um(scale[-2], scale[-1], units[-1])
    if size is None or size[2] != "µm":
        return {}
    return {"resolution": (1e4 / size[1], 1e4 / size[0]), "resolutionunit": 3}  # 3: cm


def saved_mask_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The shape a TIFF ``write_mask`` wrote had ((H, W), (Z, H, W)...), else None.

    Never raises.
    """
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return _written_shape(tif)
    except Exception:  # unreadable files are the image reader's to report
        return None


def saved_mask_kind(path: str | os.PathLike) -> str | None:
    """The kind (``"binary"`` or ``"instances"``) of a TIFF ``write_mask`` wrote, else None.

    Never raises.
    """
    try:
        path = Path(path)
        if path.suffix.lower() not in TIFF_SUFFIXES:
            return None
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the open
            return None
        version = file_version(path, info)[1:]
        if version not in _MASK_KINDS:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                _remember_kind(version, _mask_kind(tif))
        return _MASK_KINDS[version]
    except Exception:  # unreadable files are the image reader's to report
        return None


# saved_mask_kind per file version (file_version less the path): asked of a mask when its
# families are told apart, again when it is opened (read_saved_mask), and by the docks
# on each choice of a layer; one read per version of a file.
_MASK_KINDS: dict[tuple, str | None] = {}


def _remember_kind(version: tuple, kind: str | None) -> None:
    """Keep ``kind`` (:func:`saved_mask_kind`) of the file ``version``; at most 1024 kept."""
    if len(_MASK_KINDS) >= 1024:  # a new start: kinds are cheap to read again
        _MASK_KINDS.clear()
    _MASK_KINDS[version] = kind


@dataclass
class SavedMask:
    """A TIFF that ``write_mask`` wrote, as :func:`read_saved_mask` reads it."""

    kind: str  # "binary" or "instances"
    labels: np.ndarray  # as decoded: (H, W) or (Z, H, W); uint8 0/255, or uint16/32 ids
    shape: tuple[int, ...] | None  # the shape written ((H, W), (T, Z, H, W)...)
    pixel_size: tuple[float, float, str] | None  # (y, x, unit), as read_pixel_size
    placement: dict | None = None  # as written by write_mask (scale/translate/units lists)
    origin: dict | None = None  # a Segment result's origin (decode_origin), else None


def read_saved_mask(path: str | os.PathLike, *, max_pixels: int | None = None) -> SavedMask | None:
    """Kind, pixels, written shape and pixel size of a mask ``write_mask`` saved as a TIFF,
    from one opening of the file; None for any other file (unreadable ones included: the
    image reader reports them); a file :func:`saved_mask_kind` found unmarked is not
    opened again.

    Raises:
        ImageReadError: a marked file whose pixels cannot be read (over the pixel budget
            ``max_pixels``, or damaged), naming the path and the cause.
    """
    from .budget import check_budget, tiff_header
    from .budget import max_pixels as budget

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return None
    version = file_version(path)[1:]
    if version in _MASK_KINDS and _MASK_KINDS[version] is None:  # known unmarked: not opened
        return None
    try:
        import tifffile

        tif = tifffile.TiffFile(path)
    except Exception:  # not a TIFF this can open: the image reader says why
        return None
    with tif:
        try:
            kind = _mask_kind(tif)
        except Exception:  # damaged metadata: not one of ours
            kind = None
        _remember_kind(version, kind)
        if kind is None:
            return None
        try:
            check_budget(path, tiff_header(path, tif), budget(max_pixels))
            labels, _ = _tiff_pixels(path, tif)
        except ImageReadError:
            raise
        except Exception as error:  # decoders raise many types; the caller needs one
            raise ImageReadError(
                f"{path}: cannot decode image ({type(error).__name__}: {error}); {EXPORT_AGAIN}"
            ) from error
        try:
            pixel_size = _open_tiff_pixel_size(tif)
        except Exception:  # a missing or odd resolution tag is not an error
            pixel_size = None
        shaped = tif.shaped_metadata
        placement = shaped[0].get(PLACEMENT_KEY) if shaped else None
        return SavedMask(
            kind,
            labels,
            _written_shape(tif),
            pixel_size,
            placement if isinstance(placement, dict) else None,
            decode_origin(shaped[0].get(ORIGIN_KEY)) if shaped else None,
        )


def _written_shape(tif) -> tuple[int, ...] | None:
    """The shape tifffile's JSON description of an open TIFF holds, else None."""
    shaped = tif.shaped_metadata
    return tuple(int(n) for n in shaped[0]["shape"]) if shaped else None


def _mask_kind(tif) -> str | None:
    """``write_mask``'s mark (``"binary"`` or ``"instances"``) in an open TIFF, else None."""
    shaped = tif.shaped_metadata  # the JSON descriptions tifffile wrote, or None
    kind = shaped[0].get(MASK_MARK) if shaped else None
    return kind if kind in ("binary", "instances") else None


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an image losslessly (zlib TIFF, native dtype) and atomically."""
    import tifffile

    image = np.ascontiguousarray(image)
    colour = image.ndim == 3 and image.shape[-1] in (3, 4)
    if image.dtype == bool:
        image = image.astype(np.uint8) * np.uint8(255)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            image,
            compression="zlib",
            photometric="rgb" if colour else "minisblack",
            **({"extrasamples": ["unassalpha"]} if colour and image.shape[-1] == 4 else {}),
        )
    return Path(path)


def _auto_rule(values: np.ndarray) -> str:
    """Binarisation rule for a collapsed (H, W) mask, see ``read_mask``."""
    if values.dtype == bool or (values.dtype.kind in "iu" and values.dtype.itemsize > 1):
        return ">0"
    # Only a 0/255-style mask or 8-bit ids reach above 127; ">127" would empty any other
    # (0/1 masks that JPEG turned into 0/1/2, 8-bit labels 1..N). Above 255 only labels
    # make sense.
    top = float(values.max())
    if not 127 < top <= 255:
        return ">0"
    if holds_instance_ids(values):  # 8-bit ids (wider integers returned above)
        return ID_RULE
    return ">127"


def _parse_rule(rule: str) -> float:
    """Threshold of a rule like ">127"."""
    try:
        if not rule.startswith(">"):
            raise ValueError
        return float(rule[1:])
    except ValueError:
        raise ValueError(
            f"unknown mask rule {rule!r}; use 'auto' or a threshold such as '>0' or '>127'"
        ) from None


def _read_tiff(path: Path) -> tuple[np.ndarray, bool, Channels | None]:
    """Decode a TIFF; returns the array, whether it is a stack of pages, and its separate
    channels (``_tiff_layout``)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        array, stacked, channels = _tiff_layout(path, *_tiff_series(path, tif))
        if channels is not None:
            channels = replace(channels, names=_channel_names(tif, channels.count))
    return _inks_as_rgb(path, array), stacked, channels


def _channel_names(tif, count: int) -> tuple[str, ...]:
    """The names an open ``tifffile.TiffFile`` gives its ``count`` separate channels, as
    stored: OME-XML's Channel Name of its first image, else ImageJ's slice labels
    (:func:`_imagej_channel_names`); "" for a channel it leaves unnamed, () when it names
    none or a count of them that is not ``count``."""
    names = _ome_channel_names(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
    if len(names) != count or not any(names):
        names = _imagej_channel_names((tif.imagej_metadata or {}).get("Labels"), count)
    return tuple(names) if len(names) == count and any(names) else ()


def _ome_channel_names(xml: str) -> list[str]:
    """The Name of each Channel of the first OME Pixels element ("" where it has none);
    [] for XML that does not parse (the pixels still read, unnamed)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            channels = [c for c in element if c.tag.rsplit("}", 1)[-1] == "Channel"]
            return [channel.get("Name") or "" for channel in channels]
    return []


def _imagej_channel_names(labels, count: int) -> list[str]:
    """Channel names from ImageJ's slice labels (one per plane, channel fastest, as a
    hyperstack stores its planes): a channel's name is the label all its planes share,
    else ""; [] when the labels do not fit ``count`` channels. (ImageJ's "Ranges" are
    each channel's display range, not a name.)"""
    if not isinstance(labels, list | tuple) or not labels or len(labels) % count:
        return []
    names = []
    for index in range(count):
        own = {str(label) for label in labels[index::count]}
        names.append(own.pop() if len(own) == 1 else "")
    return names


def _inks_as_rgb(path: Path, array: np.ndarray) -> np.ndarray:
    """A CMYK TIFF's unsigned ink amounts as RGB (Pillow's conversion, as for CMYK JPEGs);
    any other array unchanged. Float inks stay as stored (``colour_spaces`` says why)."""
    from .colour_spaces import CMYK, convert_colours, stored_colour_space

    if array.shape[-1:] != (4,) or array.dtype.kind != "u" or stored_colour_space(path) != CMYK:
        return array
    return convert_colours(array, CMYK)  # (..., 4) inks -> (..., 3) RGB


def _tiff_pixels(path: Path, tif) -> tuple[np.ndarray, bool]:
    """Decode an open ``tifffile.TiffFile``; the array and whether it is a stack of pages
    (separate channels as frames, channel by channel)."""
    array, stacked, channels = _tiff_layout(path, *_tiff_series(path, tif))
    if channels is not None:
        array, stacked = array.reshape(-1, *array.shape[-2:]), True
    return array, stacked


def _tiff_series(path: Path, tif) -> tuple[np.ndarray, str]:
    """An open ``tifffile.TiffFile``'s pixels and tifffile's axes letters for them."""
    if not tif.series:
        raise ImageReadError(
            f"{path}: cannot decode image (the TIFF holds no image pages); {EXPORT_AGAIN}"
        )
    first = tif.series[0]
    # Pages written one by one without shape metadata come as one series each.
    same = [s for s in tif.series if s.shape == first.shape and s.dtype == first.dtype]
    if len(same) > 1 and first.ndim <= 3:
        return np.stack([s.asarray() for s in same]), "Q" + first.axes
    return first.asarray(), first.axes


def _tiff_layout(
    path: Path, array: np.ndarray, axes: str
) -> tuple[np.ndarray, bool, Channels | None]:
    """Bring a tifffile array into (H, W), (H, W, C), (Z, H, W) or (Z, H, W, C); a
    channel axis that is not colour (:func:`channels_are_colour`) first, kept apart:
    (C, H, W) or (C, Z, H, W), with its :class:`Channels`."""
    keep = [i for i, n in enumerate(array.shape) if n > 1 or axes[i] in "YX"]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "S" in axes:
        colour = "S"
    elif "C" in axes and channels_are_colour(array.shape[axes.index("C")], array.dtype):
        colour = "C"  # e.g. an OME or ImageJ RGB image stored as separate channels
    else:
        colour = ""
    if colour and array.dtype in LABEL_DTYPES:  # label ids: frames, not colour
        array, axes = _samples_as_frames(array, axes, colour)
        colour = ""
    if colour:
        array = np.moveaxis(array, axes.index(colour), -1)
        axes = axes.replace(colour, "") + "S"
    if "S" in axes:
        samples = array.shape[-1]
        if samples == 2:  # grey + alpha
            array, axes = array[..., 0], axes[:-1]
        elif samples not in (3, 4):
            raise ImageReadError(
                f"{path}: {samples} samples per pixel; expected grey, grey+alpha, RGB or RGBA"
            )
    split = "C" in axes and array.dtype not in LABEL_DTYPES  # label ids: frames, as today
    if split:  # channels first, apart from the frame axes (Z, T)
        array = np.moveaxis(array, axes.index("C"), 0)
        axes = "C" + axes.replace("C", "")
    first = 1 if split else 0
    spatial = array.ndim - first - (1 if axes.endswith("S") else 0)
    stack = axes[first : first + spatial - 2]
    if spatial > 3:  # several stack axes (T, Z, C...) -> one
        array = array.reshape(*array.shape[:first], -1, *array.shape[first + spatial - 2 :])
        spatial = 3
    if not split:
        return array, spatial == 3, None
    frames = array.shape[1] if spatial == 3 else 1
    return array, spatial == 3, Channels(array.shape[0], stack, frames)


def _samples_as_frames(array: np.ndarray, axes: str, samples: str) -> tuple[np.ndarray, str]:
    """A TIFF array's ``samples`` axis (S or C) as a stack axis ("Q"): in place when it
    is stored before the image axes (planar, (3, H, W)), else first ((H, W, 3) ->
    (3, H, W)), as this module gives stacks."""
    at = axes.index(samples)
    if at > axes.index("Y"):
        array, axes = np.moveaxis(array, at, 0), samples + axes.replace(samples, "")
    return array, axes.replace(samples, "Q")


def exif_orientation(image) -> int:
    """The EXIF orientation of an open Pillow ``image`` that this module applies: its tag's
    value (2 to 8) for a JPEG, else 1 (as stored: no tag, an invalid value, any other
    format)."""
    if image.format not in ("JPEG", "MPO"):
        return 1
    value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    return value if value in ORIENTATIONS else 1


def orientation_applied(path: str | os.PathLike) -> str:
    """How :func:`read_image` turns the file at ``path`` by its EXIF orientation, in words
    ("turned 90° clockwise, as its EXIF orientation 6 says"), or "" when it keeps it as
    stored or cannot read it. Reads the header only."""
    try:
        orientation = read_header(path).orientation
    except ImageReadError:
        return ""
    return _orientation_words(orientation)


def _orientation_words(orientation: int) -> str:
    if orientation == 1:
        return ""
    return f"{ORIENTATIONS[orientation]}, as its EXIF orientation {orientation} says"


def turned_sizes_note(image: Path, image_hw, mask: Path, mask_hw) -> str:
    """For an image and a mask of sizes (H, W) that differ: when one of the two is turned
    by its EXIF orientation and the sizes are each other's turned, a sentence saying so
    and what to do; else "" (the sizes simply differ)."""
    if tuple(image_hw) != tuple(mask_hw)[::-1]:
        return ""
    for path, other in ((image, mask), (mask, image)):
        turned = orientation_applied(path)
        if turned:
            return (
                f"; {path} is read {turned} (as photo viewers show it), and {other} fits its "
                "pixels as stored: turn that one too, or save the JPEG without its EXIF "
                "orientation"
            )
    return ""


def _read_pillow(path: Path) -> np.ndarray:
    """Decode a png/jpg/bmp with Pillow (16-bit colour PNG with imagecodecs)."""
    from PIL import Image

    if path.suffix.lower() == ".png":
        with open(path, "rb") as file:
            header = file.read(26)
        # IHDR: bit depth at byte 24, colour type at 25 (2 RGB, 4 LA, 6 RGBA).
        if len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6):
            import imagecodecs

            array = imagecodecs.png_decode(path.read_bytes())
            return array[..., 0] if array.shape[-1] == 2 else array

    with Image.open(path) as image:
        image.load()
        orientation = exif_orientation(image)
        if orientation != 1:  # as the camera meant it, and viewers show it
            from PIL import ImageOps

            image = ImageOps.exif_transpose(image)
            logger.info("%s: read %s", path, _orientation_words(orientation))
        mode = image.mode
        if mode == "P" or mode == "PA":
            image = _expand_palette(image)
        elif mode == "LA":
            image = image.getchannel("L")
        elif mode == "I":  # 16-bit grey PNG in some Pillow versions
            array = np.asarray(image)
            if array.min() >= 0 and array.max() <= np.iinfo(np.uint16).max:
                return array.astype(np.uint16)
            return array
        elif mode not in ("1", "L", "RGB", "RGBA", "F") and not mode.startswith("I;16"):
            image = image.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, ...
        array = np.asarray(image)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _expand_palette(image):
    """Palette image -> L (grey palette), RGB or RGBA (palette with transparency)."""
    if image.mode == "PA" or "transparency" in image.info:
        return image.convert("RGBA")
    rgb = image.convert("RGB")
    array = np.asarray(rgb)
    if (array[..., 0] == array[..., 1]).all() and (array[..., 0] == array[..., 2]).all():
        return rgb.getchannel("R")
    return rgb


def _tiff_pixel_size(path: Path) -> tuple[float, float, str] | None:
    """Pixel size from OME, ImageJ or plain TIFF resolution tags."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return _open_tiff_pixel_size(tif)


def _open_tiff_pixel_size(tif) -> tuple[float, float, str] | None:
    """:func:`_tiff_pixel_size` of an open ``tifffile.TiffFile``."""
    if tif.is_ome and tif.ome_metadata:
        size = _ome_pixel_size(tif.ome_metadata)
        if size is not None:
            return size
    page = tif.pages.first
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    x_res = _rational(tags["XResolution"].value)
    y_res = _rational(tags["YResolution"].value)
    if not (x_res > 0 and y_res > 0):
        return None
    unit_tag = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    imagej = tif.imagej_metadata or {}
    if imagej.get("unit"):
        return _to_um(1.0 / y_res, 1.0 / x_res, str(imagej["unit"]))
    if unit_tag == 2:  # inch
        return _from_dpi(y_res, x_res)
    if unit_tag == 3:  # centimetre
        return _to_um(1.0 / y_res, 1.0 / x_res, "cm")
    return None


def _ome_pixel_size(xml: str) -> tuple[float, float, str] | None:
    """PhysicalSizeY/X of the first OME Pixels element (OME's default unit is µm)."""
    for element in ET.fromstring(xml).iter():
        if element.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        x, y = element.get("PhysicalSizeX"), element.get("PhysicalSizeY")
        if x is None or y is None:
            return None
        size_y = _to_um(float(y), 1.0, element.get("PhysicalSizeYUnit", "µm"))
        size_x = _to_um(1.0, float(x), element.get("PhysicalSizeXUnit", "µm"))
        if size_y is None or size_x is None or size_y[2] != size_x[2]:
            return None
        return size_y[0], size_x[1], size_x[2]
    return None


def _from_dpi(dpi_y: float, dpi_x: float) -> tuple[float, float, str] | None:
    """Pixel size in µm from dots per inch; editor-default dpi count as unknown."""
    if not (dpi_x > 0 and dpi_y > 0):
        return None
    if any(abs(dpi_x - d) < 0.1 and abs(dpi_y - d) < 0.1 for d in _SCREEN_DPI):
        return None
    return 25400.0 / dpi_y, 25400.0 / dpi_x, "µm"


def _to_um(size_y: float, size_x: float, unit: str) -> tuple[float, float, str] | None:
    """Convert a size in a named unit to µm; unknown length units are kept as named."""
    unit = unit.strip()
    if unit.lower() in ("", "pixel", "pixels", "px", "none"):
        return None
    if not (math.isfinite(size_y) and math.isfinite(size_x) and size_y > 0 and size_x > 0):
        return None
    factor = _UM_PER_UNIT.get(unit) or _UM_PER_UNIT.get(unit.lower())
    if factor is None:
        return size_y, size_x, unit
    return size_y * factor, size_x * factor, "µm"


def _rational(value) -> float:
    """TIFF RATIONAL tag value (num, den) or number -> float."""
    if isinstance(value, tuple):
        return value[0] / value[1] if value[1] else 0.0
    return float(value)


# looks_like_mask: inside a mask's objects neighbouring pixels hold the same id; measured
# on neighbouring pixel pairs that are both non-zero, at most 0.9% differ in CPM-15
# instance masks, 7% in Kvasir-SEG's JPEG masks, 0 in binary masks, and at least 53% in
# every DSB2018 fluorescence, BUSI and UDIAT image (8-bit or 16-bit grey).
MASK_MAX_CHANGING_PAIRS = 0.15


def looks_like_mask(array) -> bool:
    """Whether ``array`` looks like a mask rather than a picture: integer (or bool) grey data
    (an RGB(A) array counts when its three colour channels are equal, a grey + alpha one by
    its grey channel) holding 0 and at least
    one other value, whose objects are flat: of the pairs of neighbouring pixels (across and
    down) that are both non-zero, at most :data:`MASK_MAX_CHANGING_PAIRS` differ. That holds
    for 0/255 and 0/1 binary masks and for 0..N instance ids, not for photographs, scans or
    microscopy, whose pixels vary inside objects. A stack is judged by its first frame; an
    all-zero array is no mask (nothing tells it from a black picture)."""
    frame = _grey_frame(np.asarray(array))
    if frame is None or frame.dtype.kind not in "biu" or frame.ndim != 2:
        return False
    pairs, changing = _neighbour_pairs(frame)
    has_zero = bool((frame == 0).any())
    return has_zero and pairs > 0 and changing <= MASK_MAX_CHANGING_PAIRS * pairs


def _neighbour_pairs(frame: np.ndarray) -> tuple[int, int]:
    """Of the pairs of neighbouring pixels (across and down) of a 2-D ``frame`` that are
    both non-zero: how many there are, and how many of them differ."""
    pairs = changing = 0
    for here, there in ((frame[:, 1:], frame[:, :-1]), (frame[1:], frame[:-1])):
        both = (here != 0) & (there != 0)
        pairs += int(np.count_nonzero(both))
        changing += int(np.count_nonzero(both & (here != there)))
    return pairs, changing


# file_looks_like_mask reads at most this many pixels (a picture over it is not judged)
MASK_CHECK_MAX_PIXELS = 1 << 26


def file_looks_like_mask(path: str | os.PathLike, *, one_value_is_mask: bool = False) -> bool:
    """Whether the image file ``path`` holds a mask by :func:`looks_like_mask` (its first
    frame); with ``one_value_is_mask`` also when that frame is grey whole numbers all of
    one value (:func:`holds_one_value`: all 0, all 255), which pixels cannot tell from a
    plain picture: for a file whose name says mask (``data.mask_names.orphan_holds_mask``).
    False for a file that cannot be read or holds more than :data:`MASK_CHECK_MAX_PIXELS`
    pixels, or than the pixel budget (not decoded). In a :func:`decoding_once` block its
    pixels are kept for the file's opening."""
    from .budget import max_pixels

    try:
        limit = min(MASK_CHECK_MAX_PIXELS, max_pixels())
        pixels = _checked_pixels(Path(path), limit)
        _keep(Path(path), pixels)  # opened next, in a decoding_once block: not decoded again
        array = pixels[0]
        return looks_like_mask(array) or (one_value_is_mask and holds_one_value(array))
    except ValueError:  # unreadable, too large, a bad budget: the opening reports or reads it
        return False


def holds_one_value(array) -> bool:
    """Whether the first frame of ``array`` (as :func:`looks_like_mask` takes it) is grey
    whole numbers (integer or bool) all of one value: an empty mask (all 0) or one all
    foreground (all 255), as much as a black or white picture; colour and float frames
    are not."""
    frame = _grey_frame(np.asarray(array))
    if frame is None or frame.dtype.kind not in "biu" or frame.ndim != 2 or frame.size == 0:
        return False
    return bool((frame == frame.flat[0]).all())


def _grey_frame(array: np.ndarray) -> np.ndarray | None:
    """The first 2-D frame of ``array``, grey (grey + alpha: its grey channel; a colour
    frame, also of a (Z, H, W, C) stack, its channels when they are equal); None for
    colour (channels that differ)."""
    array = mask_grey(array)
    colour = array.ndim >= 3 and array.shape[-1] in (3, 4)
    while array.ndim > 2 + colour:  # the first frame
        array = array[0]
    if colour:
        channels = array[..., :3]  # (H, W, 3)
        if not (channels == channels[..., :1]).all():
            return None
        array = channels[..., 0]
    return array
