"""A clinician's session in the Segment dock, on the threaded path (real napari viewer).

Images of different modalities one after the other must each get their own model; the
Image dropdown follows the selected layer; a broken checkpoint gives one message.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"
# a little below what the shipped models measure on their samples (docs/registry.md)
SAMPLE_MIN_DICE = {"nuclei": 0.75, "colonoscopy": 0.88, "ultrasound": 0.85}


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def open_sample(viewer, modality):
    before = set(id(layer) for layer in viewer.layers)
    viewer.open_sample(PLUGIN, modality)
    new = [layer for layer in viewer.layers if id(layer) not in before]
    image = next(layer for layer in new if layer.__class__.__name__ == "Image")
    viewer.layers.selection.active = image  # as after File > Open Sample
    return image


def segment_and_wait(qtbot, widget):
    widget.segment_button.native.click()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)


def test_two_modalities_one_after_the_other(make_napari_viewer, qtbot):
    """Colonoscopy, then ultrasound: each runs its own model, the dock says which and why."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    for modality in ("colonoscopy", "ultrasound"):
        image = open_sample(viewer, modality)
        assert widget.image.value is image  # followed the new layer by itself
        segment_and_wait(qtbot, widget)
        assert widget.status.value == "done", widget.status.value
        labels = widget.last_layer
        assert labels.metadata["image"] == image.name
        ran = registry.find_model(labels.metadata["model"])
        assert ran is not None and ran.modality == modality
        assert modality in widget.model_reason.value
        _, mask = load_sample(modality)
        assert dice(labels.data, mask) >= SAMPLE_MIN_DICE[modality]
        assert "objects" in widget.summary.value and ran.name in widget.summary.value
