"""The user's settings and folders, in platformdirs' per-user folders (as napari keeps its own).

- settings: ``<user config dir>/settings.json`` (Linux ``~/.config/napari-tmunet``, macOS
  ``~/Library/Application Support/napari-tmunet``, Windows ``%LOCALAPPDATA%\\napari-tmunet``);
- fine-tune runs: ``<user data dir>/runs`` (Linux ``~/.local/share/napari-tmunet/runs``);
- compiled GPU kernels: ``<user cache dir>/triton`` (Linux ``~/.cache/napari-tmunet/triton``),
  Triton's cache unless ``TRITON_CACHE_DIR`` is set (:func:`persist_kernel_cache`).

Earlier versions kept them in ``~/.config/napari-tmunet/settings.json`` and
``~/napari-tmunet-runs``; on first use they are moved to the new place (never overwriting
anything there), and the old runs folder is left as a link to the new one so that paths
written down earlier still work.

``NAPARI_TMUNET_CONFIG_DIR``, ``NAPARI_TMUNET_DATA_DIR`` and ``NAPARI_TMUNET_CACHE_DIR``
override the three folders (tests, portable installs); no migration happens then.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import platformdirs

APP = "napari-tmunet"
SETTINGS_DIR_ENV = "NAPARI_TMUNET_CONFIG_DIR"
DATA_DIR_ENV = "NAPARI_TMUNET_DATA_DIR"
CACHE_DIR_ENV = "NAPARI_TMUNET_CACHE_DIR"
TRITON_CACHE_ENV = "TRITON_CACHE_DIR"
SETTINGS_FILE = "settings.json"

log = logging.getLogger(__name__)
_warned: set[tuple[Path, Path]] = set()


def config_dir() -> Path:
    """The folder of the settings file."""
    override = os.environ.get(SETTINGS_DIR_ENV)
    return Path(override) if override else platformdirs.user_config_path(APP, appauthor=False)


def data_dir() -> Path:
    """The folder of what the plugin makes for the user (fine-tune runs)."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else platformdirs.user_data_path(APP, appauthor=False)


def cache_dir() -> Path:
    """The folder of what can be rebuilt but is slow to (compiled GPU kernels)."""
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override) if override else platformdirs.user_cache_path(APP, appauthor=False)


def persist_kernel_cache() -> Path:
    """Where Triton keeps compiled kernels: ``TRITON_CACHE_DIR`` when the user set it,
    else ``<cache dir>/triton``, which this sets (before any kernel is compiled: at
    ``napari_tmunet.model``'s import), so a second session loads the mLSTM kernels
    instead of compiling them again."""
    if not os.environ.get(TRITON_CACHE_ENV):
        os.environ[TRITON_CACHE_ENV] = str(cache_dir() / "triton")
    return Path(os.environ[TRITON_CACHE_ENV])


def legacy_settings_path() -> Path:
    """Where earlier versions kept the settings (a hand-built XDG path)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / APP / SETTINGS_FILE


def legacy_runs_dir() -> Path:
    """Where earlier versions kept the fine-tune runs."""
    return Path.home() / "napari-tmunet-runs"


def settings_path() -> Path:
    """The user's settings file (moved from the old place on first use)."""
    path = config_dir() / SETTINGS_FILE
    if not os.environ.get(SETTINGS_DIR_ENV):
        _move_once(legacy_settings_path(), path)
    return path


def runs_dir() -> Path:
    """The folder of fine-tune runs (moved from ``~/napari-tmunet-runs`` on first use)."""
    path = data_dir() / "runs"
    if not os.environ.get(DATA_DIR_ENV):
        old = legacy_runs_dir()
        if _move_once(old, path):
            try:  # old paths (notes, shell history) keep working
                old.symlink_to(path, target_is_directory=True)
            except OSError:
                pass  # e.g. Windows without the symlink privilege; the move is what matters
    return path


def _move_once(old: Path, new: Path) -> bool:
    """Move ``old`` to ``new`` when only ``old`` exists; True when moved.

    Nothing is overwritten: when both exist, both are kept and a warning says so. A move
    that fails (permissions, another disk that fills up) leaves ``old`` where it is.
    """
    if old.is_symlink() or not old.exists() or _same(old, new):
        return False
    if new.exists():
        if (old, new) not in _warned:  # once per session, not at every settings read
            _warned.add((old, new))
            log.warning("napari-tmunet: %s and %s both exist; using the second", old, new)
        return False
    try:
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(old), str(new))
    except OSError as err:
        log.warning("napari-tmunet: could not move %s to %s (%s); using %s", old, new, err, new)
        return False
    log.warning("napari-tmunet: moved %s to %s", old, new)
    return True


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one place (on Linux the old and new settings folder agree)."""
    return a.resolve() == b.resolve()


def read_settings() -> dict:
    """The settings as a dict; {} when there are none or the file is unreadable."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_models() -> dict[str, str]:
    """Model names the user chose, by modality; {} when none or unreadable."""
    chosen = read_settings().get("models_by_modality", {})
    return {str(k): str(v) for k, v in chosen.items()} if isinstance(chosen, dict) else {}


def remember_model(modality: str, name: str) -> None:
    """Remember ``name`` as the user's model for images of ``modality`` (best effort)."""
    _write_models(modality, name)


def forget_model(modality: str) -> None:
    """Forget the user's model for images of ``modality`` (best effort)."""
    _write_models(modality, None)


def _write_models(modality: str, name: str | None) -> None:
    """Set (or, for None, drop) the remembered model of ``modality`` in the settings file;
    a file that cannot be written is left as it is."""
    from .storage import write_json

    data = read_settings()
    chosen = data.get("models_by_modality")
    chosen = {**(chosen if isinstance(chosen, dict) else {}), modality: name}
    data["models_by_modality"] = {k: v for k, v in chosen.items() if v is not None}
    try:
        write_json(settings_path(), data)
    except OSError:
        pass  # a read-only home must not break segmentation


def saved_active_models() -> dict:
    """The active and previous model saved by the last session (``{"current": {...},
    "previous": {...}}``, each the fields of an active_model.ModelChoice); {} when none
    or unreadable."""
    saved = read_settings().get("active_model", {})
    return saved if isinstance(saved, dict) else {}


def save_active_models(saved: dict) -> None:
    """Save the active and previous model for the next session (best effort: a file that
    cannot be written is left as it is)."""
    from .storage import write_json

    data = read_settings()
    data["active_model"] = saved
    try:
        write_json(settings_path(), data)
    except OSError:
        pass  # a read-only home must not break fine-tuning
