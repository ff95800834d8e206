"""Atomic file writes (what the user made is never left half-written), JSON helpers and
folder locks. Light on purpose (standard library only): supervisors and report tools
import it without torch."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class NotWritableError(OSError):
    """A file or folder that cannot be created where asked (a read-only folder or file
    system, no permission, a file in the way); the message names what the user asked to
    write, never a temporary file. ``errno`` is the operating system's; ``reason`` says
    what is wrong with the folder, in words."""

    def __init__(self, message: str, code: int | None, reason: str):
        super().__init__(message)
        self.errno, self.reason = code, reason


def _reason(folder: Path, err: OSError) -> str:
    """Why nothing can be created in ``folder``, in words (from ``err``'s errno)."""
    code = err.errno
    if code == errno.EROFS:
        return f"{folder} is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"{folder} is not writable (permission denied)"
    if code in (errno.EEXIST, errno.ENOTDIR):
        in_the_way = next((p for p in (folder, *folder.parents) if p.exists()), folder)
        return f"{in_the_way} is a file, not a folder"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device of {folder}"
    return f"{folder} cannot be written ({err.strerror or err})"


def _new_temporary(path: Path, folder_only: bool = False) -> str:
    """Make ``path``'s folder if missing and an empty hidden temporary file in it.

    Raises:
        NotWritableError: naming ``path`` (or, with ``folder_only``, its folder).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # mkstemp's names the temporary file: name the folder instead
        folder = Path(err.filename) if isinstance(err.filename, str) else path.parent
        folder = path.parent if folder.name.startswith(f".{path.name}.") else folder
        reason = _reason(folder, err)
        asked = f"in {path.parent}" if folder_only else str(path)
        todo = "choose another folder"
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            todo = "free some space or " + todo
        message = f"cannot write {asked}: {reason}; {todo}"
        raise NotWritableError(message, err.errno, reason) from None
    os.close(handle)
    return tmp


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Make ``folder`` if missing and check that files can be created in it, before long
    work whose results go there.

    Raises:
        NotWritableError: naming the folder and why (read-only, permission denied, ...).
    """
    folder = Path(folder)
    os.unlink(_new_temporary(folder / "write-test", folder_only=True))
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    On any error the temporary file is removed and an existing ``path`` stays as it was.
    The new file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    Raises:
        NotWritableError: the folder cannot take the file (read-only, permission denied,
            a file in the way), naming ``path``; nothing is written.
    """
    path = Path(path)
    tmp = _new_temporary(path)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def jsonable(value):
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    import math

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON, atomically (see :func:`atomic_path`)."""
    import json

    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(jsonable(data), indent=2) + "\n", encoding="utf-8")
    return path


def write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> Path:
    """Write ``rows`` as CSV (a header, then one line per row; missing keys empty) in one
    step: a write that fails (a full disk) leaves an earlier file as it was."""
    import csv

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The records of an append-only JSON-lines file in order; [] when there is none.

    A last line cut short (a crash, or a writer still at work) is left out with a
    warning; a bad line before it means a damaged file (ValueError naming it).
    """
    import json
    import logging

    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                logging.getLogger(__name__).warning("%s: ignoring a cut-off last line", path)
                break
            raise ValueError(f"{path}, line {n}: not JSON; the file is damaged") from None
    return records


class FolderBusyError(RuntimeError):
    """Another process holds a folder's lock; the message names it."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` while the block runs.

    The lock is ``folder/.napari-tmunet.lock``, locked with ``fcntl.flock`` (``msvcrt``
    on Windows) and holding the owner's PID, host and task, so that a second process is
    refused with a message naming the first. The operating system drops the lock when
    its process dies, so a killed run never leaves a folder locked; the file is removed
    on a clean exit.

    Args:
        folder: an existing folder.
        what: the task, in words (e.g. "napari-tmunet-predict"), shown to the other process.

    Raises:
        FolderBusyError: the folder is locked by another process (or another lock here).
    """
    import socket
    import time

    path = Path(folder) / ".napari-tmunet.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            for _ in range(50):  # the holder writes its name just after locking
                owner = _read_owner(fd)
                if owner:
                    break
                time.sleep(0.02)
            os.close(fd)
            raise FolderBusyError(
                f"{folder} is in use by {owner or 'another process'}; wait for it to finish "
                f"or choose another folder (lock file {path})"
            )
        try:  # the holder before us may have removed the file after we opened it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    owner = f"{what} (PID {os.getpid()} on {socket.gethostname()}, started {started})"
    os.ftruncate(fd, 0)
    os.write(fd, owner.encode())
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before unlocking: a waiting process then retries afresh
        os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_owner(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except (OSError, AttributeError):  # no pread on Windows
        return ""
