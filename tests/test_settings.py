"""User settings and run folders in platformdirs' folders, moved from the old places."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from napari_tmunet import registry, settings
from napari_tmunet.training.finetune import new_run_folder


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh home folder, with no overrides: the real platformdirs paths under it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", settings.SETTINGS_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(settings.DATA_DIR_ENV, raising=False)
    return home


def test_folders_follow_platformdirs(home):
    assert settings.config_dir() == platformdirs.user_config_path("napari-tmunet", False)
    assert settings.runs_dir() == platformdirs.user_data_path("napari-tmunet", False) / "runs"
    assert home in settings.settings_path().parents and home in settings.runs_dir().parents
    assert registry.remembered_models() == {}
    registry.remember_model("nuclei", "TM-UNet nuclei")
    assert settings.settings_path().is_file()
    assert registry.remembered_models() == {"nuclei": "TM-UNet nuclei"}
    run = new_run_folder()
    assert run.parent == settings.runs_dir() and not run.exists()


def test_old_runs_folder_is_moved_and_linked(home):
    old = home / "napari-tmunet-runs"
    checkpoint = old / "20260101-120000" / "train" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights the user trained")

    run = new_run_folder()  # first use

    moved = settings.runs_dir() / "20260101-120000" / "train" / "best.pt"
    assert moved.read_bytes() == b"weights the user trained"
    assert run.parent == settings.runs_dir()
    assert old.is_symlink() and checkpoint.read_bytes() == b"weights the user trained"
    assert new_run_folder().parent == settings.runs_dir()  # later uses: nothing to move


def test_nothing_is_overwritten_when_both_folders_exist(home):
    old, new = home / "napari-tmunet-runs" / "a", settings.runs_dir() / "b"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    (old / "mask.png").write_bytes(b"old")
    (new / "mask.png").write_bytes(b"new")
    assert settings.runs_dir() == new.parent
    assert (old / "mask.png").read_bytes() == b"old" and not old.parent.is_symlink()
    assert (new / "mask.png").read_bytes() == b"new"


def test_old_settings_file_is_moved_where_platformdirs_differs(home, monkeypatch):
    """On macOS and Windows the config folder is not ~/.config: the file is moved there."""
    elsewhere = home / "Library" / "Application Support" / "napari-tmunet"
    monkeypatch.setattr(settings.platformdirs, "user_config_path", lambda *a, **k: elsewhere)
    old = home / ".config" / "napari-tmunet" / "settings.json"
    old.parent.mkdir(parents=True)
    old.write_text('{"models_by_modality": {"ultrasound": "TM-UNet nuclei"}}')

    assert registry.remembered_models() == {"ultrasound": "TM-UNet nuclei"}
    assert not old.exists() and (elsewhere / "settings.json").is_file()


def test_overrides_skip_the_move(home, monkeypatch, tmp_path):
    old = home / "napari-tmunet-runs" / "x"
    old.mkdir(parents=True)
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "portable"))
    assert settings.runs_dir() == tmp_path / "portable" / "runs"
    assert old.is_dir() and not old.parent.is_symlink()
