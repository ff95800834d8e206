"""Segment dock fixes (helper 142): a shipped model chosen while the active model's file
is missing replaces it as Revert would; a streamed image's mapping says a per-image
checkpoint normalised it with the image's own stats; napari closed mid-run (CPU, Xvfb,
the bundled samples, tiny untrained checkpoints)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _paths import REPO
from _view import open_dock

from napari_tmunet import active_model, registry, settings
from napari_tmunet._sample_data import load_sample

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

PLUGIN = "napari-tmunet"
SHIPPED = "TM-UNet nuclei"


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


def shipped_copy(tmp_path, name: str) -> str:
    """A copy of the shipped nuclei checkpoint as a run's RUN/train/best.pt (a real model)."""
    best = tmp_path / name / "train" / "best.pt"
    best.parent.mkdir(parents=True)
    shutil.copyfile(registry.find_model(SHIPPED).path, best)
    return str(best)


def add_nuclei(viewer):
    image, _ = load_sample("nuclei")
    return viewer.add_image(np.ascontiguousarray(image[:128, :128]), name="nuclei", rgb=True)


def pick(combo, text: str) -> None:
    """Choose the item ``text`` of a Model box as the user does (the item shown too: Qt
    says ``activated`` for every pick, ``currentIndexChanged`` only for a change)."""
    index = combo.findText(text)
    assert index >= 0, text
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_a_shipped_model_chosen_replaces_a_missing_active_model(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """The active fine-tuned model's run folder deleted, no previous model (Revert cannot
    help): the start message names choosing a shipped model in Segment as a way out. Another
    kind's model picked for a comparison changes nothing; the nuclei model picked (the item
    shown) becomes the active model, runs, and keeps the missing one as the previous model
    (Revert offers it once its file is back), as Revert would; the next start runs it
    without the warning."""
    best = shipped_copy(tmp_path, "run")
    active_model.ActiveModel(persist=True).set(best, "tuned", "nuclei")
    (tmp_path / "run").rename(tmp_path / "gone")

    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer)
    (said,) = [text for text in notices["warning"] if best in text]
    assert said.endswith(
        "To stop using it: choose a shipped model for nuclei images in Segment's Model box, "
        "or make a new fine-tune active; each keeps this one as the previous model."
    )
    assert segment.model.value == SHIPPED and segment.active_model.missing_current
    combo = segment.model.native
    pick(combo, "TM-UNet colonoscopy")  # a comparison, this session only: not made active
    assert segment.active_model.current is None
    assert segment.active_model.missing_current.model == best
    pick(combo, SHIPPED)  # back to the model shown at the start
    pick(combo, SHIPPED)  # and picked again (no change): now it is chosen
    holder = segment.active_model
    assert (holder.current.model, holder.current.modality) == (SHIPPED, "nuclei")
    assert holder.missing_current is None and holder.previous is None
    assert holder.missing_previous.model == best
    assert holder.missing_words() == (
        f"tuned's file is not found: {best} (kept: Revert offers it when it is there)."
    )
    assert [text for text in notices["info"] if "is now the active model" in text] == [
        f"{SHIPPED} is now the active model for nuclei images; tuned (its file is not found) "
        "is kept as the previous model."
    ]
    saved = settings.saved_active_models()
    assert (saved["current"]["model"], saved["previous"]["model"]) == (SHIPPED, best)
    assert segment.model.value == SHIPPED
    segment_and_wait(qtbot, segment)
    assert segment.last_layer.metadata["model"] == SHIPPED, segment.status.value
    viewer.close()

    viewer = make_napari_viewer()  # the next start: the choice runs, nothing to warn about
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer)
    assert len([text for text in notices["warning"] if best in text]) == 1
    assert segment.model.value == SHIPPED
    assert segment.model_reason.value.endswith("the active model for nuclei images.")
    tune = open_dock(viewer, "Fine-tune")
    assert not tune.revert_button.enabled
    viewer.close()

    (tmp_path / "gone").rename(tmp_path / "run")  # the folder back: Revert brings it back
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    assert tune.revert_button.enabled
    tune.revert_button.native.click()
    assert tune.active.current.model == best


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
phase = {phase!r}


def forward_done():
    bar = segment._progress
    return bar is not None and bar.total and bar.n >= bar.total


deadline = time.monotonic() + 120
while phase != "loading" and time.monotonic() < deadline:
    QApplication.processEvents()
    if (phase == "labelling" and forward_done()) or not segment.running:
        break
    time.sleep(0.005)
worker = segment.worker
if phase == "re-deriving":  # the run is done: a threshold moved derives its labels again
    segment.threshold.value = 0.3
    segment.rederive()
print("closing while", segment.status.value, flush=True)
viewer.close()
ended = getattr(segment, "_derive_ended", None)  # set as the derive's worker ends
going = segment.deriving and not (ended is not None and ended.is_set())
print("closed; still running:", worker.is_running or going, flush=True)
"""


@pytest.mark.parametrize("phase", ["loading", "labelling", "re-deriving"])
def test_closing_napari_mid_run_waits_for_it_and_prints_no_traceback(tmp_path, phase):
    """A script segments a 3072 x 3072 image in the Segment dock (instances) and closes
    napari while the model loads, once the forward pass is done (the instance labelling of
    the whole image takes seconds), or while a threshold moved derives the labels again:
    the close cancels the run and waits for its worker (or the derive's) to end, so no
    thread is left running for a deleted viewer, and the script ends without a word about
    a deleted worker (superqt's 'WorkerBaseSignals has been deleted', a worker outliving
    the window, as the Fine-tune dock's did; after a derive, an abort)."""
    script = tmp_path / "close_napari.py"
    script.write_text(CLOSE_NAPARI.format(model=SHIPPED, phase=phase))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr
    status = {
        "loading": f"loading {SHIPPED}...",
        "labelling": "segmenting big nuclei",
        "re-deriving": "big nuclei: updating the labels...",
    }[phase]
    assert f"closing while {status}" in done.stdout, done.stdout + done.stderr
    assert "closed; still running: False" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr and "has been deleted" not in done.stderr, done.stderr
