"""``napari-tmunet-predict`` on real CVC-ClinicDB frames with one PNG truncated to 500
bytes (tester28 D5): the failure names the file and says what to do, in the words
predict and fit say it of any file that is no readable image (``EXPORT_AGAIN``)."""

from __future__ import annotations

import shutil

import pytest
import torch
from _paths import DATASETS

from napari_tmunet.checkpoint import save_checkpoint
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.model import build_model
from napari_tmunet.predict_cli import main

CLINIC = DATASETS / "CVC-ClinicDB" / "images"


@pytest.fixture
def tiny(tmp_path):
    """An untrained tiny model: this test is about the message, not about masks."""
    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    inputs = InputConfig(size=(64, 64), threshold=0.5)
    return save_checkpoint(tmp_path / "tiny.pt", build_model(config), config, inputs)


def test_a_truncated_png_is_named_with_what_to_do(tmp_path, tiny, capsys):
    if not CLINIC.is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(CLINIC / "1.png", images / "1.png")
    (images / "corrupt.png").write_bytes((CLINIC / "2.png").read_bytes()[:500])
    argv = [str(images), str(tmp_path / "out"), "--model", str(tiny), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 2 images segmented" in err
    line = next(line for line in err.splitlines() if line.strip().startswith("corrupt.png:"))
    assert line == (
        "  corrupt.png: cannot decode image (OSError: image file is truncated); "
        "export it again, or leave it out"
    ), line
    assert (tmp_path / "out" / "1.png").is_file()  # the good frame's mask is kept
