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

import itertools
import weakref
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
            # asked for now: a placement still pending raises it, not its own dock
            found[0].setProperty(ASKED, next(_OPENINGS))
        except RuntimeError:  # the dock was deleted meanwhile
            return
        action.setChecked(True)

    action.triggered.connect(after)


# ------------------------------------------------------------------------ placement
# A dock's place is chosen once, the first time it is shown (napari has then put it under
# the docks on its side, or tabbed it); the user's own moves are never undone.
PLACED = "tmunet_placed"  # the dock's Qt property, set once it was placed
OPENED = "tmunet_opened"  # its widget's Qt property: the order in which the docks opened
ASKED = "tmunet_asked"  # the dock's Qt property: when a menu item last showed it (same count)
_OPENINGS = itertools.count()


def place_when_shown(native) -> None:
    """Place the dock that holds ``native`` (a dock's widget) with :func:`place_dock` once,
    just after it is first shown: whoever opened it (the Plugins menu, the launcher, a
    script's ``add_plugin_dock_widget``), napari has then added it and set its sizes."""
    from qtpy.QtCore import QEvent, QObject, QTimer

    class FirstShow(QObject):
        def eventFilter(self, widget, event):  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Show:
                widget.removeEventFilter(self)
                dock = _dock_of(widget)
                if dock is not None:
                    QTimer.singleShot(0, _later(_place_once, dock))
            return False

    native.setProperty(OPENED, next(_OPENINGS))
    native.installEventFilter(FirstShow(native))


def _place_once(dock) -> None:
    try:
        if not dock.property(PLACED):
            place_dock(dock)
    except RuntimeError:  # the dock was deleted meanwhile
        pass


def place_dock(dock, front=None) -> None:
    """Give ``dock``, just added under the docks on its side of the window, its place.

    Where the column holds every dock (a tab group counts once, as tall as its tallest
    dock and its tab bar) at its size hint's height, the column is shared in proportion
    to those heights: napari gives the dock added last most of it and squeezes the ones
    above to their minimum (Metrics kept 150 px at 1366 x 768, tester37 #7). Where it does
    not (a laptop's 768 px holds one of this plugin's docks whole, not two), ``dock`` is
    tabbed with the lowest of this plugin's docks there and brought to the front (where
    there is none, the column is shared). ``front`` (a widget) stays in view: its dock's
    group is not tabbed onto. A floating or tabbed ``dock``, or one placed already, is
    left where it is."""
    from qtpy.QtCore import Qt, QTimer
    from qtpy.QtWidgets import QMainWindow, QStyle

    window = dock.parentWidget()
    if dock.property(PLACED) or not isinstance(window, QMainWindow):
        return
    dock.setProperty(PLACED, True)
    area = window.dockWidgetArea(dock)
    sides = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea)
    if dock.isFloating() or window.tabifiedDockWidgets(dock) or area not in sides:
        return
    # docks opened after it, shown with it (a window shown after its docks were added),
    # are placed after it, beside it
    groups = [
        group
        for group in column_groups(window, area, leave_out=dock)
        if not any(_opened(d) > _opened(dock) for d in group)
    ]
    if not groups:
        return
    needs = [group_need(window, group) for group in groups]
    separator = window.style().pixelMetric(QStyle.PixelMetric.PM_DockWidgetSeparatorExtent)
    room = window.centralWidget().height() if window.centralWidget() else window.height()
    # the plugin's docks, not those of napari (its layer list) or of other plugins
    onto = [g for g in groups if any(_is_ours(d) for d in g)]
    onto = [g for g in onto if front is None or not any(d.isAncestorOf(front) for d in g)]
    fits = sum(needs) + dock.sizeHint().height() + separator * len(groups) <= room
    tabbed = not fits and bool(onto)
    if tabbed:
        window.tabifyDockWidget(onto[-1][-1], dock)
        dock.show()
    # once Qt has laid out the dock just added (or tabbed): before, the sizes were undone
    # (Metrics kept its 169 px minimum) and the new tab not brought to the front
    QTimer.singleShot(0, _later(_settle, window, area, dock if tabbed else None))


def _later(call, *args):
    """``call(*args)`` for a timer, holding the Qt objects among ``args`` (and so napari's
    window and viewer) only weakly: a viewer closed before the timer fires is freed and the
    call skipped (a strong reference kept a closed viewer alive: napari's leak check)."""
    from qtpy.QtCore import QObject

    held = [(weakref.ref(a), True) if isinstance(a, QObject) else (a, False) for a in args]

    def run() -> None:
        now = [a() if weak else a for a, weak in held]
        if all(a is not None for a, (_, weak) in zip(now, held, strict=True) if weak):
            call(*now)

    return run


def _settle(window, area, front=None) -> None:
    """Share ``window``'s column ``area`` (:func:`share_column`) and bring the dock of
    ``front``'s tab group the user asked for last (:func:`_asked`: ``front``, unless a
    menu item showed another since ``front`` opened) to the front of its tabs; Qt's docks
    do not animate meanwhile: a share made during the animation was undone by it at
    random (a group kept the height it had before it took a dock, 393 of 477 px)."""
    try:
        animated = window.isAnimated()
        window.setAnimated(False)
        try:
            share_column(window, area)
            if front is not None:
                # Plugins > Metrics chosen while a Fine-tune dock opened just before was
                # still being placed: raising Fine-tune left Metrics behind its tab
                group = [front, *window.tabifiedDockWidgets(front)]
                max(group, key=_asked).raise_()
        finally:
            window.setAnimated(animated)
    except RuntimeError:  # the window or the dock was closed meanwhile
        pass


def share_column(window, area) -> None:
    """Share the height of ``window``'s dock ``area`` among its tab groups in proportion to
    the heights they ask for (:func:`group_need`). Also after a tabify: a group that took
    a dock from under it kept its height, the rest of the column left blank (1500 x 950)."""
    from qtpy.QtCore import Qt

    groups = column_groups(window, area)
    needs = [group_need(window, group) for group in groups]
    window.resizeDocks([group[0] for group in groups], needs, Qt.Orientation.Vertical)


def column_groups(window, area, leave_out=None) -> list[list]:
    """The docks open (shown or behind a tab) in ``window``'s dock ``area``, not floating,
    as their tab groups (a dock alone is a group of one), top to bottom."""
    from qtpy.QtWidgets import QDockWidget

    docks = [
        d
        for d in window.findChildren(QDockWidget)
        if d is not leave_out
        and not d.isHidden()
        and not d.isFloating()
        and window.dockWidgetArea(d) == area
    ]
    groups: list[list] = []
    for dock in docks:
        if not any(dock in group for group in groups):
            tabs = [d for d in window.tabifiedDockWidgets(dock) if d in docks]
            groups.append([dock, *tabs])

    def top(group) -> int:  # a dock behind a tab keeps the place it had before
        shown = [d.y() for d in group if not d.visibleRegion().isEmpty()]
        return min(shown or [d.y() for d in group])

    return sorted(groups, key=top)


def group_need(window, group: list) -> int:
    """The height (px) a tab group of docks asks for: its tallest dock's size hint, and a
    tab bar's height above it when it has tabs."""
    from qtpy.QtWidgets import QTabBar

    need = max(d.sizeHint().height() for d in group)
    if len(group) > 1:
        bars = [b.sizeHint().height() for b in window.findChildren(QTabBar) if b.isVisible()]
        need += max(bars, default=0)
    return need


def _opened(dock) -> int:
    """When this plugin's ``dock`` opened (:data:`OPENED`); -1 for another's dock."""
    from qtpy.QtWidgets import QWidget

    inner = dock.widget()
    for widget in [inner, *inner.findChildren(QWidget)] if inner is not None else []:
        if widget.property(OPENED) is not None:
            return int(widget.property(OPENED))
    return -1


def _asked(dock) -> int:
    """When the user last asked for ``dock``: it opened (:func:`_opened`) or a menu item
    showed it (:data:`ASKED`), in the one count of :data:`_OPENINGS`; -1 for another's."""
    asked = dock.property(ASKED)
    return max(_opened(dock), -1 if asked is None else int(asked))


def _is_ours(dock) -> bool:
    """Whether ``dock`` is one of this plugin's docks (by its title, as napari names it)."""
    title = dock.windowTitle()
    return any(title in (dock_name(n), f"{n} ({PLUGIN})") for n in WIDGETS)
