"""Metrics dock (review 135): the rule that masks of different pictures are never paired
by the dock lives in its candidates (``_candidates``, ``_pair_rank``); the fingerprints
of the scored data are taken in Compute's worker, and every check that they are current
(a stroke, a refresh, new data) hashes the layers in a worker (a 60 x 1024 x 1024
stack's first stroke stalled the GUI 0.6 s: bench/metrics_stale_check.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _clinic_frames import CLINIC, mask_stack, open_with_metrics
from scipy import ndimage

from napari_tmunet import _metrics_widget

pytestmark = pytest.mark.gui

needs_clinic = pytest.mark.skipif(
    not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present"
)
STALE = "changed after these scores: Compute again"


def _names(layers) -> list[str]:
    return [layer.name for layer in layers]


@needs_clinic
def test_the_candidates_leave_out_masks_of_other_pictures(make_napari_viewer, tmp_path):
    """A dataset folder of three ClinicDB frames (one size), a correction of frame 1 and a
    mask painted by hand that names no picture: a layer's candidates are the layers of its
    shape, never one of another picture (rank OTHER_PICTURE, either way round); the one
    that names no picture may pair with any; the pair note's words are those of before."""
    from napari_tmunet._metrics_widget import OTHER_PICTURE, _pair_rank, _pictures_apart

    viewer = make_napari_viewer()
    widget, masks = open_with_metrics(viewer, tmp_path)
    frame_one = np.asarray(masks["1"].data)
    corrected = ndimage.binary_erosion(frame_one, iterations=6).astype(np.uint8)
    correction = viewer.add_labels(corrected, name="1 corrected", metadata={"image": "1"})
    painted = viewer.add_labels(corrected.copy(), name="painted")  # names no picture

    assert _names(widget._candidates(correction)) == ["1 mask"]
    assert _names(widget._candidates(correction, references=False)) == ["1 mask", "painted"]
    assert _names(widget._candidates(masks["101"], references=False)) == ["painted"]
    assert widget._candidates(masks["101"]) == []
    assert _names(widget._candidates(painted)) == ["1 mask", "101 mask", "200 mask"]
    assert widget._reference_for(correction) is masks["1"]
    for name in ("101", "200"):
        assert _pair_rank(correction, masks[name]) == OTHER_PICTURE
        assert _pair_rank(masks[name], correction) == OTHER_PICTURE
    assert _pair_rank(correction, masks["1"]) == 2 and _pair_rank(painted, masks["1"]) == 0
    assert _pictures_apart(correction, masks["1"]) == ""
    assert _pictures_apart(masks["101"], masks["1"]) == (
        "'101 mask' belongs to the picture '101' and '1 mask' to '1': choose the reference "
        "of the prediction's picture."
    )


class _HashSpy:
    """``hashlib`` for the Metrics dock, noting each content hash's thread and bytes."""

    def __init__(self) -> None:
        import hashlib

        self.calls: list[tuple[bool, int]] = []  # (on the GUI thread, bytes hashed)
        self._hashlib = hashlib

    def blake2b(self, data=b"", **kwargs):
        spy, digest = self, self._hashlib.blake2b(data, **kwargs)

        class _Noted:
            def __init__(self) -> None:
                spy._note(data)

            def update(self, more) -> None:
                spy._note(more)
                digest.update(more)

            def hexdigest(self) -> str:
                return digest.hexdigest()

        return _Noted()

    def _note(self, data) -> None:
        size = memoryview(data).nbytes if data else 0
        if size:
            self.calls.append((threading.current_thread() is threading.main_thread(), size))

    def bytes_on_gui_thread(self) -> int:
        return sum(size for on_gui, size in self.calls if on_gui)


def _dock(make_napari_viewer, tmp_path):
    reference, prediction = mask_stack(tmp_path)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    ref_layer = viewer.add_labels(reference, name="frames mask")
    pred_layer = viewer.add_labels(prediction, name="frames labels")
    widget.prediction.value, widget.reference.value = pred_layer, ref_layer
    return viewer, widget, pred_layer, ref_layer


def _wait_for_rows(qtbot, widget) -> None:
    assert widget._worker is not None  # the threaded path users take
    qtbot.waitUntil(lambda: widget._worker is None and bool(widget.results), timeout=60_000)


@needs_clinic
def test_the_scored_data_are_hashed_in_workers_never_on_the_gui_thread(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Compute hashes nothing on the GUI thread (its worker takes the fingerprints); a
    refresh that changes nothing (hiding and showing a layer) is checked in a worker and
    leaves them current; a stroke on slice 1 of the stack (its paint event alone, which
    napari emits before it writes the pixels) is checked in a worker too, once written,
    and marks the scores stale."""
    spy = _HashSpy()
    monkeypatch.setattr(_metrics_widget, "hashlib", spy)
    viewer, widget, pred_layer, ref_layer = _dock(make_napari_viewer, tmp_path)
    stack = np.asarray(pred_layer.data)

    widget.compute_button.native.click()
    _wait_for_rows(qtbot, widget)
    assert spy.bytes_on_gui_thread() == 0, spy.calls
    assert sum(size for _, size in spy.calls) >= 2 * stack.nbytes  # both layers hashed

    ref_layer.visible = False
    ref_layer.visible = True
    qtbot.wait(_metrics_widget.STALE_CHECK_MS * 3)
    qtbot.waitUntil(lambda: widget._checker is None, timeout=10_000)
    assert STALE not in widget.status.value and widget.rows() == widget.results
    assert spy.bytes_on_gui_thread() == 0, spy.calls  # the refresh's check: in a worker too

    spy.calls.clear()
    viewer.dims.set_current_step(0, 1)
    # another handler of the stroke's paint event (emitted before napari writes the
    # pixels) takes a while: a check that read the data then would find them as scored
    pred_layer.events.paint.connect(lambda _event: time.sleep(0.5))
    pred_layer.paint((1, 10, 10), 1, refresh=False)  # background: a real change
    qtbot.waitUntil(lambda: STALE in widget.status.value, timeout=10_000)
    assert widget.status.value.startswith(f"'frames labels' {STALE}")
    assert spy.bytes_on_gui_thread() == 0, spy.calls
    assert sum(size for _, size in spy.calls) >= 2 * stack.nbytes  # both layers, whole


@needs_clinic
def test_a_change_while_compute_runs_makes_its_scores_stale(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """The fingerprints come with Compute's rows: a stroke while the worker scores (after
    it took the fingerprints) is checked once they come (the rows show stale), a refresh
    that changes nothing then leaves them current. (A stroke before the worker hashes is
    in both its fingerprints and its scores: current; the stroke waits for the hash.)"""
    gate, hashed = threading.Event(), threading.Event()
    score, fingerprints_of = _metrics_widget._score_layers, _metrics_widget._fingerprints_of

    def held(**job):
        assert gate.wait(60)
        return score(**job)

    def hashing(sources):
        taken = fingerprints_of(sources)
        hashed.set()
        return taken

    monkeypatch.setattr(_metrics_widget, "_score_layers", held)
    monkeypatch.setattr(_metrics_widget, "_fingerprints_of", hashing)
    viewer, widget, pred_layer, ref_layer = _dock(make_napari_viewer, tmp_path)

    widget.compute_button.native.click()
    ref_layer.visible = False  # a refresh (set_data) while it runs: nothing changed
    ref_layer.visible = True
    qtbot.wait(_metrics_widget.STALE_CHECK_MS * 3)
    gate.set()
    _wait_for_rows(qtbot, widget)
    qtbot.wait(_metrics_widget.STALE_CHECK_MS * 3)
    assert STALE not in widget.status.value and widget.rows() == widget.results

    gate.clear()
    hashed.clear()
    widget.compute_button.native.click()
    assert hashed.wait(60)  # the worker has the fingerprints, and waits at the gate
    pred_layer.paint((0, 10, 10), 1, refresh=True)  # background: a real change
    qtbot.wait(_metrics_widget.STALE_CHECK_MS * 3)
    gate.set()
    _wait_for_rows(qtbot, widget)
    qtbot.waitUntil(lambda: STALE in widget.status.value, timeout=10_000)
    assert widget.status.value.startswith(f"'frames labels' {STALE}")
    assert widget.rows() == [] and not widget.export_button.enabled
