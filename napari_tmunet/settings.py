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

The settings file may be edited by hand. One that cannot be read (not JSON, not an object)
or whose key holds what the code never writes is named in a logging warning (the JSON
error's line and column, what to do), the defaults are used, and it is never replaced
(:func:`update`). Each save reads the file again under a lock and changes its own key
only: two napari windows, or a window and a script, keep what the other saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import platformdirs

APP = "napari-tmunet"
SETTINGS_DIR_ENV = "NAPARI_TMUNET_CONFIG_DIR"
DATA_DIR_ENV = "NAPARI_TMUNET_DATA_DIR"
CACHE_DIR_ENV = "NAPARI_TMUNET_CACHE_DIR"
TRITON_CACHE_ENV = "TRITON_CACHE_DIR"
SETTINGS_FILE = "settings.json"
MODELS_KEY = "models_by_modality"  # {modality: a shipped model's name}
ACTIVE_KEY = "active_model"  # {"current": {...}, "previous": {...}}: ModelChoice fields
LOCK_WAIT_S = 5.0  # how long a save waits for another process's (it takes milliseconds)

log = logging.getLogger(__name__)
_warned: set[tuple[Path, Path]] = set()
_told: set[str] = set()  # the settings file's warnings already logged in this session


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
    """The settings file's content; {} when there is none, or when it cannot be read (not
    JSON, not a JSON object, no permission): then the defaults are used and a warning
    names the file, what is wrong and what to do (once: it is read often)."""
    data, problem = _load(settings_path())
    if problem:
        _tell_once(problem)
    return data


def setting(key: str, valid: Callable[[Any], bool] = lambda _: True, expected: str = ""):
    """The value of ``key`` in the settings file; None when it has none, when the file
    cannot be read, or when the value is not ``valid`` (``expected`` says what it must be):
    then the default is used and a warning names the file, the key and what to do (once)."""
    value = read_settings().get(key)
    if value is None or valid(value):
        return value
    _tell_once(_bad_key(settings_path(), key, value, expected))
    return None


def problems() -> list[str]:
    """What keeps the settings file from being used, in words naming it and what to do: it
    cannot be read, or a key this module reads holds what it never writes; [] when all is
    well (or there is no file). For a message when the plugin's docks start."""
    path = settings_path()
    data, problem = _load(path)
    if problem:
        return [problem]
    return [
        _bad_key(path, key, data[key], expected)
        for key, (valid, expected) in _FORMS.items()
        if data.get(key) is not None and not valid(data[key])
    ]


def remembered_models() -> dict[str, str]:
    """Model names the user chose, by modality; {} when none or unreadable."""
    return _own(MODELS_KEY) or {}


def remember_model(modality: str, name: str) -> None:
    """Remember ``name`` as the user's model for images of ``modality`` (best effort)."""
    _write_models(modality, name)


def forget_model(modality: str) -> None:
    """Forget the user's model for images of ``modality`` (best effort)."""
    _write_models(modality, None)


def _write_models(modality: str, name: str | None) -> None:
    """Set (or, for None, drop) the remembered model of ``modality`` in the settings file,
    the other modalities' as the file has them now (:func:`update`)."""

    def change(chosen: dict | None) -> dict:
        chosen = {**(chosen or {}), modality: name}
        return {k: v for k, v in chosen.items() if v is not None}

    update(MODELS_KEY, change)


def saved_active_models() -> dict:
    """The active and previous model saved by the last session (``{"current": {...},
    "previous": {...}}``, each the fields of an active_model.ModelChoice); {} when none
    or unreadable."""
    return _own(ACTIVE_KEY) or {}


def save_active_models(saved: dict) -> None:
    """Save the active and previous model for the next session (best effort, see
    :func:`update`; the other keys as the file has them now)."""
    update(ACTIVE_KEY, lambda _now: saved)


def update(key: str, change: Callable[[Any], Any]) -> bool:
    """Set ``key`` in the settings file to ``change(its value in the file now)`` (None
    removes it), keeping every other key as the file has it now: the file is read again
    and replaced in one step under a lock, so that two napari windows (or a window and a
    script) that save in turn each keep what the other saved. True when written.

    A file that cannot be read, or whose ``key`` holds what this module never writes (a
    hand edit), is never replaced: the write is refused with the warning that names it
    (what the user wrote there would be lost); the session goes on with its choice
    unsaved. A file that cannot be written (a read-only home) is left as it is, silently:
    saving is best effort, and must not break segmentation or fine-tuning.
    """
    from .storage import FolderBusyError, write_json

    path = settings_path()
    try:
        with _settings_lock(path.parent):
            data, problem = _load(path)
            valid, expected = _FORMS.get(key, (lambda _: True, ""))
            if not problem and data.get(key) is not None and not valid(data[key]):
                problem = _bad_key(path, key, data[key], expected)
            if problem:
                log.warning(problem)  # at every refused write: a choice is not saved
                return False
            data[key] = change(data.get(key))
            if data[key] is None:
                del data[key]
            write_json(path, data)
    except FolderBusyError as err:
        log.warning("napari-tmunet: settings not saved: %s", err)
        return False
    except OSError:
        return False  # a read-only home, a full disk: the file is left as it was
    return True


def _is_choice(value) -> bool:
    """A saved ModelChoice: an object with a "model" (a file or a shipped model's name)."""
    return isinstance(value, dict) and isinstance(value.get("model"), str)


def _is_models(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_active(value) -> bool:
    return isinstance(value, dict) and all(
        value.get(k) is None or _is_choice(value[k]) for k in ("current", "previous")
    )


# The keys this module reads and writes: whether a value is one it wrote, and what it is
_FORMS: dict[str, tuple[Callable[[Any], bool], str]] = {
    MODELS_KEY: (_is_models, 'an object of shipped model names by modality, e.g. '
                 '{"nuclei": "TM-UNet nuclei"}'),
    ACTIVE_KEY: (_is_active, 'an object whose "current" and "previous" are each an '
                 'object with a "model": a checkpoint file or a shipped model\'s name'),
}  # fmt: skip


def _own(key: str):
    """The value of one of this module's keys (:data:`_FORMS`), or None (see
    :func:`setting`)."""
    return setting(key, *_FORMS[key])


def _load(path: Path) -> tuple[dict, str]:
    """(the settings file's object, ""); ({}, "") when there is no file; ({}, the warning
    naming the file, what is wrong and what to do) when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, ""
    except (OSError, ValueError) as err:  # no permission, a folder, not UTF-8
        return {}, _damaged(path, f"cannot be read ({getattr(err, 'strerror', None) or err})")
    try:
        data = json.loads(text)
    except ValueError as err:  # JSONDecodeError: says the line and column
        return {}, _damaged(path, f"is not valid JSON ({err})")
    if not isinstance(data, dict):
        return {}, _damaged(path, f"holds {_json_kind(data)}, not a JSON object {{...}}")
    return data, ""


def _damaged(path: Path, what: str) -> str:
    """The one message for a settings file that cannot be read: on reading it and on
    refusing to replace it."""
    return (
        f"napari-tmunet: the settings file {path} {what}. The default settings are used, "
        "and nothing is saved to it (a model you make active or choose holds for this "
        "session only) until you fix it, or delete it to start from the defaults."
    )


def _bad_key(path: Path, key: str, value, expected: str) -> str:
    """The one message for a key of the settings file that holds what it should not."""
    must = f" (it must be {expected})" if expected else ""
    unsaved = ", and nothing is saved to it," if key in _FORMS else ""  # a key written
    return (
        f'napari-tmunet: "{key}" in the settings file {path} holds {_json_kind(value)}'
        f"{must}. Its default is used{unsaved} until you fix it, or remove it (or delete "
        "the file) to start from the default."
    )


def _json_kind(value) -> str:
    """What a JSON value is, in words: "a list", "the number 5", "null"."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _tell_once(message: str) -> None:
    """Log ``message`` as a warning, once per session (the file is read at every image)."""
    if message not in _told:
        _told.add(message)
        log.warning(message)


@contextlib.contextmanager
def _settings_lock(folder: Path) -> Iterator[None]:
    """Hold the settings folder's lock (:func:`storage.folder_lock`), waiting up to
    :data:`LOCK_WAIT_S` for another process's save to end.

    Raises:
        FolderBusyError: still held after that; OSError: the folder cannot be made.
    """
    from .storage import FolderBusyError, folder_lock

    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_S
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(folder_lock(folder, "saving napari-tmunet settings"))
                break
            except FolderBusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
