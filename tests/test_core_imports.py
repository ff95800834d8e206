"""The core imports no Qt and no napari (the napari layer is the private ``_*.py`` modules),
and nothing in ``napari_tmunet`` imports ``trainer`` (imports run one way)."""

from __future__ import annotations

import ast
import subprocess
import sys

from _paths import REPO

PACKAGE = REPO / "napari_tmunet"
GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "napari")


def _modules() -> list[str]:
    """Every module of the package, as a dotted name."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _core() -> list[str]:
    """The modules outside the napari layer (private ``_*`` modules, the launcher)."""
    return [
        n
        for n in _modules()
        if not n.split(".")[-1].startswith("_") and n.split(".")[-1] not in ("launch",)
    ]


def _gui_loaded_by(modules: list[str]) -> str:
    """Imports ``modules`` one by one in a fresh interpreter: "" when none loads a GUI
    package, else a line naming the first that does and what it loaded."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"    gui = sorted(m for m in sys.modules if m.split('.')[0] in {GUI!r})\n"
        "    if gui:\n"
        "        print(name, 'imports', gui)\n"
        "        break\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_core_modules_import_no_gui():
    """A fresh interpreter imports every core module; none may load a GUI package."""
    core = _core()
    assert "napari_tmunet.training.engine" in core and "napari_tmunet.evaluation" in core
    assert _gui_loaded_by(core) == ""


def test_the_docks_layer_helpers_import_no_gui():
    """Importing what the docks share about layers' data and placement (the mask rule,
    the placement geometry) loads no GUI package, napari included."""
    helpers = ["napari_tmunet._image_layers", "napari_tmunet._placement"]
    assert _gui_loaded_by(helpers) == ""


def test_the_package_never_imports_the_trainer():
    """``trainer/`` may import ``napari_tmunet``; no module of the package imports ``trainer``."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "trainer"]
    assert offenders == []


def test_no_dock_imports_another_docks_private_names():
    """A dock takes what it shares with another from the shared helper modules
    (``_widget_common``, ``_image_layers``), never the other dock's private names (the
    Fine-tune dock guessed a layer's modality with Segment's ``_modality``)."""
    docks = {"_segment_widget", "_finetune_widget", "_metrics_widget"}
    offenders = []
    for name in sorted(docks):
        path = PACKAGE / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in docks:
                private = [a.name for a in node.names if a.name.startswith("_")]
                offenders += [f"{name}: {node.module}.{n}" for n in private]
    assert offenders == []
