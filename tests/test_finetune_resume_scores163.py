"""A resumed Fine-tune run does not score its starting model on the held-out part again
(fix-163): the first session saves the scores with the run (RUN/start_scores.json), keyed
by the model's weights and the held-out part (``weights_key``, ``held_out_key``), and
Resume takes them while both are the same; it scores the model again only when they
differ (the start file replaced) or the scores are not there (a run of an older version,
a damaged file), and saves them then. Threaded path (the dock's Resume), real UDIAT
pairs, a tiny start checkpoint, CPU; every ``evaluate`` call of the starting model counted.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_model_choice_fixes158 import needs_datasets, stopped_run

import napari_tmunet.evaluation as evaluation
from napari_tmunet import _docks
from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint
from napari_tmunet.training.finetune import START_SCORES, weights_key

pytestmark = [needs_datasets, pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


def start_scorings(monkeypatch, start) -> list[int]:
    """A list that grows by one at each ``evaluate`` call of the model in ``start`` (a
    checkpoint file), told by its weights."""
    model = load_checkpoint(start, "cpu").model
    start_key = weights_key(model, {}, "")
    calls = []
    original = evaluation.evaluate

    def counted(model, *args, **kwargs):
        if weights_key(model, {}, "") == start_key:
            calls.append(1)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", counted)
    return calls


def resume_in_dock(make_napari_viewer, qtbot, run_dir) -> tuple[object, list[str]]:
    """Resume the run in ``run_dir`` in the Fine-tune dock (the threaded path) and wait
    for it to end; the dock and the phases it was told."""
    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    tune.device.value = "cpu"
    tune.run_folder.value = str(run_dir)
    phases = []
    tune._relay.phase.connect(phases.append)
    assert tune.resume_button.enabled
    tune.resume_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "", tune.error
    return tune, phases


def saved(run_dir) -> dict:
    return json.loads((run_dir / START_SCORES).read_text(encoding="utf-8"))


def test_resume_takes_the_starting_models_saved_scores(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """The first session (stopped after step 1) saved the starting model's scores; Resume
    scores it no more, and its result, verdict and the dock's plot have those scores."""
    run_dir, start = stopped_run(tmp_path)
    first = saved(run_dir)
    assert set(first["keys"]) == {"model", "held_out"} and first["scores"]["dice"] is not None
    calls = start_scorings(monkeypatch, start)

    tune, phases = resume_in_dock(make_napari_viewer, qtbot, run_dir)

    assert calls == [], phases  # main scored it again: [1]
    assert tune.result["trained"] >= 1 and tune.result["new"] is not None
    assert tune.result["old"] == first["scores"]
    assert not any(p.startswith("scoring best.pt") for p in phases), phases
    said = "best.pt is not scored again: its held-out scores from the run's start are used"
    assert said in phases, phases
    baseline = [r for r in tune.history["eval"] if r.get("baseline")]
    assert baseline[-1]["val_dice"] == first["scores"]["dice"]  # the plot's start point
    comparison = json.loads((run_dir / "comparison.json").read_text(encoding="utf-8"))
    assert comparison["old"] == first["scores"]
    assert saved(run_dir) == first


def other_weights(start) -> None:
    """Replace the checkpoint file ``start`` with one of other weights (a model trained
    again under the same name)."""
    checkpoint = load_checkpoint(start, "cpu")
    with torch.no_grad():
        next(checkpoint.model.parameters()).add_(0.5)
    save_checkpoint(
        start, checkpoint.model, checkpoint.model_config, checkpoint.input_config, metadata={}
    )


@pytest.mark.parametrize("case", ["older run", "damaged file", "start file replaced"])
def test_resume_scores_the_start_again_only_without_matching_scores(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, case
):
    """No saved scores (a run of an older version), a damaged file, or a start file of
    other weights since: Resume scores the starting model once, the run goes on to its
    verdict with those scores, and they are saved under the model's key now."""
    run_dir, start = stopped_run(tmp_path)
    first = saved(run_dir)
    if case == "older run":
        (run_dir / START_SCORES).unlink()
    elif case == "damaged file":
        (run_dir / START_SCORES).write_text('{"keys": {"model": ', encoding="utf-8")
    else:
        other_weights(start)
    before = {p.relative_to(run_dir) for p in run_dir.rglob("*")}
    calls = start_scorings(monkeypatch, start)

    tune, phases = resume_in_dock(make_napari_viewer, qtbot, run_dir)

    assert calls == [1], phases
    assert any(p.startswith("scoring best.pt on the held-out part") for p in phases), phases
    assert tune.result["old"] is not None and tune.result["new"] is not None
    now = saved(run_dir)
    assert now["scores"] == tune.result["old"]
    assert now["keys"]["held_out"] == first["keys"]["held_out"]
    assert (now["keys"]["model"] == first["keys"]["model"]) == (case != "start file replaced")
    after = {p.relative_to(run_dir) for p in run_dir.rglob("*")}
    assert before <= after, before - after  # nothing of the run is lost
