"""Where the time goes when a folder of 30 picture + mask pairs is opened (not a test).

Builds, in a temporary folder, 30 pairs (``--n``) of real CVC-ClinicDB frames (384 x 288
RGB PNG) with their masks (8-bit TIFF), copied byte for byte, in the two layouts the
TM-UNet reader opens pair by pair (``folder_open_speed.build_folder``): ``paired``
(``K.png`` beside ``K_mask.tif``) and ``dataset`` (``images/K.png`` + ``masks/K.tif``).
Of 30 pairs the reader opens the first 25 (``_reader.MAX_FOLDER_PAIRS``: 50 layers).
For each layout it times, in this order:

* ``reader``: ``napari_get_reader(folder)`` and the reader function it returns (the layer
  data, no viewer), wall and CPU seconds, best of ``--repeat``, each on a new copy of the
  folder (nothing of it read before: no header kept); ``opens``: the files of the folder
  opened (the ``open`` audit event) by one such call, per file of the pairs opened;
* ``launcher``: the launcher's work on ``napari-tmunet FOLDER`` before its window (the
  argument checks, ``launch._paths_problem``) and the reading ``_open_path`` has napari
  do (``_tmunet_reads``, then the reader), no viewer, the same way;
* ``file_open``: ``viewer.open(folder, plugin="napari-tmunet")`` (File > Open with the
  TM-UNet reader) in a shown viewer (under Xvfb) until its events are processed, wall
  and CPU seconds, and of that CPU the reader's own (the rest is napari adding layers);
* ``launch_open``: ``launch._open_paths(viewer, [folder])`` (what ``napari-tmunet
  FOLDER`` runs to open it) in a new shown viewer, the same way; each viewer opens a new
  copy of the folder.

``--profile`` prints cProfile's top functions of one ``viewer.open`` and its time split
by who runs it: this plugin's code, napari's, vispy's, Qt's and the rest.

Each checkout of ``--code`` (default: this one) is measured in turn in a child process
importing its ``napari_tmunet`` (``--code /work/main .``: before and after a change, side
by side from one run on one machine)::

    xvfb-run -a python bench/open_folder.py [--n 30] [--code DIR ...] [--repeat 3]
        [--layouts paired dataset] [--no-viewer] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from folder_open_speed import (  # noqa: E402  (a sibling script)
    CVC,
    build_folder,
    run_child,
    without_code,
)

HERE = Path(__file__).resolve().parents[1]

_OPENED: collections.Counter = collections.Counter()  # file name -> opens, while counting
_COUNTING: list[Path] = []  # the folder whose files are counted, or empty


def _count_opens(event: str, args: tuple) -> None:
    """Audit hook: count ``open`` of files under the folder being counted."""
    if event == "open" and _COUNTING and isinstance(args[0], str):
        if args[0].startswith(str(_COUNTING[0])):
            _OPENED[args[0]] += 1


def time_reader(fresh, repeat: int) -> dict:
    """Best-of-``repeat`` wall and CPU seconds of napari_get_reader + the reader call, each
    on a new copy of the folder (``fresh()``: nothing of it read before, as when a user
    opens it); layers made; file opens of one call per file of the pairs opened."""
    from napari_tmunet._reader import napari_get_reader

    best, cpu, layers = float("inf"), float("inf"), []
    for _ in range(repeat):
        folder = fresh()
        start, cpu_start = time.perf_counter(), time.process_time()
        layers = napari_get_reader(str(folder))(str(folder))
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu_start)
    folder = fresh()
    _OPENED.clear()
    _COUNTING.append(folder)
    napari_get_reader(str(folder))(str(folder))
    _COUNTING.clear()
    made = [layer for layer in layers if len(layer) == 3]
    return {
        "reader_s": round(best, 3),
        "reader_cpu_s": round(cpu, 3),
        "layers": len(made),
        "opens_per_file": round(sum(_OPENED.values()) / max(1, len(made)), 1),
        "files_opened": len(_OPENED),
    }


def time_launcher(fresh, repeat: int) -> dict:
    """Best-of-``repeat`` wall and CPU seconds of the launcher's checks of ``napari-tmunet
    FOLDER`` and the reading it has napari do, without a window, each on a new copy."""
    from napari_tmunet import launch
    from napari_tmunet._reader import napari_get_reader

    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        folder = fresh()
        start, cpu_start = time.perf_counter(), time.process_time()
        args = launch.build_parser().parse_args([str(folder)])
        problem = launch._paths_problem(args)
        assert problem is None, problem
        assert launch._tmunet_reads(str(folder))
        napari_get_reader(str(folder))(str(folder))
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return {"launcher_s": round(best, 3), "launcher_cpu_s": round(cpu, 3)}


@contextlib.contextmanager
def reader_cpu():
    """Within the block, the CPU seconds of the reader functions (``seconds[0]``)."""
    import napari_tmunet._reader as reader

    seconds = [0.0]
    names = ("read_paired_folder", "read_dataset", "read_folder", "read_from")
    saved = {name: getattr(reader, name) for name in names}

    def timed(function):
        def run(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[0] += time.process_time() - start

        return run

    for name, function in saved.items():
        setattr(reader, name, timed(function))
    try:
        yield seconds
    finally:
        for name, function in saved.items():
            setattr(reader, name, function)


def time_viewer(folder: Path, how: str, profile: int = 0) -> dict:
    """Seconds (wall, CPU) of opening ``folder`` in a new shown viewer, ``how``:
    "file_open" (``viewer.open`` with the plugin) or "launch_open" (the launcher's
    ``_open_paths``), until its queued events are processed; of the CPU, the reader's."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_tmunet import launch

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    app.processEvents()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with reader_cpu() as read:
        start, cpu = time.perf_counter(), time.process_time()
        if how == "file_open":
            viewer.open(str(folder), plugin="napari-tmunet")
        else:
            launch._open_paths(viewer, [str(folder)])
        app.processEvents()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        print_profile(profiler, profile)
    count = len(viewer.layers)
    viewer.close()
    app.processEvents()
    return {
        f"{how}_s": round(seconds, 2),
        f"{how}_cpu_s": round(cpu, 2),
        f"{how}_reader_cpu_s": round(read[0], 2),
        f"{how}_layers": count,
    }


def print_profile(profiler, top: int) -> None:
    """cProfile's ``top`` functions by cumulative time, then the own time (tottime) of
    all functions summed by package: who spends the seconds."""
    import pstats

    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(top)
    by_owner: collections.Counter = collections.Counter()
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():
        by_owner[_owner(filename)] += own
    total = sum(by_owner.values())
    print(
        "own time by package: "
        + ", ".join(
            f"{name} {seconds:.2f} s ({100 * seconds / total:.0f}%)"
            for name, seconds in by_owner.most_common()
        )
    )


def _owner(filename: str) -> str:
    """Who a profiled function's file belongs to."""
    for name in ("napari_tmunet", "napari", "vispy", "superqt", "numpy", "tifffile", "PIL"):
        if f"/{name}/" in filename:
            return name
    if filename.startswith("~") or filename == "<built-in>":
        return "builtins (C: Qt, OpenGL, decoders...)"
    return "other Python"


def measure(args: argparse.Namespace) -> list[dict]:
    """The rows of this process's ``napari_tmunet``, one per layout."""
    import napari_tmunet

    sys.addaudithook(_count_opens)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_viewer:  # napari's one-time costs (imports, shaders) out of the rows
            time_viewer(build_folder(Path(tmp), 1, "warm"), "file_open")
        copies = iter(range(1 << 20))
        for layout in args.layouts:

            def fresh(layout=layout):
                """A new copy of the folder, in a folder of its own."""
                root = Path(tmp) / f"copy{next(copies)}"
                root.mkdir()
                return build_folder(root, args.n, layout)

            row = {"code": str(Path(napari_tmunet.__file__).parents[1]), "layout": layout}
            row |= time_reader(fresh, args.repeat) | time_launcher(fresh, args.repeat)
            if not args.no_viewer:
                if args.profile:
                    print(f"--- profile: viewer.open, {layout}, {row['code']}", flush=True)
                row |= time_viewer(fresh(), "file_open", args.top if args.profile else 0)
                row |= time_viewer(fresh(), "launch_open")
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="pairs in the folder")
    parser.add_argument("--layouts", nargs="+", default=["paired", "dataset"])
    parser.add_argument("--repeat", type=int, default=3, help="reader calls; best is kept")
    parser.add_argument("--no-viewer", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--code", type=Path, nargs="+", default=[HERE], help="checkouts to measure, in turn"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not CVC.is_dir():
        sys.exit(f"{CVC}: CVC-ClinicDB not found (set TMUNET_DATASETS)")
    if args.json:  # a child: rows on the last line
        print(json.dumps(measure(args)))
        return
    argv = without_code(sys.argv[1:], args.code)
    rows = [row for code in args.code for row in run_child(code.resolve(), argv, __file__)]
    print(
        "code | layout | layers | reader s (CPU s) | opens/file | launcher s (CPU s) | "
        "File > Open s (CPU s; reader CPU s) | launcher open s (CPU s; reader CPU s)"
    )
    for row in rows:
        viewer = [
            f"{row.get(f'{how}_s', '-')} ({row.get(f'{how}_cpu_s', '-')}; "
            f"{row.get(f'{how}_reader_cpu_s', '-')})"
            for how in ("file_open", "launch_open")
        ]
        print(
            f"{row['code']} | {row['layout']} | {row['layers']} | {row['reader_s']} "
            f"({row['reader_cpu_s']}) | {row['opens_per_file']} | {row['launcher_s']} "
            f"({row['launcher_cpu_s']}) | {viewer[0]} | {viewer[1]}"
        )


if __name__ == "__main__":
    main()
