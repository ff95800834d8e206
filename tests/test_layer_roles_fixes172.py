"""How a pathologist tells the layers apart on a CPM-15 H&E tile (tester37 #3, #8), in a
shown viewer with the Segment dock on the threaded path and the shipped nuclei model.

#3: the instance reference (CPM-15's uint16 ids) and the Segment result were both drawn in
napari's colour per object: which outline was the model's could not be seen. Each role now
has one colour whatever the ids (reference yellow, prediction cyan), and touching objects
stay apart (the outline runs between two ids; a fill takes shades of cyan).

#8: the mask PNG opened with File > Open (napari's reader: a grey image of ids) was drawn
at opacity 0.5 over the whole tile, dimming the H&E. Its zeros are now transparent.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from _launcher import open_as_launcher
from _paths import EXTRA, require
from PIL import Image as Picture
from scipy import ndimage

from napari_tmunet._layer_style import PREDICTION_COLOUR, REFERENCE_COLOUR, SHADE_STEPS

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"
CPM = EXTRA / "CPM15"
TILE = "image03"  # a test tile of the shipped nuclei model (not trained on)
CROP = np.s_[100:356, 200:456]  # 256 x 256: dozens of nuclei, some touching
BUSY_CPU_MS = 300_000  # the most a run may take on a shared, busy CPU (seconds when idle)


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])


@pytest.fixture
def crop(tmp_path):
    """A crop of the CPM-15 tile and its mask of instance ids, as files of a picture and
    its mask (masks/NAME.png beside images/NAME.png)."""
    require(CPM / "images" / f"{TILE}.png", "TM-UNet nuclei")
    for part in ("images", "masks"):
        (tmp_path / part).mkdir()
        with Picture.open(CPM / part / f"{TILE}.png") as picture:
            Picture.fromarray(np.asarray(picture)[CROP]).save(tmp_path / part / f"{TILE}.png")
    return tmp_path


@pytest.fixture
def window(make_napari_viewer, qtbot):
    """A shown viewer of the tester's screen size with the Segment dock."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    return viewer, getattr(widget, "__wrapped__", widget)


def _segment(qtbot, widget, image):
    widget.image.value = image
    widget.model.value = "TM-UNet nuclei"
    widget.segment_button.native.click()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=BUSY_CPU_MS)
    assert widget.status.value == "done", widget.status.value
    return widget.last_layer


def _touching_ids(ids: np.ndarray) -> tuple[int, int]:
    """Two different ids side by side (horizontally) in the label image ``ids``."""
    left, right = ids[:, :-1], ids[:, 1:]
    ys, xs = np.nonzero((left > 0) & (right > 0) & (left != right))
    assert len(ys), "no touching objects in the crop"
    return int(left[ys[0], xs[0]]), int(right[ys[0], xs[0]])


def _canvas(viewer, qtbot) -> np.ndarray:
    qtbot.wait(300)
    return viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)


def _figure(viewer, qtbot) -> np.ndarray:
    """The layers drawn at their data's resolution, one pixel per image pixel (RGB)."""
    qtbot.wait(300)
    return viewer.export_figure(scale_factor=1, flash=False)[..., :3].astype(int)


def _share(canvas: np.ndarray, colour: str) -> float:
    """The share of the canvas drawn in ``colour`` (opaque)."""
    return float((np.abs(canvas - _rgb(colour) * 255).sum(-1) < 40).mean())


def test_the_reference_and_the_prediction_each_take_one_colour(crop, window, qtbot):
    """``napari-tmunet IMAGE MASK`` on the CPM-15 crop, Segment, "show outlines only": every
    reference nucleus is yellow, every predicted one cyan, whatever its id, and both
    colours are on the canvas; touching nuclei keep their outline between them. Filled,
    the prediction's ids take shades of cyan, touching ids (consecutive) differ."""
    viewer, widget = window
    picture, mask = crop / "images" / f"{TILE}.png", crop / "masks" / f"{TILE}.png"
    opened = open_as_launcher(viewer, [str(picture), str(mask)])
    assert opened == [(TILE, "image"), (f"{TILE} mask", "labels")]
    reference = viewer.layers[f"{TILE} mask"]
    labels = _segment(qtbot, widget, viewer.layers[TILE])
    assert labels.data.max() > 10 and reference.data.max() > 10  # instance ids, both

    widget.outlines.value = True
    yellow, cyan = _rgb(REFERENCE_COLOUR), _rgb(PREDICTION_COLOUR)
    for layer, colour in ((reference, yellow), (labels, cyan)):
        assert layer.contour >= 2
        for label in np.unique(layer.data)[1:]:
            assert np.allclose(layer.get_color(label)[:3], colour, atol=0.01), (layer, label)
    first, second = _touching_ids(np.asarray(reference.data))
    outline = np.asarray(reference._slice.image.view)  # what napari draws: the contour
    ys, xs = np.nonzero((reference.data[:, :-1] == first) & (reference.data[:, 1:] == second))
    assert (outline[ys, xs] > 0).all() and (outline[ys, xs + 1] > 0).all()  # between them
    canvas = _canvas(viewer, qtbot)
    assert _share(canvas, REFERENCE_COLOUR) > 0.005 and _share(canvas, PREDICTION_COLOUR) > 0.005

    widget.outlines.value = False
    assert labels.contour == 0
    shades = [labels.get_color(label)[:3] for label in range(1, len(SHADE_STEPS) + 1)]
    assert np.allclose(shades[0], cyan, atol=0.01)
    for shade in shades:  # cyan's hue: blue and green above red, green about blue
        assert shade[1] > shade[0] + 0.2 and abs(shade[1] - shade[2]) < 0.15, shade
    assert all(not np.allclose(a, b, atol=0.05) for a, b in pairwise(shades))


def test_a_mask_png_opened_as_an_image_does_not_dim_the_tile(crop, window, qtbot):
    """The CPM-15 mask PNG opened with File > Open over its tile (napari's reader: a grey
    image of ids 0..N): where it is 0 the canvas is the tile as it is, undimmed; its
    nuclei, of every id, show in yellow over the H&E."""
    viewer, _widget = window
    (tile,) = viewer.open(str(crop / "images" / f"{TILE}.png"), plugin="napari")
    (mask,) = viewer.open(str(crop / "masks" / f"{TILE}.png"), plugin="napari")
    assert type(mask).__name__ == "Image" and mask.data.max() > 10 and tile.visible
    over = _figure(viewer, qtbot)
    mask.visible = False
    alone = _figure(viewer, qtbot)  # the tile as it is

    ids = np.asarray(mask.data)
    assert over.shape[:2] == alone.shape[:2] == ids.shape, over.shape
    near = ndimage.maximum_filter(ids, size=5) > 0  # off the objects' edges
    inside = ndimage.minimum_filter(ids, size=5) > 0
    change = np.abs(over - alone).max(-1)  # (H, W)
    assert near.mean() < 0.7 and inside.sum() > 1000
    assert change[~near].max() <= 3  # the tissue undimmed
    shown = ndimage.maximum(change > 20, ids, np.unique(ids[inside]))
    assert all(shown)  # every nucleus (its inside) tinted, whatever its id: 1 of 131 too
