"""Fine-tune where the held-out part has no foreground, a partly edited stack, and the
Metrics dock's note (real docks on the threaded path, the shipped nuclei model on the
CPU, MoNuSeg crops; 1- and 2-step fine-tunes on 96 x 96 crops).

A pathologist keeps a tile of stroma (no nuclei) out of training: Dice there is 1.0 for
a model that finds nothing and 0.0 for one with a single false pixel, so the run reports
and records false-positive pixels instead, picks no best checkpoint by such a Dice and
makes the last checkpoint the model."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from _paths import DATASETS
from test_finetune_dock_fixes import open_dock, start_small

from napari_tmunet import registry
from napari_tmunet._finetune_pairs import NOT_CORRECTED, UNEDITED
from napari_tmunet.data.images import read_image, read_mask
from napari_tmunet.training.finetune import LAST_CHECKPOINT_NOTE, NO_HELD_OUT_FOREGROUND

pytestmark = [
    pytest.mark.gui,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not (DATASETS / "MoNuSeg").is_dir(), reason=f"no MoNuSeg at {DATASETS}"),
]

MONUSEG = DATASETS / "MoNuSeg"
# 96 x 96 crops: stroma without a nucleus in its mask (the nuclei model calls thousands
# of its pixels nuclei), and crops with nuclei
STROMA = ("TCGA-21-5784-01Z-00-DX1", np.s_[128:224, 624:720])
NUCLEI = [
    ("TCGA-21-5786-01Z-00-DX1", np.s_[:96, :96]),
    ("TCGA-69-7764-01A-01-TS1", np.s_[:96, :96]),
    ("TCGA-2Z-A9J9-01A-01-TS1", np.s_[:96, :96]),
]


@pytest.fixture(autouse=True)
def _nuclei_model():
    if registry.find_model("TM-UNet nuclei") is None:
        pytest.skip("the shipped nuclei model is needed")


def crop(name_and_cut) -> tuple[np.ndarray, np.ndarray]:
    """A MoNuSeg crop (RGB) and its mask (bool)."""
    name, cut = name_and_cut
    image = read_image(MONUSEG / "images" / f"{name}.tif")[cut]
    return np.ascontiguousarray(image), read_mask(MONUSEG / "masks" / f"{name}.png")[0][cut]


def run(qtbot, tune, run_dir, steps: int) -> dict:
    """Start ``steps`` steps on the CPU (the dock's worker) and wait for the end."""
    start_small(tune, run_dir, steps=steps)
    tune.start_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "", tune.error
    return tune.result


def metrics_dock(viewer):
    metrics = next(w for n, w in viewer.window.dock_widgets.items() if "Metrics" in n)
    return getattr(metrics, "__wrapped__", metrics)


def validation_records(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if any(k.startswith("val_") for k in r)]


def test_a_held_out_tile_without_nuclei_is_scored_by_false_positives(
    make_napari_viewer, qtbot, tmp_path
):
    """A MoNuSeg crop with nuclei and a stroma crop, each with its reference mask (the
    stroma's is empty); the stroma crop, the last pair, is held out whole. The run
    reports false-positive pixels before -> after, not "held-out Dice 0.0000 -> 0.0000";
    comparison.json has Dice null and the counts, metrics.jsonl val_false_positive_px
    and no val_dice; no best.pt is picked and the last checkpoint is the model, as the
    status says. The run's headless rerun command validates the same way. The user's
    masks are kept."""
    from trainer.cli import main

    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    (tile, tile_mask), (stroma, stroma_mask) = crop(NUCLEI[0]), crop(STROMA)
    assert tile_mask.any() and not stroma_mask.any()
    viewer.add_image(tile, name="tile", rgb=True)
    viewer.add_labels(tile_mask.astype(np.uint8), name="tile mask")
    viewer.add_image(stroma, name="stroma", rgb=True)
    painted = viewer.add_labels(stroma_mask.astype(np.uint8), name="stroma mask")
    tune.add_pair_button.native.click()
    assert [(r.image.value.name, r.mask.value.name) for r in tune.rows] == [
        ("tile", "tile mask"),
        ("stroma", "stroma mask"),
    ]
    tune.model.value = "TM-UNet nuclei"
    run_dir = tmp_path / "run"
    result = run(qtbot, tune, run_dir, steps=2)

    assert result["held_out"] == "whole image(s): layers 'stroma' + 'stroma mask'"
    assert result["held_out_foreground"] == 0
    old, new = result["old"]["false_positive_px"], result["new"]["false_positive_px"]
    assert old > 1000  # the starting model calls much of the stroma nuclei
    assert result["old"]["dice"] is None and result["new"]["dice"] is None
    status = tune.status.value + tune.details.value  # the headline, the comparison
    assert f"held-out: no foreground; false-positive pixels {old}\u00a0→\u00a0{new}" in status
    assert "held-out Dice" not in status and "0.0000" not in status
    # no best checkpoint by a meaningless Dice: the last one is the model, and it says so
    train = run_dir / "train"
    assert not (train / "best.pt").exists() and (train / "last.pt").is_file()
    assert result["best_checkpoint"] == str(train / "last.pt")
    assert LAST_CHECKPOINT_NOTE.format(step=2) in status

    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert comparison["old"]["dice"] is None and comparison["new"]["dice"] is None
    assert (comparison["old"]["false_positive_px"], comparison["new"]["false_positive_px"]) == (
        old,
        new,
    )
    assert [row["dice"] for row in comparison["rows"]] == [None, None]
    records = validation_records(train)
    assert [r["step"] for r in records] == [2]
    assert records[-1]["val_false_positive_px"] == new and "val_dice" not in records[-1]
    # the live plot drew the counts (the starting model's at step 0, then step 2's)
    assert list(tune._dice_line.get_ydata()) == [old, new]

    metrics = metrics_dock(viewer)
    assert [row["false_positive_px"] for row in metrics.comparison] == [old, new]
    names, note = metrics.comparison_note.value.split("\n", 1)  # the models, then the part
    assert names.startswith("before: TM-UNet ") and note.startswith(NO_HELD_OUT_FOREGROUND)

    # the user decides; used, the last checkpoint is the active model
    tune.use_anyway_button.native.click()
    assert tune.active.current.model == str(train / "last.pt")
    assert not painted.data.any() and (run_dir / "data" / "masks").is_dir()

    # headless, the run's rerun command validates as the run did: no Dice, no best.pt
    plan = json.loads((run_dir / "finetune.json").read_text())
    argv = shlex.split(plan["headless"]["rerun"])
    assert main([*argv[1:], "--no-progress", "--device", "cpu"]) == 0
    rerun = run_dir / "rerun"
    records = validation_records(rerun)
    assert records and all("val_dice" not in r for r in records)
    assert all(r["val_false_positive_px"] >= 0 for r in records)
    assert not (rerun / "best.pt").exists() and (train / "last.pt").is_file()


def erase_frame(labels, z: int | None, objects: int | None = None) -> int:
    """Erase ``objects`` objects (all when None) of frame ``z`` of a Segment output (of
    the 2-D output when None) with the bucket (label 0), a click each as napari's mouse
    binding does it (its paint event comes once the pixels changed); returns the pixels
    changed."""
    before = np.array(labels.data)
    lead = () if z is None else (z,)
    erased = 0
    while objects is None or erased < objects:
        ys, xs = np.nonzero(np.asarray(labels.data)[lead])
        if not len(ys):
            break
        with labels.block_history():
            labels.fill((*lead, int(ys[0]), int(xs[0])), 0)
        erased += 1
    return int((np.asarray(labels.data) != before).sum())


def segmented_stack(viewer, qtbot):
    """A stack of four MoNuSeg crops (the stroma one second) segmented in the Segment
    dock with the nuclei model: the dock, the stack and its Segment output."""
    segment = open_dock(viewer, "Segment")
    frames = [crop(NUCLEI[0])[0], crop(STROMA)[0], crop(NUCLEI[1])[0], crop(NUCLEI[2])[0]]
    stack = viewer.add_image(np.stack(frames), name="stack", rgb=True)  # (4, 96, 96, 3)
    segment.image.value = stack
    segment.model.value = "TM-UNet nuclei"
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    labels = segment.last_layer
    assert labels.data.shape == (4, 96, 96) and np.asarray(labels.data)[[1, 3]].any()
    return segment, stack, labels


def test_a_partly_edited_stack_names_the_frames_that_train(make_napari_viewer, qtbot):
    """The user erases every false nucleus of the stroma frame (1), then two objects of
    frame 3: the stack's pair says which frames train and how many unedited ones are
    left out (before, a single row said nothing, and next to another edited pair a
    partly edited stack counted as edited). A second pair whose Segment output is not
    edited is left out whole, as before."""
    viewer = make_napari_viewer()
    segment, stack, labels = segmented_stack(viewer, qtbot)
    tune = open_dock(viewer, "Fine-tune")
    (row,) = tune.rows
    assert (row.image.value, row.mask.value) == (stack, labels)
    assert row.note.value == NOT_CORRECTED  # nothing edited: Start would refuse it

    erase_frame(labels, 1)
    assert row.note.value == "frame 1 edited: it trains; 3 unedited frames are left out"
    erase_frame(labels, 3, objects=2)
    note = "frames 1, 3 edited: they train; 2 unedited frames are left out"
    assert row.note.value == note and not row.note.native.isHidden()

    other = viewer.add_image(crop(NUCLEI[0])[0], name="other", rgb=True)
    segment.image.value = other
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    tune.add_pair_button.native.click()
    assert tune.rows[1].image.value is other and tune.rows[1].note.value == UNEDITED
    assert tune.rows[0].note.value == note
    erase_frame(segment.last_layer, None, objects=1)  # now edited: it trains whole
    assert tune.rows[1].note.native.isHidden() and tune.rows[0].note.value == note


def test_a_cleared_stroma_frame_trains_and_the_left_out_line_once(
    make_napari_viewer, qtbot, tmp_path
):
    """The stack with its stroma frame (1) cleared and two objects of frame 3 erased,
    fine-tuned one step: frame 3 has the fewest edits, but held out whole it would leave
    only the empty stroma frame to train on, so a strip of it is held out (away from its
    edits) and the stroma frame, with its corrections, trains. The status and the
    Metrics dock's note name the frames left out once."""
    viewer = make_napari_viewer()
    _, _, labels = segmented_stack(viewer, qtbot)
    tune = open_dock(viewer, "Fine-tune")
    stroma_edits = erase_frame(labels, 1)
    frame3_edits = erase_frame(labels, 3, objects=2)

    result = run(qtbot, tune, tmp_path / "run", steps=1)
    left_out = "not trained on (not edited: the model's own output): layers 'stack' + "
    left_out += "'stack labels' frames 0, 2"
    assert result["left_out"] == left_out
    details = tune.details.value  # the comparison, under the verdict's headline
    assert details.count(left_out) == 1 and details.endswith(f"\n{left_out}")
    assert left_out not in tune.status.value
    metrics = metrics_dock(viewer)
    assert metrics.comparison_note.value.count(left_out) == 1, metrics.comparison_note.value
    assert metrics.comparison_note.value.endswith(f"\n{left_out}")

    plan = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert result["held_out"].endswith("of layers 'stack' + 'stack labels' frame 3")
    assert plan["split"]["valid"] == ["02-stack-z3-valid"]
    assert "01-stack-z1" in plan["split"]["train"]  # the stroma frame trains
    assert result["edits"]["all_pixels"] == stroma_edits + frame3_edits
    assert result["edits"]["pixels"] < frame3_edits and result["held_out_foreground"] > 0
    trained = stroma_edits + frame3_edits - result["edits"]["pixels"]
    assert f"{trained} of your {stroma_edits + frame3_edits} corrected pixels trained" in details
