"""How long the Fine-tune dock holds napari's GUI thread when a dataset Folder is chosen
and when Start is clicked with it (not a test).

Opens a real viewer and Fine-tune dock, chooses ``--folder`` (CVC-ClinicDB: 550 pairs) as
its Folder ``--repeat`` times and reports, for each choice, how long the assignment itself
took and the longest stall of the GUI thread (the largest gap of a 5 ms timer) until the
dock has read the folder (its note and modality known). ``--cold`` first drops the
folder's files from the page cache (``posix_fadvise`` DONTNEED), as on a first choice or a
network drive. ``--start`` also clicks Start once (the real engine, CPU), stops the run at
once, and reports the longest stall from the click until the run's worker is started.

    xvfb-run -a python bench/folder_choice_block.py [--folder DIR] [--repeat 3] [--cold] [--start]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "CVC-ClinicDB"


def drop_from_cache(folder: Path) -> int:
    """Ask the kernel to drop ``folder``'s files from the page cache; how many files."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            count += 1
    return count


class Heartbeat:
    """A 5 ms Qt timer whose largest gap between ticks is the GUI thread's longest stall."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.longest = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last, self.longest = time.perf_counter(), 0.0
        self.timer.start()

    def stop(self) -> float:
        """Stop; the longest gap, the one still open included."""
        self._tick()
        self.timer.stop()
        return self.longest


def pump(app, until, timeout=120.0) -> None:
    """Process Qt events until ``until()`` or ``timeout`` seconds."""
    start = time.perf_counter()
    while not until() and time.perf_counter() - start < timeout:
        app.processEvents()
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the files from the cache")
    parser.add_argument("--start", action="store_true", help="also click Start once")
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_TMUNET_CONFIG_DIR", tempfile.mkdtemp())

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    _, tune = viewer.window.add_plugin_dock_widget("napari-tmunet", "Fine-tune")
    tune = getattr(tune, "__wrapped__", tune)
    for row in list(tune.rows):
        tune.remove_pair(row)

    def read() -> bool:  # the folder's state is known (the dock before the fix: at once)
        return not getattr(tune, "reading_folder", False)

    beat = Heartbeat()
    for run in range(args.repeat):
        tune.dataset_folder.value = None
        if args.cold:
            drop_from_cache(args.folder)
        beat.start()
        began = time.perf_counter()
        tune.dataset_folder.value = args.folder
        call = time.perf_counter() - began
        pump(app, read)
        done = time.perf_counter() - began
        stall = beat.stop()
        print(
            f"choice {run}{' (cold cache)' if args.cold else ''}: the assignment took "
            f"{call * 1000:.0f} ms, the folder was read after {done * 1000:.0f} ms, the "
            f"GUI thread's longest stall {stall * 1000:.0f} ms; {tune.active_label.value!r}",
            flush=True,
        )
    if args.start:
        tune.steps.value, tune.device.value = 1, "cpu"
        tune.run_folder.value = Path(tempfile.mkdtemp()) / "run"
        if args.cold:
            drop_from_cache(args.folder)
        beat.start()
        began = time.perf_counter()
        tune.start_button.native.click()
        call = time.perf_counter() - began
        pump(app, lambda: tune.worker is not None or not tune.running)
        stall = beat.stop()
        print(
            f"Start: the click took {call * 1000:.0f} ms, the run's worker started after "
            f"{(time.perf_counter() - began) * 1000:.0f} ms, the GUI thread's longest stall "
            f"{stall * 1000:.0f} ms",
            flush=True,
        )
        tune.stop()
        pump(app, lambda: not tune.running, timeout=600)
    viewer.close()


if __name__ == "__main__":
    main()
