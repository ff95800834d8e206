"""Segment dock on the threaded path, real CVC-ClinicDB frames and real files (tester28):

A. Segment all on several frames in a 1366 x 768 window as the launcher opens it: the
   long summary scrolled the dock down and the Image and Model boxes out of view; now
   they stay in view and the summary scrolls in its own box, from its first line.
B. Segment (or Fine-tune's Start) clicked while the checkpoint file chosen a moment ago
   is still being read: the run started on a picture renamed .pt and failed with the
   loader's message; now the dock says "checking X.pt..." and, once it is read, refuses
   with the check's words on the reason line, or runs a good file.
"""

from __future__ import annotations

import shutil

import pytest
from _paths import DATASETS, require
from _view import in_view
from test_checkpoint_choice_fixes28 import CHECK_MS, choose_file
from test_finetune_dock_fixes import open_dock
from test_segment_choices import segment_dock

from napari_tmunet import registry

pytestmark = pytest.mark.gui

FRAMES = DATASETS / "CVC-ClinicDB" / "images"
NAMES = ["1", "2", "3", "4", "5", "6"]  # six frames: a summary of some 24 wrapped lines


@pytest.fixture(autouse=True)
def _frames_and_model():
    require(FRAMES / "1.png", model="TM-UNet colonoscopy")


@pytest.fixture
def picture(tmp_path):
    """A real CVC-ClinicDB frame renamed .pt: chosen as the checkpoint by mistake."""
    return shutil.copy(FRAMES / "45.png", tmp_path / "frame.pt")


@pytest.fixture
def good(tmp_path):
    """A real checkpoint of the user's: the shipped colonoscopy model, copied."""
    return shutil.copy(registry.find_model("TM-UNet colonoscopy").path, tmp_path / "own.pt")


def test_segment_clicked_while_a_bad_checkpoint_is_read_waits_and_refuses_it(
    make_napari_viewer, qtbot, picture, errors
):
    """Segment clicked at once after choosing the picture (its read has not ended: its
    result comes through the event loop): no run starts on it; the status says it is
    being checked; then the reason line says why it cannot run, Segment is refused with
    the same words, and no run, no failed status, nothing added."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    (frame,) = viewer.open(str(FRAMES / "45.png"), plugin="napari")
    choose_file(widget, picture)
    widget.segment()
    assert widget.worker is None and not widget.running  # no run on an unread file
    assert widget.status.value == "checking frame.pt..."
    qtbot.waitUntil(lambda: widget.model_reason.value.startswith("Cannot run"), timeout=CHECK_MS)
    reason = widget.model_reason.value
    assert reason.startswith("Cannot run frame.pt: ") and "not a checkpoint" in reason, reason
    qtbot.wait(100)
    assert widget.worker is None and not widget.running
    assert widget.status.value == ""  # not "failed: ...": nothing ran
    assert len(errors) == 1 and str(picture) in errors[0], errors
    assert [layer.name for layer in viewer.layers] == [frame.name]
    assert widget.segment_button.enabled


def test_segment_clicked_while_a_good_checkpoint_is_read_runs_it_once_read(
    make_napari_viewer, qtbot, good, errors
):
    """A good checkpoint file clicked at once: "checking own.pt...", then the run starts
    by itself on it and segments the frame."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    viewer.open(str(FRAMES / "45.png"), plugin="napari")
    choose_file(widget, good)
    widget.segment()
    assert widget.status.value == "checking own.pt..." and not widget.running
    qtbot.waitUntil(lambda: widget.worker is not None, timeout=CHECK_MS)  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=CHECK_MS)
    assert widget.status.value == "done", widget.status.value
    assert widget.last_layer is not None and widget.last_layer.data.any()
    assert widget.last_layer.metadata["model"] == str(good)
    assert errors == []


def test_segment_all_clicked_twice_while_reading_runs_once(make_napari_viewer, qtbot, good):
    """Two clicks while the file is read (Segment, then Segment all): the last one is
    carried out, once."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    viewer.open(str(FRAMES / "45.png"), plugin="napari")
    choose_file(widget, good)
    widget.segment()
    widget.segment_all()
    runs = []
    qtbot.waitUntil(lambda: widget.worker is not None, timeout=CHECK_MS)
    runs.append(widget.worker)
    qtbot.waitUntil(lambda: not widget.running, timeout=CHECK_MS)
    qtbot.wait(200)
    assert widget.worker is runs[0] and widget.status.value == "done"
    assert [layer.name for layer in viewer.layers] == ["45", "45 labels"]


def test_finetune_start_clicked_while_a_bad_checkpoint_is_read_refuses_it(
    make_napari_viewer, qtbot, picture, errors
):
    """Fine-tune: Start clicked at once after choosing the picture: "checking frame.pt...",
    then refused with the check's words (not another reason, e.g. that there is nothing
    to train on)."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    choose_file(tune, picture)
    tune.start()
    assert tune.worker is None and not tune.running
    assert tune.status.value == "checking frame.pt..."
    qtbot.waitUntil(lambda: "not a checkpoint" in tune.status.value, timeout=CHECK_MS)
    assert str(picture) in tune.status.value
    assert "cannot start from" in tune.active_label.value
    assert errors == [tune.status.value]
    assert tune.worker is None and not tune.running


@pytest.mark.usefixtures("launcher_app")
def test_segment_all_keeps_image_and_model_in_view_and_scrolls_the_summary_in_its_box(qtbot):
    """``napari-tmunet`` on six CVC-ClinicDB frames in a 1366 x 768 window, Segment all
    clicked with the mouse: the dock did not scroll the Image and Model boxes out of view
    (it scrolled 329 px to show the summary's 24 lines); the summary's box is in view,
    shows its first line, scrolls the rest itself, and the status shows under it."""
    from qtpy.QtCore import QPoint, Qt
    from test_dock_menu_scroll import launch

    paths = [str(FRAMES / f"{name}.png") for name in NAMES]
    viewer, segment = launch(qtbot, *paths, "--device", "cpu", size=(1366, 768))
    try:
        body = segment.body
        assert in_view(body, segment.image) and in_view(body, segment.model)
        qtbot.mouseClick(segment.segment_all_button.native, Qt.MouseButton.LeftButton)
        assert segment.worker is not None  # the threaded path
        qtbot.waitUntil(lambda: not segment.running, timeout=600_000)
        assert segment.status.value == "done", segment.status.value
        assert len(segment.summary.value.splitlines()) == len(NAMES)
        qtbot.wait(800)  # the scroll follows Qt's layout for half a second
        assert in_view(body, segment.image) and in_view(body, segment.model)
        for row in (segment.image, segment.model):  # not hidden behind anything either
            assert row.native.visibleRegion().boundingRect() == row.native.rect()
        box = segment.summary.native.parentWidget().parentWidget().parentWidget()
        viewport = body.scroll_area.viewport()
        top = box.mapTo(viewport, QPoint(0, 0)).y()
        assert 0 <= top and top + box.height() <= viewport.height(), (top, box.height())
        bar = box.verticalScrollBar()
        assert bar.maximum() > 0 and bar.value() == 0  # longer than its box; its first line
        label = segment.summary.native
        assert box.height() < label.height()  # the rest is scrolled to in the box
        assert label.mapTo(box.viewport(), QPoint(0, 0)).y() == 0
        assert not segment.status.native.visibleRegion().isEmpty()  # "done" shows
    finally:
        viewer.close()
