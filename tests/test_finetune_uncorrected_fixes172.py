"""Fine-tune on a Segment output nobody corrected (tester37 #4): a CPM-15 crop segmented
with the shipped nuclei model (the Segment dock's worker), its unedited output paired in
the Fine-tune dock. Before, Start trained the model on its own output and then spoke of
edits that did not exist. Now the pair says it is not corrected yet, and Start asks for a
corrected pair or a reference mask; either one lets it start."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import EXTRA, require
from _view import open_dock
from PIL import Image as Picture
from test_finetune_dock_fixes import start_small

from napari_tmunet._finetune_pairs import NOT_CORRECTED

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

CPM = EXTRA / "CPM15"
TILE = "image11"  # the tester's tile
CROP = np.s_[:192, :192]
BUSY_CPU_MS = 300_000  # the most a run may take on a shared, busy CPU (seconds when idle)


@pytest.fixture
def crop(tmp_path):
    """The CPM-15 tile's crop and its reference mask (instance ids), as arrays."""
    require(CPM / "images" / f"{TILE}.png", "TM-UNet nuclei")
    with Picture.open(CPM / "images" / f"{TILE}.png") as picture:
        image = np.asarray(picture.convert("RGB"))[CROP]
    with Picture.open(CPM / "masks" / f"{TILE}.png") as picture:
        mask = np.asarray(picture)[CROP]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def shown(widget) -> bool:
    return not widget.native.isHidden()


def test_an_unedited_segment_output_is_said_and_refused(
    crop, make_napari_viewer, qtbot, tmp_path, errors
):
    """The crop segmented, the Fine-tune dock opened: its one pair holds the unedited
    output and says it is not corrected yet. Start refuses, naming the pair and what to
    do; no run folder is made. A reference mask in the pair takes the note away; so does
    an erased nucleus in the output, and Start then starts (stopped at once)."""
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    image = viewer.add_image(crop[0], name=TILE, rgb=True)
    segment.image.value = image
    segment.model.value = "TM-UNet nuclei"
    segment.segment()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=BUSY_CPU_MS)
    output = segment.last_layer
    assert output.data.max() > 5, segment.summary.value

    tune = open_dock(viewer, "Fine-tune")
    (row,) = tune.rows
    assert (row.image.value, row.mask.value) == (image, output)
    assert shown(row.note) and row.note.value == NOT_CORRECTED
    run = tmp_path / "run"
    start_small(tune, run, steps=1)
    tune.start_button.native.click()
    assert tune.worker is None and not tune.running
    refusal = tune.status.value
    assert refusal.startswith("Nothing to learn: the masks are Segment's output"), refusal
    assert f"'{TILE} labels'" in refusal and "reference mask" in refusal
    assert errors == [refusal] and not run.exists()

    reference = viewer.add_labels(crop[1], name=f"{TILE} mask")  # not made by Segment
    row.mask.value = reference
    assert not shown(row.note)
    row.mask.value = output
    assert shown(row.note)

    ys, xs = np.nonzero(np.asarray(output.data) == output.data[output.data > 0][0])
    with output.block_history():  # as napari's mouse does: one stroke, one paint event
        output.fill((int(ys[0]), int(xs[0])), 0)  # erase one nucleus (the bucket)
    assert not shown(row.note)
    tune.start_button.native.click()
    assert tune.worker is not None, tune.status.value
    tune.stop_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=BUSY_CPU_MS)
    assert "Nothing to learn" not in tune.status.value
