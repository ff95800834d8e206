"""Per-image standardisation (``InputConfig.per_image_norm``): inference, trainer, checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _paths import DATASETS, REPO
from skimage.io import imread

from napari_tmunet.checkpoint import load_checkpoint
from napari_tmunet.config import InputConfig
from napari_tmunet.inference import FrameInput
from napari_tmunet.streaming import _whole_image_stats
from napari_tmunet.training.batches import Augment, TrainingImages
from trainer import cli

CLINIC = DATASETS / "CVC-ClinicDB"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame() -> tuple[np.ndarray, np.ndarray]:
    """The bundled colonoscopy frame (H, W, 3) uint8 and its mask."""
    samples = REPO / "napari_tmunet" / "samples"
    image = imread(samples / "colonoscopy_image.png")[..., :3]
    return image, imread(samples / "colonoscopy_mask.png") > 0


def _dimmer(image: np.ndarray) -> np.ndarray:
    """The frame as a scanner of lower gain and a grey offset would give it."""
    return (image * 0.6 + 40).round().astype(np.uint8)


def test_model_input_is_the_same_for_a_dimmer_frame():
    image, _ = _frame()
    own = InputConfig(size=(128, 128), per_image_norm=True)
    fixed = InputConfig(size=(128, 128))
    a, b = (FrameInput(im, 3, own).resized()[0] for im in (image, _dimmer(image)))
    assert (a - b).abs().mean() < 0.01  # rounding to uint8 only
    fa, fb = (FrameInput(im, 3, fixed).resized()[0] for im in (image, _dimmer(image)))
    assert (fa - fb).abs().mean() > 0.3  # the fixed normalisation passes the gain on
    # channels standardised by the stats of the whole frame (antialiasing of the resize
    # lowers the std a little)
    assert a.mean(dim=(1, 2)).abs().max() < 0.01
    assert torch.allclose(a.std(dim=(1, 2)), torch.ones(3), atol=0.03)
    assert "normalised with the image's own mean" in FrameInput(image, 3, own).mapping


def test_tile_inputs_use_the_whole_frame_stats():
    """A window is standardised by its frame's stats, not its own: tiles of one image
    stay comparable (a dark corner is not stretched to look like the rest)."""
    image, _ = _frame()
    frame = FrameInput(image, 3, InputConfig(size=(64, 64), per_image_norm=True))
    corner = torch.from_numpy(frame.crop(0, 0, 64, 64))
    windows = frame.windows([(0, 0)], 64, 64, "cpu")[0]
    assert torch.allclose(corner, windows, atol=1e-5)
    # the frame's dark top-left corner stays dark and flat, as it is in the frame
    assert (corner.mean(dim=(1, 2)) < -0.5).all() and (corner.std(dim=(1, 2)) < 0.9).all()


def test_training_samples_are_standardised_after_colour_jitter():
    image, mask = _frame()
    items = [
        SimpleNamespace(image=image, mask=mask),
        SimpleNamespace(image=_dimmer(image), mask=mask),
    ]
    own = InputConfig(size=(128, 128), per_image_norm=True)
    data = TrainingImages(items, 3, own, "resize", torch.device("cpu"))
    plain = np.full((2, 16), 0.5)
    plain[:, :3], plain[:, 15] = 0.99, 0.0  # no flip, turn or blur
    x, _ = data.batch([0, 1], plain, Augment())
    jitter = plain.copy()
    jitter[:, 9:14] = [0.2, 0.8, 0.3, 0.6, 0.9]  # contrast, brightness, three gains
    xj, _ = data.batch([0, 1], jitter, Augment(colour=0.4))
    for batch in (x, xj):
        assert batch.mean(dim=(2, 3)).abs().max() < 1e-3
        assert torch.allclose(batch.std(dim=(2, 3), correction=0), torch.ones(2, 3), atol=1e-3)
    assert (x[0] - x[1]).abs().mean() < 0.02  # the dimmer copy: the same sample
    assert (xj - x).abs().mean() < 0.05  # gains and offsets are undone, clipping is not
    # the input inference makes of the frame, but for the resize's antialiasing
    expected = FrameInput(image, 3, own).resized()[0]
    assert (x[0] - expected).abs().mean() < 0.02


def test_input_config_keeps_the_choice_and_old_files_read_as_fixed():
    assert InputConfig.from_dict({"size": [64, 64]}).per_image_norm is False
    saved = InputConfig(per_image_norm=True).to_dict()
    assert saved["per_image_norm"] is True and InputConfig.from_dict(saved).per_image_norm
    with pytest.raises(ValueError, match="per_image_norm='yes': expected true or false"):
        InputConfig(per_image_norm="yes")


def test_large_image_bands_share_the_whole_image_stats():
    image, _ = _frame()
    tall = np.concatenate([image, _dimmer(image)])  # (2H, W, 3): a bright and a dim half
    own = InputConfig(size=(64, 64), per_image_norm=True)
    mean, std = _whole_image_stats(own, tall, 3, None)
    whole = FrameInput(tall, 3, own)
    assert np.allclose(mean, whole.mean, atol=0.02)
    assert np.allclose(std, whole.std, atol=0.02)
    assert _whole_image_stats(InputConfig(), tall, 3, None) is None
    # a band (the dim half) takes them, and says so as a whole frame does
    band = FrameInput(tall[len(image) :], 3, own, own_stats=(mean, std))
    assert (band.mean, band.std) == (mean, std)
    assert "normalised with the image's own mean" in band.mapping


@pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no CVC-ClinicDB at {CLINIC}")
def test_fit_saves_it_and_a_fixed_start_checkpoint_refuses_it(tmp_path, capsys):
    args = [
        "fit", "--data", str(CLINIC), "--max-images", "12", "--variant", "t", "--size", "64",
        "--steps", "2", "--device", "cpu", "--no-test", "--no-efficiency", "--no-progress",
    ]  # fmt: skip
    assert cli.main([*args, "--per-image-norm", "--run-dir", str(tmp_path / "own")]) == 0
    assert load_checkpoint(tmp_path / "own" / "best.pt").input_config.per_image_norm
    # a run from it (Fine-tune's way) keeps it without being told
    own = str(tmp_path / "own" / "best.pt")
    assert cli.main([*args, "--init-checkpoint", own, "--run-dir", str(tmp_path / "tuned")]) == 0
    assert load_checkpoint(tmp_path / "tuned" / "best.pt").input_config.per_image_norm
    assert cli.main([*args, "--run-dir", str(tmp_path / "fixed")]) == 0
    assert not load_checkpoint(tmp_path / "fixed" / "best.pt").input_config.per_image_norm
    start = str(tmp_path / "fixed" / "best.pt")
    capsys.readouterr()
    code = cli.main(
        [*args, "--per-image-norm", "--init-checkpoint", start, "--run-dir", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--per-image-norm differs from the start checkpoint" in err
    assert "leave those flags out" in err
