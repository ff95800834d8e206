"""``--no-progress`` on every napari-tmunet-train command that draws progress bars (tester
33, failure 7: ``evaluate ... --no-progress`` was refused while fit and predict took it):
fit, cache, evaluate and demo take it; evaluate and cache run with it on real CVC-ClinicDB
pairs."""

from __future__ import annotations

import pytest
from _checkpoints import tiny_checkpoint
from _paths import DATASETS, dataset_subset

from trainer import cli

CLINIC = DATASETS / "CVC-ClinicDB"
needs_datasets = pytest.mark.skipif(not CLINIC.is_dir(), reason="shared datasets not present")


@pytest.mark.parametrize("command", [["fit"], ["cache", "out.npz"], ["evaluate", "x.pt"], ["demo"]])
def test_each_command_that_shows_progress_takes_no_progress(command):
    args = cli.build_parser().parse_args([*command, "--no-progress"])
    assert args.no_progress is True
    assert cli.build_parser().parse_args(command).no_progress in (False, None)  # bars by default


def test_commands_without_bars_do_not_take_it():
    for command in (["report", "runs"], ["efficiency"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([*command, "--no-progress"])


@needs_datasets
def test_evaluate_and_cache_run_with_no_progress(tmp_path, capsys):
    data = dataset_subset(CLINIC, tmp_path / "clinic", ["1", "2"])
    best = tiny_checkpoint(tmp_path / "run" / "best.pt")
    argv = ["evaluate", str(best), "--data", str(data), "--part", "all", "--device", "cpu"]
    assert cli.main([*argv, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "results:" in out and "evaluate" not in err  # no bar, not even its last line
    assert list((tmp_path / "run").glob("eval-all-best-*.csv"))

    assert cli.main(["cache", "--data", str(data), str(tmp_path / "c.npz"), "--no-progress"]) == 0
    assert (tmp_path / "c.npz").is_file() and "decode" not in capsys.readouterr().err
