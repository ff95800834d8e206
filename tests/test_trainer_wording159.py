"""The trainer's scores in one form, percent with its unit (tester35 #6).

A fit printed its test line twice, as fractions in the log ("Dice 0.0765") and as
percents without a sign in the result ("Dice 7.65"), beside "best validation Dice
0.2044"; --skip-bad said "skipped 1 items". The docs' tables give Dice, IoU and F1 in
percent points: the trainer now says them so, with "%", the test line once.
"""

from __future__ import annotations

import re

import pytest
from _paths import DATASETS
from test_trainer import _tiny_clinic

from trainer import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLINIC = DATASETS / "CVC-ClinicDB"
QUICK = ["--variant", "t", "--size", "32", "--batch-size", "2", "--device", "cpu",
         "--no-progress", "--no-efficiency", "--num-workers", "1"]  # fmt: skip
PCT = r"\d+\.\d\d%"  # a score in percent points
PX = r"\d+\.\d\d px"  # a distance in pixels


@pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {DATASETS}")
def test_a_fit_says_its_scores_once_in_percent(tmp_path, capsys, caplog):
    """fit --skip-bad on 10 CVC-ClinicDB pairs, one picture truncated: the skip is "1 item";
    the validation lines, the best validation Dice and the test line are in % (HD in px),
    and the test line is printed once (not logged as fractions as well)."""
    data = _tiny_clinic(tmp_path / "data")
    broken = sorted((data / "images").iterdir())[4]
    broken.write_bytes(broken.read_bytes()[:2000])
    fit = ["fit", "--data", str(data), "--run-dir", str(tmp_path / "run"), "--steps", "2"]
    with caplog.at_level("INFO", "napari_tmunet"):
        assert cli.main([*fit, *QUICK, "--skip-bad"]) == 0
    out, log = capsys.readouterr().out, caplog.text
    assert f"{data}: skipped 1 item: " in log, log
    assert re.search(rf"step 2/2 epoch [\d.]+: loss [\d.]+, val Dice {PCT} \(best {PCT} at", log)
    assert re.search(rf"finished at step 2 of 2; best validation Dice {PCT} at step \d", out), out
    test = (
        rf"test \((1 image|\d+ images)\): Dice {PCT} IoU {PCT} F1 {PCT} HD {PX} HD95 {PX}, "
        rf"(1 empty prediction|\d+ empty predictions); native Dice {PCT}\n"
    )
    assert re.search(test, out), out
    assert "test (" not in log and out.count("test (") == 1, (out, log)
