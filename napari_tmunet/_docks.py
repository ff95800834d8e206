"""The plugin's docks, opened under the names napari's Plugins menu gives them.

napari names a dock opened from *Plugins > TM-UNet > Metrics* "Metrics (TM-UNet)" (the
manifest's display name) but one opened by ``add_plugin_dock_widget`` "Metrics
(napari-tmunet)" (the package name), and the menu looks its dock up by its own name. A
dock the launcher opened with ``add_plugin_dock_widget`` was therefore unchecked in the
menu, and the menu opened a second one (tester27 #3). :func:`open_dock` opens them under
the menu's names, and :func:`raise_from_menu` makes the menu bring a dock that is open
behind another dock's tab to the front, where napari's menu item would hide it.
"""

from __future__ import annotations

from importlib import import_module

PLUGIN = "napari-tmunet"
# widget display name (napari.yaml) -> (its command id, module, class)
WIDGETS = {
    "Segment": ("napari-tmunet.segment_widget", "._segment_widget", "SegmentWidget"),
    "Metrics": ("napari-tmunet.metrics_widget", "._metrics_widget", "MetricsWidget"),
    "Fine-tune": ("napari-tmunet.finetune_widget", "._finetune_widget", "FinetuneWidget"),
}


def dock_name(widget_name: str) -> str:
    """The name napari's Plugins menu gives the dock of ``widget_name``, e.g. "Metrics
    (TM-UNet)"; the manifest's display name, as napari's menu reads it."""
    from napari.plugins import menu_item_template
    from npe2 import PluginManager

    try:
        plugin = PluginManager.instance().get_manifest(PLUGIN).display_name
    except KeyError:  # not registered (a bare checkout): the name napari.yaml gives
        plugin = "TM-UNet"
    return menu_item_template.format(plugin, widget_name)


def open_dock(viewer, widget_name: str, tabify: bool = False):
    """The dock of ``widget_name`` and its widget: the one open (under the menu's name,
    or the one ``add_plugin_dock_widget`` names), else a new one under the menu's name,
    tabbed with the docks on its side when ``tabify``. Returns (dock, widget)."""
    window = viewer.window
    raise_from_menu(viewer)
    found = find_dock(viewer, widget_name)
    if found is not None:
        return found
    _, module, cls = WIDGETS[widget_name]
    widget = getattr(import_module(module, __package__), cls)(viewer)
    dock = window.add_dock_widget(widget, name=dock_name(widget_name), tabify=tabify)
    return dock, widget


def find_dock(viewer, widget_name: str):
    """(dock, widget) of ``widget_name`` open in ``viewer``'s window, or None."""
    docks = viewer.window.dock_widgets  # name -> the widget in the dock
    for name in (dock_name(widget_name), f"{widget_name} ({PLUGIN})"):
        widget = docks.get(name)
        if widget is not None:
            return _dock_of(widget), widget
    return None


def _dock_of(widget):
    """The QDockWidget that holds ``widget`` (a magicgui widget or a QWidget)."""
    from qtpy.QtWidgets import QDockWidget

    native = getattr(widget, "native", widget)
    while native is not None and not isinstance(native, QDockWidget):
        native = native.parent()
    return native


def raise_from_menu(viewer) -> None:
    """Make the menu items of this plugin's docks (Plugins > TM-UNet > ..., and the same
    command elsewhere) bring a dock that is open behind another dock's tab to the front,
    checked. napari's item shows the dock checked while it is open, and a click toggles
    it: it hid a dock that the user could not see. Items of docks in front or closed
    keep napari's toggle. Done once per item (napari's windows share them)."""
    commands = {command: name for name, (command, _, _) in WIDGETS.items()}
    for action in _menu_actions(viewer.window._qt_window.menuBar()):
        name = commands.get(action.objectName())  # app-model names an item by its command
        if name is not None and not action.property("tmunet_raises"):
            action.setProperty("tmunet_raises", True)
            _follow(action, name)


def _menu_actions(menu):
    """The actions of ``menu`` (a menu bar or menu) and of its submenus."""
    for action in menu.actions():
        if action.menu() is not None:
            yield from _menu_actions(action.menu())
        else:
            yield action


def _follow(action, widget_name: str) -> None:
    """Connect ``action`` so that a trigger on its dock behind a tab raises it instead,
    and a dock it shows again comes back in front of its tabs.

    Qt emits ``toggled`` (the check flips) before ``triggered``, and napari's handler of
    ``triggered`` was connected first: the state is taken before napari's toggle, and
    put right after it. The dock is looked up in the current viewer, as napari's item
    does."""
    state = {"dock": None, "behind": False}

    def before(_checked) -> None:
        import napari

        viewer = napari.current_viewer()
        found = find_dock(viewer, widget_name) if viewer is not None else None
        state["dock"] = found[0] if found else None
        state["behind"] = bool(found) and _behind_a_tab(found[0])

    def after(_checked) -> None:
        dock, behind = state["dock"], state["behind"]
        state.update(dock=None, behind=False)
        try:
            if dock is None:  # napari opened a new one, in front
                return
            if behind and dock.isHidden():  # napari hid what the user could not see
                dock.show()
            if not dock.isHidden():
                dock.raise_()  # a tabbed dock shown again comes back behind: not so
                action.setChecked(True)
        except RuntimeError:  # the dock was deleted meanwhile
            pass

    action.toggled.connect(before)
    action.triggered.connect(after)


def _behind_a_tab(dock) -> bool:
    """Whether ``dock`` is open, tabbed with other docks, and not the tab in front (Qt
    keeps such a dock 'visible' but moves it off the window)."""
    from qtpy.QtWidgets import QTabBar

    try:
        window = dock.parent()
        if dock.isHidden() or dock.isFloating() or not window.tabifiedDockWidgets(dock):
            return False
        title = dock.windowTitle()
        for bar in window.findChildren(QTabBar):
            titles = [bar.tabText(i) for i in range(bar.count())]
            if bar.parent() is window and not bar.isHidden() and title in titles:
                return titles.index(title) != bar.currentIndex()
    except (RuntimeError, AttributeError):  # deleted, or not in a main window
        pass
    return False
