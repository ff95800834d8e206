"""The training engine and the napari-tmunet-train CLI, on real images (CPU).

Runs are tiny (TM-UNet t, 64x64, a handful of CVC-ClinicDB frames) so that the whole
file stays within a few minutes on two cores.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import DATASETS, REPO
from _readonly import read_only_view
from torch import nn

from napari_tmunet.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.data.cache import NativeCache
from napari_tmunet.data.datasets import DatasetError
from napari_tmunet.data.preprocess import to_model_input
from napari_tmunet.evaluation import evaluate
from napari_tmunet.model import build_model
from napari_tmunet.training import RunDirError, TrainConfig, fit
from napari_tmunet.training.run_folder import read_metrics
from trainer import cli, commands
from trainer.efficiency import measure_efficiency
from trainer.report import RunResult, collect_runs, render_report, table1, table2, table3

CLINIC = DATASETS / "CVC-ClinicDB"
needs_data = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {DATASETS}")

# A tiny, fast run: 16 ClinicDB frames -> 11 train / 2 valid / 3 test.
TINY = dict(
    variant="t",
    size=(64, 64),
    batch_size=4,
    lr=2e-3,
    device="cpu",
    num_workers=2,
    eval_batch_size=4,
    test=False,
    efficiency=False,
    progress=False,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state(path: Path) -> dict:
    return read_checkpoint(path)


def _records(run: Path) -> list[dict]:
    return read_metrics(run)


def test_split_sources(tmp_path):
    """Random 7:1:2 by seed, a user's file, MoNuSeg's official lists (valid carved)."""
    from napari_tmunet.training.run_data import resolve_run_split

    monuseg = DATASETS / "MoNuSeg"
    if not (monuseg / "train.txt").is_file():
        pytest.skip(f"no MoNuSeg at {monuseg}")
    names = sorted(p.stem for p in (monuseg / "images").iterdir())
    cache = NativeCache(names, [None] * 44, [None] * 44, [">127"] * 44, list(range(44)))
    cfg = TrainConfig(data=str(monuseg), split_seed=3)
    split, _ = resolve_run_split(cfg, cache)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [31, 4, 9]
    assert resolve_run_split(cfg, cache)[0] == split  # deterministic
    assert resolve_run_split(TrainConfig(data=str(monuseg), split_seed=4), cache)[0] != split
    official, notes = resolve_run_split(TrainConfig(data=str(monuseg), official_split=True), cache)
    assert len(official["test"]) == 14 and len(official["train"]) + len(official["valid"]) == 30
    assert any("carved" in note for note in notes)
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": names[:40], "val": names[40:42], "test": names[42:]}))
    mine, _ = resolve_run_split(TrainConfig(data=str(monuseg), split_file=str(path)), cache)
    assert mine["valid"] == names[40:42] and mine["test"] == names[42:]


# ------------------------------------------------------------------------ evaluation


class _ThresholdModel(nn.Module):
    """Pointwise 'model': foreground where the raw red value is >= 128 (or never)."""

    def __init__(self, inp: InputConfig, empty: bool = False):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.mean, self.std, self.empty = inp.mean[0], inp.std[0], empty

    def forward(self, x):
        unit = x[:, :1] * self.std + self.mean  # back to [0, 1]
        logits = (unit - 0.5) * 1000
        return torch.full_like(logits, -10.0) if self.empty else logits


def test_evaluate_sliding_window_and_empty_predictions():
    rng = np.random.default_rng(0)
    images, masks = [], []
    for shape in [(100, 130), (70, 50)]:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        blob = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < 20**2).astype(np.uint8)
        red = np.where(blob, 200, 40).astype(np.uint8) + rng.integers(0, 20, shape, dtype=np.uint8)
        images.append(np.stack([red, red // 2, red // 3], -1))
        masks.append(red >= 128)
    samples = [(f"im{i}", im, m) for i, (im, m) in enumerate(zip(images, masks, strict=True))]
    inp = InputConfig(size=(64, 64))
    # crop mode: windows of 64 with overlap; a pointwise model is reproduced exactly
    ev = evaluate(_ThresholdModel(inp), samples, inp, "crop", overlap=0.25, batch_size=3)
    agg = ev.aggregate()
    assert agg["count"] == 2
    assert agg["native_dice_mean"] == 1.0 and agg["native_hd_mean"] == 0.0
    assert agg["dice_mean"] > 0.95  # the 64x64 column (resized logits vs resized mask)
    # resize mode: prediction at 64x64, the native column resized back
    agg_r = evaluate(_ThresholdModel(inp), samples, inp, "resize").aggregate()
    assert agg_r["dice_mean"] > 0.95 and agg_r["native_dice_mean"] > 0.9
    # an empty prediction on a non-empty mask: HD = image diagonal, and counted
    agg_e = evaluate(_ThresholdModel(inp, empty=True), samples, inp, "resize").aggregate()
    assert agg_e["empty_prediction"] == 2 and agg_e["dice_mean"] == 0.0
    assert agg_e["hd_mean"] == pytest.approx(math.hypot(64, 64))
    assert agg_e["native_hd_mean"] == pytest.approx((math.hypot(100, 130) + math.hypot(70, 50)) / 2)


def test_evaluation_scores_what_the_plugin_outputs():
    """evaluate() predicts as napari_tmunet.inference does: tile (crop) and resize modes."""
    from napari_tmunet.checkpoint import Checkpoint
    from napari_tmunet.config import ModelConfig
    from napari_tmunet.inference import predict_probability
    from napari_tmunet.metrics import SegmentationMetrics

    torch.manual_seed(0)  # a model with context (5x5 convolutions): tiling matters
    model = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 1, 5, padding=2))
    inp = InputConfig(size=(48, 48))
    checkpoint = Checkpoint(model=model, model_config=ModelConfig.variant("t"), input_config=inp)
    rng = np.random.default_rng(3)
    samples = [
        (f"im{i}", rng.integers(0, 256, shape, dtype=np.uint8), rng.random(shape[:2]) > 0.5)
        for i, shape in enumerate([(100, 130, 3), (70, 50, 3), (40, 44, 3)])
    ]
    for mode, plugin_mode in (("crop", "tile"), ("resize", "resize")):
        rows = evaluate(model, samples, inp, mode, batch_size=3).per_image()
        expected = SegmentationMetrics()
        for name, image, mask in samples:
            prob, _ = predict_probability(image, checkpoint, mode=plugin_mode, batch_size=3)
            expected.update(prob > inp.threshold, mask, name=name)
        for row, ref in zip(rows, expected.per_image(), strict=True):
            assert 0.0 < ref["dice"] < 1.0  # neither empty nor trivially full
            for key in ("dice", "iou", "hd", "hd95"):
                assert row[f"native_{key}"] == pytest.approx(ref[key], abs=1e-9), (mode, key)


def test_measure_efficiency_tiny_model():
    from napari_tmunet.config import ModelConfig
    from napari_tmunet.model import build_model

    model = build_model(ModelConfig.variant("t"))
    eff = measure_efficiency(model, (64, 64), "cpu", batch=2, warmup=1, repeats=2)
    assert eff["params"] == sum(p.numel() for p in model.parameters())
    assert eff["flops"] > 0 and eff["fps_batch1"] > 0 and eff["throughput"] > 0
    if eff["macs"] is not None:  # thop installed
        assert 0 < eff["macs"] < eff["flops"]
    assert model.training  # restored


# ------------------------------------------------------------------------ training


@needs_data
def test_few_steps_decrease_the_loss(clinic_cache, tmp_path):
    cfg = TrainConfig(data=str(clinic_cache), steps=16, epochs=4, **TINY)
    result = fit(cfg, tmp_path / "run")
    losses = [r["train_loss"] for r in _records(tmp_path / "run")]
    assert len(losses) == 4 and result["step"] == 16
    assert losses[-1] < losses[0] - 0.05, losses
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "valid", "test")] == [11, 2, 3]


@pytest.mark.slow
@needs_data
def test_resume_is_exact_and_stop_keeps_checkpoints(clinic_cache, tmp_path):
    # 11 train images at batch 6: 2 steps per epoch (6 + 5)
    base = {**TINY, "data": str(clinic_cache), "batch_size": 6}
    straight = tmp_path / "straight"
    fit(TrainConfig(epochs=4, **base), straight)
    # 2 epochs, then resume for 2 more
    split_run = tmp_path / "split"
    first = fit(TrainConfig(epochs=2, **base), split_run)
    assert first["step"] == 4
    fit(TrainConfig(epochs=4, resume=True, **base), split_run)
    a, b = _state(straight / "last.pt"), _state(split_run / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    opt_a, opt_b = a["training_state"]["optimizer"], b["training_state"]["optimizer"]
    for k, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][k][name]), (k, name)
    assert a["training_state"]["scheduler"] == b["training_state"]["scheduler"]
    rec_a, rec_b = _records(straight), _records(split_run)
    assert [r["train_loss"] for r in rec_a] == [r["train_loss"] for r in rec_b]
    assert [r["val_dice"] for r in rec_a] == [r["val_dice"] for r in rec_b]

    # a stop in the middle of an epoch: last.pt and best.pt load; resuming is exact too
    stop = threading.Event()
    seen = []

    def on_step(step, total, loss):
        seen.append((step, total, loss))
        if step == 3:
            stop.set()

    evals = []
    stopped_run = tmp_path / "stopped"
    res = fit(
        TrainConfig(epochs=4, **base),
        stopped_run,
        callbacks={"on_step": on_step, "on_eval": evals.append},
        stop_event=stop,
    )
    assert res["stopped"] and res["step"] == 3 and seen[-1][:2] == (3, 8)
    assert evals and evals[-1].get("stopped") and "val_dice" in evals[-1]
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(stopped_run / name)
        assert ckpt.model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    assert read_checkpoint(stopped_run / "last.pt")["training_state"]["step"] == 3
    fit(TrainConfig(epochs=4, resume=True, **base), stopped_run)
    c = _state(stopped_run / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, c["state_dict"][key]), key
    period_ends = [r for r in _records(stopped_run) if not r.get("stopped")]
    assert [r["train_loss"] for r in period_ends] == [r["train_loss"] for r in rec_a]

    # resuming never replaces a better best.pt
    best = load_checkpoint(straight / "best.pt")
    save_checkpoint(
        straight / "best.pt",
        best.model,
        best.model_config,
        best.input_config,
        metadata=best.metadata,
        metrics={**best.metrics, "val_dice": 1.5},
    )
    before = (straight / "best.pt").read_bytes()
    fit(TrainConfig(epochs=5, resume=True, **base), straight)
    assert (straight / "best.pt").read_bytes() == before
    assert _records(straight)[-1]["step"] == 10
    # a resume with a changed setting that matters is refused, naming it
    with pytest.raises(RunDirError, match="lr"):
        fit(TrainConfig(epochs=6, resume=True, **{**base, "lr": 1e-3}), straight)


def test_run_dir_refusals(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"user's model")
    cfg = TrainConfig(data=str(tmp_path / "missing"), **TINY)
    with pytest.raises(RunDirError, match="not empty.*--resume.*--overwrite"):
        fit(cfg, run)
    with pytest.raises(RunDirError, match="cannot resume"):
        fit(TrainConfig(data=str(tmp_path / "missing"), resume=True, **TINY), tmp_path / "new")
    # overwrite keeps the old files in previous-*/ (then fails on the missing data)
    with pytest.raises(DatasetError, match="missing"):
        fit(TrainConfig(data=str(tmp_path / "missing"), overwrite=True, **TINY), run)
    backups = list(run.glob("previous-*/best.pt"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"user's model"
    with pytest.raises(ValueError, match="--resume and --overwrite exclude each other"):
        TrainConfig(resume=True, overwrite=True)
    # the config survives JSON
    cfg = TrainConfig(model={"use_xlstm": False}, **{**TINY, "size": (96, 128)})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def _tiny_cache() -> NativeCache:
    """Six synthetic grey 48 x 40 images with a bright square mask (no shared data)."""
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(6):
        img = rng.integers(0, 80, (48, 40, 1), dtype=np.uint8)
        mask = np.zeros((48, 40), bool)
        mask[10:30, 8:24] = True
        img[mask] += 150
        images.append(img)
        masks.append(mask)
    names = [f"n{i}" for i in range(6)]
    return NativeCache(names, images, masks, [">0"] * 6, list(range(6)), source="memory")


def test_run_folder_lock_early_kill_and_overwritten_runs_resume(tmp_path):
    """One process per run folder; a run killed before its first checkpoint starts again;
    a run started with overwrite can be resumed (config.json keeps no one-off switches)."""
    from napari_tmunet.storage import FolderBusyError, folder_lock

    cache = _tiny_cache()
    base = {**TINY, "size": (32, 32), "batch_size": 2, "test": False}
    run = tmp_path / "run"
    run.mkdir()
    with folder_lock(run, "another fit"):  # as a second process would find it
        with pytest.raises(FolderBusyError, match="another fit"):
            fit(TrainConfig(**base, steps=2, epochs=1), run, dataset=cache)
    # a start killed in its first period: config, split and metrics, no checkpoint
    for name in ("config.json", "split.json", "metrics.jsonl", "run_info.json"):
        (run / name).write_text("{}")
    with pytest.raises(RunDirError, match="before its first checkpoint"):
        fit(TrainConfig(**base, steps=2, epochs=1, resume=True), run, dataset=cache)
    fit(TrainConfig(**base, steps=2, epochs=1), run, dataset=cache)  # starts again
    assert list(run.glob("previous-*/config.json")) and (run / "last.pt").is_file()
    # overwrite, then resume with more steps
    fit(TrainConfig(**base, steps=2, epochs=1, overwrite=True), run, dataset=cache)
    saved = json.loads((run / "config.json").read_text())
    assert saved["overwrite"] is False and saved["resume"] is False
    res = fit(TrainConfig(**base, steps=4, epochs=2, resume=True), run, dataset=cache)
    assert res["step"] == 4 and not (run / ".napari-tmunet.lock").exists()


def _relative_change_difference(a: dict, b: dict, start: dict) -> float:
    """||(a - start) - (b - start)|| / ||a - start|| over all trained parameters."""
    num = den = 0.0
    for key, value in a.items():
        if value.is_floating_point() and "running_" not in key:
            num += (value - b[key]).double().norm() ** 2
            den += (value - start[key]).double().norm() ** 2
    return float((num / den) ** 0.5)


@pytest.mark.slow
@needs_data
def test_two_rank_ddp_matches_one_process(clinic_cache, tmp_path):
    """gloo: 2 ranks x batch 8 reach the weights of 1 process x batch 16 (BatchNorm synced).

    Adam's first steps move every weight by about lr whatever the gradient's size, so
    float rounding (a different summation order) flips the update of weights whose
    gradient is near zero: one process run with 1 and with 2 threads differs by a few %
    in the weight change after 3 steps (1.3% to 5.1% depending on the model options, this
    machine). That difference is measured here as the rounding floor. Sharding adds one
    source the thread count does not: the q/k/v projections run as one dense matmul whose
    rounding depends on its row count, which DDP halves (3.4% against a floor of 1.3% on
    one machine; 8.1% against 0.9% on another CPU, 2026-12-02: how far rounding moves these
    flips depends on the hardware). Per-rank BatchNorm (batch statistics of 8, not 16)
    gives a different model (~95-100%), so synchronised BatchNorm must stay well below
    that (under a fifth of it), and the losses and running statistics must agree.
    """
    common = dict(steps=3, epochs=3, batch_size=16, lr=1e-3, hflip=0.5, vflip=0.5, rot90=True)
    single, single_1thread = tmp_path / "single", tmp_path / "single-1thread"
    threads = torch.get_num_threads()
    try:
        for run_dir, n in ((single, 2), (single_1thread, 1)):
            torch.set_num_threads(n)
            fit(TrainConfig(data=str(clinic_cache), **{**TINY, **common}), run_dir)
    finally:
        torch.set_num_threads(threads)
    args = [
        "fit", "--data", str(clinic_cache), "--variant", "t", "--size", "64", "--steps", "3",
        "--epochs", "3", "--batch-size", "16", "--lr", "1e-3", "--hflip", "0.5", "--vflip",
        "0.5", "--rot90", "--device", "cpu", "--no-test", "--no-efficiency", "--no-progress",
        "--eval-batch-size", "4", "--num-workers", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    for name, extra in (("ddp", []), ("ddp_plain_bn", ["--no-sync-bn"])):
        for attempt in range(2):  # a busy CI machine can lose torchrun's rendezvous port
            proc = subprocess.run(
                [*torchrun, "--nproc_per_node", "2", "-m", "trainer.cli", *args, *extra,
                 "--run-dir", str(tmp_path / f"{name}-{attempt}")],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if proc.returncode == 0:
                (tmp_path / f"{name}-{attempt}").rename(tmp_path / name)
                break
        assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = tmp_path / "ddp"
    assert json.loads((ddp / "run_info.json").read_text())["world_size"] == 2
    from napari_tmunet.model import build_model

    torch.manual_seed(0)
    start = build_model(TrainConfig(**{**TINY, **common}).model_config(3)).state_dict()
    a = _state(single / "last.pt")["state_dict"]
    b = _state(ddp / "last.pt")["state_dict"]
    plain = _state(tmp_path / "ddp_plain_bn" / "last.pt")["state_dict"]
    a1 = _state(single_1thread / "last.pt")["state_dict"]
    assert torch.equal(a["enc1.bn.num_batches_tracked"], b["enc1.bn.num_batches_tracked"])
    floor = _relative_change_difference(a, a1, start)  # rounding alone
    synced = _relative_change_difference(a, b, start)
    unsynced = _relative_change_difference(a, plain, start)
    assert 0 < floor < 0.1, floor
    assert unsynced > 0.3, unsynced
    assert synced < 0.2 * unsynced, (synced, floor, unsynced)
    # BatchNorm running statistics follow the global batch too (to the same rounding)
    for key in ("enc1.bn.running_mean", "dec2.bn.running_var"):
        assert torch.allclose(a[key], b[key], rtol=0.02, atol=2e-3), key
    # the first step's loss is computed before any update: equal up to float rounding
    la = [r["train_loss"] for r in _records(single)]
    lb = [r["train_loss"] for r in _records(ddp)]
    assert la[0] == pytest.approx(lb[0], rel=1e-6)
    assert la == pytest.approx(lb, rel=1e-3)


@pytest.mark.slow
@needs_data
def test_cli_fit_evaluate_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "tiny"
    fit_args = [
        "fit", "--data", str(CLINIC), "--max-images", "12", "--variant", "t", "--size", "64",
        "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--no-progress",
        "--num-workers", "2", "--run-dir", str(run),
    ]  # fmt: skip
    assert cli.main(fit_args) == 0
    out = capsys.readouterr().out
    assert "test (2 images)" in out and "FPS" in out
    for name in (
        "config.json",
        "split.json",
        "metrics.jsonl",
        "curves.png",
        "best.pt",
        "last.pt",
        "test_metrics.csv",
        "summary.json",
        "run_info.json",
        "train.log",
    ):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"] == "CVC-ClinicDB" and summary["test"]["count"] == 2
    assert summary["efficiency"]["params"] == 385105
    meta = read_checkpoint(run / "best.pt")["metadata"]
    assert TrainConfig.from_dict(meta["train_config"]).variant == "t"

    # the same command again: refused, nothing touched
    before = (run / "best.pt").read_bytes()
    assert cli.main(fit_args) == 2
    assert "not empty" in capsys.readouterr().err
    assert (run / "best.pt").read_bytes() == before

    assert cli.main(["evaluate", str(run / "best.pt"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| native |" in out
    rows = (run / "eval-test-best.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and "native_dice" in rows[0]

    report_md = tmp_path / "report.md"
    assert cli.main(["report", str(tmp_path / "runs"), "--paper", "--out", str(report_md)]) == 0
    text = report_md.read_text()
    assert "| TM-UNet t |" in text and "CVCCDB Dice" in text and "TM-UNet (paper)" in text
    assert "### Table 2" in text and "### Table 3" in text
    runs, missing, _ = collect_runs([tmp_path / "runs"])
    assert len(runs) == 1 and not missing
    assert "| CVCCDB | 8 | 16 | 32 | 64 | 128 |" in render_report(runs, tables=(3,))

    # clear errors for bad paths
    assert cli.main(["fit", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "images/" in err
    monkeypatch.setenv("TMUNET_DATASETS", str(tmp_path))
    assert cli.main(["fit", "--preset", "colondb"]) == 2
    err = capsys.readouterr().err
    assert "CVC-ColonDB" in err and "--data" in err
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2


def test_report_names_the_pooling_axes():
    """Runs with 2-D pooling are told apart from the default (token and channel) pooling;
    a model without pooling carries no pooling note, whatever its unused option says."""

    def run(dice, **model):
        test = {"dice_mean": dice, "iou_mean": dice, "f1": dice, "hd_mean": 10.0, "hd95_mean": 9.0}
        return RunResult(Path("."), "MoNuSeg", ModelConfig.variant("b", **model), test)

    runs = [
        run(0.80),
        run(0.70, pooling="spatial"),
        run(0.60, pooling="spatial", use_pooling=False, use_dwconv=False),
    ]
    assert ModelConfig().pooling == "token_channel"
    assert ModelConfig(pooling="released").pooling == "token_channel"  # the earlier name
    labels = [r.label for r in runs]
    assert labels == ["TM-UNet b", "TM-UNet b pooling=spatial", "TM-UNet b -pool -DW"]
    t1 = table1(runs)
    assert "| TM-UNet b | - | - | 80.00 | 80.00 | 80.00 | 10.00 | 9.00 | 1 |" in t1
    assert "| TM-UNet b pooling=spatial |" in t1
    assert "| TM-UNet (paper) | 6.55G | 87.55 | 85.63 | 74.10 | 85.95 | 25.66 | - | - |" in table1(
        runs, True
    )
    t2 = table2(runs)
    assert "| MoNuSeg | ✓ |  |  | - | - | 60.00 |" in t2
    assert "| MoNuSeg | ✓ | ✓ (spatial) | ✓ | - | - | 70.00 |" in t2
    assert "| MoNuSeg | ✓ | ✓ | ✓ | - | - | 80.00 |" in t2
    t3 = table3(runs)
    assert "| MoNuSeg (spatial pooling) | 32 |" in t3 and "| MoNuSeg | 32 |" in t3


@needs_data
def test_negative_seeds_are_refused_naming_the_flag(tmp_path, capsys):
    """Before any decoding or run folder, as every other bad value (not numpy's text)."""
    fit_args = ["fit", "--data", str(CLINIC), "--max-images", "4", "--device", "cpu",
                "--no-progress", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    for flag in ("--split-seed", "--seed"):
        assert cli.main([*fit_args, flag, "-3"]) == 2
        err = capsys.readouterr().err
        assert f"{flag} -3: expected an integer 0 or more" in err, err
    assert not (tmp_path / "run").exists()
    assert cli.main(["evaluate", str(tmp_path / "none.pt"), "--split-seed", "-1"]) == 2
    assert "--split-seed -1: expected an integer >= 0" in capsys.readouterr().err
    assert cli.main([*fit_args, "--mean", "0.5"]) == 2  # std left out: both flags named
    assert "--mean 0.5 with --std (none): give both" in capsys.readouterr().err


def _tiny_clinic(folder: Path, count: int = 10) -> Path:
    """A dataset folder with the first ``count`` CVC-ClinicDB pairs (2 test images)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for source in sorted((CLINIC / sub).iterdir())[:count]:
            (folder / sub / source.name).write_bytes(source.read_bytes())
    return folder


@needs_data
def test_fit_in_a_read_only_folder_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """--run-dir on a read-only file system, or the default runs/ in a read-only current
    folder: exit 2 with one line naming the folder and --run-dir, before any training."""
    fit_args = ["fit", "--data", str(CLINIC), "--max-images", "4", "--device", "cpu",
                "--no-progress"]  # fmt: skip
    folder = tmp_path / "shared"
    folder.mkdir()
    with read_only_view(folder) as view:
        assert cli.main([*fit_args, "--run-dir", str(view / "run")]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"napari-tmunet-train fit: error: cannot train in {view / 'run'}: {view / 'run'} "
            "is on a read-only file system; choose another --run-dir\n"
        )
        monkeypatch.chdir(view)
        assert cli.main(fit_args) == 2
        err = capsys.readouterr().err
        assert err.startswith("napari-tmunet-train fit: error: cannot train in runs/CVC-ClinicDB")
        assert err.endswith("runs is on a read-only file system; choose another --run-dir\n")
    assert not any(folder.iterdir())


@needs_data
def test_evaluate_checks_its_output_folder_before_computing(tmp_path, capsys, monkeypatch):
    """A checkpoint in a read-only folder: refused before any image is scored, naming the
    result files (not a temporary file) and --out; with --out elsewhere it is scored."""
    import napari_tmunet.evaluation

    folder = tmp_path / "run"
    folder.mkdir()
    config = ModelConfig.variant("t")
    save_checkpoint(folder / "best.pt", build_model(config), config, InputConfig(size=(64, 64)))
    scored, real_evaluate = [], napari_tmunet.evaluation.evaluate

    def counted_evaluate(*args, **kwargs):
        scored.append(1)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(napari_tmunet.evaluation, "evaluate", counted_evaluate)
    data = _tiny_clinic(tmp_path / "tiny")
    args = ["--data", str(data), "--device", "cpu"]
    with read_only_view(folder) as view:
        assert cli.main(["evaluate", str(view / "best.pt"), *args]) == 2
        err = capsys.readouterr().err
        assert not scored
        assert err == (
            f"napari-tmunet-train evaluate: error: cannot write {view}/eval-test-best-tiny.csv and "
            f".json: {view} is on a read-only file system; choose where the results go with "
            "--out FOLDER\n"
        )
        out = tmp_path / "results"
        assert cli.main(["evaluate", str(view / "best.pt"), *args, "--out", str(out)]) == 0
    assert scored == [1]
    # a checkpoint that does not say its training data: the results carry the data's name
    assert sorted(p.name for p in out.iterdir()) == [
        "eval-test-best-tiny.csv",
        "eval-test-best-tiny.json",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt"]


@needs_data
@pytest.mark.slow
def test_evaluate_takes_a_shipped_models_name_as_predict_does(tmp_path, capsys, monkeypatch):
    """`evaluate colonoscopy` (a modality) and `evaluate "TM-UNet colonoscopy"` (a name)
    score the shipped model; results go to the current folder, never into the package."""
    from napari_tmunet import registry

    entry = registry.model_for_modality("colonoscopy")
    if entry is None:
        pytest.skip("no shipped colonoscopy model")
    weights = sorted(p.name for p in entry.path.parent.iterdir())
    data = _tiny_clinic(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "colonoscopy", "--data", str(data), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"note: {entry.name} was trained on {entry.trained_on}" in captured.err
    assert "| native |" in captured.out
    written = tmp_path / f"eval-test-{entry.path.stem}-tiny.json"  # scores on other data
    summary = json.loads(written.read_text())
    assert summary["checkpoint"] == str(entry.path) and summary["test"]["count"] == 2
    assert sorted(p.name for p in entry.path.parent.iterdir()) == weights
    assert cli.main(["evaluate", entry.name, "--device", "cpu"]) == 2  # no data given
    assert "pass --data PATH or --preset NAME" in capsys.readouterr().err
    assert cli.main(["evaluate", "nowhere.pt", "--device", "cpu"]) == 2
    assert "checkpoint nowhere.pt does not exist" in capsys.readouterr().err


def test_report_leaves_out_a_run_with_a_damaged_file_naming_it(tmp_path, capsys, caplog):
    """One run's summary.json is damaged: a warning names that file and the other runs are
    still reported (not one error for the whole report)."""
    test = {"count": 2, "dice_mean": 0.9, "iou_mean": 0.8, "f1": 0.9, "hd_mean": 10.0}
    for seed in (1, 2, 3):
        run = tmp_path / "runs" / f"seed{seed}"
        run.mkdir(parents=True)
        config = TrainConfig(data="CVC-ClinicDB", variant="t", split_seed=seed)
        (run / "config.json").write_text(json.dumps(config.to_dict()))
        summary = {"dataset": "CVCCDB", "test": dict(test, dice_mean=0.9 - seed / 100)}
        (run / "summary.json").write_text(json.dumps(summary))
    damaged = tmp_path / "runs" / "seed2" / "summary.json"
    damaged.write_text('{"broken\n')
    assert cli.main(["report", str(tmp_path / "runs"), "--tables", "1"]) == 0
    out = capsys.readouterr().out
    assert "| TM-UNet t | - | - | 88.00 ± 1.41 |" in out and out.count("| 2 |") == 1  # 1, 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and f"{damaged} is damaged (not JSON:" in warnings[0], warnings


def test_report_keeps_runs_that_share_a_split_apart():
    """A smoke test and the real run on split seed 0 are not two split seeds: each gets a
    row named by its folder and a note names both; other seeds are still pooled."""

    def run(folder, dice, **config):
        test = {"dice_mean": dice, "iou_mean": dice, "f1": dice, "hd_mean": 10.0}
        model = ModelConfig.variant("b")
        return RunResult(Path("runs", folder), "CVCCDB", model, test, config=config)

    runs = [
        run("smoke", 0.0, split_seed=0, steps=6),
        run("real", 0.90, split_seed=0, steps=300),
        run("s1", 0.80, split_seed=1),
        run("s2", 0.70, split_seed=2),
    ]
    text = render_report(runs, tables=(1, 2))
    assert "| TM-UNet b | - | - | 75.00 ± 7.07 |" in text  # seeds 1 and 2, n 2
    assert "| TM-UNet b [smoke] | - | - | 0.00 | 0.00 |" in text
    assert "| TM-UNet b [real] | - | - | 90.00 | 90.00 |" in text
    assert "| CVCCDB [real] | ✓ | ✓ | ✓ | - | - | 90.00 |" in text
    assert f"{Path('runs/smoke')}, {Path('runs/real')} share split seed 0" in text
    # a fixed split: replicates differ in the training seed
    fixed = [run(f"f{i}", 0.8, split_file="s.json", seed=i // 2) for i in range(3)]
    text = render_report(fixed, tables=(1,))
    assert "share s.json with training seed 0" in text and "its own --seed" in text
    assert "| TM-UNet b [f1] |" in text and "| TM-UNet b | - | - | 80.00 |" in text  # f2


def test_cli_help_documents_the_protocol(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--preset",
        "--resume",
        "--skip-bad",
        "--split-file",
        "--split-seed",
        "--arch",
        "--variant",
        "--no-xlstm",
        "--no-pooling",
        "--no-dwconv",
        "--pooling",
        "--mode",
        "--steps",
        "torchrun",
    ):
        assert option in text, option


def test_in_memory_dataset_for_the_widget(tmp_path):
    """fit() takes an in-memory NativeCache (the fine-tune widget's path)."""
    cache = _tiny_cache()
    cfg = TrainConfig(**{**TINY, "size": (32, 32), "batch_size": 2}, mode="crop", steps=2, epochs=1)
    result = fit(cfg, tmp_path / "run", dataset=cache)
    assert result["step"] == 2 and not result["stopped"]
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.model_config.in_channels == 1 and ckpt.input_config.size == (32, 32)


@needs_data
def test_empty_masks_drawn_more_often(clinic_cache, tmp_path):
    """--empty-repeat K: each training image with an empty mask is drawn K times a pass
    (here with the batch Dice and the presence term, the other options for lesion-free
    images)."""
    from napari_tmunet.data.cache import load_cache

    cache = load_cache(clinic_cache)
    for i in range(0, 16, 2):  # half of the frames become lesion-free
        cache.masks[i] = np.zeros_like(cache.masks[i])
    cfg = TrainConfig(**TINY, empty_repeat=3, dice_over="batch", presence_weight=1, steps=2,
                      epochs=1)  # fmt: skip
    fit(cfg, tmp_path / "run", dataset=cache)
    train = json.loads((tmp_path / "run" / "split.json").read_text())["train"]
    empty = sum(not cache.masks[cache.names.index(n)].any() for n in train)
    assert 0 < empty < len(train)
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"{empty} of {len(train)} training masks are empty: drawn x3" in log
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["empty_repeat"] == 3 and saved["dice_over"] == "batch"
    assert saved["presence_weight"] == 1
    assert all(math.isfinite(r["train_loss"]) for r in _records(tmp_path / "run"))
    with pytest.raises(ValueError, match="--empty-repeat 0: expected from 1 to 100"):
        TrainConfig(empty_repeat=0)


@needs_data
def test_edge_weight_flag_trains_and_is_checked(tmp_path, capsys):
    """--edge-weight K from the command line: the fit runs with it (finite losses), it is
    kept in config.json and the checkpoint; a negative K, K with two classes and K with a
    presence head are refused before any run folder, each naming the flag."""
    run = tmp_path / "run"
    fit_args = ["fit", "--data", str(CLINIC), "--max-images", "12", "--variant", "t",
                "--size", "64", "--batch-size", "4", "--steps", "2", "--epochs", "1",
                "--device", "cpu", "--no-progress", "--no-test"]  # fmt: skip
    assert cli.main([*fit_args, "--edge-weight", "5", "--run-dir", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["edge_weight"] == 5
    meta = read_checkpoint(run / "best.pt")["metadata"]
    assert TrainConfig.from_dict(meta["train_config"]).edge_weight == 5
    assert all(math.isfinite(r["train_loss"]) for r in _records(run))
    bad = {
        ("--edge-weight", "-1"): "--edge-weight -1: expected from 0 (off) to 100",
        ("--edge-weight", "5", "--num-classes", "2"): "--edge-weight 5 with --num-classes 2",
        ("--edge-weight", "5", "--presence-head"): "--edge-weight 5 with --presence-head",
    }
    for flags, words in bad.items():
        assert cli.main([*fit_args, *flags, "--run-dir", str(tmp_path / "bad")]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@needs_data
def test_fit_refuses_masks_without_foreground(tmp_path, capsys):
    """All-black masks (a blank export) would train a model that predicts nothing and
    score Dice 100 on empty test masks: fit refuses before training, naming the folder;
    and when only the train part of the split is empty it says so and how to fix it."""
    import shutil

    from PIL import Image

    data = tmp_path / "blank"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(1, 7):
        shutil.copy(CLINIC / "images" / f"{i}.png", data / "images")
        blank = np.zeros(Image.open(CLINIC / "masks" / f"{i}.tif").size[::-1], np.uint8)
        Image.fromarray(blank).save(data / "masks" / f"{i}.png")
    args = ["fit", "--data", str(data), "--variant", "t", "--size", "32", "--steps", "1",
            "--batch-size", "2", "--device", "cpu", "--no-progress", "--no-efficiency"]  # fmt: skip
    assert cli.main([*args, "--run-dir", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert f"every mask (6) of {data} is empty" in err and "masks/" in err
    assert not (tmp_path / "r1" / "best.pt").exists()

    (data / "masks" / "6.png").unlink()  # foreground in the test part only
    shutil.copy(CLINIC / "masks" / "6.tif", data / "masks")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["1", "2", "3", "4"], "valid": ["5"], "test": ["6"]}))
    assert cli.main([*args, "--split-file", str(split), "--run-dir", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "every training mask of" in err and "only in test" in err and "--split-seed" in err


@pytest.mark.slow
def test_cli_cache_and_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = commands._write_demo_tiles(tmp_path / "tiles")  # the bundled nuclei sample, 16 tiles
    assert cli.main(["cache", "--data", str(folder), str(tmp_path / "tiles.npz")]) == 0
    from napari_tmunet.data.cache import load_cache

    cache = load_cache(tmp_path / "tiles.npz")
    assert len(cache) == 16 and cache.rule_counts() == {">127": 16}
    before = sorted(os.listdir(tmp_path))
    assert cli.main(["demo", "--steps", "20", "--run-dir", "demo"]) == 0
    out = capsys.readouterr().out
    assert "| TM-UNet t |" in out and "demo finished" in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["test"]["count"] == 3 and summary["test"]["dice_mean"] > 0.3
    # everything is in the run folder: its data too, named absolutely by its config.json
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "demo"])
    data = tmp_path / "demo" / "demo-data"
    assert len(list((data / "images").iterdir())) == 16 == len(list((data / "masks").iterdir()))
    saved = json.loads((tmp_path / "demo" / "config.json").read_text())
    assert saved["data"] == str(data.resolve())
    # a demo into a used folder: demo's own advice, nothing left behind
    names = sorted(os.listdir(tmp_path / "demo"))
    assert cli.main(["demo", "--steps", "20", "--run-dir", "demo"]) == 2
    err = capsys.readouterr().err
    assert "run folder demo is not empty" in err and "choose another --run-dir, or leave " in err
    assert "--resume" not in err and "--overwrite" not in err, err
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "demo"])
    assert sorted(os.listdir(tmp_path / "demo")) == names
    # evaluate finds the demo's data from another folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["evaluate", str(tmp_path / "demo" / "best.pt"), "--device", "cpu"]) == 0
    assert "on demo-nuclei test (3 images" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_the_checkpoints(tmp_path):
    """The first SIGINT stops the run after the current step: evaluated, saved, exit 0.

    Runs on the bundled nuclei sample cut into 16 tiles, so it needs no shared data."""
    run = tmp_path / "run"
    tiles = commands._write_demo_tiles(tmp_path / "tiles")
    cmd = [
        sys.executable, "-m", "trainer.cli", "fit", "--data", str(tiles), "--max-images", "12",
        "--variant", "t", "--size", "64", "--epochs", "500", "--batch-size", "4",
        "--device", "cpu", "--no-progress", "--no-efficiency", "--num-workers", "1",
        "--run-dir", str(run),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.time() + 120
    metrics = run / "metrics.jsonl"
    while time.time() < deadline and not (
        metrics.is_file() and metrics.read_text().count("\n") >= 2
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out  # stopped, not finished: a shell chain must not go on
    assert "stopped at step" in out
    from napari_tmunet.checkpoint import load_checkpoint

    assert load_checkpoint(run / "best.pt").model is not None
    last = load_checkpoint(run / "last.pt")
    assert last.training_state is not None  # resumable


def test_a_runs_data_path_is_kept_absolute(tmp_path, monkeypatch):
    """A relative --data is stored resolved, so `evaluate RUN/best.pt` and `fit --resume`
    find the data from any working directory."""
    from trainer import commands
    from trainer.cli import build_parser

    (tmp_path / "mydata" / "images").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["fit", "--data", "mydata"])
    data, _ = commands._data_source(args)
    assert data == str((tmp_path / "mydata").resolve())


def test_presence_head_learns_which_images_hold_a_lesion(tmp_path):
    """fit with a presence head: lesion-free images train only the head, which learns to
    tell them from images with the bright square (the two images outside the training
    part included); the checkpoint keeps the head and its
    single output map is P(present) x P(pixel | present)."""
    cache = _tiny_cache()
    for i in (1, 3, 5):  # three images lose their square and their mask
        cache.images[i] = np.minimum(cache.images[i], 79)
        cache.masks[i] = np.zeros_like(cache.masks[i])
    cfg = TrainConfig(**{**TINY, "size": (32, 32), "batch_size": 4}, model={"presence_head": True},
                      steps=60, epochs=1)  # fmt: skip
    fit(cfg, tmp_path / "run", dataset=cache)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt.model_config.presence_head
    ic = ckpt.input_config
    x = np.stack([to_model_input(im, 1, ic.mean, ic.std) for im in cache.images])
    x = torch.nn.functional.interpolate(torch.from_numpy(x), size=(32, 32))  # (6, 1, 32, 32)
    with torch.no_grad():
        present = torch.sigmoid(ckpt.model(x, parts=True)[1])[:, 0]  # (6,)
    assert present[[0, 2, 4]].min() > present[[1, 3, 5]].max(), present
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == {"presence_head": True}


def test_evaluate_refuses_a_pretraining_checkpoint_and_report_leaves_it_out(tmp_path, capsys):
    """`evaluate ssl/last.pt` of `fit --pretext inpaint` is one line, exit 2, nothing
    written; `report` keeps such runs out of its tables and out of the runs without test
    results, even one evaluated before evaluate refused them (an eval-test-last.json)."""
    tiles = commands._write_demo_tiles(tmp_path / "tiles")  # the bundled nuclei sample
    tiny = ["--data", str(tiles), "--variant", "t", "--size", "32", "--batch-size", "4",
            "--steps", "2", "--epochs", "2", "--device", "cpu", "--no-progress",
            "--no-efficiency", "--num-workers", "1"]  # fmt: skip
    ssl, seg = tmp_path / "runs" / "ssl", tmp_path / "runs" / "seg"
    assert cli.main(["fit", *tiny, "--pretext", "inpaint", "--run-dir", str(ssl)]) == 0
    assert cli.main(["fit", *tiny, "--run-dir", str(seg)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in ssl.iterdir())
    assert cli.main(["evaluate", str(ssl / "last.pt"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"napari-tmunet-train evaluate: error: {ssl / 'last.pt'} is a self-supervised "
        "pre-training checkpoint: it restores images and does not segment. Fine-tune it on "
        f"masks first: napari-tmunet-train fit --init-checkpoint {ssl / 'last.pt'} "
        "--data YOUR_DATASET"
    )
    assert sorted(p.name for p in ssl.iterdir()) == before  # no eval-test-last.*

    scores = json.loads((seg / "summary.json").read_text())["test"]
    (ssl / "eval-test-last.json").write_text(json.dumps({"test": scores}))  # the old bug's
    report = tmp_path / "report.md"
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(report)]) == 0
    text = report.read_text()
    assert "| TM-UNet t |" in text and "[ssl]" not in text and "[seg]" not in text
    assert "Runs without test results" not in text
    assert text.count(str(ssl)) == 1
    assert f"Left out: 1 self-supervised pre-training run(s), which do not segment: {ssl}" in text
    runs, missing, pretraining = collect_runs([tmp_path / "runs"])
    assert [r.path for r in runs] == [seg] and not missing and pretraining == [ssl]


@needs_data
def test_a_fit_that_cannot_write_says_what_is_kept_and_how_to_go_on(tmp_path, capsys, monkeypatch):
    """The disk fills after the first checkpoint (the engine's next save meets ENOSPC, as a
    full disk gives it): the one-line error names the kept last.pt and the --resume command
    (tester40 #7; it said only "free some space"). --resume of a run on a read-only file
    system says to make it writable or copy it, not "choose another --run-dir", which holds
    nothing to resume."""
    import errno

    from napari_tmunet.checkpoint import CheckpointSaveError
    from napari_tmunet.training import engine

    run = tmp_path / "runs" / "run"
    fit_args = ["fit", "--data", str(CLINIC), "--max-images", "12", "--variant", "t",
                "--size", "64", "--batch-size", "4", "--epochs", "1", "--device", "cpu",
                "--no-progress", "--no-test", "--no-efficiency"]  # fmt: skip
    assert cli.main([*fit_args, "--steps", "2", "--run-dir", str(run)]) == 0
    capsys.readouterr()

    def full(path, *args, **kwargs):
        raise CheckpointSaveError(errno.ENOSPC, f"no space left on device writing {path}")

    monkeypatch.setattr(engine, "save_checkpoint", full)
    assert cli.main([*fit_args, "--steps", "4", "--run-dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-tmunet-train fit: error: no space left on device writing "), err
    assert f"{run / 'last.pt'} (step 2) is kept; `napari-tmunet-train fit --run-dir" in err, err
    assert "--resume` continues from it" in err and err.count("\n") == 1, err
    monkeypatch.undo()

    with read_only_view(tmp_path / "runs") as view:
        assert (
            cli.main([*fit_args, "--steps", "4", "--run-dir", str(view / "run"), "--resume"]) == 2
        )
        err = capsys.readouterr().err
        assert "is on a read-only file system; make it writable, or copy the run folder" in err
        assert "choose another --run-dir" not in err
