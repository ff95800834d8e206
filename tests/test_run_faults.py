"""Runs that survive faults: SIGKILL and resume, a kill between best.pt and last.pt,
temporaries of killed writes, and two processes into one run folder (CPU).

Data: the bundled nuclei sample cut into 16 tiles of 64 x 64 (no shared data needed),
trained as TM-UNet t at 32 x 32, one step per period.
"""

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from _paths import REPO
from _signals import period_records, sigterm_after_records

from napari_tmunet.checkpoint import read_checkpoint
from napari_tmunet.training import TrainConfig, engine, fit
from napari_tmunet.training.run_folder import read_metrics
from trainer import cli, commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 16
FIT_ARGS = [
    "--variant", "t", "--size", "32", "--batch-size", "4", "--lr", "3e-3", "--hflip", "0.5",
    "--device", "cpu", "--no-progress", "--no-efficiency", "--no-test", "--num-workers", "1",
]  # fmt: skip
# what a record must repeat exactly after a kill and a resume (time differs)
SAME = ("step", "epoch", "period", "train_loss", "lr", "val_dice", "best", "best_val_dice")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    return commands._write_demo_tiles(tmp_path_factory.mktemp("data") / "tiles")


def _fit_cmd(tiles: Path, run: Path, steps: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "trainer.cli", "fit", "--data", str(tiles), "--run-dir", str(run),
        "--steps", str(steps), "--epochs", str(steps), *FIT_ARGS, *extra,
    ]  # fmt: skip


def _env(interval: float) -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=path,
        NAPARI_TMUNET_CHECKPOINT_INTERVAL_S=str(interval),
    )


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the run ended (rc {proc.returncode}) before the kill:\n{out}")
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def _same_records(a: list[dict], b: list[dict]) -> None:
    assert [r["period"] for r in b] == list(range(1, len(a) + 1))  # one per period, in order
    assert [{k: r.get(k) for k in SAME} for r in a] == [{k: r.get(k) for k in SAME} for r in b]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    assert wa.keys() == wb.keys()
    for key, value in wa.items():
        assert torch.equal(value, wb[key]), key


@pytest.mark.slow
def test_sigkill_and_resume_match_an_uninterrupted_run(tiles, tmp_path, caplog):
    """last.pt at the first period only, a SIGKILL some periods later (their metrics lines
    written, no checkpoint), --resume: weights bit-identical, the records exactly the
    uninterrupted run's, and no temporary file of a killed write left."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(  # at the same time: each process uses one thread
        _fit_cmd(tiles, straight, STEPS), env=_env(60), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc = subprocess.Popen(
        _fit_cmd(tiles, killed, STEPS), env=_env(3600), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_for(lambda: (killed / "last.pt").is_file() and period_records(killed) >= 4, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (killed / "summary.json").exists()
    kept = read_checkpoint(killed / "last.pt")["training_state"]["step"]
    assert kept == 1 and len(read_metrics(killed)) >= 3  # lines beyond last.pt's step
    # what a kill during a save leaves (atomic_path's temporaries), and a user's file
    for name in (".last.pt.k1l2m3n4.tmp", ".curves.png.ab_cd123.tmp"):
        (killed / name).touch()
    (killed / ".notes.tmp").write_text("mine")

    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out
    # the resume in this process (one torch thread, as there): saves starting Python again
    with caplog.at_level(logging.INFO, "napari_tmunet"):
        assert cli.main(_fit_cmd(tiles, killed, STEPS, "--resume")[3:]) == 0
    assert f"resumed at step {kept} of {STEPS}" in caplog.text
    _same_weights(straight / "last.pt", killed / "last.pt")
    _same_weights(straight / "best.pt", killed / "best.pt")
    _same_records(read_metrics(straight), read_metrics(killed))
    assert len(read_metrics(straight)) == STEPS
    left = sorted(p.name for p in killed.glob(".*.tmp"))
    assert left == [".notes.tmp"] and (killed / ".notes.tmp").read_text() == "mine"


def test_a_kill_between_best_and_last_keeps_the_best_flags(tiles, tmp_path, monkeypatch):
    """A period that improves writes its metrics line and best.pt, then dies before
    last.pt: the resumed run redoes it and ends with the uninterrupted run's records."""
    monkeypatch.setattr(engine, "CHECKPOINT_INTERVAL_S", 0.0)  # last.pt every period
    base = dict(
        data=str(tiles), variant="t", size=(32, 32), batch_size=4, lr=3e-3, hflip=0.5,
        device="cpu", num_workers=1, test=False, efficiency=False, progress=False,
        steps=10, epochs=10,
    )  # fmt: skip
    fit(TrainConfig(**base), tmp_path / "straight")
    records = read_metrics(tmp_path / "straight")
    # the first improvement after period 1 (that one writes the first last.pt)
    fail_at = next(r["step"] for r in records[1:] if r["best"])
    save = engine.Trainer.save

    def dies_before_last(self, name, record, with_state, period_loss=(0.0, 0)):
        if name == "last.pt" and self.step == fail_at:
            raise OSError("killed between best.pt and last.pt")
        save(self, name, record, with_state, period_loss)

    run = tmp_path / "run"
    monkeypatch.setattr(engine.Trainer, "save", dies_before_last)
    with pytest.raises(OSError, match="killed between"):
        fit(TrainConfig(**base), run)
    assert read_checkpoint(run / "best.pt")["metadata"]["step"] == fail_at
    assert read_checkpoint(run / "last.pt")["training_state"]["step"] < fail_at
    assert read_metrics(run)[-1]["step"] == fail_at and read_metrics(run)[-1]["best"]
    (run / f".last.pt.{'x' * 8}.tmp").touch()  # the save that died

    monkeypatch.setattr(engine.Trainer, "save", save)
    fit(TrainConfig(**base, resume=True), run)
    _same_records(records, read_metrics(run))
    _same_weights(tmp_path / "straight" / "best.pt", run / "best.pt")
    _same_weights(tmp_path / "straight" / "last.pt", run / "last.pt")
    assert not list(run.glob(".*.tmp"))


def test_a_start_removes_temporaries_of_a_killed_start(tiles, tmp_path):
    """A run killed while writing its first files leaves only temporaries (and start
    files): a new start in that folder removes them and trains."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.q9w8e7r6.tmp").touch()
    (run / ".metrics.jsonl.a_b_c_d_.tmp").touch()
    cfg = TrainConfig(
        data=str(tiles), variant="t", size=(32, 32), batch_size=4, device="cpu",
        num_workers=1, test=False, efficiency=False, progress=False, steps=1, epochs=1,
    )  # fmt: skip
    assert fit(cfg, run)["step"] == 1
    assert not list(run.glob(".*.tmp")) and (run / "last.pt").is_file()


@pytest.mark.slow
def test_two_processes_into_one_run_folder(tiles, tmp_path):
    """While one `fit` trains, a second start and a --resume of the same run are refused
    (exit 2, one line naming the first's PID); the run's metrics stay one line per period."""
    run = tmp_path / "run"
    first = subprocess.Popen(
        _fit_cmd(tiles, run, 5000), env=_env(60), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(lambda: (run / "last.pt").is_file(), first)
        pipes = dict(text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        others = [  # a new start and a resume of the same run
            subprocess.Popen(_fit_cmd(tiles, run, 5000, *extra), env=_env(60), **pipes)
            for extra in ((), ("--resume",))
        ]
        for other in others:
            out, err = other.communicate(timeout=120)
            assert other.returncode == 2, err
            message = err.strip().splitlines()[-1]
            assert message.startswith("napari-tmunet-train fit: error:"), err
            assert f"in use by napari-tmunet-train fit (PID {first.pid} " in message, err
            assert "Traceback" not in err
        assert first.poll() is None  # the first one still trains
        first.send_signal(signal.SIGINT)  # stops cleanly: evaluates and saves
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130 and "stopped at step" in out, out  # not finished: non-zero
    records = read_metrics(run)  # one per period, then the stop's (partial) record
    periods = [r["period"] for r in records if not r.get("stopped")]
    assert periods == list(range(1, len(periods) + 1)) and len(periods) >= 1
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)
    assert records[-1].get("stopped") and not (run / ".napari-tmunet.lock").exists()


def test_a_metrics_file_cut_mid_line_is_read_alike_everywhere(tmp_path, caplog):
    """The engine's reader, the Fine-tune dock's history and the campaign's status all
    read a metrics.jsonl whose last line a crash (or a writer at work) cut short: the
    whole records, nothing from the cut line; a bad line before the last is refused."""
    from napari_tmunet._finetune_plot import read_history
    from trainer.campaign import _last_record

    run = tmp_path / "train"
    run.mkdir()
    records = [
        {"step": 1, "train_loss": 0.9},
        {"step": 2, "train_loss": 0.7, "val_dice": 0.4},
        {"step": 3, "train_loss": 0.6},
    ]
    lines = [json.dumps(r) for r in records]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "train_lo')
    with caplog.at_level(logging.WARNING):
        assert read_metrics(run) == records
    assert "cut-off last line" in caplog.text
    history = read_history(run)
    assert history["loss"] == [(1, 0.9), (2, 0.7), (3, 0.6)]
    assert history["eval"] == [records[1]]
    assert _last_record(run) == records[2]
    assert _last_record(tmp_path / "none") == {}

    (run / "metrics.jsonl").write_text(lines[0] + "\n{oops\n" + lines[2] + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not JSON"):
        read_metrics(run)
    with pytest.raises(ValueError, match="line 2"):
        read_history(run)
    assert _last_record(run) == {}  # status shows no progress rather than failing


def test_two_overwrites_in_one_second_keep_both_earlier_runs(tmp_path, monkeypatch):
    """Each overwrite moves the run it replaces to a folder of its own, also when two come
    within one second (the backup name has whole seconds; CI once started two in one)."""
    from datetime import datetime

    from napari_tmunet.training import run_folder
    from napari_tmunet.training.config import TrainConfig

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 1, 22, 47, 27)

    monkeypatch.setattr(run_folder, "datetime", Frozen)
    run = tmp_path / "run"
    for n in (1, 2):
        run.mkdir(exist_ok=True)
        (run / "last.pt").write_text(f"run {n}")
        run_folder.prepare_run_dir(TrainConfig(overwrite=True), run)
    first, second = run / "previous-20261201-224727", run / "previous-20261201-224727-2"
    assert (first / "last.pt").read_text() == "run 1"
    assert (second / "last.pt").read_text() == "run 2"
    assert not (run / "last.pt").exists()


def test_a_stop_right_at_a_periods_end_logs_no_nan_loss(tiles, tmp_path, caplog):
    """SIGTERM to `fit` (one step per period, so the stop comes before any step of the
    next period): the stop's log line and record carry the last period's loss, not the
    NaN mean of no steps. A stop before the first step has no loss and says so."""
    run = tmp_path / "run"

    with caplog.at_level(logging.INFO, "napari_tmunet"), sigterm_after_records(run, 2, 120):
        code = cli.main(_fit_cmd(tiles, run, 5000)[3:])
    assert code == 128 + signal.SIGTERM
    records = read_metrics(run)
    stop, last_period = records[-1], records[-2]
    assert stop.get("stopped") and not last_period.get("stopped")
    assert stop["step"] == last_period["step"]  # no step after the last period's end
    assert all(math.isfinite(r["train_loss"]) for r in records)
    assert stop["train_loss"] == last_period["train_loss"]
    stop_lines = caplog.text.split(f"stopped at step {stop['step']}/")[1]
    assert f"loss {stop['train_loss']:.4f}, not validated" in stop_lines  # saved at once
    assert "ETA" not in stop_lines.splitlines()[0]
    assert not re.search(r"\bnan\b", caplog.text, re.IGNORECASE)
    assert read_checkpoint(run / "last.pt")["metrics"]["train_loss"] == stop["train_loss"]

    caplog.clear()
    asked = threading.Event()
    asked.set()  # e.g. Stop pressed in the Fine-tune dock while the data loaded
    cfg = TrainConfig(
        data=str(tiles), variant="t", size=(32, 32), batch_size=4, device="cpu",
        num_workers=1, test=False, efficiency=False, progress=False, steps=4, epochs=4,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, "napari_tmunet"):
        result = fit(cfg, tmp_path / "at-once", stop_event=asked)
    assert result["stopped"] and result["step"] == 0
    (record,) = read_metrics(tmp_path / "at-once")
    assert record["stopped"] and record["train_loss"] is None and "val_dice" in record
    assert "step 0/4 epoch 0.00: no step trained yet, val Dice" in caplog.text
    assert not re.search(r"\bnan\b", caplog.text, re.IGNORECASE)
