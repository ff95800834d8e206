"""Metrics dock fix (helper 151): a reference that names no picture (a mask file "gt.tif")
paired with a Segment output is a guess whenever another picture of that size is open, not
only when another mask of that size is (real CVC-ClinicDB frames 20 and 22, the shipped
colonoscopy model, Xvfb)."""

from __future__ import annotations

import shutil

import pytest
from _paths import DATASETS
from _view import open_dock

from napari_tmunet import registry

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "masks" / "22.tif").is_file(), reason="shared CVC-ClinicDB not present"
)


@needs_clinic
def test_a_nameless_reference_with_another_picture_of_its_size_open_is_a_guess(
    make_napari_viewer, qtbot, tmp_path
):
    """Picture 20 segmented, and 22's mask opened as "gt" (a name of no picture): alone
    with picture 20 the pair needs no note; once picture 22 (same size) is open, "gt" may
    be its mask, so the note says the pair is a guess (it scored Dice 0.34 silently). A
    reference known to be 20's (masks/20.tif) still needs no note."""
    from napari_tmunet._metrics_widget import PAIRED_BY_SIZE

    assert registry.model_for_modality("colonoscopy") is not None  # shipped in the package
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    [image] = viewer.open(str(CLINIC / "images" / "20.png"), plugin="napari")
    segment.image.value = image
    segment.segment_button.native.click()
    qtbot.waitUntil(lambda: not segment.status.value.startswith("checking "), timeout=60_000)
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=180_000)
    shutil.copy(CLINIC / "masks" / "22.tif", tmp_path / "gt.tif")
    [gt] = viewer.open(str(tmp_path / "gt.tif"), plugin="napari-tmunet")
    widget = open_dock(viewer, "Metrics")
    viewer.layers.selection.active = viewer.layers["20 labels"]

    assert widget.prediction.value is viewer.layers["20 labels"]
    assert widget.reference.value is gt
    assert widget.pair_note.value == ""  # picture 20 alone: gt can only be its mask

    viewer.open(str(CLINIC / "images" / "22.png"), plugin="napari")
    guess = PAIRED_BY_SIZE.format(reference="'gt'", prediction="'20 labels'")
    assert widget.pair_note.value == guess

    widget.compute_button.native.click()
    assert widget._worker is not None  # the threaded path
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    assert widget.results[-1]["reference"] == "gt"
    assert widget.results[-1]["dice"] < 0.5  # 22's mask indeed: the guess was wrong
    assert widget.pair_note.value == guess  # still said beside the scores

    # a reference known to be 20's: no guess, whatever else is open
    [known] = viewer.open(str(CLINIC / "masks" / "20.tif"), plugin="napari-tmunet")
    widget.reference.value = known
    assert widget.pair_note.value == ""


@needs_clinic
def test_a_prediction_of_no_known_picture_is_a_guess_once_two_pictures_are_open(
    make_napari_viewer,
):
    """A Labels layer painted by hand ("hand", naming no picture) and a reference "gt":
    with picture 20 alone open they are taken for its pair; with 22 open too, a guess."""
    from napari_tmunet._metrics_widget import PAIRED_BY_SIZE
    from napari_tmunet.data.images import read_mask

    viewer = make_napari_viewer()
    viewer.open(str(CLINIC / "images" / "20.png"), plugin="napari")
    mask = read_mask(CLINIC / "masks" / "20.tif")[0]
    viewer.add_labels(mask[::-1].copy(), name="hand")
    viewer.add_labels(mask, name="gt")
    widget = open_dock(viewer, "Metrics")
    widget.prediction.value, widget.reference.value = viewer.layers["hand"], viewer.layers["gt"]
    assert widget.pair_note.value == ""

    viewer.open(str(CLINIC / "images" / "22.png"), plugin="napari")
    assert widget.pair_note.value == PAIRED_BY_SIZE.format(reference="'gt'", prediction="'hand'")
