"""The GUI tests again under PyQt6, when it is installed (``pip install -e '.[pyqt6]'``).

PyQt5 is the default binding (the ``napari`` extra) and the rest of the suite runs on it;
napari 0.9 recommends Qt6, so the same GUI tests (marker ``gui``) run here in a second
pytest process with ``QT_API=pyqt6``. Skipped when PyQt6 is not installed (CI's default).
Run them alone with::

    QT_API=pyqt6 PYTEST_QT_API=pyqt6 python -m pytest -m gui
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from _paths import REPO

pytestmark = [pytest.mark.pyqt6, pytest.mark.slow]


def test_gui_tests_pass_under_pyqt6():
    if importlib.util.find_spec("PyQt6") is None:
        pytest.skip("PyQt6 is not installed (pip install -e '.[pyqt6]' to run this)")
    if os.environ.get("QT_API", "").lower() == "pyqt6":
        pytest.skip("this session already runs under PyQt6")
    env = {**os.environ, "QT_API": "pyqt6", "PYTEST_QT_API": "pyqt6"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "gui"]
    done = subprocess.run(
        [*command, "tests"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )
    report = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "PyQt6" in done.stdout[:3000], report  # pytest-qt's header names the binding
