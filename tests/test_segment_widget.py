"""The Segment dock in a real napari viewer (pytest-qt, Xvfb through pytest-xvfb)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from _paths import DATASETS, DSB_GREY, REPO, dataset_subset
from _shipped import SAMPLE_MIN_DICE, dice

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample
from napari_tmunet.postprocess import count_objects

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"
MONUSEG_TILE = DATASETS / "MoNuSeg" / "images" / "TCGA-18-5592-01Z-00-DX1.tif"
UDIAT = DATASETS / "UDIAT"
CLINIC = DATASETS / "CVC-ClinicDB"
# The canvas must show label colour at the predicted pixels, hence at most of the reference
# mask that the prediction covers.
SCREEN_MIN_MASK_COVERAGE = 0.4


@pytest.fixture
def registered():
    entries = registry.available_models()
    assert entries, "no shipped model installed (napari_tmunet/weights/*.pt)"
    return entries[0]


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    return viewer, widget


def open_sample(viewer, modality):
    viewer.open_sample(PLUGIN, modality)
    image = next(layer for layer in viewer.layers if layer.__class__.__name__ == "Image")
    return image


def choose_sample(viewer, widget, registered, probability=False):
    """Open the registered model's sample and set the dock to segment it with that model."""
    image = open_sample(viewer, registered.modality)
    widget.image.value = image
    widget.model.value = registered.name
    widget.add_probability.value = probability
    return image


def wait_done(qtbot, widget, timeout=120_000):
    """Wait until a click's run ended (one on a checkpoint file chosen a moment ago starts
    once the file is read: "checking X.pt...")."""
    qtbot.waitUntil(lambda: not widget.status.value.startswith("checking "), timeout=timeout)
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def segment_watching(widget, qtbot, read) -> list:
    """Click Segment and sample ``read()`` every 10 ms on the GUI thread until it is done."""
    from qtpy.QtCore import QTimer

    seen = []
    timer = QTimer()
    timer.timeout.connect(lambda: seen.append(read()))
    timer.start(10)
    widget.segment()
    wait_done(qtbot, widget)
    timer.stop()
    return seen


def shown(widget) -> bool:
    """Not hidden by the widget itself (the test viewer's window is never shown)."""
    return not widget.native.isHidden()


def test_dock_opens_through_the_manifest(dock):
    from napari_tmunet._segment_widget import CHECKPOINT_CHOICE, DISCLAIMER, SegmentWidget

    viewer, widget = dock
    assert isinstance(widget, SegmentWidget)
    assert widget.disclaimer.value == DISCLAIMER == "Research use only, not a medical device."
    values = [value for value in widget.model.choices]
    assert values[-1] == CHECKPOINT_CHOICE
    assert values[:-1] == [e.name for e in registry.available_models()]
    widget.model.value = CHECKPOINT_CHOICE
    assert shown(widget.checkpoint) and not shown(widget.provisional_label)
    viewer.add_image(np.zeros((20, 30), np.uint8), name="grey")
    assert [layer.name for layer in widget.image.choices] == ["grey"]
    assert widget.image.value is viewer.layers["grey"]


def test_provisional_models_are_labelled(make_napari_viewer, monkeypatch, tmp_path):
    """A registry entry marked provisional is named so in the list and warned about."""
    shipped = registry.available_models()[0]
    (tmp_path / shipped.file).symlink_to(shipped.path)
    entry = {"name": "Interim", "modality": shipped.modality, "file": shipped.file}
    listing = {"models": [dict(entry, provisional=True), dict(entry, name="Final")]}
    (tmp_path / "registry.json").write_text(json.dumps(listing))
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    labels = [widget.model.native.itemText(i) for i in range(widget.model.native.count())]
    assert labels[:2] == ["Interim (provisional)", "Final"]
    widget.model.value = "Interim"
    assert not shown(widget.checkpoint) and shown(widget.provisional_label)
    assert "provisional model" in widget.provisional_label.value
    widget.model.value = "Final"
    assert not shown(widget.provisional_label)


def test_segment_sample_end_to_end(registered, dock, qtbot):
    """Worker thread, progress, Labels layer with the image's scale/translate and metadata."""
    viewer, widget = dock
    image = open_sample(viewer, registered.modality)
    image.scale = (0.5, 0.25)
    image.translate = (10.0, -3.0)
    widget.image.value = image
    widget.model.value = registered.name
    widget.add_probability.value = True
    widget.segment()
    assert widget.worker is not None  # ran off the GUI thread
    wait_done(qtbot, widget)
    labels = widget.last_layer
    assert labels is not None and labels.name == f"{image.name} labels"
    _, mask = load_sample(registered.modality)
    assert labels.data.shape == mask.shape
    assert dice(labels.data, mask) >= SAMPLE_MIN_DICE[registered.modality]
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    meta = labels.metadata
    assert meta["model"] == registered.name and meta["mode"] == "resize"
    assert meta["threshold"] == pytest.approx(0.5) and "uint8 / 255" in meta["mapping"]
    prob = viewer.layers[f"{image.name} probability"]
    # kept compact (uint8, p * 255): the labels are exactly its pixels above the threshold
    assert prob.data.shape == mask.shape and prob.data.dtype == np.uint8
    np.testing.assert_array_equal(labels.data > 0, prob.data > 0.5 * 255)
    objects = count_objects(labels.data)  # "1 object", "2 objects"
    assert f": {objects} object{'s' if objects != 1 else ''}, " in widget.summary.value
    assert registered.name in widget.summary.value
    assert widget.status.value == "done"


def test_the_dock_says_it_compiles_kernels_before_the_first_image(
    registered, dock, qtbot, monkeypatch
):
    """On a GPU the worker warms the model up first; the dock says so meanwhile."""
    import time

    from napari_tmunet import _segment_jobs

    note = "compiling GPU kernels (first run only)..."
    warmed = []
    monkeypatch.setattr(_segment_jobs, "warm_up_note", lambda checkpoint: note)

    def slow_warm_up(checkpoint):
        time.sleep(0.5)
        warmed.append(threading.current_thread().name)

    monkeypatch.setattr(_segment_jobs, "warm_up", slow_warm_up)
    viewer, widget = dock
    widget.image.value = open_sample(viewer, registered.modality)
    widget.model.value = registered.name
    seen = segment_watching(widget, qtbot, lambda: widget.status.value)
    # once in the run (the dock's early warm-ups run on threads of their own)
    assert note in seen and len([t for t in warmed if t != "tmunet-prepare"]) == 1
    assert seen.index(note) < max(i for i, s in enumerate(seen) if s.startswith("segmenting"))
    assert widget.status.value == "done"


@pytest.mark.skipif(not MONUSEG_TILE.is_file(), reason="shared MoNuSeg data not present")
def test_event_loop_runs_during_segment_and_cancel_stops_it(registered, dock, qtbot):
    from napari.layers import Labels

    from napari_tmunet.data.images import read_image

    viewer, widget = dock
    tile = read_image(MONUSEG_TILE)
    image = viewer.add_image(tile, name="monuseg")
    widget.image.value = image
    # an H&E tile picks the nuclei model, which was trained on native-resolution crops:
    # tile mode, so the nuclei are not shrunk
    assert registry.find_model(widget.model.value).modality == "nuclei"
    assert widget.mode.value == "auto"  # the model's own: tiles
    widget.model.value = registered.name  # fewer, larger tiles: a quicker test
    widget.mode.value = "tile"
    widget.batch_size = 1  # one progress report per tile

    ticks = segment_watching(widget, qtbot, lambda: widget.progress_text.value)
    # GUI events were processed while tiles were being computed on the worker thread.
    progress_ticks = sorted(set(s for s in ticks if "/" in s))
    assert len(progress_ticks) >= 3, ticks[:10]
    assert any("ETA 0:" in s for s in progress_ticks), progress_ticks
    assert widget.last_layer.data.shape == (1000, 1000)
    assert widget.last_layer.metadata["mode"] == "tile"

    # Cancel: a stack of frames, stopped after the first progress report.
    n_labels = sum(isinstance(layer, Labels) for layer in viewer.layers)
    stack = viewer.add_image(np.stack([tile] * 6), name="stack", rgb=True)
    widget.image.value = stack
    widget.segment()
    qtbot.waitUntil(lambda: widget.status.value.startswith("segmenting stack"), timeout=60_000)
    worker = widget.worker
    widget.cancel_button.clicked.emit()
    wait_done(qtbot, widget, timeout=30_000)
    assert worker.abort_requested and widget.status.value == "cancelled"
    assert sum(isinstance(layer, Labels) for layer in viewer.layers) == n_labels
    assert widget.segment_button.enabled and not widget.cancel_button.enabled


def test_cancel_stops_the_forward_pass_under_way(registered, dock, qtbot, monkeypatch):
    """Cancel during a forward pass ends that pass part way: none ends after the click
    and none starts (a busy CPU takes seconds per batch of tiles; tester12C #7)."""
    import time

    from napari.layers import Labels

    from napari_tmunet import inference

    viewer, widget = dock
    frame, _ = load_sample(registered.modality)
    stack = np.stack([frame] * 4)  # resize mode: one forward pass per frame
    widget.image.value = viewer.add_image(stack, name="stack", rgb=frame.ndim == 3)
    widget.model.value = registered.name
    widget.mode.value = "resize"
    passes: list[list[str]] = []  # per forward pass: "start", then "end" if it ended
    real_forward = inference.forward_logits

    def watched(model, x, amp=True):
        passes.append(["start"])
        if len(passes) == 2:  # hold the second pass until Cancel is clicked
            deadline = time.monotonic() + 60
            while not widget.worker.abort_requested and time.monotonic() < deadline:
                time.sleep(0.01)
        out = real_forward(model, x, amp)
        passes[-1].append("end")
        return out

    monkeypatch.setattr(inference, "forward_logits", watched)
    # its tooltip says so (tester30 #2: it said "after the current forward pass")
    assert "the forward pass under way stops part way" in widget.cancel_button.tooltip
    widget.segment()
    qtbot.waitUntil(lambda: len(passes) >= 2, timeout=120_000)
    widget.cancel_button.clicked.emit()
    wait_done(qtbot, widget, timeout=60_000)
    assert widget.status.value == "cancelled"
    assert passes == [["start", "end"], ["start"]]  # the second one stopped part way
    assert not any(isinstance(layer, Labels) for layer in viewer.layers)


def test_edited_output_survives_a_second_segment(registered, dock, monkeypatch):
    monkeypatch.setenv("NAPARI_TMUNET_INLINE", "1")
    from napari.layers import Labels

    viewer, widget = dock
    image = open_sample(viewer, registered.modality)
    widget.image.value = image
    widget.model.value = registered.name

    def outputs():
        return [layer for layer in viewer.layers if isinstance(layer, Labels)][1:]  # not mask

    widget.segment()
    first = widget.last_layer
    assert outputs() == [first]
    widget.threshold.value = 0.7
    widget.segment()  # unedited: replaced in place
    assert outputs() == [first] and first.metadata["threshold"] == pytest.approx(0.7)

    # A paint stroke (emits events.paint) marks it edited: a new layer is added.
    first.paint((5, 5), 3)
    painted = np.array(first.data)
    widget.segment()
    second = widget.last_layer
    assert second is not first and outputs() == [first, second]
    np.testing.assert_array_equal(first.data, painted)

    # An in-place change without events is caught by the content hash.
    second.data[:3, :3] = 7
    widget.segment()
    third = widget.last_layer
    assert third is not second and (second.data[:3, :3] == 7).all()
    assert len(outputs()) == 3

    # Segment all image layers: one output per image (probability maps are not inputs).
    viewer.add_image(np.asarray(image.data)[::2, ::2], name="half")
    widget.add_probability.value = True
    widget.segment_all()
    n_layers = len(viewer.layers)
    widget.segment_all()
    assert len(viewer.layers) == n_layers  # replaced in place, nothing new
    half = np.asarray(viewer.layers["half"].data)
    assert viewer.layers["half labels"].data.shape == half.shape[:2]


def test_a_cmyk_jpeg_opened_by_napari_is_warned_about_and_segmented_as_rgb(
    dock, qtbot, monkeypatch, tmp_path
):
    """The bundled colonoscopy frame saved as a CMYK JPEG and opened as napari opens it by
    default (its own reader: the inks as (H, W, 4) RGBA, drawn dark): choosing it warns
    once, naming it, that the picture shown is not what the model gets and how to open it
    in RGB; Segment (worker thread) gives the model Pillow's RGB of the file: the labels
    of the RGB picture, with the conversion said in the result line."""
    from PIL import Image as Picture

    import napari_tmunet._segment_widget as module
    from napari_tmunet._dock_texts import CMYK_AS_STORED

    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    colour, _ = load_sample("colonoscopy")
    path = tmp_path / "frame cmyk.jpg"
    Picture.fromarray(colour).convert("CMYK").save(path, quality=95)
    with Picture.open(path) as stored:
        as_rgb = np.asarray(stored.convert("RGB"))
    viewer, widget = dock
    (inks,) = viewer.open(str(path))
    assert inks.rgb and inks.data.shape == (*as_rgb.shape[:2], 4)
    widget.image.value = inks
    assert warnings == [f"'frame cmyk': {CMYK_AS_STORED}."]
    assert widget.model.value == "TM-UNet colonoscopy"
    widget.segment()
    wait_done(qtbot, widget)
    from_inks = np.asarray(widget.last_layer.data)
    assert "CMYK image: converted to RGB" in widget.summary.value
    widget.image.value = viewer.add_image(as_rgb, name="frame rgb")
    widget.segment()
    wait_done(qtbot, widget)
    np.testing.assert_array_equal(from_inks, widget.last_layer.data)
    assert from_inks.any() and len(warnings) == 1  # Segment did not warn again


def test_errors_become_notifications(dock, monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_TMUNET_INLINE", "1")
    import napari_tmunet._segment_widget as module

    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    viewer, widget = dock
    widget.segment()  # no image
    viewer.add_image(np.zeros((40, 40), np.uint8), name="blank")
    widget.image.value = viewer.layers["blank"]
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.model.value = module.CHECKPOINT_CHOICE
    widget.checkpoint.value = bad
    widget.segment()
    assert messages and "broken.pt" in messages[-1] and "checkpoint" in messages[-1]
    # read when chosen (tester28 D3): the reason line says it, Segment refused it unrun
    assert widget.model_reason.value.startswith("Cannot run broken.pt: ")
    assert "blank labels" not in viewer.layers and not widget.status.value.startswith("done")
    assert widget.segment_button.enabled


def test_cuda_chosen_without_a_gpu_is_said_at_once_and_ends_the_run_in_plain_words(
    registered, dock, qtbot, monkeypatch, notices, caplog
):
    """Device "cuda" on a machine without one: the dock says so as soon as it is chosen
    (status and a warning naming 'auto' and 'cpu'; CUDA stays offered). Segment then
    ends the run with that sentence, as Fine-tune does: no class name, no traceback
    logged (superqt drops a generator's RuntimeError as its own deletion: the dock once
    waited for ever). Choosing CPU clears the note, and the next run segments."""
    import torch

    import napari_tmunet._segment_widget as module

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    viewer, widget = dock
    widget.image.value = open_sample(viewer, registered.modality)
    choices = list(widget.device.choices)
    widget.device.value = "cuda"
    assert list(widget.device.choices) == choices and "cuda" in choices  # still offered
    said = "device='cuda' but CUDA is not available (no GPU, or a CPU-only torch build)"
    assert widget.status.value.startswith(said) and "choose 'auto' or 'cpu'" in widget.status.value
    assert notices["warning"] and said in notices["warning"][-1]
    with caplog.at_level("WARNING", logger="napari_tmunet"):
        widget.segment()
        assert widget.worker is not None  # the threaded path
        wait_done(qtbot, widget, timeout=30_000)
    assert widget.status.value == f"failed: {said}; choose 'auto' or 'cpu'."
    assert messages == [f"TM-UNet segmentation {widget.status.value}"]
    assert "Error" not in messages[-1]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert widget.segment_button.enabled and not widget.cancel_button.enabled
    widget.device.value = "cpu"
    assert widget.status.value == ""
    widget.segment()
    wait_done(qtbot, widget)
    assert widget.last_layer is not None and widget.status.value == "done"


def test_bad_input_is_told_in_plain_words(registered, dock, qtbot, monkeypatch):
    """A (T, Z, Y, X, RGB) layer: one sentence naming the layer and what to do, without
    an exception class name (tester12C #10)."""
    import napari_tmunet._segment_widget as module

    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    viewer, widget = dock
    frame, _ = load_sample("colonoscopy")
    layer = viewer.add_image(np.stack([np.stack([frame] * 3)] * 2), name="t_z_rgb", rgb=True)
    widget.image.value = layer
    widget.model.value = registered.name
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert messages and messages[-1].startswith("Segmenting t_z_rgb failed: image of shape")
    assert "Error" not in messages[-1] and "save each time point" in messages[-1]
    # plain words on what to do in the GUI, no console command (fix-74)
    assert "console" not in messages[-1] and "viewer." not in messages[-1]
    assert widget.status.value.startswith("t_z_rgb failed: image of shape")


def test_an_unexpected_error_keeps_its_type_and_is_logged(
    registered, dock, qtbot, monkeypatch, caplog
):
    """A failure that is not about the input: "Type: message" on the dock, traceback logged."""
    import napari_tmunet._segment_widget as module
    from napari_tmunet import inference

    def broken(model, x, amp=True):
        raise RuntimeError("boom in the forward pass")

    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    monkeypatch.setattr(inference, "forward_logits", broken)
    viewer, widget = dock
    choose_sample(viewer, widget, registered)
    with caplog.at_level("WARNING", logger="napari_tmunet"):
        widget.segment()
        wait_done(qtbot, widget)
    assert messages and messages[-1].endswith("failed: RuntimeError: boom in the forward pass")
    logged = [r for r in caplog.records if r.name == "napari_tmunet" and r.exc_info]
    assert logged and "broken" in caplog.text  # the traceback names the raising function


def test_a_folder_stacked_by_napari_says_how_to_open_it(dock, qtbot, monkeypatch, tmp_path):
    """napari's own reader makes a folder of pictures of several sizes one stack of the
    first one's size; Segment fails on the next frame and says which reader to choose."""
    from PIL import Image as Picture

    import napari_tmunet._segment_widget as module

    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    folder = tmp_path / "my clinic images"
    folder.mkdir()
    for name in ("colonoscopy", "ultrasound"):  # 2 sizes, in this order
        Picture.fromarray(load_sample(name)[0]).save(folder / f"{name}.png")
    viewer, widget = dock
    (stack,) = viewer.open(str(folder))  # napari's reader, as viewer.open defaults to
    widget.image.value = stack
    widget.segment()
    wait_done(qtbot, widget)
    assert messages and f"is the folder {folder}" in messages[-1]
    assert "choose napari-tmunet as its reader" in messages[-1]


def test_smoke_screenshot_shows_labels_where_the_mask_is(tmp_path, registered):
    """``python -m napari_tmunet --smoke`` on X (xcb): the figure is coloured at the mask."""
    shot, figure, report = tmp_path / "shot.png", tmp_path / "figure.png", tmp_path / "r.json"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    command = [
        sys.executable,
        "-m",
        "napari_tmunet",
        "--smoke",
        "--sample",
        registered.modality,
        "--device",
        "cpu",
        "--screenshot",
        str(shot),
        "--figure",
        str(figure),
        "--report",
        str(report),
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    checks = json.loads(report.read_text())
    assert checks["dice"] >= SAMPLE_MIN_DICE[registered.modality]
    assert 0 < checks["seconds_second_click"] and 0 < checks["seconds_first_click"] < 300

    from napari_tmunet.data.images import read_image

    image, mask = load_sample(registered.modality)
    window = read_image(shot)
    assert window.ndim == 3 and window.shape[0] > 300 and window.shape[1] > 500
    rendered = read_image(figure)[..., :3].astype(int)  # canvas at the image's pixel grid
    assert rendered.shape[:2] == mask.shape
    raw = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    coloured = np.abs(rendered - raw.astype(int)).sum(-1) > 12
    assert coloured[mask > 0].mean() >= SCREEN_MIN_MASK_COVERAGE
    assert coloured[mask == 0].mean() < coloured[mask > 0].mean()


def test_model_follows_the_image_and_the_users_choice_is_remembered(
    make_napari_viewer, monkeypatch, tmp_path
):
    """A model of the image's own kind that the user picks is kept for such images, also
    in a later session (one of another kind is not: tests/test_segment_choices.py)."""
    shipped = registry.available_models()[0]
    (tmp_path / shipped.file).symlink_to(shipped.path)
    entry = {"name": "Final", "modality": shipped.modality, "file": shipped.file}
    listing = {"models": [entry, dict(entry, name="Second")]}
    (tmp_path / "registry.json").write_text(json.dumps(listing))
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    widget.image.value = open_sample(viewer, shipped.modality)
    assert widget.model.value == "Final"  # sensible default
    widget.model.value = "Second"  # the user's explicit choice for such images
    assert registry.remembered_models() == {shipped.modality: "Second"}

    later = make_napari_viewer()  # a later session
    _, fresh = later.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    fresh.image.value = open_sample(later, shipped.modality)
    assert fresh.model.value == "Second"
    assert f"your earlier choice for {shipped.modality} images" in fresh.model_reason.value


@pytest.mark.skipif(not DSB_GREY.is_file(), reason="no DSB2018 stage-1 test images")
def test_model_reason_says_grey_is_only_a_hint_of_ultrasound(dock, tmp_path, monkeypatch):
    """The ultrasound sample: the grey model, said to be for breast ultrasound only. A
    fluorescence image, as 8-bit PNG or 16-bit TIFF: the same model (the user may choose
    another), not called a match, said to look like fluorescence, and one warning each."""
    import imageio.v3 as iio
    import tifffile

    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer, widget = dock
    widget.image.value = open_sample(viewer, "ultrasound")
    assert widget.model_reason.value == (
        "Runs TM-UNet ultrasound: chosen because this is a grey image; trained on breast "
        "ultrasound (BUSI, UDIAT) only, not meant for other grey images such as fluorescence."
    )
    assert not warnings
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, iio.imread(DSB_GREY)[..., 0].astype(np.uint16) * 257)
    (cells,) = viewer.open(path, plugin=PLUGIN)
    widget.image.value = cells
    assert cells.data.dtype == np.uint16 and widget.model.value == "TM-UNet ultrasound"
    reason = widget.model_reason.value
    assert reason.startswith("Runs TM-UNet ultrasound: the only shipped model for grey images")
    assert "looks like fluorescence microscopy (" in reason and "holds 16-bit data" in reason
    assert "no shipped model is trained for fluorescence; check the result, or fine-tune" in reason
    assert len(warnings) == 1 and warnings[0].startswith("'cells': TM-UNet ultrasound is")
    (png,) = viewer.open(DSB_GREY, plugin="napari")  # 8-bit grey as RGBA, as many exports
    widget.image.value = png
    assert widget.model.value == "TM-UNet ultrasound"
    reason = widget.model_reason.value
    assert "looks like fluorescence microscopy (" in reason and "16-bit" not in reason
    assert "no shipped model is trained for fluorescence" in reason
    assert len(warnings) == 2 and "looks like fluorescence" in warnings[1]


def grey_16bit(viewer, name="scan16"):
    """The ultrasound sample as 16-bit data (not an ultrasound export: those are 8-bit)."""
    image, _ = load_sample("ultrasound")
    grey = image if image.ndim == 2 else image[..., 0]
    return viewer.add_image(grey.astype(np.uint16) * 257, name=name)


@pytest.mark.skipif(not DSB_GREY.is_file(), reason="no DSB2018 stage-1 test images")
def test_choosing_the_grey_model_keeps_the_images_own_warnings(make_napari_viewer, monkeypatch):
    """Picking a model for grey (ultrasound) images decides what runs on them, but a
    fluorescence or a 16-bit image is still warned about and called what it looks like, in
    this session and the next (tester11 #1)."""
    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    widget.image.value = open_sample(viewer, "ultrasound")
    widget.model.value = "TM-UNet colonoscopy"  # the user tries another model, then goes back
    widget.model.value = "TM-UNet ultrasound"
    assert registry.remembered_models() == {"ultrasound": "TM-UNet ultrasound"}
    assert not warnings
    (cells,) = viewer.open(DSB_GREY, plugin="napari")
    widget.image.value = cells
    assert widget.model.value == "TM-UNet ultrasound"  # the choice decides what runs
    reason = widget.model_reason.value
    assert reason.startswith("Runs TM-UNet ultrasound: your choice for ultrasound images, but")
    assert "looks like fluorescence microscopy (" in reason
    assert len(warnings) == 1 and "no shipped model is trained for fluorescence" in warnings[0]

    later = make_napari_viewer()  # a later session: the choice comes from the settings
    _, fresh = later.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    (cells,) = later.open(DSB_GREY, plugin="napari")
    fresh.image.value = cells
    assert fresh.model.value == "TM-UNet ultrasound"
    assert "your earlier choice for ultrasound images, but" in fresh.model_reason.value
    assert "looks like fluorescence microscopy (" in fresh.model_reason.value
    assert len(warnings) == 2 and "looks like fluorescence" in warnings[1]
    fresh.image.value = grey_16bit(later)
    assert fresh.model.value == "TM-UNet ultrasound"
    assert "this image holds 16-bit data (ultrasound exports are 8-bit)" in fresh.model_reason.value
    assert len(warnings) == 3 and "'scan16': TM-UNet ultrasound is your earlier" in warnings[2]


def test_a_16bit_image_is_warned_about_once_and_its_summary_says_so(dock, qtbot, monkeypatch):
    """A 16-bit grey image is warned about when chosen, not again on its Segment click, and
    its summary line says the model may not suit it (tester11 #2)."""
    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer, widget = dock
    widget.image.value = grey_16bit(viewer)
    assert widget.model.value == "TM-UNet ultrasound"
    assert len(warnings) == 1 and "holds 16-bit data" in warnings[0]
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    assert "TM-UNet ultrasound may not suit this image" in widget.summary.value
    assert len(warnings) == 1, warnings


def test_a_16bit_colour_image_is_warned_about_once_too(dock, qtbot, monkeypatch):
    """A 16-bit colour image (the H&E sample as 14-bit data) is warned about when chosen,
    as a 16-bit grey one is (tester18 #3: no warning at all), not again on its Segment
    click, and its summary says the model may not suit it."""
    import napari_tmunet._segment_widget as module

    if registry.model_for_modality("nuclei") is None:
        pytest.skip("no shipped nuclei model")
    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer, widget = dock
    colour, _ = load_sample("nuclei")
    layer = viewer.add_image(colour[:128, :128].astype(np.uint16) * 64, name="he14", rgb=True)
    widget.image.value = layer
    assert widget.model.value == "TM-UNet nuclei"
    reason = widget.model_reason.value
    assert reason.startswith("Runs TM-UNet nuclei: chosen because this looks like H&E"), reason
    assert "holds 16-bit data (the shipped models were trained on 8-bit pictures)" in reason
    assert warnings == [f"'he14': TM-UNet nuclei is {reason[len('Runs TM-UNet nuclei: ') : -1]}."]
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    assert "TM-UNet nuclei may not suit this image" in widget.summary.value
    assert len(warnings) == 1, warnings


def test_a_channel_first_colour_tiff_opened_by_napari_says_how_to_open_it(
    dock, qtbot, monkeypatch, tmp_path
):
    """The colonoscopy sample as a colour TIFF stored channel-first (photometric RGB,
    planar), opened with napari's own reader: 3 grey frames. The dock does not call it a
    grey image: it says that the model runs on each colour channel as on a grey image and
    how to open the file in colour, warns once (not again on Segment), and the summary
    says the model may not suit it (tester18 #2). 3 frames without a file get no hint
    (tester19 E), nor does a grey 3-page TIFF."""
    import tifffile

    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    colour, _ = load_sample("colonoscopy")
    planes = np.ascontiguousarray(colour.transpose(2, 0, 1))  # (3, H, W)
    path = tmp_path / "polyp chw.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
    viewer, widget = dock
    (layer,) = viewer.open(str(path), plugin="napari")
    assert layer.data.shape == planes.shape and not layer.rgb
    widget.image.value = layer
    reason = widget.model_reason.value
    assert "chosen because this is a grey image" not in reason, reason
    assert "'polyp chw' is a channel-first colour TIFF" in reason, reason
    assert "File > Open with Plugin > TM-UNet reads it in colour" in reason
    assert len(warnings) == 1 and "'polyp chw' is a channel-first colour TIFF" in warnings[0], (
        warnings
    )
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    assert "may not suit this image" in widget.summary.value, widget.summary.value
    assert len(warnings) == 1, warnings

    unknown = viewer.add_image(planes, name="three frames")  # no file behind it
    widget.image.value = unknown
    assert "chosen because this is a grey image" in widget.model_reason.value
    assert "channel-first" not in widget.model_reason.value
    grey = tmp_path / "three scans.tif"
    tifffile.imwrite(grey, planes, photometric="minisblack")
    (scans,) = viewer.open(str(grey), plugin="napari")
    assert scans.data.shape == planes.shape
    widget.image.value = scans
    assert "channel-first" not in widget.model_reason.value
    assert len(warnings) == 1, warnings


def test_checkpoint_choice_without_a_file_says_to_choose_one(dock):
    """Model "Checkpoint file..." with no file: the explanation asks for a file instead of
    giving the reason of the model shown before (tester11 #3)."""
    from napari_tmunet._segment_widget import CHECKPOINT_CHOICE

    viewer, widget = dock
    widget.image.value = open_sample(viewer, "colonoscopy")
    assert widget.model_reason.value.startswith("Runs TM-UNet colonoscopy: chosen because")
    widget.model.value = CHECKPOINT_CHOICE
    assert not widget.checkpoint.value or not os.path.isfile(widget.checkpoint.value)
    assert widget.model_reason.value == (
        "Choose a checkpoint file (made by napari-tmunet-train or the Fine-tune dock) to run it."
    )


def test_quitting_during_the_early_warm_up_lets_it_finish(registered):
    """Python waits for the warm-up before it exits: a daemon thread still in torch at
    exit aborted a test process (exit 134, "terminate called without an active
    exception")."""
    code = (
        "import atexit\n"
        "from napari_tmunet import _segment_jobs\n"
        f"thread = _segment_jobs.prepare_early({registered.name!r}, 'cpu')\n"
        "atexit.register(lambda: print('warming up at exit:', thread.is_alive()))\n"
    )  # the main thread ends at once, in the middle of the warm-up
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("warming up at exit: False")


def test_the_dock_warms_its_model_up_and_a_first_click_waits_for_it(
    registered, dock, qtbot, monkeypatch
):
    """An image in the dock has its model loaded and warmed up on a background thread (no
    image, nothing warmed: the model shown then may not be the one used); a click during
    that warm-up waits for it (no second load beside it) and then segments."""
    from napari_tmunet import _segment_jobs

    viewer, widget = dock
    assert widget._prepared == {}
    widget.image.value = open_sample(viewer, registered.modality)
    key = (str(widget.model.value), str(widget.device.value))
    assert list(widget._prepared) == [key] and key[0] == registered.name
    widget._prepared[key].join(120)  # the dock's own warm-up, with the real warm_up
    assert not widget._prepared[key].is_alive()
    warmed = registry.load_model(*key)  # what it left in the registry's cache

    release, entered, warmed_again = threading.Event(), threading.Event(), []
    real_warm_up = _segment_jobs.warm_up

    def slow_warm_up(checkpoint):
        entered.set()
        release.wait(60)
        warmed_again.append(checkpoint)
        real_warm_up(checkpoint)

    monkeypatch.setattr(_segment_jobs, "warm_up", slow_warm_up)
    widget.device.value = "cpu" if key[1] != "cpu" else "auto"  # another device: warmed again
    new_key = (str(widget.model.value), str(widget.device.value))
    assert entered.wait(60)
    widget.segment()
    qtbot.wait(300)
    assert widget.running and widget._defaults == {}  # no model loaded: waiting for it
    release.set()
    wait_done(qtbot, widget)
    assert widget.last_layer is not None and widget.status.value == "done"
    assert warmed_again and warmed_again[0] is registry.load_model(*new_key)
    assert registry.load_model(*key) is warmed  # the first warm-up's model stays cached


def test_the_probability_map_never_becomes_the_input(registered, dock, qtbot):
    """The probability map goes below its labels (on top it washes the mask out) and the
    labels stay the active layer (the brush paints there); the Image chooser stays on the
    user's image, so the next Segment segments that image again, not the map."""
    viewer, widget = dock
    image = choose_sample(viewer, widget, registered, probability=True)
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    probability = viewer.layers[f"{image.name} probability"]
    labels = widget.last_layer
    names = [layer.name for layer in viewer.layers]
    assert names.index(probability.name) == names.index(labels.name) - 1
    assert viewer.layers.selection.active is labels
    assert widget.image.value is image
    names = [layer.name for layer in viewer.layers]
    widget.segment()
    wait_done(qtbot, widget)
    assert widget.image.value is image and widget.status.value == "done"
    assert [layer.name for layer in viewer.layers] == names  # replaced in place
    viewer.layers.selection.active = probability  # the user looks at the map
    assert widget.image.value is image


def test_outlines_show_on_a_large_image_fitted_to_the_window(make_napari_viewer, qtbot):
    """With "show outlines only", a 4000 x 3000 frame (the colonoscopy sample enlarged) seen
    whole in the window: the outline is drawn thick enough that most of its length is on
    screen (an image pixel is about a tenth of a screen pixel here; a 2-pixel outline
    mostly falls between screen pixels)."""
    from PIL import Image as Picture
    from scipy import ndimage

    from napari_tmunet._segment_outputs import PREDICTION_COLOUR

    sample, _ = load_sample("colonoscopy")
    big = np.asarray(Picture.fromarray(sample).resize((4000, 3000), Picture.BILINEAR))
    viewer = make_napari_viewer(show=True)  # drawn: the canvas is read back
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    image = viewer.add_image(big, name="big frame")
    widget.image.value = image
    widget.model.value = "TM-UNet colonoscopy"
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    labels = widget.last_layer
    mask = np.asarray(labels.data) > 0
    assert mask.any()
    widget.outlines.value = True
    image.visible = False  # the outline on black
    viewer.reset_view()
    qtbot.wait(300)
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    cyan = np.array([int(PREDICTION_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    shown = (np.abs(canvas - cyan * labels.opacity).sum(-1) < 30).sum()  # on black
    edge = (mask & ~ndimage.binary_erosion(mask)).sum()  # outline length, image pixels
    camera = getattr(viewer, "scene", viewer).camera  # napari 0.9 moved it
    on_screen = edge * camera.zoom * float(labels.scale[-1])  # in screen pixels
    assert camera.zoom < 0.25 and labels.contour > 2
    # 0.83 here; 0.23 with napari's 2-pixel outline
    assert shown >= 0.6 * on_screen, (shown, on_screen, labels.contour)


def test_rederived_instances_are_called_instances(registered, dock, qtbot):
    """The status after a re-derive uses the summary's noun for the output kind."""
    from napari_tmunet.words import plural

    viewer, widget = dock
    widget.image.value = open_sample(viewer, registered.modality)
    widget.model.value = registered.name
    widget.output.value = "instances"
    widget.segment()
    wait_done(qtbot, widget)
    assert " instance" in widget.summary.value
    widget.threshold.value = 0.6  # re-derived once the user pauses
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    objects = count_objects(widget.last_layer.data)
    assert f": {plural(objects, 'instance')} at threshold 0.60" in widget.status.value
    assert "object" not in widget.status.value


def test_instance_label_1_is_not_coloured_like_a_reference_mask(registered, dock, qtbot):
    """napari colours label 1 of every Labels layer alike (dark red); instances are shifted
    by one colour, so a one-object result is not mistaken for the reference mask."""
    from napari.layers import Labels

    viewer, widget = dock
    image = open_sample(viewer, registered.modality)
    mask = next(layer for layer in viewer.layers if isinstance(layer, Labels))
    widget.image.value = image
    widget.model.value = registered.name
    widget.output.value = "instances"
    widget.segment()
    wait_done(qtbot, widget)
    labels = widget.last_layer
    one = np.array([1])
    reference = mask.colormap.map(one)
    assert not np.allclose(labels.colormap.map(one), reference)
    widget.output.value = "binary"
    widget.rederive()
    qtbot.waitUntil(lambda: not widget.deriving, timeout=10_000)
    widget.output.value = "instances"  # back from the binary colours
    widget.rederive()
    qtbot.waitUntil(lambda: not widget.deriving, timeout=10_000)
    assert labels.data.dtype != np.uint8 and not np.allclose(labels.colormap.map(one), reference)


def test_an_image_closed_during_segment_all_gets_no_labels(registered, dock, qtbot, monkeypatch):
    """Segment all with another image left to do goes on when one image is deleted while
    it is segmented: that image's result is dropped, the other's is added, and the status
    says why."""
    from napari_tmunet import _segment_jobs

    note, entered, release = "preparing...", threading.Event(), threading.Event()

    def held_warm_up(checkpoint):  # holds the run (not the dock's early warm-up) until told
        if threading.current_thread().name != "tmunet-prepare":
            entered.set()
            release.wait(60)

    monkeypatch.setattr(_segment_jobs, "warm_up_note", lambda checkpoint: note)
    monkeypatch.setattr(_segment_jobs, "warm_up", held_warm_up)
    viewer, widget = dock
    image = choose_sample(viewer, widget, registered, probability=True)
    frame, _ = load_sample(registered.modality)
    viewer.add_image(frame, name="other", rgb=frame.ndim == 3)
    widget.image.value = image
    widget.segment_all()
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    before = [layer for layer in viewer.layers if layer is not image]
    viewer.layers.remove(image)
    release.set()
    wait_done(qtbot, widget)
    assert not widget.worker.abort_requested  # 'other' was left to do
    made = {layer.name for layer in viewer.layers if not any(layer is b for b in before)}
    assert made == {"other labels", "other probability"}
    assert widget.status.value == f"{image.name} was closed during the run; its result was dropped"


def test_the_summary_names_a_fine_tuned_model_as_the_dock_does(registered, dock, qtbot, tmp_path):
    """A model made active by Fine-tune is named by its label, not its file's name, in the
    summary and in the reason the dock gives for it (tester15 #4.4)."""
    import shutil

    from napari_tmunet import active_model

    viewer, widget = dock
    image = open_sample(viewer, registered.modality)
    widget.image.value = image
    best = tmp_path / "best.pt"
    shutil.copy(registered.path, best)
    label = "fine-tuned on 2026-12-02 02:41"
    active_model.for_viewer(viewer).set(str(best), label, registered.modality)
    reason = widget.model_reason.value
    assert reason.startswith(f"Runs {label}: the active model for ") and "best.pt" not in reason
    widget.segment()
    wait_done(qtbot, widget)
    assert widget.last_layer is not None
    assert label in widget.summary.value and "best.pt" not in widget.summary.value


def test_the_active_fine_tuned_model_is_warmed_up_as_a_shipped_one(
    registered, dock, qtbot, tmp_path
):
    """A fine-tuned model made active (the Model box lists it by name) is loaded and warmed
    up in the background once an image is chosen, as a shipped model is: its first Segment
    after a restart took 18-21 s on a 2-core machine (tester37 #5)."""
    import shutil

    from napari_tmunet import active_model

    viewer, widget = dock
    best = tmp_path / "best.pt"
    shutil.copy(registered.path, best)
    active_model.for_viewer(viewer).set(
        str(best), "fine-tuned on 2026-12-05 15:29", registered.modality
    )
    widget.image.value = open_sample(viewer, registered.modality)
    key = (str(best), str(widget.device.value))
    assert str(widget.model.value) == str(best) and key in widget._prepared
    widget._prepared[key].join(120)
    cached = [k for k in registry._cache if k[0] == str(best.resolve())]
    assert cached, "the fine-tuned model was not loaded ahead of the click"


def test_a_dock_closed_right_after_a_setting_change_stays_quiet(registered, dock, qtbot):
    """The debounced re-derive goes with the dock: it must not fire into a deleted one."""
    viewer, widget = dock
    choose_sample(viewer, widget, registered)
    widget.segment()
    wait_done(qtbot, widget)
    widget.min_size.value = widget.min_size.value + 5  # starts the 80 ms debounce
    widget.native.deleteLater()
    qtbot.wait(300)  # an exception in Qt's event loop here fails the test


def test_min_confidence_follows_the_model_and_hides_unsure_objects(
    dock, qtbot, tmp_path, monkeypatch
):
    """A checkpoint whose least confidence (0.99) is above the ultrasound sample's lesion
    (mean probability ~0.98): the slider shows it as soon as the file is chosen, the lesion
    is hidden and the summary says what the gate hid (no pop-up); lowering the slider shows
    it without a new network run; another model brings its own value back."""
    import napari_tmunet._segment_widget as module
    from napari_tmunet.checkpoint import save_checkpoint
    from napari_tmunet.config import InputConfig

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    shipped = registry.load_model("TM-UNet ultrasound", "cpu")
    inputs = InputConfig.from_dict({**shipped.input_config.to_dict(), "min_confidence": 0.99})
    strict = save_checkpoint(
        tmp_path / "strict.pt", shipped.model, shipped.model_config, inputs, shipped.metadata
    )
    viewer, widget = dock
    image = open_sample(viewer, "ultrasound")
    widget.image.value = image
    widget.model.value = "Checkpoint file..."
    widget.checkpoint.value = strict
    assert widget.min_confidence.value == pytest.approx(0.99)  # before any run
    widget.segment()
    wait_done(qtbot, widget)
    labels = widget.last_layer
    assert widget.min_confidence.value == pytest.approx(0.99)
    assert not labels.data.any()
    assert warnings == []
    assert "threshold 0.50, confidence 0.99" in widget.summary.value
    assert "below confidence 0.99 hidden" in widget.summary.value

    worker = widget.worker
    widget.min_confidence.value = 0.9  # the user's value, re-derived from the kept map
    qtbot.waitUntil(lambda: labels.metadata["label_options"]["min_confidence"] == 0.9)
    _, mask = load_sample("ultrasound")
    assert dice(labels.data, mask) >= SAMPLE_MIN_DICE["ultrasound"]
    assert widget.worker is worker and "confidence 0.90" in widget.status.value
    widget.segment()  # the user's value holds for the next run
    wait_done(qtbot, widget)
    assert widget.last_layer.data.any()

    widget.model.value = "TM-UNet ultrasound"  # a new model brings its own value
    assert widget.min_confidence.value == pytest.approx(shipped.input_config.min_confidence)
    widget.segment()
    wait_done(qtbot, widget)
    assert widget.min_confidence.value == pytest.approx(shipped.input_config.min_confidence)


def test_segment_all_runs_each_image_with_the_model_a_click_on_it_would(dock, qtbot, tmp_path):
    """A colonoscopy frame gets the colonoscopy model (here the fine-tuned one active for
    it) while the dock shows the ultrasound image and its model. Model defaults come from
    each image's checkpoint, the sliders show the chosen image's, a threshold the user set
    holds for the images of the model it was set for (tester15 #2: not the others), and the
    summary names each image's model."""
    from napari.layers import Image

    from napari_tmunet import active_model
    from napari_tmunet._segment_jobs import model_defaults
    from napari_tmunet.checkpoint import save_checkpoint
    from napari_tmunet.config import InputConfig

    shipped = registry.load_model("TM-UNet colonoscopy", "cpu")
    inputs = InputConfig.from_dict({**shipped.input_config.to_dict(), "threshold": 0.3})
    tuned = tmp_path / "best.pt"
    save_checkpoint(tuned, shipped.model, shipped.model_config, inputs, shipped.metadata)
    grey_default = model_defaults(registry.load_model("TM-UNet ultrasound", "cpu"))["threshold"]
    assert grey_default != pytest.approx(0.3)
    viewer, widget = dock
    viewer.open_sample(PLUGIN, "colonoscopy")
    viewer.open_sample(PLUGIN, "ultrasound")
    colon, grey = [layer for layer in viewer.layers if isinstance(layer, Image)]
    label = "fine-tuned on 2026-12-02 02:41"
    active_model.for_viewer(viewer).set(str(tuned), label, "colonoscopy")
    assert widget.image.value is grey and widget.model.value == "TM-UNet ultrasound"

    def run_all() -> dict:
        widget.segment_all()  # once the active model's file is read
        qtbot.waitUntil(lambda: widget.worker is not None, timeout=60_000)  # the threaded path
        wait_done(qtbot, widget)
        assert widget.status.value == "done", widget.status.value
        return {image: widget._output_of(image).labels.metadata for image in (colon, grey)}

    made = run_all()
    assert made[colon]["model"] == str(tuned) and made[grey]["model"] == "TM-UNet ultrasound"
    assert made[colon]["threshold"] == pytest.approx(0.3)  # its model's own
    assert made[grey]["threshold"] == pytest.approx(grey_default)
    lines = widget.summary.value.splitlines()
    assert lines[0].startswith(f"{colon.name}: ") and f"with {label} " in lines[0]
    assert lines[1].startswith(f"{grey.name}: ") and "with TM-UNet ultrasound " in lines[1]

    widget.image.value = colon  # the sliders show the chosen image's model's defaults
    run_all()
    assert widget.threshold.value == pytest.approx(0.3)

    widget.threshold.value = 0.6  # the user's for the fine-tuned model: not the ultrasound's
    made = run_all()
    assert made[colon]["threshold"] == pytest.approx(0.6)
    assert made[grey]["threshold"] == pytest.approx(grey_default)
    assert made[grey]["model"] == "TM-UNet ultrasound"


@pytest.mark.skipif(not DSB_GREY.is_file(), reason="no DSB2018 stage-1 test images")
def test_segment_all_warns_for_each_image_its_model_does_not_suit(
    dock, qtbot, monkeypatch, tmp_path
):
    """Segment all with a colonoscopy frame chosen and two hidden fluorescence images beside
    it (never chosen, so not warned about yet): one warning names both and gives the grey
    model's misfit reason once (as predict groups them), not advice to lower the threshold,
    and their summary lines say the model may not suit them (tester9 #5, tester10 #6);
    choosing one of them afterwards does not warn again (tester11 #2)."""
    import shutil

    from napari.layers import Image

    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer, widget = dock
    again = tmp_path / f"again{DSB_GREY.suffix}"
    shutil.copy(DSB_GREY, again)
    viewer.open_sample(PLUGIN, "colonoscopy")
    colon = next(layer for layer in viewer.layers if isinstance(layer, Image))
    widget.image.value = colon
    (cells,) = viewer.open(DSB_GREY, plugin="napari", visible=False)
    (cells_again,) = viewer.open(again, plugin="napari", visible=False)
    assert widget.image.value is colon and not warnings
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value

    assert len(warnings) == 1, warnings
    both = f"{cells.name!r}, {cells_again.name!r}: TM-UNet ultrasound is the only shipped"
    assert warnings[0].startswith(both), warnings[0]
    assert warnings[0].count("looks like fluorescence microscopy") == 1
    assert not any("lower threshold" in text for text in warnings)
    lines = dict(line.split(": ", 1) for line in widget.summary.value.splitlines())
    assert "TM-UNet ultrasound may not suit this image" in lines[cells.name]
    assert "TM-UNet ultrasound may not suit this image" in lines[cells_again.name]
    assert "may not suit" not in lines[colon.name]
    widget.image.value = cells  # warned about in the run: not again
    assert len(warnings) == 1, warnings


@pytest.mark.skipif(not (UDIAT / "images").is_dir(), reason="shared UDIAT data not present")
def test_the_chooser_stays_on_the_shown_image_of_a_dataset_folder(dock, qtbot, tmp_path):
    """A dataset folder opens with its first pair shown and the rest hidden; the Image
    chooser does not follow the hidden layers as they are added, so Segment runs on the
    image the user sees."""

    from napari.layers import Image

    root = tmp_path / "UDIAT"
    dataset_subset(UDIAT, root, ("000001", "000002", "000003"))
    viewer, widget = dock
    viewer.open(str(root), plugin=PLUGIN)
    images = [layer for layer in viewer.layers if isinstance(layer, Image)]
    assert [layer.name for layer in images if layer.visible] == ["000001"]
    assert len(images) == 3 and viewer.layers.selection.active is not images[0]
    assert widget.image.value is images[0]
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.last_layer.metadata["image"] == "000001"
    assert widget.last_layer.data.shape == images[0].data.shape


@pytest.mark.skipif(not (UDIAT / "images").is_dir(), reason="shared UDIAT data not present")
def test_segment_all_on_a_dataset_folder_shows_only_the_shown_pictures_output(
    dock, qtbot, tmp_path
):
    """A dataset folder shows its first pair: after Segment all, each output (and
    probability map) is shown or hidden with its picture, so the hidden pictures' masks do
    not cover the one on screen, and the active layer (where the brush paints) is the
    output of the picture on screen, not the last one made. A picture shown and chosen
    later shows its output."""

    from napari.layers import Image

    root = tmp_path / "UDIAT"
    dataset_subset(UDIAT, root, ("000001", "000002", "000003"))
    viewer, widget = dock
    viewer.open(str(root), plugin=PLUGIN)
    images = [layer for layer in viewer.layers if isinstance(layer, Image)]
    assert [layer.visible for layer in images] == [True, False, False]
    widget.add_probability.value = True
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    for image in images:
        output = widget._output_of(image)
        assert output.labels.visible is image.visible, image.name
        assert output.probability_layer.visible is image.visible, image.name
    shown = [layer.name for layer in viewer.layers if layer.visible]
    assert shown == ["000001", "000001 mask", "000001 probability", "000001 labels"]
    assert viewer.layers.selection.active is viewer.layers["000001 labels"]

    # Tester9's #8: the user shows another picture and selects it; the chooser follows and
    # its output shows, so the threshold's changes are seen
    images[0].visible, images[1].visible = False, True
    viewer.layers.selection.active = images[1]
    assert widget.image.value is images[1]
    output = widget._output_of(images[1])
    assert output.labels.visible
    made = np.array(output.labels.data)
    widget.threshold.value = 0.9
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    assert not np.array_equal(output.labels.data, made)


@pytest.mark.skipif(not (CLINIC / "images").is_dir(), reason="shared CVC-ClinicDB not present")
def test_a_dock_opened_after_a_folder_starts_on_the_active_image(
    make_napari_viewer, qtbot, tmp_path
):
    """CVC-ClinicDB frames 1, 101 and 200 opened as a dataset folder, "101" made the active
    layer, then the dock opened: it starts on "101" (not the first image, "1"), and
    Segment labels that frame."""

    from napari.layers import Image

    root = tmp_path / "CVC-ClinicDB"
    dataset_subset(CLINIC, root, ("1", "101", "200"))
    viewer = make_napari_viewer()
    viewer.open(str(root), plugin=PLUGIN)
    images = {layer.name: layer for layer in viewer.layers if isinstance(layer, Image)}
    assert list(images) == ["1", "101", "200"]
    viewer.layers.selection.active = images["101"]
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    assert widget.image.value is images["101"]
    assert widget.model.value == "TM-UNet colonoscopy"
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    assert widget.last_layer.metadata["image"] == "101"
    assert widget.summary.value.startswith("101: ")


def test_a_dock_opened_after_a_folder_is_not_left_on_its_hidden_last_image(
    make_napari_viewer, tmp_path
):
    """A folder of images of different sizes opens with its first image shown, the others
    hidden, and the last one active (napari makes each added layer active): a dock opened
    then starts on the image the user sees, not the hidden last one."""
    from napari.layers import Image
    from PIL import Image as Picture

    for name, shape in (("a", (64, 80)), ("b", (72, 90)), ("c", (80, 100))):
        pixels = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
        Picture.fromarray(pixels).save(tmp_path / f"{name}.png")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path), plugin=PLUGIN)
    images = [layer for layer in viewer.layers if isinstance(layer, Image)]
    assert [layer.visible for layer in images] == [True, False, False]
    assert viewer.layers.selection.active is images[-1]
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    assert widget.image.value is images[0]


def segment_layer(qtbot, widget, layer) -> np.ndarray:
    """Segment ``layer`` with the dock on its threaded path; its labels."""
    widget.image.value = layer
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    return np.asarray(widget.last_layer.data)


def test_a_grey_alpha_layer_is_segmented_as_its_grey(dock, qtbot, tmp_path):
    """A grey + alpha PNG as napari's own reader gives it, (H, W, 2) shown as H frames, is
    segmented as its grey channel (alpha ignored): the labels are those of the grey image,
    (H, W), and the summary says so."""
    from PIL import Image as Picture

    grey, _ = load_sample("ultrasound")
    alpha = np.full_like(grey, 180)
    path = tmp_path / "grey alpha.png"
    Picture.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    viewer, widget = dock
    (layer,) = viewer.open(str(path), plugin="napari")
    assert layer.data.shape == (*grey.shape, 2) and not layer.rgb
    assert widget.image.value is layer and widget.model.value == "TM-UNet ultrasound"

    labels = segment_layer(qtbot, widget, layer)
    assert "grey + alpha image: segmented as grey, alpha ignored" in widget.summary.value
    assert widget.last_layer.metadata["conversion"].startswith("grey + alpha")
    plain = viewer.add_image(grey, name="grey")
    np.testing.assert_array_equal(labels, segment_layer(qtbot, widget, plain))
    assert labels.shape == grey.shape and labels.any()


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_a_cmyk_layer_is_segmented_in_rgb(dock, qtbot, tmp_path, suffix):
    """A CMYK JPEG or TIFF as napari's own reader gives it, its ink amounts as (H, W, 4)
    marked RGBA, is converted to RGB as Pillow converts it: the labels are those of that
    RGB image, and the summary says so."""
    from PIL import Image as Picture

    colour, _ = load_sample("colonoscopy")
    path = tmp_path / f"cmyk{suffix}"
    Picture.fromarray(colour).convert("CMYK").save(path)
    with Picture.open(path) as stored:
        assert stored.mode == "CMYK"
        as_rgb = np.asarray(stored.convert("RGB"))
    viewer, widget = dock
    (layer,) = viewer.open(str(path), plugin="napari")
    assert layer.rgb and layer.data.shape == (*colour.shape[:2], 4)

    labels = segment_layer(qtbot, widget, layer)
    assert widget.last_layer.metadata["model"] == "TM-UNet colonoscopy"
    assert "CMYK image: converted to RGB" in widget.summary.value
    rgb = viewer.add_image(as_rgb, name="as RGB", rgb=True)
    np.testing.assert_array_equal(labels, segment_layer(qtbot, widget, rgb))
    assert labels.any()


def test_a_cmyk_layer_read_in_parts_is_refused_naming_it(dock, monkeypatch, tmp_path):
    """A CMYK TIFF over the pixel budget opens lazily (read in parts): converting it
    would read it whole, so Segment refuses it with a message naming the layer and what
    to do, and runs nothing."""
    from PIL import Image as Picture

    from napari_tmunet import _segment_widget

    colour, _ = load_sample("colonoscopy")
    path = tmp_path / "big cmyk.tif"
    Picture.fromarray(colour).convert("CMYK").save(path)
    monkeypatch.setenv("NAPARI_TMUNET_MAX_PIXELS", "1000")
    viewer, widget = dock
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.multiscale and layer.rgb
    errors = []
    monkeypatch.setattr(_segment_widget, "show_error", errors.append)
    widget.image.value = layer
    widget.segment()
    assert widget.worker is None and not widget.running
    assert errors and "'big cmyk'" in errors[0] and "save it as RGB" in errors[0], errors


def _big_tile_image(viewer, widget, registered):
    """A 3 x 3 tiling of the nuclei sample, chosen for a tile-mode run with ``registered``
    that reports once per tile (a run that lasts many reports)."""
    image, _ = load_sample("nuclei")
    layer = viewer.add_image(np.tile(image, (3, 3, 1)), name="big nuclei", rgb=True)
    widget.image.value = layer
    widget.model.value = registered.name
    widget.mode.value = "tile"
    widget.batch_size = 1
    return layer


def test_closing_the_viewer_during_a_run_drops_it_quietly(registered, dock, qtbot, caplog):
    """Threaded path, the real engine: the viewer closed while Segment runs (its dock's
    widgets deleted) quits the worker, and no late progress, result or end of the run
    touches the deleted widgets (no exception in a slot, no error logged)."""
    viewer, widget = dock
    _big_tile_image(viewer, widget, registered)
    with qtbot.capture_exceptions() as raised:
        widget.segment()
        qtbot.waitUntil(lambda: widget.status.value.startswith("segmenting"), timeout=60_000)
        worker = widget.worker
        viewer.close()
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
        qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
        qtbot.wait(300)  # reports still queued are delivered
    assert not raised, [str(err) for _, err, _ in raised]
    assert worker.abort_requested  # not segmented to the end for nobody
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_closing_the_image_being_segmented_stops_its_run(registered, dock, qtbot, monkeypatch):
    """tester14 #2, threaded path, the real engine: deleting the image a tile-mode run is
    segmenting stops the run as Cancel does; the dock is free again at once and says in
    one line why (no pop-up), and nothing is added."""
    import time

    import napari_tmunet._segment_widget as module

    infos = []
    monkeypatch.setattr(module, "show_info", infos.append)
    viewer, widget = dock
    layer = _big_tile_image(viewer, widget, registered)
    widget.segment()
    qtbot.waitUntil(lambda: widget.status.value.startswith("segmenting"), timeout=60_000)
    worker, names = widget.worker, [other.name for other in viewer.layers if other is not layer]
    viewer.layers.remove(layer)
    assert worker.abort_requested  # stopped at once, not segmented to the end for nobody
    note = "'big nuclei' was closed, so its segmentation was stopped"
    assert widget.status.value == note
    began = time.perf_counter()
    wait_done(qtbot, widget, timeout=30_000)
    assert time.perf_counter() - began < 10
    assert widget.status.value == note and infos == []
    assert widget.segment_button.enabled and not widget.cancel_button.enabled
    assert [other.name for other in viewer.layers] == names


def test_a_slider_moved_for_one_model_is_not_carried_to_another(dock, qtbot):
    """tester14 #1: Threshold moved on a colonoscopy frame, Confidence on an ultrasound
    scan: each image that brings another model shows, and runs with, that model's own
    values (from its checkpoint). A value moved for a model holds for it (tester15 #3: back
    on the first image too), for its re-runs and for another image of that model."""
    from napari_tmunet._segment_jobs import header_defaults

    viewer, widget = dock
    models = {m: f"TM-UNet {m}" for m in ("colonoscopy", "ultrasound", "nuclei")}
    own = {m: header_defaults(name) for m, name in models.items()}
    if any(value is None for value in own.values()):
        pytest.skip("the three shipped models are not installed")

    def add(modality, name, flip=False):
        frame, _ = load_sample(modality)
        layer = viewer.add_image(frame[::-1] if flip else frame, name=name, rgb=frame.ndim == 3)
        widget.image.value = layer
        assert widget.model.value == models[modality]
        return layer

    def sliders():
        return round(widget.threshold.value, 2), round(widget.min_confidence.value, 2)

    def shows_own(modality):
        return sliders() == (own[modality]["threshold"], own[modality]["min_confidence"])

    colon = add("colonoscopy", "colon")
    assert shows_own("colonoscopy")
    widget.threshold.value = 0.85
    add("ultrasound", "scan")
    assert shows_own("ultrasound")
    widget.min_confidence.value = 0.2
    add("nuclei", "tissue")
    assert shows_own("nuclei")
    made = segment_layer(qtbot, widget, viewer.layers["tissue"])
    options = widget.last_layer.metadata["label_options"]
    assert made.shape == (256, 256) and options["threshold"] == own["nuclei"]["threshold"]
    assert options["min_confidence"] == own["nuclei"]["min_confidence"]
    widget.image.value = colon  # the value moved for the colonoscopy model holds
    assert sliders() == (0.85, own["colonoscopy"]["min_confidence"])

    for _ in range(2):
        segment_layer(qtbot, widget, colon)
        assert widget.last_layer.metadata["threshold"] == pytest.approx(0.85)
    other = add("colonoscopy", "colon flipped", flip=True)
    assert sliders()[0] == 0.85
    segment_layer(qtbot, widget, other)
    assert widget.last_layer.metadata["threshold"] == pytest.approx(0.85)
    assert "threshold 0.85" in widget.summary.value


def test_closing_the_viewer_warns_of_no_image_it_passes(make_napari_viewer, qtbot, monkeypatch):
    """tester14 #7: the viewer closed while the dock shows an ultrasound scan with the
    colonoscopy model picked for it: the layers removed on the way make the chooser pass
    over another scan, which must not warn that the model does not suit it. Deleting the
    chosen image by hand still follows the next one, with its warning."""
    import napari_tmunet._segment_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    frame, _ = load_sample("ultrasound")

    def scans(names):
        viewer = make_napari_viewer()
        _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
        layers = [viewer.add_image(np.roll(frame, i, 0), name=n) for i, n in enumerate(names)]
        widget.image.value = layers[-1]
        widget.model.value = "TM-UNet colonoscopy"  # the user's pick for ultrasound images
        assert "this session only" in widget.model_reason.value
        return viewer, widget, layers

    viewer, widget, (first, last) = scans(["scan a", "scan b"])
    viewer.layers.remove(last)  # by hand: the chooser moves to the first scan
    qtbot.waitUntil(lambda: any("'scan a'" in text for text in warnings), timeout=5_000)
    assert widget.image.value is first and "this session only" in widget.model_reason.value

    viewer, widget, _ = scans(["scan c", "scan d", "scan e"])
    warnings.clear()
    viewer.close()
    qtbot.wait(200)
    assert warnings == []


def test_an_rgba_image_with_transparent_parts_is_noted_in_the_summary(dock, qtbot):
    """tester14 #7: an RGBA picture whose alpha hides a part of it is segmented on its
    colours (alpha ignored, as before), and the summary says so in a short note; a fully
    opaque RGBA picture gets no note."""
    from napari_tmunet._segment_widget import ALPHA_IGNORED

    viewer, widget = dock
    colour, _ = load_sample("colonoscopy")
    alpha = np.full(colour.shape[:2], 255, np.uint8)
    opaque = viewer.add_image(np.dstack([colour, alpha]), name="opaque", rgb=True)
    labels = segment_layer(qtbot, widget, opaque)
    assert ALPHA_IGNORED not in widget.summary.value
    alpha[:, :100] = 0
    clear = viewer.add_image(np.dstack([colour, alpha]), name="cut out", rgb=True)
    np.testing.assert_array_equal(segment_layer(qtbot, widget, clear), labels)
    assert widget.summary.value.endswith(f"; {ALPHA_IGNORED}")
    assert widget.last_layer.metadata["conversion"] == ALPHA_IGNORED


def test_a_result_shows_its_own_settings_and_each_model_keeps_the_values_moved_for_it(
    dock, qtbot, tmp_path
):
    """tester15 #1-#3: a value moved for a model holds for that model (also after the Model
    box went to another and back before any run); choosing an image with a result again,
    or the active model reverted to the one that made it, shows the settings the result was
    made with (not the model's own), and a tweak re-derives it with them; Segment all gives
    each image the values moved for its own model only."""
    import shutil

    from napari_tmunet import active_model
    from napari_tmunet._segment_jobs import header_defaults

    viewer, widget = dock
    own = {m: header_defaults(f"TM-UNet {m}") for m in ("colonoscopy", "ultrasound")}
    if any(value is None for value in own.values()):
        pytest.skip("the colonoscopy and ultrasound models are not installed")

    def sliders():
        return round(widget.threshold.value, 2), round(widget.min_confidence.value, 2)

    def own_of(modality):
        return own[modality]["threshold"], own[modality]["min_confidence"]

    def made(layer):
        return widget._output_of(layer).labels.metadata["label_options"]

    frame, _ = load_sample("colonoscopy")
    colon = viewer.add_image(frame, name="colon", rgb=True)
    scan = viewer.add_image(load_sample("ultrasound")[0], name="scan")
    widget.image.value = colon
    assert widget.model.value == "TM-UNet colonoscopy" and sliders() == own_of("colonoscopy")
    widget.threshold.value = 0.8  # #3: moved, then the Model box away and back, no run
    widget.min_confidence.value = 0.3
    widget.model.value = "TM-UNet ultrasound"
    assert sliders() == own_of("ultrasound")
    widget.model.value = "TM-UNet colonoscopy"
    assert sliders() == (0.8, 0.3)

    widget.threshold.value = 0.85  # #1: a result made at 0.85
    segment_layer(qtbot, widget, colon)
    assert made(colon)["threshold"] == pytest.approx(0.85)
    widget.image.value = scan
    assert widget.model.value == "TM-UNet ultrasound" and sliders() == own_of("ultrasound")
    widget.min_confidence.value = 0.5  # the ultrasound model's, from now on
    widget.image.value = colon
    assert sliders() == (0.85, 0.3)
    widget.threshold.value = 0.6  # the colonoscopy model's from now on, and colon re-derived
    qtbot.waitUntil(lambda: made(colon)["threshold"] == pytest.approx(0.6), timeout=10_000)
    shutil.copy(registry.find_model("TM-UNet colonoscopy").path, tmp_path / "best.pt")
    active = active_model.for_viewer(viewer)
    active.set("TM-UNet colonoscopy", "TM-UNet colonoscopy", "colonoscopy")
    active.set(str(tmp_path / "best.pt"), "fine-tuned on colon", "colonoscopy")
    assert widget.model.value == str(tmp_path / "best.pt") and sliders() == own_of("colonoscopy")
    widget.image.value = scan
    widget.image.value = colon
    active.revert()  # Fine-tune's Revert: the colonoscopy model, colon's result's settings
    assert widget.model.value == "TM-UNet colonoscopy" and sliders() == (0.6, 0.3)
    widget.status.value = ""
    widget.fill_holes.value = True
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    assert made(colon)["fill_holes"] and made(colon)["threshold"] == pytest.approx(0.6)

    widget.threshold.value = 0.9  # #2: Segment all, each image with its own model's values
    qtbot.waitUntil(lambda: made(colon)["threshold"] == pytest.approx(0.9), timeout=10_000)
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    assert (made(colon)["threshold"], made(colon)["min_confidence"]) == pytest.approx((0.9, 0.3))
    expected = (own["ultrasound"]["threshold"], 0.5)
    assert (made(scan)["threshold"], made(scan)["min_confidence"]) == pytest.approx(expected)
    assert f"threshold {expected[0]:.2f}, confidence 0.50" in widget.summary.value
    widget.image.value = scan
    assert sliders() == expected


def test_images_closed_during_segment_all_leave_no_summary_nor_a_stale_stop_note(
    dock, qtbot, monkeypatch
):
    """tester15 #4.1-#4.2: Segment all over two images of two models; the first one's result
    is in when both are closed (the second's model held in its warm-up): the run stops, the
    status says why, and the summary does not list the closed images. Reopening the image
    the note speaks of and choosing it clears that note."""
    from napari_tmunet import _segment_jobs

    entered, release, calls = threading.Event(), threading.Event(), []

    def held_warm_up(checkpoint):  # the run's second model waits until told
        if threading.current_thread().name != "tmunet-prepare":
            calls.append(checkpoint)
            if len(calls) == 2:
                entered.set()
                release.wait(60)

    monkeypatch.setattr(_segment_jobs, "warm_up_note", lambda checkpoint: "preparing...")
    monkeypatch.setattr(_segment_jobs, "warm_up", held_warm_up)
    viewer, widget = dock
    frame, _ = load_sample("colonoscopy")
    colon = viewer.add_image(frame, name="colon", rgb=True)
    scan = viewer.add_image(load_sample("ultrasound")[0], name="scan")
    widget.image.value = colon
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    # the second model's warm-up is entered on the worker; the first result reaches the
    # dock through the event loop, maybe a moment later (seen on a loaded machine)
    qtbot.waitUntil(lambda: entered.is_set() and bool(widget._results), timeout=60_000)
    assert [image.name for image, _ in widget._results] == ["colon"]
    viewer.layers.remove(scan)
    viewer.layers.remove(colon)
    release.set()
    wait_done(qtbot, widget)
    note = "'scan' was closed, so its segmentation was stopped"
    assert widget.status.value == note
    assert widget.summary.value == ""

    again = viewer.add_image(load_sample("ultrasound")[0], name="scan")
    widget.image.value = again
    assert widget.status.value == ""


def test_a_float_colour_image_with_a_nan_pixel_gets_the_colonoscopy_model(dock, qtbot):
    """tester20 #2: the colonoscopy sample as float32 / 255 with one NaN channel value (as a
    registration or warping step leaves it) was called grey and ran the ultrasound model
    (Dice 0.085); it gets the colonoscopy model and its mask, on the threaded path."""
    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    viewer, widget = dock
    colour, mask = load_sample("colonoscopy")
    unit = colour[..., :3].astype(np.float32) / 255
    unit[0, 0, 0] = np.nan
    layer = viewer.add_image(unit, name="warped", rgb=True)
    widget.image.value = layer
    assert widget.model.value == "TM-UNet colonoscopy", widget.model_reason.value
    assert "colour endoscopy" in widget.model_reason.value
    labels = segment_layer(qtbot, widget, layer)
    assert "TM-UNet colonoscopy" in widget.summary.value
    assert dice(labels, mask) > SAMPLE_MIN_DICE["colonoscopy"], dice(labels, mask)
