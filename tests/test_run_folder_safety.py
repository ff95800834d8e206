"""A run folder's checks never take the user's own files for an earlier run."""

import pytest

from napari_tmunet.training.config import TrainConfig
from napari_tmunet.training.run_folder import RunDirError, prepare_run_dir

RUN_OUTPUT = ["best.pt", "config.json", "curves.png", "eval-test-best.csv", "last.pt"]
RUN_OUTPUT += ["metrics.jsonl", "run_info.json", "split.json", "summary.json"]
RUN_OUTPUT += ["test_metrics.csv"]


def _project(folder):
    """A user's project folder: a dataset and notes (what `--data . --run-dir .` meets)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "a.png").write_bytes(b"pixels")
    (folder / "notes.txt").write_text("my lab notes\n")
    return folder


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_dataset_folder_is_refused_and_left_alone(tmp_path, overwrite):
    folder = _project(tmp_path / "project")
    before = _tree(folder)
    with pytest.raises(RunDirError, match="not a run folder") as error:
        prepare_run_dir(TrainConfig(overwrite=overwrite), folder)
    assert "images/, masks/, notes.txt" in str(error.value)
    assert "empty or new --run-dir" in str(error.value)
    assert _tree(folder) == before  # nothing moved, no previous-*/ made


def test_overwrite_leaves_a_users_files_beside_a_run_in_place(tmp_path):
    folder = _project(tmp_path / "project")
    (folder / "last.pt").write_bytes(b"checkpoint")
    before = _tree(folder)
    with pytest.raises(RunDirError, match="files that no run wrote") as error:
        prepare_run_dir(TrainConfig(overwrite=True), folder)
    assert "images/, masks/, notes.txt" in str(error.value)
    assert "--resume can continue" in str(error.value)
    assert _tree(folder) == before
    prepare_run_dir(TrainConfig(resume=True), folder)  # the run itself still resumes


def test_overwrite_sets_aside_every_file_a_run_writes(tmp_path):
    run = tmp_path / "run"
    (run / "previous-20260101-000000").mkdir(parents=True)
    for name in [*RUN_OUTPUT, "train.log", ".DS_Store"]:
        (run / name).write_text(name)
    prepare_run_dir(TrainConfig(overwrite=True), run)
    (backup,) = [p for p in run.glob("previous-*") if p.name != "previous-20260101-000000"]
    assert sorted(p.name for p in backup.iterdir()) == sorted(RUN_OUTPUT)
    kept = sorted(p.name for p in run.iterdir())
    assert kept == [".DS_Store", "previous-20260101-000000", backup.name, "train.log"]


def test_a_folder_that_is_not_a_run_gets_one_answer(tmp_path):
    """With and without --resume the user hears the same: not a run folder, choose
    another; neither answer sends them to the other option."""
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run\n")
    answers = []
    for cfg in (TrainConfig(resume=True), TrainConfig()):
        with pytest.raises(RunDirError) as error:
            prepare_run_dir(cfg, folder)
        answers.append(str(error.value))
    for answer in answers:
        assert f"{folder} is not a run folder: it holds notes.txt" in answer
        assert "empty or new --run-dir" in answer
        assert "without --resume" not in answer and "(--resume)" not in answer
    assert answers[0].startswith("cannot resume")


def test_resume_errors_say_what_the_folder_holds(tmp_path):
    with pytest.raises(RunDirError, match="no run in .*without --resume"):
        prepare_run_dir(TrainConfig(resume=True), tmp_path / "missing")
    early = tmp_path / "early"
    early.mkdir()
    (early / "config.json").write_text("{}")
    with pytest.raises(RunDirError, match="before its first checkpoint"):
        prepare_run_dir(TrainConfig(resume=True), early)
    prepare_run_dir(TrainConfig(), early)  # as that message says: it starts again
    best_only = tmp_path / "best-only"
    best_only.mkdir()
    (best_only / "best.pt").write_bytes(b"model")
    with pytest.raises(RunDirError, match="needs last.pt.*--overwrite"):
        prepare_run_dir(TrainConfig(resume=True), best_only)
    with pytest.raises(RunDirError, match="cannot be resumed.*--overwrite"):
        prepare_run_dir(TrainConfig(), best_only)


def test_resume_without_data_names_what_the_folder_is(tmp_path, capsys):
    """`fit --run-dir X --resume` alone: not "no dataset", but why X holds no run."""
    from trainer import cli

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["fit", "--run-dir", str(folder), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume:" in err and "is not a run folder: it holds notes.txt" in err
    assert "no dataset" not in err and (folder / "notes.txt").read_text() == "mine"


def test_a_fit_refused_on_its_arguments_leaves_no_run_folder(tmp_path, capsys):
    """--official-split on a folder without train.txt/test.txt is refused once the data is
    read: the run folder (and the parents) this fit made are gone, an existing one stays."""
    from trainer import cli, commands

    tiles = commands._write_demo_tiles(tmp_path / "tiles")
    fit = ["fit", "--data", str(tiles), "--official-split", "--variant", "t", "--size", "32",
           "--steps", "1", "--device", "cpu", "--no-progress", "--num-workers", "0"]  # fmt: skip
    made = tmp_path / "runs" / "new"
    assert cli.main([*fit, "--run-dir", str(made)]) == 2
    assert "has no train.txt and test.txt" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    assert cli.main([*fit, "--run-dir", str(mine)]) == 2
    assert mine.is_dir()  # the user's (empty) folder: not this fit's to remove


def test_resume_accepts_the_start_checkpoint_an_old_run_saved_relative(
    tmp_path, monkeypatch, capsys
):
    """An older run's config.json holds a relative init_checkpoint: passing the same file
    again on --resume is accepted whether the old path was relative to the current folder
    or to the run folder's parent; another file is refused naming both."""
    import json

    from trainer import cli, commands

    tiles = commands._write_demo_tiles(tmp_path / "tiles")
    tiny = ["--data", str(tiles), "--variant", "t", "--size", "32", "--batch-size", "4",
            "--epochs", "1", "--device", "cpu", "--no-progress", "--no-efficiency",
            "--no-test", "--num-workers", "0"]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", *tiny, "--steps", "2", "--run-dir", "seg"]) == 0
    tune = ["fit", *tiny, "--steps", "2", "--init-checkpoint", "seg/last.pt"]
    assert cli.main([*tune, "--run-dir", "tuned"]) == 0
    saved = json.loads((tmp_path / "tuned" / "config.json").read_text())
    saved["init_checkpoint"] = "seg/last.pt"  # as older versions wrote it
    (tmp_path / "tuned" / "config.json").write_text(json.dumps(saved))
    summary = tmp_path / "tuned" / "summary.json"

    def resume(checkpoint: str) -> int:
        # a finished run is not resumed (nothing to do): one stopped before its summary is
        summary.unlink(missing_ok=True)
        run = ["fit", "--run-dir", str(tmp_path / "tuned"), "--resume"]
        return cli.main([*run, "--init-checkpoint", checkpoint])

    assert resume("seg/last.pt") == 0  # from here
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert resume("../seg/last.pt") == 0  # run's parent
    capsys.readouterr()
    assert resume("../tuned/last.pt") == 2
    err = capsys.readouterr().err
    assert f"--init-checkpoint {tmp_path / 'tuned' / 'last.pt'} is not the checkpoint" in err
    assert f"{elsewhere / 'seg' / 'last.pt'} or {tmp_path / 'seg' / 'last.pt'}" in err, err
