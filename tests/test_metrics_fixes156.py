"""The Metrics dock's tables fit the dock at 1366 x 768 (fix-156): the per-slice table
(slice, Dice, HD, HD95, IoU, precision, recall, F1) was 565 px wide in a 352 px view with
Segment, Metrics and Fine-tune open, "precision" cut and a sideways scroll bar; every
metric is still shown, under a short header with its full name as tooltip (but the pixel
F1, equal to a slice's Dice: in the CSV only since fix-171, beside the objects' scores it
read as a detection F1)."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS
from _view import column_keys, columns_fit, open_dock

from napari_tmunet.data.images import read_mask

CVC = DATASETS / "CVC-ClinicDB"
SCORES = ("dice", "hd_px", "hd95_px", "iou", "precision", "recall")

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not CVC.is_dir(), reason=f"no CVC-ClinicDB at {DATASETS}"),
]


def window_with(make_napari_viewer, qtbot, docks):
    """A 1366 x 768 napari window with the plugin's ``docks`` open, stacked on the right as
    napari places them; the Metrics dock's widget."""
    from qtpy.QtGui import QGuiApplication

    if QGuiApplication.platformName() != "xcb":  # offscreen Qt draws in a larger font
        pytest.skip("needs the app on a screen (xcb)")
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    widgets = {name: open_dock(viewer, name) for name in docks}
    metrics = widgets["Metrics"]
    qtbot.waitUntil(lambda: window.width() == 1366 and metrics.native.isVisible())
    return viewer, metrics


def compute(qtbot, metrics, prediction, reference) -> None:
    """Choose the pair and click Compute (the worker path); wait for the rows and the
    dock's scroll to them."""
    metrics.prediction.value, metrics.reference.value = prediction, reference
    metrics.compute_button.native.click()
    assert metrics._worker is not None
    qtbot.waitUntil(lambda: metrics._worker is None and bool(metrics.results), timeout=60_000)
    qtbot.wait(700)


@pytest.mark.parametrize(
    "docks", [("Segment", "Metrics", "Fine-tune"), ("Segment", "Metrics")], ids=["3", "2"]
)
def test_the_per_slice_table_fits_the_dock_at_1366x768(make_napari_viewer, qtbot, docks):
    """Two CVC-ClinicDB frames' masks (20 scored against 22's): every score's column is in
    the table, and all of them fit its view (no sideways scroll bar); the headers are short,
    the full names in their tooltips; each row one line high."""
    viewer, metrics = window_with(make_napari_viewer, qtbot, docks)
    prediction = viewer.add_labels(read_mask(CVC / "masks" / "20.tif")[0], name="20 labels")
    reference = viewer.add_labels(read_mask(CVC / "masks" / "22.tif")[0], name="22 mask")
    compute(qtbot, metrics, prediction, reference)

    table = metrics.table.native
    widths = [table.columnWidth(c) for c in range(table.columnCount())]
    assert columns_fit(table, metrics.body), (widths, table.viewport().width())
    keys = column_keys(table)
    assert keys == ["slice", *SCORES], keys  # none left out
    assert table.rowCount() == 2  # slice 0 and the mean
    line = table.fontMetrics().lineSpacing()
    assert all(table.rowHeight(row) < 2 * line for row in range(2))  # no cell wraps
    precision = keys.index("precision")
    header = table.horizontalHeaderItem(precision)
    assert "precision" in header.toolTip().lower() and header.text() != "precision"
    # to 3 decimals (the status line gives the mean's Dice to 4), distances to 1
    row = metrics.results[0]
    assert table.item(0, keys.index("dice")).text() == f"{row['dice']:.3f}"
    assert table.item(0, keys.index("hd95_px")).text() == f"{row['hd95_px']:.1f}"
    assert f"Dice {metrics.results[-1]['dice']:.4f}" in metrics.status.value
    assert metrics.table_note.native.isHidden()  # no slice's mask is empty


def test_a_stacks_table_fits_and_names_its_empty_slices_under_it(make_napari_viewer, qtbot):
    """A stack of three frames' masks, the prediction's last slice empty: the table fits
    (the notes column is gone from it) and the line under it names the slice."""
    viewer, metrics = window_with(make_napari_viewer, qtbot, ("Segment", "Metrics", "Fine-tune"))
    masks = [read_mask(CVC / "masks" / f"{name}.tif")[0] for name in ("20", "22", "23")]
    reference = np.stack(masks).astype(np.uint8)
    prediction = np.stack([masks[1], masks[2], np.zeros_like(masks[0])]).astype(np.uint8)
    compute(
        qtbot,
        metrics,
        viewer.add_labels(prediction, name="stack labels"),
        viewer.add_labels(reference, name="stack mask"),
    )
    table = metrics.table.native
    widths = [table.columnWidth(c) for c in range(table.columnCount())]
    assert columns_fit(table, metrics.body), widths
    assert column_keys(table) == ["slice", *SCORES] and table.rowCount() == 4
    assert metrics.table_note.value == "slice 2: empty prediction (HD = image diagonal)"
    assert not metrics.table_note.native.isHidden()
    assert "1 with one mask empty" in metrics.status.value
