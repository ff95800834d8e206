"""Cancel latency of the Segment dock in tile mode on a 4000 x 3000 frame (not a test).

Opens a real viewer and Segment dock, segments the bundled colonoscopy sample enlarged to
4000 x 3000 in tile mode, clicks Cancel after ``--after`` progress steps and reports how
long the dock took to say "cancelled" and how many forward passes started after the click.

    xvfb-run -a python bench/cancel_latency.py [--after 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def enlarged_sample(shape=(3000, 4000)) -> np.ndarray:
    """The bundled colonoscopy sample, repeated and cropped to ``shape`` (H, W)."""
    from napari_tmunet._sample_data import load_sample

    image, _ = load_sample("colonoscopy")
    reps = (-(-shape[0] // image.shape[0]), -(-shape[1] // image.shape[1]), 1)
    return np.tile(image, reps)[: shape[0], : shape[1]]


def pump(app, until, timeout=300.0):
    """Process Qt events until ``until()`` or ``timeout`` seconds."""
    start = time.perf_counter()
    while not until() and time.perf_counter() - start < timeout:
        app.processEvents()
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=int, default=8, help="progress steps before Cancel")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_tmunet import inference

    forwards: list[list[float]] = []  # [start, end] of each forward pass (end: if it ended)
    real_forward = inference.forward_logits

    def counted(model, x, amp=True):
        forwards.append([time.perf_counter()])
        out = real_forward(model, x, amp)
        forwards[-1].append(time.perf_counter())
        return out

    inference.forward_logits = counted
    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    _, widget = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    layer = viewer.add_image(enlarged_sample(), name="big", rgb=True)
    widget.image.value = layer
    widget.model.value = "TM-UNet colonoscopy"
    widget.mode.value = "tile"
    for run in range(args.repeat):
        widget.segment()
        pump(app, lambda: widget.progress_text.value.startswith(f"{args.after}/"))
        clicked = time.perf_counter()
        widget.cancel_button.clicked.emit()
        pump(app, lambda: not widget.running)
        latency = time.perf_counter() - clicked
        started = sum(f[0] > clicked for f in forwards)
        ended = sum(len(f) == 2 and f[1] > clicked for f in forwards)
        batch = np.median([f[1] - f[0] for f in forwards if len(f) == 2])
        print(
            f"run {run}: Cancel at {args.after} steps -> '{widget.status.value}' after "
            f"{latency:.2f} s; forward passes started after the click: {started}, "
            f"ended after it: {ended}; one forward pass (batch) takes {batch:.2f} s",
            flush=True,
        )
        forwards.clear()
    viewer.close()


if __name__ == "__main__":
    main()
