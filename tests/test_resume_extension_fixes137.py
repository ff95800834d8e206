"""--resume of a finished run that was extended (``--resume --steps N``) and stopped: the
extension goes on and finishes although the summary.json of the run's first end is still
there; a run finished at its plan's end is refused with its files left byte for byte."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from _paths import DATASETS
from test_trainer import _tiny_clinic

from napari_tmunet.checkpoint import read_checkpoint
from napari_tmunet.training import engine
from trainer import cli, commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLINIC = DATASETS / "CVC-ClinicDB"
needs_data = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {DATASETS}")
QUICK = ["--variant", "t", "--size", "32", "--batch-size", "2", "--device", "cpu",
         "--no-progress", "--no-efficiency", "--num-workers", "1"]  # fmt: skip


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _summary_steps(run: Path) -> int:
    return json.loads((run / "summary.json").read_text())["steps"]


def _last_step(run: Path) -> int:
    return read_checkpoint(run / "last.pt")["training_state"]["step"]


def _finished_words(run: Path, end: int) -> str:
    return (
        f"napari-tmunet-train fit: error: the run in {run} is finished (step {end} of {end}; "
        f"its results are in {run / 'summary.json'}): nothing to resume, its files are left "
        f"as they are; to train it longer, resume with --steps N (N > {end})"
    )


@needs_data
def test_an_extension_stopped_before_its_summary_resumes_and_finishes(
    tmp_path, capsys, caplog, monkeypatch
):
    """fit --steps 2 (finished, summary.json at step 2); --resume --steps 4 stopped by
    Ctrl-C after step 3, then again by Ctrl-C twice while it tests after step 4: the old
    summary.json is still there, byte for byte, but --resume --steps 4 goes on (it said
    "finished (step 4 of 4)" and refused), tests and writes the summary of step 4; a
    further --resume of that run is refused naming the folder and --steps N, its files
    byte for byte."""
    data, run = _tiny_clinic(tmp_path / "data"), tmp_path / "run"
    fit = ["fit", "--data", str(data), "--run-dir", str(run), "--steps", "2", *QUICK]
    assert cli.main(fit) == 0
    assert _summary_steps(run) == 2
    first = (run / "summary.json").read_bytes()
    extend = ["fit", "--run-dir", str(run), "--resume", "--no-progress", "--steps", "4"]
    capsys.readouterr()

    # Ctrl-C after step 3 (the CLI's handler: stop before the next step, save last.pt)
    train_step = engine.Trainer.train_step

    def ctrl_c_after_step_3(self, *args):
        train_step(self, *args)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(engine.Trainer, "train_step", ctrl_c_after_step_3)
    assert cli.main(extend) == 128 + signal.SIGINT
    assert "stopped at step 3 of 4" in capsys.readouterr().out
    assert _last_step(run) == 3 and (run / "summary.json").read_bytes() == first
    monkeypatch.setattr(engine.Trainer, "train_step", train_step)

    # Ctrl-C twice while the extension tests its best model after step 4: aborted at once
    evaluate = engine.evaluate

    def ctrl_c_twice(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", ctrl_c_twice)
    assert cli.main(extend) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _last_step(run) == 4 and (run / "summary.json").read_bytes() == first
    monkeypatch.setattr(engine, "evaluate", evaluate)

    # the summary is of step 2, the run at step 4 of 4: not finished, it is tested now
    with caplog.at_level("INFO", "napari_tmunet"):
        assert cli.main(extend) == 0
    captured = capsys.readouterr()
    assert "is finished" not in captured.err, captured.err
    assert "finished at step 4 of 4" in captured.out and "test (2 images)" in captured.out
    assert (
        "summary.json is from the run's earlier end at step 2; the run reached step 4 but "
        "stopped before its test: testing it now" in caplog.text
    ), caplog.text
    assert _summary_steps(run) == 4 and (run / "test_metrics.csv").is_file()

    # now it is finished: refused, every file as it was
    files = _files(run)
    for again in (extend, extend[:-2]):
        assert cli.main(again) == 2
        assert _finished_words(run, 4) in capsys.readouterr().err
        assert _files(run) == files


def test_a_finished_runs_refusal_keeps_its_files_whatever_its_summary(tmp_path, capsys):
    """A finished --epochs run resumed with the same plan written as --steps (an accepted
    plan: it rewrote config.json before the refusal) or with a summary.json that cannot
    be read or has no step count: refused as finished, each file byte for byte."""
    tiles = commands._write_demo_tiles(tmp_path / "tiles")
    run = tmp_path / "run"
    fit = ["fit", "--data", str(tiles), "--run-dir", str(run), "--steps", "0", "--epochs", "1"]
    assert cli.main([*fit, *QUICK, "--batch-size", "4", "--no-test"]) == 0  # 3 steps
    end = _summary_steps(run)
    resume = ["fit", "--run-dir", str(run), "--resume", "--no-progress"]
    capsys.readouterr()

    summary = run / "summary.json"
    for text in (None, "{not json", json.dumps({"dataset": "tiles"})):
        if text is not None:
            summary.write_text(text)
        files = _files(run)
        assert cli.main([*resume, "--steps", str(end), "--epochs", "1"]) == 2
        err = capsys.readouterr().err
        assert f"the run in {run} is finished (step {end} of {end};" in err, err
        assert _files(run) == files
