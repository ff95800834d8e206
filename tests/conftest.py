"""Shared test settings."""

import gc
import os

import pytest


def _share_the_cores() -> None:
    """Under pytest-xdist (``-n N``), torch in each worker, and the processes a test starts,
    use the worker's share of the cores (at least one thread), unless OMP_NUM_THREADS is
    set already. Each worker's torch would otherwise start one OpenMP thread per core: on
    CI's 2 cores with ``-n auto`` that is 4 busy threads on 2 cores: the suite took 1.7x
    as long, a model test up to 20x (docs/benchmarks.md, "The test suite on 2 cores")."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


_share_the_cores()  # before torch is imported: it reads OMP_NUM_THREADS once


_FROZEN = []  # one True once this process froze its long-lived heap


def _freeze_the_imports() -> None:
    """Imports what the viewer tests use (napari's Qt viewer and vispy, torch, the
    plugin's docks), collects, then moves every object alive into ``gc.freeze``'s
    permanent generation, once a process. napari's ``make_napari_viewer`` runs a full
    ``gc.collect()`` after each test whose viewer is still held by a cycle (nearly all):
    it walked these ~700,000 long-lived objects each time, 0.4 s a collection and 26% of
    test_metrics_widget.py's wall (docs/benchmarks.md, fix-192). Frozen objects are
    assumed alive, so what they reference stays alive as before: a viewer a test leaks
    still fails napari's count of ``QtViewer._instances``."""
    if _FROZEN:
        return
    import napari._qt.qt_main_window  # noqa: F401
    import napari._vispy  # noqa: F401
    import torch  # noqa: F401

    import napari_tmunet._finetune_widget  # noqa: F401
    import napari_tmunet._metrics_widget  # noqa: F401
    import napari_tmunet._segment_widget  # noqa: F401

    gc.collect()
    gc.freeze()
    _FROZEN.append(True)


def _free_menu_actions_of_closed_apps() -> int:
    """Frees the menu actions app-model keeps for applications already destroyed; returns
    how many. app-model parents each menu's ``QMenuItemAction`` to the QApplication (one
    action per application and menu item, ``QMenuItemAction._cache``); napari's
    ``mock_app_model`` makes and destroys an application per test, so each viewer test
    left ~130 actions alive, each holding its whole application (menus, commands,
    keybindings): ~4,500 objects a test that every later full collection walked
    (docs/benchmarks.md, fix-192)."""
    from app_model import Application
    from app_model.backends.qt._qaction import QMenuItemAction

    cache = QMenuItemAction._cache
    closed = [key for key, action in cache.items()
              if Application.get_app(action._app.name) is not action._app]  # fmt: skip
    for key in closed:
        cache.pop(key).setParent(None)  # Python owns it again: freed with its last name
    return len(closed)


def _owner(function, depth: int = 3):
    """The app-model ``Application`` or menu registry a dispose function's closure (or
    the closures of the functions in it) holds, else None."""
    from app_model import Application
    from app_model.registries import MenusRegistry

    for cell in getattr(function, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, (Application, MenusRegistry)):
            return value
        inner = value if isinstance(value, list) else [value]
        for item in inner if depth > 1 else ():
            owner = _owner(item, depth - 1) if callable(item) else None
            if owner is not None:
                return owner
    return None


def _free_plugin_disposers_of_closed_apps() -> int:
    """Drops, from npe2's plugin contexts, the dispose functions of app-model applications
    already destroyed; returns how many. napari registers each plugin's menu actions in the
    application of the moment and keeps the undo function in the plugin's npe2 context,
    which lives as long as the process: with an application per test (``mock_app_model``)
    each viewer test left its whole application alive there."""
    import npe2
    from app_model import Application

    live = set()
    for app in Application._instances.values():
        live.update((id(app), id(app.menus)))
    dropped = 0
    for context in npe2.PluginManager.instance()._contexts.values():
        for dispose in list(context._disposables):
            owner = _owner(dispose)
            if owner is not None and id(owner) not in live:
                context._disposables.discard(dispose)
                dropped += 1
    return dropped


@pytest.fixture
def make_napari_viewer(make_napari_viewer):
    """napari's ``make_napari_viewer``, with the process's long-lived heap frozen before
    the first viewer (``_freeze_the_imports``) and the menu actions of the earlier tests'
    applications freed (``_free_menu_actions_of_closed_apps``,
    ``_free_plugin_disposers_of_closed_apps``)."""
    _freeze_the_imports()
    _free_menu_actions_of_closed_apps()
    _free_plugin_disposers_of_closed_apps()
    return make_napari_viewer


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's real napari-tmunet settings and runs."""
    monkeypatch.setenv("NAPARI_TMUNET_CONFIG_DIR", str(tmp_path_factory.mktemp("settings")))
    monkeypatch.setenv("NAPARI_TMUNET_DATA_DIR", str(tmp_path_factory.mktemp("user-data")))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads and lose a lot on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def clinic_cache(tmp_path_factory):
    """The first 16 CVC-ClinicDB pairs decoded into a NativeCache file."""
    from _paths import DATASETS

    from napari_tmunet.data.cache import decode_folder

    clinic = DATASETS / "CVC-ClinicDB"
    if not clinic.is_dir():
        pytest.skip(f"no datasets at {clinic}")
    path = tmp_path_factory.mktemp("cache") / "clinic16.npz"
    decode_folder(clinic, max_images=16, workers=2).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    """A folder of one ultrasound scan and one colonoscopy frame (``_paths.SCAN`` and
    ``POLYP``), as ``napari-tmunet-predict`` tests give it."""
    import shutil

    from _paths import POLYP, SCAN

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SCAN, folder / SCAN.name)
    shutil.copy(POLYP, folder / POLYP.name)
    return folder


@pytest.fixture
def notifications():
    """(severity name, message) of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen = []

    def record(event):
        note = event.value if hasattr(event, "value") else event
        seen.append((str(note.severity).lower(), str(note.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def notices(monkeypatch):
    """The Segment dock's warnings and infos, as lists of their texts."""
    import napari_tmunet._segment_widget as module

    seen = {"warning": [], "info": []}
    monkeypatch.setattr(module, "show_warning", seen["warning"].append)
    monkeypatch.setattr(module, "show_info", seen["info"].append)
    return seen


@pytest.fixture
def errors(monkeypatch):
    """The error pop-ups of the Segment and Fine-tune docks, as a list of their texts."""
    import napari_tmunet._finetune_widget as finetune
    import napari_tmunet._segment_widget as segment_module

    seen = []
    monkeypatch.setattr(segment_module, "show_error", seen.append)
    monkeypatch.setattr(finetune, "show_error", seen.append)
    return seen


@pytest.fixture
def launcher_app(mock_app_model):
    """A fresh napari application for a test that opens windows as the launcher does
    (``napari.Viewer``, not ``make_napari_viewer``): napari registers the plugins' menu
    commands once per application (``_initialize_plugins``, cached), and a
    ``make_napari_viewer`` test clears that cache, so a second real ``napari.Viewer`` in
    the same process would register them again ("already registered") in the global one.
    After the test, a full collection: napari's make_napari_viewer in a later test counts the
    QtViewers left after a young-generation collection only, and a launcher's window that
    lived through a run is older (the leak check then failed that later test)."""
    from napari._qt._qapp_model.qactions import init_qactions
    from napari.plugins import _initialize_plugins

    _initialize_plugins.cache_clear()
    init_qactions.cache_clear()
    yield mock_app_model
    gc.collect()


@pytest.fixture(scope="module")
def plugin_manager():
    """npe2's plugin manager with the installed plugins discovered (no viewer needed)."""
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    pm.get_manifest("napari-tmunet")  # KeyError unless installed (pip install -e .)
    return pm
