"""Segment dock fixes (helper 144, tester33 #1): with many pictures open, a Segment click
and a picture selected touch only the layers whose visibility changes. napari rebuilds its
scene graph (all layers) on every ``visible`` set, even one to the same value, so setting
every other picture's hidden layers again froze the window for seconds with 20-40
pictures open (CPU, Xvfb, a CVC-ClinicDB folder opened with the plugin's reader, the
shipped colonoscopy model; the times are in bench/many_layers_gui.py, not here)."""

from __future__ import annotations

import pytest
from _paths import DATASETS, dataset_subset
from test_segment_choices import segment_dock
from test_segment_widget import wait_done

from napari_tmunet import registry

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

CLINIC = DATASETS / "CVC-ClinicDB"
FRAMES = ("1", "101", "200", "271", "402", "500")  # one size (384 x 288), several scenes


@pytest.fixture(autouse=True)
def _clinic_and_model():
    if not (CLINIC / "images").is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    assert registry.find_model("TM-UNet colonoscopy") is not None  # shipped in the package


def shown(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.visible]


def test_segment_and_selection_set_visible_only_on_layers_that_change(
    make_napari_viewer, qtbot, tmp_path
):
    """Six pictures of a dataset folder (picture and mask each; the first shown): a Segment
    click on the one shown emits no ``visible`` event (the others are hidden already; main
    hid each other picture's mask again: 5 events); selecting another picture emits one
    event per layer that is shown or hidden by it, and selecting it again none."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    root = dataset_subset(CLINIC, tmp_path / "clinic", FRAMES)
    viewer.open(str(root), plugin="napari-tmunet")
    assert shown(viewer) == ["1", "1 mask"]
    events = []
    for layer in viewer.layers:
        layer.events.visible.connect(lambda event: events.append(event.source.name))

    widget.segment_button.native.click()
    assert events == []
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget, timeout=600_000)
    assert widget.status.value == "done", widget.status.value
    labels = widget._output_of(viewer.layers["1"]).labels
    labels.events.visible.connect(lambda event: events.append(event.source.name))
    assert shown(viewer) == ["1", "1 mask", labels.name]

    before = {layer.name: layer.visible for layer in viewer.layers}
    viewer.layers.selection.active = viewer.layers["271"]  # the user selects it in the list
    assert shown(viewer) == ["271", "271 mask"]
    changed = sorted(n for n, v in before.items() if viewer.layers[n].visible != v)
    assert changed == sorted(["1", "1 mask", labels.name, "271", "271 mask"])
    assert sorted(events) == changed  # main: 15 (every other picture's mask, twice)

    events.clear()
    viewer.layers.selection.active = viewer.layers["271 mask"]
    viewer.layers.selection.active = viewer.layers["271"]
    assert events == [] and shown(viewer) == ["271", "271 mask"]
