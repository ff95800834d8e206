"""The Fine-tune dock closed mid-run (its X, or napari's window) and the verdict's count of
corrected pixels (CPU, Xvfb, a CVC-ClinicDB frame and its true mask as the correction)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _paths import DATASETS, REPO

from napari_tmunet.training.finetune import compare_models, run_folder_state

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

PLUGIN = "napari-tmunet"
CLINIC = DATASETS / "CVC-ClinicDB"
needs_data = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {CLINIC}")
CROP = np.s_[64:256, 96:288]  # the polyp of frame 5 and its surroundings, 192 x 192


def open_dock(viewer, name):
    dock, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name=name)
    return dock, getattr(widget, "__wrapped__", widget)


def add_frame(viewer):
    """A CVC-ClinicDB frame (cropped) and its true mask as the corrected Labels layer."""
    from napari_tmunet.data.images import read_image, read_mask

    image = read_image(CLINIC / "images" / "5.png")[CROP]
    mask = read_mask(CLINIC / "masks" / "5.tif")[0][CROP]
    viewer.add_image(np.ascontiguousarray(image), name="frame")
    viewer.add_labels(np.ascontiguousarray(mask > 0).astype(np.uint8), name="frame corrected")


def close_button(dock):
    """The X in the dock's title bar, as the user clicks it."""
    from qtpy.QtWidgets import QPushButton

    (button,) = dock.findChildren(QPushButton, "QTitleBarCloseButton")
    return button


@needs_data
def test_the_x_mid_run_is_said_and_the_reopened_dock_offers_the_run(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """Threaded path, the shipped model: the dock's X at step 1 of 20 stops the run; a
    notification names the run folder and the step it stopped at, and the dock reopened
    from the menu shows that run (its Run folder, Resume on, the status says so)."""
    import napari_tmunet._finetune_widget as module

    notes = []
    monkeypatch.setattr(module, "show_info", notes.append)
    viewer = make_napari_viewer()
    dock, tune = open_dock(viewer, "Fine-tune")
    add_frame(viewer)
    run_dir = tmp_path / "run"
    tune.steps.value, tune.batch_size.value, tune.device.value = 20, 1, "cpu"
    tune.run_folder.value = run_dir
    tune.start_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: tune.step >= 1, timeout=120_000)
    close_button(dock).click()
    # reopened while it stops: the run is shown, Resume waits for it
    _, reopened = open_dock(viewer, "Fine-tune")
    assert reopened is not tune
    assert "is stopping" in reopened.status.value and not reopened.resume_button.enabled
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    assert tune.error == "" and tune.result["stopped"], tune.status.value
    step = tune.result["step"]
    assert 1 <= step < 20 and run_folder_state(run_dir) == "resumable"
    assert [n for n in notes if str(run_dir) in n and f"step {step}/20" in n and "Resume" in n]
    qtbot.waitUntil(lambda: reopened.resume_button.enabled, timeout=10_000)
    assert reopened.run_folder.value == run_dir
    assert f"stopped at step {step}/20 when its dock was closed" in reopened.status.value
    assert str(run_dir) in reopened.status.value
    assert (reopened.progress_bar.value, reopened.progress_bar.max) == (step, 20)
    # a dock opened later offers it too, its progress where the run stopped
    _, later = open_dock(viewer, "Fine-tune")
    assert later.run_folder.value == run_dir and later.resume_button.enabled
    assert (later.progress_bar.value, later.progress_bar.max) == (step, 20)


CLOSE_NAPARI = """
import sys, time
import numpy as np, napari
from qtpy.QtWidgets import QApplication
sys.path.insert(0, {tests!r})
from test_finetune_close_fixes import add_frame

viewer = napari.Viewer(show=False)
_, tune = viewer.window.add_plugin_dock_widget("napari-tmunet", "Fine-tune")
add_frame(viewer)
tune.steps.value, tune.batch_size.value, tune.device.value = 50, 1, "cpu"
tune.run_folder.value = {run_dir!r}
tune.start_button.native.click()
deadline = time.monotonic() + 120
while tune.step < 1 and time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.05)
print("closing at step", tune.step, flush=True)
viewer.close()
"""


@needs_data
def test_closing_napari_mid_run_prints_no_traceback(tmp_path):
    """A script (as the tester's) starts a run in the dock, closes napari at step 1 and
    ends: the run stops with last.pt saved and nothing is printed about a deleted
    worker (the training thread outlived the window: superqt's 'WorkerBaseSignals has
    been deleted' at the interpreter's exit)."""
    run_dir = tmp_path / "run"
    script = tmp_path / "close_napari.py"
    script.write_text(CLOSE_NAPARI.format(tests=str(REPO / "tests"), run_dir=str(run_dir)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr
    assert "closing at step 1" in done.stdout or "closing at step 2" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr and "has been deleted" not in done.stderr, done.stderr
    assert (run_dir / "train" / "last.pt").is_file()


def scores(trained_right: int, zone_right: int) -> dict:
    """A model's scores where the 3296 corrected pixels all trained (the held-out strip
    holds none; zone 9000 px)."""
    return {
        "dice": 0.90, "hd": 5.0, "edited_pixels": 0, "edited_correct": 0, "zone_pixels": 0,
        "zone_correct": 0, "zone_accuracy": None, "trained_edited_pixels": 3296,
        "trained_edited_correct": trained_right, "trained_zone_pixels": 9000,
        "trained_zone_correct": zone_right, "trained_zone_accuracy": zone_right / 9000,
    }  # fmt: skip


def test_the_count_of_corrected_pixels_right_does_not_say_learnt():
    """The tester's run: 104 of 3296 corrected pixels right after fine-tuning, about as
    many of the zone as before. The verdict says the corrections were not clearly learnt;
    the count beside it says how many are right, not that they were learnt."""
    edits = {"known": True, "pixels": 0, "objects": 0, "enough": False, "all_pixels": 3296}
    result = {"old": scores(0, 5700), "new": scores(104, 5710), "edits": edits}
    verdict = compare_models(result)
    assert verdict["use_new"] is None and "not clearly learnt" in verdict["why"]
    assert "of these 3296: start model 0, fine-tuned 104 right;" in verdict["compared"]
    assert "learnt" not in verdict["compared"]
