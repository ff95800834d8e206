"""The fine-tuning core without napari: the run folder's data and a tiny real run (CPU)."""

from __future__ import annotations

import json
import math
import re
import shlex
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import DATASETS
from _shipped import sample_job
from scipy import ndimage as ndi

from napari_tmunet._sample_data import load_sample
from napari_tmunet._segment_jobs import model_defaults
from napari_tmunet.active_model import model_label
from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.data.colour_spaces import CMYK, GREY_ALPHA
from napari_tmunet.data.datasets import find_pairs
from napari_tmunet.data.images import read_image, read_mask
from napari_tmunet.model import build_model
from napari_tmunet.training.finetune import (
    FinetuneJob,
    describe_edits,
    foreground_problem,
    holdout_strip,
    run_finetune,
    training_pairs,
    write_dataset,
)

MONUSEG = DATASETS / "MoNuSeg"
TILE = "TCGA-21-5786-01Z-00-DX1"

pytestmark = [
    pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"no MoNuSeg at {DATASETS}"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def tile(crop):
    image = read_image(MONUSEG / "images" / f"{TILE}.tif")[crop]
    mask = read_mask(MONUSEG / "masks" / f"{TILE}.png")[0][crop]
    return np.ascontiguousarray(image), mask


def test_held_out_part_never_overlaps_training(tmp_path):
    image, mask = tile(np.s_[:200, :300])
    one = write_dataset(training_pairs(image, mask.astype(np.uint8), "a", True), tmp_path / "one")
    assert holdout_strip((200, 300)) == (1, 225, 300) and holdout_strip((300, 200)) == (0, 225, 300)
    assert one["split"] == {"train": ["01-a-train"], "valid": ["01-a-valid"], "test": []}
    assert json.loads((tmp_path / "one" / "split.json").read_text())["valid"] == ["01-a-valid"]
    train = read_mask(tmp_path / "one" / "masks" / "01-a-train.png")[0]
    valid = read_mask(tmp_path / "one" / "masks" / "01-a-valid.png")[0]
    # the two files are the image cut in two: columns 0..224 and 225..299, nothing shared
    assert train.shape == (200, 225) and valid.shape == (200, 75)
    np.testing.assert_array_equal(np.concatenate([train, valid], axis=1), mask)
    np.testing.assert_array_equal(
        read_image(tmp_path / "one" / "images" / "01-a-valid.tif"), image[:, 225:]
    )

    # two pairs (one with instance labels, kept as TIFF) + a folder: the last is held out
    labels = mask.astype(np.uint16) * np.arange(mask.shape[1], dtype=np.uint16)[None]
    pairs = training_pairs(image, mask, "a", True) + training_pairs(image, labels, "a", True)
    two = write_dataset(pairs, tmp_path / "two", folder=tmp_path / "one")
    assert two["split"]["valid"] == ["folder-01-a-valid"]
    assert two["split"]["train"] == ["01-a", "02-a", "folder-01-a-train"]
    assert len(find_pairs(tmp_path / "two")) == 4
    np.testing.assert_array_equal(read_image(tmp_path / "two" / "masks" / "02-a.tif"), labels)
    with pytest.raises(ValueError, match="empty"):
        write_dataset(training_pairs(image, 0 * mask, "a", True), tmp_path / "three")
    with pytest.raises(ValueError, match="labels are"):
        training_pairs(image, mask[:10], "a", True)


def test_held_out_strip_is_away_from_the_edits(tmp_path):
    """The user corrected the left part of the model's mask: that part trains, a strip
    without edits is held out."""
    image, mask = tile(np.s_[:200, :320])
    predicted = mask.copy()
    predicted[:, 20:90] = 0  # the model missed these objects; the user painted them back
    pairs = training_pairs(image, mask, "a", True, predicted=predicted)
    edited = pairs[0].edited()
    assert edited.sum() == (mask[:, 20:90] > 0).sum() > 0
    axis, start, stop = holdout_strip(mask.shape, edited, mask)
    assert (axis, start, stop) == (1, 240, 320)  # 25% of 320 columns, none of the edits
    out = write_dataset(pairs, tmp_path / "d")
    assert out["split"]["train"] == ["01-a-train"]  # left of it
    valid = read_mask(tmp_path / "d" / "masks" / "01-a-valid.png")[0]
    np.testing.assert_array_equal(valid > 0, mask[:, start:stop] > 0)
    train = read_mask(tmp_path / "d" / "masks" / "01-a-train.png")[0]
    assert train.shape[1] + (stop - start) == 320  # nothing shared, nothing lost
    np.testing.assert_array_equal(train > 0, mask[:, :start] > 0)  # every correction
    edits = out["edits"]
    assert edits["known"] and edits["pixels"] == 0 and not edits["enough"]
    assert edits["all_pixels"] == edited.sum()  # held out and trained on: the verdict says
    assert "away from your edits: all of them train" in out["held_out"]

    # no edits at all: the model's own output, nothing to learn (tester37 #4), and
    # nothing written
    with pytest.raises(ValueError, match="Nothing to learn: the masks are Segment's output"):
        write_dataset(training_pairs(image, mask, "a", True, predicted=mask), tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_tiny_run_scores_old_and_new_model(tmp_path):
    """A random TM-UNet t (input 64, a nuclei model) fine-tuned 4 steps on a 128 x 256 crop."""
    start = tiny_nuclei_model(tmp_path / "start.pt", shipped_as="test-nuclei")
    image, mask = tile(np.s_[:128, :256])
    run_dir = tmp_path / "my runs" / "crop 1"  # spaces: the headless commands are quoted
    job = FinetuneJob(
        run_dir=run_dir,
        pairs=training_pairs(image, mask, "crop", True, source="test"),
        start_model=str(start),
        steps=4,
        lr=1e-3,
        batch_size=2,
        device="cpu",
        augmentation="flips, turns, zoom, rotation, colour",
    )
    seen = {"phase": [], "step": [], "eval": []}
    callbacks = {
        "on_phase": seen["phase"].append,
        "on_step": lambda step, total, loss: seen["step"].append((step, total)),
        "on_eval": lambda record: seen["eval"].append(dict(record)),
    }
    result = run_finetune(job, threading.Event(), callbacks)

    assert not result["stopped"] and result["step"] == result["total_steps"] == 4
    assert seen["step"] == [(s, 4) for s in range(1, 5)]
    assert [r["step"] for r in seen["eval"]] == [0, 4] and seen["eval"][0]["baseline"]
    assert result["held_out"].startswith("columns 192-255 of 256 (right-most)")
    assert not result["edits"]["known"] and "edits unknown" in result["rows"][0]["note"]
    best = load_checkpoint(result["best_checkpoint"])
    assert best.input_config.size == (64, 64)
    assert best.model_config.channels == ModelConfig.variant("t").channels
    # the fine-tuned model is still a nuclei model: Segment gives instances, at its threshold
    last = load_checkpoint(run_dir / "train" / "last.pt")
    for tuned in (best, last):
        assert tuned.metadata["modality"] == "nuclei" and "shipped_as" not in tuned.metadata
        assert model_defaults(tuned) == {
            "threshold": 0.4,
            "min_confidence": 0.3,  # the starting model's own settings travel
            "mode": "tile",
            "instances": True,
        }
    for scores in (result["old"], result["new"]):
        assert set(scores) == {"dice", "iou", "precision", "recall", "hd", "hd95"}
        assert 0.0 <= scores["dice"] <= 1.0
    assert math.isfinite(result["new"]["dice"])
    saved = json.loads((run_dir / "comparison.json").read_text())
    assert [r["model"].split()[0] for r in saved["rows"]] == ["before", "after"]
    assert saved["rows"] == result["rows"]
    saved_config = json.loads((run_dir / "config.json").read_text())
    assert saved_config["size"] == [64, 64]
    assert (saved_config["zoom"], saved_config["rotate"], saved_config["colour"]) == (0.25, 45, 0.2)
    plan = json.loads((run_dir / "finetune.json").read_text())
    assert plan["start_checkpoint"] == str(start.resolve()) and plan["pairs"][0]["source"] == "test"
    resume = shlex.split(plan["headless"]["resume"])
    assert resume[resume.index("--run-dir") + 1] == str(run_dir / "train")
    # a job not named (headless) is named after its first image, to the second; that name
    # is the Metrics row's and the checkpoint's when chosen by file
    assert re.fullmatch(r"fine-tuned on crop \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", plan["name"])
    assert result["name"] == plan["name"] == model_label(result["best_checkpoint"])
    assert result["rows"][1]["model"] == f"after fine-tuning: {plan['name']}"
    assert str(run_dir / "rerun") in shlex.split(plan["headless"]["rerun"])
    np.testing.assert_array_equal(
        read_mask(run_dir / "data" / "masks" / "01-crop-train.png")[0] > 0, mask[:, :192] > 0
    )

    # the run folder is taken; resuming a folder without a run is refused
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_finetune(job)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_finetune(FinetuneJob(run_dir=tmp_path / "empty", resume=True, device="cpu"))


def test_a_folder_image_open_as_a_pair_is_trained_once_and_never_when_held_out(tmp_path):
    """The user opened and corrected two tiles of the dataset folder and also chose that
    folder: each tile is one item, the open pair (the corrected mask), and the held-out
    part's folder copy is not trained on; the status says which folder images were left
    out (a real 1-step CPU run of a random TM-UNet t). A holds most of the corrections:
    a strip of it is held out, the rest of it trains."""
    from napari_tmunet.data.images import write_image, write_mask

    start = tiny_nuclei_model(tmp_path / "start.pt", own_settings=False)
    folder = tmp_path / "dataset"
    crops = {"A": np.s_[:128, :128], "B": np.s_[:128, 128:256], "C": np.s_[128:256, :128]}
    for name, crop in crops.items():  # the folder's reference pairs
        image, mask = tile(crop)
        write_image(folder / "images" / f"{name}.tif", image)
        write_mask(folder / "masks" / f"{name}.png", mask > 0)
    pairs = []
    for name, edited_columns in (("A", np.s_[:, 20:90]), ("B", np.s_[:, 30:40])):
        image = read_image(folder / "images" / f"{name}.tif")  # as File > Open gives it
        corrected = read_mask(folder / "masks" / f"{name}.png")[0] > 0
        corrected[:40, :64] = False  # the user's corrections: A has more, it is held out
        predicted = corrected.copy()
        predicted[edited_columns] = ~predicted[edited_columns]
        pairs += training_pairs(image, corrected.astype(np.uint8), name, True, "", predicted)
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir,
        pairs=pairs,
        dataset_folder=str(folder),
        start_model=str(start),
        steps=1,
        batch_size=1,
        device="cpu",
    )
    phases = []
    result = run_finetune(job, threading.Event(), {"on_phase": phases.append})

    assert result["step"] == 1
    plan = json.loads((run_dir / "finetune.json").read_text())
    split, region = plan["split"], plan["held_out_region"]
    # the reference image is held out whole (fewest edits: unknown), the corrections train
    assert split["valid"] == ["folder-C"] and region is None
    assert split["train"] == ["01-A", "02-B"]  # no folder-A, no 2nd B
    data = run_dir / "data" / "images"
    held = read_image(data / "folder-C.tif")
    for name in split["train"]:
        trained = read_image(next(data.glob(f"{name}.*")))
        assert not np.array_equal(trained, held), name
    note = "2 folder images left out (open as pairs: your corrected masks train instead): "
    note += "A.tif, B.tif"
    assert note in phases
    assert json.loads((run_dir / "finetune.json").read_text())["left_out"] == note


def test_resize_model_stays_a_resize_model(tmp_path, monkeypatch):
    """The shipped ultrasound model (resize mode) fine-tuned 2 steps on the ultrasound
    sample: its checkpoints keep its inference mode and input settings, so Segment runs
    them as it runs the starting model, and the held-out comparison scores both models
    in that mode (tiling a resize model collapses its Dice)."""
    from napari_tmunet import evaluation, registry

    modes = []  # the mode of each held-out scoring, the real evaluation run
    real_evaluate = evaluation.evaluate

    def recording_evaluate(model, samples, input_config, mode, **kwargs):
        modes.append(mode)
        return real_evaluate(model, samples, input_config, mode, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", recording_evaluate)
    image, mask = load_sample("ultrasound")
    # Segment's output went past the lesion's upper edge and the user trimmed it: these
    # edits train, the held-out strip is across the lesion's lower part
    predicted = ndi.binary_dilation(mask, iterations=6).astype(np.uint8)
    rows = np.nonzero(np.asarray(mask).any(axis=1))[0]
    middle = (rows.min() + rows.max()) // 2
    predicted[middle:] = np.asarray(mask)[middle:]
    start = registry.load_model("TM-UNet ultrasound", "cpu")
    assert start.inference_mode == "resize"
    run_dir = tmp_path / "run"
    job = sample_job(run_dir, "ultrasound", image, mask, steps=2, lr=1e-5, predicted=predicted)
    result = run_finetune(job)

    # before, and the engine's validation (the strip inside the whole image), whose
    # scores best.pt of that step takes (the same weights: not scored again)
    assert result["step"] == 2 and modes == ["resize", "resize"]
    assert json.loads((run_dir / "config.json").read_text())["mode"] == "resize"
    for path in (result["best_checkpoint"], run_dir / "train" / "last.pt"):
        tuned = load_checkpoint(path)
        assert tuned.inference_mode == start.inference_mode
        assert model_defaults(tuned) == model_defaults(start)
        assert tuned.input_config == start.input_config  # size, normalisation, threshold
    # a gentle fine-tune of a good model in its own mode stays good on the held-out strip
    assert result["edits"]["pixels"] == 0 and result["held_out_foreground"] > 300
    old, new = result["old"]["dice"], result["new"]["dice"]  # measured 0.80, 0.80: its edge
    assert old > 0.75 and new > old - 0.05


# A fine-tuning run in a process of its own, killed (SIGKILL: napari crashed, the power
# went) at step 2 of 20, before the end of the first evaluation period: no last.pt yet.
KILLED_RUN = """
import os, signal, sys
import torch
from napari_tmunet.data.images import read_image, read_mask
from napari_tmunet.training.finetune import FinetuneJob, run_finetune, training_pairs

torch.set_num_threads(1)
folder, start, run_dir = sys.argv[1:4]
image = read_image(folder + "/images/TCGA-21-5786-01Z-00-DX1.tif")[:128, :256]
mask = read_mask(folder + "/masks/TCGA-21-5786-01Z-00-DX1.png")[0][:128, :256]
job = FinetuneJob(run_dir=run_dir, pairs=training_pairs(image, mask, "crop", True),
                  start_model=start, steps=20, batch_size=2, device="cpu")

def on_step(step, total, loss):
    if step == 2:
        os.kill(os.getpid(), signal.SIGKILL)

run_finetune(job, callbacks={"on_step": on_step})
"""


def test_a_run_killed_before_its_first_checkpoint_restarts_as_advised(tmp_path):
    """The resume command finetune.json records fails (no last.pt); the advice it prints
    is a command that starts the run again from its saved settings, and it works."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    start = tiny_nuclei_model(tmp_path / "start.pt")
    run_dir = tmp_path / "my runs" / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    script = [sys.executable, "-c", KILLED_RUN, str(MONUSEG), str(start), str(run_dir)]
    killed = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert not (run_dir / "train" / "last.pt").exists()

    def cli(command: str) -> subprocess.CompletedProcess:
        argv = shlex.split(command)
        assert argv[0] == "napari-tmunet-train"
        argv = [sys.executable, "-m", "trainer.cli", *argv[1:], "--no-progress"]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    plan = json.loads((run_dir / "finetune.json").read_text())
    resume = cli(plan["headless"]["resume"])
    assert resume.returncode != 0
    error = resume.stderr.strip().splitlines()[-1]
    assert "before its first checkpoint" in error and "without --resume" not in error
    advice = error.split("start it again from its saved settings: ")[1]
    assert shlex.split(advice)[-2:] == ["--run-dir", str(run_dir / "train")]
    restarted = cli(advice)
    assert restarted.returncode == 0, restarted.stderr
    assert load_checkpoint(run_dir / "train" / "last.pt").training_state["step"] == 20
    # finetune.json's own restart command names the same run folder
    assert shlex.split(plan["headless"]["restart"])[-2:] == ["--run-dir", str(run_dir / "train")]


def tiny_nuclei_model(path: Path, own_settings: bool = True, **metadata) -> Path:
    """A random TM-UNet t (seed 0, input 64) saved at ``path`` as a nuclei model that
    segments in tile mode (the mode its training run scored with), with a threshold and
    least confidence of its own (0.4, 0.3; with ``own_settings`` False, the defaults) and
    ``metadata`` added to its metadata."""
    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    settings = {"threshold": 0.4, "min_confidence": 0.3} if own_settings else {}
    return save_checkpoint(
        path,
        build_model(config),
        config,
        InputConfig.for_channels(3, size=(64, 64), **settings),
        metadata={"modality": "nuclei", "train_config": {"mode": "tile"}, **metadata},
    )


CLINIC = DATASETS / "CVC-ClinicDB"


@pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no CVC-ClinicDB at {DATASETS}")
def test_held_out_strip_is_scored_inside_the_whole_frame(tmp_path):
    """The shipped colonoscopy model (resize mode) on ClinicDB frame 30 with its true mask
    (a reference mask: the edits are unknown, so the strip holds part of the polyp; the
    strip of a corrected Segment output avoids the corrections): the held-out strip (25%
    of the columns) is scored the way Segment sees it,
    the whole frame run and only the strip's pixels counted, before and after and in the
    engine's validation that picks best.pt. The strip run alone, stretched to the model's
    512 x 512 input (what was scored before), scores otherwise."""
    from napari_tmunet import registry
    from napari_tmunet.inference import run_to_completion, segment
    from napari_tmunet.training.finetune import held_out_scores

    image = read_image(CLINIC / "images" / "30.png")
    truth = read_mask(CLINIC / "masks" / "30.tif")[0] > 0
    start = registry.load_model("TM-UNet colonoscopy", "cpu")
    predicted = run_to_completion(segment(image, start, mode="resize", device="cpu")).labels > 0
    axis, a, b = holdout_strip(truth.shape, None, truth)  # as the run picks it
    cut = (slice(None), slice(a, b)) if axis == 1 else (slice(a, b), slice(None))
    segment_dice = dice(predicted[cut], truth[cut])  # Segment's output, inside the strip
    strip_alone = [("strip", image[cut], truth[cut])]
    alone = held_out_scores(start.model, strip_alone, start.input_config, "resize", "cpu")["dice"]
    print(f"held-out strip: Segment's output {segment_dice:.4f}, the strip alone {alone:.4f}")
    # measured 0.690 and 0.210, the polyp's right edge (where the edits were: 0.926, 0.709)
    assert segment_dice > 0.6 and alone < segment_dice - 0.1

    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir,
        pairs=training_pairs(image, truth.astype(np.uint8), "30", True, "frame 30"),
        start_model="TM-UNet colonoscopy",
        steps=2,
        lr=1e-5,
        batch_size=1,
        device="cpu",
    )
    evals = []
    result = run_finetune(job, callbacks={"on_eval": evals.append})

    assert result["old"]["dice"] == pytest.approx(segment_dice, abs=1e-3)
    assert result["new"]["dice"] > segment_dice - 0.05  # a gentle fine-tune keeps it
    assert result["held_out_foreground"] == truth[cut].sum()
    assert not result["edits"]["known"] and result["modality"] == "colonoscopy"
    # the engine's validation of step 2 (best.pt) scored the strip inside the whole frame
    assert [r["step"] for r in evals] == [0, 2]
    assert evals[1]["val_dice"] == pytest.approx(result["new"]["dice"], abs=1e-3)
    plan = json.loads((run_dir / "finetune.json").read_text())
    assert plan["modality"] == "colonoscopy"
    assert {k: plan["held_out_region"][k] for k in ("axis", "start", "stop")} == {
        "axis": axis,
        "start": a,
        "stop": b,
    }
    whole = read_mask(run_dir / "data" / plan["held_out_region"]["mask"])[0]
    np.testing.assert_array_equal(whole > 0, truth)  # the whole frame, not in the split


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_a_comparison_that_cannot_tell_the_models_apart_says_why():
    """No or little foreground in the held-out part, or too few known edits: undecided."""
    from napari_tmunet.training.finetune import comparison_problem

    enough = {"known": True, "pixels": 900, "objects": 5, "enough": True}
    few = {"known": True, "pixels": 458182, "objects": 1, "enough": False}
    scored = {"old": {"dice": 0.9}, "new": {"dice": 0.8}, "held_out_foreground": 5000}
    assert comparison_problem({**scored, "edits": enough}) == ""
    assert comparison_problem({**scored, "edits": {"known": False}}) == ""  # reference masks
    assert "so few edits" in comparison_problem({**scored, "edits": few})
    empty = {**scored, "edits": enough, "held_out_foreground": 0}
    assert "no foreground" in comparison_problem(empty)
    assert "120 foreground pixels" in comparison_problem({**empty, "held_out_foreground": 120})
    assert comparison_problem({**empty, "old": None}) == ""  # nothing to compare with
    # the foreground problems alone: no edits can make such a held-out part decide
    assert foreground_problem(empty) == comparison_problem(empty)
    assert foreground_problem({**scored, "edits": few}) == ""


def test_edits_are_described_in_words():
    """One region / pixel in the singular, more in the plural; unknown edits said so."""
    one = {"known": True, "pixels": 1, "objects": 1, "enough": False}
    many = {"known": True, "pixels": 400, "objects": 3, "enough": True}
    assert describe_edits(one) == (
        "rests on 1 edited pixel in 1 region - fewer than 300 edited pixels and fewer than "
        "3 edited regions: too few for a meaningful comparison"
    )
    assert describe_edits(many) == "rests on 400 edited pixels in 3 regions"
    # many pixels in one region: the rule it misses is named, not "too few" pixels
    big = {"known": True, "pixels": 458182, "objects": 1, "enough": False}
    assert describe_edits(big) == (
        "rests on 458182 edited pixels in 1 region - fewer than 3 edited regions: too few "
        "for a meaningful comparison"
    )
    unknown = describe_edits({"known": False})
    assert unknown == (
        "edits unknown: the masks are not Segment results open in napari, "
        "so the comparison is rough"
    )
    assert "(" not in unknown  # the dock's status puts it in parentheses: never nested


def test_stack_trains_only_on_the_edited_frame(tmp_path):
    """A Segment output stack with one corrected frame: only that frame's data is used,
    split as one edited image is; the untouched frames (the model's own output) are left
    out. A stack with a reference mask (no kept prediction) keeps every frame."""
    folder = Path(__file__).resolve().parents[1] / "napari_tmunet" / "samples"
    image = read_image(folder / "nuclei_image.png")
    mask = (read_mask(folder / "nuclei_mask.png")[0] > 0).astype(np.uint8)
    crops = [np.s_[:96, :128], np.s_[96:192, :128], np.s_[:96, 128:256]]
    stack = np.stack([image[c] for c in crops])  # (3, 96, 128, 3)
    predicted = np.stack([mask[c] for c in crops])  # (3, 96, 128): Segment's output
    labels = predicted.copy()
    labels[1, 10:40, 60:100] = 1  # the user corrects frame 1 only
    pairs = training_pairs(stack, labels, "s", True, "stack", predicted=predicted)
    out = write_dataset(pairs, tmp_path / "d")
    names = out["split"]["train"] + out["split"]["valid"]
    assert out["split"]["valid"] == ["01-s-z1-valid"] and all("-s-z1-" in n for n in names)
    # the untouched frames named once for the stack (short, however many frames)
    assert out["left_out"] == (
        "not trained on (not edited: the model's own output): stack frames 0, 2"
    )
    assert [p["source"] for p in out["pairs"]] == ["stack frame 1"]
    # the edits (columns 60-99) train: the strip is the last without any, columns 24-55
    assert holdout_strip((96, 128), labels[1] != predicted[1], labels[1]) == (1, 24, 56)
    assert names == ["01-s-z1-train", "01-s-z1-train-2", "01-s-z1-valid"]
    left, right, valid = (read_mask(tmp_path / "d" / "masks" / f"{n}.png")[0] for n in names)
    rebuilt = np.concatenate([left, valid, right], axis=1) > 0  # columns 0-23, 24-55, 56-127
    np.testing.assert_array_equal(rebuilt, labels[1] > 0)  # frame 1's corrected mask, whole
    assert out["edits"]["pixels"] == 0 and "stack frame 1" in out["held_out"]

    reference = write_dataset(training_pairs(stack, labels, "s", True, "stack"), tmp_path / "r")
    assert reference["split"]["train"] == ["01-s-z0", "02-s-z1"] and not reference["left_out"]


SAMPLES = Path(__file__).resolve().parents[1] / "napari_tmunet" / "samples"


def test_cmyk_and_grey_alpha_images_train_in_the_colours_segment_gives_the_model(tmp_path):
    """A CMYK JPEG of a real colonoscopy frame, its ink amounts as napari's reader keeps
    them, trains as the RGB Pillow converts it to (as Segment converts it); the run folder
    holds that RGB, never the inks. A grey + alpha copy of a real ultrasound frame trains
    as its grey channel. Float CMYK cannot be converted: refused naming the layers."""
    from PIL import Image as Picture

    colour = read_image(SAMPLES / "colonoscopy_image.png")
    mask = (read_mask(SAMPLES / "colonoscopy_mask.png")[0] > 0).astype(np.uint8)
    Picture.fromarray(colour).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Picture.open(tmp_path / "cmyk.jpg") as stored:
        inks, as_rgb = np.asarray(stored), np.asarray(stored.convert("RGB"))
    assert inks.shape == (*mask.shape, 4)
    pairs = training_pairs(inks, mask, "cmyk", True, conversion=CMYK)
    np.testing.assert_array_equal(pairs[0].image, as_rgb)
    out = write_dataset(pairs, tmp_path / "c")
    np.testing.assert_array_equal(read_image(tmp_path / "c" / out["region"]["image"]), as_rgb)
    for name in out["split"]["train"] + out["split"]["valid"]:
        assert read_image(tmp_path / "c" / "images" / f"{name}.tif").shape[2] == 3

    grey = read_image(SAMPLES / "ultrasound_image.png")
    grey_mask = read_mask(SAMPLES / "ultrasound_mask.png")[0]
    grey_alpha = np.dstack([grey, np.full_like(grey, 180)])  # (H, W, 2)
    with pytest.raises(ValueError, match="the labels are"):  # not converted: no fit
        training_pairs(grey_alpha, grey_mask, "la", False)
    pairs = training_pairs(grey_alpha, grey_mask, "la", False, conversion=GREY_ALPHA)
    np.testing.assert_array_equal(pairs[0].image, grey)
    out = write_dataset(pairs, tmp_path / "g")
    np.testing.assert_array_equal(read_image(tmp_path / "g" / out["region"]["image"]), grey)

    with pytest.raises(ValueError, match="cannot train on layers 'c' \\+ 'm': its CMYK pixels"):
        training_pairs(inks.astype(np.float32), mask, "c", True, "layers 'c' + 'm'", None, CMYK)
