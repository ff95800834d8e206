"""SIGTERM to this test process once a training run has written some period records, as
a user's `kill` reaches `napari-tmunet-train fit` run in-process (its handler sets the
stop event)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path


def period_records(run: Path) -> int:
    """How many period records the run folder's metrics.jsonl holds."""
    path = run / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


@contextlib.contextmanager
def sigterm_after_records(run: Path, count: int, timeout: float = 300):
    """Within the block, SIGTERM this process once ``run`` holds ``count`` records (or
    after ``timeout`` s). Once the block has ended no signal is sent: a run that ended
    by itself fails its test's exit-code check instead of killing pytest."""
    block_done = threading.Event()

    def send():
        deadline = time.time() + timeout
        while period_records(run) < count and time.time() < deadline:
            if block_done.wait(0.02):
                return
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=send)
    killer.start()
    try:
        yield
    finally:
        block_done.set()
        killer.join()
