"""The Segment dock (tester19 B-F), on the threaded path in a real viewer: a TIFF mask the
TM-UNet writer saved, opened by napari's own reader, is hinted to be opened with the
TM-UNet reader; an ImageJ 3-channel composite opened by napari's reader gets the
channel-first colour words; a model picked on a channel-first colour TIFF is not the pick
for grey images; in-memory 3-frame stacks get no colour hint."""

from __future__ import annotations

import numpy as np
import pytest
from test_segment_choices import segment, segment_dock

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample
from napari_tmunet.data.images import write_mask

pytestmark = pytest.mark.gui

COLON, ULTRASOUND = "TM-UNet colonoscopy", "TM-UNet ultrasound"


@pytest.fixture(autouse=True)
def _shipped_models():
    if any(registry.find_model(name) is None for name in (COLON, ULTRASOUND)):
        pytest.skip("the colonoscopy and ultrasound models are needed")


def test_a_tmunet_mask_opened_by_napari_says_to_open_it_with_the_tmunet_reader(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """A TIFF mask the TM-UNet writer saved with a pixel size, opened with napari's own
    reader (an Image at scale 1): selecting it says to open it with the TM-UNet reader, not
    to Convert to Labels (which gives a misaligned layer); that reader gives it back as
    Labels at its scale (tester19 B)."""
    _, mask = load_sample("ultrasound")
    path = tmp_path / "lesion mask.tif"
    write_mask(path, mask > 0, {"scale": [0.5, 0.5], "translate": [0, 0], "units": ["mm"] * 2})
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    picture = viewer.add_image(load_sample("ultrasound")[0], name="scan", scale=(0.5, 0.5))
    widget.image.value = picture
    (opened,) = viewer.open(str(path), plugin="napari")
    assert opened.__class__.__name__ == "Image" and tuple(opened.scale) == (1, 1)
    viewer.layers.selection.active = opened
    assert widget.image.value is picture  # not followed as an image to segment
    (hint,) = notices["info"]
    assert "Convert to Labels" not in hint, hint
    assert hint.startswith("'lesion mask' is a mask saved by TM-UNet"), hint
    assert "open it with the TM-UNet reader (File > Open with Plugin" in hint
    widget.image.value = opened  # chosen in the Image box all the same
    assert widget.model_reason.value == hint
    segment(qtbot, widget)  # the threaded path runs on it as on any image
    (labels,) = viewer.open(str(path), plugin="napari-tmunet")
    assert labels.__class__.__name__ == "Labels" and tuple(labels.scale) == (0.5, 0.5)


def test_an_imagej_composite_opened_by_napari_gets_the_channel_first_words(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """The colonoscopy sample as an ImageJ 3-channel composite (axes CYX, not marked RGB),
    opened with napari's own reader: 3 grey frames, which the TM-UNet reader reads in
    colour. The dock says it is a colour TIFF read channel-first and how to open it in
    colour (not "a grey image"), warns once, and the summary says the model may not suit
    it (tester19 C); an ImageJ stack of 3 grey slices (axes ZYX) gets no such words."""
    import tifffile

    colour, _ = load_sample("colonoscopy")
    planes = np.ascontiguousarray(colour.transpose(2, 0, 1))  # (3, H, W)
    path = tmp_path / "polyp composite.tif"
    tifffile.imwrite(path, planes, imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    (layer,) = viewer.open(str(path), plugin="napari")
    assert layer.data.shape == planes.shape and not layer.rgb
    widget.image.value = layer
    reason = widget.model_reason.value
    assert "chosen because this is a grey image" not in reason, reason
    assert "'polyp composite' is a channel-first colour TIFF" in reason, reason
    assert (
        len(notices["warning"]) == 1
        and "'polyp composite' is a channel-first colour TIFF" in notices["warning"][0]
    )
    segment(qtbot, widget)
    assert "may not suit this image" in widget.summary.value, widget.summary.value
    assert len(notices["warning"]) == 1, notices["warning"]

    slices = tmp_path / "three slices.tif"
    tifffile.imwrite(slices, planes, imagej=True, metadata={"axes": "ZYX"})
    (stack,) = viewer.open(str(slices), plugin="napari")
    widget.image.value = stack
    assert "channel-first" not in widget.model_reason.value, widget.model_reason.value


def channel_first_tiff(viewer, tmp_path):
    """The colonoscopy sample as a colour TIFF stored channel-first (planar RGB), opened
    with napari's own reader: 3 grey frames, which the dock guesses are ultrasound."""
    import tifffile

    colour, _ = load_sample("colonoscopy")
    planes = np.ascontiguousarray(colour.transpose(2, 0, 1))
    path = tmp_path / "polyp chw.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
    (layer,) = viewer.open(str(path), plugin="napari")
    return layer


def test_a_pick_on_a_channel_first_colour_tiff_is_not_the_pick_for_grey_images(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """Picking the colonoscopy model on a colour TIFF that napari's own reader opened as 3
    grey frames runs it on that image only: a real grey (ultrasound) image still gets the
    ultrasound model, on choosing it and in Segment all, and nothing is remembered for
    ultrasound images (tester19 D: Segment all ran colonoscopy on an ultrasound stack)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    polyp = channel_first_tiff(viewer, tmp_path)
    widget.image.value = polyp
    assert widget.model.value == ULTRASOUND  # 3 grey frames: the grey images' model
    widget.model.value = COLON  # the user's pick for this colour image
    assert widget.model_reason.value.startswith(f"Runs {COLON}: run on its 3 frames as grey")
    scan = viewer.add_image(load_sample("ultrasound")[0], name="scan")
    widget.image.value = scan
    assert widget.model.value == ULTRASOUND, widget.model_reason.value
    assert widget.model_reason.value.startswith(f"Runs {ULTRASOUND}: chosen because")
    widget.image.value = polyp
    assert widget.model.value == COLON  # kept for that image
    widget.segment_all()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.status.value == "done", widget.status.value
    ran = {
        layer.metadata["image"]: layer.metadata["model"]
        for layer in viewer.layers
        if layer.__class__.__name__ == "Labels"
    }
    assert ran == {"scan": ULTRASOUND, "polyp chw": COLON}, ran
    assert "ultrasound" not in registry.remembered_models()


def test_three_frames_made_in_memory_get_no_colour_hint(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """3 grey frames of one size made in memory (e.g. a time series built in the console)
    have no file to be a colour image read channel-first: no hedged colour hint; the same
    frames read from a file that cannot be checked (not a TIFF) keep it (tester19 E)."""
    from napari_tmunet._dock_texts import CHANNEL_FIRST_MAYBE

    grey, _ = load_sample("ultrasound")
    frames = np.stack([grey, grey[::-1], grey[:, ::-1]])
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    series = viewer.add_image(frames, name="time series")
    widget.image.value = series
    reason = widget.model_reason.value
    assert reason.startswith(f"Runs {ULTRASOUND}: chosen because this is a grey image"), reason
    assert "channel-first" not in reason, reason
    segment(qtbot, widget)
    assert "may not suit" not in widget.summary.value, widget.summary.value
    assert not notices["warning"], notices["warning"]

    path = tmp_path / "frames.npy"
    np.save(path, frames)
    (saved,) = viewer.open(str(path), plugin="napari")
    widget.image.value = saved
    assert widget.model_reason.value.endswith(f"; {CHANNEL_FIRST_MAYBE}."), (
        widget.model_reason.value
    )
