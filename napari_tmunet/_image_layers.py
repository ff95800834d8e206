"""What a napari image layer holds, read without Qt: the file it came from, the colour
conversion the model needs, a small view of it, and whether it is a mask rather than a
picture (the one rule of the Segment, Metrics and Fine-tune docks)."""

from __future__ import annotations

import os

import numpy as np

from . import registry
from ._reader import PICTURE_KEY, picture_metadata
from ._widget_common import full_data, is_probability_map
from .data.colour_spaces import colour_conversion, convert_colours, stored_colour_space
from .data.images import looks_like_mask, orientation_applied, saved_mask_kind
from .data.mask_names import mask_picture

MASK_CHECK_MAX_VALUES = 20_000_000  # larger layers are judged mask or picture by a thumbnail


def is_mask_image(layer) -> bool:
    """Whether the image layer ``layer`` is a mask, not a picture: a TIFF mask the TM-UNet
    writer saved (:func:`saved_by_tmunet`), or data that looks like a mask
    (:func:`looks_like_mask`; a layer over :data:`MASK_CHECK_MAX_VALUES` values, lazy or
    multiscale, by its thumbnail); never a probability map of the Segment dock. The one
    rule of the Segment dock (its hint, Segment all), the Metrics dock's references and
    the Fine-tune pairs."""
    if is_probability_map(layer):
        return False
    data = full_data(layer)
    if not isinstance(data, np.ndarray) or data.size > MASK_CHECK_MAX_VALUES:
        data = layer_thumbnail(layer)
    return saved_by_tmunet(layer) or looks_like_mask(data)


def saved_by_tmunet(layer) -> bool:
    """Whether ``layer`` was read from a TIFF mask the TM-UNet writer saved (its description
    carries the mark, :func:`saved_mask_kind`): the file's header only, never its pixels."""
    path = layer_source_path(layer)
    return bool(path and os.path.isfile(path) and saved_mask_kind(path))


def layer_source_path(layer) -> str | None:
    """The file ``layer`` was read from: this plugin's reader's metadata, else napari's
    source. The metadata come first: napari's source is the path it was given, the folder
    for every layer of a folder this plugin opened."""
    return (layer.metadata or {}).get("path") or getattr(layer.source, "path", None)


def owning_picture(layer) -> str:
    """The picture ``layer`` names as the one it belongs to, or "": for a layer made from,
    or laid over, a channel of a file of channels (``_reader.picture_metadata``), and for
    such a channel itself, the file's picture (``_reader.layer_picture``): the channels of
    one file share its masks; else its metadata's "image" (a Segment output's image, a
    dataset folder's mask's picture), else the picture its file is the mask of by its
    name (``data.mask_names.mask_picture``: ``masks/20.tif``, ``20_mask.png``; napari's
    source or the reader's metadata). The one rule by which the Metrics dock pairs a
    mask with its picture's prediction, and the Segment dock shows a mask (and a file's
    other channels) with its picture."""
    metadata = layer.metadata or {}
    own = picture_metadata(layer.name, metadata).get(PICTURE_KEY)  # a channel: its file's
    named = str(metadata.get(PICTURE_KEY) or metadata.get("image") or own or "")
    if named:
        return named
    path = layer_source_path(layer)
    return (mask_picture(path) or "") if path else ""


def orientation_not_applied(layer) -> str:
    """How the JPEG ``layer`` was read from is to be turned by its EXIF orientation
    (``data.images.orientation_applied``'s words), when the layer shows its pixels as
    stored (napari's own reader); "" for a layer this plugin's reader turned (its
    metadata say so), or one not from such a file. Reads the file's header only."""
    if (layer.metadata or {}).get("orientation"):
        return ""
    path = layer_source_path(layer)
    return orientation_applied(path) if path and os.path.isfile(path) else ""


def layer_colour_conversion(layer) -> str:
    """How ``layer``'s colours must be converted for the model: a grey + alpha layer, or a
    CMYK file read as it is stored (:func:`data.colour_spaces.colour_conversion`); ""."""
    shape = np.shape(full_data(layer))
    four = layer.rgb and shape[-1:] == (4,)
    stored = stored_colour_space(layer_source_path(layer)) if four else None
    return colour_conversion(shape, layer.rgb, stored)


def layer_thumbnail(layer) -> np.ndarray:
    """A small view of a layer's first frame, enough to guess its modality; in the colours
    the model is given (grey for grey + alpha, RGB for CMYK)."""
    data = layer.data[-1] if layer.multiscale else layer.data
    conversion = layer_colour_conversion(layer)
    spatial = 3 if layer.rgb or conversion else 2  # grey + alpha: (H, W, 2)
    index = (0,) * (data.ndim - spatial)
    frame = data[index]
    step = max(1, max(frame.shape[:2]) // 256)
    return convert_colours(np.asarray(frame[::step, ::step]), conversion)


def layer_modality(layer) -> str:
    """The modality guessed from an image layer's colours (:func:`registry.guess_modality`
    of its :func:`layer_thumbnail`)."""
    return registry.guess_modality(layer_thumbnail(layer), rgb=layer.rgb)
