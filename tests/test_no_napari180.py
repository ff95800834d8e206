"""A pip install without the ``napari`` extra (tester39 #4): each console script of
pyproject.toml is run as its entry point in a fresh interpreter in which napari, Qt and
the rest of the extra cannot be imported. ``napari-tmunet`` then says in one line what
is missing and the pip command that installs it (exit 2), with no traceback; the
headless commands segment a shipped sample and train a model, loading no GUI package.
The missing Qt binding (napari alone installed) is said in the same way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from _paths import REPO

from napari_tmunet import launch

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPTS = PYPROJECT["project"]["scripts"]
SAMPLES = REPO / "napari_tmunet" / "samples"
# What the napari extra brings (napari and what napari itself installs) and Qt bindings
NO_EXTRA = ("napari", "npe2", "magicgui", "superqt", "vispy", "app_model", "qtpy")
NO_QT = ("PyQt5", "PyQt6", "PySide2", "PySide6")
GUI = NO_EXTRA + NO_QT

# Run SCRIPT's entry point (pyproject.toml's "module:function") with the modules named in
# BLOCKED (comma-separated) made unimportable, as when they are not installed; then print
# which of the GUI packages (comma-separated) were loaded after all.
RUN_WITHOUT = """
import importlib, sys
script, blocked, gui, *args = sys.argv[1:]
for name in blocked.split(","):
    sys.modules[name] = None
module, function = script.split(":")
sys.argv = [script, *args]
try:
    code = getattr(importlib.import_module(module), function)(args)
finally:
    loaded = sorted({m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}
                    & set(gui.split(",")))
    print("GUI loaded:", loaded)
sys.exit(code)
"""


def _run_without(script: str, blocked: tuple[str, ...], *args: str, cwd: Path):
    """``script`` (a console script's name) run with ``args`` where ``blocked`` cannot be
    imported; the finished process."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    blocking = [SCRIPTS[script], ",".join(blocked), ",".join(GUI)]
    command = [sys.executable, "-c", RUN_WITHOUT, *blocking, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_the_extra_the_launcher_names_installs_napari_and_qt():
    """The extra in the launcher's pip command is pyproject.toml's, and it brings napari
    and a Qt binding."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert launch.GUI_EXTRA in extras, sorted(extras)
    needs = " ".join(extras[launch.GUI_EXTRA])
    assert "napari" in needs and "PyQt5" in needs, needs
    assert launch.INSTALL_GUI == 'pip install "napari-tmunet[napari]"'


def test_the_napari_window_without_napari_or_qt_says_what_to_install(tmp_path):
    """napari-tmunet, plain, with a file and with --smoke: without the extra's packages,
    or with napari but no Qt binding, exit 2 and one line naming what is missing and the
    pip command; nothing else on stderr, no window, no traceback."""
    shutil.copy(SAMPLES / "colonoscopy_image.png", tmp_path / "frame.png")
    for blocked, missing in ((NO_EXTRA, "napari cannot be imported"), (NO_QT, "no Qt binding")):
        for args in ([], ["frame.png"], ["--smoke"]):
            done = _run_without("napari-tmunet", blocked, *args, cwd=tmp_path)
            assert done.returncode == 2, done.stderr[-3000:]
            (line,) = done.stderr.splitlines()
            assert line.startswith("napari-tmunet: error: ") and missing in line, line
            assert 'pip install "napari-tmunet[napari]"' in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png"]  # nothing written


def test_help_works_without_napari(tmp_path):
    """Every console script's --help prints its usage without napari."""
    for script in SCRIPTS:
        done = _run_without(script, NO_EXTRA + NO_QT, "--help", cwd=tmp_path)
        assert done.returncode == 0, (script, done.stderr[-3000:])
        assert done.stdout.startswith(f"usage: {script}"), (script, done.stdout[:300])


@pytest.mark.slow
def test_predict_and_train_work_without_napari_or_qt(tmp_path):
    """napari-tmunet-predict segments a shipped sample and napari-tmunet-train fits a
    small model on the nuclei sample's tiles, then tests it, with no GUI package
    importable; neither loads one."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "colonoscopy_image.png", images / "frame.png")
    blocked = NO_EXTRA + NO_QT
    predict = ["images", "masks", "--model", "colonoscopy", "--device", "cpu", "--no-progress"]
    done = _run_without("napari-tmunet-predict", blocked, *predict, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GUI loaded: []" in done.stdout, done.stdout[-2000:]
    assert (tmp_path / "masks" / "frame.png").stat().st_size > 0

    from trainer.commands import _write_demo_tiles

    tiles = _write_demo_tiles(tmp_path / "tiles")
    fit = [
        "fit", "--data", str(tiles), "--variant", "t", "--size", "32", "--steps", "2",
        "--batch-size", "4", "--device", "cpu", "--no-progress", "--no-efficiency",
        "--num-workers", "0", "--run-dir", "run",
    ]  # fmt: skip
    done = _run_without("napari-tmunet-train", blocked, *fit, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GUI loaded: []" in done.stdout, done.stdout[-2000:]
    run = tmp_path / "run"
    assert (run / "best.pt").is_file() and (run / "summary.json").is_file()
