"""How long the TM-UNet reader takes to open a folder of N picture + mask pairs (not a test).

Builds, in a temporary folder, N pairs of real CVC-ClinicDB frames (384 x 288 RGB PNG)
and their masks (8-bit TIFF), copied byte for byte (repeated when N > 550), laid out as

* ``paired``: one folder, ``K.png`` beside ``K_mask.tif`` (``read_paired_folder``);
* ``dataset``: ``images/K.png`` + ``masks/K.tif`` (``read_dataset``);

and times, for each N and layout, what napari runs when the folder is opened with this
plugin: ``napari_get_reader(folder)`` then the reader function it returns ("reader", in
this process, no viewer), and ``viewer.open(folder, plugin="napari-tmunet")`` in a real
shown napari viewer (under Xvfb) until its events are processed ("viewer": also napari
adding the layers). ``--profile`` prints cProfile's top functions of one reader call.

Each checkout of ``--code`` (default: this one) is measured in turn in a child process
importing its ``napari_tmunet`` (e.g. ``--code /work/main .``: the code before a change
and after, side by side from one run on one machine). Times are wall seconds and, for
the viewer, this process's CPU seconds too (less changed by other jobs on the machine)::

    xvfb-run -a python bench/folder_open_speed.py [--n 100 200] [--code DIR ...]
        [--layouts paired dataset] [--no-viewer] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TMUNET_DATASETS", HERE.parent / "shared" / "datasets"))
CVC = DATASETS / "CVC-ClinicDB"


def build_folder(root: Path, n: int, layout: str) -> Path:
    """``root/<layout>_<n>``: ``n`` CVC-ClinicDB pairs copied in ``layout``; its path."""
    names = sorted((CVC / "images").glob("*.png"), key=lambda p: int(p.stem))
    folder = root / f"{layout}_{n}"
    if layout == "dataset":
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
    else:
        folder.mkdir(parents=True)
    for k in range(n):
        image = names[k % len(names)]
        mask = CVC / "masks" / f"{image.stem}.tif"
        if layout == "dataset":
            shutil.copyfile(image, folder / "images" / f"{k + 1}.png")
            shutil.copyfile(mask, folder / "masks" / f"{k + 1}.tif")
        else:
            shutil.copyfile(image, folder / f"{k + 1}.png")
            shutil.copyfile(mask, folder / f"{k + 1}_mask.tif")
    return folder


def time_reader(folder: Path, repeat: int) -> dict:
    """Best-of-``repeat`` seconds of napari_get_reader + the reader call; layers made."""
    from napari_tmunet._reader import napari_get_reader

    best, layers = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        reader = napari_get_reader(str(folder))
        layers = reader(str(folder))
        best = min(best, time.perf_counter() - start)
    return {"reader_s": round(best, 2), "layers": len([x for x in layers if len(x) == 3])}


def time_viewer(folder: Path) -> dict:
    """Seconds of ``viewer.open(folder, plugin="napari-tmunet")`` in a shown viewer, until
    the events it queued are processed; layers in the viewer."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    app.processEvents()
    start, cpu = time.perf_counter(), time.process_time()
    viewer.open(str(folder), plugin="napari-tmunet")
    app.processEvents()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    count = len(viewer.layers)
    viewer.close()
    app.processEvents()
    return {"viewer_s": round(seconds, 2), "viewer_cpu_s": round(cpu, 2), "viewer_layers": count}


def profile_reader(folder: Path, top: int) -> None:
    """Print cProfile's ``top`` functions (cumulative) of one reader call on ``folder``."""
    import cProfile
    import pstats

    from napari_tmunet._reader import napari_get_reader

    profiler = cProfile.Profile()
    profiler.enable()
    napari_get_reader(str(folder))(str(folder))
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(top)


def measure(args: argparse.Namespace) -> list[dict]:
    """The rows of this process's ``napari_tmunet``, one per layout and N."""
    import napari_tmunet

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_viewer:  # napari's one-time costs (imports, shaders) out of the rows
            time_viewer(build_folder(Path(tmp), 1, "warm"))
        for layout in args.layouts:
            for n in args.n:
                folder = build_folder(Path(tmp), n, layout)
                row = {"code": str(Path(napari_tmunet.__file__).parents[1]), "layout": layout}
                row |= {"n": n, **time_reader(folder, args.repeat)}
                if not args.no_viewer:
                    row |= time_viewer(folder)
                rows.append(row)
                if args.profile:
                    print(f"--- profile: {layout}, N={n}, {row['code']}", flush=True)
                    profile_reader(folder, args.top)
    return rows


def run_child(code: Path, argv: list[str], script: str = __file__) -> list[dict]:
    """The rows measured by a child process running ``script`` (this one by default) with
    ``argv`` and ``--json``, importing ``napari_tmunet`` from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, script, *argv, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    *printed, last = out.strip().splitlines()
    print("\n".join(printed))  # --profile's tables
    return json.loads(last)


def without_code(argv: list[str], codes: list[Path]) -> list[str]:
    """``argv`` less its ``--code`` option and the ``codes`` after it (a child measures one)."""
    argv = list(argv)
    if "--code" in argv:
        at = argv.index("--code")
        del argv[at : at + 1 + len(codes)]
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--layouts", nargs="+", default=["paired", "dataset"])
    parser.add_argument("--repeat", type=int, default=1, help="reader calls; best is kept")
    parser.add_argument("--no-viewer", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--code", type=Path, nargs="+", default=[HERE], help="checkouts to measure, in turn"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not CVC.is_dir():
        sys.exit(f"{CVC}: CVC-ClinicDB not found (set TMUNET_DATASETS)")
    if args.json:  # a child of --compare: rows on the last line
        print(json.dumps(measure(args)))
        return
    argv = without_code(sys.argv[1:], args.code)
    rows = [row for code in args.code for row in run_child(code, argv)]
    print("code | layout | N pairs | layers | reader s | viewer.open s (CPU s)")
    for row in rows:
        print(
            f"{row['code']} | {row['layout']} | {row['n']} | {row['layers']} | "
            f"{row['reader_s']} | {row.get('viewer_s', '-')} ({row.get('viewer_cpu_s', '-')})"
        )


if __name__ == "__main__":
    main()
