"""The card of a generalist model (``release.generalist_card``): trained with ``--no-test``
on several sets' training parts and scored on their test parts with
``bench/cross_eval.py``; built from the real run records and score files in docs/runs."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from _paths import REPO
from test_release_command import _reparsed, presets  # noqa: F401 (fixture)

from napari_tmunet._sample_data import SAMPLES
from trainer import release

RECORDS = REPO / "docs" / "runs" / "gpu-2026-12-01c"
SCORES = RECORDS / "scores"
OWN = {"Kvasir-SEG test-100": "colon-gen-kvasir", "CVC-ClinicDB test part": "colon-gen-cvc"}
OTHER = {"previous model, CVC-ClinicDB test part": "shipped-colon-cvc"}


def _entry() -> dict:
    def rows(scores: dict) -> list[list[str]]:
        return [
            ["colonoscopy", label, str(SCORES / name / "summary.json")]
            for label, name in scores.items()
        ]

    scores = release.read_scores(rows(OWN), rows(OTHER))["colonoscopy"]
    return {
        "name": "tmunet-b-colonoscopy", "modality": "colonoscopy", "scores": scores,
        "runs": [release.read_run(RECORDS / "COLON-generalist-B-tmunet-b")],
        "file": "tmunet-b-colonoscopy.pt", "size_mb": 11.6, "params": 5.74e6, "mode": "resize",
        "cpu_s_per_image": 0.5, "sample": SAMPLES["colonoscopy"], "sample_dice": 0.9,
        "sample_shape": (288, 384, 3),
    }  # fmt: skip


def test_the_registry_dice_is_the_mean_over_the_own_test_images():
    dice = []
    for name in OWN.values():
        with open(SCORES / name / "per-image.csv") as f:
            dice += [float(r["dice"]) for r in csv.DictReader(f) if int(r["mask_pixels"]) > 0]
    assert len(dice) == 210  # Kvasir test-100 + ClinicDB's 110
    assert release.own_test_dice(_entry()) == pytest.approx(sum(dice) / len(dice), abs=1e-12)


def test_the_card_lists_every_score_and_a_command_that_reproduces_the_run(presets):  # noqa: F811
    entry = _entry()
    text = release.card(entry, "NOTE")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(OWN) + len(OTHER)
    for label in OWN:
        assert f"| **{label}** | " in text  # own test parts in bold
    for label in OTHER:
        assert f"| {label} | " in text
    kvasir = entry["scores"][0][1]
    assert f"{100 * kvasir['dice_mean']:.2f} / {100 * kvasir['dice_median']:.2f}" in text
    assert "NOTE" in text and "zoom up to x1.25" in text and "best validation Dice 88.88" in text
    command = re.search(r"Command: `([^`]+)`", text).group(1)
    again = _reparsed(command)
    config = entry["runs"][0]["config"]
    for key in ("split_file", "steps", "lr", "zoom", "rotate", "colour", "rot90", "hflip"):
        assert getattr(again, key) == config[key], key
    assert "--data ../extra-data/colonoscopy" in command


def test_the_card_says_when_its_scores_drop_unsure_objects():
    entry = _entry()
    assert "mean probability below" not in release.card(entry, "NOTE")
    entry["min_confidence"] = 0.79
    assert "objects of mean probability below 0.79 dropped" in release.card(entry, "NOTE")


def test_a_run_without_test_results_needs_its_test_scores(tmp_path):
    run = RECORDS / "COLON-generalist-B-tmunet-b"
    with pytest.raises(SystemExit, match="COLON-generalist-B-tmunet-b.*--test-score"):
        release.ship("x", "colonoscopy", tmp_path / "absent.pt", [run], scores=[])


def test_a_file_that_is_not_a_score_summary_is_refused(tmp_path):
    wrong = tmp_path / "summary.json"
    wrong.write_text('{"best_val_dice": 0.9}')
    with pytest.raises(SystemExit, match="not a bench/cross_eval.py summary"):
        release.read_scores([["colonoscopy", "x", str(wrong)]], [])


def test_loss_text_names_batch_dice_and_empty_mask_draws():
    assert release.loss_text({"ce_weight": 2.0, "dice_weight": 1.0}) == "2 x CE + 1 x Dice"
    lesion_free = {"ce_weight": 2.0, "dice_weight": 1.0, "dice_over": "batch", "empty_repeat": 6}
    assert release.loss_text(lesion_free) == (
        "2 x CE + 1 x Dice (over the batch), images with an empty mask drawn x6"
    )
    assert release.loss_text({**lesion_free, "presence_weight": 0.5}).startswith(
        "2 x CE + 1 x Dice (over the batch) + 0.5 x image-level presence,"
    )
    assert release.loss_text({"ce_weight": 2.0, "dice_weight": 1.0, "edge_weight": 5.0}) == (
        "2 x CE + 1 x Dice, pixels beside the mask's edges weighed up to x6"
    )


def test_the_registry_entry_says_what_the_model_was_trained_on(tmp_path, monkeypatch):
    """registry.json's ``trained_on`` is what --trained-on gives, else the modality and the
    run's data; the app reads it back as the words beside the model."""
    from napari_tmunet import registry
    from napari_tmunet.storage import write_json

    entry = dict(_entry(), test_dice=release.own_test_dice(_entry()))
    record = release.registry_record(entry)
    assert record["trained_on"] == "colonoscopy (Kvasir + CVCCDB)"  # the run's combined folder
    assert record["description"].startswith("TM-UNet b trained on Kvasir + CVCCDB (GPU); test")
    given = release.registry_record(entry, "colonoscopy (Kvasir-SEG, CVC-ClinicDB)")
    assert given["trained_on"] == "colonoscopy (Kvasir-SEG, CVC-ClinicDB)"
    write_json(tmp_path / "registry.json", {"models": [given]})
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path))
    (read,) = registry.registry_entries()
    assert read.trained_on == "colonoscopy (Kvasir-SEG, CVC-ClinicDB)"
    why, fits = registry.shipped_model_reason(read, np.zeros((8, 8, 3), np.uint8))
    assert fits and why.endswith("; trained on colonoscopy (Kvasir-SEG, CVC-ClinicDB)")
