"""A Fine-tune run whose training ended but whose verdict the dock never showed is shown
again, not lost (fix-186, tester40 finding 1): napari killed right after the last
checkpoint (no comparison.json, no summary.json), killed while the fine-tuned model was
scored (summary.json, no comparison.json), or the window closed then (comparison.json
written, never shown). Resume, or choosing the Run folder, gives the held-out comparison
with the usual activation rule or 'Use the fine-tuned model anyway'. Real runs: a tiny
start checkpoint fine-tuned on 6 UDIAT pairs (CPU), the dock's threaded path.
"""

from __future__ import annotations

import json
import os
import threading

import pytest
from _checkpoints import tiny_checkpoint
from _paths import dataset_subset
from test_model_choice_fixes158 import STEMS, UDIAT, needs_datasets

from napari_tmunet import _docks
from napari_tmunet.training.finetune import (
    FinetuneJob,
    compare_models,
    run_finetune,
    run_folder_state,
)

pytestmark = [needs_datasets, pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]
STEPS = 2


def finished_run(tmp_path, run_dir=None):
    """A Fine-tune run trained to its end headless (no dock showed its verdict), in
    ``run_dir`` (else ``tmp_path/run``); its folder."""
    start = tiny_checkpoint(tmp_path / "start" / "best.pt", size=32, metadata={})
    folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    run_dir = run_dir or tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir, dataset_folder=str(folder), start_model=str(start), steps=STEPS,
        batch_size=2, device="cpu",
    )  # fmt: skip
    result = run_finetune(job)
    assert not result["stopped"] and result["step"] == STEPS, result
    return run_dir


def comparison(run_dir) -> dict:
    return json.loads((run_dir / "comparison.json").read_text(encoding="utf-8"))


def dock_on(make_napari_viewer, run_dir):
    """The Fine-tune dock with ``run_dir`` chosen as its Run folder, as the user types it."""
    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    tune.device.value = "cpu"
    tune.run_folder.value = str(run_dir)
    return tune


def assert_decided(tune, run_dir) -> None:
    """The run's verdict is shown, as at the end of a run: its model made active when
    compare_models says so, else 'Use ... anyway' offered; recorded as shown."""
    result = tune.result
    assert result["new"] is not None and result["rows"], result
    assert "stopped before any training step" not in tune.status.value, tune.status.value
    assert f"finished at step {STEPS}/{STEPS}" in tune.status.value, tune.status.value
    assert tune.details.value  # the full comparison under the headline
    if compare_models(result)["use_new"]:
        assert tune.active.current.model == result["best_checkpoint"]
    else:
        assert tune.active.current is None  # nothing made active unseen
        assert not tune.use_anyway_button.native.isHidden()
        tune.use_anyway_button.native.click()
        assert tune.active.current.model == str(run_dir / "train" / "best.pt")
    assert comparison(run_dir)["shown"] is True


@pytest.mark.parametrize("killed", ["after the last checkpoint", "while scoring"])
def test_resume_of_a_run_trained_to_its_end_compares_it(
    make_napari_viewer, qtbot, tmp_path, killed
):
    """Killed after the last step's checkpoint (no summary.json, no comparison.json) or
    while the fine-tuned model was scored (summary.json written): the Run folder says
    the run was not compared, Resume is on and goes straight to the comparison, training
    nothing. On main: 'stopped before any training step', no comparison, and for the
    second case Resume was off."""
    run_dir = finished_run(tmp_path)
    (run_dir / "comparison.json").unlink()
    if killed == "after the last checkpoint":
        (run_dir / "train" / "summary.json").unlink()
    metrics = (run_dir / "train" / "metrics.jsonl").read_text(encoding="utf-8")
    best = (run_dir / "train" / "best.pt").read_bytes()

    tune = dock_on(make_napari_viewer, run_dir)
    said = f"trained all its {STEPS} steps but its models were not compared: Resume compares"
    assert said in tune.status.value, tune.status.value
    assert tune.resume_button.enabled
    tune.resume_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)

    assert tune.error == "", tune.error
    assert tune.result["trained"] == 0 and tune.result["step"] == STEPS
    assert (run_dir / "train" / "metrics.jsonl").read_text(encoding="utf-8") == metrics
    assert (run_dir / "train" / "best.pt").read_bytes() == best  # not trained again
    assert run_folder_state(run_dir) == "finished"
    assert_decided(tune, run_dir)
    assert not tune.resume_button.enabled


def test_a_comparison_never_shown_is_shown_when_its_folder_is_chosen(
    make_napari_viewer, qtbot, tmp_path
):
    """comparison.json and summary.json written, the verdict never shown (napari's window
    closed while the last step was scored): choosing the Run folder shows it, decided as
    at a run's end, once. On main: an empty status, Resume off, no 'Use ... anyway'."""
    run_dir = finished_run(tmp_path)

    tune = dock_on(make_napari_viewer, run_dir)

    assert tune.result is not None, tune.status.value
    assert_decided(tune, run_dir)
    again = dock_on(make_napari_viewer, run_dir)  # a next session: decided already
    assert again.result is None and again.use_anyway_button.native.isHidden()


@pytest.mark.parametrize("left", ["stopped", "never shown"])
def test_the_dock_names_a_run_left_undone_in_the_newest_run_folder(
    make_napari_viewer, qtbot, tmp_path, left
):
    """napari closed during a run (stopped at step 1 of 6, last.pt saved) or before its
    verdict was shown: the next session's dock says so under the Run folder, naming the
    folder, and keeps its new default folder; chosen, the folder says what Resume does
    (tester40 finding 5). On main the dock said nothing of it."""
    from napari_tmunet import settings

    runs = settings.runs_dir()
    run_dir = runs / "20261205-221759"
    if left == "stopped":
        start = tiny_checkpoint(tmp_path / "start" / "best.pt", size=32, metadata={})
        folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
        stop = threading.Event()
        job = FinetuneJob(
            run_dir=run_dir, dataset_folder=str(folder), start_model=str(start), steps=6,
            batch_size=2, device="cpu",
        )  # fmt: skip
        run_finetune(job, stop, {"on_step": lambda step, total, loss: stop.set()})
        said = f"run {run_dir.name} stopped at step 1 of 6: pick it to resume"
    else:
        finished_run(tmp_path, run_dir)
        said = f"run {run_dir.name} finished but its verdict was never shown: pick it to see it"
    (runs / "20261204-090000").mkdir()  # an older, empty one
    os.utime(runs / "20261204-090000", (1, 1))

    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    assert tune.run_note.value == said and not tune.run_note.native.isHidden()
    assert tune.run_folder.value != run_dir  # the default is a new folder still
    assert tune.status.value == ""

    tune.run_folder.value = str(run_dir)
    if left == "stopped":
        assert tune.run_note.native.isHidden()
        assert tune.resume_button.enabled
        said = f"the run in {run_dir.name} stopped at step 1 of 6: Resume continues it"
        assert tune.status.value == said
    else:
        assert_decided(tune, run_dir)
        # decided: the line under the Run folder gives its size (fix-188), not the old note
        assert tune.run_note.value.startswith(f"run folder {run_dir} takes ")
