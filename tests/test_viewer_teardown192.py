"""What a viewer test leaves for the next one's teardown to walk (fix-192).

napari's ``make_napari_viewer`` runs a full ``gc.collect()`` after each test whose viewer
a cycle still holds: its cost is the heap it walks. These tests run in order in one
process (``--dist loadfile`` keeps a file on one worker)."""

import gc
import weakref

import numpy as np
import pytest

pytestmark = pytest.mark.gui

_EARLIER = []  # weak references to the first test's app-model application


def _current_app():
    from napari._app_model import get_app_model

    return get_app_model()


def test_a_viewer_registers_the_plugins_menus_in_its_tests_application(make_napari_viewer):
    from app_model.backends.qt._qaction import QMenuItemAction

    viewer = make_napari_viewer()
    app = _current_app()
    assert app.name == "test_app"
    menu_actions = [a for a in QMenuItemAction._cache.values() if a._app is app]
    assert len(menu_actions) > 50  # napari's and this plugin's menu items
    assert "napari-tmunet.segment_widget" in app.commands
    viewer.add_image(np.eye(2))
    _EARLIER.append(weakref.ref(app))


def _holds(function, target, depth: int = 3) -> bool:
    """Whether a dispose function's closure, or those of the functions in it, holds
    ``target`` or its menu registry."""
    for cell in getattr(function, "__closure__", None) or ():
        value = cell.cell_contents
        if value is target or value is target.menus:
            return True
        items = value if isinstance(value, list) else [value]
        if depth > 1 and any(_holds(f, target, depth - 1) for f in items if callable(f)):
            return True
    return False


def test_the_next_viewer_test_holds_nothing_of_the_earlier_application(make_napari_viewer):
    import napari
    import npe2
    from app_model.backends.qt._qaction import QMenuItemAction

    viewer = make_napari_viewer()
    app = _current_app()
    assert _EARLIER, "runs after the test above"
    earlier = _EARLIER[0]()  # None once freed; else the earlier viewer's window holds it
    assert earlier is not app
    # neither the menu actions app-model parents to the QApplication nor npe2's plugin
    # contexts (they live as long as the process) hold the earlier test's application
    assert all(a._app is app for a in QMenuItemAction._cache.values())
    if earlier is not None:
        contexts = npe2.PluginManager.instance()._contexts.values()
        assert not any(_holds(d, earlier) for c in contexts for d in c._disposables)
    assert any(
        _holds(d, app)
        for d in npe2.PluginManager.instance()._contexts["napari-tmunet"]._disposables
    )  # this test's registrations are kept
    assert len(viewer.window._qt_window.menuBar().actions()) > 3  # this viewer's menus work
    # the long-lived heap (napari, torch, the plugin) is frozen: not walked by collections
    assert gc.get_freeze_count() > 100_000
    assert not any(o is napari.Viewer for o in gc.get_objects())
