"""The Segment dock with several CVC-ClinicDB frames open (tester26 D4, D5, D9; found on
Kvasir-SEG), on the threaded path in a real viewer with the shipped colonoscopy model: one
frame is shown at a time and each result is shown or hidden with its frame; the label
settings act on the result of the frame shown or selected, and say which; Cancel during
Segment all says how many images were segmented and which are left."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _paths import DATASETS, require
from test_segment_choices import segment_dock
from test_segment_widget import wait_done

pytestmark = pytest.mark.gui

CLINIC = DATASETS / "CVC-ClinicDB" / "images"
# four frames of one size (384 x 288) from different scenes, where the shipped colonoscopy
# model finds the polyp (Dice 0.96..0.99 in resize mode)
FRAMES = ("45", "137", "446", "493")
BUSY_CPU_MS = 600_000  # the most a run may take on a shared, busy CPU (a few s when idle)


@pytest.fixture(autouse=True)
def _clinic_and_model():
    require(CLINIC, model="TM-UNet colonoscopy")


def open_frames(viewer, count: int = 3) -> list:
    """Open ``count`` CVC-ClinicDB frames together, as napari opens files dropped at once."""
    paths = [str(CLINIC / f"{stem}.png") for stem in FRAMES[:count]]
    return viewer.open(paths, plugin="napari")


def shown(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.visible]


def segment_all(qtbot, widget) -> None:
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget, timeout=BUSY_CPU_MS)
    assert widget.status.value == "done", widget.status.value


def outputs(widget, frames) -> list:
    return [widget._output_of(frame).labels for frame in frames]


def test_frames_dropped_on_the_dock_are_shown_one_at_a_time(make_napari_viewer, qtbot):
    """Three frames dropped with the Segment dock open: the top one (napari's active) is
    the one shown and chosen, the others hidden (all three were shown, stacked); after
    Segment all, each result is shown or hidden with its frame, so only the top frame's
    mask is drawn over it. Clicking another frame's eye, picking one in the Image box, or
    selecting a hidden one in the layer list shows it alone, with its mask; the hidden
    layer napari selects after a deletion is not shown."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    frames = open_frames(viewer)
    top = frames[-1]
    assert shown(viewer) == [top.name]
    assert widget.image.value is top

    segment_all(qtbot, widget)
    labels = outputs(widget, frames)
    assert [layer.visible for layer in labels] == [frame.visible for frame in frames]
    assert shown(viewer) == [top.name, f"{top.name} labels"]

    frames[0].visible = True  # the user clicks the first frame's eye
    assert shown(viewer) == [frames[0].name, f"{frames[0].name} labels"]
    assert widget.image.value is frames[0]

    combo = widget.image.native  # the user picks the second frame in the Image box
    combo.setCurrentIndex(combo.findText(frames[1].name))
    combo.activated.emit(combo.currentIndex())
    assert widget.image.value is frames[1]
    assert shown(viewer) == [frames[1].name, f"{frames[1].name} labels"]

    viewer.layers.selection.active = top  # the user selects a hidden frame in the list
    assert shown(viewer) == [top.name, f"{top.name} labels"]
    assert widget.image.value is top
    # its labels deleted: napari selects the hidden layer under them, which stays hidden
    viewer.layers.selection.active = viewer.layers[f"{top.name} labels"]
    viewer.layers.remove_selected()
    assert viewer.layers.selection.active is viewer.layers[f"{frames[1].name} labels"]
    assert shown(viewer) == [top.name] and widget.image.value is top


def test_segment_all_on_frames_opened_before_the_dock_shows_the_chosen_one(
    make_napari_viewer, qtbot
):
    """Three frames opened together (all shown, stacked), then the dock: Segment all keeps
    the chosen frame (the active, top one) and its mask shown, and hides the two under it
    with their masks, which were drawn over it (tester26 D4)."""
    viewer = make_napari_viewer()
    frames = open_frames(viewer)
    assert shown(viewer) == [frame.name for frame in frames]  # napari's own way
    widget = segment_dock(viewer)
    top = frames[-1]
    assert widget.image.value is top
    segment_all(qtbot, widget)
    assert shown(viewer) == [top.name, f"{top.name} labels"]
    assert viewer.layers.selection.active is widget._output_of(top).labels
    for frame, layer in zip(frames, outputs(widget, frames), strict=True):
        assert layer.visible is frame.visible, frame.name


def test_the_threshold_acts_on_the_frame_shown_and_says_which(make_napari_viewer, qtbot):
    """Frames opened as the launcher opens them (the first shown, the others hidden),
    Segment all, then the user hides the first frame and shows the second with their eyes:
    the threshold re-derives the second's mask, naming it (it changed the hidden first
    one's), and the second's mask is shown with it, the first's hidden. With the third
    frame moved beside them (both shown), selecting its mask in the layer list makes the
    Confidence act on it (tester26 D5)."""
    viewer = make_napari_viewer()
    frames = open_frames(viewer)
    for frame in frames[1:]:
        frame.visible = False
    viewer.layers.selection.active = frames[0]
    widget = segment_dock(viewer)
    assert widget.image.value is frames[0]
    segment_all(qtbot, widget)
    first, second, third = outputs(widget, frames)
    assert shown(viewer) == [frames[0].name, first.name]
    made = [np.array(layer.data) for layer in (first, second, third)]

    frames[0].visible = False  # the user looks at the second frame: eye clicks
    frames[1].visible = True
    widget.threshold.value = 0.05
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=30_000)
    assert widget.status.value.startswith(f"{second.name!r}: ")  # was the first's
    assert "threshold 0.05" in widget.status.value
    assert np.count_nonzero(second.data) > np.count_nonzero(made[1])
    np.testing.assert_array_equal(first.data, made[0])
    np.testing.assert_array_equal(third.data, made[2])
    assert shown(viewer) == [frames[1].name, second.name]
    assert widget.image.value is frames[1]

    width = frames[1].extent.world[1][-1] + 10
    frames[2].translate = (0, width)  # beside the second frame, not over it
    third.translate = (0, width)
    frames[2].visible = True
    assert shown(viewer) == [frames[1].name, frames[2].name, second.name, third.name]
    viewer.layers.selection.active = frames[1]
    assert widget.image.value is frames[1]
    viewer.layers.selection.active = third  # the user selects the third frame's mask
    assert widget.image.value is frames[2]
    widget.min_confidence.value = 0.97
    qtbot.waitUntil(lambda: widget.status.value.startswith(f"{third.name!r}: "), timeout=30_000)
    assert third.metadata["label_options"]["min_confidence"] == pytest.approx(0.97)
    assert second.metadata["label_options"]["min_confidence"] == 0


def test_cancel_during_segment_all_says_how_many_images_are_left(
    make_napari_viewer, qtbot, notices, monkeypatch
):
    """Four frames, Segment all cancelled during the second one's forward pass: the status
    and the notice say that 1 of 4 was segmented and name the 3 left (tester26 D9)."""
    from napari_tmunet import inference

    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    frames = open_frames(viewer, count=4)
    widget.mode.value = "resize"  # one forward pass per frame
    passes, real_forward = [], inference.forward_logits

    def held(model, x, amp=True):
        if threading.current_thread().name != "tmunet-prepare":  # not the dock's warm-up
            passes.append(x.shape)
            while len(passes) == 2 and not widget.worker.abort_requested:
                threading.Event().wait(0.01)  # the second frame's pass waits for Cancel
        return real_forward(model, x, amp)

    monkeypatch.setattr(inference, "forward_logits", held)
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: len(passes) >= 2 and bool(widget._results), timeout=BUSY_CPU_MS)
    widget.cancel_button.clicked.emit()
    wait_done(qtbot, widget, timeout=60_000)
    # the frames are segmented in the layer list's order: the first one is done
    assert [image for image, _ in widget._results] == frames[:1]
    names = ", ".join(repr(frame.name) for frame in frames[1:])
    expected = f"cancelled: 1 of 4 images segmented, 3 left: {names}"
    assert widget.status.value == expected
    assert f"TM-UNet segmentation {expected}." in notices["info"]
