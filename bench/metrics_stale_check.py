"""Time how long the Metrics dock's checks that its scores are current block the GUI.

    PYTHONPATH=. xvfb-run -a python bench/metrics_stale_check.py [slices]

(PYTHONPATH=.: the checkout's package, not the one installed.) A 60 x 1024 x 1024 int32
stack (``slices`` of them) of the colonoscopy sample's mask, padded, as the reference,
each slice eroded as the prediction; both Labels layers in a headless viewer with the
real Metrics dock. For each action on the GUI thread: the action's own time and the
longest turn of the event loop after it (what the dock's handlers then block it for),
and when the dock's answer came:

- the Compute click, until its rows show;
- a refresh that changes nothing (the reference hidden and shown: ``set_data``, as an
  undo or a step through a stack), then the check once refreshes pause: scores current;
- a step through the stack, the same;
- the first stroke that changes pixels, committed as a mouse stroke is
  (``block_history``): the scores go stale.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy import ndimage

from napari_tmunet._sample_data import load_sample

SIZE = 1024
WAIT_S = 30.0  # the longest wait for the dock's answer


def _stacks(slices: int) -> tuple[np.ndarray, np.ndarray]:
    """The sample's mask padded to SIZE x SIZE, ``slices`` times, and its eroded copy."""
    _, mask = load_sample("colonoscopy")
    frame = np.zeros((SIZE, SIZE), np.int32)
    frame[: mask.shape[0], : mask.shape[1]] = mask > 0
    eroded = ndimage.binary_erosion(frame, iterations=4).astype(np.int32)
    return np.repeat(frame[None], slices, axis=0), np.repeat(eroded[None], slices, axis=0)


def _blocking(what: str, action, done=None, settle_s: float = 2.0) -> None:
    """Run ``action``, then turn the event loop until ``done()`` (else for ``settle_s``);
    print the action's time, the longest turn after it and when ``done`` came."""
    from qtpy.QtWidgets import QApplication

    began = time.perf_counter()
    action()
    acted = time.perf_counter()
    longest, answered = 0.0, None
    while time.perf_counter() - acted < (WAIT_S if done else settle_s):
        turn = time.perf_counter()
        QApplication.processEvents()
        longest = max(longest, time.perf_counter() - turn)
        if done is not None and done():
            answered = time.perf_counter() - began
            break
        time.sleep(0.002)
    line = f"{what}: action {(acted - began) * 1000:.1f} ms, longest turn {longest * 1000:.1f} ms"
    if done is not None:
        line += f", answered after {answered:.2f} s" if answered else ", no answer"
    print(line)


def main() -> None:
    import napari

    slices = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    reference, prediction = _stacks(slices)
    viewer = napari.Viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    ref_layer = viewer.add_labels(reference, name="stack mask")
    pred_layer = viewer.add_labels(prediction, name="stack labels")
    widget.prediction.value, widget.reference.value = pred_layer, ref_layer
    print(f"{slices} x {SIZE} x {SIZE} int32, {reference.nbytes / 2**20:.0f} MiB a layer")

    def current() -> bool:
        return bool(widget.results) and widget.rows() == widget.results

    def clicked() -> bool:
        return widget._worker is None and bool(widget.results)

    _blocking("Compute click", widget.compute_button.native.click, clicked)

    def hide_and_show() -> None:
        ref_layer.visible = False
        ref_layer.visible = True

    _blocking("refresh that changes nothing", hide_and_show)
    assert current(), "a refresh that changes nothing left the scores stale"
    _blocking("step through the stack", lambda: viewer.dims.set_current_step(0, 1))
    assert current(), "a step through the stack left the scores stale"

    def stroke() -> None:
        with pred_layer.block_history():  # as napari's brush commits a mouse stroke
            pred_layer.paint((1, 5, 5), 2)  # background: label 2 changes pixels

    _blocking("first changing stroke", stroke, lambda: widget.rows() == [])
    viewer.close()


if __name__ == "__main__":
    main()
