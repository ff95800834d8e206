"""Metrics scores nuclei as nuclei (tester37 #2, fix-171): where both layers hold instance
ids (a nuclei model's output and a CPM-15 mask) the dock shows, per slice and for all
slices, the objects matched at IoU > 0.5, missed and extra, PQ and AJI, in a table of
their own that fits the dock at 1366 x 768, and exports them; a binary reference (a
MoNuSeg mask, 0/255) is scored pixel by pixel as before. The numbers are
``metrics.instance_scores``' called directly."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from _paths import DATASETS, EXTRA, require
from _view import column_keys, columns_fit, open_dock

from napari_tmunet.data.images import (
    holds_instance_labels,
    mask_labels,
    read_image,
    read_mask_labels,
)
from napari_tmunet.evaluation import score_labels
from napari_tmunet.metrics import instance_scores

CPM = EXTRA / "CPM15"
TILE = "image03"  # one of the three CPM-15 tiles the shipped nuclei model never trained on
MONUSEG = DATASETS / "MoNuSeg"
MONUSEG_TILE = "TCGA-2Z-A9J9-01A-01-TS1"  # a test tile (test.txt)
CVC_MASK = DATASETS / "CVC-ClinicDB" / "masks" / "20.tif"
NUCLEI = "TM-UNet nuclei"
OBJECTS = ("matched", "missed", "extra", "pq", "aji")
PIXELS = ("dice", "hd_px", "hd95_px", "iou", "precision", "recall")
BUSY_CPU_MS = 600_000  # the most a Segment run may take on a shared, busy CPU


def cpm_ids(name: str = TILE) -> np.ndarray:
    require(CPM / "masks" / f"{name}.png")
    return read_mask_labels(CPM / "masks" / f"{name}.png")[0]


def grown(ids: np.ndarray) -> np.ndarray:
    """A prediction made of a reference: every object grown by 2 px, every 7th dropped,
    two neighbours merged."""
    from skimage.segmentation import expand_labels

    pred = expand_labels(ids, 2).astype(np.int32)
    pred[np.isin(pred, np.unique(ids)[1::7])] = 0
    first, second = np.unique(pred)[1:3]
    pred[pred == second] = first
    return pred


def object_row(scores: dict) -> dict:
    return {
        "matched": scores["tp"],
        "missed": scores["fn"],
        "extra": scores["fp"],
        "pq": pytest.approx(scores["pq"]),
        "aji": pytest.approx(scores["aji"]),
    }


# ----------------------------------------------------------------------- the rule, the core


def test_instance_ids_are_told_from_binary_masks_by_one_rule():
    """CPM-15's uint16 ids are instances; MoNuSeg's 0/255 grey + alpha mask, as napari's
    File > Open gives it and as the dock reads it, is not; nor a CVC-ClinicDB mask's raw
    0/255 with its stray edge values 1..127, a 0/1 mask, bool, one object, or negative
    values; 8-bit labels painted by hand (1, 2, 3) are."""
    require(MONUSEG / "masks" / f"{MONUSEG_TILE}.png")
    require(CVC_MASK)
    assert holds_instance_labels(cpm_ids())
    monuseg = np.asarray(read_image(MONUSEG / "masks" / f"{MONUSEG_TILE}.png"))
    assert not holds_instance_labels(mask_labels(monuseg)[0])
    assert not holds_instance_labels(np.stack([monuseg[..., 0]] * 2))  # 0/255 as is
    cvc = np.asarray(read_image(CVC_MASK))
    assert len(np.unique(cvc)) > 2  # its stray values
    assert not holds_instance_labels(cvc)
    binary = cpm_ids() > 0
    assert not holds_instance_labels(binary) and not holds_instance_labels(binary.astype(np.uint8))
    assert not holds_instance_labels(binary.astype(np.int32) * 7)  # one object id
    assert not holds_instance_labels(binary.astype(np.int32) - 1)  # -1 and 0
    painted = np.zeros((20, 20), np.uint8)
    painted[2:5, 2:5], painted[10:15, 10:15] = 1, 2
    assert holds_instance_labels(painted)


def test_a_stacks_objects_are_scored_per_slice_and_all_together():
    """Two CPM-15 masks (cut to one size) as a stack, each against its grown copy: each
    row's object columns are ``instance_scores`` of its slice; the mean row's are those
    of the two slices side by side in one image (all objects together, not a mean)."""
    refs = [cpm_ids(name) for name in (TILE, "image04")]
    h, w = (min(r.shape[i] for r in refs) for i in (0, 1))
    ref = np.stack([r[:h, :w] for r in refs]).astype(np.int32)
    pred = np.stack([grown(r) for r in ref])
    rows = score_labels(pred, ref)
    for index in range(2):
        expected = object_row(instance_scores(pred[index], ref[index]))
        assert {k: rows[index][k] for k in OBJECTS} == expected
    offset = int(ref.max()) + int(pred.max()) + 1  # the second slice's ids apart
    side_by_side = instance_scores(
        np.hstack([pred[0], np.where(pred[1] > 0, pred[1] + offset, 0)]),
        np.hstack([ref[0], np.where(ref[1] > 0, ref[1] + offset, 0)]),
    )
    assert {k: rows[-1][k] for k in OBJECTS} == object_row(side_by_side)
    assert rows[-1]["matched"] == rows[0]["matched"] + rows[1]["matched"]
    # a binary reference: pixel scores only, as before
    assert not set(OBJECTS) & set().union(*score_labels(pred, ref > 0))


def test_overlaps_of_large_ids_are_found_without_a_table_of_every_pair(monkeypatch):
    """Ids far above the pixel count and more label pairs than the dense table holds
    (``DENSE_PAIRS_MAX``) give the same scores: the pairs are found by sorting."""
    import napari_tmunet.metrics as metrics

    ref = cpm_ids()[:200, :200].astype(np.int64)
    pred = grown(ref).astype(np.int64)
    expected = instance_scores(pred, ref)
    monkeypatch.setattr(metrics, "DENSE_PAIRS_MAX", 0)
    far = instance_scores(np.where(pred > 0, pred * 10**9, 0), np.where(ref > 0, ref + 10**12, 0))
    assert far == pytest.approx(expected)


# ----------------------------------------------------------------------- the dock


def window_with(make_napari_viewer, qtbot):
    """A 1366 x 768 napari window with Segment, Metrics and Fine-tune open, stacked on the
    right as napari places them: (viewer, Segment's widget, Metrics' widget)."""
    from qtpy.QtGui import QGuiApplication

    if QGuiApplication.platformName() != "xcb":  # offscreen Qt draws in a larger font
        pytest.skip("needs the app on a screen (xcb)")
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    segment, metrics, _ = (open_dock(viewer, name) for name in ("Segment", "Metrics", "Fine-tune"))
    qtbot.waitUntil(lambda: window.width() == 1366 and metrics.native.isVisible())
    return viewer, segment, metrics


def segment_with_nuclei(qtbot, segment, image):
    """Click Segment on ``image`` (threaded path); the Labels layer it made, by the shipped
    nuclei model that the dock chose for the H&E tile."""
    segment.image.value = image
    segment.segment()
    qtbot.waitUntil(lambda: segment.worker is not None or segment.status.value, timeout=60_000)
    qtbot.waitUntil(lambda: not segment.running, timeout=BUSY_CPU_MS)
    assert segment.status.value == "done", segment.status.value
    labels = segment._output_of(image).labels
    assert "nuclei" in str(labels.metadata.get("model")).lower()
    return labels


def compute(qtbot, metrics):
    """Click Compute (the worker path) and wait for its rows."""
    metrics.compute_button.native.click()
    assert metrics._worker is not None
    qtbot.waitUntil(lambda: metrics._worker is None and bool(metrics.results), timeout=120_000)
    qtbot.wait(500)


def shown_objects(metrics) -> list[dict]:
    """The objects table's cells, as its rows' dicts by column key."""
    table = metrics.objects_table.native
    keys = column_keys(table)
    return [
        {key: table.item(row, col).text() for col, key in enumerate(keys)}
        for row in range(table.rowCount())
    ]


def test_a_segmented_cpm_tile_shows_its_nuclei_matched_missed_extra_pq_aji(
    make_napari_viewer, qtbot, tmp_path
):
    """A CPM-15 tile with its uint16 instance mask as Labels ("image03 mask", as the
    launcher opens it), segmented by the nuclei model (instance ids) in a 1366 x 768
    window with three docks: Compute shows the objects table (slice 0, then all) with
    instance_scores' numbers, short headers with full names in tooltips, fitting the dock
    beside the pixel table, which no longer shows the pixel F1 (= Dice) that read as a
    detection score; the status line and the title say how many objects each layer holds
    and how many match; the CSV has the object columns and the pixel F1."""
    require(CPM / "images" / f"{TILE}.png", model=NUCLEI)
    viewer, segment, metrics = window_with(make_napari_viewer, qtbot)
    image = viewer.add_image(read_image(CPM / "images" / f"{TILE}.png"), name=TILE)
    ids = cpm_ids()
    reference = viewer.add_labels(ids, name=f"{TILE} mask")
    prediction = segment_with_nuclei(qtbot, segment, image)
    assert metrics.prediction.value is prediction and metrics.reference.value is reference
    compute(qtbot, metrics)

    expected = instance_scores(np.asarray(prediction.data), ids)
    assert expected["tp"] > 100 and expected["fp"] > 0 and expected["fn"] > 0
    for row in metrics.results:
        assert {k: row[k] for k in OBJECTS} == object_row(expected)  # one slice
    assert not metrics.objects_table.native.isHidden()
    table = metrics.objects_table.native
    assert column_keys(table) == ["slice", *OBJECTS]
    cells = shown_objects(metrics)
    assert [row["slice"] for row in cells] == ["0", "all"]
    assert cells[-1]["matched"] == str(expected["tp"])
    assert cells[-1]["missed"] == str(expected["fn"])
    assert cells[-1]["extra"] == str(expected["fp"])
    assert cells[-1]["pq"] == f"{expected['pq']:.3f}"
    assert cells[-1]["aji"] == f"{expected['aji']:.3f}"
    for index, key in enumerate(column_keys(table)[1:], start=1):
        header = table.horizontalHeaderItem(index)
        assert header.toolTip() and len(header.text()) <= 7, (key, header.text())
    assert "false negatives" in table.horizontalHeaderItem(2).toolTip()
    assert "Panoptic quality" in table.horizontalHeaderItem(4).toolTip()
    assert "all slices" in table.item(1, 0).toolTip().lower()
    for shown in (metrics.table.native, table):
        widths = [shown.columnWidth(c) for c in range(shown.columnCount())]
        assert columns_fit(shown, metrics.body), (widths, shown.viewport().width())
    assert column_keys(metrics.table.native) == ["slice", *PIXELS]  # no F1 (= Dice)
    n_ref, n_pred = expected["ref_objects"], expected["pred_objects"]
    assert f"{expected['tp']} of {n_ref} matched (IoU > 0.5), {expected['fp']} extra" in (
        metrics.status.value
    )
    assert f"PQ {expected['pq']:.4f}, AJI {expected['aji']:.4f}" in metrics.status.value
    title = metrics.objects_title.value.replace("\u200b", "")  # wrap()'s break hints
    assert f"{n_pred} objects in '{prediction.name}', {n_ref} in '{TILE} mask'" in title

    with open(metrics.export_csv(tmp_path / "m.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["slice"] for row in rows] == ["0", "mean"]
    assert int(rows[-1]["matched"]) == expected["tp"] and int(rows[-1]["extra"]) == expected["fp"]
    assert float(rows[-1]["aji"]) == pytest.approx(expected["aji"])
    assert float(rows[0]["f1"]) == pytest.approx(float(rows[0]["dice"]))

    # a stroke makes them stale: both tables greyed, Export off
    with prediction.block_history():
        prediction.paint((5, 5), int(prediction.data.max()) + 1)
    qtbot.waitUntil(lambda: bool(metrics._stale), timeout=10_000)
    assert not table.isEnabled() and not metrics.table.native.isEnabled()


def test_a_cpm_mask_opened_with_file_open_is_scored_object_by_object(make_napari_viewer, qtbot):
    """The CPM-15 mask opened with napari's File > Open is a uint16 Image layer (tester37
    #8): the dock reads its ids, not only its foreground, and scores the objects as
    instance_scores does."""
    require(CPM / "images" / f"{TILE}.png", model=NUCLEI)
    viewer = make_napari_viewer()
    segment, metrics = open_dock(viewer, "Segment"), open_dock(viewer, "Metrics")
    image = viewer.add_image(read_image(CPM / "images" / f"{TILE}.png"), name=TILE)
    (mask,) = viewer.open(str(CPM / "masks" / f"{TILE}.png"), plugin="napari")
    assert mask._type_string == "image" and mask.data.dtype == np.uint16
    prediction = segment_with_nuclei(qtbot, segment, image)
    metrics.prediction.value, metrics.reference.value = prediction, mask
    compute(qtbot, metrics)
    expected = instance_scores(np.asarray(prediction.data), cpm_ids())
    assert {k: metrics.results[-1][k] for k in OBJECTS} == object_row(expected)
    assert not metrics.objects_table.native.isHidden()


def test_a_monuseg_tiles_binary_mask_is_scored_pixel_by_pixel(make_napari_viewer, qtbot, tmp_path):
    """A MoNuSeg tile's mask is binary (0/255, grey + alpha; MoNuSeg ships no instance
    masks here): against the nuclei model's instance ids the pair is scored by pixels only,
    as before: no objects table, no object words, no object columns in the CSV."""
    require(MONUSEG / "images" / f"{MONUSEG_TILE}.tif", model=NUCLEI)
    viewer = make_napari_viewer()
    segment, metrics = open_dock(viewer, "Segment"), open_dock(viewer, "Metrics")
    image = viewer.add_image(read_image(MONUSEG / "images" / f"{MONUSEG_TILE}.tif"))
    (mask,) = viewer.open(str(MONUSEG / "masks" / f"{MONUSEG_TILE}.png"), plugin="napari")
    prediction = segment_with_nuclei(qtbot, segment, image)
    assert holds_instance_labels(np.asarray(prediction.data))  # the prediction has ids
    metrics.prediction.value, metrics.reference.value = prediction, mask
    compute(qtbot, metrics)
    assert metrics.results[-1]["dice"] > 0.5
    assert not set(OBJECTS) & set().union(*metrics.results)
    assert metrics.objects_table.native.isHidden() and metrics.objects_title.native.isHidden()
    assert "Objects" not in metrics.status.value
    with open(metrics.export_csv(tmp_path / "m.csv"), newline="") as handle:
        header = next(csv.reader(handle))
    assert "f1" in header and not set(OBJECTS) & set(header)
