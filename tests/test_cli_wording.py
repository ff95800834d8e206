"""What napari-tmunet-train and napari-tmunet-predict say to a command-line user: a
resumption shorter than the run is refused, a stop is logged once without an ETA, bad
values and bad files name the options to type, and a file given as INPUT_DIR is told
what to give instead."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from _paths import DATASETS
from _signals import sigterm_after_records
from PIL import Image
from test_trainer import _tiny_clinic

from napari_tmunet import predict_cli
from napari_tmunet.data.datasets import find_pairs
from trainer import cli

CLINIC = DATASETS / "CVC-ClinicDB"
needs_data = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {DATASETS}")
QUICK = ["--variant", "t", "--size", "32", "--batch-size", "2", "--device", "cpu",
         "--no-progress", "--no-efficiency", "--num-workers", "1"]  # fmt: skip


def _stopped_run(data: Path, run: Path, steps: int) -> int:
    """`fit --steps STEPS` stopped by SIGTERM after its second period; the step reached."""
    with sigterm_after_records(run, 2):
        code = cli.main(["fit", "--data", str(data), "--run-dir", str(run), "--steps", str(steps),
                         "--epochs", str(steps // 2), *QUICK])  # fmt: skip
    assert code == 128 + signal.SIGTERM
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]


@needs_data
def test_resume_with_steps_at_or_below_the_step_reached_is_refused(tmp_path, capsys):
    """A stopped run resumed with a --steps it has already reached, or with an --epochs
    that moves its past LR-decay and validation periods: refused in one sentence, nothing
    tested or written; a plan with the same past periods, or a longer --steps, extends
    it, and config.json keeps the new plan for a later plain --resume."""
    data, run = _tiny_clinic(tmp_path / "data"), tmp_path / "run"
    reached = _stopped_run(data, run, 400)
    capsys.readouterr()
    last = (run / "last.pt").read_bytes()

    for steps in (2, reached):
        resume = ["fit", "--run-dir", str(run), "--resume", "--no-progress", "--steps", str(steps)]
        assert cli.main(resume) == 2
        captured = capsys.readouterr()
        assert (
            f"cannot resume {run} with --steps {steps}: the run stopped at step {reached} "
            "of the 400 it was planned for; resume without --steps to go on to step 400"
            in captured.err
        ), captured.err
        assert "finished" not in captured.out
    # epochs instead of steps: 1 epoch of 7 training images at batch 2 ends at step 3 (at
    # 32 x 32 the last batch, of one image, is left out: TM-UNet's BatchNorm needs two)
    epochs = ["fit", "--run-dir", str(run), "--resume", "--no-progress", "--steps", "0"]
    assert cli.main([*epochs, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "with --steps 0 (that ends at step 3): the run stopped at step" in err, err
    assert not (run / "summary.json").exists() and (run / "last.pt").read_bytes() == last
    assert json.loads((run / "config.json").read_text())["steps"] == 400
    # the stop's log line says it stopped, once, without an ETA
    log = (run / "train.log").read_text()
    stop_lines = [line for line in log.splitlines() if f"step {reached}/400" in line]
    assert stop_lines and "stopped at step" in stop_lines[-1], log
    assert "ETA" not in stop_lines[-1] and "stop requested" not in log, log
    assert sum("stopped" in line for line in stop_lines) == 1, log

    # a plan that moves the LR-decay / validation periods already passed: refused with
    # the old and new values (--epochs sets the periods of a --steps run; the reverse)
    for flags, plan in ((["--epochs", "5"], "--steps 400 --epochs 5"),
                        (["--steps", "0", "--epochs", "100"], "--epochs 100")):  # fmt: skip
        resume = ["fit", "--run-dir", str(run), "--resume", "--no-progress", *flags]
        assert cli.main(resume) == 2
        err = capsys.readouterr().err
        assert (
            f"cannot resume {run} with {' '.join(flags)}: the run was planned as --steps 400 "
            "--epochs 200, with its LR-decay and validation periods ending at steps 2, 4, 6, "
            f"...; {plan} ends them at steps" in err
        ), err
        assert "resume without" in err and "start a new run folder" in err, err
        assert (run / "last.pt").read_bytes() == last
        saved = json.loads((run / "config.json").read_text())
        assert (saved["steps"], saved["epochs"]) == (400, 200)
    # a new plan with the same past periods (2 steps each) is taken and kept in config.json
    periods = reached // 2 + 1
    same = ["--steps", str(2 * periods), "--epochs", str(periods)]
    assert cli.main(["fit", "--run-dir", str(run), "--resume", "--no-progress", *same]) == 0
    assert f"finished at step {2 * periods} of {2 * periods}" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert (saved["steps"], saved["epochs"]) == (2 * periods, periods)

    longer = 2 * periods + 2  # --steps alone: the documented extension of a --steps run
    extend = ["fit", "--run-dir", str(run), "--resume", "--no-progress", "--steps", str(longer)]
    assert cli.main(extend) == 0
    assert f"finished at step {longer} of {longer}" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["steps"] == longer
    # a later plain --resume goes by that plan: the run is finished at its end
    assert cli.main(["fit", "--run-dir", str(run), "--resume", "--no-progress"]) == 2
    assert f"is finished (step {longer} of {longer}" in capsys.readouterr().err


@needs_data
def test_a_sigterm_stop_and_a_finished_runs_resume_say_what_happened(tmp_path, capsys):
    """SIGTERM's stop line names the signal, not the Ctrl-C nobody pressed; --resume of
    the finished run (extended with --steps to step N) says it is finished and how to
    train it longer, and leaves every file of the run as it was (no second test or speed
    measurement, summary.json and train.log untouched); the flag it names extends it."""
    data, run = _tiny_clinic(tmp_path / "data"), tmp_path / "run"
    reached = _stopped_run(data, run, 400)
    err = capsys.readouterr().err
    assert (
        "SIGTERM received: stopping after this step (saving last.pt, no validation; a "
        "second SIGTERM or Ctrl-C aborts)" in err
    ), err
    assert "Ctrl-C again" not in err
    resume = ["fit", "--run-dir", str(run), "--resume", "--no-progress"]
    end = (reached // 2 + 1) * 2  # past it, a multiple of the run's 2-step periods
    assert cli.main([*resume, "--steps", str(end)]) == 0
    assert f"finished at step {end} of {end}" in capsys.readouterr().out
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    assert "summary.json" in files and "train.log" in files

    assert cli.main(resume) == 2
    captured = capsys.readouterr()
    assert (
        f"napari-tmunet-train fit: error: the run in {run} is finished (step {end} of {end}; "
        f"its results are in {run / 'summary.json'}): nothing to resume, its files are left "
        f"as they are; to train it longer, resume with --steps N (N > {end}, a multiple of "
        "2)" in captured.err
    ), captured.err
    assert "test (" not in captured.out + captured.err and "resumed at" not in captured.err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files
    assert cli.main([*resume, "--steps", str(end + 2)]) == 0
    assert f"finished at step {end + 2} of {end + 2}" in capsys.readouterr().out
    # killed between its last step and its summary (while testing): --resume finishes it
    (run / "summary.json").unlink()
    assert cli.main(resume) == 0
    assert (run / "summary.json").is_file()
    assert "is finished" not in capsys.readouterr().err


@needs_data
def test_evaluate_labels_its_rows_with_the_size_it_scored_at(tmp_path, capsys):
    """`evaluate --mode tile` scores the main column at 512 x 512 (the paper's test size),
    not at the model's 32 x 32 input: the table's row says 512x512 as the JSON's size does
    (it said 32x32)."""
    data, run = _tiny_clinic(tmp_path / "data"), tmp_path / "run"
    fit = ["fit", "--data", str(data), "--run-dir", str(run), "--steps", "2", "--no-test"]
    assert cli.main([*fit, *QUICK]) == 0
    capsys.readouterr()
    for mode, size in (("tile", [512, 512]), ("resize", [32, 32])):
        evaluate = ["evaluate", str(run / "best.pt"), "--mode", mode, "--device", "cpu"]
        assert cli.main([*evaluate, "--out", str(tmp_path / mode)]) == 0
        out = capsys.readouterr().out
        scored = json.loads((tmp_path / mode / "eval-test-best.json").read_text())["test"]
        assert scored["size"] == size
        rows = [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| ")]
        assert rows[1:] == [f"| {size[0]}x{size[1]}", "| native"], out


def _lr_record(run: Path) -> list[tuple[int, int, float]]:
    """(step, period, learning rate) of each record in ``run``'s metrics.jsonl."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["period"], r["lr"]) for r in map(json.loads, lines)]


@needs_data
def test_resume_with_more_steps_keeps_the_period_length(tmp_path, capsys):
    """--steps N alone on a finished --steps run keeps its 3-step periods: N = 20 is no
    whole number of them and is refused naming --steps 18 and 21; N = 24 trains 8 periods
    of 3 steps (the LR decays at 3, 6, ..., 24, once a period, not at 3..12 then every
    6), config.json records --steps 24 --epochs 8, and a fit from that config.json
    decays at the same steps."""
    data, run = _tiny_clinic(tmp_path / "data"), tmp_path / "run"
    fit = ["fit", "--data", str(data), "--steps", "12", "--epochs", "4", "--no-test", *QUICK]
    assert cli.main([*fit, "--run-dir", str(run)]) == 0
    resume = ["fit", "--run-dir", str(run), "--resume", "--no-progress", "--no-test"]
    capsys.readouterr()
    last = (run / "last.pt").read_bytes()

    assert cli.main([*resume, "--steps", "20"]) == 2
    err = capsys.readouterr().err
    assert (
        f"cannot resume {run} with --steps 20: the run was planned as --steps 12 --epochs 4, "
        "in periods of 3 steps (LR decay and validation), and 20 steps are not a whole "
        "number of them, so the run would follow neither plan; give --steps 18 or --steps "
        "21 (the run keeps its period length)" in err
    ), err
    assert (run / "last.pt").read_bytes() == last

    assert cli.main([*resume, "--steps", "24"]) == 0
    assert "finished at step 24 of 24" in capsys.readouterr().out
    log = (run / "train.log").read_text()
    assert (
        "the run now ends at step 24 (it was to end at step 12), in 8 periods of 3 steps "
        "as before" in log
    ), log
    saved = json.loads((run / "config.json").read_text())
    assert (saved["steps"], saved["epochs"]) == (24, 8)
    record = _lr_record(run)
    assert [(step, period) for step, period, _ in record] == [(3 * p, p) for p in range(1, 9)]
    assert record[-1][2] == pytest.approx(1e-4 * 0.98**8)
    # --epochs alone moves those periods: refused, naming the first end that moves
    assert cli.main([*resume, "--epochs", "6"]) == 2
    err = capsys.readouterr().err
    assert (
        "(the run ended a period at step 3, the new plan does not), so the run would follow "
        "neither plan; resume without --epochs (--steps N alone, N a multiple of 3, "
        "lengthens this run)" in err
    ), err

    rerun = tmp_path / "rerun"
    config = ["fit", "--config", str(run / "config.json"), "--run-dir", str(rerun)]
    assert cli.main([*config, "--no-progress"]) == 0
    assert _lr_record(rerun) == record


@pytest.mark.parametrize(
    ("flags", "said", "unsaid"),
    [
        (["--steps", "10", "--batch-size", "0"], "--batch-size 0: expected at least 1",
         ["TrainConfig", "steps=10", ">= 0"]),
        (["--lr", "-1"], "--lr -1: expected a learning rate above 0", ["TrainConfig", "gamma"]),
        (["--hflip", "2"], "--hflip 2: expected a probability from 0 to 1", ["hflip="]),
        (["--max-images", "-3"], "--max-images -3: expected at least 1", ["max_images="]),
        (["--size", "16"], "--size 16 16: expected one or two numbers (H W), each at least 32",
         ["size=("]),
    ],
)  # fmt: skip
def test_bad_values_name_the_option_and_its_bound(tmp_path, capsys, flags, said, unsaid):
    assert cli.main(["fit", "--data", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and not any(text in err for text in unsaid), err


def _pairs(root: Path, names=("a", "b", "c")) -> Path:
    """A synthetic dataset folder: 64 x 64 grey images, each with a square mask."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, name in enumerate(names):
        image = np.full((64, 64), 40 + 30 * i, np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[16:40, 16:40] = 255
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def test_bad_files_name_skip_bad_on_the_command_line(tmp_path, capsys):
    """The CLI names --skip-bad, the Python API skip_bad=True: a mask missing (the pairing
    check) and a PNG cut short (found when decoding)."""
    root = _pairs(tmp_path / "data")
    (root / "masks" / "a.png").unlink()
    assert cli.main(["fit", "--data", str(root), *QUICK, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "fix these files, or skip them (--skip-bad)" in err, err
    assert "skip_bad=True" not in err
    with pytest.raises(ValueError, match=r"skip them \(skip_bad=True\)"):
        find_pairs(root)

    cut = _pairs(tmp_path / "cut")
    whole = (cut / "images" / "b.png").read_bytes()
    (cut / "images" / "b.png").write_bytes(whole[: len(whole) // 2])
    assert cli.main(["cache", "--data", str(cut), str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err
    assert "b.png" in err and "fix this file, or skip such pairs (--skip-bad)" in err, err
    assert "skip_bad=True" not in err


@needs_data
def test_an_image_file_or_another_file_as_data_is_told_what_to_give(tmp_path, capsys):
    """--data naming one image (fit, evaluate) is told it is an image file, not a dataset
    folder or a cache, and which folder to give; any other file that is no .npz is told it
    is no cache file: no numpy advice to load pickled data unsafely (tester30 #3)."""
    data = _tiny_clinic(tmp_path / "data", count=2)
    image = sorted((data / "images").iterdir())[0]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset\n")
    fit = ["fit", "--size", "64", "--steps", "1", "--device", "cpu", "--no-progress"]
    assert cli.main([*fit, "--data", str(image), "--run-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert (
        f"--data {image} is an image file, not a dataset folder (images/ + masks/, or "
        "pictures with their masks beside them) or a cache .npz; give the dataset folder "
        f"that holds it, {data}" in err
    ), err
    assert cli.main([*fit, "--data", str(notes), "--run-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert (
        f"{notes} is not a cache file (an .npz archive made by `napari-tmunet-train cache`); "
        "give a dataset folder (images/ + masks/, or pictures with their masks beside them) "
        "or such a cache file" in err
    ), err
    assert "pickle" not in err and "allow_pickle" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_predict_says_what_to_give_for_a_missing_folder_or_a_file(tmp_path, capsys):
    missing = tmp_path / "nosuch"
    assert predict_cli.main([str(missing), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"INPUT_DIR {missing} does not exist" in err and "give the folder" in err, err
    picture = tmp_path / "pictures" / "us.png"
    picture.parent.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(picture)
    assert predict_cli.main([str(picture), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"INPUT_DIR {picture} is a file" in err and "every image in a folder" in err, err
    assert f"napari-tmunet {picture}" in err and str(picture.parent) in err, err
    assert not (tmp_path / "out").exists()
