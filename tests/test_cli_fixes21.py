"""napari-tmunet-train on a second dataset and in the first minutes (tester21 D3, D6, D9):
evaluate keeps each dataset's scores, the run's split on other data says what to pass,
--init-checkpoint takes a shipped model's name, a refused dataset counts problems."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _paths import DATASETS, dataset_subset
from test_cli_wording import QUICK
from test_trainer import _tiny_clinic

from napari_tmunet import registry
from trainer import cli
from trainer.report import test_result as run_test_result

CLINIC, UDIAT = DATASETS / "CVC-ClinicDB", DATASETS / "UDIAT"
needs_data = pytest.mark.skipif(not UDIAT.is_dir(), reason=f"no datasets at {DATASETS}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on 10 CVC-ClinicDB pairs (2 test images), not tested by fit."""
    if not UDIAT.is_dir():
        pytest.skip(f"no datasets at {DATASETS}")
    base = tmp_path_factory.mktemp("fixes21")
    data, run = _tiny_clinic(base / "clinic"), base / "run"
    fit = ["fit", "--data", str(data), "--run-dir", str(run), "--steps", "2", "--no-test"]
    assert cli.main([*fit, *QUICK]) == 0
    return run


def _udiat(folder: Path, count: int = 3) -> Path:
    """A dataset folder named as ``folder`` with UDIAT's first ``count`` pairs."""
    stems = sorted(p.stem for p in (UDIAT / "images").iterdir())[:count]
    return dataset_subset(UDIAT, folder, stems)


def _evaluate(*args: str) -> int:
    return cli.main(["evaluate", *args, "--device", "cpu", "--batch-size", "2"])


@needs_data
def test_scores_on_several_datasets_sit_side_by_side(run, tmp_path, capsys):
    """evaluate of one checkpoint on two other datasets, then on its own: one CSV/JSON
    each, named by dataset, and the last line says where; a second folder of the same
    name gets -2 (the first one's scores kept), the same folder again replaces its own."""
    best = str(run / "best.pt")
    udiat = _udiat(tmp_path / "UDIAT")
    clinic = _tiny_clinic(tmp_path / "cvc4", count=4)
    assert _evaluate(best, "--data", str(clinic), "--part", "all") == 0
    out = capsys.readouterr().out
    csv, summary = run / "eval-all-best-cvc4.csv", run / "eval-all-best-cvc4.json"
    assert f"results: {csv} (per image), {summary} (summary)" in out, out
    assert _evaluate(best, "--data", str(udiat), "--part", "all") == 0
    assert f"results: {run / 'eval-all-best-UDIAT.csv'}" in capsys.readouterr().out
    cvc = json.loads(summary.read_text())
    assert (cvc["dataset"], cvc["test"]["count"], cvc["own_data"]) == ("cvc4", 4, False)
    assert len(csv.read_text().splitlines()) == 1 + 4
    assert json.loads((run / "eval-all-best-UDIAT.json").read_text())["test"]["count"] == 3

    namesake = _udiat(tmp_path / "elsewhere" / "cvc4", count=2)  # another folder, one name
    assert _evaluate(best, "--data", str(namesake), "--part", "all") == 0
    assert json.loads((run / "eval-all-best-cvc4-2.json").read_text())["test"]["count"] == 2
    assert json.loads(summary.read_text())["test"]["count"] == 4  # kept
    assert _evaluate(best, "--data", str(clinic), "--part", "all") == 0  # the same data again
    assert not (run / "eval-all-best-cvc4-3.json").exists()

    assert _evaluate(best) == 0  # its own data and split: the plain name
    own = json.loads((run / "eval-test-best.json").read_text())
    assert own["own_data"] and own["test"]["count"] == 2
    # a test part of other data (its own split file) is no test result of the run
    split = tmp_path / "udiat-split.json"
    split.write_text(json.dumps({"train": ["000001"], "valid": ["000002"], "test": ["000003"]}))
    assert _evaluate(best, "--data", str(udiat), "--split-file", str(split)) == 0
    assert (run / "eval-test-best-UDIAT.json").is_file()
    assert run_test_result(run) == own["test"]


@needs_data
def test_the_runs_split_on_other_data_says_what_to_pass(run, tmp_path, capsys):
    """evaluate on another dataset without --part all, and fit --resume with another
    --data: exit 2, one message saying the split is the run's own data's and what to
    pass, nothing written."""
    udiat = _udiat(tmp_path / "UDIAT")
    before = sorted(p.name for p in run.iterdir())
    assert _evaluate(str(run / "best.pt"), "--data", str(udiat)) == 2
    err = capsys.readouterr().err
    assert (
        f"{run / 'split.json'} is the split of the dataset {run / 'best.pt'} was trained on "
        f"(clinic); 10 of its 10 images are not in UDIAT ({udiat}): to score UDIAT, pass "
        "--part all (every image), or give a split of it with --split-file FILE"
    ) in err, err
    assert "names are image base names" not in err

    resume = ["fit", "--run-dir", str(run), "--resume", "--steps", "4", "--no-progress"]
    assert cli.main([*resume, "--data", str(udiat)]) == 2
    err = capsys.readouterr().err
    assert (
        f"cannot resume {run}: --data {udiat} is not the dataset this run was trained on "
        f"({run.parent / 'clinic'}): 10 of the 10 images in its split"
    ) in err, err
    assert "resume with the run's own data (leave --data out" in err
    assert sorted(p.name for p in run.iterdir()) == before


@needs_data
def test_init_checkpoint_takes_a_shipped_models_name(tmp_path, capsys):
    """--init-checkpoint colonoscopy fine-tunes the shipped model (its file recorded); an
    unknown name lists the shipped models, a run folder names its best.pt; neither leaves
    a run folder."""
    entry = registry.model_for_modality("colonoscopy")
    if entry is None:
        pytest.skip("no shipped colonoscopy model")
    data = _tiny_clinic(tmp_path / "clinic", count=6)
    quick = ["--data", str(data), "--size", "32", "--batch-size", "2", "--device", "cpu",
             "--no-progress", "--no-efficiency", "--num-workers", "1", "--no-test"]  # fmt: skip
    tuned = tmp_path / "tuned"
    start = ["fit", *quick, "--steps", "1", "--run-dir", str(tuned), "--init-checkpoint"]
    assert cli.main([*start, "colonoscopy"]) == 0
    config = json.loads((tuned / "config.json").read_text())
    assert config["init_checkpoint"] == str(entry.path.resolve())
    assert config["variant"] == "b"  # the shipped model's, not the default
    capsys.readouterr()

    other = tmp_path / "other"
    assert cli.main([*start[:-3], "--run-dir", str(other), "--init-checkpoint", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "--init-checkpoint: model 'nowhere' is neither a shipped model nor a modality" in err
    assert repr(entry.name) in err
    assert cli.main([*start[:-3], "--run-dir", str(other), "--init-checkpoint", str(tuned)]) == 2
    err = capsys.readouterr().err
    assert f"is a folder, not a checkpoint file: pass {tuned / 'best.pt'}" in err, err
    assert not other.exists()


@needs_data
def test_a_refused_dataset_counts_its_problems_not_skipped_pairs(tmp_path, capsys):
    """Two masks of one base name: refused as "3 pairs, 1 problem" (nothing was skipped);
    with --skip-bad the pair is skipped and said so."""
    data = _tiny_clinic(tmp_path / "dup", count=4)
    shutil.copy(data / "masks" / "10.tif", data / "masks" / "10.png")
    fit = ["fit", "--data", str(data), *QUICK, "--steps", "1", "--no-test"]
    assert cli.main([*fit, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{data}: 3 pairs, 1 problem\n" in err and "skipped" not in err.split("\n")[0], err
    assert "several files with one base name: 10.png, 10.tif" in err
    assert "fix these files, or skip them (--skip-bad)" in err
    assert not (tmp_path / "r").exists()
