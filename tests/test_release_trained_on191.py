"""``trainer.release --trained-on``'s words name the training data in the registry's
description and the generalist card's "Data" line, not the run's ``--dataset-name``
(F20k's is the bare word "colonoscopy"); without it, as before (fix-191 #3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from _paths import REPO
from test_release_named_only import F20K, WEIGHTS, _checkout_copy, _colonoscopy

from trainer import release

WORDS = "colonoscopy (Kvasir-SEG, CVC-ClinicDB)"


def test_trained_on_words_name_the_data_in_the_description_and_the_card(tmp_path):
    root = _checkout_copy(tmp_path / "checkout")
    checkpoint = shutil.copy(WEIGHTS / "tmunet-b-colonoscopy.pt", tmp_path / "colon.pt")
    argv = [*_colonoscopy(Path(checkpoint)), "--trained-on", "colonoscopy", WORDS]
    release.main([*argv, "--into", str(root)])

    registry = json.loads((root / "napari_tmunet" / "weights" / "registry.json").read_text())
    (colon,) = [m for m in registry["models"] if m["modality"] == "colonoscopy"]
    assert colon["trained_on"] == WORDS
    assert colon["description"].startswith(f"TM-UNet b trained on {WORDS} (GPU); test Dice")
    _, cards = release.split_cards((root / "docs" / "models.md").read_text())
    card = " ".join(cards["tmunet-b-colonoscopy"].split())  # the card's lines joined
    assert f"- Data: the training parts of {WORDS} (1195 train / 145 valid" in card


def test_without_trained_on_the_runs_dataset_name_names_the_data():
    run = release.read_run(F20K / "COLON-generalist-F20k-tmunet-b")
    assert run["run_info"]["dataset"]["name"] == "colonoscopy"  # its --dataset-name
    assert release.trained_on(run) == "colonoscopy"
    assert release.trained_on(run, WORDS) == WORDS
    combined = release.read_run(REPO / "docs/runs/gpu-2026-12-01c/COLON-generalist-B-tmunet-b")
    assert release.trained_on(combined) == "Kvasir + CVCCDB"
