"""A layer of a folder opened with the TM-UNet reader names its own file, not the folder:
napari's source path is the path it was given (the folder, for every layer of it), so the
file the reader read (its metadata) comes first. Metrics' pairing by file names and
Segment's error hint for napari's own folder stacks read it. Real CVC-ClinicDB frames."""

from __future__ import annotations

from pathlib import Path

import pytest
from _clinic_frames import CLINIC, FRAMES
from _paths import dataset_subset

from napari_tmunet._image_layers import layer_source_path
from napari_tmunet._metrics_widget import _image_names
from napari_tmunet._segment_widget import _folder_stack_hint

pytestmark = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no dataset at {CLINIC}")


def test_each_layer_of_a_dataset_folder_names_its_own_file(make_napari_viewer, tmp_path):
    root = dataset_subset(CLINIC, tmp_path / "clinic", FRAMES)
    viewer = make_napari_viewer()
    viewer.open(str(root), plugin="napari-tmunet")
    assert {layer.name for layer in viewer.layers} == {
        *FRAMES,
        *(f"{frame} mask" for frame in FRAMES),
    }
    for layer in viewer.layers:
        assert str(layer.source.path) == str(root)  # napari's: the folder for all of them
        path = Path(layer_source_path(layer))
        part = "masks" if layer.name.endswith(" mask") else "images"
        assert path.parent == root / part and path.stem == layer.name.split()[0]
        assert _folder_stack_hint(layer) == ""  # one file each, not napari's folder stack
    # the mask of frame 101 belongs to 101 by its file, and to no picture named "clinic"
    assert _image_names(viewer.layers["101 mask"]) == {"101"}


def test_napari_s_own_folder_stack_still_gets_its_hint(make_napari_viewer, tmp_path):
    root = dataset_subset(CLINIC, tmp_path / "clinic", FRAMES)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(root / "images"), plugin="napari", stack=True)
    assert layer_source_path(layer) == str(root / "images")
    assert "read as one stack" in _folder_stack_hint(layer)
