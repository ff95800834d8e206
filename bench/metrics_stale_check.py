"""Time the Metrics dock's check that its scores are still current, on a large stack.

    xvfb-run -a python bench/metrics_stale_check.py [slices]

A 60 x 1024 x 1024 int32 stack (``slices`` of them) of the colonoscopy sample's mask,
padded, as the reference, each slice eroded as the prediction; both Labels layers in a
headless viewer with the real Metrics dock, scored with its Compute button (the worker
path). Then, on the GUI thread: the Compute click itself, a brush dab that changes no
pixel (label 1 inside the polyp: the scores stay current), the check a refresh runs once
refreshes pause (``set_data``: an undo, a step through the stack), and the first stroke
that changes a pixel (the scores go stale). A dab's time is given beside the same dab on
an unscored copy of the layer (napari's own painting). Best and median of 5 where
repeated.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
from scipy import ndimage

from napari_tmunet._sample_data import load_sample

SIZE = 1024


def _stacks(slices: int) -> tuple[np.ndarray, np.ndarray]:
    """The sample's mask padded to SIZE x SIZE, ``slices`` times, and its eroded copy."""
    _, mask = load_sample("colonoscopy")
    frame = np.zeros((SIZE, SIZE), np.int32)
    frame[: mask.shape[0], : mask.shape[1]] = mask > 0
    eroded = ndimage.binary_erosion(frame, iterations=4).astype(np.int32)
    return np.repeat(frame[None], slices, axis=0), np.repeat(eroded[None], slices, axis=0)


def _timed(action, repeat: int = 1) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return times


def _say(what: str, times: list[float]) -> None:
    if len(times) == 1:
        print(f"{what}: {times[0] * 1000:.1f} ms")
    else:
        best, median = min(times) * 1000, statistics.median(times) * 1000
        print(f"{what}: best {best:.1f} ms, median {median:.1f} ms")


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    slices = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    reference, prediction = _stacks(slices)
    viewer = napari.Viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    ref_layer = viewer.add_labels(reference, name="stack mask")
    pred_layer = viewer.add_labels(prediction, name="stack labels")
    spare = viewer.add_labels(prediction.copy(), name="unscored copy")
    widget.prediction.value, widget.reference.value = pred_layer, ref_layer
    print(f"{slices} x {SIZE} x {SIZE} int32, {reference.nbytes / 2**20:.0f} MiB a layer")

    _say("Compute click (GUI thread)", _timed(widget.compute_button.native.click))
    began = time.perf_counter()
    while widget._worker is not None or not widget.results:
        QApplication.processEvents()
        time.sleep(0.005)
    print(f"Compute until its rows show: {time.perf_counter() - began:.2f} s")

    inside = tuple(int(c) for c in np.argwhere(prediction[slices // 2] > 0).mean(axis=0))
    dab = (slices // 2, *inside)
    _say("no-change dab, unscored layer", _timed(lambda: spare.paint(dab, 1), 5))
    _say("no-change dab, scored layer", _timed(lambda: pred_layer.paint(dab, 1), 5))
    assert widget.rows() == widget.results, "a dab that changes nothing left them stale"
    _say("refresh check (set_data, after its pause)", _timed(widget._check_scored, 5))
    assert widget.rows() == widget.results, "a refresh that changes nothing left them stale"
    changed = (slices // 2, 5, 5)  # background: label 2 changes pixels
    _say("changing stroke, unscored layer", _timed(lambda: spare.paint(changed, 2)))
    _say("first changing stroke, scored layer", _timed(lambda: pred_layer.paint(changed, 2)))
    assert widget.rows() == [], "the change left the scores current"
    viewer.close()


if __name__ == "__main__":
    main()
