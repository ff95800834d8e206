"""Fine-tune scores each model on the held-out part once per run (tester 35 #4): the
verdict takes the scores the validation of a checkpoint's step gave the same weights, and
scores again only a checkpoint no validation of the run scored. Real CPU runs on MoNuSeg
crops, every held-out scoring counted (``evaluate``, which all of them call)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _paths import DATASETS
from test_finetune import tile, tiny_nuclei_model

import napari_tmunet.evaluation as evaluation
import napari_tmunet.training.validation as validation
from napari_tmunet.checkpoint import load_checkpoint
from napari_tmunet.training import finetune
from napari_tmunet.training.config import TrainConfig
from napari_tmunet.training.finetune import FinetuneJob, compare_models, run_finetune

pytestmark = [
    pytest.mark.skipif(not (DATASETS / "MoNuSeg").is_dir(), reason=f"no MoNuSeg at {DATASETS}"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def count_scorings(monkeypatch) -> list[int]:
    """A list that grows by one at each held-out scoring (each ``evaluate`` call: the
    starting model's, the engine's validations, the fine-tuned model's)."""
    calls = []
    for module in (evaluation, validation):
        original = module.evaluate

        def counted(*args, _original=original, **kwargs):
            calls.append(1)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "evaluate", counted)
    return calls


def corrected_pairs(crops, size=192):
    """MoNuSeg crops whose reference mask is the user's correction of a prediction that
    missed the nuclei of its left 60 columns (30 in the others)."""
    pairs = []
    for k, (name, rows) in enumerate(crops):
        image, mask = tile(np.s_[rows : rows + size, :size])
        predicted = mask.copy()
        predicted[:, : 30 if k else 60] = 0
        pairs += finetune.training_pairs(image, mask, name, True, predicted=predicted)
    return pairs


def fresh_scores(run_dir: Path) -> dict:
    """The held-out scores of the run's fine-tuned model (best.pt), scored now, as the
    run reads its held-out part."""
    config = TrainConfig.load(run_dir / "train" / "config.json")
    plan = json.loads((run_dir / "finetune.json").read_text())
    region = plan["held_out_region"]
    _, valid, cut = finetune._training_data(config, region, lambda text: None)
    start = SimpleNamespace(region=region, edit_maps=plan["held_out_edits"])
    edit_maps = finetune._edit_maps(Path(config.data), start, valid)
    tuned = load_checkpoint(run_dir / "train" / "best.pt", "cpu")
    return finetune.held_out_scores(
        tuned.model, valid, tuned.input_config, tuned.inference_mode, "cpu", cut, edit_maps
    )


def validated_steps(run_dir: Path) -> list[int]:
    records = (json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").open())
    return [r["step"] for r in records if "val_dice" in r]


@pytest.mark.parametrize(
    "crops, held_out",
    [
        ([("a", 0), ("b", 192)], "whole image"),  # tester 35's case: a tile held out whole
        ([("a", 0)], "columns"),  # a strip, scored inside its whole image
    ],
)
def test_the_fine_tuned_model_is_not_scored_again(tmp_path, monkeypatch, crops, held_out):
    """A random TM-UNet t fine-tuned 20 steps (validations at steps 10 and 20): one
    scoring of the starting model and one per validation, none after (main scored
    best.pt once more); the verdict's scores are those a fresh scoring gives, to the
    last bit, the scores where the edits are included."""
    start = tiny_nuclei_model(tmp_path / "start.pt")
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir, pairs=corrected_pairs(crops), start_model=str(start), steps=20,
        lr=1e-3, batch_size=1, device="cpu",
    )  # fmt: skip
    calls = count_scorings(monkeypatch)
    phases = []
    result = run_finetune(job, threading.Event(), {"on_phase": phases.append})

    assert result["held_out"].startswith(held_out) and result["edits"]["known"]
    assert validated_steps(run_dir) == [10, 20]
    assert len(calls) == 1 + 2, phases  # the start, steps 10 and 20
    assert not any(p.startswith("scoring the fine-tuned model") for p in phases), phases
    step = load_checkpoint(result["best_checkpoint"]).metadata["step"]
    reused = f"the fine-tuned model (best.pt of step {step}) was scored at step {step}: "
    assert phases[-1].startswith(reused), phases
    fresh = fresh_scores(run_dir)
    assert result["new"] == fresh and "zone_accuracy" in fresh
    if held_out == "columns":  # the strip's image runs whole: the trained edits scored too
        assert "trained_zone_accuracy" in fresh
    assert compare_models(result) == compare_models({**result, "new": fresh})
    saved = json.loads((run_dir / "comparison.json").read_text())
    assert saved["new"] == fresh
    # every scoring said how far it was, the validations as steps of their own
    for text in ("scoring start.pt on the held-out part", "step 20/20: scoring the held-out part"):
        assert f"{text} (1 image): 100%..." in phases, phases


def test_a_best_checkpoint_of_an_earlier_session_is_scored_again(tmp_path, monkeypatch):
    """The shipped nuclei model fine-tuned 4 steps on two corrected MoNuSeg crops,
    stopped after step 1 (best.pt there), then resumed: its step 4 scores lower
    (measured: held-out Dice 0.71 at step 4, 0.76 at step 1, lr 3e-3), so best.pt is
    the first session's, which no validation of the resumed run scored: it is scored
    again, once, the phase naming it and saying how far, and its scores are a fresh
    scoring's. The starting model is not scored again: the first session saved its
    scores (fix-163)."""
    run_dir = tmp_path / "run"
    pairs = corrected_pairs([("a", 0), ("b", 256)], size=256)
    job = FinetuneJob(
        run_dir=run_dir, pairs=pairs, start_model="TM-UNet nuclei", steps=4, lr=3e-3,
        batch_size=2, device="cpu",
    )  # fmt: skip
    stop = threading.Event()
    first = run_finetune(job, stop, {"on_step": lambda *_: stop.set()})
    assert first["step"] == 1 and first["stopped"]

    calls = count_scorings(monkeypatch)
    phases = []
    resumed = FinetuneJob(run_dir=run_dir, resume=True, device="cpu")
    result = run_finetune(resumed, None, {"on_phase": phases.append})

    assert result["step"] == 4 and validated_steps(run_dir) == [1, 4]
    assert load_checkpoint(result["best_checkpoint"]).metadata["step"] == 1
    assert len(calls) == 1 + 1, phases  # step 4, best.pt of step 1 (the start's: saved)
    scoring = "scoring the fine-tuned model (best.pt of step 1) on the held-out part"
    assert phases[-2:] == [f"{scoring}...", f"{scoring} (1 image): 100%..."], phases
    assert result["new"] == fresh_scores(run_dir)
