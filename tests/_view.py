"""Docks in tests: open one; whether a widget is in view in its scrolled body (tests of
small screens)."""

from __future__ import annotations


def in_view(body, widget) -> bool:
    """Whether all of ``widget`` (a magicgui widget in ``body``, a ``scroll_body``) lies in
    the scroll area's visible viewport."""
    from qtpy.QtCore import QPoint, QRect

    viewport = body.scroll_area.viewport()
    native = widget.native
    if not native.isVisible():
        return False
    top_left = native.mapTo(viewport, QPoint(0, 0))
    return viewport.rect().contains(QRect(top_left, native.size()))


def open_dock(viewer, name):
    """Add the plugin's dock ``name`` ("Segment", "Metrics", ...) to ``viewer``; its widget,
    unwrapped where napari wraps it."""
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name="napari-tmunet", widget_name=name)
    return getattr(widget, "__wrapped__", widget)


def column_keys(table) -> list[str]:
    """The keys ("dice", "hd95_px": the CSV's names) of a QTableWidget's columns: its
    headers show short names ("Dice", "HD95\\npx") and keep the key as their UserRole
    data; a header without one, its text."""
    from qtpy.QtCore import Qt

    keys = []
    for index in range(table.columnCount()):
        item = table.horizontalHeaderItem(index)
        keys.append(str(item.data(Qt.ItemDataRole.UserRole) or item.text()))
    return keys


def columns_fit(table, body=None) -> bool:
    """Whether a QTableWidget's columns together are no wider than its view: nothing to
    scroll sideways to; with ``body`` (the dock's ``scroll_body``), and the table's right
    edge within that view (the body does not scroll sideways: it would be cut)."""
    from qtpy.QtCore import QPoint

    total = sum(table.columnWidth(column) for column in range(table.columnCount()))
    fits = total <= table.viewport().width() and table.horizontalScrollBar().maximum() == 0
    if body is not None:
        viewport = body.scroll_area.viewport()
        fits = fits and table.mapTo(viewport, QPoint(table.width(), 0)).x() <= viewport.width()
    return fits
