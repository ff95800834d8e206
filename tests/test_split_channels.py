"""The Segment dock on one channel of a colour image split into layers (napari's
``channel_axis``: same-shape layers in channel colours, blended additively), on the
threaded path in a real viewer (tester23 D6): the dock notes that it looks like one
channel of a colour image and how to segment the colour image; a plain grey ultrasound
image gets no such note."""

from __future__ import annotations

import numpy as np
import pytest
from test_segment_choices import segment, segment_dock

from napari_tmunet import registry
from napari_tmunet._dock_texts import SPLIT_CHANNEL
from napari_tmunet._sample_data import load_sample

pytestmark = pytest.mark.gui

ULTRASOUND = "TM-UNet ultrasound"


@pytest.fixture(autouse=True)
def _shipped_models():
    if registry.find_model(ULTRASOUND) is None:
        pytest.skip("the ultrasound model is needed")


def test_one_channel_of_a_split_colour_image_gets_a_note(make_napari_viewer, qtbot, notices):
    """The colonoscopy sample split with channel_axis: each of its 3 layers is run as a
    grey image with the note; the grey ultrasound sample, opened beside them, gets none."""
    colour, _ = load_sample("colonoscopy")
    grey, _ = load_sample("ultrasound")
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    channels = viewer.add_image(
        np.moveaxis(colour, -1, 0), channel_axis=0, name=["col R", "col G", "col B"]
    )
    scan = viewer.add_image(grey, name="scan")

    widget.image.value = scan
    reason = widget.model_reason.value
    assert reason.startswith(f"Runs {ULTRASOUND}: chosen because this is a grey image"), reason
    assert "split into layers" not in reason, reason

    for layer in channels:
        widget.image.value = layer
        note = SPLIT_CHANNEL.format(name=repr(layer.name))
        assert widget.model_reason.value.endswith(f"; {note}."), widget.model_reason.value
    segment(qtbot, widget)  # still runs, as asked
    assert widget.last_layer.data.shape == colour.shape[:2]

    widget.image.value = scan  # the note goes with the layer
    assert "split into layers" not in widget.model_reason.value
