"""The interpreter's exit waits for the docks' workers where Qt's pool exists, and says
nothing where Qt has torn it down (fix-191 #1)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_exit_after_napari_app_without_event_loop_is_quiet():
    """napari's QApplication made, its event loop never run: at exit Qt's global thread
    pool is gone (``globalInstance()`` is None) and no "Exception ignored in atexit
    callback" is printed."""
    script = "import napari_tmunet._widget_common\nfrom napari.qt import get_qapp\nget_qapp()\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "waitForDone" not in done.stderr, done.stderr


def test_exit_still_waits_for_the_pools_threads():
    """With Qt's global pool present, the exit hook waits for a task still running in it."""
    from qtpy.QtCore import QRunnable, QThreadPool

    from napari_tmunet._widget_common import _wait_for_runs

    ended = threading.Event()

    class Slow(QRunnable):
        def run(self):
            time.sleep(0.5)
            ended.set()

    task = Slow()
    task.setAutoDelete(False)  # Python keeps it; Qt must not delete it under us
    QThreadPool.globalInstance().start(task)
    _wait_for_runs()
    assert ended.is_set()
