"""The npe2 manifest: valid, installed with the package, and every python_name imports."""

from __future__ import annotations

import importlib
import importlib.resources
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from npe2 import PluginManifest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari.yaml"
PACKAGE = REPO / "napari_tmunet"


def _python_names() -> list[str]:
    manifest = PluginManifest.from_file(MANIFEST)
    return [command.python_name for command in manifest.contributions.commands]


@pytest.mark.parametrize("python_name", _python_names())
def test_python_name_imports(python_name):
    module_name, attribute = python_name.split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute))


def test_manifest_contributions():
    manifest = PluginManifest.from_file(MANIFEST)
    contributions = manifest.contributions
    assert manifest.name == "napari-tmunet"

    (reader,) = contributions.readers
    assert reader.accepts_directories
    # TIFF and dataset folders only: napari's own reader opens PNG/JPEG/BMP (no "Choose reader")
    assert set(reader.filename_patterns) == {"*.tif", "*.tiff"}
    (writer,) = contributions.writers
    assert [str(t) for t in writer.layer_types] == ["labels"]
    assert set(writer.filename_extensions) == {".png", ".tif", ".tiff"}
    # napari's Save dialog prefixes the plugin's name: "TM-UNet mask", not "TM-UNet TM-UNet mask"
    assert f"{manifest.display_name} {writer.display_name}" == "TM-UNet mask"
    assert {s.key for s in contributions.sample_data} == {"colonoscopy", "nuclei", "ultrasound"}
    assert {w.display_name for w in contributions.widgets} == {"Segment", "Metrics", "Fine-tune"}
    (item,) = contributions.menus["napari/layers/segment"]  # Layers > Segment
    assert item.command == "napari-tmunet.segment_widget"


@pytest.mark.gui
def test_layers_segment_menu_opens_the_segment_dock(make_napari_viewer):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    app = get_app_model()
    (item,) = [i for i in app.menus.get_menu("napari/layers/segment") if "tmunet" in i.command.id]
    assert item.command.title == "Segment (TM-UNet)"
    app.commands.execute_command(item.command.id).result()
    assert "Segment (TM-UNet)" in viewer.window.dock_widgets


@pytest.mark.gui
def test_menu_paths_in_the_docs_are_the_menus(make_napari_viewer):
    """Every *Menu > ... > Item* the README and docs name is in napari's menu bar as a user
    sees it (napari adds "(TM-UNet)" to each dock's item)."""
    import re

    viewer = make_napari_viewer()
    shown = set()

    def walk(menu, path):
        for action in menu.actions():
            text = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
            if text:
                shown.add((*path, text))
            if action.menu():
                walk(action.menu(), (*path, text))

    walk(viewer.window._qt_window.menuBar(), ())
    named = {}
    for doc in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        text = re.sub(r"\s+", " ", doc.read_text(encoding="utf-8"))
        for path in re.findall(r"\*((?:File|Layers|Plugins|Window) > [^*]+)\*", text):
            named[tuple(path.split(" > "))] = doc.name
    assert ("Plugins", "TM-UNet", "Segment (TM-UNet)") in named
    missing = {path: doc for path, doc in named.items() if path not in shown}
    assert not missing, f"menu paths named in the docs but not in napari: {missing}"


def test_package_carries_the_manifest():
    """The manifest the entry point names (napari_tmunet/napari.yaml, copied there by the
    build) is a file equal to the top-level one."""
    packaged = Path(str(importlib.resources.files("napari_tmunet") / "napari.yaml"))
    assert packaged.is_file() and not packaged.is_symlink(), (
        f"{packaged} is missing or a link: run `pip install -e .` (the build copies "
        "napari.yaml into the package)"
    )
    assert packaged.read_text(encoding="utf-8") == MANIFEST.read_text(encoding="utf-8"), (
        "napari_tmunet/napari.yaml differs from the top-level napari.yaml: run `pip install "
        "-e .` again after editing the manifest"
    )


def _source_copy(tmp_path: Path) -> Path:
    """The files a build reads, copied to ``tmp_path`` (without weights, to stay quick)."""
    copy = tmp_path / "src"
    copy.mkdir()
    skip = shutil.ignore_patterns("*.pt", "__pycache__", "*.egg-info", "napari.yaml")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "napari.yaml"):
        shutil.copy(REPO / name, copy / name)
    for folder in ("napari_tmunet", "trainer"):
        shutil.copytree(REPO / folder, copy / folder, ignore=skip)  # no packaged manifest yet
    for licence in REPO.glob("LICENSE*"):
        shutil.copy(licence, copy / licence.name)
    return copy


@pytest.mark.slow
def test_wheel_carries_the_manifest_and_the_licences(tmp_path):
    """``pip install .`` installs a wheel whose napari_tmunet/napari.yaml is the file, with
    the code's and the weights' and samples' licences declared and included."""
    copy = _source_copy(tmp_path)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(tmp_path / "dist"), str(copy)], check=True)
    (wheel,) = (tmp_path / "dist").glob("napari_tmunet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = archive.read("napari_tmunet/napari.yaml").decode("utf-8")
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert packaged == MANIFEST.read_text(encoding="utf-8")
    assert "License-Expression: BSD-3-Clause AND CC-BY-NC-SA-4.0" in metadata
    for licence in ("LICENSE", "napari_tmunet/weights/LICENSE", "napari_tmunet/samples/LICENSE"):
        assert f"License-File: {licence}" in metadata
    assert {"napari_tmunet/weights/LICENSE", "napari_tmunet/samples/LICENSE"} <= names
    assert "CC-BY-NC-SA-4.0" in (REPO / "napari_tmunet" / "weights" / "LICENSE").read_text()
    assert "Classifier: Development Status :: 3 - Alpha" in metadata


@pytest.mark.slow
def test_editable_install_carries_a_copy_of_the_manifest(tmp_path):
    """``pip install -e .`` (what .ci/setup.sh runs) copies the manifest into the package
    folder it maps ``napari_tmunet`` to."""
    copy = _source_copy(tmp_path)
    script = "import sys; from setuptools import build_meta; build_meta.build_editable(sys.argv[1])"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "dist")], cwd=copy, check=True)
    (wheel,) = (tmp_path / "dist").glob("napari_tmunet-*.editable-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        finder = next(n for n in archive.namelist() if n.endswith("_finder.py"))
        assert str(copy / "napari_tmunet") in archive.read(finder).decode("utf-8")
    packaged = copy / "napari_tmunet" / "napari.yaml"
    assert packaged.is_file() and not packaged.is_symlink()
    assert packaged.read_text(encoding="utf-8") == MANIFEST.read_text(encoding="utf-8")


def test_npe2_validate_installed_plugin():
    """What ``npe2 validate napari-tmunet`` runs, against the installed distribution."""
    from npe2.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["validate", "napari-tmunet"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output

    installed = PluginManifest.from_distribution("napari-tmunet")
    assert installed.model_dump() == PluginManifest.from_file(MANIFEST).model_dump()


def test_npe2_discovers_the_plugin():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-tmunet")
    assert manifest.display_name == "TM-UNet"
