"""Metrics dock widget, opened through the manifest in a real napari viewer (Xvfb)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from _clinic_frames import open_with_metrics
from _paths import DATASETS, EXTRA, dataset_subset
from _readonly import read_only_view
from _view import column_keys
from scipy import ndimage

from napari_tmunet import metrics
from napari_tmunet._dock_texts import CONVERT_TO_MASK
from napari_tmunet._sample_data import load_sample

pytestmark = pytest.mark.gui


@pytest.fixture
def masks():
    """A real reference mask (ClinicDB sample) and an eroded copy as the prediction."""
    _, reference = load_sample("colonoscopy")
    prediction = ndimage.binary_erosion(reference, iterations=4).astype(np.uint8)
    return prediction, reference


@pytest.fixture
def widget(make_napari_viewer):
    from napari_tmunet._metrics_widget import MetricsWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    assert isinstance(widget, MetricsWidget)
    return viewer, widget


def _choose(widget, prediction, reference):
    widget.prediction.value = prediction
    widget.reference.value = reference


def _note(widget) -> str:
    """The pair note as shown: its text, or "" while it is hidden (the test viewer's window
    is never shown, so ``visible`` is False throughout)."""
    return "" if widget.pair_note.native.isHidden() else widget.pair_note.value


def _choice_names(combo):
    return [layer.name for layer in combo.choices]


def test_choices_follow_the_layer_list(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    assert _choice_names(widget.prediction) == []

    viewer.add_image(np.zeros((10, 10)), name="not labels")
    ref_layer = viewer.add_labels(reference, name="612 mask")
    pred_layer = viewer.add_labels(prediction, name="prediction")

    assert _choice_names(widget.prediction) == ["612 mask", "prediction"]
    # a fresh pair is guessed sensibly: the "mask" layer is the reference
    assert widget.reference.value.name == "612 mask"
    assert widget.prediction.value.name == "prediction"

    pred_layer.name = "model output"
    assert _choice_names(widget.reference) == ["612 mask", "model output"]

    viewer.layers.remove(ref_layer)
    assert _choice_names(widget.reference) == ["model output"]


def test_values_equal_the_core_metrics(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    ref_layer = viewer.add_labels(reference, name="reference")
    pred_layer = viewer.add_labels(prediction, name="eroded")
    _choose(widget, pred_layer, ref_layer)

    rows = widget.compute()

    assert rows == widget.results
    assert [row["slice"] for row in rows] == ["0", "mean"]
    pred, ref = prediction > 0, reference > 0
    precision, recall = metrics.precision_recall(pred, ref)
    expected = {
        "dice": metrics.dice_score(pred, ref),
        "iou": metrics.iou_score(pred, ref),
        "precision": precision,
        "recall": recall,
        "f1": metrics.f1_from_means(precision, recall),
        "hd_px": metrics.hausdorff_distance(pred, ref),
        "hd95_px": metrics.hausdorff_distance(pred, ref, percentile=95),
    }
    for row in rows:
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key
        assert "hd_physical" not in row  # unscaled layers: pixels only
    assert 0.5 < rows[0]["dice"] < 1.0 and rows[0]["hd_px"] >= 4.0

    table = widget.table.native
    assert table.rowCount() == 2
    headers = column_keys(table)
    assert headers[:4] == ["slice", "dice", "hd_px", "hd95_px"]  # in view in a narrow dock
    assert table.item(0, 1).text() == f"{expected['dice']:.3f}"  # the status line gives 4


def test_export_csv(widget, masks, tmp_path):
    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))
    rows = widget.compute()

    path = widget.export_csv(tmp_path / "out" / "metrics.csv")

    with open(path, newline="", encoding="utf-8") as file:
        saved = list(csv.DictReader(file))
    assert len(saved) == len(rows)
    assert saved[0]["reference"] == "ref"
    assert float(saved[0]["dice"]) == pytest.approx(rows[0]["dice"])
    assert float(saved[-1]["hd95_px"]) == pytest.approx(rows[-1]["hd95_px"])


def test_an_export_that_fails_keeps_the_csv_it_was_to_replace(widget, masks, tmp_path, monkeypatch):
    """A full disk part-way through the rows: last week's export is still there, whole,
    and no temporary file is left beside it."""
    import errno

    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))
    widget.compute()
    path = tmp_path / "metrics.csv"
    earlier = "slice,dice\n0,0.91\nmean,0.91\n"
    path.write_text(earlier)

    def disk_full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", disk_full)
    with pytest.raises(OSError, match="No space left"):
        widget.export_csv(path)
    assert path.read_text() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_export_never_replaces_a_csv_the_dialog_did_not_ask_about(
    widget, masks, tmp_path, monkeypatch
):
    """The user types "results" where results.csv exists: the dialog asked nothing (no file
    "results"), so the dock asks; No keeps the file, Yes replaces it."""
    from qtpy.QtWidgets import QFileDialog, QMessageBox

    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))
    widget.compute()
    existing = tmp_path / "results.csv"
    existing.write_text("patient,dice\nA,0.91\n")
    questions, answer = [], [QMessageBox.StandardButton.No]

    def ask(*args):
        questions.append(args)
        return answer[0]

    typed = str(tmp_path / "results"), "CSV files (*.csv)"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: typed)
    monkeypatch.setattr(QMessageBox, "question", ask)

    widget.export_button.native.click()
    assert existing.read_text() == "patient,dice\nA,0.91\n"
    assert len(questions) == 1 and str(existing) in questions[0][2]
    assert widget.status.value.startswith("Not exported")

    answer[0] = QMessageBox.StandardButton.Yes
    widget.export_button.native.click()
    assert "A,0.91" not in existing.read_text() and "ref" in existing.read_text()
    assert widget.status.value == f"Saved {existing}"


def test_export_to_a_read_only_folder_names_the_chosen_file(widget, masks, tmp_path, monkeypatch):
    """Export CSV into a read-only folder: the error names the file the user chose and says
    the folder is read-only, not a hidden temporary file; nothing is written."""
    import napari.utils.notifications
    from qtpy.QtWidgets import QFileDialog

    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))
    widget.compute()
    folder = tmp_path / "results"
    folder.mkdir()
    errors = []
    monkeypatch.setattr(napari.utils.notifications, "show_error", errors.append)
    with read_only_view(folder) as view:
        chosen = str(view / "metrics.csv"), "CSV files (*.csv)"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: chosen)
        widget.export_button.native.click()
    assert len(errors) == 1, errors
    assert f"cannot write {view / 'metrics.csv'}:" in errors[0], errors
    assert "read-only file system; choose another folder" in errors[0] and ".tmp" not in errors[0]
    assert widget.status.value == errors[0]
    assert not any(folder.iterdir())


def test_scaled_layers_report_physical_units(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    scale = (0.5, 0.25)
    ref_layer = viewer.add_labels(reference, name="ref", scale=scale, units="um")
    pred_layer = viewer.add_labels(prediction, name="pred", scale=scale, units="um")
    _choose(widget, pred_layer, ref_layer)

    row = widget.compute()[0]

    pred, ref = prediction > 0, reference > 0
    assert row["hd_px"] == pytest.approx(metrics.hausdorff_distance(pred, ref))
    assert row["hd_physical"] == pytest.approx(metrics.hausdorff_distance(pred, ref, spacing=scale))
    assert row["hd95_physical"] == pytest.approx(
        metrics.hausdorff_distance(pred, ref, percentile=95, spacing=scale)
    )
    assert row["unit"] == "µm"
    assert row["hd_physical"] < row["hd_px"]


@pytest.mark.parametrize("scaled", ["prediction", "reference"])
def test_one_scaled_layer_gives_physical_units_and_a_warning_either_way(
    widget, masks, qtbot, scaled
):
    """A Segment output of a scaled TIFF against a PNG mask (or the reverse): physical HD
    from the layer with a pixel size, and the same warning naming it, on the worker path."""
    viewer, widget = widget
    prediction, reference = masks
    scale = (0.5, 0.25)
    kwargs = {"scale": scale, "units": "um"}
    pred_layer = viewer.add_labels(
        prediction, name="pred", **(kwargs if scaled == "prediction" else {})
    )
    ref_layer = viewer.add_labels(
        reference, name="ref", **(kwargs if scaled == "reference" else {})
    )
    _choose(widget, pred_layer, ref_layer)
    warnings = _compute_and_warnings(widget, qtbot)
    assert len(widget.results) == 2

    row = widget.results[0]
    pred, ref = prediction > 0, reference > 0
    assert row["hd_physical"] == pytest.approx(metrics.hausdorff_distance(pred, ref, spacing=scale))
    assert row["unit"] == "µm"
    source = "pred" if scaled == "prediction" else "ref"
    assert f"The layers' scales differ; distances use the scale of '{source}'." in warnings


def test_stack_gives_one_row_per_slice(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    ref_stack = np.stack([reference, reference, np.zeros_like(reference)])  # (Z, H, W)
    pred_stack = np.stack([prediction, reference, np.zeros_like(reference)])
    _choose(widget, viewer.add_labels(pred_stack), viewer.add_labels(ref_stack, name="ref"))

    rows = widget.compute()

    assert [row["slice"] for row in rows] == ["0", "1", "2", "mean"]
    assert rows[0]["dice"] == pytest.approx(metrics.dice_score(prediction > 0, reference > 0))
    assert rows[1]["dice"] == 1.0 and rows[2]["dice"] == 1.0  # identical / both empty
    assert rows[3]["dice"] == pytest.approx(np.mean([r["dice"] for r in rows[:3]]))
    assert widget.table.native.rowCount() == 4


def test_compute_button_runs_in_a_worker(widget, masks, qtbot):
    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))

    widget.compute_button.native.click()

    qtbot.waitUntil(lambda: len(widget.results) == 2 and widget._worker is None, timeout=10000)
    assert widget.compute_button.enabled
    assert widget.export_button.enabled
    assert "Dice" in widget.status.value


def test_closing_the_viewer_while_computing_leaves_the_deleted_widgets_alone(
    widget, masks, qtbot, caplog
):
    """Threaded path: the viewer closed while a 40-slice stack is scored; the worker's
    result and end reach no deleted widget (no exception in a slot, no error logged)."""
    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(np.stack([prediction] * 40)),
            viewer.add_labels(np.stack([reference] * 40), name="ref"))  # fmt: skip
    with qtbot.capture_exceptions() as raised:
        widget.compute_button.native.click()
        worker = widget._worker
        viewer.close()
        qtbot.waitUntil(lambda: not worker.is_running, timeout=120_000)
        qtbot.wait(300)  # signals still queued are delivered
    assert not raised, [str(err) for _, err, _ in raised]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_mismatched_shapes_are_reported_not_raised(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction[:100]), viewer.add_labels(reference))

    widget.compute_button.native.click()  # must not raise

    assert "shape" in widget.status.value
    assert widget.results == []


def test_comparison_rows_are_shown_with_a_model_column(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))
    widget.compute()

    note = (
        "columns 280-440 of 643 (where the edits are) of image01; rests on 274 edited "
        "pixels in 2 regions - fewer than 300 edited pixels and fewer than 3 edited "
        "regions: too few for a meaningful comparison"
    )
    part = {"image": "held-out part", "note": note}
    widget.set_comparison(
        [
            {"model": "before fine-tuning", "dice": 0.71, "hd95_px": 12.5, **part},
            {"model": "after fine-tuning", "dice": 0.84, "hd95_px": 6.0, **part},
        ]
    )

    # comparison rows and per-slice rows are separate tables
    table = widget.comparison_table.native
    headers = column_keys(table)
    assert headers == ["model", "dice", "hd95_px"] and table.rowCount() == 2
    # the note (once) under the table, not in a cell that makes its row tall; the table
    # is as high as its rows
    assert widget.comparison_note.value == note
    assert max(table.rowHeight(r) for r in range(2)) < 3 * table.fontMetrics().height()
    assert table.maximumHeight() == table.minimumHeight() < 200
    assert widget.comparison[0]["note"] == note  # kept for the CSV
    assert table.item(1, 0).text() == "after fine-tuning"
    assert not widget.comparison_table.native.isHidden()
    assert widget.table.native.rowCount() == 2  # slice 0 and the mean
    assert len(widget.rows()) == 4 and len(widget.results) == 2


def test_comparison_is_in_view_in_a_short_dock(make_napari_viewer, qtbot):
    """Three docks share 768 px: Fine-tune's comparison is set in a Metrics dock ~250 px
    high and must be in view, not below an empty results table and Export."""
    viewer = make_napari_viewer(show=True)
    for name in ("Segment", "Fine-tune"):  # the docks a pathologist has open
        viewer.window.add_plugin_dock_widget(plugin_name="napari-tmunet", widget_name=name)
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    viewer.window._qt_window.resize(1366, 768)
    qtbot.wait(200)
    widget.set_comparison(
        [
            {"model": "before fine-tuning", "dice": 0.71, "hd95_px": 12.5},
            {"model": "after fine-tuning", "dice": 0.84, "hd95_px": 6.0},
        ]
    )
    qtbot.wait(200)
    assert widget.table.native.isHidden()  # no results yet: no empty table
    table = widget.comparison_table.native
    assert not table.visibleRegion().isEmpty(), table.visibleRegion().boundingRect()


def test_the_status_line_gives_the_mean_scores_in_view_of_a_default_dock(
    make_napari_viewer, masks, qtbot
):
    """The Metrics dock alone at its default width, on a 1366 x 768 window: the table's
    HD and HD95 columns run out of view, so the status line gives the mean Dice, IoU, HD
    and HD95, whole and in view; in the layers' unit when they are scaled."""
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    viewer.window._qt_window.resize(1366, 768)
    prediction, reference = masks
    pred = viewer.add_labels(np.stack([prediction, reference]), name="pred")
    ref = viewer.add_labels(np.stack([reference, reference]), name="ref")
    _choose(widget, pred, ref)
    widget.compute_button.native.click()  # the real path: a worker
    qtbot.waitUntil(lambda: bool(widget.results) and widget._worker is None, timeout=10000)
    mean = widget.results[-1]
    assert widget.status.value == (
        f"pred vs ref, mean over 2 slices: Dice {mean['dice']:.4f}, IoU {mean['iou']:.4f}, "
        f"HD {mean['hd_px']:.2f} px, HD95 {mean['hd95_px']:.2f} px. "
        f"Dice over the whole stack: {mean['stack_dice']:.4f}"
    )
    assert mean["hd_px"] > 0 and mean["hd95_px"] > 0
    qtbot.wait(200)
    status = widget.status.native
    shown = status.visibleRegion().boundingRect()
    assert shown.width() == status.width() and shown.height() == status.height()
    dock = widget.native.width()
    assert status.mapTo(widget.native, status.rect().topRight()).x() <= dock

    for layer in (pred, ref):
        layer.scale = (1, 0.5, 0.5)
        layer.units = ("um", "um", "um")
    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: bool(widget.results) and widget._worker is None, timeout=10000)
    mean = widget.results[-1]
    assert f"HD {mean['hd_physical']:.2f} µm, HD95 {mean['hd95_physical']:.2f} µm" in (
        widget.status.value
    )


def test_choosers_follow_the_selected_layer(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    ref = viewer.add_labels(reference, name="sample mask")
    first = viewer.add_labels(prediction, name="first labels")
    second = viewer.add_labels(prediction[::-1].copy(), name="second labels")
    viewer.layers.selection.active = first
    assert widget.prediction.value is first and widget.reference.value is ref
    viewer.layers.selection.active = second
    assert widget.prediction.value is second and widget.reference.value is ref
    viewer.layers.selection.active = ref  # a reference-like name goes to Reference
    assert widget.reference.value is ref and widget.prediction.value is second


def test_failed_compute_clears_the_previous_scores(widget, masks, qtbot):
    viewer, widget = widget
    prediction, reference = masks
    ref_layer = viewer.add_labels(reference, name="ref")
    _choose(widget, viewer.add_labels(prediction), ref_layer)
    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: len(widget.results) == 2 and widget._worker is None, timeout=10000)
    assert widget.table.native.rowCount() == 2 and widget.export_button.enabled

    _choose(widget, viewer.add_labels(prediction[:100], name="cropped"), ref_layer)
    widget.compute_button.native.click()

    assert "shape" in widget.status.value
    assert widget.results == [] and widget.rows() == []
    assert widget.table.native.rowCount() == 0
    assert not widget.export_button.enabled


def test_failing_worker_leaves_no_scores(widget, masks, qtbot, monkeypatch):
    from napari_tmunet import _metrics_widget

    viewer, widget = widget
    prediction, reference = masks
    _choose(widget, viewer.add_labels(prediction), viewer.add_labels(reference, name="ref"))
    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: len(widget.results) == 2 and widget._worker is None, timeout=10000)

    def broken(**_job):
        raise RuntimeError("boom")

    monkeypatch.setattr(_metrics_widget, "score_labels", broken)
    widget.compute_button.native.click()
    assert not widget.export_button.enabled  # nothing to export while it runs
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10000)

    assert widget.status.value == "Metrics failed: boom"
    assert widget.results == [] and widget.table.native.rowCount() == 0
    assert not widget.export_button.enabled


def test_a_new_sample_mask_of_another_shape_is_not_taken_as_reference(widget, masks):
    viewer, widget = widget
    prediction, reference = masks
    ref_a = viewer.add_labels(reference, name="A mask")
    pred_a = viewer.add_labels(prediction, name="A prediction")
    viewer.layers.selection.active = pred_a
    assert widget.prediction.value is pred_a and widget.reference.value is ref_a

    ref_b = viewer.add_labels(np.zeros((50, 60), np.uint8), name="B mask")
    viewer.layers.selection.active = ref_b

    assert widget.prediction.value is pred_a and widget.reference.value is ref_a
    # a prediction of B's shape takes B's mask instead of keeping A's
    pred_b = viewer.add_labels(np.zeros((50, 60), np.uint8), name="B prediction")
    viewer.layers.selection.active = pred_b
    assert widget.prediction.value is pred_b and widget.reference.value is ref_b


def test_a_layer_is_not_compared_with_itself(widget, masks):
    viewer, widget = widget
    _, reference = masks
    viewer.add_labels(reference, name="CVC mask")
    assert widget.prediction.value is widget.reference.value  # the only Labels layer

    widget.compute_button.native.click()

    # what is missing, as the pair note says it (not "choose two different layers": there
    # is no other layer to choose)
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    assert widget.status.value == CHOOSE_PREDICTION.format(name="'CVC mask'")
    assert widget.results == [] and widget._worker is None


@pytest.mark.parametrize(("depth", "words"), [(1, "over 1 slice"), (2, "mean over 2 slices")])
def test_status_counts_slices_in_words(widget, masks, qtbot, depth, words):
    viewer, widget = widget
    prediction, reference = masks
    pred = np.stack([prediction] * depth) if depth > 1 else prediction
    ref = np.stack([reference] * depth) if depth > 1 else reference
    _choose(widget, viewer.add_labels(pred), viewer.add_labels(ref, name="ref"))

    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: len(widget.results) == depth + 1, timeout=10000)

    assert words in widget.status.value


def test_on_a_stack_the_status_line_says_mean_and_gives_the_whole_stack_dice(
    widget, qtbot, tmp_path
):
    """A prediction that misses the only lesion of a 10-slice stack: the nine empty/empty
    slices score 1 each, so the mean Dice is 0.9; the status line says it is a mean,
    carries the empty-mask note and gives the whole stack's Dice, 0 (tester9 #7)."""
    viewer, widget = widget
    ref = np.zeros((10, 50, 60), np.uint8)
    ref[0, 10:20, 10:20] = 1
    _choose(
        widget,
        viewer.add_labels(np.zeros_like(ref), name="case labels"),
        viewer.add_labels(ref, name="case mask"),
    )
    widget.compute_button.native.click()  # the real path: a worker
    qtbot.waitUntil(lambda: bool(widget.results) and widget._worker is None, timeout=10000)

    line = widget.status.value
    assert line.startswith("case labels vs case mask, mean over 10 slices: Dice 0.9000")
    assert "; 1 with one mask empty (HD = image diagonal)" in line
    assert line.endswith("Dice over the whole stack: 0.0000")
    assert "stack_dice" not in widget.table.value["columns"]
    with open(widget.export_csv(tmp_path / "scores.csv"), newline="") as f:
        exported = list(csv.DictReader(f))
    assert float(exported[-1]["stack_dice"]) == 0.0


def test_a_guessed_pair_has_one_shape(widget, masks):
    """Two samples' masks are no pair: the guess pairs a mask with a layer of its shape."""
    viewer, widget = widget
    prediction, reference = masks
    viewer.add_labels(np.zeros((50, 60), np.uint8), name="B mask")  # first sample alone
    ref_a = viewer.add_labels(reference, name="A mask")
    assert widget.reference.value is not widget.prediction.value  # two layers, no pair yet
    pred_a = viewer.add_labels(prediction, name="A labels")
    widget.prediction.value = widget.reference.value = ref_a  # as if both had followed it
    widget._refresh_choices()
    assert widget.reference.value is ref_a and widget.prediction.value is pred_a


def test_renamed_layers_stay_chosen_and_are_scored_under_their_new_names(widget, masks, qtbot):
    """Renaming the chosen prediction and reference (napari's own rename) keeps both
    chosen, though a fresh guess would pick another pair; Compute names the new names."""
    viewer, widget = widget
    prediction, reference = masks
    pred_a = viewer.add_labels(prediction, name="prediction A")
    ref = viewer.add_labels(reference, name="612 mask")
    pred_b = viewer.add_labels(ndimage.binary_erosion(prediction, iterations=8).astype(np.uint8))
    _choose(widget, pred_a, ref)  # not the newest prediction: a guess would take B
    before = widget.compute()[-1]
    assert widget.status.value.startswith("prediction A vs 612 mask: Dice")

    pred_a.name = "model A"
    assert widget.prediction.value is pred_a and widget.reference.value is ref
    ref.name = "expert outline"  # no longer looks like a reference
    assert widget.prediction.value is pred_a and widget.reference.value is ref
    pred_b.name = "model B"  # a layer not chosen: nothing moves
    assert widget.prediction.value is pred_a and widget.reference.value is ref
    assert _choice_names(widget.prediction) == ["model A", "expert outline", "model B"]
    assert widget.prediction.native.currentText() == "model A"  # what the dock shows
    assert widget.reference.native.currentText() == "expert outline"

    widget.compute_button.native.click()  # the real path: a worker
    qtbot.waitUntil(lambda: bool(widget.results) and widget._worker is None, timeout=10000)
    after = widget.results[-1]
    assert (after["prediction"], after["reference"]) == ("model A", "expert outline")
    assert after["dice"] == before["dice"]  # the same two layers
    expected = (
        f"model A vs expert outline: Dice {before['dice']:.4f}, IoU {before['iou']:.4f}, "
        f"HD {before['hd_px']:.2f} px, HD95 {before['hd95_px']:.2f} px over 1 slice"
    )
    assert widget.status.value == expected


def test_a_prediction_takes_the_mask_that_shares_its_name(widget, masks):
    """Without Segment's metadata (e.g. labels opened from a file) the name stem pairs:
    "b labels" goes with "B mask", not with the first mask of its size."""
    viewer, widget = widget
    prediction, reference = masks
    viewer.add_labels(np.zeros_like(reference), name="A mask")
    ref_b = viewer.add_labels(reference, name="B mask")
    pred_b = viewer.add_labels(prediction, name="b labels")
    assert widget.prediction.value is pred_b and widget.reference.value is ref_b
    assert _note(widget) == ""
    viewer.layers.selection.active = pred_b
    assert widget.reference.value is ref_b


CLINIC = DATASETS / "CVC-ClinicDB"


@pytest.mark.skipif(not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present")
@pytest.mark.parametrize("metrics_first", [True, False], ids=["metrics-first", "metrics-after"])
def test_a_segment_output_is_paired_with_its_own_images_mask(
    make_napari_viewer, qtbot, tmp_path, metrics_first
):
    """A dataset folder's frames share one size: the Segment output of the middle frame is
    scored against that frame's mask (not the first or newest mask of its size), whether
    Metrics was open before Segment or opened after; a layer of no known image paired by
    size among several masks gets a note saying so."""

    root = tmp_path / "clinic"
    dataset_subset(CLINIC, root, ("1", "101", "200"))
    viewer = make_napari_viewer()

    def metrics_dock():
        return viewer.window.add_plugin_dock_widget(
            plugin_name="napari-tmunet", widget_name="Metrics"
        )[1]

    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    widget = metrics_dock() if metrics_first else None
    viewer.open(str(root), plugin="napari-tmunet")
    image, own_mask = viewer.layers["101"], viewer.layers["101 mask"]
    assert {viewer.layers[n].data.shape[:2] for n in ("1", "101", "200")} == {(288, 384)}
    segment.image.value = image
    segment.segment()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    output = segment.last_layer
    assert output.metadata["image"] == "101"
    if widget is None:
        widget = metrics_dock()
    viewer.layers.selection.active = output

    assert widget.prediction.value is output and widget.reference.value is own_mask
    assert _note(widget) == ""
    row = widget.compute()[-1]
    pred, ref = np.asarray(output.data) > 0, np.asarray(own_mask.data) > 0
    assert row["dice"] == pytest.approx(metrics.dice_score(pred, ref))
    assert row["dice"] > 0.8  # the shipped model on its own frame, not another frame's mask

    # a copy of no known image: any of the three masks is only a guess by size
    viewer.layers.selection.active = viewer.add_labels(output.data.copy(), name="edited")
    assert widget.prediction.value.name == "edited"
    from napari_tmunet._metrics_widget import PAIRED_BY_SIZE

    guess = PAIRED_BY_SIZE.format(reference="'101 mask'", prediction="'edited'")
    assert _note(widget) == guess
    viewer.layers.selection.active = output  # its own image again: no note
    assert widget.reference.value is own_mask and _note(widget) == ""


@pytest.mark.skipif(not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present")
def test_a_prediction_chosen_in_its_box_takes_its_own_images_reference(
    make_napari_viewer, qtbot, tmp_path
):
    """A dataset folder of three ClinicDB frames (one size), each segmented: choosing a
    Segment output in the Prediction box (not in the layer list) takes its own frame's
    mask, as selecting it in the layer list does, and Compute scores that pair; a
    reference the user chose in the Reference box for a prediction is kept when that
    prediction is chosen again (tester16 #3)."""
    root = tmp_path / "clinic"
    dataset_subset(CLINIC, root, ("20", "120", "220"))
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    viewer.open(str(root), plugin="napari-tmunet")
    frames = ("20", "120", "220")
    outputs = {name: _segment(qtbot, segment, viewer.layers[name]) for name in frames}
    masks = {name: viewer.layers[f"{name} mask"] for name in frames}
    viewer.layers.selection.active = outputs["20"]
    assert widget.reference.value is masks["20"]

    def pick(chooser, layer):  # as a click on its entry in the drop-down list
        chooser.native.setCurrentIndex(chooser.native.findText(layer.name))
        assert chooser.value is layer

    for name in ("120", "220", "20", "120"):
        pick(widget.prediction, outputs[name])
        assert widget.reference.value is masks[name], name
        assert _note(widget) == ""

    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: widget._worker is None and bool(widget.results), timeout=60_000)
    pred, ref = np.asarray(outputs["120"].data) > 0, np.asarray(masks["120"].data) > 0
    assert widget.results[-1]["dice"] == pytest.approx(metrics.dice_score(pred, ref))
    assert widget.results[-1]["dice"] > 0.8  # its own frame's mask, not another frame's
    assert widget.status.value.startswith(f"{outputs['120'].name} vs 120 mask: Dice")

    pick(widget.reference, masks["220"])  # the user's own choice for "120"
    pick(widget.prediction, outputs["20"])
    assert widget.reference.value is masks["20"]
    pick(widget.prediction, outputs["120"])
    assert widget.reference.value is masks["220"]


def _segment(qtbot, segment, image):
    """Segment ``image`` with the Segment dock's worker; return the new Labels layer."""
    segment.image.value = image
    segment.segment()
    assert segment.worker is not None  # the threaded path users take
    qtbot.waitUntil(lambda: not segment.running, timeout=300_000)
    return segment.last_layer


def test_segmenting_another_image_never_pairs_layers_of_two_sizes(widget, qtbot):
    """Colonoscopy sample + its mask, Segment, then the ultrasound image alone (another
    size) and Segment: the reference follows to a layer of the new prediction's size when
    there is one, else the pair note warns before Compute."""
    viewer, widget = widget
    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    viewer.open_sample("napari-tmunet", "colonoscopy")
    colon_mask = viewer.layers[-1]
    colon_pred = _segment(qtbot, segment, viewer.layers[-2])
    assert widget.prediction.value is colon_pred and widget.reference.value is colon_mask
    viewer.open_sample("napari-tmunet", "ultrasound")
    viewer.layers.remove(viewer.layers[-1])  # the image without its mask
    us_pred = _segment(qtbot, segment, viewer.layers[-1])
    assert us_pred.data.shape != colon_mask.data.shape
    assert widget.prediction.value is us_pred and widget.reference.value is colon_mask
    note = _note(widget)
    assert "differ in size" in note and repr(us_pred.name) in note, note
    # a second prediction of the ultrasound image: the first is of its size and is taken
    again = viewer.add_labels(us_pred.data.copy(), name="ultrasound again")
    viewer.layers.selection.active = again
    assert widget.prediction.value is again and widget.reference.value is us_pred
    assert "differ in size" not in _note(widget)


def test_the_note_on_the_only_mask_says_what_is_missing(widget, qtbot):
    """The ultrasound sample alone with a mask painted by hand (Layers > New Labels): the
    note says a prediction is missing; with only Segment's output of it left, that its
    reference is (tester23 D4)."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION, CHOOSE_REFERENCE

    viewer, widget = widget
    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    scan = viewer.add_image(load_sample("ultrasound")[0], name="scan")
    viewer._new_labels()  # what Layers > New Labels runs
    hand = viewer.layers[-1]
    hand.data[100:200, 150:300] = 1
    assert widget.prediction.value is hand and widget.reference.value is hand
    assert _note(widget) == CHOOSE_PREDICTION.format(name=repr(hand.name))
    viewer.layers.remove(hand)
    output = _segment(qtbot, segment, scan)
    assert widget.prediction.value is output and widget.reference.value is output
    assert _note(widget) == CHOOSE_REFERENCE.format(name=repr(output.name))


@pytest.mark.parametrize("kind", ["binary", "instances"])
def test_a_mask_png_opened_as_an_image_is_offered_as_the_reference(
    widget, masks, qtbot, tmp_path, kind
):
    """File > Open makes a 0/255 or an instance-id PNG an Image layer; the dock offers it
    as the reference, reads it as labels and scores it (tester12C #6)."""
    from PIL import Image as Picture

    viewer, widget = widget
    prediction, reference = masks
    stored = (reference > 0).astype(np.uint8) * 255
    if kind == "instances":  # ids 1..N, as a saved instance PNG or CPM15's masks
        stored = ndimage.label(ndimage.binary_erosion(reference, iterations=2))[0]
        stored = stored.astype(np.uint16)
    path = tmp_path / "frame7.png"
    Picture.fromarray(stored).save(path)
    pred_layer = viewer.add_labels(prediction, name="frame7 labels")
    (opened,) = viewer.open(str(path), plugin="napari")  # napari's own reader, as File > Open
    assert opened.__class__.__name__ == "Image"
    assert _choice_names(widget.reference) == ["frame7 labels", "frame7"]
    assert widget.reference.value is opened and widget.prediction.value is pred_layer

    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: len(widget.results) == 2 and widget._worker is None, timeout=20_000)
    expected = metrics.dice_score(prediction > 0, stored > 0)
    assert widget.results[-1]["dice"] == pytest.approx(expected)
    assert widget.status.value.startswith("frame7 labels vs frame7: Dice")


def test_a_picture_is_not_offered_and_the_dock_says_how_to_convert_one(widget, masks):
    """A photograph is no mask: not offered. One picture and its Labels: the note says
    what is missing (not how to convert); with a second picture (perhaps a mask that did
    not open as one), the note says how to make an image a mask."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    viewer, widget = widget
    prediction, _ = masks
    picture, _ = load_sample("colonoscopy")
    viewer.add_image(picture[..., 0], name="grey frame")  # uint8 grey photograph
    viewer.add_labels(prediction, name="frame labels")
    assert _choice_names(widget.reference) == ["frame labels"]
    assert _note(widget) == CHOOSE_PREDICTION.format(name="'frame labels'")
    viewer.add_image(picture[..., 1], name="another frame")
    assert _choice_names(widget.reference) == ["frame labels"]
    assert _note(widget) == f"To score against an image that is a mask, {CONVERT_TO_MASK}."


def test_one_labels_layer_is_not_its_own_reference_without_a_word(widget, masks):
    """One Labels layer (not made by Segment: which one it is is not known) fills both
    choosers: the note says a second mask is missing; a mask opened next is taken."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    viewer, widget = widget
    prediction, reference = masks
    output = viewer.add_labels(prediction, name="frame labels")
    assert widget.prediction.value is output and widget.reference.value is output
    assert _note(widget) == CHOOSE_PREDICTION.format(name="'frame labels'")
    mask = viewer.add_labels(reference, name="frame mask")
    assert widget.prediction.value is output and widget.reference.value is mask
    assert _note(widget) == ""


def _rgb_jpeg_mask(path, mask) -> np.ndarray:
    """Save ``mask`` as Kvasir-SEG saves its masks (RGB JPEG, 0/255, equal channels) and
    return the pixels napari's own reader gives back (JPEG noise around the edges)."""
    from napari_builtins.io import imread
    from PIL import Image as Picture

    Picture.fromarray(np.dstack([(mask > 0).astype(np.uint8) * 255] * 3)).save(path)
    return imread(str(path))


def _score_against_opened(viewer, widget, qtbot, path, prediction, name):
    """Open ``path`` with napari's own reader (File > Open), check that the dock offers it
    as the Reference, click Compute (worker thread) and return the opened layer."""
    pred_layer = viewer.add_labels(prediction, name=f"{name} labels")
    (opened,) = viewer.open(str(path), plugin="napari")
    assert opened.__class__.__name__ == "Image" and opened.rgb
    assert _choice_names(widget.reference) == [f"{name} labels", name]
    assert widget.reference.value is opened and widget.prediction.value is pred_layer
    assert _note(widget) == ""
    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: len(widget.results) == 2 and widget._worker is None, timeout=20_000)
    assert widget.status.value.startswith(f"{name} labels vs {name}: Dice")
    return opened


def test_an_rgb_jpeg_mask_is_offered_as_the_reference_and_read_above_127(
    widget, masks, qtbot, tmp_path
):
    """A mask saved as an RGB JPEG (3 equal channels, 0/255 with JPEG noise: Kvasir-SEG's
    masks) opened with File > Open is an RGB Image layer: the dock offers it as the
    reference and scores its > 127 pixels, so the noise is background (fix-74 #3)."""
    viewer, widget = widget
    _, reference = masks
    reference = np.kron(reference, np.ones((2, 2), np.uint8))  # a polyp of Kvasir's size
    prediction = ndimage.binary_erosion(reference, iterations=6).astype(np.uint8)
    stored = _rgb_jpeg_mask(tmp_path / "polyp.jpg", reference)
    noise = (stored[..., 0] > 0) & (stored[..., 0] <= 127)
    assert noise.any()  # what a > 0 rule would count as polyp

    _score_against_opened(viewer, widget, qtbot, tmp_path / "polyp.jpg", prediction, "polyp")

    expected = metrics.dice_score(prediction > 0, stored[..., 0] > 127)
    assert widget.results[-1]["dice"] == pytest.approx(expected)
    assert expected != pytest.approx(metrics.dice_score(prediction > 0, stored[..., 0] > 0))


@pytest.mark.skipif(not (EXTRA / "Kvasir-SEG").is_dir(), reason="needs ../extra-data/Kvasir-SEG")
def test_a_kvasir_seg_mask_is_offered_as_the_reference(widget, qtbot, tmp_path):
    """Kvasir-SEG's own RGB JPEG masks, as stored: offered as the reference, scored > 127."""
    import shutil

    from napari_builtins.io import imread

    viewer, widget = widget
    source = sorted((EXTRA / "Kvasir-SEG" / "masks").glob("*.jpg"))[0]
    path = shutil.copy(source, tmp_path / "kvasir.jpg")
    stored = imread(str(path))
    prediction = ndimage.binary_erosion(stored[..., 0] > 127, iterations=5).astype(np.uint8)

    _score_against_opened(viewer, widget, qtbot, path, prediction, "kvasir")

    expected = metrics.dice_score(prediction > 0, stored[..., 0] > 127)
    assert widget.results[-1]["dice"] == pytest.approx(expected)


def _open_grey_alpha(viewer, path):
    """Open ``path`` with napari's own reader (File > Open): an LA PNG is a (H, W, 2)
    Image layer, not RGB."""
    (opened,) = viewer.open(str(path), plugin="napari")
    assert opened.__class__.__name__ == "Image" and not opened.rgb
    assert opened.data.ndim == 3 and opened.data.shape[-1] == 2
    return opened


def _compute_on_the_worker(widget, qtbot):
    widget.compute_button.native.click()
    qtbot.waitUntil(
        lambda: widget._worker is None and widget.compute_button.enabled, timeout=20_000
    )


def test_a_grey_alpha_mask_png_is_the_reference_by_its_grey_channel(widget, masks, qtbot, tmp_path):
    """A mask saved as grey + alpha (PNG mode LA, as MoNuSeg's) opened with File > Open is
    a (H, W, 2) image: the dock offers and preselects it as the reference and scores its
    grey channel, as read_mask reads such a file (tester14 #3: Compute said the layers
    did not cover the same pixels). The alpha here is opaque everywhere: read as a
    channel, or maxed with the grey, it would make the whole frame foreground."""
    from PIL import Image as Picture

    from napari_tmunet.data.images import read_mask

    viewer, widget = widget
    prediction, reference = masks
    grey = (reference > 0).astype(np.uint8) * 255
    path = tmp_path / "frame9.png"
    Picture.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA").save(path)
    pred_layer = viewer.add_labels(prediction, name="frame9 labels")
    opened = _open_grey_alpha(viewer, path)
    assert _choice_names(widget.reference) == ["frame9 labels", "frame9"]
    assert widget.reference.value is opened and widget.prediction.value is pred_layer
    assert _note(widget) == ""

    _compute_on_the_worker(widget, qtbot)

    assert widget.status.value.startswith("frame9 labels vs frame9: Dice"), widget.status.value
    expected = metrics.dice_score(prediction > 0, read_mask(path)[0])
    assert widget.results[-1]["dice"] == pytest.approx(expected) and expected > 0.8


MONUSEG_MASK = DATASETS / "MoNuSeg" / "masks" / "TCGA-21-5784-01Z-00-DX1.png"


@pytest.mark.skipif(not MONUSEG_MASK.is_file(), reason=f"no {MONUSEG_MASK}")
def test_monusegs_own_mask_scores_a_prediction_as_read_mask_reads_it(widget, qtbot, tmp_path):
    """MoNuSeg's reference mask as stored (grey + alpha PNG), opened with File > Open
    beside a prediction of its tile: preselected, and Compute gives the Dice against the
    file's mask (tester14 #3, s06_metrics_after_ft.py)."""
    import shutil

    from napari_tmunet.data.images import read_mask

    viewer, widget = widget
    path = shutil.copy(MONUSEG_MASK, tmp_path / "monu_ref.png")
    truth = read_mask(path)[0]
    prediction = ndimage.binary_erosion(truth, iterations=2).astype(np.uint8)
    pred_layer = viewer.add_labels(prediction, name="monu labels")
    opened = _open_grey_alpha(viewer, path)
    assert widget.reference.value is opened and widget.prediction.value is pred_layer

    _compute_on_the_worker(widget, qtbot)

    assert widget.results, widget.status.value
    expected = metrics.dice_score(prediction > 0, truth)
    assert widget.results[-1]["dice"] == pytest.approx(expected) and 0.3 < expected < 1


def test_a_grey_alpha_mask_converted_to_labels_is_refused_naming_its_axis(
    widget, masks, qtbot, tmp_path
):
    """napari's Convert to Labels keeps a grey + alpha image's channels as a last axis of
    2: the pair note and Compute name that axis and say what to do, not that the layers
    'must cover the same pixels'."""
    from napari.layers._layer_actions import _convert
    from PIL import Image as Picture

    viewer, widget = widget
    prediction, reference = masks
    grey = (reference > 0).astype(np.uint8) * 255
    path = tmp_path / "frame9.png"
    Picture.fromarray(np.dstack([grey, grey]), mode="LA").save(path)
    pred_layer = viewer.add_labels(prediction, name="frame9 labels")
    opened = _open_grey_alpha(viewer, path)
    viewer.layers.selection = {opened}
    _convert(viewer.layers, "labels")
    converted = next(la for la in viewer.layers if la.name != "frame9 labels")
    assert converted.__class__.__name__ == "Labels" and converted.data.shape[-1] == 2
    _choose(widget, pred_layer, converted)

    words = (
        f"{converted.name!r} ({' x '.join(map(str, converted.data.shape))}) has a last axis "
        "of 2 values that 'frame9 labels'"
    )
    assert _note(widget).startswith(words), _note(widget)
    assert "open the mask file again with File > Open" in _note(widget)
    _compute_on_the_worker(widget, qtbot)
    assert widget.status.value == _note(widget) and widget.results == []


def test_closing_a_scored_layer_clears_its_scores_and_no_misfit_takes_its_place(
    widget, masks, qtbot, tmp_path
):
    """Compute (worker), then delete the reference: the rows go (Export has nothing to
    write) and the status says why; the Reference box takes another mask of the
    prediction's size, never the first layer offered (another size); with none left it
    shows the prediction, and the note asks for a second mask; a mask opened then is taken
    (tester20 #5)."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    viewer, widget = widget
    prediction, reference = masks
    viewer.add_labels(np.zeros((50, 60), np.uint8), name="other mask")  # offered first
    ref = viewer.add_labels(reference, name="612 mask")
    pred = viewer.add_labels(prediction, name="612 labels")
    spare = viewer.add_labels(ndimage.binary_dilation(reference).astype(np.uint8), name="old mask")
    _choose(widget, pred, ref)
    widget.compute_button.native.click()
    qtbot.waitUntil(lambda: len(widget.results) == 2 and widget._worker is None, timeout=10000)

    viewer.layers.remove(ref)
    assert widget.results == [] and widget.table.native.rowCount() == 0
    assert not widget.export_button.enabled
    with pytest.raises(ValueError, match="Nothing to export"):
        widget.export_csv(tmp_path / "scores.csv")
    assert widget.status.value == (
        "Scores of '612 labels' vs '612 mask' cleared: '612 mask' was closed."
    )
    assert widget.prediction.value is pred and widget.reference.value is spare

    viewer.layers.remove(spare)
    assert widget.prediction.value is pred and widget.reference.value is pred
    assert _note(widget) == CHOOSE_PREDICTION.format(name="'612 labels'")
    again = viewer.add_labels(reference, name="612 mask")
    assert widget.prediction.value is pred and widget.reference.value is again


def test_a_layer_closed_while_its_scores_are_computed_gets_no_scores(widget, masks, qtbot):
    """Compute (worker), and the prediction is deleted before the scores come: they are
    not shown as current."""
    viewer, widget = widget
    prediction, reference = masks
    ref = viewer.add_labels(reference, name="612 mask")
    pred = viewer.add_labels(prediction, name="612 labels")
    _choose(widget, pred, ref)
    widget.compute_button.native.click()
    assert widget._worker is not None
    viewer.layers.remove(pred)  # before the worker's scores reach the dock
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10000)
    qtbot.wait(50)
    assert widget.results == [] and not widget.export_button.enabled
    assert widget.status.value.endswith("'612 labels' was closed.")
    assert widget.compute_button.enabled


def test_metrics_opened_after_segment_all_pairs_the_selected_labels_layer(
    make_napari_viewer, qtbot
):
    """Two samples, Segment all (the chosen image's output is made the active layer), then
    Metrics opened: it shows that output and its own mask, not the newest pair, and
    Compute scores them (tester20 #6)."""
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    for sample in ("colonoscopy", "ultrasound"):
        viewer.open_sample("napari-tmunet", sample)
    colon_image, colon_mask = viewer.layers[0], viewer.layers[1]
    segment.image.value = colon_image
    segment.segment_all()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=300_000)
    active = viewer.layers.selection.active
    assert active.metadata["image"] == colon_image.name
    assert viewer.layers[-1] is not active  # the newest output is the ultrasound one

    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    assert widget.prediction.value is active and widget.reference.value is colon_mask
    row = widget.compute()[-1]
    pred, ref = np.asarray(active.data) > 0, np.asarray(colon_mask.data) > 0
    assert row["dice"] == pytest.approx(metrics.dice_score(pred, ref))


def _compute_and_warnings(widget, qtbot) -> list[str]:
    """Click Compute (the worker path) and wait for the scores; the warnings napari showed."""
    from napari.utils.notifications import notification_manager

    warnings = []

    def record(event):
        note = event.value if hasattr(event, "value") else event
        if str(note.severity) == "warning":
            warnings.append(str(note.message))

    notification_manager.notification_ready.connect(record)
    try:
        widget.compute_button.native.click()
        assert widget._worker is not None
        qtbot.waitUntil(lambda: widget._worker is None and bool(widget.results), timeout=20_000)
    finally:
        notification_manager.notification_ready.disconnect(record)
    return warnings


# references that lie on the prediction: in place, off by a fraction of a pixel, or only
# scaled (the scale warning's case), with the napari warnings each gives
ALIGNED = {
    "in place": ({}, []),
    "off by a fraction of a pixel": ({"translate": (0.3, -0.2)}, []),
    "scaled": (
        {"scale": (2, 2), "translate": (0.3, 0)},
        ["The layers' scales differ; distances use the scale of 'ref scaled'."],
    ),
}
# references placed elsewhere: their placement and what the warning names
MISPLACED = {
    "moved 100 px": ({"translate": (100, 100)}, "translate"),
    "rotated 90": ({"rotate": 90}, "rotate"),
    "sheared": ({"shear": [0.5]}, "shear"),
    "moved with the transform tool": ({"affine": [[1, 0, 40], [0, 1, -25], [0, 0, 1]]}, "affine"),
}


@pytest.mark.parametrize("placement", list(MISPLACED))
def test_a_reference_placed_elsewhere_on_the_canvas_is_warned_about(
    widget, masks, qtbot, placement
):
    """The colonoscopy sample's mask moved, rotated, sheared or transformed away from the
    prediction: the scores are of the arrays pixel by pixel (not resampled), and the pair
    note, the status line and a napari warning say so, naming both layers and what
    differs; in place, off by a fraction of a pixel or only scaled, no such word
    (tester23 D2)."""
    viewer, widget = widget
    prediction, reference = masks
    dice = metrics.dice_score(prediction > 0, reference > 0)
    pred_layer = viewer.add_labels(prediction, name="col labels")
    for name, (kwargs, expected) in ALIGNED.items():
        _choose(widget, pred_layer, viewer.add_labels(reference, name=f"ref {name}", **kwargs))
        note = _note(widget)
        assert _compute_and_warnings(widget, qtbot) == expected, name
        assert "placed differently" not in note + widget.status.value, name
        assert widget.results[0]["dice"] == pytest.approx(dice)

    kwargs, differs = MISPLACED[placement]
    ref_layer = viewer.add_labels(reference, name=f"ref {placement}", **kwargs)
    _choose(widget, pred_layer, ref_layer)
    note = _note(widget)
    warnings = _compute_and_warnings(widget, qtbot)

    assert widget.results[0]["dice"] == pytest.approx(dice)  # not resampled
    status = widget.status.value
    assert len(warnings) == 1
    for text in (note, status, warnings[0]):
        assert f"'ref {placement}' and 'col labels' are placed differently" in text, text
        assert f"({differs})" in text and "pixel by pixel" in text, text
        assert "align the layers" in text, text
    assert status.startswith("col labels vs ref")  # the scores stay first


def test_the_placement_rule_needs_no_viewer(masks):
    """``_placement.placement_warning`` on bare Labels layers (no viewer, no Qt): the
    colonoscopy mask in place, off by a fraction of a pixel or only scaled lies on the
    prediction (no warning); moved, rotated, sheared or transformed, the warning names
    both layers and what differs."""
    from napari.layers import Labels

    from napari_tmunet._placement import placement_warning

    prediction, reference = masks
    pred_layer = Labels(prediction, name="col labels")
    for name, (kwargs, _) in ALIGNED.items():
        ref_layer = Labels(reference, name=name, **kwargs)
        assert placement_warning(pred_layer, ref_layer, prediction.shape) == "", name
    for name, (kwargs, differs) in MISPLACED.items():
        ref_layer = Labels(reference, name=name, **kwargs)
        text = placement_warning(pred_layer, ref_layer, prediction.shape)
        assert text.startswith(
            f"{name!r} and 'col labels' are placed differently on the canvas ({differs}):"
        ), text


def test_a_stack_of_one_is_paired_with_its_2d_mask_and_scored_alike(widget, qtbot):
    """The ultrasound sample as a (1, H, W) image (a TIFF with a channel axis of 1),
    Segment gives a (1, H, W) output: the dock pairs it with the (H, W) mask with no
    note, and Compute scores it as the same output without its leading axis
    (tester23 D5)."""
    viewer, widget = widget
    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    image, mask = load_sample("ultrasound")
    scan = viewer.add_image(image[None], name="scan")
    output = _segment(qtbot, segment, scan)
    assert output.data.shape == (1, *mask.shape)
    scan_mask = viewer.add_labels(mask, name="scan mask")
    viewer.layers.selection.active = output

    assert widget.prediction.value is output and widget.reference.value is scan_mask
    assert _note(widget) == ""
    _compute_and_warnings(widget, qtbot)
    stacked = widget.results

    assert [row["slice"] for row in stacked] == ["0", "mean"]
    flat = viewer.add_labels(np.asarray(output.data)[0], name="scan labels 2d")
    _choose(widget, flat, scan_mask)
    _compute_and_warnings(widget, qtbot)
    assert stacked[-1]["dice"] == widget.results[-1]["dice"]
    expected = metrics.dice_score(np.asarray(output.data)[0] > 0, mask > 0)
    assert stacked[-1]["dice"] == pytest.approx(expected)
    assert 0 < expected < 1  # a real comparison, not two empty masks


@pytest.mark.skipif(not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present")
def test_masks_of_two_pictures_of_a_folder_are_said_to_be_apart(make_napari_viewer, tmp_path):
    """A dataset folder's frames share one size: before any Segment the dock may offer one
    frame's mask as the prediction and another's as the reference; the note says they
    belong to different pictures (no note said so), and none for a frame's own pair."""
    root = dataset_subset(CLINIC, tmp_path / "clinic", ("1", "101"))
    viewer = make_napari_viewer()
    viewer.open(str(root), plugin="napari-tmunet")
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    _choose(widget, viewer.layers["101 mask"], viewer.layers["1 mask"])
    assert _note(widget) == (
        "'101 mask' belongs to the picture '101' and '1 mask' to '1': choose the reference "
        "of the prediction's picture."
    )
    frame_one = np.asarray(viewer.layers["1 mask"].data)
    hand_made = viewer.add_labels(frame_one, name="1 painted", metadata={"image": "1"})
    _choose(widget, hand_made, viewer.layers["1 mask"])
    assert _note(widget) == ""


def _only_of_its_picture(layer) -> str:
    """The note on a mask shown alone while masks of other pictures of its size are open."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION, OF_ITS_PICTURE

    note = CHOOSE_PREDICTION.format(name=repr(layer.name))
    return note.replace(" is the only mask:", OF_ITS_PICTURE)


def _pair(widget) -> set[str]:
    return {widget.prediction.value.name, widget.reference.value.name}


@pytest.mark.skipif(not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present")
def test_the_dock_pairs_no_masks_of_two_pictures_of_a_folder_by_itself(
    make_napari_viewer, qtbot, tmp_path
):
    """A dataset folder of three ClinicDB frames (one size) opened with the plugin's reader,
    then Metrics: the dock chose "200 mask" vs "1 mask" and Compute scored them (tester31).
    Now a mask with no other layer of its picture stands alone, the note saying what is
    missing, also when selected; a pair chosen by hand across pictures is still scored,
    with its note; a correction of frame 1 ("1 corrected", metadata image "1") pairs with
    "1 mask" by default, and again when either of them is selected."""
    viewer = make_napari_viewer()
    widget, masks = open_with_metrics(viewer, tmp_path)
    assert {mask.metadata["image"] for mask in masks.values()} == {"1", "101", "200"}
    assert widget.prediction.value is masks["200"] is widget.reference.value  # the active
    assert _note(widget) == _only_of_its_picture(masks["200"])
    for name in ("1", "101", "200"):
        viewer.layers.selection.active = masks[name]
        assert widget.prediction.value is masks[name] is widget.reference.value, name
        assert _note(widget) == _only_of_its_picture(masks[name])

    _choose(widget, masks["101"], masks["1"])  # the user's own pair: scored, with its note
    assert _note(widget).startswith("'101 mask' belongs to the picture '101' and '1 mask'")
    _compute_and_warnings(widget, qtbot)
    assert widget.status.value.startswith("101 mask vs 1 mask: Dice")
    assert widget.export_button.enabled

    # its border trimmed by hand, as a correction
    corrected = ndimage.binary_erosion(masks["1"].data, iterations=6).astype(np.uint8)
    assert 0 < (corrected > 0).sum() < (np.asarray(masks["1"].data) > 0).sum()
    correction = viewer.add_labels(corrected, name="1 corrected", metadata={"image": "1"})
    assert widget.prediction.value is correction and widget.reference.value is masks["1"]
    assert _note(widget) == ""
    for selected in (masks["200"], masks["1"], masks["101"], correction):
        viewer.layers.selection.active = selected
        if selected.metadata["image"] == "1":
            assert _pair(widget) == {"1 mask", "1 corrected"}, selected.name
            assert _note(widget) == ""
        else:
            assert widget.prediction.value is selected is widget.reference.value
    _compute_and_warnings(widget, qtbot)
    expected = metrics.dice_score(corrected > 0, np.asarray(masks["1"].data) > 0)
    assert widget.results[-1]["dice"] == pytest.approx(expected)
    assert widget.status.value.startswith("1 corrected vs 1 mask: Dice")


@pytest.mark.skipif(not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present")
def test_a_saved_correction_reopened_beside_its_mask_pairs_with_it(
    make_napari_viewer, qtbot, tmp_path
):
    """A folder of three ClinicDB pictures, each beside its mask ("1.png", "1_mask.tif"):
    picture 1's mask corrected and saved with the plugin's writer as "1 mask.tif", the
    folder reopened: two Labels layers of picture 1, "1 mask" (the correction) and
    "1_mask". Metrics pairs them when opened, and when either is selected after another
    picture's mask (tester31: "3 mask" vs "1 mask" was the default)."""
    import shutil

    from napari_tmunet._writer import write_labels

    folder = tmp_path / "cvc"
    folder.mkdir()
    for name in ("1", "2", "3"):
        shutil.copy(CLINIC / "images" / f"{name}.png", folder / f"{name}.png")
        shutil.copy(CLINIC / "masks" / f"{name}.tif", folder / f"{name}_mask.tif")
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-tmunet")
    mask = viewer.layers["1 mask"]
    corrected = ndimage.binary_erosion(mask.data, iterations=6).astype(np.uint8)  # trimmed
    saved = folder / "1 mask.tif"
    meta = {"name": mask.name, "metadata": dict(mask.metadata)}
    assert write_labels(str(saved), corrected, meta) == [str(saved)]
    viewer.layers.clear()
    viewer.open(str(folder), plugin="napari-tmunet")
    assert viewer.layers["1 mask"].metadata["path"] == str(saved)
    assert viewer.layers["1_mask"].metadata["image"] == "1"
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    assert _pair(widget) == {"1 mask", "1_mask"} and _note(widget) == ""
    for selected in ("2 mask", "1 mask", "3 mask", "1_mask"):
        viewer.layers.selection.active = viewer.layers[selected]
        if selected.startswith("1"):
            assert _pair(widget) == {"1 mask", "1_mask"}, selected
            assert _note(widget) == ""
        else:
            assert _pair(widget) == {selected}
            assert _note(widget) == _only_of_its_picture(viewer.layers[selected])
    _compute_and_warnings(widget, qtbot)
    original = np.asarray(viewer.layers["1_mask"].data) > 0
    expected = metrics.dice_score(corrected > 0, original)
    assert widget.results[-1]["dice"] == pytest.approx(expected) and expected < 1
