"""Where the Segment dock's Checkpoint file dialog opens (a real dock in a napari viewer;
the Qt dialog call is replaced by one that records its start folder, so nothing modal
opens): at the checkpoint chosen before, else the user's fine-tune runs folder, else the
home folder; never the process's current folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from magicgui.backends._qtpy import widgets as qt_widgets
from magicgui.types import FileDialogMode

from napari_tmunet import registry, settings

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(
        registry.find_model("TM-UNet colonoscopy") is None, reason="no shipped colonoscopy model"
    ),
]


@pytest.fixture
def dialog(monkeypatch):
    """The start folders the open-file dialog was called with; it answers with the file
    names put in ``answers``, in turn, then "" (Cancel)."""
    calls, answers = [], []

    def get_open_file_name(parent, caption, start, filter):
        calls.append(start)
        return (answers.pop(0) if answers else ""), filter

    modes = qt_widgets.QFILE_DIALOG_MODES
    monkeypatch.setitem(modes, FileDialogMode.EXISTING_FILE, get_open_file_name)
    return calls, answers


def test_the_checkpoint_dialog_opens_where_checkpoints_are(
    make_napari_viewer, dialog, monkeypatch, tmp_path
):
    """With nothing chosen the dialog opens in the home folder, once the fine-tune runs
    folder exists there, and after a checkpoint is chosen (through the dialog) in that
    checkpoint's folder, not the folder napari was started from."""
    from napari_tmunet._segment_widget import CHECKPOINT_CHOICE

    calls, answers = dialog
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert Path.home() == home and Path.cwd() != home
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    widget.model.value = CHECKPOINT_CHOICE
    choose = widget.checkpoint.choose_btn.native

    assert not settings.runs_dir().exists()
    choose.click()  # cancelled: nothing chosen
    assert calls == [os.fspath(home)]

    settings.runs_dir().mkdir(parents=True)
    mine = tmp_path / "my models" / "polyps.pt"
    mine.parent.mkdir()
    shutil.copy(registry.find_model("TM-UNet colonoscopy").path, mine)
    answers.append(str(mine))
    choose.click()
    assert calls[-1] == os.fspath(settings.runs_dir())
    assert widget.checkpoint.value == mine

    choose.click()  # the next time: where the chosen one is
    assert calls[-1] == os.fspath(mine.parent)
    assert widget.checkpoint.value == mine  # cancelled: still the one chosen


def test_the_finetune_checkpoint_dialog_opens_where_checkpoints_are(
    make_napari_viewer, dialog, monkeypatch, tmp_path
):
    """The Fine-tune dock's Checkpoint field opens its dialog by the same rule: the home
    folder with nothing chosen, then the chosen checkpoint's folder."""
    from napari_tmunet._finetune_widget import CHECKPOINT_CHOICE

    calls, answers = dialog
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Fine-tune"
    )
    widget.model.value = CHECKPOINT_CHOICE
    choose = widget.checkpoint.choose_btn.native

    choose.click()  # cancelled
    assert calls == [os.fspath(home)]
    mine = tmp_path / "my models" / "polyps.pt"
    mine.parent.mkdir()
    shutil.copy(registry.find_model("TM-UNet colonoscopy").path, mine)
    answers.append(str(mine))
    choose.click()
    assert widget.checkpoint.value == mine
    choose.click()
    assert calls[-1] == os.fspath(mine.parent)
