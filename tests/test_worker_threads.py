"""The docks' workers share Qt's global thread pool, which runs one worker per CPU core by
default: on a 2-core machine two long runs (a Segment run and a fine-tuning run) held both
threads, and the Metrics dock's Compute queued behind them, "Computing..." for as long as
they ran (_widget_common._allow_threads)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage

from napari_tmunet._sample_data import load_sample
from napari_tmunet._widget_common import WORKER_THREADS, start_worker

pytestmark = pytest.mark.gui


def _hold(gate: threading.Event):
    """A long run: it waits on ``gate`` as a dock's run waits on its model (a generator,
    as Segment's and Fine-tune's runs are)."""
    while not gate.wait(0.05):
        yield


def test_metrics_computes_while_two_long_runs_hold_the_cores(make_napari_viewer, qtbot):
    """Two long runs started as the docks start theirs, as many as the machine's cores
    (at least two): Compute on the colonoscopy sample's mask and an eroded copy still
    gives its rows while they run."""
    from qtpy.QtCore import QThreadPool

    _, reference = load_sample("colonoscopy")
    prediction = ndimage.binary_erosion(reference, iterations=4).astype(np.uint8)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    ref_layer = viewer.add_labels(reference.astype(np.uint8), name="sample mask")
    pred_layer = viewer.add_labels(prediction, name="sample labels")

    gate, ended = threading.Event(), []
    runs = max(2, QThreadPool.globalInstance().maxThreadCount())
    runs = min(runs, WORKER_THREADS - 1)  # Metrics needs one thread of its own
    for _ in range(runs):
        start_worker(_hold, gate, connect={"errored": print, "finished": lambda: ended.append(1)})
    try:
        qtbot.wait(200)  # the runs hold their threads
        widget.prediction.value, widget.reference.value = pred_layer, ref_layer
        widget.compute_button.native.click()
        assert widget._worker is not None  # the threaded path users take
        qtbot.waitUntil(lambda: widget._worker is None and bool(widget.results), timeout=30_000)
        assert 0.5 < widget.results[-1]["dice"] < 1.0
        assert not ended  # the runs were still going
    finally:
        gate.set()
        qtbot.waitUntil(lambda: len(ended) == runs, timeout=30_000)
