"""``napari-tmunet-predict``'s words (tester 34, F5): a shipped model given by its
modality is named by its display name in the header as in the warnings; a damaged active
checkpoint's message has no stray ".;". Real CVC-ClinicDB frame, CPU."""

from __future__ import annotations

import shutil

import pytest
from _checkpoints import tiny_checkpoint
from _paths import POLYP

from napari_tmunet import registry, settings
from napari_tmunet.predict_cli import main

pytestmark = [
    pytest.mark.skipif(not POLYP.is_file(), reason="shared datasets not present"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def one_frame(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(POLYP, folder / POLYP.name)
    return folder


def predict(capsys, *argv) -> tuple[int, str]:
    code = main([*map(str, argv), "--device", "cpu", "--no-progress"])
    return code, capsys.readouterr().err


def test_a_shipped_model_given_by_its_modality_has_one_name(tmp_path, capsys):
    assert registry.model_for_modality("ultrasound") is not None  # shipped in the package
    name = registry.model_for_modality("ultrasound").name  # "TM-UNet ultrasound"
    code, err = predict(capsys, one_frame(tmp_path), tmp_path / "out", "--model", "ultrasound")
    assert code == 0, err
    assert f"model {name!r} (mode " in err, err
    assert "model 'ultrasound'" not in err and "'ultrasound' is" not in err, err
    assert f"{name!r} is " in err, err  # the warning for the colonoscopy frame, same name


def test_a_damaged_active_checkpoint_is_said_without_a_stray_full_stop(tmp_path, capsys):
    best = tiny_checkpoint(tmp_path / "runs" / "r" / "train" / "best.pt", metadata={})
    data = best.read_bytes()
    best.write_bytes(data[: len(data) // 2])  # a copy cut short
    current = {"model": str(best), "label": "fine-tuned on 1", "modality": "colonoscopy"}
    settings.save_active_models({"current": current})
    code, err = predict(capsys, one_frame(tmp_path), tmp_path / "out")
    assert code == 2, err
    assert "cannot load the model you made active in napari" in err, err
    assert ".;" not in err, err
