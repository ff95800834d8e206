"""Pixel budget: image sizes read from file headers before any pixel is decoded.

A header can claim any size: a 78 KB tiled TIFF claims 100000 x 100000 pixels (10 GB
decoded), a 2 MB PNG 20000 x 20000 x 3 x 16 bit. ``read_image`` refuses what is over the
budget; callers that can work piece by piece (the napari reader, ``napari-tmunet-predict``
in tile mode) open TIFFs over it lazily with :func:`open_lazy` and read them in bands.

The budget is, in order: an explicit argument (``--max-pixels``), the environment
variable ``NAPARI_TMUNET_MAX_PIXELS``, ``"max_pixels"`` in the user's settings.json
(``settings.settings_path()``; one that is no positive number is named in a warning and
not used), else :data:`DEFAULT_MAX_PIXELS`.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import (
    EXPORT_AGAIN,
    TIFF_SUFFIXES,
    ImageReadError,
    ImageTooLargeError,
    exif_orientation,
)

DEFAULT_MAX_PIXELS = 1 << 28  # 256 Mpix, e.g. 16384 x 16384: ~1 GB as 8-bit RGB
MAX_PIXELS_ENV = "NAPARI_TMUNET_MAX_PIXELS"
MAX_PIXELS_SETTING = "max_pixels"
# A lazily read TIFF is decoded one stored block (tile or strip) at a time: a block
# larger than this cannot be read in parts.
MAX_BLOCK_BYTES = 512 << 20
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Header:
    """What a file's header claims, read without decoding pixels.

    Attributes:
        height, width: of one image (page).
        pixels: height x width x pages (samples per pixel not counted).
        dtype: the pixel type, when the header says (TIFF), else None.
        orientation: the EXIF orientation ``read_image`` applies (a JPEG's, 2 to 8), else
            1; height and width are those of the image as turned.
    """

    height: int
    width: int
    pixels: int
    dtype: np.dtype | None = None
    orientation: int = 1


def max_pixels(override: int | None = None) -> int:
    """The pixel budget in force (see the module docstring); always >= 1."""
    if override is not None:
        return _positive(override, "max_pixels")
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        return _positive(env, MAX_PIXELS_ENV)
    value = _setting()
    return DEFAULT_MAX_PIXELS if value is None else _positive(value, MAX_PIXELS_SETTING)


def in_bands(image, limit: int | None = None) -> bool:
    """Whether a 2-D image, (H, W) or (H, W, C), is segmented in bands of tiles
    (``streaming.segment_bands``: tile mode only): read lazily (a memmap, zarr or dask
    array, not an array in memory) and over the pixel budget (``limit``, else
    :func:`max_pixels`). Reads no pixel."""
    if isinstance(image, np.ndarray) and not isinstance(image, np.memmap):
        return False
    shape = tuple(image.shape)
    return shape[0] * shape[1] > max_pixels(limit)


def describe_pixels(pixels: int) -> str:
    """E.g. "268.4 Mpix"; under 1 Mpix the exact count, "1,000 pixels" (a small budget in
    tenths of a megapixel would read "0.0 Mpix")."""
    if pixels < 1_000_000:
        return f"{pixels:,} pixels"
    return f"{pixels / 1e6:.1f} Mpix"


def read_header(path: Path) -> Header:
    """Size (and for TIFF the dtype) from the header; refuses implausible headers.

    Raises:
        ImageReadError: unreadable header, complex or non-numeric pixels, or a header
            that claims more data than the file holds.
    """
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _tiff_header(path)
    with open(path, "rb") as file:
        start = file.read(24)
    if start[:8] == _PNG_SIGNATURE:  # IHDR first: length, type, width, height big-endian
        if len(start) < 24 or start[12:16] != b"IHDR":
            raise ImageReadError(
                f"{path}: cannot decode image (damaged PNG: no IHDR header); {EXPORT_AGAIN}"
            )
        width, height = struct.unpack(">II", start[16:24])
        if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
            raise ImageReadError(
                f"{path}: cannot decode image (PNG header: {width}x{height}); {EXPORT_AGAIN}"
            )
        return Header(height, width, height * width)
    from PIL import Image

    with Image.open(path) as image:  # header only; Pillow refuses its own bombs here
        width, height = image.size
        orientation = exif_orientation(image)
    if orientation >= 5:  # a quarter turn (or a diagonal mirror): read as W x H
        height, width = width, height
    return Header(height, width, height * width, orientation=orientation)


def check_budget(path: Path, header: Header, limit: int) -> None:
    """Raise ImageTooLargeError when the header claims more pixels than ``limit``."""
    if header.pixels <= limit:
        return
    pages = header.pixels // max(1, header.height * header.width)
    what = f"{header.height}x{header.width}" + (f" x {pages} pages" if pages > 1 else "")
    raise ImageTooLargeError(
        f"{path}: {what} pixels ({describe_pixels(header.pixels)}) is over the pixel budget "
        f"of {describe_pixels(limit)}; if the machine has the memory, raise it with "
        f"--max-pixels, the '{MAX_PIXELS_SETTING}' setting or {MAX_PIXELS_ENV} (TIFFs over "
        "the budget open lazily in napari and segment in tile mode)"
    )


def open_lazy(path: Path):
    """A TIFF's first image as an array read on demand: (H, W) or (H, W, C).

    Uncompressed contiguous data is memory-mapped; anything else is a zarr array over
    tifffile's store, decoded one tile or strip at a time when sliced. A stack of pages
    or a file stored in one block larger than ``MAX_BLOCK_BYTES`` cannot be read in parts
    and is refused.
    """
    import tifffile

    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ImageReadError(f"{path}: only TIFF files can be opened in parts")
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes, page = series.axes, series.pages[0]
        mappable = page is not None and page.is_memmappable and len(tif.series) == 1
        block = _largest_block(page, series.dtype) if page is not None else 0
    if axes not in ("YX", "YXS"):
        raise ImageReadError(
            f"{path}: a {axes} TIFF over the pixel budget; only single 2-D images (YX or "
            "YXS) are read in parts: save one image per file"
        )
    if mappable:
        return tifffile.memmap(path, mode="r")
    if block > MAX_BLOCK_BYTES:
        raise ImageReadError(
            f"{path}: stored as one compressed block of {block / 2**20:.0f} MiB, which cannot "
            "be read in parts; save it tiled (e.g. tifffile.imwrite(..., tile=(512, 512)))"
        )
    try:
        import zarr
    except ImportError:
        raise ImageReadError(
            f"{path}: reading images over the pixel budget needs the zarr package "
            "(pip install zarr)"
        ) from None
    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    return zarr.open_array(store, mode="r")


def _tiff_header(path: Path) -> Header:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tiff_header(path, tif)


def tiff_header(path: Path, tif) -> Header:
    """The :class:`Header` of an open ``tifffile.TiffFile`` (see :func:`read_header`)."""
    if not tif.series:
        raise ImageReadError(
            f"{path}: cannot decode image (the TIFF holds no image pages); {EXPORT_AGAIN}"
        )
    first = tif.series[0]
    _check_dtype(path, first.dtype)
    same = [s for s in tif.series if s.shape == first.shape and s.dtype == first.dtype]
    shape = dict(zip(first.axes, first.shape, strict=True))
    height, width = shape.get("Y", 1), shape.get("X", 1)
    values = math.prod(first.shape) * (len(same) if len(same) > 1 and first.ndim <= 3 else 1)
    pixels = values // max(1, shape.get("S", 1))
    if first.pages and first.pages[0] is not None:
        _check_plausible(path, first.pages[0])
    return Header(int(height), int(width), int(pixels), np.dtype(first.dtype))


def _check_dtype(path: Path, dtype) -> None:
    dtype = np.dtype(dtype) if dtype is not None else None
    if dtype is None or dtype.kind == "c":
        what = "complex-valued" if dtype is not None else "of an unknown type"
        raise ImageReadError(
            f"{path}: the pixels are {what} ({dtype}); expected real numbers: save the "
            "magnitude or the real part as a grey image"
        )
    if dtype.kind not in "biuf":
        raise ImageReadError(f"{path}: pixels of type {dtype}; expected integers or floats")


def _check_plausible(path: Path, page) -> None:
    """Refuse a page whose header points outside the file or claims more than it holds."""
    size = path.stat().st_size
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != len(counts):
        raise ImageReadError(f"{path}: damaged TIFF header (strip/tile tables differ)")
    if any(o + c > size for o, c in zip(offsets, counts, strict=True)):
        raise ImageReadError(
            f"{path}: the TIFF header points past the end of the file ({size} bytes): "
            "the file is truncated or damaged"
        )
    if page.compression == 1:  # uncompressed: every value must be in the file
        expected = math.prod(page.shape) * page.bitspersample // 8  # rows may be padded
        if sum(counts) < expected:
            raise ImageReadError(
                f"{path}: the header claims {page.shape} values but the file holds "
                f"{sum(counts)} bytes of image data: the file is damaged"
            )


def _largest_block(page, dtype) -> int:
    """Decoded bytes of the page's largest stored block (tile or strip)."""
    itemsize = np.dtype(dtype).itemsize
    if page.is_tiled:
        return page.tilewidth * page.tilelength * page.samplesperpixel * itemsize
    rows = min(page.rowsperstrip or page.imagelength, page.imagelength)
    return rows * page.imagewidth * page.samplesperpixel * itemsize


def _setting():
    """``"max_pixels"`` in the settings file; None when it has none, or one that is no
    positive number (the settings module warns, naming the file: the default is used)."""
    from ..settings import setting

    return setting(MAX_PIXELS_SETTING, _is_positive, "a positive number of pixels")


def _is_positive(value) -> bool:
    try:
        _positive(value, MAX_PIXELS_SETTING)
    except ValueError:
        return False
    return True


def _positive(value, source: str) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"{source}={value!r}: expected a positive number of pixels")
    return number


def sample_rows(image, count: int = 64) -> np.ndarray:
    """``count`` rows spread evenly over a lazy (H, W) or (H, W, C) image, read into
    memory as a (count, W[, C]) array: enough to estimate its intensity range."""
    rows = np.unique(np.linspace(0, image.shape[0] - 1, count).astype(int))
    return np.stack([np.asarray(image[int(r)]) for r in rows])
