"""Weights that do not fit their model config (tester35 #3): the message names them.

PyTorch's load_state_dict error starts with a header line ("Error(s) in loading
state_dict for TMUNet:") and lists the names after it; the loader kept only that header,
so evaluate and predict said why with nothing after the colon. The shipped colonoscopy
checkpoint is altered here as a checkpoint from another code version would be: one weight
renamed, one of another shape.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from napari_tmunet import __version__, registry
from napari_tmunet.predict_cli import main as predict_main
from trainer.cli import main as train_main

COLONOSCOPY = "TM-UNet colonoscopy"
OTHER_VERSION = "0.0.1"
SAMPLE = Path(registry.__file__).parent / "samples" / "colonoscopy_image.png"


def altered(tmp_path, change) -> tuple:
    """The shipped colonoscopy checkpoint, changed by ``change``, saved in
    ``tmp_path``; (path, the name of the weight changed)."""
    payload = torch.load(registry.find_model(COLONOSCOPY).path, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.ndim == 4)  # a convolution's
    change(payload, name)
    path = tmp_path / "altered.pt"
    torch.save(payload, path)
    return path, name


def shipped_shape(name: str) -> tuple:
    """The shape of weight ``name`` in the shipped colonoscopy checkpoint."""
    payload = torch.load(registry.find_model(COLONOSCOPY).path, weights_only=True)
    return tuple(payload["state_dict"][name].shape)


def renamed(payload, name) -> None:
    """A weight renamed, as by another version of the code, which wrote the file."""
    payload["state_dict"][f"{name}_old"] = payload["state_dict"].pop(name)
    payload["package_version"] = OTHER_VERSION


def reshaped(payload, name) -> None:
    """A weight with one input channel, as another model's, in a file of this version."""
    payload["state_dict"][name] = payload["state_dict"][name][:, :1].clone()


@pytest.mark.parametrize("change", [renamed, reshaped])
def test_evaluate_and_predict_name_the_weights_that_do_not_fit(tmp_path, capsys, change):
    """evaluate and predict --model on the altered checkpoint: exit with the weight's
    name (and its shapes), the version that wrote it and what to do, in one message."""
    path, name = altered(tmp_path, change)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLE, images / "frame.png")
    assert train_main(["evaluate", str(path), "--data", str(tmp_path), "--device", "cpu"]) != 0
    evaluated = " ".join(capsys.readouterr().err.split())
    assert predict_main([str(images), str(tmp_path / "out"), "--model", str(path)]) != 0
    predicted = " ".join(capsys.readouterr().err.split())
    for text in (evaluated, predicted):
        assert "do not fit its model config: " in text
        if change is renamed:
            assert f"1 missing from the file: {name};" in text
            assert f"1 not in the model: {name}_old." in text
            assert (
                f"written by napari-tmunet {OTHER_VERSION} (this is {__version__}): use the "
                "version that wrote it, or train the model again." in text
            )
        else:
            shape = shipped_shape(name)
            assert f"1 of another shape: {name} ({shape[0]}, 1, " in text
            assert f"(the model's: {shape})" in text
            assert f"written by this version of napari-tmunet ({__version__})" in text
            assert "train the model again." in text
        assert "Error(s) in loading" not in text
