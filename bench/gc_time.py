"""How long a pytest run spends in Python's garbage collector (a pytest plugin, not a test).

Times every collection through ``gc.callbacks`` and prints, at the end of the run, the
count and seconds of the full (generation 2) and the young collections, and how many
objects a full collection had to scan (tracked objects outside ``gc.freeze``'s frozen
set, at the last full collection). GC_TIME_TYPES=1 also prints the objects alive after
the first and last tests and the types that grew most between them. Run from the
repository root:

    PYTHONPATH=bench .venv/bin/python -m pytest -q -p no:cacheprovider -p gc_time \\
        --durations=0 tests/test_metrics_widget.py
"""

from __future__ import annotations

import collections
import gc
import os
import time

_started = {}
_totals = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}  # generation -> [count, seconds]
_scanned = [0]
_after_test = []  # (test id, tracked objects, counts by type or None) after each teardown


def _timer(phase: str, info: dict) -> None:
    """Adds the time of each collection to its generation's total."""
    if phase == "start":
        _started["t"] = time.perf_counter()
        if info["generation"] == 2:
            _scanned[0] = len(gc.get_objects())  # all tracked objects but the frozen ones
        return
    total = _totals[info["generation"]]
    total[0] += 1
    total[1] += time.perf_counter() - _started.pop("t", time.perf_counter())


def pytest_configure(config) -> None:
    gc.callbacks.append(_timer)


def _by_type() -> collections.Counter:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def pytest_runtest_logfinish(nodeid, location) -> None:
    """With GC_TIME_TYPES=1, counts the tracked objects (by type) left alive after each
    test: a full collection each, so not in a timed run."""
    if os.environ.get("GC_TIME_TYPES"):
        gc.collect()
        _after_test.append((nodeid, len(gc.get_objects()), _by_type()))


def pytest_terminal_summary(terminalreporter) -> None:
    write = terminalreporter.write_line
    for nodeid, count, _ in _after_test[:3] + _after_test[-3:]:
        write(f"alive after {nodeid}: {count}")
    if len(_after_test) > 1:
        grown = _after_test[-1][2] - _after_test[0][2]
        write(
            "grown most from the first test to the last: "
            + ", ".join(f"{name} +{n}" for name, n in grown.most_common(25))
        )
    for generation, (count, seconds) in sorted(_totals.items()):
        write(f"gc generation {generation}: {count} collections, {seconds:.2f} s")
    write(f"gc: last full collection scanned {_scanned[0]} objects; frozen {gc.get_freeze_count()}")
