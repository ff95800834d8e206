"""A Segment result saved as a TIFF reopens paired with its picture (fix-176).

The writer keeps a result's model, image and, for a channel's result, its file's picture
(``data.images.ORIGIN_NAMES``) in one JSON description; the reader gives them back, so a
channel's result reopened in a later session pairs with its file's mask in Metrics, as
it did before saving (fix-168). A file saved before the picture was kept opens as then;
a result segmented in bands (no foreground kept) still keeps its names.

1. Threaded path, real data: a folder of two 2-channel files (channels of a real MoNuSeg
   tile, test_channels_launcher_fixes162's fixtures) with their real masks, opened with
   the TM-UNet reader; b's second channel picked, segmented, the result saved with napari's
   save (File > Save Selected Layers, the TM-UNet writer), everything closed; a new window
   opens the folder and the saved result with the TM-UNet reader: the result names b's
   picture, and Metrics pairs it with b's mask, by itself and after a's mask was selected
   (main: with itself, "the only mask of its picture"). Saved again as "b labels.tif"
   beside b.tif, it reopens with the folder over b's first channel, still the second
   channel's result (main: named and made of "b [ch 0]").
2. The files' rules: an older file without the picture opens as it did; a result
   without a kept foreground keeps its names; a mask no model made keeps none.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_channels_launcher_fixes162 as fixes162
import tifffile
from _paths import require
from _view import open_dock
from test_segment_choices import segment

from napari_tmunet._reader import PICTURE_KEY, read_images
from napari_tmunet._writer import write_labels
from napari_tmunet.data.images import ORIGIN_KEY, write_mask
from napari_tmunet.postprocess import SAVED_PREDICTION_KEY

pytestmark = pytest.mark.gui

channels, truth = fixes162.channels, fixes162.truth  # fixtures: real MoNuSeg channels, mask
PLUGIN = "napari-tmunet"
NUCLEI = "TM-UNet nuclei"


def channel_folder(folder, channels, truth):
    """a.tif and b.tif (2 uint16 channels each, ImageJ CYX) with their masks beside them."""
    fixes162.save_channels(folder / "a.tif", channels[:2], imagej=True)
    fixes162.save_channels(folder / "b.tif", channels[2:], imagej=True)
    fixes162.save_mask(folder / "a_mask.png", truth)
    fixes162.save_mask(folder / "b_mask.png", truth[:, ::-1])
    return folder


def metrics_pair(viewer, widget, selected: str) -> tuple[str, str, str]:
    """The Metrics dock's (prediction, reference, note shown) once ``selected`` is the
    layer list's active layer."""
    viewer.layers.selection.active = viewer.layers[selected]
    note = "" if widget.pair_note.native.isHidden() else widget.pair_note.value
    return widget.prediction.value.name, widget.reference.value.name, note


def test_a_channels_saved_result_reopens_paired_with_its_files_mask(
    make_napari_viewer, qtbot, channels, truth, tmp_path
):
    require(fixes162.TILE, model=NUCLEI)
    folder = channel_folder(tmp_path / "folder", channels, truth)
    viewer = make_napari_viewer()
    segment_dock = open_dock(viewer, "Segment")
    viewer.open(str(folder), plugin=PLUGIN)
    viewer.layers.selection.active = viewer.layers["b [ch 1]"]  # the channel picked
    assert segment_dock.image.value.name == "b [ch 1]"
    segment_dock.model.value = NUCLEI  # nuclei bright on dark: the shipped grey model finds none
    segment(qtbot, segment_dock)  # the dock's worker thread
    result = viewer.layers["b [ch 1] labels"]
    assert result.metadata[PICTURE_KEY] == "b"
    labels = np.asarray(result.data)
    assert labels.any()

    saved = tmp_path / "results" / "b [ch 1] labels.tif"
    saved.parent.mkdir()
    viewer.layers.selection = {result}
    assert viewer.layers.save(str(saved), selected=True, plugin=PLUGIN) == [str(saved)]
    viewer.layers.clear()

    later = make_napari_viewer()  # the next day: a new window, nothing kept in memory
    later.open(str(folder), plugin=PLUGIN)
    (reopened,) = later.open(str(saved), plugin=PLUGIN)
    assert reopened.name == "b [ch 1] labels"
    np.testing.assert_array_equal(reopened.data, labels)
    meta = reopened.metadata
    assert (meta["image"], meta[PICTURE_KEY]) == ("b [ch 1]", "b")
    assert meta["model"] == result.metadata["model"] == NUCLEI
    np.testing.assert_array_equal(meta[SAVED_PREDICTION_KEY], labels > 0)  # unedited

    metrics = open_dock(later, "Metrics")
    pair = ("b [ch 1] labels", "b [ch 0] mask", "")
    assert metrics_pair(later, metrics, "b [ch 1] labels") == pair
    metrics_pair(later, metrics, "a [ch 0] mask")  # another picture's mask, then back
    assert metrics_pair(later, metrics, "b [ch 1] labels") == pair

    # saved again, beside its file as its "labels" (a mask family of b's own), the folder
    # reopened: it lies over b's first channel, yet stays the second channel's result
    later.layers.selection = {reopened}
    beside = folder / "b labels.tif"
    assert later.layers.save(str(beside), selected=True, plugin=PLUGIN) == [str(beside)]
    later.layers.clear()
    later.open(str(folder), plugin=PLUGIN)
    again = later.layers["b [ch 1] labels"]
    assert (again.metadata["path"], again.metadata["image"]) == (str(beside), "b [ch 1]")
    np.testing.assert_array_equal(again.metadata[SAVED_PREDICTION_KEY], labels > 0)
    assert metrics_pair(later, metrics, "b [ch 1] labels") == (*pair[:1], "b [ch 0]_mask", "")


def written_origin(path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return tif.shaped_metadata[0][ORIGIN_KEY]


def test_saved_results_origin_rules(tmp_path, truth):
    """An older file (its origin without the picture) opens as then: its image's name,
    model and foreground; a result segmented in bands (no foreground kept) keeps its
    model, image and picture (main: nothing); a mask that no model made keeps no origin."""
    labels = truth.astype(np.uint8)
    named = {"model": "TM-UNet nuclei", "model_label": "TM-UNet nuclei", "image": "b [ch 1]"}

    older = write_mask(tmp_path / "older.tif", labels, origin={**named, "prediction": truth})
    assert PICTURE_KEY not in written_origin(older)
    ((_, kwargs, kind),) = read_images(str(older))
    assert kind == "labels" and PICTURE_KEY not in kwargs["metadata"]
    assert {k: kwargs["metadata"][k] for k in named} == named
    np.testing.assert_array_equal(kwargs["metadata"][SAVED_PREDICTION_KEY], truth)

    banded = {**named, PICTURE_KEY: "b", "tmunet_probability": None, "label_options": {}}
    meta = {"name": "b [ch 1] labels", "metadata": banded}
    (path,) = write_labels(str(tmp_path / "banded.tif"), labels, meta)
    ((_, kwargs, _),) = read_images(path)
    assert kwargs["metadata"][PICTURE_KEY] == "b" and kwargs["metadata"]["image"] == "b [ch 1]"
    assert kwargs["metadata"]["model"] == "TM-UNet nuclei"
    assert SAVED_PREDICTION_KEY not in kwargs["metadata"]  # its edits unknown

    reference = {"name": "b mask", "metadata": {"image": "b [ch 0]", PICTURE_KEY: "b"}}
    (path,) = write_labels(str(tmp_path / "reference.tif"), labels, reference)
    with tifffile.TiffFile(path) as tif:
        assert ORIGIN_KEY not in tif.shaped_metadata[0]
