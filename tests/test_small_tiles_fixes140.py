"""Training at the smallest input size, 32 x 32, where TM-UNet's deepest BatchNorm (the
first decoder stage, on the H/32 features) normalises a 1 x 1 map: a batch of one image
has no batch statistics there. An epoch's last batch of one is left out; a batch size
that can never train is refused before anything is trained, naming what works. Real
CVC-ClinicDB frames and the bundled colonoscopy sample, on the CPU."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet.checkpoint import save_checkpoint
from napari_tmunet.config import InputConfig, ModelConfig, samples_for_batchnorm
from napari_tmunet.data.cache import NativeCache, decode_folder
from napari_tmunet.model import build_model
from napari_tmunet.training import TrainConfig, fit
from napari_tmunet.training.schedule import Schedule

CLINIC = DATASETS / "CVC-ClinicDB"
needs_data = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {DATASETS}")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(
    variant="t",
    size=(32, 32),
    lr=2e-3,
    device="cpu",
    eval_batch_size=4,
    test=False,
    efficiency=False,
    progress=False,
)


def _clinic_folder(folder, count: int):
    """A dataset folder with the first ``count`` CVC-ClinicDB pairs."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for source in sorted((CLINIC / sub).iterdir())[:count]:
            (folder / sub / source.name).write_bytes(source.read_bytes())
    return folder


def _clinic_cache(count: int) -> NativeCache:
    """The first ``count`` CVC-ClinicDB pairs in memory."""
    return decode_folder(CLINIC, max_images=count)


def test_batchnorm_needs_two_samples_only_at_a_one_by_one_bottleneck():
    """2 for TM-UNet at 32 x 32 (inputs pad to multiples of 32: 1 x 1 at H/32), 1 at any
    larger side and for U-Net (its deepest BatchNorm is at H/16: 2 x 2); at 1 the
    schedule is the one it always was (the paper's 512 x 512, batch 16)."""
    assert samples_for_batchnorm("tmunet", (32, 32)) == 2
    for size in ((33, 32), (32, 48), (40, 40), (64, 64), (512, 512)):
        assert samples_for_batchnorm("tmunet", size) == 1, size
    assert samples_for_batchnorm("unet", (32, 32)) == 1
    paper = dict(n_train=431, batch_size=16, world_size=1, epochs=3, seed=4)
    before, now = Schedule(**paper), Schedule(**paper, min_samples=1)
    assert now.steps_per_epoch == before.steps_per_epoch == 27  # 26 full + one of 15
    assert [now.indices(k) for k in range(81)] == [before.indices(k) for k in range(81)]
    # 11 images in batches of 2: the last of one is left out only where BatchNorm needs 2
    assert Schedule(11, 2, 1, 1).steps_per_epoch == 6
    small = Schedule(11, 2, 1, 2, seed=3, min_samples=2)
    assert small.steps_per_epoch == 5 and small.period_ends == [5, 10]
    assert all(len(small.indices(k)) == 2 for k in range(10))
    epochs = [sum((small.indices(k) for k in range(5 * e, 5 * e + 5)), []) for e in (0, 1)]
    assert all(len(set(seen)) == 10 for seen in epochs)  # 10 different images an epoch
    assert set(epochs[0]) != set(epochs[1])  # the one left out changes
    # sharded: the last batch must give each rank two (9 = 2 x 4 + 1; 13 = 2 x 4 + 5)
    assert Schedule(9, 4, world_size=2, epochs=1, min_samples=2).steps_per_epoch == 2
    assert Schedule(13, 4, world_size=2, epochs=1, min_samples=2).steps_per_epoch == 3


@needs_data
def test_cli_fit_at_size_32_with_a_last_batch_of_one(tmp_path, capsys, caplog):
    """`fit --size 32 --batch 2` on 10 frames (7 train: three batches of 2 and one of 1)
    trains its epochs instead of stopping with "Expected more than 1 value per channel"
    at the batch of one; the log says the batch is left out."""
    from trainer import cli

    data = _clinic_folder(tmp_path / "data", 10)
    run = tmp_path / "run"
    argv = [
        "fit", "--data", str(data), "--variant", "t", "--size", "32", "--batch", "2",
        "--epochs", "2", "--device", "cpu", "--no-progress", "--no-test",
        "--no-efficiency", "--num-workers", "1", "--run-dir", str(run),
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="napari_tmunet.training.engine"):
        assert cli.main(argv) == 0, capsys.readouterr().err
    info = json.loads((run / "run_info.json").read_text())
    assert info["dataset"]["train"] == 7
    assert info["schedule"] == {"total_steps": 6, "periods": 2, "steps_per_epoch": 3}
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    assert "its last batch of 1 is left out (at --size 32 32 BatchNorm needs 2" in caplog.text
    # below the smallest size: refused before anything is read, naming the minimum
    too_small = [*argv[:6], "16", *argv[7:-1], str(tmp_path / "run16")]
    assert cli.main(too_small) == 2
    assert "--size 16 16: expected one or two numbers (H W), each at least 32" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "run16").exists()


@needs_data
def test_batch_size_one_at_size_32_is_refused_before_training(tmp_path):
    """Batch 1 at 32 x 32 can never train a TM-UNet: refused before the first step with
    the option, the size and what works; a 48 x 48 tile (padded to 64: a 2 x 2
    bottleneck) trains at batch 1, and so does U-Net at 32 x 32."""
    cache = _clinic_cache(6)
    steps = []
    with pytest.raises(ValueError) as refused:
        fit(
            TrainConfig(**SMALL, batch_size=1, mode="tile", steps=2, epochs=1),
            tmp_path / "refused",
            callbacks={"on_step": lambda *args: steps.append(args)},
            dataset=cache,
        )
    message = str(refused.value)
    assert message.startswith("--batch-size 1: at --size 32 32 the deepest BatchNorm of")
    assert "use --batch-size 2 or more, or a --size above 32" in message
    assert not steps and not (tmp_path / "refused" / "last.pt").exists()
    for name, cfg in {
        "tile48": TrainConfig(**{**SMALL, "size": (48, 48)}, batch_size=1, steps=2, epochs=1),
        "unet": TrainConfig(**{**SMALL, "arch": "unet"}, batch_size=1, steps=1, epochs=1),
    }.items():
        assert fit(cfg, tmp_path / name, dataset=cache)["step"] == cfg.steps


@needs_data
def test_an_epoch_without_a_batch_of_two_is_refused_naming_steps(tmp_path):
    """One training image at 32 x 32 in epoch mode makes no batch of two: refused, naming
    --steps (whose batches draw images again); with --steps it trains."""
    cache = _clinic_cache(3)
    split = tmp_path / "split.json"
    names = cache.names
    split.write_text(json.dumps({"train": names[:1], "valid": names[1:2], "test": names[2:]}))
    base = {**SMALL, "split_file": str(split), "batch_size": 2}
    with pytest.raises(ValueError, match=r"^1 training image with --epochs: at --size 32 32"):
        fit(TrainConfig(**base, epochs=1), tmp_path / "epochs", dataset=cache)
    result = fit(TrainConfig(**base, steps=2, epochs=1), tmp_path / "steps", dataset=cache)
    assert result["step"] == 2


def _small_checkpoint(path):
    """A TM-UNet t (RGB) trained at 32 x 32, as `fit --size 32` writes one."""
    config = ModelConfig.variant("t", in_channels=3)
    return save_checkpoint(path, build_model(config), config, InputConfig(size=(32, 32)))


def _job(run_dir, start, batch_size):
    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.training.finetune import FinetuneJob, training_pairs

    image, mask = load_sample("colonoscopy")
    pairs = training_pairs(image, mask, "sample", True, "colonoscopy sample")
    return FinetuneJob(
        run_dir=run_dir,
        pairs=pairs,
        start_model=str(start),
        steps=2,
        lr=1e-4,
        batch_size=batch_size,
        device="cpu",
    )


def test_finetune_refuses_batch_size_one_for_a_32_model_before_writing(tmp_path):
    """Fine-tune from a 32 x 32 TM-UNet at Batch size 1: refused in the dock's words
    before the data is written (the worker's error is what the dock shows); at Batch
    size 2 the same job trains its steps."""
    from napari_tmunet.training.finetune import run_finetune

    start = _small_checkpoint(tmp_path / "small32.pt")
    run_dir = tmp_path / "run1"
    with pytest.raises(ValueError) as refused:
        run_finetune(_job(run_dir, start, 1), threading.Event())
    assert str(refused.value) == (
        "Batch size 1 is too small for small32.pt: it takes 32 x 32 inputs, where its deepest "
        "BatchNorm layer normalises a 1 x 1 map, so a training batch needs at least 2 "
        "images (one image gives no batch statistics); set Batch size to 2 or more."
    )
    assert not run_dir.exists() or not any(run_dir.iterdir())
    result = run_finetune(_job(tmp_path / "run2", start, 2), threading.Event())
    assert not result["stopped"] and result["step"] == 2
    records = (tmp_path / "run2" / "train" / "metrics.jsonl").read_text().splitlines()
    assert np.isfinite(json.loads(records[-1])["train_loss"])


@pytest.mark.gui
def test_the_dock_says_why_batch_size_one_cannot_train_a_32_model(
    make_napari_viewer, qtbot, tmp_path
):
    """The Fine-tune dock on its threaded path, started from a 32 x 32 checkpoint file at
    Batch size 1 on the bundled colonoscopy frame and its mask: the run fails at once with
    the reason and what to set (not PyTorch's "Expected more than 1 value per channel"
    after scoring the start model), and nothing is written to the Run folder."""
    from napari_tmunet import _docks
    from napari_tmunet._finetune_widget import CHECKPOINT_CHOICE
    from napari_tmunet._sample_data import load_sample

    start = _small_checkpoint(tmp_path / "small32.pt")
    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    image, mask = load_sample("colonoscopy")
    viewer.add_image(image, name="frame", rgb=True)
    viewer.add_labels(mask, name="frame corrected")
    tune.model.value = CHECKPOINT_CHOICE
    tune.checkpoint.value = start
    tune.steps.value = 2
    tune.batch_size.value = 1
    tune.device.value = "cpu"
    run_dir = tmp_path / "run"
    tune.run_folder.value = run_dir
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: tune.status.value.startswith("failed: "), timeout=60_000)
    qtbot.waitUntil(lambda: not tune.running, timeout=60_000)
    assert tune.error.startswith("Batch size 1 is too small for small32.pt: it takes 32 x 32")
    assert tune.error.endswith("set Batch size to 2 or more.")
    assert not run_dir.exists() or not any(run_dir.iterdir())
