"""``napari-tmunet``: open napari with the Segment and Metrics docks and a sample image.

Interactive (the README's main command)::

    napari-tmunet [--sample colonoscopy|nuclei|ultrasound]

opens napari ready to click Segment. Non-interactive check (CI)::

    napari-tmunet --smoke [--screenshot docs/screenshot.png]

opens napari under Xvfb (started through ``xvfb-run`` when there is no display), segments
the sample through the Segment widget's worker thread, checks the Labels layer (shape,
Dice against the sample's mask, label colours drawn on the canvas where the labels are),
saves a screenshot of the window and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PLUGIN = "napari-tmunet"
SAMPLES = ("colonoscopy", "nuclei", "ultrasound")
_UNDER_XVFB_ENV = "NAPARI_TMUNET_UNDER_XVFB"
# The rendered labels must cover the predicted foreground; a few pixels of difference at
# the borders come from the canvas's interpolation.
MIN_COLOURED_FRACTION = 0.9


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-tmunet",
        description="Open napari with the TM-UNet Segment and Metrics docks and a sample image. "
        "Research use only, not a medical device.",
    )
    parser.add_argument(
        "--sample", choices=SAMPLES, default="colonoscopy", help="sample image to open"
    )
    parser.add_argument(
        "--model", default=None, help="a shipped model's name or a checkpoint file to select"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="non-interactive: segment the sample, check the result, save a screenshot, exit",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=Path("docs/screenshot.png"),
        help="where --smoke saves the window screenshot (default: docs/screenshot.png)",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="with --smoke, also save the canvas at the image's pixel grid (export_figure)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="with --smoke, write the checks as JSON here"
    )
    parser.add_argument(
        "--min-dice",
        type=float,
        default=0.0,
        help="with --smoke, fail when Dice against the sample's mask is lower",
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="with --smoke, seconds to wait for Segment"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.smoke and not _has_display():
        return _rerun_under_xvfb(argv)
    if args.smoke:
        os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    elif not _has_display():
        print(
            "napari-tmunet: no display found (DISPLAY/WAYLAND_DISPLAY unset). Run it on a "
            "desktop, or use --smoke for the non-interactive check under Xvfb.",
            file=sys.stderr,
        )
        return 2
    try:
        return _smoke(args) if args.smoke else _interactive(args)
    except Exception as err:  # the smoke check's contract: any failure -> non-zero exit
        if not args.smoke:
            raise
        if not isinstance(err, RuntimeError):  # the checks' own failures need no traceback
            import traceback

            traceback.print_exc()
        print(f"SMOKE FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def open_viewer(args: argparse.Namespace, show: bool = True):
    """A napari viewer with the sample and the plugin's docks; returns (viewer, segment)."""
    import napari

    from .registry import resolve_model

    viewer = napari.Viewer(title="napari-tmunet", show=show)
    viewer.window.resize(1500, 950)
    viewer.open_sample(PLUGIN, args.sample)
    try:
        viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Metrics")
    except Exception as err:  # the Metrics dock is optional for segmenting
        print(f"napari-tmunet: the Metrics dock is not available: {err}", file=sys.stderr)
    # Tabbed with Metrics; the tab added last is the one in front.
    _, segment = viewer.window.add_plugin_dock_widget(
        plugin_name=PLUGIN, widget_name="Segment", tabify=True
    )
    image = next(layer for layer in viewer.layers if layer.__class__.__name__ == "Image")
    segment.image.value = image
    segment.device.value = args.device
    if args.model is not None:
        from ._segment_widget import CHECKPOINT_CHOICE

        name, path, _ = resolve_model(args.model)
        if name == str(args.model) or any(name == v for v in segment.model.choices):
            segment.model.value = name
        else:
            segment.model.value = CHECKPOINT_CHOICE
            segment.checkpoint.value = path
    viewer.layers.selection.active = image
    return viewer, segment


def _interactive(args: argparse.Namespace) -> int:
    import napari

    viewer, _ = open_viewer(args)
    viewer.status = "Click Segment in the right-hand dock (research use only)."
    napari.run()
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from qtpy.QtCore import QEventLoop, QTimer

    from ._sample_data import load_sample
    from .metrics import dice_score
    from .registry import available_models

    if args.model is None and not available_models():
        raise RuntimeError(
            "no shipped model is installed (napari_tmunet/weights/); pass --model PATH to a "
            "checkpoint made by napari-tmunet-train"
        )
    t0 = time.perf_counter()
    viewer, segment = open_viewer(args)
    reference = next(
        layer for layer in viewer.layers if layer.__class__.__name__ == "Labels"
    )  # the sample's mask
    reference.visible = False
    image = segment.image.value
    print(f"opened napari with {image.name!r} {image.data.shape}; model {segment.model.value!r}")

    ticks = [0]
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    timer.start(20)
    t_seg = time.perf_counter()
    segment.segment()
    if segment.running:
        loop = QEventLoop()
        segment.worker.finished.connect(loop.quit)
        QTimer.singleShot(int(args.timeout * 1000), loop.quit)
        loop.exec_()
    seconds = time.perf_counter() - t_seg
    timer.stop()
    if segment.running:
        segment.cancel()
        raise RuntimeError(f"Segment did not finish within {args.timeout:.0f} s")
    labels_layer = segment.last_layer
    if labels_layer is None:
        raise RuntimeError(f"Segment made no Labels layer (status: {segment.status.value!r})")

    _, mask = load_sample(args.sample)
    labels = np.asarray(labels_layer.data)
    spatial = image.data.shape[:-1] if image.rgb else image.data.shape
    checks: dict = {
        "sample": args.sample,
        "model": str(labels_layer.metadata.get("model")),
        "labels_shape": list(labels.shape),
        "image_shape": list(spatial),
        "foreground_pixels": int((labels > 0).sum()),
        "segment_seconds": round(seconds, 2),
        "event_loop_ticks": ticks[0],
    }
    if labels.shape != tuple(spatial):
        raise RuntimeError(f"labels of shape {labels.shape}, expected {tuple(spatial)}")
    if checks["foreground_pixels"] == 0:
        raise RuntimeError("the Labels layer is empty")
    checks["dice"] = round(dice_score(labels > 0, mask > 0), 4)
    print(f"Dice against the sample's mask: {checks['dice']:.3f}")

    # What the canvas shows: label colour must be drawn where the labels are.
    viewer.reset_view()
    figure = viewer.export_figure()
    labels_layer.visible = False
    bare = viewer.export_figure()
    labels_layer.visible = True
    if figure.shape != bare.shape or figure.shape[:2] != labels.shape:
        raise RuntimeError(
            f"exported figure of shape {figure.shape} does not match the image {labels.shape}"
        )
    coloured = np.abs(figure[..., :3].astype(int) - bare[..., :3].astype(int)).sum(-1) > 12
    predicted = labels > 0
    checks["coloured_at_labels"] = round(float(coloured[predicted].mean()), 4)
    checks["labels_at_coloured"] = round(float(predicted[coloured].mean()), 4)
    checks["coloured_at_reference_mask"] = round(float(coloured[mask > 0].mean()), 4)
    print(
        "canvas: label colour at {coloured_at_labels:.1%} of the labels' pixels, "
        "{coloured_at_reference_mask:.1%} of the reference mask".format(**checks)
    )
    if args.figure is not None:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        viewer.export_figure(str(args.figure))

    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = viewer.screenshot(str(args.screenshot), canvas_only=False)
    checks["screenshot"] = str(args.screenshot)
    checks["screenshot_shape"] = list(shot.shape)
    checks["seconds"] = round(time.perf_counter() - t0, 2)
    failures = []
    if checks["coloured_at_labels"] < MIN_COLOURED_FRACTION:
        failures.append(
            f"label colour drawn at only {checks['coloured_at_labels']:.1%} of the labels"
        )
    if checks["dice"] < args.min_dice:
        failures.append(f"Dice {checks['dice']:.3f} below --min-dice {args.min_dice}")
    if ticks[0] == 0 and seconds > 0.5:
        failures.append("the Qt event loop did not run while Segment worked")
    checks["failures"] = failures
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(checks, indent=2))
    print(json.dumps(checks))
    viewer.close()
    if failures:
        print("SMOKE FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"smoke OK: screenshot saved to {args.screenshot}")
    return 0


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _rerun_under_xvfb(argv: list[str]) -> int:
    """Run this command again inside ``xvfb-run`` (the smoke check needs an X server)."""
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or os.environ.get(_UNDER_XVFB_ENV):
        print(
            "napari-tmunet --smoke needs an X server: install Xvfb (apt-get install xvfb) or "
            "run it under xvfb-run.",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", **{_UNDER_XVFB_ENV: "1"})
    command = [
        xvfb_run,
        "--auto-servernum",
        "--server-args=-screen 0 1600x1000x24",
        sys.executable,
        "-m",
        "napari_tmunet",
        *argv,
    ]
    return subprocess.call(command, env=env)
