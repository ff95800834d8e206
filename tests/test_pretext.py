"""Self-supervised pre-training (``fit --pretext inpaint``) and fine-tuning from it, on
crops of the bundled ultrasound sample (a real scan; no shared data needed)."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from _paths import REPO
from PIL import Image

from napari_tmunet import registry
from napari_tmunet.checkpoint import load_checkpoint
from napari_tmunet.config import ModelConfig
from napari_tmunet.data.cache import NativeCache
from napari_tmunet.data.preprocess import to_model_input
from napari_tmunet.model import build_model
from napari_tmunet.predict_cli import main as predict
from napari_tmunet.training import TrainConfig, engine, fit
from napari_tmunet.training.engine import load_trunk
from napari_tmunet.training.loss import inpainting_loss, patch_mask
from napari_tmunet.training.run_folder import read_metrics
from trainer.cli import main as train_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(variant="t", size=(64, 64), batch_size=4, lr=2e-3, device="cpu", num_workers=2,
            eval_batch_size=4, efficiency=False, progress=False)  # fmt: skip


def _scan_crops() -> NativeCache:
    """Eight 96 x 96 crops of the ultrasound sample, with a mask of its brightest pixels
    (the masks matter only to the fine-tuning run)."""
    scan = np.asarray(Image.open(REPO / "napari_tmunet" / "samples" / "ultrasound_image.png"))
    crops = [scan[y : y + 96, x : x + 96, None] for y in (100, 250, 400) for x in (100, 250, 400)]
    crops = crops[:8]
    masks = [c[..., 0] > np.percentile(c, 80) for c in crops]
    return NativeCache([f"c{i}" for i in range(8)], crops, masks, [">0"] * 8, list(range(8)),
                       source="ultrasound sample")  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 300-step pre-training run on the crops; its folder."""
    run = tmp_path_factory.mktemp("pretext") / "run"
    cfg = TrainConfig(**TINY, pretext="inpaint", steps=300, epochs=3, test=True)
    fit(cfg, run, dataset=_scan_crops())
    return run


def test_patch_mask_hides_whole_squares_about_half_of_the_image():
    torch.manual_seed(0)
    mask = patch_mask(torch.Size((64, 3, 100, 70)), torch.device("cpu"))  # (64, 1, 100, 70)
    assert mask.shape == (64, 1, 100, 70)
    assert 0.45 < float(mask.mean()) < 0.55
    squares = mask[:, :, :96, :64].unfold(2, 32, 32).unfold(3, 32, 32)  # whole squares only
    assert torch.equal(squares.amin((-1, -2)), squares.amax((-1, -2)))


def test_pretraining_learns_to_restore_hidden_squares(pretrained):
    """The loss falls; the model restores hidden squares of the scan far better than the
    mean does; no validation, no test, and the checkpoint says it does not segment."""
    records = read_metrics(pretrained)
    losses = [r["train_loss"] for r in records]
    assert losses[-1] < 0.8 * losses[0], losses
    assert not any("val_dice" in r for r in records)
    summary = (pretrained / "summary.json").read_text()
    assert '"test"' not in summary and not (pretrained / "best.pt").exists()
    ckpt = load_checkpoint(pretrained / "last.pt")
    assert ckpt.metadata["pretext"] == "inpaint"
    assert ckpt.model_config.num_classes == ckpt.model_config.in_channels == 1

    ic = ckpt.input_config
    x = np.stack([to_model_input(c, 1, ic.mean, ic.std) for c in _scan_crops().images])
    x = torch.nn.functional.interpolate(torch.from_numpy(x), size=(64, 64))  # (8, 1, 64, 64)
    torch.manual_seed(1)
    mask = patch_mask(x.shape, x.device)
    with torch.no_grad():
        restored = float(inpainting_loss(ckpt.model.eval(), x, mask, amp=False).mean())
    mean_fill = float((x**2 * mask).sum() / mask.sum())  # 0 is the normalised mean
    assert restored < 0.5 * mean_fill, (restored, mean_fill)


def test_fine_tuning_takes_the_trunk_and_a_new_output_layer(pretrained, tmp_path):
    start = load_checkpoint(pretrained / "last.pt")
    model = build_model(ModelConfig.variant("t", in_channels=1, presence_head=True))
    load_trunk(model, start, "last.pt")
    trunk = start.model.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(("head.", "presence.")):
            continue
        assert torch.equal(value, trunk[key]), key
    assert model.head.weight.shape[0] == 1 and trunk["head.weight"].shape[0] == 1

    cfg = TrainConfig(**TINY, init_checkpoint=str(pretrained / "last.pt"), steps=20, epochs=1,
                      test=True)  # fmt: skip
    result = fit(cfg, tmp_path / "tuned", dataset=_scan_crops())
    tuned = load_checkpoint(tmp_path / "tuned" / "best.pt")
    assert "pretext" not in tuned.metadata and tuned.model_config.num_classes == 1
    assert tuned.input_config.mean == start.input_config.mean
    assert result["test"] is not None and np.isfinite(result["best_score"])


def test_pretraining_from_a_segmentation_model_restores_every_channel(tmp_path):
    """--pretext with --init-checkpoint of a colour model that segments: its trunk, and
    one output per input channel (not the model's one-class head)."""
    sample = REPO / "napari_tmunet" / "samples" / "colonoscopy_image.png"
    frame = np.asarray(Image.open(sample).convert("RGB"))  # (288, 384, 3)
    crops = [frame[y : y + 96, x : x + 96] for y in (0, 96, 192) for x in (0, 144, 288)][:8]
    masks = [c[..., 0] > np.percentile(c[..., 0], 80) for c in crops]
    colour = NativeCache([f"f{i}" for i in range(8)], crops, masks, [">0"] * 8, list(range(8)),
                         source="colonoscopy sample")  # fmt: skip
    fit(TrainConfig(**TINY, steps=4, epochs=1, test=False), tmp_path / "seg", dataset=colour)
    cfg = TrainConfig(**TINY, init_checkpoint=str(tmp_path / "seg" / "last.pt"),
                      pretext="inpaint", steps=4, epochs=1, test=False)  # fmt: skip
    fit(cfg, tmp_path / "again", dataset=colour)
    again = load_checkpoint(tmp_path / "again" / "last.pt")
    assert again.metadata["pretext"] == "inpaint"
    assert again.model_config.num_classes == again.model_config.in_channels == 3
    assert again.model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_another_architecture_is_refused_naming_the_checkpoint(pretrained):
    start = load_checkpoint(pretrained / "last.pt")
    with pytest.raises(ValueError, match="pre-trained as TM-UNet t.*same --arch, --variant"):
        load_trunk(build_model(ModelConfig.variant("s", in_channels=1)), start, "last.pt")


def test_a_pretraining_checkpoint_is_not_used_to_segment(pretrained, tmp_path, capsys):
    path = pretrained / "last.pt"
    with pytest.raises(ValueError, match="does not segment.*--init-checkpoint"):
        registry.load_model(str(path))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_scan_crops().images[0][..., 0]).save(images / "scan.png")
    assert predict([str(images), str(tmp_path / "masks"), "--model", str(path)]) != 0
    assert "does not segment" in capsys.readouterr().err
    assert not (tmp_path / "masks").exists() or not any((tmp_path / "masks").iterdir())


def test_pretext_excludes_a_presence_output():
    with pytest.raises(ValueError, match="pretext='inpaint'.*presence"):
        TrainConfig(pretext="inpaint", model={"presence_head": True})
    with pytest.raises(ValueError, match="--pretext blur: expected one of"):
        TrainConfig(pretext="blur")


CLI_TINY = ["--variant", "t", "--size", "64", "--batch-size", "4", "--lr", "2e-3",
            "--device", "cpu", "--num-workers", "2", "--eval-batch-size", "4",
            "--no-efficiency", "--no-progress", "--no-test"]  # fmt: skip


def _write_folder(cache: NativeCache, folder):
    """The cache as a dataset folder (images/ + masks/ PNGs); the folder."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for name, image, mask in zip(cache.names, cache.images, cache.masks, strict=True):
        Image.fromarray(np.asarray(image).squeeze()).save(folder / "images" / f"{name}.png")
        Image.fromarray(np.asarray(mask, np.uint8) * 255).save(folder / "masks" / f"{name}.png")
    return folder


def test_a_fine_tune_resumes_without_its_start_checkpoint(pretrained, tmp_path, monkeypatch):
    """The CLI stores --init-checkpoint absolute; a stopped fine-tune resumes from another
    folder after the start checkpoint is gone, exactly as an unstopped run ends."""
    _write_folder(_scan_crops(), tmp_path / "data")
    (tmp_path / "pcopy").mkdir()
    shutil.copy(pretrained / "last.pt", tmp_path / "pcopy" / "last.pt")
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--data", "data", *CLI_TINY, "--steps", "12", "--epochs", "2",
            "--init-checkpoint", "pcopy/last.pt"]  # fmt: skip
    assert train_cli([*args, "--run-dir", "straight"]) == 0
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert saved["init_checkpoint"] == str(tmp_path / "pcopy" / "last.pt")

    real_fit = engine.fit

    def stop_at_5(config, run_dir, stop_event=None, **kwargs):
        def on_step(step, total, loss):
            if step == 5:
                stop_event.set()

        return real_fit(config, run_dir, callbacks={"on_step": on_step}, stop_event=stop_event)

    monkeypatch.setattr(engine, "fit", stop_at_5)
    assert train_cli([*args, "--run-dir", "stopped"]) != 0
    monkeypatch.setattr(engine, "fit", real_fit)
    shutil.rmtree(tmp_path / "pcopy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert train_cli(["fit", "--run-dir", str(tmp_path / "stopped"), "--resume"]) == 0
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["state_dict"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_a_variant_other_than_the_start_checkpoints_is_refused_naming_both(tmp_path, capsys):
    """fit --init-checkpoint with another --variant: one line naming the checkpoint, its
    variant and what to pass, before the run folder is made; without --variant the
    fine-tune takes the checkpoint's (t here, not the default b)."""
    data = _write_folder(_scan_crops(), tmp_path / "data")
    base = ["fit", "--data", str(data), *CLI_TINY, "--steps", "2", "--epochs", "1"]
    assert train_cli([*base, "--pretext", "inpaint", "--run-dir", str(tmp_path / "pre")]) == 0
    start = str(tmp_path / "pre" / "last.pt")
    tune = [*base, "--init-checkpoint", start]
    assert train_cli([*tune, "--variant", "s", "--run-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert (
        f"--variant s does not match --init-checkpoint {start}, a TM-UNet t checkpoint: "
        "pass --variant t or leave --variant out" in err
    ), err
    assert not (tmp_path / "s").exists()
    unset = [a for a in tune if a not in ("--variant", "t")]
    assert train_cli([*unset, "--run-dir", str(tmp_path / "own")]) == 0
    assert json.loads((tmp_path / "own" / "config.json").read_text())["variant"] == "t"


def test_channels_and_normalisation_other_than_the_start_checkpoints_are_refused(
    pretrained, tmp_path, capsys
):
    data = _write_folder(_scan_crops(), tmp_path / "data")
    start = str(pretrained / "last.pt")
    base = ["fit", "--data", str(data), *CLI_TINY, "--steps", "2", "--epochs", "1",
            "--init-checkpoint", start]  # fmt: skip
    for flags, named in (
        (["--in-channels", "3"], "--in-channels 3"),
        (["--mean", ".5", "--std", ".2"], "--mean 0.5 and --std 0.2"),
    ):
        assert train_cli([*base, *flags, "--run-dir", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert (
            named in err and start in err and "1 channel(s) with mean 0.449 and std 0.226" in err
        ), err
        assert not (tmp_path / "r" / "last.pt").exists()
    same = ["--in-channels", "1", "--mean", "0.449", "--std", "0.226"]
    assert train_cli([*base, *same, "--run-dir", str(tmp_path / "ok")]) == 0


def test_a_grey_start_checkpoint_on_colour_images_says_it_converts_them(
    pretrained, tmp_path, caplog
):
    grey = _scan_crops()
    colour = NativeCache(grey.names, [np.repeat(i, 3, axis=-1) for i in grey.images], grey.masks,
                         [">0"] * 8, list(range(8)), source="colour scan")  # fmt: skip
    cfg = TrainConfig(**TINY, init_checkpoint=str(pretrained / "last.pt"), steps=2, epochs=1,
                      test=False)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="napari_tmunet"):
        fit(cfg, tmp_path / "run", dataset=colour)
    assert "takes 1 input channel(s)" in caplog.text and "RGB averaged to grey" in caplog.text
    assert load_checkpoint(tmp_path / "run" / "last.pt").model_config.in_channels == 1


def test_pretext_refuses_classes():
    with pytest.raises(ValueError, match="num_classes=2 with pretext='inpaint'"):
        TrainConfig(pretext="inpaint", num_classes=2)


def test_a_pretraining_fit_reports_its_restoration_loss(tmp_path, capsys):
    data = _write_folder(_scan_crops(), tmp_path / "data")
    args = ["fit", "--data", str(data), *CLI_TINY, "--steps", "4", "--epochs", "1",
            "--pretext", "inpaint", "--run-dir", str(tmp_path / "pre")]  # fmt: skip
    assert train_cli(args) == 0
    out = capsys.readouterr().out
    assert "final restoration loss" in out and "-inf" not in out and "Dice" not in out, out
