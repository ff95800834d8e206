"""How the plugin draws its label layers over a picture: the one source of their colours,
opacities and outlines.

A reference mask (a mask file opened over its picture by the reader or the launcher, or
a layer made a mask by Convert to mask) is drawn as outlines: the tissue inside it stays
visible, and the filled prediction over it reads as something else. Every object of it,
whatever its id, is outlined in :data:`REFERENCE_COLOUR`, a yellow that stands out on
red mucosa, grey ultrasound and pink-purple H&E alike (napari's label 1, a dark red,
hardly showed on a colonoscopy frame, tester36 #6); touching objects of different ids
stay apart, as napari outlines each id (the contour runs between them).

The Segment dock's prediction is filled in :data:`PREDICTION_COLOUR` at
:data:`PREDICTION_OPACITY`, light enough to see the surface under it; a second model's
result, kept to compare, takes one of :data:`COMPARISON_COLOURS`. Its instance ids are
filled in shades of its colour, so touching objects stay apart; outlined ("show
outlines only"), every object takes its colour. So each role has one colour, also when
both hold instance ids, as every nuclei reference does (in napari's colour per object,
a reference's outlines and a prediction's were alike, tester37 #3).

A mask file opened as an image (napari's own reader) is drawn as a see-through yellow
fill with its zeros transparent (:func:`mask_image_look`): at opacity 0.5 over the whole
picture it dimmed the H&E grey (tester37 #8).

napari's layer data (what a reader returns) cannot set a Labels layer's outline, so a
reference mask is marked in its metadata (:data:`DISPLAY_KEY`) and outlined as it is
added to a viewer whose layer list :func:`outline_references` watches.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

# Outlines are opaque: a 2-pixel line at 0.5, or at the fill's 0.45, faded into the tissue.
OUTLINE_OPACITY = 1.0
# A reference mask: outlines in yellow.
REFERENCE_COLOUR = "#ffd400"
MASK_OPACITY = OUTLINE_OPACITY
# A mask file opened as an image (napari's reader: a 0/255 picture, or instance ids), until
# it is converted to a mask: its objects filled see-through in the reference yellow, its
# zeros transparent, so that the picture under it shows undimmed.
MASK_IMAGE_OPACITY = 0.5
MASK_IMAGE_COLOURS = "tmunet mask image"  # the name of its colour map
# The prediction: cyan (apart from the yellow reference), filled, the tissue seen through
# (filled, not outlined, by default: over a reference's outlines, a second set of outlines
# close to them was hard to tell apart on a polyp, and on 400 nuclei of an H&E tile).
PREDICTION_COLOUR = "#00e5ff"
PREDICTION_OPACITY = 0.45
# A binary output added beside another model's, to compare them: pink, green, orange
# (apart from the cyan prediction and the yellow reference).
COMPARISON_COLOURS: tuple[str, ...] = ("#ff5fd2", "#8cff3f", "#ff8c00")
PROBABILITY_OPACITY = 0.6  # the probability map, blended additively under the labels
# Image pixels per pixel of outline thickness: 8 on a 4000-pixel side fitted into a canvas
# of 500 to 1000 screen pixels. At most 8: napari draws thicker outlines slowly (8 takes
# 1.3 s on 4000 x 3000 labels, 20 takes 8 s, each time they are redrawn whole).
OUTLINE_SIDE_PER_PIXEL = 500
OUTLINE_MAX = 8
DISPLAY_KEY = "tmunet_display"  # metadata: "reference" for a mask drawn as outlines
BINARY_COLOURS = "tmunet binary"  # the name of the binary outputs' colour map
REFERENCE_COLOURS = "tmunet reference"  # the name of a reference's colour map
ONE_COLOUR = "tmunet one colour"  # the name of an outlined prediction's colour map
SHADES = "tmunet shades"  # the name of a filled prediction's instance colour map
# Lightness steps of a filled prediction's instance shades: a part of white (> 0) or of
# black (< 0) mixed into its colour; touching objects (often consecutive ids) differ.
SHADE_STEPS = (0.0, -0.45, 0.5, -0.25, 0.25)

_WATCHED: weakref.WeakSet = weakref.WeakSet()  # layer lists outline_references watches


def prediction_look(shape: tuple[int, ...], outlined: bool) -> tuple[int, float]:
    """(contour, opacity) of a prediction of labels of ``shape``: filled and see-through,
    or ``outlined`` (the Segment dock's "show outlines only") and opaque."""
    if outlined:
        return outline_width(shape), OUTLINE_OPACITY
    return 0, PREDICTION_OPACITY


def outline_width(shape: tuple[int, ...]) -> int:
    """The outline thickness (napari's ``contour``, in image pixels) of labels of
    ``shape``: 2, and up to :data:`OUTLINE_MAX` on a large image, so that an outline still
    shows when the whole image is fitted to the window (a 4000-pixel side shown in 800
    screen pixels puts 5 image pixels in one screen pixel)."""
    return min(OUTLINE_MAX, max(2, max(shape[-2:]) // OUTLINE_SIDE_PER_PIXEL))


def as_reference(kwargs: dict[str, Any], data: np.ndarray) -> dict[str, Any]:
    """Make the Labels layer data ``kwargs`` of the mask ``data`` a reference mask's:
    opaque, every object (binary 0/1 or instance ids) in :data:`REFERENCE_COLOUR`, marked
    to be outlined once added (:func:`outline_references`). Returns ``kwargs``, updated in
    place."""
    kwargs["opacity"] = MASK_OPACITY
    kwargs["colormap"] = one_colour(REFERENCE_COLOUR, REFERENCE_COLOURS)
    kwargs["metadata"] = {**(kwargs.get("metadata") or {}), DISPLAY_KEY: "reference"}
    return kwargs


def is_reference(layer) -> bool:
    """Whether ``layer`` was made a reference mask (:func:`as_reference`: a mask file
    opened by the reader, the launcher or a sample, or a layer made by Convert to mask),
    whatever its name: the user's mask, never a model's prediction."""
    return (getattr(layer, "metadata", None) or {}).get(DISPLAY_KEY) == "reference"


def outline(layer) -> None:
    """Draw the reference mask ``layer`` (a Labels layer) as outlines."""
    layer.contour = outline_width(layer.data.shape)


def outline_references(viewer) -> None:
    """Outline each reference mask (:func:`as_reference`) added to ``viewer`` from now on;
    once per viewer. A viewer of None (none open) is left alone."""
    layers = getattr(viewer, "layers", None)
    if layers is None or layers in _WATCHED:
        return
    _WATCHED.add(layers)
    layers.events.inserted.connect(_outline_added)


def outline_in_current_viewer() -> None:
    """Have napari's current viewer (the one a reader's or a sample's layers go to: File >
    Open, ``viewer.open``, File > Open Sample) outline the reference masks added to it."""
    try:
        import napari

        outline_references(napari.current_viewer())
    except Exception:  # no viewer (a script reading files): the masks stay filled
        pass


def _outline_added(event) -> None:
    """Outline the layer just added if it is a reference mask."""
    if is_reference(event.value):
        outline(event.value)


def prediction_colours(colour: str, instances: bool, outlined: bool):
    """The colour map of a prediction in ``colour`` (cyan, or a comparison colour): every
    object in ``colour`` when ``outlined`` (napari's contour parts touching objects);
    filled, ``instances`` in :func:`shades` of it (one fill would merge touching
    objects), a binary mask in :func:`binary_colours`."""
    if outlined:
        return one_colour(colour, ONE_COLOUR)
    return shades(colour) if instances else binary_colours(colour)


def ours(colormap) -> bool:
    """Whether a Labels layer's ``colormap`` is one of this module's (not napari's random
    one, which the user's "shuffle colors" button gives: the user's choice is kept)."""
    return str(getattr(colormap, "name", "")).startswith("tmunet")


def one_colour(colour: str, name: str):
    """A Labels colour map drawing every label but the background 0 in ``colour``."""
    return label_colours([_rgba(colour)], name)


def shades(colour: str):
    """A Labels colour map cycling label 1, 2, 3... through :data:`SHADE_STEPS`' shades of
    ``colour`` (label 1 in ``colour`` itself)."""
    rgba = _rgba(colour)
    rows = []
    for step in SHADE_STEPS:
        towards = np.ones(3) if step > 0 else np.zeros(3)
        rows.append([*(rgba[:3] + abs(step) * (towards - rgba[:3])), 1.0])
    return label_colours(rows, SHADES)


def label_colours(rows, name: str):
    """The Labels colour map cycling label 1, 2, 3... through the RGBA ``rows``, named
    ``name`` (:func:`ours` knows this module's by their "tmunet" start); the background 0
    transparent (napari draws it so whatever its row: its own maps' row 0 is grey)."""
    from napari.utils.colormaps import CyclicLabelColormap

    colors = np.array([(0.0, 0.0, 0.0, 0.0), *rows], dtype=float)  # (1 + len(rows), RGBA)
    return CyclicLabelColormap(colors=colors, name=name)


def _rgba(colour: str) -> np.ndarray:
    """``colour`` (a napari colour: "#00e5ff", "cyan") as RGBA, (4,) float."""
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(colour)[0]


def mask_image_look(layer) -> None:
    """Draw the image ``layer``, a mask opened as an image, so that the picture under it
    shows undimmed: a grey one's zeros transparent and every other value in
    :data:`REFERENCE_COLOUR` (its contrast limits 0..1: ids of any value show), at
    :data:`MASK_IMAGE_OPACITY`; an RGB(A) one (a colour map does not apply) added onto
    the picture, its black adding nothing."""
    from napari.utils.colormaps import Colormap

    layer.opacity = MASK_IMAGE_OPACITY
    if layer.rgb:
        layer.blending = "additive"
        return
    colours = [[0.0, 0.0, 0.0, 0.0], _rgba(REFERENCE_COLOUR)]
    layer.colormap = Colormap(colours, name=MASK_IMAGE_COLOURS)
    layer.contrast_limits = (0, 1)


def binary_colours(colour: str = PREDICTION_COLOUR, name: str = BINARY_COLOURS):
    """Label 1 in one bright ``colour``; labels the user paints with napari's "new label"
    (2, 3...) in :func:`instance_colours`' from label 2 on, so a second object drawn on a
    binary layer shows, in a colour of its own."""
    return label_colours([_rgba(colour), *instance_colours().colors[2:]], name)


def instance_colours():
    """napari's default cyclic label colours shifted by one: label 1 takes label 2's colour.

    napari gives label 1 of every Labels layer the same dark red, so a one-object result
    would look like a reference mask of instance ids (label 1) opened beside it.
    """
    from napari.utils.colormaps import label_colormap

    colors = label_colormap(49).colors[1:]  # [0] is the background
    return label_colours(np.roll(colors, -1, axis=0), "custom")  # napari's name: not ours
