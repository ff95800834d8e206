"""The headless summary of a fine-tune's rerun whose held-out part has no foreground
(the shipped nuclei model on the CPU, MoNuSeg crops of 96 x 96, 2 steps): it says what
was scored, false-positive pixels, and that the last checkpoint is the model."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet import registry
from napari_tmunet.data.images import read_image, read_mask
from napari_tmunet.training.finetune import (
    LAST_CHECKPOINT_NOTE,
    NO_HELD_OUT_FOREGROUND,
    FinetuneJob,
    run_finetune,
    training_pairs,
)

MONUSEG = DATASETS / "MoNuSeg"
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"no MoNuSeg at {DATASETS}"),
    pytest.mark.skipif(
        registry.find_model("TM-UNet nuclei") is None, reason="the shipped nuclei model is needed"
    ),
]


def crop(name: str, cut) -> tuple[np.ndarray, np.ndarray]:
    """A MoNuSeg crop (RGB) and its mask (bool)."""
    image = read_image(MONUSEG / "images" / f"{name}.tif")[cut]
    return np.ascontiguousarray(image), read_mask(MONUSEG / "masks" / f"{name}.png")[0][cut]


def test_headless_summary_names_false_positive_pixels_without_held_out_foreground(tmp_path, capsys):
    """A crop with nuclei and a stroma crop without any (held out whole) fine-tune the
    nuclei model; the run's headless rerun command (real CLI) ends with a summary that
    gives the held-out false-positive pixels its metrics.jsonl records, first -> last,
    and says the last checkpoint is the model: not "no validation score"."""
    from trainer.cli import main

    tile, tile_mask = crop("TCGA-21-5786-01Z-00-DX1", np.s_[:96, :96])
    stroma, stroma_mask = crop("TCGA-21-5784-01Z-00-DX1", np.s_[128:224, 624:720])
    assert tile_mask.any() and not stroma_mask.any()
    pairs = [
        *training_pairs(tile, tile_mask.astype(np.uint8), "tile", True),
        *training_pairs(stroma, stroma_mask.astype(np.uint8), "stroma", True),
    ]
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir, pairs, start_model="TM-UNet nuclei", steps=2, batch_size=1, device="cpu"
    )
    result = run_finetune(job)
    assert result["held_out_foreground"] == 0 and result["checkpoint_note"]

    plan = json.loads((run_dir / "finetune.json").read_text())
    argv = shlex.split(plan["headless"]["rerun"])
    capsys.readouterr()
    # two evaluation periods (the run had one): the summary's first -> last
    assert main([*argv[1:], "--no-progress", "--device", "cpu", "--epochs", "2"]) == 0
    out = capsys.readouterr().out

    lines = (run_dir / "rerun" / "metrics.jsonl").read_text().splitlines()
    counts = [
        (r["step"], r["val_false_positive_px"])
        for r in map(json.loads, lines)
        if "val_false_positive_px" in r
    ]
    assert len(counts) == 2, counts
    (first_step, first), (last_step, last) = counts
    assert "no validation score" not in out
    summary = next(line for line in out.splitlines() if line.startswith("finished at step 2"))
    assert (
        f"{NO_HELD_OUT_FOREGROUND}: false-positive pixels {first} at step {first_step} -> "
        f"{last} at step {last_step}, no Dice" in summary
    )
    assert LAST_CHECKPOINT_NOTE.format(step=2) in summary
    assert not (run_dir / "rerun" / "best.pt").exists()
    assert (run_dir / "rerun" / "last.pt").is_file()
