"""The plugin's docks, opened under the names napari's Plugins menu gives them.

napari names a dock opened from *Plugins > TM-UNet > Metrics* "Metrics (TM-UNet)" (the
manifest's display name) but one opened by ``add_plugin_dock_widget`` "Metrics
(napari-tmunet)" (the package name), and the menu looks its dock up by its own name. A
dock the launcher opened with ``add_plugin_dock_widget`` was therefore unchecked in the
menu, and the menu opened a second one (tester27 #3). :func:`open_dock` opens them under
the menu's names, and :func:`raise_from_menu` makes every menu item of a dock show it in
front, where napari's item toggles it: the Layers menu's Segment item hid the dock that
the Plugins menu's had opened (tester28), and an item hid a dock behind another tab.
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
    """Make every menu item of this plugin's docks (Plugins > TM-UNet > ..., Layers >
    Segment > Segment (TM-UNet): the same command) show its dock in front, checked.
    napari's item toggles a dock that is open: the Layers item hid the dock that the
    Plugins item had opened, and an item hid a dock behind another dock's tab, which the
    user could not see (tester28, tester27 #3); the dock's X closes it. Done once per
    item (napari's windows share them); a viewer without a window is left alone."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari passes widgets a proxy
    try:
        bar = viewer.window._qt_window.menuBar()
    except AttributeError:  # no window (headless)
        return
    commands = {command: name for name, (command, _, _) in WIDGETS.items()}
    for action in _menu_actions(bar):
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
    """Connect ``action`` so that its dock is shown and in front after napari's handler,
    connected first, opened it or toggled it. The dock is looked up in the current
    viewer, as napari's handler does."""

    def after(_checked) -> None:
        import napari

        viewer = napari.current_viewer()
        found = find_dock(viewer, widget_name) if viewer is not None else None
        if found is None:
            return
        try:
            found[0].show()
            found[0].raise_()  # a tabbed dock shown again comes back behind its tabs
        except RuntimeError:  # the dock was deleted meanwhile
            return
        action.setChecked(True)

    action.triggered.connect(after)
