"""The Fine-tune dock's run folders (fix-188, tester40 finding 6): a Run folder being
typed is shown, and a never-shown verdict decided, only once the user enters it (or
picks it in the folder dialog), not at each key; what a killed checkpoint write left in
the runs folder is removed when a fine-tune starts there (a run a live process trains
left alone) and the dock names it; a decided run's folder size is said under the Run
folder. Real runs: a tiny start checkpoint fine-tuned on 6 UDIAT pairs (CPU), the
dock's threaded path.
"""

from __future__ import annotations

import os
import threading

import pytest
import torch
from _checkpoints import tiny_checkpoint
from _paths import dataset_subset
from qtpy.QtCore import Qt
from test_finetune_undecided186 import STEPS, assert_decided, comparison, finished_run
from test_model_choice_fixes158 import STEMS, UDIAT, needs_datasets

from napari_tmunet import _docks
from napari_tmunet.storage import folder_lock
from napari_tmunet.training.finetune import FinetuneJob, run_finetune

pytestmark = [needs_datasets, pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


def open_tune(make_napari_viewer):
    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    tune.device.value = "cpu"
    return tune


def type_path(qtbot, tune, text: str) -> None:
    """Type ``text`` over the Run folder's path, key by key, as the user does."""
    edit = tune.run_folder.line_edit.native
    edit.selectAll()
    qtbot.keyClicks(edit, text)


@pytest.mark.parametrize("chosen", ["Enter", "folder dialog"])
def test_a_typed_run_folder_is_shown_only_once_chosen(make_napari_viewer, qtbot, tmp_path, chosen):
    """Typing ``.../run-12`` passes through ``.../run-1``, a run whose verdict was never
    shown: nothing is shown nor decided while typing (on main the verdict was shown and
    its model made active at that key); Enter, or the folder dialog, shows and decides
    it as at a run's end."""
    run_dir = finished_run(tmp_path, tmp_path / "runs" / "run-1")
    tune = open_tune(make_napari_viewer)

    type_path(qtbot, tune, f"{run_dir}2")  # on the way to run-12
    assert comparison(run_dir)["shown"] is False
    assert tune.result is None and tune.active.current is None, tune.status.value
    assert tune.status.value == "" and tune.use_anyway_button.native.isHidden()
    qtbot.keyClick(tune.run_folder.line_edit.native, Qt.Key.Key_Backspace)  # run-1 typed
    assert tune.result is None and comparison(run_dir)["shown"] is False

    if chosen == "Enter":
        qtbot.keyClick(tune.run_folder.line_edit.native, Qt.Key.Key_Return)
    else:
        type_path(qtbot, tune, str(tmp_path))  # typed elsewhere, then picked in the dialog
        tune.run_folder._show_file_dialog = lambda *args, **kwargs: str(run_dir)
        tune.run_folder.choose_btn.native.click()
    assert tune.result is not None, tune.status.value
    assert_decided(tune, run_dir)
    status = tune.status.value
    qtbot.keyClick(tune.run_folder.line_edit.native, Qt.Key.Key_Return)  # Enter again
    assert tune.status.value == status  # shown once


def stopped_run(tmp_path, run_dir):
    """A Fine-tune run stopped at step 1 of STEPS (last.pt saved), in ``run_dir``."""
    start = tiny_checkpoint(tmp_path / "start" / "best.pt", size=32, metadata={})
    folder = dataset_subset(UDIAT, tmp_path / "busi-stopped", STEMS)
    stop = threading.Event()
    job = FinetuneJob(
        run_dir=run_dir, dataset_folder=str(folder), start_model=str(start), steps=STEPS,
        batch_size=2, device="cpu",
    )  # fmt: skip
    result = run_finetune(job, stop, {"on_step": lambda step, total, loss: stop.set()})
    assert result["stopped"] and result["step"] == 1, result
    return run_dir


def leftover(train, name: str, megabytes: int):
    """A temporary that a write killed midway left in ``train`` (atomic_path's name)."""
    path = train / name
    path.write_bytes(b"\0" * megabytes * 1_000_000)
    return path


def test_a_start_removes_unfinished_writes_and_says_the_run_folder_size(
    make_napari_viewer, qtbot, tmp_path
):
    """Runs in one runs folder: A finished, B stopped, C trained by a live process (its
    lock held). Resume of B removes the checkpoint temporaries a kill left in A and B,
    names them in the status and under the Run folder, and leaves C's and A's other
    files alone (on main B's went silently, A's stayed for good); once B's verdict is
    decided, the line under the Run folder says B's folder's size and where it is."""
    runs = tmp_path / "runs"
    run_a = finished_run(tmp_path, runs / "A")
    run_b = stopped_run(tmp_path, runs / "B")
    run_c = runs / "C"
    (run_c / "train").mkdir(parents=True)
    (run_c / "finetune.json").write_text("{}", encoding="utf-8")
    gone = [
        leftover(run_a / "train", ".best.pt.k2x9_q0a.tmp", 3),
        leftover(run_b / "train", ".last.pt.a1b2c3d4.tmp", 2),
    ]
    kept = [
        leftover(run_c / "train", ".last.pt.zz81kq0p.tmp", 1),  # C's live writer's
        leftover(run_a / "train", ".eval-valid.csv.0p9o8i7u.tmp", 0),  # not the engine's
    ]
    best_a = (run_a / "train" / "best.pt").read_bytes()
    tune = open_tune(make_napari_viewer)
    tune.run_folder.value = str(run_b)
    assert tune.resume_button.enabled

    with folder_lock(run_c / "train", "a fine-tune in another napari"):
        tune.resume_button.native.click()
    said = "removed 2 unfinished writes (5 MB) of runs A, B"
    assert said in tune.status.value, tune.status.value
    assert tune.run_note.value == said and not tune.run_note.native.isHidden()
    assert not any(path.exists() for path in gone)
    assert all(path.exists() for path in kept)
    assert (run_a / "train" / "best.pt").read_bytes() == best_a
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)

    assert tune.error == "", tune.error
    assert_decided(tune, run_b)
    size = sum(
        os.lstat(os.path.join(root, name)).st_size
        for root, _dirs, names in os.walk(run_b)
        for name in names
    )
    last = (run_b / "train" / "last.pt").stat().st_size
    note = tune.run_note.value
    assert note.startswith(f"run folder {run_b} takes {size / 1e6:.0f} MB"), note
    assert f"train/last.pt {last / 1e6:.0f} MB" in note and "train/best.pt" in note, note
    assert not tune.run_note.native.isHidden()
    # a decided run keeps last.pt's optimiser state: `fit --resume --steps N` extends it
    state = torch.load(run_b / "train" / "last.pt", map_location="cpu", weights_only=False)
    assert "optimizer" in state["training_state"]
