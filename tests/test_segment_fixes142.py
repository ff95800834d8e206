"""Segment dock fixes (helper 142): a shipped model chosen while the active model's file
is missing replaces it as Revert would; a streamed image's mapping says a per-image
checkpoint normalised it with the image's own stats; napari closed mid-run (CPU, Xvfb,
the bundled samples, tiny untrained checkpoints)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _paths import REPO

from napari_tmunet._sample_data import load_sample

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

PLUGIN = "napari-tmunet"
SHIPPED = "TM-UNet nuclei"


def open_dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name=name)
    return getattr(widget, "__wrapped__", widget)


def tiny(path, per_image_norm: bool = False) -> str:
    """An untrained TM-UNet t (input 64) saved at ``path``: for wiring, never quality."""
    import torch

    from napari_tmunet.checkpoint import save_checkpoint
    from napari_tmunet.config import InputConfig, ModelConfig
    from napari_tmunet.model import build_model

    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    inputs = InputConfig.for_channels(
        3, size=(64, 64), threshold=0.5, per_image_norm=per_image_norm
    )
    return str(save_checkpoint(path, build_model(config), config, inputs))


def segment_and_wait(qtbot, widget):
    widget.segment_button.native.click()
    # a checkpoint file chosen a moment ago is read first ("checking X.pt..."), then it runs
    qtbot.waitUntil(lambda: not widget.status.value.startswith("checking "), timeout=60_000)
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)


def test_a_streamed_image_says_it_was_normalised_with_its_own_stats(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """A per-image checkpoint on a TIFF over the pixel budget (read in bands): the mapping
    its Labels layer records says "normalised with the image's own mean", as a whole frame's
    does, then that it was streamed."""
    import tifffile

    from napari_tmunet.data.budget import MAX_PIXELS_ENV

    checkpoint = tiny(tmp_path / "own.pt", per_image_norm=True)
    image, _ = load_sample("colonoscopy")
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, np.ascontiguousarray(image[:200, :240]), tile=(64, 64))
    monkeypatch.setenv(MAX_PIXELS_ENV, "20000")  # 200 x 240 is over it

    viewer = make_napari_viewer()
    widget = open_dock(viewer, "Segment")
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.multiscale  # read lazily: streamed in bands
    widget.image.value = layer
    widget.model.value = "Checkpoint file..."
    widget.checkpoint.value = checkpoint
    widget.mode.value = "tile"
    widget.min_confidence.value = 0.0
    segment_and_wait(qtbot, widget)

    assert widget.status.value == "done", widget.status.value
    mapping = widget.last_layer.metadata["mapping"]
    assert "normalised with the image's own mean" in mapping, mapping
    assert mapping.endswith("(streamed in bands)"), mapping


CLOSE_NAPARI = """
import time
import numpy as np, napari
from qtpy.QtWidgets import QApplication
from napari_tmunet._sample_data import load_sample

viewer = napari.Viewer(show=False)
_, segment = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
image, _ = load_sample("nuclei")  # 256 x 256
layer = viewer.add_image(np.tile(image, (12, 12, 1)), name="big nuclei", rgb=True)
segment.image.value = layer
segment.model.value = {model!r}
segment.mode.value, segment.device.value, segment.output.value = "resize", "cpu", "instances"
segment.segment()
deadline = time.monotonic() + 120
while {labelling} and time.monotonic() < deadline:  # until the forward pass is done
    QApplication.processEvents()
    bar = segment._progress
    if bar is not None and bar.total and bar.n >= bar.total:
        break
    time.sleep(0.005)
worker = segment.worker
print("closing while", segment.status.value, flush=True)
viewer.close()
print("closed; worker running:", worker.is_running, flush=True)
"""


@pytest.mark.parametrize("labelling", [False, True], ids=["loading", "labelling"])
def test_closing_napari_mid_run_waits_for_it_and_prints_no_traceback(tmp_path, labelling):
    """A script starts a run in the Segment dock (instances of a 3072 x 3072 image) and
    closes napari while the model loads, or once the forward pass is done (the instance
    labelling of the whole image takes seconds): the close cancels the run and waits for
    its worker to end (no thread left running for a deleted viewer), and the script ends
    without a word about a deleted worker (superqt's 'GeneratorWorkerSignals has been
    deleted', the worker outliving the window, as the Fine-tune dock's did)."""
    script = tmp_path / "close_napari.py"
    script.write_text(CLOSE_NAPARI.format(model=SHIPPED, labelling=labelling))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr
    phase = "segmenting big nuclei" if labelling else f"loading {SHIPPED}..."
    assert f"closing while {phase}" in done.stdout, done.stdout + done.stderr
    assert "closed; worker running: False" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr and "has been deleted" not in done.stderr, done.stderr
