"""One reader of a run's last.pt progress (``run_folder.checkpoint_progress``) for the
Fine-tune dock (``finetune.run_progress``) and the trainer's interrupted-fit words
(``trainer.commands._interrupted_words``), fix-191 #4."""

from _checkpoints import tiny_checkpoint

from napari_tmunet.training.finetune import run_progress
from napari_tmunet.training.run_folder import checkpoint_progress
from trainer.commands import _interrupted_words


def test_a_last_pt_gives_its_step_and_total_to_both_readers(tmp_path):
    metadata = {"step": 7, "train_config": {"steps": 20}}
    tuned = tiny_checkpoint(tmp_path / "tune" / "train" / "last.pt", metadata=metadata)
    assert checkpoint_progress(tuned) == (7, 20)
    assert run_progress(tmp_path / "tune") == (7, 20)
    fit = tiny_checkpoint(tmp_path / "fit" / "last.pt", metadata=metadata)
    assert f"{fit} (step 7) is kept; `napari-tmunet-train fit" in _interrupted_words(fit.parent)


def test_what_a_last_pt_does_not_hold_reads_as_nothing(tmp_path):
    epochs = {"step": 3, "train_config": {"steps": 0}}  # a run that counted epochs
    assert checkpoint_progress(tiny_checkpoint(tmp_path / "e.pt", metadata=epochs)) == (3, 0)
    assert checkpoint_progress(tiny_checkpoint(tmp_path / "none.pt", metadata={})) == (None, 0)
    damaged = tmp_path / "damaged" / "train" / "last.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    assert checkpoint_progress(damaged) == (None, 0)
    assert run_progress(tmp_path / "damaged") == (0, 0)
    assert run_progress(tmp_path / "absent") == (0, 0)
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "last.pt").write_bytes(b"not a checkpoint")
    words = _interrupted_words(tmp_path / "fit")
    assert words.startswith(f"{tmp_path / 'fit' / 'last.pt'} is kept; ")  # no step said
