"""The core imports no Qt and no napari (the napari layer is the private ``_*.py`` modules)."""

from __future__ import annotations

import subprocess
import sys

from _paths import REPO

CORE = [
    "napari_tmunet.config",
    "napari_tmunet.model",
    "napari_tmunet.data.datasets",
    "napari_tmunet.data.images",
    "napari_tmunet.data.preprocess",
    "napari_tmunet.metrics",
    "napari_tmunet.evaluation",
    "napari_tmunet.postprocess",
    "napari_tmunet.inference",
    "napari_tmunet.checkpoint",
    "napari_tmunet.registry",
    "napari_tmunet.active_model",
    "napari_tmunet.training.finetune",
    "napari_tmunet.training.engine",
]
GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "napari")


def test_core_modules_import_no_gui():
    """A fresh interpreter imports every core module; none may load a GUI package."""
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module(name)\n"
        f"    gui = sorted(m for m in sys.modules if m.split('.')[0] in {GUI!r})\n"
        "    if gui:\n"
        "        print(name, 'imports', gui)\n"
        "        break\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout
