"""A clinician's session in the Segment dock, on the threaded path (real napari viewer).

Images of different modalities one after the other must each get their own model; the
Image dropdown follows the selected layer; a broken checkpoint gives one message.
"""

from __future__ import annotations

import numpy as np
import pytest
from _shipped import SAMPLE_MIN_DICE, dice

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample
from napari_tmunet.postprocess import count_objects

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"


def open_sample(viewer, modality):
    before = set(id(layer) for layer in viewer.layers)
    viewer.open_sample(PLUGIN, modality)
    new = [layer for layer in viewer.layers if id(layer) not in before]
    image = next(layer for layer in new if layer.__class__.__name__ == "Image")
    viewer.layers.selection.active = image  # as after File > Open Sample
    return image


def segment_and_wait(qtbot, widget):
    widget.segment_button.native.click()
    # a checkpoint file chosen a moment ago is read first ("checking X.pt..."), then it runs
    qtbot.waitUntil(lambda: not widget.status.value.startswith("checking "), timeout=60_000)
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
        objects = count_objects(labels.data)  # "1 object", "2 objects"
        assert f": {objects} object{'s' if objects != 1 else ''}, " in widget.summary.value
        assert ran.name in widget.summary.value


def test_broken_checkpoint_gives_one_message_on_the_threaded_path(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """One notification, no re-raised traceback (pytest-qt fails on an error in a slot).
    Segment clicked while the file is read waits for its read and is refused with its
    words (tester28; the run started on it and failed)."""
    import napari_tmunet._segment_widget as module

    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    viewer.add_image(np.zeros((40, 40), np.uint8), name="blank")
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.model.value = module.CHECKPOINT_CHOICE
    widget.checkpoint.value = bad
    widget.segment_button.native.click()
    assert widget.status.value == "checking broken.pt..."
    qtbot.waitUntil(lambda: bool(messages), timeout=60_000)
    qtbot.wait(50)  # let any late signal arrive
    assert len(messages) == 1 and "broken.pt" in messages[0], messages
    assert widget.worker is None and widget.status.value == "" and widget.segment_button.enabled
    reason = widget.model_reason
    assert reason.value.startswith("Cannot run broken.pt: ")
    from napari_tmunet._widget_common import DOCK_MAX_MIN_WIDTH

    # the long message wraps: it never forces the dock (and the window) wider
    assert reason.native.wordWrap() and len(reason.value) > 60
    assert widget.native.minimumSizeHint().width() <= DOCK_MAX_MIN_WIDTH


def test_users_choice_is_per_modality_and_mode_follows_the_model(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    ultrasound = open_sample(viewer, "ultrasound")
    assert widget.model.value == "TM-UNet ultrasound"
    assert "chosen because this is a grey image" in widget.model_reason.value
    widget.model.value = "TM-UNet nuclei"  # the user's explicit choice for grey images
    assert "your pick for ultrasound images, this session only" in widget.model_reason.value
    assert widget.mode.value == "auto"  # not switched to tiles for good
    colonoscopy = open_sample(viewer, "colonoscopy")
    assert widget.model.value == "TM-UNet colonoscopy"  # another modality: its own model
    viewer.layers.selection.active = ultrasound
    assert widget.image.value is ultrasound and widget.model.value == "TM-UNet nuclei"
    widget.image.value = colonoscopy  # choosing in the dropdown still works
    assert widget.model.value == "TM-UNet colonoscopy"
    assert registry.remembered_models() == {}  # a model of another kind: this session only


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained TM-UNet t (input 64): for wiring, never for quality."""
    import torch

    from napari_tmunet.checkpoint import save_checkpoint
    from napari_tmunet.config import InputConfig, ModelConfig
    from napari_tmunet.model import build_model

    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    inputs = InputConfig.for_channels(3, size=(64, 64), threshold=0.5)
    return save_checkpoint(path, build_model(config), config, inputs)


def test_finetune_preselects_the_edited_segment_output(make_napari_viewer, qtbot, tiny_checkpoint):
    """The image's reference mask before an unedited output (the model's own prediction
    teaches it nothing); the output the user edited before both, and before a newer one."""
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    _, tune = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Fine-tune")
    segment.model.value = "Checkpoint file..."  # chosen before any image: holds for the next
    segment.checkpoint.value = tiny_checkpoint
    image = open_sample(viewer, "colonoscopy")
    assert segment.model_reason.value.startswith("Runs tiny.pt: your choice")
    reference = next(layer for layer in viewer.layers if layer.name.endswith("mask"))
    assert tune.rows[0].mask.value is reference  # the only Labels layer so far
    segment_and_wait(qtbot, segment)
    first = segment.last_layer
    assert tune.rows[0].mask.value is reference  # not the unedited output
    first.brush_size = 12
    first.paint((20, 20), 1)  # the user's correction
    segment_and_wait(qtbot, segment)  # the edited output is kept; a new one is added
    second = segment.last_layer
    assert second is not first and second in viewer.layers
    assert tune.rows[0].image.value is image and tune.rows[0].mask.value is first
    assert tune.start_model() == (str(tiny_checkpoint), "tiny.pt")  # the model that made it
    pairs = tune._layer_pairs()
    edited = pairs[0].edited()
    assert edited is not None and 0 < edited.sum() <= np.pi * 7**2


def test_eta_needs_a_rate_first():
    import time

    from napari_tmunet._widget_common import Eta

    eta = Eta()
    assert "0:00:00" not in eta.text(1, 100, "steps") and "estimating" in eta.text(1, 100)
    time.sleep(0.25)
    text = eta.text(11, 100, "steps")
    assert text.startswith("11/100 steps · ETA 0:00:0"), text  # ~2.2 s left
    assert eta.text(100, 100) == "100/100"


def test_docks_fit_a_1366x768_screen_with_napari_panels(make_napari_viewer):
    from napari_tmunet._widget_common import DOCK_MAX_MIN_HEIGHT, DOCK_MAX_MIN_WIDTH

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei")
    docks = [
        viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name=name)[1]
        for name in ("Segment", "Fine-tune", "Metrics")
    ]
    for dock in docks:
        hint = dock.native.minimumSizeHint()
        assert hint.width() <= DOCK_MAX_MIN_WIDTH and hint.height() <= DOCK_MAX_MIN_HEIGHT
        assert dock.native.sizeHint().width() <= 2 * DOCK_MAX_MIN_WIDTH
    # the whole window, napari's layer controls and list included, on a laptop screen
    window = viewer.window._qt_window.minimumSizeHint()
    assert window.width() <= 1366 and window.height() <= 768, window
    controls = ("ComboBox", "PushButton", "SpinBox", "FloatSpinBox", "FloatSlider", "CheckBox")
    for dock in docks:  # every control says what it does
        for widget in dock.body:
            if widget.widget_type in (*controls, "FileEdit"):
                assert widget.tooltip, f"{type(dock).__name__}.{widget.label}"


def test_threshold_updates_the_labels_live_without_the_network(
    make_napari_viewer, qtbot, tiny_checkpoint
):
    """1000 x 1000 image: moving the threshold re-derives the labels in well under 1 s."""
    from napari_tmunet.postprocess import LabelOptions, derive_labels

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    image, _ = load_sample("colonoscopy")
    big = np.ascontiguousarray(np.kron(image, np.ones((4, 3, 1), np.uint8))[:1000, :1000])
    layer = viewer.add_image(big, name="big")
    widget.model.value = "Checkpoint file..."
    widget.checkpoint.value = tiny_checkpoint
    widget.mode.value = "resize"
    segment_and_wait(qtbot, widget)
    labels = widget.last_layer
    probability = labels.metadata["tmunet_probability"]
    assert probability.shape == (1000, 1000) and probability.dtype == np.uint8
    worker = widget.worker
    threshold = round(float(np.median(probability)) / 255, 2)  # about half the image
    widget.threshold.value = threshold  # as the slider does (steps of 0.01)
    qtbot.waitUntil(lambda: labels.metadata["threshold"] == pytest.approx(threshold), timeout=5000)
    threshold = labels.metadata["threshold"]
    assert widget.worker is worker  # no new network run
    expected = derive_labels(probability, LabelOptions(threshold=threshold))
    np.testing.assert_array_equal(labels.data, expected)
    assert 0.2 < expected.mean() < 0.8
    assert widget.last_rederive_seconds < 0.5, widget.last_rederive_seconds
    assert "model not run again" in widget.status.value

    widget.min_size.value = 50  # the other label settings re-derive too
    qtbot.waitUntil(lambda: labels.metadata["label_options"]["min_size"] == 50, timeout=5000)
    assert widget.last_rederive_seconds < 0.5, widget.last_rederive_seconds

    labels.paint((10, 10), 1 - int(labels.data[10, 10]))  # an edit is never overwritten
    painted = np.array(labels.data)
    widget.threshold.value = 0.9
    qtbot.wait(300)
    np.testing.assert_array_equal(labels.data, painted)
    assert "was edited" in widget.status.value and layer is widget.image.value


def test_empty_result_is_warned_about(make_napari_viewer, qtbot, monkeypatch, tiny_checkpoint):
    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    widget.model.value = "Checkpoint file..."
    widget.checkpoint.value = tiny_checkpoint
    viewer.add_image(np.zeros((64, 80), np.uint8), name="dark")
    widget.threshold.value = 0.99  # the user's threshold: nothing passes it
    segment_and_wait(qtbot, widget)
    assert not widget.last_layer.data.any()
    assert len(warnings) == 1 and "found nothing" in warnings[0] and "'dark'" in warnings[0]
    assert widget.summary.value.startswith("dark: 0 objects, 0 px (0.0% of the image)")


def test_model_defaults_come_from_the_checkpoint():
    from napari_tmunet._segment_jobs import model_defaults

    defaults = {
        entry.modality: model_defaults(registry.load_model(entry.name, "cpu"))
        for entry in registry.available_models()
    }
    plain = {"threshold": 0.5, "min_confidence": 0.0}
    assert defaults["nuclei"] == {**plain, "mode": "tile", "instances": True}
    assert defaults["colonoscopy"] == {**plain, "mode": "resize", "instances": False}
    assert defaults["ultrasound"]["mode"] == "resize"


def test_a_full_hd_frame_is_resized_like_the_frames_the_model_learnt(make_napari_viewer, qtbot):
    """A 1350 x 1080 colonoscopy frame (Kvasir's size) runs whole, resized, as the model
    was trained; tiles of it lose the polyp's context (Dice 0.56 against 0.76 on a Kvasir
    frame when frames over 1024 px were tiled); larger photos too (test_large_frames)."""
    from skimage.transform import resize

    from napari_tmunet._segment_jobs import LARGE_IMAGE

    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    image, mask = load_sample("colonoscopy")
    frame = resize(image, (1080, 1350), order=1, preserve_range=True).astype(np.uint8)
    mask = resize(mask > 0, (1080, 1350), order=0) > 0
    widget.image.value = viewer.add_image(frame, name="full HD frame", rgb=True)
    assert widget.mode.value == "auto"
    segment_and_wait(qtbot, widget)
    assert widget.last_layer.metadata["mode"] == "resize" and LARGE_IMAGE >= 3840  # 4K video
    assert dice(widget.last_layer.data, mask) > SAMPLE_MIN_DICE["colonoscopy"]


def test_an_image_over_the_pixel_budget_gives_its_banded_mask(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, tiny_checkpoint
):
    """A TIFF over the pixel budget opens lazily and is segmented in bands: its mask becomes
    a Labels layer (the tiles' work is not thrown away), equal to the in-memory tile-mode
    mask; the label settings then say they cannot update it instead of re-deriving."""
    import tifffile

    from napari_tmunet.checkpoint import load_checkpoint
    from napari_tmunet.data.budget import MAX_PIXELS_ENV
    from napari_tmunet.inference import run_to_completion, segment

    image, _ = load_sample("colonoscopy")
    image = np.ascontiguousarray(image[:200, :240])
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb")
    monkeypatch.setenv(MAX_PIXELS_ENV, "20000")  # 200 x 240 is over it

    in_memory = segment(
        image, load_checkpoint(tiny_checkpoint), threshold=0.5, mode="tile", min_confidence=0
    )
    probability = run_to_completion(in_memory).probability
    threshold = round(float(np.median(probability)), 2)  # an untrained model: neither 0 nor 1
    expected = probability > threshold

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.multiscale  # read lazily, as a whole slide is
    widget.image.value = layer
    widget.model.value = "Checkpoint file..."
    widget.checkpoint.value = tiny_checkpoint
    widget.mode.value = "tile"
    widget.threshold.value = threshold
    widget.add_probability.value = True
    segment_and_wait(qtbot, widget)

    labels = widget.last_layer
    assert labels is not None and labels in viewer.layers, widget.status.value
    assert widget.status.value == "done"
    assert [type(la).__name__ for la in viewer.layers] == ["Image", "Labels"]  # no probability
    assert labels.metadata["tmunet_probability"] is None
    assert labels.data.shape == (200, 240) and 0.05 < expected.mean() < 0.95  # a real mask
    assert np.mean(labels.data != expected) < 1e-3

    before = np.array(labels.data)
    widget.threshold.value = 0.9
    qtbot.waitUntil(lambda: "segmented in bands" in widget.status.value, timeout=5000)
    np.testing.assert_array_equal(labels.data, before)


def test_the_summary_is_in_view_after_a_run_in_a_1366x768_window(make_napari_viewer, qtbot):
    """The launcher's layout (Metrics and Segment tabbed, 1366 x 768) on a 16-bit grey
    scan, whose model reason is long: when the run ends the dock scrolls to the summary
    with its warning ("may not suit this image"), the status and the disclaimer under it
    (tester20 #7)."""
    from _view import in_view

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    image, _ = load_sample("ultrasound")
    layer = viewer.add_image(image.astype(np.uint16) * 257, name="scan16")
    viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Metrics")
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name=PLUGIN, widget_name="Segment", tabify=True
    )
    widget.image.value = layer
    qtbot.waitUntil(lambda: window.width() == 1366 and widget.native.isVisible())
    qtbot.wait(100)  # the docks' layout settles
    # the disclaimer was below the settings; since the run's texts span the dock and the
    # empty progress row is hidden (tester36 #7) it may be in view before the run

    segment_and_wait(qtbot, widget)
    assert "may not suit this image" in widget.summary.value
    shown = (widget.summary, widget.status, widget.disclaimer)
    # the scroll follows Qt's layout (about half a second; longer on a busy machine)
    qtbot.waitUntil(lambda: all(in_view(widget.body, label) for label in shown), timeout=10_000)
