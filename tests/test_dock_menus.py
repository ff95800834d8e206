"""Every menu entry of a TM-UNet dock shows it and brings it to the front (tester28): the
Plugins menu's and the Layers menu's entries of Segment are one command, and napari's
callback toggles an open dock, so the second entry hid the dock the first one opened."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui

PLUGINS = ("Plugins", "TM-UNet")
SEGMENT_FROM_LAYERS = ("Layers", "Segment", "Segment (TM-UNet)")


def menu_item(viewer, *path):
    """The QAction at ``path`` in the window's menu bar (the menus' texts, '&' dropped)."""
    menu = viewer.window._qt_window.menuBar()
    for text in path:
        action = next(a for a in menu.actions() if a.text().replace("&", "") == text)
        menu = action.menu() or menu
    return action


def checked_when_opened(viewer, *path) -> bool:
    """The check mark of the item at ``path`` as its menu shows it when opened."""
    action = menu_item(viewer, *path)
    for widget in action.associatedWidgets():
        widget.aboutToShow.emit()  # napari reads the check marks when a menu opens
    return action.isChecked()


def docks_of(viewer, name: str) -> list:
    """The window's dock widgets (shown or hidden) whose title starts with ``name``."""
    from qtpy.QtWidgets import QDockWidget

    docks = viewer.window._qt_window.findChildren(QDockWidget)
    return [d for d in docks if d.windowTitle().startswith(f"{name} (")]


def in_front(viewer, dock) -> bool:
    """Whether ``dock`` is shown and, where tabbed with others, the tab in front."""
    from qtpy.QtWidgets import QTabBar

    if dock.isHidden():
        return False
    for bar in viewer.window._qt_window.findChildren(QTabBar):
        titles = [bar.tabText(i) for i in range(bar.count())]
        if not bar.isHidden() and dock.windowTitle() in titles:
            return titles.index(dock.windowTitle()) == bar.currentIndex()
    return True


def choose(qtbot, viewer, path, name):
    """Trigger the menu item at ``path``; assert one ``name`` dock, shown, in front, its
    item (and Plugins > TM-UNet's item of it) checked."""
    item = menu_item(viewer, *path)
    item.trigger()
    qtbot.wait(100)
    docks = docks_of(viewer, name)
    where = " > ".join(path)
    assert [d.windowTitle() for d in docks] == [f"{name} (TM-UNet)"], where
    assert in_front(viewer, docks[0]), f"{where} hid the {name} dock or left it behind"
    assert item.isChecked(), where
    assert checked_when_opened(viewer, *PLUGINS, f"{name} (TM-UNet)"), where


def test_both_menus_show_segment_in_napari(make_napari_viewer, qtbot):
    """In plain ``napari``: Plugins > TM-UNet > Segment, then Layers > Segment > Segment
    (TM-UNet), then each again, each shows the one Segment dock (the second hid it);
    closed with its X, either entry shows it again, checked."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-tmunet", "colonoscopy")
    plugins_item = (*PLUGINS, "Segment (TM-UNet)")
    for path in (plugins_item, SEGMENT_FROM_LAYERS, SEGMENT_FROM_LAYERS, plugins_item):
        choose(qtbot, viewer, path, "Segment")
    docks_of(viewer, "Segment")[0].close()  # the dock's X
    qtbot.wait(100)
    assert not checked_when_opened(viewer, *plugins_item)
    choose(qtbot, viewer, plugins_item, "Segment")
    docks_of(viewer, "Segment")[0].close()
    qtbot.wait(100)
    choose(qtbot, viewer, SEGMENT_FROM_LAYERS, "Segment")


def test_plugins_menu_shows_and_raises_each_dock(make_napari_viewer, qtbot):
    """In plain ``napari``, Plugins > TM-UNet's three items in turn and twice over: each
    shows its one dock in front, where choosing an open dock's item hid it."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-tmunet", "colonoscopy")
    for name in ("Segment", "Metrics", "Fine-tune", "Fine-tune", "Metrics", "Segment"):
        choose(qtbot, viewer, (*PLUGINS, f"{name} (TM-UNet)"), name)
    choose(qtbot, viewer, SEGMENT_FROM_LAYERS, "Segment")


def test_menus_reuse_the_launchers_docks(qtbot, notices, launcher_app):
    """``napari-tmunet --sample colonoscopy``: the menus' entries show the launcher's
    Segment and Metrics docks, no second one (a second Segment dock said every notice
    twice and ran with its own threshold), and Fine-tune's item opens one Fine-tune dock.
    A mask opened afterwards is noticed once."""
    from napari_tmunet.launch import build_parser, open_viewer

    viewer, segment = open_viewer(build_parser().parse_args(["--sample", "colonoscopy"]))
    try:
        qtbot.waitUntil(segment.native.isVisible)
        paths = [
            ((*PLUGINS, "Segment (TM-UNet)"), "Segment"),
            (SEGMENT_FROM_LAYERS, "Segment"),
            ((*PLUGINS, "Metrics (TM-UNet)"), "Metrics"),
            ((*PLUGINS, "Fine-tune (TM-UNet)"), "Fine-tune"),
            ((*PLUGINS, "Metrics (TM-UNet)"), "Metrics"),
            (SEGMENT_FROM_LAYERS, "Segment"),
            ((*PLUGINS, "Segment (TM-UNet)"), "Segment"),
        ]
        for path, name in paths:
            choose(qtbot, viewer, path, name)
        assert viewer.window.dock_widgets["Segment (TM-UNet)"] is segment
        mask = next(layer for layer in viewer.layers if layer.name.endswith("mask"))
        notices["info"].clear()
        notices["warning"].clear()
        viewer.add_image(mask.data.astype("uint8") * 255, name="mask png")
        qtbot.wait(200)
        said = [n for n in notices["info"] + notices["warning"] if "looks like a mask" in n]
        assert len(said) == 1, said
    finally:
        viewer.close()
