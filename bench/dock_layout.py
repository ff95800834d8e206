"""The docks' places and sizes in a real window, as a user opens them (tester37 #7).

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" \
        python bench/dock_layout.py OUT_DIR

Starts as ``napari-tmunet --sample colonoscopy`` does (Segment and Metrics tabbed, the
window fitted to the screen), segments the sample and scores it, then opens and closes
docks from the Plugins menu; then a plain napari window whose docks are opened one by one
from the same menu, the window as large as the screen. For each state it prints each
dock's place (its tab group, height) and what is cut: a label or button narrower than
its size hint, a text shorter than its lines, a row clipped with no scroll bar to reach
it, a dock's key result (Segment's summary, Metrics' status and table, Fine-tune's Start
and progress) out of view; and saves a screenshot OUT_DIR/NN-STATE.png.
"""

from __future__ import annotations

import os
import sys
import time

from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import (
    QAbstractButton,
    QApplication,
    QDockWidget,
    QLabel,
)

OUT = sys.argv[1] if len(sys.argv) > 1 else "."
KEYS = {
    "Segment": ("summary", "segment_button"),
    "Metrics": ("status", "table"),
    "Fine-tune": ("start_button", "stop_button", "progress_bar"),
}


def settle(seconds: float = 2.0) -> None:
    app, end = QApplication.instance(), time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def menu_action(window, *path):
    menu = window.menuBar()
    for text in path:
        action = next(a for a in menu.actions() if a.text().replace("&", "") == text)
        menu = action.menu() or menu
    return action


def plugin_docks(window) -> dict:
    """{short name: (dock, widget)} of the plugin's docks open in ``window``."""
    found = {}
    for dock in window.findChildren(QDockWidget):
        inner = dock.widget()
        widget = getattr(inner, "_magic_widget", None)
        for name in KEYS:
            if dock.windowTitle().startswith(name + " ") and not dock.isHidden():
                found[name] = (dock, widget)
    return found


def _magic(window, viewer, name):
    for key, widget in viewer.window.dock_widgets.items():
        if key.startswith(name + " "):
            return getattr(widget, "__wrapped__", widget)
    return None


def cut_widgets(native) -> list[str]:
    """Labels, buttons and combo boxes in ``native`` shown narrower than their size hint
    (or a wrapped text shorter than its lines)."""
    out = []
    for widget in native.findChildren(QLabel) + native.findChildren(QAbstractButton):
        if not widget.isVisible() or widget.width() <= 0:
            continue
        if isinstance(widget, QLabel) and not widget.text():
            continue
        if isinstance(widget, QLabel) and widget.wordWrap():
            need, have = widget.heightForWidth(widget.width()), widget.height()
            if need > have + 1:
                out.append(f"text {widget.text()[:30]!r} {have}/{need} px tall")
            continue
        if isinstance(widget, QAbstractButton) and not widget.text():
            continue
        need = widget.sizeHint().width()
        if need > widget.width() + 1:
            text = widget.text()[:30]
            out.append(f"{type(widget).__name__} {text!r} {widget.width()}/{need} px wide")
    return out


def clipped_without_bar(body) -> list[str]:
    """Rows of a dock's scrolled body that its view cuts with no scroll bar shown, and a
    body wider than its view (it never scrolls sideways)."""
    area = body.scroll_area
    view = area.viewport()
    out = []
    if body.native.width() > view.width() + 1:
        out.append(f"body {body.native.width()} px wide in a {view.width()} px view")
    bar = area.verticalScrollBar()
    if not (bar.isVisible() and bar.maximum() > 0):
        top = body.native.mapTo(view, QPoint(0, 0)).y()
        if top + body.native.height() > view.height() + 1 or top < 0:
            out.append(f"body {body.native.height()} px in a {view.height()} px view, no bar")
    return out


def key_state(body, widget) -> str:
    """'shown', 'part' (cut by the view's edge), 'scroll' (out of view, a scroll bar to
    reach it) or 'LOST' (out of view, no bar), 'hidden' (not shown: empty)."""
    native = widget.native
    if not native.isVisibleTo(body.native):
        return "hidden"
    view = body.scroll_area.viewport()
    rect = QRect(native.mapTo(view, QPoint(0, 0)), native.size())
    if view.rect().contains(rect):
        return "shown"
    bar = body.scroll_area.verticalScrollBar()
    reachable = bar.isVisible() and bar.maximum() > 0
    if view.rect().intersects(rect):
        return "part" if reachable else "LOST(part)"
    return "scroll" if reachable else "LOST"


def report(state: str, index: int, viewer) -> None:
    window = viewer.window._qt_window
    settle()
    print(f"\n== {index:02d} {state}: window {window.width()}x{window.height()}", flush=True)
    for name, (dock, _) in sorted(plugin_docks(window).items()):
        widget = _magic(window, viewer, name)
        front = not dock.visibleRegion().isEmpty()
        tabs = sorted(d.windowTitle().split(" ")[0] for d in window.tabifiedDockWidgets(dock))
        line = f"  {name:9s} {'front' if front else 'behind'} h {dock.height():4d}"
        line += f" tabbed with {tabs}" if tabs else " alone"
        if widget is None or not front:
            print(line, flush=True)
            continue
        body = widget.body
        view = body.scroll_area.viewport().height()
        line += f" | view {view} of body {body.native.height()}"
        keys = {k: key_state(body, getattr(widget, k)) for k in KEYS[name]}
        print(line + f" | keys {keys}", flush=True)
        for problem in cut_widgets(dock) + clipped_without_bar(body):
            print(f"    CUT {problem}", flush=True)
    path = os.path.join(OUT, f"{index:02d}-{state}.png")
    window.grab().save(path)
    print(f"  shot {path}", flush=True)


def close_dock(viewer, name) -> None:
    dock = plugin_docks(viewer.window._qt_window)[name][0]
    dock.title.close_button.click()  # its X


def main() -> None:
    from napari_tmunet.launch import build_parser, open_viewer

    viewer, segment = open_viewer(
        build_parser().parse_args(["--sample", "colonoscopy", "--device", "cpu"])
    )
    window = viewer.window._qt_window
    window.show()
    settle(2)
    segment.segment()
    t0 = time.time()
    while segment.running and time.time() - t0 < 300:
        settle(0.1)
    metrics = _magic(window, viewer, "Metrics")
    metrics.compute()
    settle(1)
    steps = [("launch", None)]
    steps += [(f"menu-{n}", ("menu", n)) for n in ("Fine-tune", "Metrics", "Segment")]
    steps += [("close-Metrics", ("close", "Metrics")), ("menu-Metrics-again", ("menu", "Metrics"))]
    steps += [("close-Segment", ("close", "Segment")), ("close-Fine-tune", ("close", "Fine-tune"))]
    steps += [("menu-Fine-tune-again", ("menu", "Fine-tune"))]
    steps += [("menu-Segment-again", ("menu", "Segment"))]
    for index, (state, action) in enumerate(steps):
        if action is not None and action[0] == "menu":
            menu_action(window, "Plugins", "TM-UNet", f"{action[1]} (TM-UNet)").trigger()
        elif action is not None:
            close_dock(viewer, action[1])
        report(state, index, viewer)
    viewer.close()

    import napari

    plain = napari.Viewer(title="plain napari")
    window = plain.window._qt_window
    window.resize(window.screen().availableGeometry().size())  # the whole screen
    window.show()
    plain.open_sample("napari-tmunet", "colonoscopy")
    settle(1)
    for index, name in enumerate(("Segment", "Metrics", "Fine-tune"), start=len(steps)):
        menu_action(window, "Plugins", "TM-UNet", f"{name} (TM-UNet)").trigger()
        report(f"plain-menu-{name}", index, plain)
    plain.close()


if __name__ == "__main__":
    main()
