"""The docks' places in a real window (tester37 #7): at 1366 x 768 each dock opened from the
Plugins menu gets the column's height (tabbed with the others) with its labels and buttons
whole and its key controls in view; a window tall enough for two stacks them, each at its
size hint's height."""

from __future__ import annotations

import pytest
from _view import in_view
from test_dock_menu_scroll import launch, menu_item

pytestmark = [pytest.mark.gui]

PLUGIN = "napari-tmunet"
SETTLE = 30_000  # ms: a dock is placed after its widget is built and shown (busy machine)
# each dock's controls and results that must show when it is in front
KEYS = {
    "Segment": ("image", "segment_button", "summary"),
    "Metrics": ("prediction", "compute_button", "status"),
    "Fine-tune": ("start_button", "stop_button", "progress_bar"),
}


def docks_of(viewer) -> dict:
    """{name: (QDockWidget, widget)} of the plugin's docks open in ``viewer``."""
    found = {}
    for title, widget in viewer.window.dock_widgets.items():
        name = title.split(" (")[0]
        if name in KEYS:
            widget = getattr(widget, "__wrapped__", widget)
            found[name] = (widget.native.parentWidget(), widget)
    return found


def cut(dock) -> list[str]:
    """Labels and buttons in ``dock`` shown narrower than their size hint, and wrapped
    texts shorter than their lines."""
    from qtpy.QtWidgets import QAbstractButton, QLabel

    out = []
    for native in dock.findChildren(QLabel) + dock.findChildren(QAbstractButton):
        if not native.isVisible() or not native.text():
            continue
        if isinstance(native, QLabel) and native.wordWrap():
            if native.height() < native.heightForWidth(native.width()):
                out.append(f"{native.text()[:30]!r} {native.height()} px tall")
        elif native.width() < native.sizeHint().width():
            out.append(f"{native.text()!r} {native.width()}/{native.sizeHint().width()} px")
    return out


def assert_fits(window, name: str, dock, widget) -> None:
    """``dock`` is in front, as tall as its size hint asks (or the whole column), nothing
    in it is cut, nothing wider than its view, and its key widgets are in view."""
    column = window.centralWidget().height()
    assert not dock.visibleRegion().isEmpty(), f"{name} is not in front"
    assert dock.height() >= min(dock.sizeHint().height(), column - 30), (name, dock.height())
    assert cut(dock) == [], name
    body = widget.body
    assert body.native.width() <= body.scroll_area.viewport().width(), name
    for key in KEYS[name]:
        part = getattr(widget, key)
        if part.native.isVisibleTo(body.native):
            assert in_view(body, part), (name, key)


@pytest.mark.usefixtures("launcher_app")
def test_each_dock_from_the_menu_fits_a_1366x768_launcher_window(qtbot):
    """``napari-tmunet`` at 1366 x 768 (Segment and Metrics tabbed), then Plugins > TM-UNet
    > Fine-tune, Metrics, Segment: each comes to the front with the column's height, its
    labels and buttons whole and its key controls in view (Fine-tune stacked under the
    tabs took most of the column: Metrics 158 px of view, Start half out of Fine-tune's
    view, "Augmentation" 103 of its 110 px)."""
    viewer, _ = launch(qtbot, "--sample", "colonoscopy", "--device", "cpu", size=(1366, 768))
    window = viewer.window._qt_window
    try:
        for name in ("Fine-tune", "Metrics", "Segment"):
            menu_item(viewer, "Plugins", "TM-UNet", f"{name} (TM-UNet)").trigger()
            # placed once shown, after napari added it; a busy event loop takes seconds
            fits = lambda name=name: assert_fits(window, name, *docks_of(viewer)[name])  # noqa: E731
            qtbot.waitUntil(fits, timeout=SETTLE)
            docks = docks_of(viewer)
        assert len(docks) == 3
        for dock, _ in docks.values():  # every dock one tab away
            assert len(window.tabifiedDockWidgets(dock)) == 2
    finally:
        viewer.close()


def test_a_window_tall_enough_stacks_two_docks(make_napari_viewer, qtbot):
    """Plain napari 1366 x 1300: Segment then Metrics opened as the Plugins menu does are stacked,
    each in front at its size hint's height (napari left the one above at its minimum,
    185 px); Fine-tune, which the column cannot hold as a third, is tabbed with Metrics."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 1300)
    qtbot.waitUntil(lambda: window.height() == 1300)
    viewer.open_sample(PLUGIN, "colonoscopy")
    for name in ("Segment", "Metrics"):  # as the Plugins menu opens them
        viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name=name)
    docks = docks_of(viewer)

    def stacked() -> None:
        for name in ("Segment", "Metrics"):
            assert window.tabifiedDockWidgets(docks[name][0]) == []
            assert_fits(window, name, *docks[name])

    qtbot.waitUntil(stacked, timeout=SETTLE)
    viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Fine-tune")
    docks = docks_of(viewer)

    def tabbed() -> None:
        assert window.tabifiedDockWidgets(docks["Fine-tune"][0]) == [docks["Metrics"][0]]
        assert_fits(window, "Fine-tune", *docks["Fine-tune"])
        assert_fits(window, "Segment", *docks["Segment"])

    qtbot.waitUntil(tabbed, timeout=SETTLE)


@pytest.mark.usefixtures("launcher_app")
def test_the_dock_asked_for_last_stays_in_front_while_another_is_placed(qtbot):
    """``napari-tmunet`` at 1366 x 768: Plugins > Fine-tune, then at once (before the new
    dock is placed: it is tabbed with Segment and Metrics a moment after it shows)
    Plugins > Metrics. Metrics, asked for last, is in front once Fine-tune has its place;
    raising the dock just placed left Metrics behind Fine-tune's tab."""
    from test_dock_menus import in_front

    viewer, _ = launch(qtbot, "--sample", "colonoscopy", "--device", "cpu", size=(1366, 768))
    window = viewer.window._qt_window
    try:
        for name in ("Fine-tune", "Metrics"):
            menu_item(viewer, "Plugins", "TM-UNet", f"{name} (TM-UNet)").trigger()
        docks = docks_of(viewer)
        fine_tune, metrics = docks["Fine-tune"][0], docks["Metrics"][0]
        qtbot.waitUntil(lambda: len(window.tabifiedDockWidgets(fine_tune)) == 2, timeout=SETTLE)
        qtbot.wait(300)  # the placement's share and raise, a timer later
        assert in_front(viewer, metrics)
        assert not metrics.visibleRegion().isEmpty()
    finally:
        viewer.close()
