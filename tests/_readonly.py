"""A read-only view of a folder, for tests of writes that the file system refuses.

chmod does not stop root (the tests often run as root), so the view is a read-only bind
mount of the folder; where none can be made (not root, no ``mount``), the test is skipped.
"""

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def read_only_view(folder: Path) -> Iterator[Path]:
    """``folder`` mounted read-only at ``<folder>-ro`` while the block runs."""
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    root = getattr(os, "geteuid", lambda: -1)() == 0
    for args in (["--bind", folder, view], ["-o", "remount,ro,bind", view]):
        done = root and subprocess.run(["mount", *map(str, args)], capture_output=True)
        if not done or done.returncode != 0:
            if args[0] != "--bind":
                subprocess.run(["umount", str(view)], capture_output=True)
            pytest.skip("needs root to mount a read-only view of a folder")
    try:
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)  # lazy: tracebacks hold files
