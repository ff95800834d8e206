"""Screenshots of the three docks in a 1366 x 768 napari window (docs/gui/*.png).

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" python docs/gui/screenshots.py docs/gui

Opens the colonoscopy sample, the Segment, Fine-tune and Metrics docks, segments, then
saves the window with all docks and with each dock alone; prints the size hints.
"""

import os, sys, time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=True)
win = viewer.window._qt_window
win.resize(1366, 768)
viewer.open_sample("napari-tmunet", "colonoscopy")
docks = {}
for name in ("Segment", "Fine-tune", "Metrics"):
    dw, w = viewer.window.add_plugin_dock_widget(plugin_name="napari-tmunet", widget_name=name)
    docks[name] = (dw, w)
    print(name, "dock minSizeHint", w.native.minimumSizeHint().width(), w.native.minimumSizeHint().height(), "sizeHint", w.native.sizeHint().width(), w.native.sizeHint().height())
app = QApplication.instance()
seg = docks["Segment"][1]
seg.segment()
t0 = time.time()
while seg.running and time.time() - t0 < 120:
    app.processEvents(); time.sleep(0.05)
docks["Metrics"][1].compute()  # the sample's mask is the reference
for _ in range(20):
    app.processEvents(); time.sleep(0.02)
print("window minSizeHint", win.minimumSizeHint().width(), win.minimumSizeHint().height(), "size", win.width(), win.height())
out = sys.argv[1]
win.grab().save(os.path.join(out, "all-docks-1366x768.png"))
for name, (dw, w) in docks.items():
    for other, (odw, _) in docks.items():
        odw.setVisible(other == name)
    for _ in range(10):
        app.processEvents(); time.sleep(0.02)
    win.grab().save(os.path.join(out, f"{name.lower()}-1366x768.png"))
# tabbed view: each dock raised alone
print(seg.summary.value, "|", seg.model_reason.value)
viewer.close()
