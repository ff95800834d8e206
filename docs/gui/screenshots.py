"""Screenshots of the three docks in a 1366 x 768 napari window (docs/gui/*.png).

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" \
        python docs/gui/screenshots.py docs/gui

Opens the colonoscopy sample, the Segment, Fine-tune and Metrics docks, segments, then
saves the window with all docks and with each dock alone; prints the size hints.
"""

import os
import sys
import time

import napari
from qtpy.QtWidgets import QApplication


def settle(app, seconds: float) -> None:
    """Let Qt paint for ``seconds``."""
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def hints(widget) -> str:
    low, best = widget.minimumSizeHint(), widget.sizeHint()
    return f"minSizeHint {low.width()}x{low.height()} sizeHint {best.width()}x{best.height()}"


viewer = napari.Viewer(show=True)
win = viewer.window._qt_window
win.resize(1366, 768)
viewer.open_sample("napari-tmunet", "colonoscopy")
docks = {}
for name in ("Segment", "Fine-tune", "Metrics"):
    docks[name] = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name=name
    )
    print(name, "dock", hints(docks[name][1].native))
app = QApplication.instance()
seg = docks["Segment"][1]
seg.segment()
t0 = time.time()
while (seg.running or seg.last_layer is None) and time.time() - t0 < 120:
    settle(app, 0.05)  # the output layer is added once the run has ended
settle(app, 0.3)
docks["Metrics"][1].compute()  # the sample's mask is the reference
settle(app, 0.4)
print("window", hints(win), "size", win.width(), win.height())
out = sys.argv[1]
win.grab().save(os.path.join(out, "all-docks-1366x768.png"))
for name in docks:  # each dock alone
    for other, (dock, _) in docks.items():
        dock.setVisible(other == name)
    settle(app, 0.2)
    win.grab().save(os.path.join(out, f"{name.lower()}-1366x768.png"))
print(seg.summary.value, "|", seg.model_reason.value)
viewer.close()
