"""Convert to mask keeps the mask the Reference in Metrics (tester39 #1): a CVC-ClinicDB
frame segmented, the Metrics dock open, its mask file opened (an Image layer "101 [1]",
which Metrics offers as the reference) and converted as the reader's hint says. The new
Labels layer, named "101 [1]" like a prediction would be, was taken for one: Prediction
and Reference swapped and Compute gave the model's recall as its precision.

A layer Convert to mask made is a reference (the user's mask), never a prediction, and
the dock keeps the boxes the user chose across the conversion; Fine-tune pairs it with
its picture.
"""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS, require
from _view import open_dock

from napari_tmunet.data.images import read_mask

pytestmark = pytest.mark.gui

CLINIC = DATASETS / "CVC-ClinicDB"
FRAME = "101"
COMMAND = "napari-tmunet.convert_to_mask"
BUSY_CPU_MS = 300_000  # the most a Segment run may take on a shared, busy CPU


def _convert(viewer, layer) -> None:
    """Select ``layer`` and run Layers > Layer Type > Convert to mask (TM-UNet) as its menu
    item does (app-model, arguments injected)."""
    from napari._app_model import get_app_model

    viewer.layers.selection.active = layer
    get_app_model().commands.execute_command(COMMAND).result()


def _segment(qtbot, viewer, path):
    """The Segment dock's output for the picture at ``path`` (napari's reader), by its
    button, on the threaded path."""
    segment = open_dock(viewer, "Segment")
    (picture,) = viewer.open(str(path), plugin="napari")
    segment.image.value = picture
    segment.segment_button.native.click()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=BUSY_CPU_MS)
    assert segment.status.value == "done", segment.status.value
    return picture, segment.last_layer


def _compute(qtbot, metrics) -> dict:
    """Compute's mean row, by its button, on the threaded path."""
    metrics.compute_button.native.click()
    assert metrics._worker is not None
    qtbot.waitUntil(lambda: bool(metrics.results) and metrics._worker is None, timeout=60_000)
    return metrics.results[-1]


@pytest.mark.parametrize("reader", ["napari", "napari-tmunet"])
def test_the_converted_mask_stays_the_reference(make_napari_viewer, qtbot, reader):
    """Metrics shows the model's output as Prediction and the converted mask as Reference,
    before and after the conversion; Compute's precision is the share of the predicted
    pixels in the mask file's mask (not its recall); Fine-tune pairs the picture with the
    converted mask."""
    mask_path = CLINIC / "masks" / f"{FRAME}.tif"
    require(mask_path, "TM-UNet colonoscopy")
    from napari.layers import Image, Labels

    viewer = make_napari_viewer(show=True)
    picture, prediction = _segment(qtbot, viewer, CLINIC / "images" / f"{FRAME}.png")
    metrics = open_dock(viewer, "Metrics")
    (image,) = viewer.open(str(mask_path), plugin=reader)  # File > Open of the mask file
    assert isinstance(image, Image)  # the hint says: convert it
    assert (metrics.prediction.value, metrics.reference.value) == (prediction, image)

    _convert(viewer, image)
    converted = viewer.layers[image.name]
    assert isinstance(converted, Labels) and image not in viewer.layers
    assert metrics.prediction.value is prediction
    assert metrics.reference.value is converted

    truth, _ = read_mask(mask_path)
    predicted = np.asarray(prediction.data) > 0
    both = np.count_nonzero(predicted & truth)
    row = _compute(qtbot, metrics)
    assert (row["prediction"], row["reference"]) == (prediction.name, converted.name)
    assert row["precision"] == pytest.approx(both / np.count_nonzero(predicted))
    assert row["recall"] == pytest.approx(both / np.count_nonzero(truth))
    assert row["precision"] != pytest.approx(row["recall"], abs=1e-3)  # they would swap

    # selecting the layers keeps the pair (the converted one is a reference by its making)
    for layer in (prediction, converted, prediction):
        viewer.layers.selection.active = layer
        assert (metrics.prediction.value, metrics.reference.value) == (prediction, converted)

    tune = open_dock(viewer, "Fine-tune")
    assert tune.rows[0].image.value is picture
    assert tune.rows[0].mask.value is converted


def test_the_users_boxes_stay_across_the_conversion(make_napari_viewer, qtbot):
    """Two annotators' masks compared: the user chose the mask image (napari's reader) as
    Prediction and the reader's Labels mask as Reference; converting the image keeps it
    the Prediction (in its converted form), and Compute scores it so."""
    mask_path = CLINIC / "masks" / f"{FRAME}.tif"
    require(mask_path)
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    metrics = open_dock(viewer, "Metrics")
    truth, _ = read_mask(mask_path)  # the other annotator's: the mask shifted by 20 px
    reference = viewer.add_labels(np.roll(truth, 20, axis=1).astype(np.uint8), name="B")
    (image,) = viewer.open(str(mask_path), plugin="napari")
    assert isinstance(image, Image)
    metrics.prediction.value = image  # the user's choices, in the boxes
    metrics.reference.value = reference
    assert (metrics.prediction.value, metrics.reference.value) == (image, reference)

    _convert(viewer, image)
    converted = viewer.layers[image.name]
    assert isinstance(converted, Labels)
    assert (metrics.prediction.value, metrics.reference.value) == (converted, reference)
    row = _compute(qtbot, metrics)
    assert (row["prediction"], row["reference"]) == (converted.name, reference.name)
    assert row["dice"] < 0.95  # the two masks, not one with itself


def test_two_masks_converted_at_once_keep_their_boxes(make_napari_viewer, qtbot):
    """Both of the user's boxes hold mask images (two annotators', napari's reader);
    converting both at once keeps each in its box."""
    mask_path = CLINIC / "masks" / f"{FRAME}.tif"
    require(mask_path)
    viewer = make_napari_viewer()
    metrics = open_dock(viewer, "Metrics")
    (first,) = viewer.open(str(mask_path), plugin="napari")
    (second,) = viewer.open(str(mask_path), plugin="napari")
    second.data = np.roll(np.asarray(second.data), 20, axis=1)  # the other annotator's
    metrics.prediction.value, metrics.reference.value = second, first  # the user's choice
    names = second.name, first.name
    viewer.layers.selection = {first, second}
    from napari._app_model import get_app_model

    get_app_model().commands.execute_command(COMMAND).result()
    chosen = metrics.prediction.value, metrics.reference.value
    assert [layer.name for layer in chosen] == list(names)
    assert all(layer in viewer.layers and layer not in (first, second) for layer in chosen)
    row = _compute(qtbot, metrics)
    assert (row["prediction"], row["reference"]) == names and row["dice"] < 0.95
