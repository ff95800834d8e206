"""The npe2 manifest: valid, installed with the package, and every python_name imports."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from npe2 import PluginManifest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari.yaml"
PACKAGE = REPO / "napari_tmunet"

# Modules declared in the manifest before they are written, and why.
NOT_YET = {
    "napari_tmunet._segment_widget": "Segment widget lands with the plugin issue",
}


def _python_names() -> list[str]:
    manifest = PluginManifest.from_file(MANIFEST)
    return [command.python_name for command in manifest.contributions.commands]


def _param(python_name: str):
    module = python_name.split(":")[0]
    missing = module in NOT_YET and not (PACKAGE / f"{module.rsplit('.', 1)[1]}.py").exists()
    mark = pytest.mark.xfail(
        missing, reason=NOT_YET.get(module, ""), raises=ImportError, strict=True
    )
    return pytest.param(python_name, marks=mark, id=python_name)


@pytest.mark.parametrize("python_name", [_param(name) for name in _python_names()])
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
    assert set(reader.filename_patterns) == {
        "*.tif",
        "*.tiff",
        "*.png",
        "*.jpg",
        "*.jpeg",
        "*.bmp",
    }
    (writer,) = contributions.writers
    assert [str(t) for t in writer.layer_types] == ["labels"]
    assert set(writer.filename_extensions) == {".png", ".tif", ".tiff"}
    assert {s.key for s in contributions.sample_data} == {"colonoscopy", "nuclei", "ultrasound"}
    assert {w.display_name for w in contributions.widgets} == {"Segment", "Metrics", "Fine-tune"}


def test_package_carries_the_manifest():
    """napari_tmunet/napari.yaml (what the entry point names) is the top-level file."""
    packaged = PACKAGE / "napari.yaml"
    assert packaged.is_file()
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
