"""Images whose channels are not grey or RGB(A) as napari holds them: grey + alpha and CMYK.

napari's own reader keeps a file's pixels as stored: a grey + alpha PNG becomes an
(H, W, 2) array, which napari shows as H frames of W x 2 pixels (it marks only 3 or 4
channels as colour), and a CMYK JPEG or TIFF an (H, W, 4) array of ink amounts, which it
marks as RGBA. :func:`colour_conversion` tells which of these an image is, and
:func:`convert_colours` turns it into what the model takes: grey (alpha ignored) or RGB
(Pillow's conversion, the one ``data.images`` applies to CMYK JPEGs it reads).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .images import LABEL_DTYPES, MIN_SIDE, TIFF_SUFFIXES, channels_are_colour

GREY_ALPHA = "grey+alpha"
CMYK = "cmyk"
# What the Segment summary says of each conversion.
CONVERSION_NOTES = {
    GREY_ALPHA: "grey + alpha image: segmented as grey, alpha ignored",
    CMYK: "CMYK image: converted to RGB",
}
_RGB = 2  # TIFF photometric interpretation of RGB pixels
_SEPARATED = 5  # TIFF photometric interpretation of ink (CMYK) pixels
_NOT_CMYK_INKS = 2  # TIFF InkSet: inks other than cyan, magenta, yellow and black


def stored_colour_space(path: str | os.PathLike | None) -> str | None:
    """:data:`CMYK` when the file at ``path`` stores CMYK pixels, else None.

    Reads the header only. Never raises (no file, or an unreadable one: None).
    """
    try:
        if not path or not Path(path).is_file():  # a FIFO would block the open
            return None
        if Path(path).suffix.lower() in TIFF_SUFFIXES:
            return _tiff_colour_space(Path(path))
        from PIL import Image

        with Image.open(path) as image:
            return CMYK if image.mode == "CMYK" else None
    except Exception:  # not an image this can read: nothing to convert
        return None


def napari_keeps_as_stored(path: str | os.PathLike) -> bool:
    """Whether napari's own reader (PNG, JPEG, BMP) gives the file at ``path`` in colours no
    model takes and napari draws wrongly: CMYK inks (YCCK JPEGs too: Pillow decodes them to
    CMYK) as RGBA, which looks dark or black, or grey + alpha as (H, W, 2), drawn as H
    frames of W x 2 pixels. ``data.images.read_image`` converts both (RGB, grey).

    Reads the header only. Never raises (False)."""
    try:
        if Path(path).suffix.lower() in TIFF_SUFFIXES or not Path(path).is_file():
            return False  # TIFFs: this plugin's reader opens them
        from PIL import Image

        with Image.open(path) as image:
            return image.mode in ("CMYK", "LA", "La")
    except Exception:  # not an image this can read: napari's reader says why
        return False


def stored_channel_first_colour(path: str | os.PathLike | None, frames: int) -> bool | None:
    """Whether the file at ``path`` is a colour TIFF of ``frames`` samples per pixel (RGB,
    or RGB + alpha), which napari's own reader gives channel-first, as ``frames`` grey
    frames, when its samples are stored apart (planar), or an ImageJ image of ``frames``
    channels and no other axis (axes CYX, e.g. a composite) that the TM-UNet reader
    reads as colour (``images.channels_are_colour``: 3 channels of 8 bits; others are
    separate channels, e.g. fluorescence); False for 32/64-bit integer samples
    (``images.LABEL_DTYPES``: a label stack, which napari's writer saves marked RGB);
    None when that cannot be
    checked (no path, a folder, not a TIFF, an unreadable file).

    Reads tags and the ImageJ description only, never pixels. Never raises.
    """
    try:
        if not path or not Path(path).is_file() or Path(path).suffix.lower() not in TIFF_SUFFIXES:
            return None
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if page.dtype in LABEL_DTYPES:  # label ids in frames, whatever the tags say
                return False
            if page.photometric == _RGB and page.samplesperpixel == frames:
                return True
            colour = channels_are_colour(frames, page.dtype)
            return colour and tif.is_imagej and _imagej_channels(tif) == frames
    except Exception:  # not a TIFF this can read: not known
        return None


def _imagej_channels(tif) -> int:
    """The channels of an open ImageJ TIFF whose only axes besides Y and X (of more than
    one step) are channels, as its description says (``axes`` CYX); else 0."""
    series = tif.series[0]
    axes = "".join(a for a, n in zip(series.axes, series.shape, strict=True) if n > 1)
    channels = int((tif.imagej_metadata or {}).get("channels", 1))
    return channels if axes.startswith("C") and axes[1:] == "YX" else 0


def _tiff_colour_space(path: Path) -> str | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        inks = page.tags.get("InkSet")
        if page.photometric != _SEPARATED or (inks is not None and inks.value == _NOT_CMYK_INKS):
            return None
        colours = page.samplesperpixel - len(page.extrasamples or ())
        return CMYK if colours == 4 else None


def colour_conversion(shape: tuple[int, ...], rgb: bool, stored: str | None = None) -> str:
    """The conversion an image of ``shape`` needs before the model sees it.

    Args:
        shape: the image's array shape.
        rgb: whether its last axis holds colours (napari's ``layer.rgb``).
        stored: the colour space its file stores (:func:`stored_colour_space`).

    Returns:
        :data:`CMYK` for the four channels of a CMYK file marked as colour (napari's
        RGBA); :data:`GREY_ALPHA` for an (H, W, 2) image not marked as colour (as H frames
        of W x 2 pixels, which no model can segment, it can only be grey + alpha); "" for
        none.
    """
    if rgb and len(shape) in (3, 4) and shape[-1] == 4 and stored == CMYK:
        return CMYK
    if not rgb and len(shape) == 3 and shape[-1] == 2 and min(shape[:2]) >= MIN_SIDE:
        return GREY_ALPHA
    return ""


def convert_colours(image, conversion: str) -> np.ndarray:
    """``image`` as the model takes it for ``conversion`` (:func:`colour_conversion`):
    (..., H, W) grey for grey + alpha, (..., H, W, 3) RGB for CMYK; unchanged for ""."""
    if conversion == GREY_ALPHA:
        return np.asarray(image)[..., 0]  # (H, W): the grey channel, alpha ignored
    if conversion == CMYK:
        return cmyk_to_rgb(np.asarray(image))
    return image


def conversion_problem(image, conversion: str) -> str:
    """Why ``image`` cannot be converted in memory for ``conversion``, and what to do; ""
    when it can.

    An image over the pixel budget is read in parts (a lazy array): converting it would
    read it whole. CMYK is converted for unsigned integer pixels only (ink amounts out of
    their type's maximum).
    """
    if not conversion:
        return ""
    kind, target = ("grey + alpha", "grey") if conversion == GREY_ALPHA else ("CMYK", "RGB")
    if type(image) is not np.ndarray:
        return (
            f"a {kind} image over the pixel budget is read in parts and cannot be "
            f"converted whole: save it as {target} and open it again"
        )
    if conversion == CMYK and image.dtype.kind != "u":
        return (
            f"its CMYK pixels are {image.dtype}, not unsigned integer ink amounts: save it "
            "as RGB and open it again"
        )
    return ""


def cmyk_to_rgb(image: np.ndarray) -> np.ndarray:
    """(..., 4) CMYK ink amounts -> (..., 3) RGB of the same integer dtype.

    The conversion Pillow applies (``Image.convert("RGB")``): with ``m`` the dtype's
    maximum, R = (m - C)(m - K) / m, and so G from M and B from Y, rounded.
    """
    top = float(np.iinfo(image.dtype).max)
    inks = image.astype(np.float32)  # (..., 4)
    light = (top - inks[..., :3]) * ((top - inks[..., 3:]) / top)  # (..., 3)
    return np.rint(np.clip(light, 0, top)).astype(image.dtype)
