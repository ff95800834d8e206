"""Fine-tune on a mask painted by hand (Layers > New Labels: which pixels were edited is
unknown), on the threaded path with the real engine (tester23 D4): the held-out strip holds
part of the mask's foreground so that the models are compared; when no strip can, the
Metrics dock's before/after rows show no scores (not 1.0000 for both models); the Metrics
hint says that a prediction is what is missing."""

from __future__ import annotations

import numpy as np
import pytest
from _view import column_keys
from test_finetune_widget import open_dock, run_one_step

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample
from napari_tmunet.data.images import read_mask
from napari_tmunet.training.finetune import (
    MIN_EDITED_PIXELS,
    MIN_TRAIN_FOREGROUND,
    NO_HELD_OUT_FOREGROUND,
    compare_models,
    holdout_strip,
)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(autouse=True)
def _ultrasound_model():
    if registry.find_model("TM-UNet ultrasound") is None:
        pytest.skip("the shipped ultrasound model is needed")


def test_unknown_edits_hold_out_a_strip_with_enough_foreground():
    """The ultrasound sample's lesion (rows 72-206 of 596): not the bottom strip (no
    foreground) but one with at least MIN_EDITED_PIXELS of it, leaving the training pieces
    MIN_TRAIN_FOREGROUND of it."""
    _, mask = load_sample("ultrasound")
    lesion = mask > 0
    axis, start, stop = holdout_strip(lesion.shape, None, lesion)
    assert axis == 0 and stop < lesion.shape[0]
    held = int(lesion[start:stop].sum())
    assert held >= MIN_EDITED_PIXELS
    assert lesion.sum() - held >= MIN_TRAIN_FOREGROUND * lesion.sum()


def paint_by_hand(viewer, painted: np.ndarray):
    """Layers > New Labels over the chosen image, then ``painted`` filled in as a brush
    would: the new layer."""
    viewer._new_labels()  # what the menu item runs
    hand = viewer.layers[-1]
    hand.data[painted] = 1
    hand.refresh()
    return hand


def metrics_dock(viewer):
    metrics = next(w for n, w in viewer.window.dock_widgets.items() if "Metrics" in n)
    return getattr(metrics, "__wrapped__", metrics)


def test_a_hand_painted_lesion_away_from_the_bottom_is_compared(
    make_napari_viewer, qtbot, tmp_path
):
    """The user paints the ultrasound sample's lesion in a new Labels layer and fine-tunes
    one step: the held-out part holds part of the lesion, both models are scored there and
    the Metrics rows carry their scores; its hint says a prediction is missing."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    image, mask = load_sample("ultrasound")
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    tune = open_dock(viewer, "Fine-tune")
    hand = paint_by_hand(viewer, mask > 0)
    assert (tune.rows[0].image.value.name, tune.rows[0].mask.value) == ("scan", hand)

    run = tmp_path / "run"
    run_one_step(qtbot, tune, run)
    result = tune.result
    assert not result["edits"]["known"]
    assert "(with part of the mask's foreground)" in result["held_out"], result["held_out"]
    valid = read_mask(run / "data" / "masks" / "01-scan-valid.png")[0]
    assert result["held_out_foreground"] == int((valid > 0).sum()) >= MIN_EDITED_PIXELS
    verdict = compare_models(result)
    assert "foreground" not in verdict["why"] and "held-out Dice" in verdict["compared"]
    assert "no foreground" not in tune.status.value + tune.details.value, tune.details.value

    metrics = metrics_dock(viewer)
    dice = [row["dice"] for row in metrics.comparison]
    assert len(dice) == 2 and all(isinstance(d, float) for d in dice), metrics.comparison
    assert NO_HELD_OUT_FOREGROUND not in metrics.comparison_note.value
    # the only mask is the one painted by hand: what is missing is a prediction
    assert metrics.pair_note.value == CHOOSE_PREDICTION.format(name=repr(hand.name))


def test_no_foreground_in_the_held_out_part_shows_no_scores(make_napari_viewer, qtbot, tmp_path):
    """A thin hand-painted band (rows 100-110 of the lesion) lies inside every strip that
    could hold part of it, and each such strip would leave nothing to train on: the
    held-out part has no foreground. The Metrics rows show no Dice, IoU or HD (not 1.0000
    for both models) and their note says why."""
    image, mask = load_sample("ultrasound")
    band = np.zeros(mask.shape, bool)
    band[100:111] = mask[100:111] > 0
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    tune = open_dock(viewer, "Fine-tune")
    paint_by_hand(viewer, band)

    run_one_step(qtbot, tune, tmp_path / "run")
    assert tune.result["held_out_foreground"] == 0
    metrics = metrics_dock(viewer)
    assert len(metrics.comparison) == 2
    for row in metrics.comparison:
        assert all(row[k] is None for k in ("dice", "iou", "precision", "hd_px")), row
    table = metrics.comparison_table.native
    headers = column_keys(table)
    cells = [table.item(r, headers.index("dice")).text() for r in range(table.rowCount())]
    assert cells == ["", ""], cells
    names, note = metrics.comparison_note.value.split("\n", 1)  # the models, then the part
    assert names.startswith("before: TM-UNet ") and note.startswith(NO_HELD_OUT_FOREGROUND)
    assert "no foreground" in tune.details.value, tune.details.value
