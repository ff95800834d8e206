"""A fine-tuning run continued headless with ``napari-tmunet-train fit --resume`` (the
command finetune.json records): validated as the run was, on the bundled sample."""

from __future__ import annotations

import json
import shlex
import threading

import pytest
from _shipped import sample_job

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample
from napari_tmunet.checkpoint import load_checkpoint
from napari_tmunet.training.finetune import held_out_scores, run_finetune

pytestmark = pytest.mark.skipif(
    registry.model_for_modality("colonoscopy") is None, reason="no shipped colonoscopy model"
)


def test_a_headless_resume_validates_the_strip_inside_the_whole_image(tmp_path):
    """The shipped colonoscopy model (resize mode) fine-tuned on the bundled colonoscopy
    frame, stopped after its first step, resumed with the real CLI (finetune.json's
    resume command): the resumed run's validation scores the held-out strip inside the
    whole frame, as the run it resumes did, not the strip alone stretched to the model's
    input (which finds almost nothing of the polyp)."""
    from trainer.cli import main

    image, truth = load_sample("colonoscopy")
    run_dir = tmp_path / "run 1"
    stop = threading.Event()
    # the true mask as a reference: the strip holds part of the polyp (a corrected Segment
    # output's strip is away from the corrections, often without foreground)
    job = sample_job(run_dir, "colonoscopy", image, truth, steps=2, lr=1e-6, edits=False)
    evals = []
    callbacks = {"on_step": lambda step, total, loss: stop.set(), "on_eval": evals.append}
    first = run_finetune(job, stop, callbacks)
    assert first["stopped"] and first["step"] == 1
    assert [r["step"] for r in evals] == [0, 1]  # the starting model's, then step 1's

    plan = json.loads((run_dir / "finetune.json").read_text())
    argv = shlex.split(plan["headless"]["resume"])
    assert argv[0] == "napari-tmunet-train"
    assert main([*argv[1:], "--no-progress", "--device", "cpu"]) == 0

    records = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").open()]
    resumed = [r for r in records if r["step"] == 2 and "val_dice" in r]
    assert len(resumed) == 1
    last = load_checkpoint(run_dir / "train" / "last.pt", "cpu")
    region = plan["held_out_region"]
    cut = [slice(None), slice(None)]
    cut[region["axis"]] = slice(region["start"], region["stop"])
    strip = [("strip", image[tuple(cut)], truth[tuple(cut)])]
    alone = held_out_scores(last.model, strip, last.input_config, "resize", "cpu")["dice"]
    whole = [("frame", image, truth)]
    scored = held_out_scores(last.model, whole, last.input_config, "resize", "cpu", tuple(cut))
    dice = resumed[0]["val_dice"]
    print(f"resumed step 2: {dice:.4f}; inside {scored['dice']:.4f}, alone {alone:.4f}")
    assert abs(scored["dice"] - alone) > 0.01  # the two ways differ (measured 0.811, 0.787)
    assert dice == pytest.approx(scored["dice"], abs=1e-3)


def test_evaluate_on_a_fine_tune_run_scores_its_strip_as_the_run_did(tmp_path, capsys):
    """`napari-tmunet-train evaluate RUN/train/best.pt` on a Fine-tune run (the bundled
    colonoscopy frame, one step): without --part, the empty test part's error says the run
    has no test part by design and names --part valid; with --part valid, the held-out
    strip is scored inside the whole frame, as the run's validation (and the Metrics dock)
    scored it, not the strip alone."""
    from trainer.cli import main

    image, truth = load_sample("colonoscopy")
    run_dir = tmp_path / "run"
    job = sample_job(run_dir, "colonoscopy", image, truth, steps=1, lr=1e-6, edits=False)
    result = run_finetune(job)
    assert not result["stopped"]
    best = run_dir / "train" / "best.pt"
    capsys.readouterr()

    assert main(["evaluate", str(best), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert (
        f"the test part of the split ({run_dir / 'train' / 'split.json'}) is empty: a "
        f"Fine-tune run ({run_dir / 'finetune.json'}) holds out only a validation part and "
        "has no test part by design; score its held-out part with --part valid" in err
    ), err

    assert main(["evaluate", str(best), "--part", "valid", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "the held-out strip inside its whole image" in out, out
    scored = json.loads((run_dir / "train" / "eval-valid-best.json").read_text())["test"]
    record = json.loads((run_dir / "train" / "metrics.jsonl").read_text().splitlines()[-1])
    assert scored["count"] == 1
    assert scored["native_dice_mean"] == pytest.approx(record["val_dice_native"], abs=1e-6)
    assert scored["native_hd_mean"] == pytest.approx(record["val_hd"], abs=1e-6)
    # the strip as it is in the main row too, not resized to the model's input (resize mode)
    assert scored["size"] is None
    rows = [line for line in out.splitlines() if line.startswith("| ") and "Dice" not in line]
    assert len(rows) == 1 and rows[0].startswith("| native |"), out
    for key in ("dice", "iou", "hd", "hd95"):
        assert scored[f"{key}_mean"] == scored[f"native_{key}_mean"], key
    tuned = load_checkpoint(best, "cpu")
    region = json.loads((run_dir / "finetune.json").read_text())["held_out_region"]
    cut = [slice(None), slice(None)]
    cut[region["axis"]] = slice(region["start"], region["stop"])
    strip = [("strip", image[tuple(cut)], truth[tuple(cut)])]
    alone = held_out_scores(tuned.model, strip, tuned.input_config, "resize", "cpu")["dice"]
    assert abs(scored["native_dice_mean"] - alone) > 0.01, alone  # the strip alone differs


def test_evaluate_scores_a_tile_mode_strip_as_the_dock_shows_it(tmp_path, capsys):
    """`evaluate RUN/train/best.pt --part valid` on a Fine-tune run of the shipped nuclei
    model (tile mode) on the bundled nuclei sample (tester30 #1): the held-out strip (256
    x 64) is scored as it is, its scores those the Fine-tune dock shows (the run's "new"
    held-out scores), in the main row of the JSON and CSV too, not the strip stretched to
    512 x 512 (which gave HD 35.01 against the dock's 5.83); the JSON's size says so
    (None) and the table has the one native row, no "256x256" (the model's input size)."""
    from trainer.cli import main

    if registry.model_for_modality("nuclei") is None:
        pytest.skip("no shipped nuclei model")
    image, truth = load_sample("nuclei")
    run_dir = tmp_path / "run"
    job = sample_job(run_dir, "nuclei", image, truth, steps=1, lr=1e-6, edits=False)
    result = run_finetune(job)
    assert not result["stopped"] and result["new"]["dice"] is not None
    best = run_dir / "train" / "best.pt"
    assert load_checkpoint(best, "cpu").inference_mode == "tile"
    capsys.readouterr()

    assert main(["evaluate", str(best), "--part", "valid", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    scored = json.loads((run_dir / "train" / "eval-valid-best.json").read_text())["test"]
    dock = result["new"]
    for key in ("dice", "iou", "hd", "hd95"):
        assert scored[f"{key}_mean"] == pytest.approx(dock[key], abs=1e-6), key
        assert scored[f"native_{key}_mean"] == pytest.approx(dock[key], abs=1e-6), key
    assert scored["size"] is None
    rows = [line for line in out.splitlines() if line.startswith("| ") and "Dice" not in line]
    assert len(rows) == 1 and rows[0].startswith("| native |"), out
    assert f"| {dock['hd']:.2f} ± 0.00 | {dock['hd95']:.2f} |" in rows[0], out
    csv = (run_dir / "train" / "eval-valid-best.csv").read_text().splitlines()
    row = dict(zip(csv[0].split(","), csv[1].split(","), strict=True))
    assert (row["height"], row["width"]) == ("256", "64"), row
    assert float(row["hd"]) == pytest.approx(dock["hd"], abs=1e-6)
