"""Results and references that can be seen, and the Segment dock's run texts at 1366 x 768
(tester36 #6, #7), on real frames: Kvasir-SEG, CVC-ClinicDB, MoNuSeg, BUSI.

#6: a reference mask was filled in napari's dark red at 0.5 (hardly seen on red mucosa)
and the prediction filled cyan at 0.7 (hiding the polyp's surface). A reference is now
outlined, opaque, in yellow (instance ids too, tester37 #3), however it opens; the
prediction is filled see-through, opaque outlines with "show outlines only".

#7: the summary, status and disclaimer sat in the value column (about 210 px of a 355-px
dock): a 25-letter Kvasir name was cut at the edge, a lesion-free scan's "... hidden"
clause below the fold, the disclaimer cut. They span the dock and wrap, a long name
breaks, and a one-image run's summary, status and disclaimer show whole.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from _paths import DATASETS, EXTRA, dataset_subset
from _view import in_view
from napari.layers import Labels

from napari_tmunet._layer_style import (
    OUTLINE_OPACITY,
    PREDICTION_OPACITY,
    REFERENCE_COLOUR,
    outline_width,
)

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"
CLINIC = DATASETS / "CVC-ClinicDB"
MONUSEG = DATASETS / "MoNuSeg"
TILE = "TCGA-21-5784-01Z-00-DX1"  # 1000 x 1000 H&E, about 500 nuclei
KVASIR = EXTRA / "Kvasir-SEG" / "images"
KVASIR_FRAME = "cju1hp9i2xu8e0988u2dazk7m"  # 25 letters: its "m:" was cut (tester36 #7)
LESION_FREE = EXTRA / "BUSI" / "images" / "normal (1).png"  # objects hidden by confidence


def _yellow() -> np.ndarray:
    return np.array([int(REFERENCE_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def _is_reference(layer: Labels) -> bool:
    """Whether ``layer`` is drawn as a reference mask: opaque outlines, label 1 in the
    reference yellow."""
    outlined = layer.contour == outline_width(layer.data.shape) >= 2
    coloured = np.allclose(layer.get_color(1)[:3], _yellow(), atol=0.01)
    return outlined and layer.opacity == OUTLINE_OPACITY and coloured


def test_the_reference_yellow_stands_out_from_tissue():
    """Not red, pink or brown (mucosa, H&E), nor grey (ultrasound): a bright colour whose
    green is high and blue low, unlike napari's dark red label 1 (0.47, 0.15, 0.02)."""
    red, green, blue = _yellow()
    assert green > 0.7 and red > 0.9 and blue < 0.2


@pytest.fixture
def clinic(tmp_path):
    """A dataset folder of CVC-ClinicDB pairs 1 and 2 (masks/NAME.tif). Tests take it before
    make_napari_viewer: napari's viewer fixture fails at teardown after a skip in setup."""
    if not (CLINIC / "images").is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    return dataset_subset(CLINIC, tmp_path / "clinic", ["1", "2"])


def test_a_dataset_folder_opens_its_masks_as_yellow_outlines(clinic, make_napari_viewer):
    """File > Open of a dataset folder with the TM-UNet reader: each mask over its
    picture is outlined in yellow, opaque; its labels are the mask's (0/1) as before."""
    viewer = make_napari_viewer()
    viewer.open(str(clinic), plugin=PLUGIN)
    masks = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert [mask.name for mask in masks] == ["1 mask", "2 mask"]
    for mask in masks:
        assert _is_reference(mask), (mask.name, mask.contour, mask.opacity, mask.get_color(1))
        assert set(np.unique(mask.data)) == {0, 1}


def test_the_launcher_and_convert_to_mask_outline_the_mask(clinic, make_napari_viewer):
    """``napari-tmunet IMAGE MASK`` and Layers > Convert to mask (a mask PNG read by
    napari's own reader) draw the mask as the reader does."""
    from _launcher import open_as_launcher

    from napari_tmunet._convert_mask import mask_layer

    viewer = make_napari_viewer()
    image, mask = clinic / "images" / "1.png", clinic / "masks" / "1.tif"
    opened = open_as_launcher(viewer, [str(image), str(mask)])
    assert opened == [("1", "image"), ("1 mask", "labels")]
    assert _is_reference(viewer.layers["1 mask"])

    viewer.layers.clear()
    (picture,) = viewer.open(str(CLINIC / "masks" / "2.tif"), plugin="napari")
    converted = mask_layer(picture)
    assert _is_reference(converted) and converted.data.max() == 1


def test_instance_ids_are_outlined_in_the_reference_yellow(make_napari_viewer, tmp_path):
    """A mask of instance ids saved by the plugin (the nuclei of a MoNuSeg tile, labelled)
    opens beside its picture outlined, every nucleus in the reference yellow whatever its
    id (in napari's colour per object it looked like the prediction's, tester37 #3)."""
    from scipy import ndimage

    from napari_tmunet.data.images import read_mask, write_mask

    if not (MONUSEG / "images" / f"{TILE}.tif").is_file():
        pytest.skip(f"no MoNuSeg at {MONUSEG}")
    root = tmp_path / "nuclei"
    (root / "images").mkdir(parents=True)
    shutil.copy(MONUSEG / "images" / f"{TILE}.tif", root / "images")
    ids, count = ndimage.label(read_mask(MONUSEG / "masks" / f"{TILE}.png")[0])
    assert count > 100
    write_mask(root / "masks" / f"{TILE}.tif", ids)
    viewer = make_napari_viewer()
    viewer.open(str(root), plugin=PLUGIN)
    mask = viewer.layers[f"{TILE} mask"]
    assert mask.data.max() == count
    assert _is_reference(mask), (mask.contour, mask.opacity)
    for label in (1, 2, count):
        assert np.allclose(mask.get_color(label)[:3], _yellow(), atol=0.01)


@pytest.fixture
def window(make_napari_viewer, qtbot):
    """A shown viewer of the tester's screen size with the Segment dock, settled."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    widget = getattr(widget, "__wrapped__", widget)
    qtbot.waitUntil(lambda: viewer.window._qt_window.width() == 1366)
    qtbot.wait(100)
    return viewer, widget


def _segment(qtbot, viewer, widget, path) -> Labels:
    """Open ``path`` with napari's reader, hide the others, Segment it on the threaded path
    and let the dock's scroll settle; its labels."""
    for layer in viewer.layers:
        layer.visible = False
    (image,) = viewer.open(str(path), plugin="napari")
    widget.image.value = image
    widget.segment_button.native.click()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)  # a busy CPU
    assert widget.status.value == "done", widget.status.value
    qtbot.wait(800)  # the scroll follows Qt's layout for half a second
    return widget.last_layer


def _spans_the_dock(widget, label) -> bool:
    """Whether the text ``label`` starts at the left edge of the dock's rows (where the
    Image row's name starts) and takes nine tenths of the view's width or more."""
    from qtpy.QtCore import QPoint

    body = widget.body.native
    left = label.native.mapTo(body, QPoint(0, 0)).x()
    row_left = widget.image.native.parentWidget().mapTo(body, QPoint(0, 0)).x()
    width = widget.body.scroll_area.viewport().width()
    return left <= row_left + 2 and label.native.width() >= 0.9 * width


def _widest_word(label) -> int:
    """The width (px) of the longest run of the label's shown text that Qt cannot break."""
    native = label.native
    words = re.split(r"[\s\u200b]+", native.text())
    return max(native.fontMetrics().horizontalAdvance(word) for word in words)


def _shows_whole(widget, label) -> bool:
    """Whether all the lines of ``label`` are in the dock's view, unscrolled: no scroll
    bar in the summary's box, the label as tall as its text, all of it in view."""
    native = label.native
    box = widget.summary.native.parentWidget().parentWidget().parentWidget()
    tall = native.height() >= native.heightForWidth(native.width())
    return tall and not box.verticalScrollBar().isVisible() and in_view(widget.body, label)


@pytest.mark.skipif(not KVASIR.is_dir(), reason="extra-data Kvasir-SEG not present")
def test_a_kvasir_result_is_see_through_and_its_texts_span_the_dock(window, qtbot, tmp_path):
    """1366 x 768: a Kvasir frame segmented. The prediction is filled see-through (and
    opaque outlines with "show outlines only"); the summary, status and disclaimer span
    the dock, wrap, show whole, the 25-letter name whole; a 62-letter name breaks."""
    viewer, widget = window
    labels = _segment(qtbot, viewer, widget, KVASIR / f"{KVASIR_FRAME}.jpg")
    assert labels.opacity == PREDICTION_OPACITY < 0.5 and labels.contour == 0
    widget.outlines.value = True
    assert labels.opacity == OUTLINE_OPACITY and labels.contour >= 2
    widget.outlines.value = False
    assert labels.opacity == PREDICTION_OPACITY and labels.contour == 0

    assert widget.summary.value.startswith(f"{KVASIR_FRAME}: 1 object")
    assert _spans_the_dock(widget, widget.model_reason), widget.model_reason.native.width()
    for label in (widget.summary, widget.status, widget.disclaimer):
        assert label.native.wordWrap()
        assert _spans_the_dock(widget, label), (label.value, label.native.width())
        assert _widest_word(label) <= label.native.width(), label.value
        assert _shows_whole(widget, label), label.value

    long = tmp_path / f"polyp_frame_from_the_second_colonoscopy_session_{KVASIR_FRAME}.jpg"
    shutil.copy(KVASIR / f"{KVASIR_FRAME}.jpg", long)
    _segment(qtbot, viewer, widget, long)
    summary = widget.summary
    assert summary.value.startswith(f"{long.stem}: 1 object")  # the value as written
    assert (
        _widest_word(summary)
        <= summary.native.width()
        < summary.native.fontMetrics().horizontalAdvance(long.stem)
    )
    assert _shows_whole(widget, summary), summary.value


@pytest.mark.skipif(not LESION_FREE.is_file(), reason="extra-data BUSI not present")
def test_a_lesion_free_scan_shows_its_hidden_objects_clause(window, qtbot):
    """1366 x 768: BUSI normal (1) segmented with the ultrasound model. The clause a
    clinician needs ("16 objects ... below confidence 0.81 hidden") was below the fold of
    the summary's box, and the disclaimer cut: the summary shows whole, unscrolled, with
    the status and the whole disclaimer under it."""
    viewer, widget = window
    _segment(qtbot, viewer, widget, LESION_FREE)
    assert "0 objects shown" in widget.summary.value
    assert re.search(
        r"\d+ objects \(\d+ px\) below confidence 0\.\d+ hidden$", widget.summary.value
    )
    for label in (widget.summary, widget.status, widget.disclaimer):
        assert _spans_the_dock(widget, label), (label.value, label.native.width())
        assert _shows_whole(widget, label), label.value
