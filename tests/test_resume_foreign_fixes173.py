"""fix-173 (tester38 #1, #7): `fit --resume` refuses a last.pt that another run saved
(copied into the run folder), naming the file and what differs, before anything is
written; a refusal says which --steps / --epochs came from config.json; a Ctrl-C or SIGTERM
stop saves last.pt at once without validating, and resuming it is still exact; a second
Ctrl-C names the last.pt kept and the command that continues from it.

Data: the bundled nuclei sample cut into 16 tiles of 64 x 64 (no shared data needed),
TM-UNet t at 32 x 32 on the CPU, one step per period.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from _signals import sigterm_after_records

from napari_tmunet.checkpoint import read_checkpoint
from napari_tmunet.training import engine
from napari_tmunet.training.run_folder import read_metrics
from trainer import cli, commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = [
    "--variant", "t", "--size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
    "--no-efficiency", "--no-test", "--num-workers", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    return commands._write_demo_tiles(tmp_path_factory.mktemp("data") / "tiles")


def _fit(tiles: Path, run: Path, steps: int, *extra: str) -> list[str]:
    """`fit` arguments of a run of ``steps`` one-step periods."""
    return ["fit", "--data", str(tiles), "--run-dir", str(run), "--steps", str(steps),
            "--epochs", str(steps), *QUICK, *extra]  # fmt: skip


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _slow_first_step(monkeypatch) -> None:
    """Make the next run's first step 1.5 s slower: its records' training times then
    differ from an equal run's (the same settings and steps)."""
    train_step = engine.Trainer.train_step

    def slow(self, *args):
        if self.step == 0:
            time.sleep(1.5)
        train_step(self, *args)

    monkeypatch.setattr(engine.Trainer, "train_step", slow)


def test_a_last_pt_of_another_run_is_refused(tiles, tmp_path, capsys, monkeypatch):
    """tester38 #1: run A's last.pt copied into run B (other --lr, other steps): --resume
    trained A's model on B's data and mixed the records. Now refused naming the file, the
    run it names, the settings that differ and the step B never reached; B's files stay
    byte for byte. A last.pt of an equal run (same settings, same step, other training
    time) is refused too; B's own last.pt put back resumes."""
    a, b, twin = tmp_path / "A", tmp_path / "B", tmp_path / "twin"
    assert cli.main([*_fit(tiles, a, 4), "--lr", "3e-3"]) == 0
    assert cli.main([*_fit(tiles, b, 2), "--lr", "1e-3"]) == 0
    own = (b / "last.pt").read_bytes()
    shutil.copy(a / "last.pt", b / "last.pt")
    before = _files(b)
    capsys.readouterr()

    for extra in ([], ["--steps", "8"], ["--steps", "80", "--epochs", "80"]):
        assert cli.main(["fit", "--run-dir", str(b), "--resume", "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert (
            f"napari-tmunet-train fit: error: cannot resume {b}: {b / 'last.pt'} is not this "
            "run's checkpoint (it names the run folder 'A'): it was trained with other "
            f"settings than {b / 'config.json'}: lr 0.003 (config.json: 0.001); it holds step "
            f"4, a step this run never reached ({b / 'metrics.jsonl'}: its records are of "
            "steps 1, 2)" in err
        ), err
        assert "nothing was changed" in err and "start a new run folder" in err, err
        assert "resumed at" not in err
        assert _files(b) == before  # train.log, metrics.jsonl, best.pt, config.json too

    # a run with A's settings and steps, whose times differ: its own last.pt is not A's
    _slow_first_step(monkeypatch)
    assert cli.main([*_fit(tiles, twin, 4), "--lr", "3e-3"]) == 0
    monkeypatch.undo()
    shutil.copy(a / "last.pt", twin / "last.pt")
    before = _files(twin)
    capsys.readouterr()
    assert cli.main(["fit", "--run-dir", str(twin), "--resume", "--steps", "8"]) == 2
    err = capsys.readouterr().err
    assert f"{twin / 'last.pt'} is not this run's checkpoint (it names the run folder 'A')" in err
    assert "it was saved at step 4 after" in err and "while this run reached step 4 after" in err
    assert "other settings" not in err and _files(twin) == before

    # B's own last.pt back: it resumes and extends as before
    (b / "last.pt").write_bytes(own)
    assert cli.main(["fit", "--run-dir", str(b), "--resume", "--steps", "4"]) == 0
    assert [r["step"] for r in read_metrics(b)] == [1, 2, 3, 4]


def test_a_second_ctrl_c_names_the_last_pt_kept_and_refusals_the_config_values(
    tiles, tmp_path, capsys, monkeypatch
):
    """tester38 #7 and #1's wording: an extension (--steps 8 of a 4-step run; config.json
    then plans 8) aborted by two Ctrl-C before its next last.pt says which last.pt is kept
    and the --resume that continues from it (it said only "interrupted"). A resume whose
    --epochs comes from config.json, not from the command line, and is refused names it
    as config.json's (it named "--steps 12 --epochs 8" as if both were typed)."""
    run = tmp_path / "run"
    assert cli.main(_fit(tiles, run, 4)) == 0
    train_step = engine.Trainer.train_step

    def ctrl_c_twice_at_step_6(self, *args):
        train_step(self, *args)
        if self.step == 6:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(engine.Trainer, "train_step", ctrl_c_twice_at_step_6)
    capsys.readouterr()
    assert cli.main(["fit", "--run-dir", str(run), "--resume", "--steps", "8"]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert (
        f"interrupted: {run / 'last.pt'} (step 4) is kept; `napari-tmunet-train fit --run-dir "
        f"{run} --resume` continues from it" in err
    ), err
    assert read_checkpoint(run / "last.pt")["training_state"]["step"] == 4
    saved = json.loads((run / "config.json").read_text())
    assert (saved["steps"], saved["epochs"]) == (8, 8)

    last = (run / "last.pt").read_bytes()
    assert cli.main(["fit", "--run-dir", str(run), "--resume", "--steps", "12"]) == 2
    err = capsys.readouterr().err
    assert (
        f"cannot resume {run} with --steps 12 (and --epochs 8 from {run / 'config.json'}): "
        "the run was planned as --steps 4 --epochs 4" in err
    ), err
    assert (run / "last.pt").read_bytes() == last
    # as the message says, a plain --resume goes on (config.json's plan: 8 one-step periods)
    assert cli.main(["fit", "--run-dir", str(run), "--resume"]) == 0
    assert [r["step"] for r in read_metrics(run) if not r.get("stopped")] == list(range(1, 9))


def test_a_stop_saves_last_pt_at_once_and_resumes_exactly(tiles, tmp_path, caplog, monkeypatch):
    """tester38 #7: SIGTERM ran a whole validation (59 s on a tiled DSB run) before it saved
    last.pt, past a batch system's grace. Now the stop validates nothing (its record has no
    scores, the log says so) and saves last.pt; --resume ends as the uninterrupted run,
    weights and period records bit for bit."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert cli.main(_fit(tiles, straight, 8)) == 0
    validations = []
    validate = engine.Trainer.validate

    def counted(self):
        validations.append(self.step)
        return validate(self)

    monkeypatch.setattr(engine.Trainer, "validate", counted)
    with caplog.at_level("INFO", "napari_tmunet"), sigterm_after_records(stopped, 3):
        assert cli.main(_fit(tiles, stopped, 8)) == 128 + signal.SIGTERM
    records = read_metrics(stopped)
    stop = records[-1]
    assert stop.get("stopped") and "val_dice" not in stop and not stop["best"], stop
    assert validations == [r["step"] for r in records[:-1]]  # period ends only
    line = caplog.text.split(f"stopped at step {stop['step']}/8")[1].splitlines()[0]
    assert "not validated (a stop saves last.pt at once); best val Dice" in line, line
    assert line.endswith(f"saved {stopped / 'last.pt'}"), line
    assert read_checkpoint(stopped / "last.pt")["training_state"]["step"] == stop["step"]

    assert cli.main(_fit(tiles, stopped, 8, "--resume")) == 0
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(stopped / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    same = ("step", "train_loss", "lr", "val_dice", "best_val_dice")
    ends = [r for r in read_metrics(stopped) if not r.get("stopped")]
    assert [[r.get(k) for k in same] for r in ends] == [
        [r.get(k) for k in same] for r in read_metrics(straight)
    ]
