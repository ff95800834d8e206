"""How long the Segment dock holds napari's GUI thread with many pictures open (not a test).

For each code tree given (``--trees``: checkouts of napari-tmunet, e.g. main's and a
branch's; default this one) and each count of pictures (``--counts``), a child process
with that tree first on its path opens a real viewer with the Segment dock, opens that
many UDIAT pairs with the plugin's reader as dataset folders of 20 pairs (the reader opens
at most 25 of a folder; picture and mask each, a folder's first picture shown, the others
hidden), then:

- clicks Segment (on the picture shown) and times the click itself (the GUI thread is
  held until it returns), and the longest stall of the GUI thread (the largest gap of a
  5 ms Qt timer) from the click until the run's labels are added;
- selects ``--selections`` other pictures in the layer list in turn, as a user does, and
  times each selection, counting the ``visible`` events napari emitted (each one rebuilds
  napari's scene graph for all layers).

The trees run one after the other in fresh processes, so their numbers sit side by side:

    xvfb-run -a python bench/many_layers_gui.py --trees /work/main . [--counts 20 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
UDIAT = HERE.parent / "shared" / "datasets" / "UDIAT"


FOLDER_PAIRS = 20  # pairs a dataset folder holds (the tester's folders)


def make_folders(source: Path, dest: Path, count: int) -> list[Path]:
    """Dataset folders under ``dest`` of ``source``'s first ``count`` pairs (symlinks),
    :data:`FOLDER_PAIRS` each."""
    stems = sorted(path.stem for path in (source / "images").iterdir())[:count]
    folders = []
    for first in range(0, len(stems), FOLDER_PAIRS):
        folder = dest / f"part{len(folders) + 1}"
        for part in ("images", "masks"):
            (folder / part).mkdir(parents=True)
            for stem in stems[first : first + FOLDER_PAIRS]:
                (found,) = (source / part).glob(f"{stem}.*")
                (folder / part / found.name).symlink_to(found)
        folders.append(folder)
    return folders


def measure(folders: list[Path], selections: int) -> dict:
    """The child's work (see the module docstring); the numbers as a dict."""
    import napari
    from folder_choice_block import Heartbeat  # this script's folder is first on sys.path
    from qtpy.QtWidgets import QApplication

    import napari_tmunet

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    start = time.perf_counter()
    for folder in folders:
        viewer.open(str(folder), plugin="napari-tmunet")
    opened = time.perf_counter() - start
    settle(app, 1.0)

    visible_events = []
    for layer in viewer.layers:
        layer.events.visible.connect(lambda event: visible_events.append(event.source.name))
    pictures = [layer for layer in viewer.layers if type(layer).__name__ == "Image"]

    beat = Heartbeat()
    beat.start()
    start = time.perf_counter()
    dock.segment_button.native.click()
    click = time.perf_counter() - start
    click_events = len(visible_events)
    while dock.running or dock.status.value.startswith("checking "):
        app.processEvents()
        time.sleep(0.005)
    run_stall = beat.stop()
    settle(app, 0.5)

    times, counts = [], []
    step = max(1, len(pictures) // (selections + 1))
    for picture in pictures[step::step][:selections]:
        visible_events.clear()
        start = time.perf_counter()
        viewer.layers.selection.active = picture  # as a click in the layer list does
        times.append(time.perf_counter() - start)
        counts.append(len(visible_events))
        settle(app, 0.3)
    viewer.close()
    return {
        "code": str(Path(napari_tmunet.__file__).parents[1]),
        "pictures": len(pictures),
        "layers": len(viewer.layers),
        "open_s": round(opened, 1),
        "click_s": round(click, 3),
        "click_visible_events": click_events,
        "run_stall_s": round(run_stall, 3),
        "select_s": [round(t, 3) for t in times],
        "select_visible_events": counts,
    }


def settle(app, seconds: float) -> None:
    """Turn the event loop for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)


def run_child(tree: Path, folders: list[Path], selections: int) -> dict:
    """:func:`measure` in a fresh process that imports napari_tmunet from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory() as home:  # no settings of an earlier session
        env["NAPARI_TMUNET_CONFIG_DIR"] = env["NAPARI_TMUNET_DATA_DIR"] = home
        command = [
            sys.executable,
            __file__,
            "--child",
            *map(str, folders),
            "--selections",
            str(selections),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{tree}: the child failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def commit_of(tree: Path) -> str:
    """``tree``'s branch and commit, e.g. "main fe1f224"."""
    names = []
    for ask in (["--abbrev-ref", "HEAD"], ["--short", "HEAD"]):
        done = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", *ask], capture_output=True, text=True
        )
        names.append(done.stdout.strip() or "?")
    return " ".join(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[HERE])
    parser.add_argument("--counts", nargs="+", type=int, default=[20, 40])
    parser.add_argument("--selections", type=int, default=3)
    parser.add_argument("--source", type=Path, default=UDIAT, help="a dataset folder")
    parser.add_argument("--child", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.selections)), flush=True)
        return
    if not (args.source / "images").is_dir():
        raise SystemExit(f"no dataset folder at {args.source} (give --source DIR)")
    print(
        "| pictures | code | Segment click | GUI stall in the run | selection "
        "(each) | visible events per selection |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:
            folders = make_folders(args.source, Path(tmp) / f"n{count}", count)
            for tree in args.trees:
                row = run_child(tree.resolve(), folders, args.selections)
                selected = " / ".join(f"{t:.2f}" for t in row["select_s"])
                print(
                    f"| {row['pictures']} | {commit_of(tree)} | {row['click_s']:.2f} s "
                    f"({row['click_visible_events']} visible events) | {row['run_stall_s']:.2f} s "
                    f"| {selected} s (median {statistics.median(row['select_s']):.2f}) "
                    f"| {row['select_visible_events']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
