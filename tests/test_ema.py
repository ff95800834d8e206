"""``fit --ema DECAY``: an exponential moving average of the weights (CPU, synthetic data).

Tiny runs (TM-UNet t, 32 x 32, six synthetic grey images) through ``fit`` and the CLI.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_trainer import TINY, _tiny_cache

from napari_tmunet.checkpoint import Checkpoint, load_checkpoint, read_checkpoint
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.model import build_model
from napari_tmunet.training import RunDirError, TrainConfig, fit
from napari_tmunet.training.finetune import FinetuneJob, make_config
from napari_tmunet.training.run_folder import read_metrics
from trainer import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = {**TINY, "size": (32, 32), "batch_size": 2}
# the training state of last.pt before --ema existed (an EMA run adds "ema")
STATE_KEYS = {
    "step", "epoch", "period", "optimizer", "scheduler", "best_score", "best_step",
    "elapsed", "period_loss", "world_size", "rng",
}  # fmt: skip


def _averaged(path: Path) -> dict:
    """The EMA weights in a last.pt, by the model's own keys."""
    ema = read_checkpoint(path)["training_state"]["ema"]["state_dict"]
    return {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}


def _tiny_folder(folder: Path) -> Path:
    """The synthetic images of ``_tiny_cache`` as a dataset folder (images/, masks/)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for item in _tiny_cache():
        Image.fromarray(item.image[..., 0]).save(folder / "images" / f"{item.name}.png")
        Image.fromarray(item.mask.astype("uint8") * 255).save(folder / "masks" / f"{item.name}.png")
    return folder


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_one_step_moves_every_weight_and_buffer_by_the_decay(tmp_path):
    """After one step the average is d * before + (1 - d) * after, parameters and buffers."""
    decay = 0.75
    cfg = TrainConfig(**BASE, steps=1, epochs=1, ema=decay)
    fit(cfg, tmp_path / "run", dataset=_tiny_cache())
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    torch.manual_seed(cfg.seed)  # the run's initial weights, as the engine builds them
    before = build_model(ModelConfig.from_dict(last["model_config"])).state_dict()
    after, averaged = last["state_dict"], _averaged(tmp_path / "run" / "last.pt")
    assert averaged.keys() == after.keys() and any("running_var" in k for k in after)
    moved = 0
    for key, value in averaged.items():
        expected = decay * before[key] + (1 - decay) * after[key]
        if value.is_floating_point():
            torch.testing.assert_close(value, expected, msg=key)
            moved += not torch.equal(before[key], after[key])
        else:  # integer buffers (BatchNorm's count): PyTorch's EMA casts like copy_
            assert torch.equal(value, expected.to(value.dtype)), key
    assert moved > 10  # the step changed the weights, so the check means something


def test_validation_scores_and_best_pt_holds_the_average(tmp_path):
    """best.pt's weights are the EMA's; validation was handed the EMA; last.pt is raw."""
    scored = []

    def validate(model, input_config):
        scored.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_dice": 0.5}

    run = tmp_path / "run"
    cfg = TrainConfig(**BASE, steps=3, epochs=1, ema=0.5)
    fit(cfg, run, callbacks={"validate": validate}, dataset=_tiny_cache())
    averaged = _averaged(run / "last.pt")
    best, last = read_checkpoint(run / "best.pt"), read_checkpoint(run / "last.pt")
    _assert_same(best["state_dict"], averaged)
    _assert_same(scored[-1], averaged)
    assert not torch.equal(last["state_dict"]["head.weight"], averaged["head.weight"])
    assert best["metadata"]["train_config"]["ema"] == 0.5
    assert "training_state" not in best
    assert load_checkpoint(run / "best.pt").model(torch.zeros(1, 1, 32, 32)).shape[-2:] == (32, 32)


def test_resume_with_ema_is_bit_for_bit(tmp_path):
    """A run stopped mid-period and resumed ends as the uninterrupted run, average included."""
    cfg = TrainConfig(**BASE, steps=6, epochs=3, ema=0.9)
    straight, split = tmp_path / "straight", tmp_path / "split"
    fit(cfg, straight, dataset=_tiny_cache())
    stop = threading.Event()

    def on_step(step, total, loss):
        if step == 3:  # inside the second period (steps 3-4)
            stop.set()

    first = fit(cfg, split, {"on_step": on_step}, stop_event=stop, dataset=_tiny_cache())
    assert first["stopped"] and first["step"] == 3
    assert read_checkpoint(split / "last.pt")["training_state"]["ema"]["decay"] == 0.9
    fit(TrainConfig(**{**cfg.to_dict(), "resume": True}), split, dataset=_tiny_cache())
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(split / "last.pt")
    _assert_same(a["state_dict"], b["state_dict"])
    _assert_same(a["training_state"]["ema"]["state_dict"], b["training_state"]["ema"]["state_dict"])
    for k, state in a["training_state"]["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["training_state"]["optimizer"]["state"][k][name])
    ends = [r for r in read_metrics(split) if not r.get("stopped")]
    for key in ("train_loss", "val_dice"):
        assert [r[key] for r in read_metrics(straight)] == [r[key] for r in ends], key


def test_resume_with_another_ema_is_refused(tmp_path, capsys):
    """The CLI names both decays; so does the engine when config.json is gone."""
    run = tmp_path / "run"
    data = _tiny_folder(tmp_path / "data")
    fit(TrainConfig(**BASE, data=str(data), steps=2, epochs=1, ema=0.9), run)
    code = cli.main(["fit", "--run-dir", str(run), "--resume", "--ema", "0.5", "--steps", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "ema: 0.9 -> 0.5" in err, err
    (run / "config.json").unlink()
    again = TrainConfig(**BASE, steps=4, epochs=2, ema=0.99, resume=True)
    with pytest.raises(
        RunDirError, match=r"with --ema 0\.99: the run was trained with --ema 0\.9;"
    ):
        fit(again, run, dataset=_tiny_cache())
    with pytest.raises(RunDirError, match=r"with --ema 0: the run was trained with --ema 0\.9;"):
        fit(TrainConfig(**{**again.to_dict(), "ema": 0.0}), run, dataset=_tiny_cache())


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_ema_out_of_range_is_rejected(tmp_path, capsys, value):
    code = cli.main(["fit", "--data", str(tmp_path), "--ema", value])
    err = capsys.readouterr().err
    assert (
        code == 2 and f"--ema {float(value):g}: expected a decay from 0 (off) to below 1" in err
    ), err


def test_default_off_keeps_the_checkpoints_and_the_training(tmp_path):
    """Without --ema: no EMA state, best.pt holds the raw weights; with it, the raw weights
    train exactly as without (the average only watches)."""
    off, on = tmp_path / "off", tmp_path / "on"
    fit(TrainConfig(**BASE, steps=3, epochs=1), off, dataset=_tiny_cache())
    fit(TrainConfig(**BASE, steps=3, epochs=1, ema=0.9), on, dataset=_tiny_cache())
    last, best = read_checkpoint(off / "last.pt"), read_checkpoint(off / "best.pt")
    assert set(last["training_state"]) == STATE_KEYS
    _assert_same(best["state_dict"], last["state_dict"])
    _assert_same(read_checkpoint(on / "last.pt")["state_dict"], last["state_dict"])
    assert last["metadata"]["train_config"]["ema"] == 0.0
    assert [r["train_loss"] for r in read_metrics(on)] == [
        r["train_loss"] for r in read_metrics(off)
    ]


def test_finetune_keeps_ema_off(tmp_path):
    start = Checkpoint(
        model=None, model_config=ModelConfig.variant("t"), input_config=InputConfig(size=(64, 64))
    )
    assert make_config(FinetuneJob(run_dir=tmp_path), start, tmp_path / "start.pt").ema == 0.0


DDP_SCRIPT = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from test_trainer import TINY, _tiny_cache

from napari_tmunet.checkpoint import read_checkpoint
from napari_tmunet.training import TrainConfig
from napari_tmunet.training.engine import DistContext, Trainer

run = Path(sys.argv[1])
cfg = TrainConfig(**{**TINY, "size": (32, 32), "batch_size": 4}, steps=3, epochs=1, ema=0.9)
ctx = DistContext.from_env("cpu")
trainer = Trainer(cfg, run, ctx, dataset=_tiny_cache())
trainer.run()
mine = torch.cat([v.double().flatten() for v in trainer.ema.module.state_dict().values()])
every = [torch.zeros_like(mine) for _ in range(ctx.world_size)]
dist.all_gather(every, mine)
if ctx.is_main:
    saved = read_checkpoint(run / "last.pt")["training_state"]["ema"]["state_dict"]
    saved = torch.cat([v.double().flatten() for k, v in saved.items() if k != "n_averaged"])
    same = all(torch.equal(e, every[0]) for e in every) and torch.equal(saved, mine)
    print("EMA", ctx.world_size, "ranks, same:", same)
ctx.close()
"""


@pytest.mark.slow
def test_two_rank_ddp_keeps_one_average(tmp_path):
    """gloo, 2 ranks: every rank holds the same average of the unwrapped model, and
    rank 0's last.pt saves it."""
    script = tmp_path / "ddp_ema.py"
    script.write_text(DDP_SCRIPT)
    tests = Path(__file__).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{tests.parent}:{tests}"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    for attempt in range(2):  # a busy machine can lose torchrun's rendezvous port
        run = tmp_path / f"run-{attempt}"
        proc = subprocess.run(
            [*torchrun, "--nproc_per_node", "2", str(script), str(run)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EMA 2 ranks, same: True" in proc.stdout, proc.stdout[-2000:]
    assert read_checkpoint(run / "best.pt")["metadata"]["train_config"]["ema"] == 0.9
