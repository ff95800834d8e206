"""``napari-tmunet-predict`` and the model the user made active in napari (tester 33,
failure 3): as "Segment all", each image of the active model's modality gets it (a line
names it, its file, and how to run the shipped one), the others their shipped model; an
active model whose file is not found is said, and the shipped model runs, as in Segment;
one whose file does not read stops the run before any work (real UDIAT and CVC-ClinicDB
images, CPU)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _checkpoints import tiny_checkpoint
from _paths import POLYP, SCAN

from napari_tmunet import settings
from napari_tmunet.data.images import read_image
from napari_tmunet.predict_cli import main

needs_datasets = pytest.mark.skipif(
    not (SCAN.is_file() and POLYP.is_file()), reason="shared datasets not present"
)
LABEL = "fine-tuned on 1 2026-12-05 05:20:13"
pytestmark = [needs_datasets, pytest.mark.usefixtures("one_torch_thread")]


def fine_tuned(tmp_path):
    """A Fine-tune run's checkpoint for colonoscopy images: a tiny model of its own weights
    (its masks are not the shipped model's)."""
    best = tmp_path / "runs" / "20261205-052007" / "train" / "best.pt"
    return tiny_checkpoint(best, metadata={"modality": "colonoscopy"})


def make_active(model) -> None:
    """Save ``model`` as the active model for colonoscopy images, as Fine-tune does."""
    current = {"model": str(model), "label": LABEL, "modality": "colonoscopy"}
    current["lineage"] = ["TM-UNet colonoscopy"]
    previous = {"model": "TM-UNet colonoscopy", "label": "TM-UNet colonoscopy"}
    settings.save_active_models(
        {"current": current, "previous": dict(previous, modality="colonoscopy")}
    )


def predict(capsys, *argv) -> tuple[int, str]:
    code = main([*map(str, argv), "--device", "cpu", "--no-progress"])
    return code, capsys.readouterr().err


def test_the_active_fine_tuned_model_segments_the_images_of_its_modality(images, tmp_path, capsys):
    """The colonoscopy frame gets the active fine-tuned model (its masks are those of
    --model FILE), the ultrasound scan the shipped ultrasound model; the lines say so.
    On main: 'TM-UNet colonoscopy' ran on the frame, and nothing was said."""
    best = fine_tuned(tmp_path)
    make_active(best)
    before = settings.settings_path().read_bytes()
    code, err = predict(capsys, images, tmp_path / "out")
    assert code == 0, err
    assert f"model {LABEL!r} ({best}) (mode " in err, err
    assert (
        "for images like 1.png: the model you made active in napari for colonoscopy images, "
        "as Segment uses it; pass --model 'TM-UNet colonoscopy' for the shipped model"
    ) in err, err
    assert "model 'TM-UNet ultrasound' (mode" in err
    assert "model 'TM-UNet colonoscopy' (mode" not in err
    assert f"1 with {LABEL!r}" in err and "1 with 'TM-UNet ultrasound'" in err, err
    assert settings.settings_path().read_bytes() == before  # read, not written

    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(POLYP, only / POLYP.name)
    code, err = predict(capsys, only, tmp_path / "given", "--model", best)
    assert code == 0, err
    got, given = read_image(tmp_path / "out" / "1.png"), read_image(tmp_path / "given" / "1.png")
    assert np.array_equal(got, given)
    code, err = predict(capsys, only, tmp_path / "shipped", "--model", "TM-UNet colonoscopy")
    assert code == 0, err
    assert not np.array_equal(got, read_image(tmp_path / "shipped" / "1.png"))


def test_an_active_model_not_found_is_said_and_the_shipped_one_runs(images, tmp_path, capsys):
    """Its file moved away: one line says so, the shipped model runs (as in Segment), and
    the model stays active in the settings for a start that finds it."""
    gone = tmp_path / "moved" / "train" / "best.pt"
    make_active(gone)
    before = settings.settings_path().read_bytes()
    code, err = predict(capsys, images, tmp_path / "out")
    assert code == 0, err
    assert (
        f"napari-tmunet-predict: the model you made active in napari, {LABEL}, is not found "
        f"({gone}): the shipped model runs instead, as in Segment"
    ) in err, err
    assert "model 'TM-UNet colonoscopy' (mode" in err and "2 of 2 images segmented" in err
    assert settings.settings_path().read_bytes() == before


def test_an_active_model_that_does_not_read_stops_the_run_before_any_work(images, tmp_path, capsys):
    """A damaged checkpoint made active: refused with what it is and how to run the
    shipped model; no OUTPUT_DIR is made."""
    broken = tmp_path / "runs" / "r" / "train" / "best.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    make_active(broken)
    code, err = predict(capsys, images, tmp_path / "out")
    assert code == 2, err
    assert f"error: cannot load the model you made active in napari, {LABEL} ({broken}): " in err
    assert "pass --model 'TM-UNet colonoscopy' for the shipped model" in err
    assert not (tmp_path / "out").exists()
