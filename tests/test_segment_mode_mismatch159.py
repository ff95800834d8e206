"""A Mode chosen other than the one the model was trained for is said (tester35 #1).

The nuclei model was trained on tiles at full resolution (its checkpoint's inference
mode). Told to resize a 1000 x 1000 MoNuSeg tile to its 256 x 256 input it shrinks the
nuclei 3.9x and gives Dice 0.52 where tiles give 0.82, and the dock said nothing: its
note under Mode spoke only for images over 4096 px. Now the note under Mode, and the
run's summary line, say it whenever the Mode chosen is not the model's own, naming the
one to choose.
"""

from __future__ import annotations

import pytest
from _paths import DATASETS
from _shipped import dice

from napari_tmunet import registry
from napari_tmunet._segment_jobs import AUTO
from napari_tmunet.data.images import read_mask

MONUSEG = DATASETS / "MoNuSeg"
TILE = "TCGA-2Z-A9J9-01A-01-TS1"  # a 1000 x 1000 H&E tile (the tester's)
NUCLEI = "TM-UNet nuclei"
MISMATCH = "the model was trained on tiles at full resolution: choose Mode tile (or auto)"


@pytest.mark.gui
@pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"no datasets at {MONUSEG}")
def test_resize_chosen_for_the_nuclei_model_is_said_before_and_after_the_run(
    make_napari_viewer, qtbot
):
    """The tile opened with the TM-UNet reader picks the nuclei model (trained on tiles);
    Mode "auto" or "tile": no note. Mode "resize": the note under Mode says how it runs
    and to choose tile; Segment (threaded) resizes it, and its summary line and layer
    metadata say the same; the result is the poor one the note warns of."""
    assert registry.load_model(NUCLEI, "cpu").inference_mode == "tile"  # the checkpoint's
    viewer = make_napari_viewer()
    (image,) = viewer.open(MONUSEG / "images" / f"{TILE}.tif", plugin="napari-tmunet")
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    widget.image.value = image
    assert widget.model.value == NUCLEI and widget.mode.value == AUTO
    assert widget.mode_note.value == "" and widget.mode_note.native.isHidden()
    widget.mode.value = "tile"
    assert widget.mode_note.value == "" and widget.mode_note.native.isHidden()
    widget.mode.value = "resize"
    assert widget.mode_note.value == (
        f"1000 x 1000 image: resized to the model's 256 x 256 input, though {MISMATCH}"
    )
    assert not widget.mode_note.native.isHidden()
    widget.segment_button.native.click()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert widget.status.value == "done", widget.status.value
    labels = widget.last_layer
    assert labels.metadata["mode"] == "resize" and labels.metadata["mode_mismatch"] == MISMATCH
    line = widget.summary.value
    assert line.startswith(f"{image.name}: ") and "(resize, " in line
    assert line.endswith(f"; {MISMATCH}")
    mask, _ = read_mask(MONUSEG / "masks" / f"{TILE}.png")
    assert dice(labels.data, mask) < 0.7  # the tester's 0.52: the note is not idle
    widget.mode.value = AUTO
    assert widget.mode_note.value == ""
