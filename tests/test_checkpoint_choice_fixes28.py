"""A checkpoint file chosen in the Segment and Fine-tune docks is read when it is chosen
(tester28 D3, D4), on the threaded path in a real viewer with a CVC-ClinicDB frame: a
picture chosen as the checkpoint is flagged at once, naming the file and what to do, and
Segment / Start are refused; choosing a good checkpoint after a failed run clears the
failure from the status line."""

from __future__ import annotations

import shutil

import pytest
import torch
from _paths import DATASETS, require
from test_finetune_dock_fixes import open_dock
from test_segment_choices import segment, segment_dock

from napari_tmunet import registry
from napari_tmunet._segment_widget import CHECKPOINT_CHOICE

pytestmark = pytest.mark.gui

FRAME = DATASETS / "CVC-ClinicDB" / "images" / "45.png"
CHECK_MS = 60_000  # the first read imports torch in the worker: seconds on a busy machine


@pytest.fixture(autouse=True)
def _frame_and_model():
    require(FRAME, model="TM-UNet colonoscopy")


@pytest.fixture
def picture(tmp_path):
    """A real CVC-ClinicDB frame, chosen by mistake as the checkpoint."""
    return shutil.copy(FRAME, tmp_path / "frame.png")


@pytest.fixture
def good(tmp_path):
    """A real checkpoint of the user's: the shipped colonoscopy model, copied."""
    return shutil.copy(registry.find_model("TM-UNet colonoscopy").path, tmp_path / "own.pt")


def choose_file(widget, path) -> None:
    widget.model.value = CHECKPOINT_CHOICE
    widget.checkpoint.value = path


def test_a_picture_chosen_as_checkpoint_is_flagged_when_chosen(
    make_napari_viewer, qtbot, picture, good, errors
):
    """D3: the reason line says at once that the picture cannot run, naming it and what to
    do, not "Runs frame.png"; Segment is refused with the same words, adding nothing.
    D4: a good checkpoint chosen next is the one the reason line names, the status holds
    no failure, and Segment runs it."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    (frame,) = viewer.open(str(FRAME), plugin="napari")
    choose_file(widget, picture)
    qtbot.waitUntil(lambda: widget.model_reason.value.startswith("Cannot run"), timeout=CHECK_MS)
    reason = widget.model_reason.value
    assert "Runs" not in reason
    assert str(picture) in reason and "not a checkpoint" in reason, reason
    assert "use another checkpoint" in reason, reason

    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=CHECK_MS)
    assert len(errors) == 1 and str(picture) in errors[0], errors
    assert [layer.name for layer in viewer.layers] == [frame.name]  # nothing added

    widget.checkpoint.value = good
    qtbot.wait(500)  # its read ends (and finds nothing wrong) in this time
    assert widget.model_reason.value.startswith("Runs own.pt"), widget.model_reason.value
    assert "failed" not in widget.status.value and "frame.png" not in widget.status.value
    segment(qtbot, widget)
    assert widget.last_layer is not None and widget.last_layer.data.any()


def test_a_new_model_clears_the_last_runs_failure(make_napari_viewer, qtbot, good, tmp_path):
    """D4: a checkpoint that reads but cannot run (NaN weights: the run fails, saying
    so); choosing a good one clears that failure from the status line."""
    payload = torch.load(good, map_location="cpu", weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name][...] = float("nan")
    diverged = tmp_path / "diverged.pt"
    torch.save(payload, diverged)

    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    viewer.open(str(FRAME), plugin="napari")
    choose_file(widget, diverged)
    widget.segment()  # runs once the file is read (it reads, so it runs)
    qtbot.waitUntil(lambda: widget.worker is not None, timeout=CHECK_MS)  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=CHECK_MS)
    assert widget.status.value.startswith("failed:") and "NaN" in widget.status.value

    widget.checkpoint.value = good
    assert widget.model_reason.value.startswith("Runs own.pt")
    assert widget.status.value == ""


def test_finetune_flags_a_picture_chosen_as_checkpoint(make_napari_viewer, qtbot, picture, errors):
    """D3 in the Fine-tune dock: a picture chosen as the model to start from is flagged
    under the model when chosen, and Start is refused with the same words."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    choose_file(tune, picture)
    qtbot.waitUntil(lambda: "cannot start from" in tune.active_label.value, timeout=CHECK_MS)
    note = tune.active_label.value
    assert not tune.active_label.native.isHidden()
    assert str(picture) in note and "use another checkpoint" in note, note
    tune.start()
    assert tune.worker is None and not tune.running
    assert str(picture) in tune.status.value and "not a checkpoint" in tune.status.value
    assert errors == [tune.status.value]
