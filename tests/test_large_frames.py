"""Photos larger than 4096 pixels in Mode "auto": the model's own mode, said before the run.

A clinician's 4976 x 4232 colonoscopy JPEG was tiled in "auto" mode (long side over 4096),
by a model trained on whole frames resized to 512 x 512: 551 s on the CPU and 542 objects,
where resizing finds the polyp. "auto" now follows the checkpoint's trained mode at any
size (tiles only for an image read in bands, over the pixel budget), in the Segment dock
and ``napari-tmunet-predict`` alike (``_segment_jobs.auto_mode``), and the dock says under
Mode how a large image will run before Segment is clicked. The frames here are real
CVC-ClinicDB test frames (bench/splits/colonoscopy-combined.json) upscaled as a camera's
photo of the screen would be; bench/large_frames.py measures the full 4976 x 4232 frame.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _paths import DATASETS, REPO
from _shipped import dice

from napari_tmunet import registry
from napari_tmunet._segment_jobs import (
    AUTO,
    LARGE_IMAGE,
    SegmentOptions,
    auto_mode,
    mode_note,
    resolve,
)

CLINIC = DATASETS / "CVC-ClinicDB"
FRAME = "17"  # a CVC-ClinicDB test frame, 384 x 288, one polyp
PHOTO = (4232, 4976)  # (h, w) of the tester's JPEG
# A GUI run on the CPU: just over the old 4096 px bound, so that its resize run stays short;
# main tiled it (88 tiles of 512 x 512, minutes on 2 cores)
JUST_OVER = (3080, LARGE_IMAGE + 4)
MIN_DICE = 0.8  # the polyp found resized (bench/large_frames.py: 4976 x 4232, Dice 0.95)
COLONOSCOPY, NUCLEI, ULTRASOUND = "TM-UNet colonoscopy", "TM-UNet nuclei", "TM-UNet ultrasound"
needs_clinic = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no datasets at {CLINIC}")


def upscaled(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The test frame and its mask resized to ``size`` (h, w): bilinear, the mask above half."""
    from PIL import Image

    from napari_tmunet.data.images import read_image, read_mask

    image = read_image(CLINIC / "images" / f"{FRAME}.png")
    mask, _ = read_mask(CLINIC / "masks" / f"{FRAME}.tif")
    h, w = size
    big = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    grey = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)
    return big, np.asarray(grey) > 127


def options(model: str, mode: str = AUTO) -> SegmentOptions:
    return SegmentOptions(model, model, False, "cpu", None, mode, AUTO)


@pytest.fixture(scope="module")
def photo():
    if not CLINIC.is_dir():
        pytest.skip(f"no datasets at {CLINIC}")
    return upscaled(PHOTO)


def test_auto_runs_each_shipped_model_in_its_trained_mode_at_a_photos_size(photo):
    """The registry's checkpoints on the 4976 x 4232 frame: the colonoscopy and ultrasound
    models resize it as they were trained, the nuclei model tiles it; a mode the user
    chose is kept."""
    image, _ = photo
    expected = {COLONOSCOPY: "resize", ULTRASOUND: "resize", NUCLEI: "tile"}
    for name, trained in expected.items():
        checkpoint = registry.load_model(name, "cpu")
        assert checkpoint.inference_mode == trained
        assert resolve(options(name), checkpoint, image, True)[0] == trained, name
        for chosen in ("resize", "tile"):
            assert resolve(options(name, chosen), checkpoint, image, True)[0] == chosen


def test_auto_tiles_only_an_image_read_in_bands(photo, tmp_path, monkeypatch):
    """The same frame memory-mapped from a TIFF over the pixel budget is segmented in bands,
    which only tile mode can do: "auto" tiles it even with a resize model. In memory, or
    within the budget, or as a stack of such frames (never banded) it stays resized."""
    import tifffile

    from napari_tmunet.data.budget import MAX_PIXELS_ENV

    image, _ = photo
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, image, photometric="rgb")
    lazy = tifffile.memmap(path, mode="r")
    assert auto_mode("resize", lazy, True) == "resize"  # 21 Mpix: within the budget
    monkeypatch.setenv(MAX_PIXELS_ENV, str(20_000_000))
    assert auto_mode("resize", lazy, True) == "tile"
    assert auto_mode("resize", image, True) == "resize"  # in memory: never banded
    assert auto_mode("resize", lazy[None], True) == "resize"  # a stack
    checkpoint = registry.load_model(COLONOSCOPY, "cpu")
    assert resolve(options(COLONOSCOPY), checkpoint, lazy, True)[0] == "tile"
    note = mode_note(COLONOSCOPY, AUTO, lazy, True)
    assert note == (
        "4976 x 4232 image: 143 tiles of 512 x 512, read in bands (over the pixel budget); "
        "the model was trained on whole frames resized"
    )


def test_the_note_says_how_a_large_image_runs_without_importing_torch():
    """What the dock shows under Mode, from the checkpoints' headers alone (no torch in
    the process): how each model runs a 4976 x 4232 photo in "auto" and in the other mode;
    nothing for a 4K video frame."""
    code = f"""
import sys
import numpy as np
from napari_tmunet._segment_jobs import mode_note
photo = np.zeros({PHOTO + (3,)}, np.uint8)
for model, mode in (({COLONOSCOPY!r}, "auto"), ({COLONOSCOPY!r}, "tile"), ({NUCLEI!r}, "auto"),
                    ({NUCLEI!r}, "resize")):
    print(mode_note(model, mode, photo, True))
print(repr(mode_note({COLONOSCOPY!r}, "auto", np.zeros((2160, 3840, 3), np.uint8), True)))
print("torch" in sys.modules)
"""
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "4976 x 4232 image: resized to the model's 512 x 512 input as it was trained; "
        "choose Mode tile for a slide",
        "4976 x 4232 image: 143 tiles of 512 x 512; the model was trained on whole frames resized",
        "4976 x 4232 image: 572 tiles of 256 x 256",
        "4976 x 4232 image: resized to the model's 256 x 256 input, though the model was "
        "trained on tiles at full resolution: choose Mode tile (or auto)",
        "''",
        "False",
    ]


@pytest.mark.gui
@needs_clinic
def test_the_dock_says_how_a_large_photo_runs_and_resizes_it(make_napari_viewer, qtbot):
    """A colonoscopy photo over 4096 px in the Segment dock, Mode "auto": before Segment the
    dock says it is resized to the model's input as trained; Segment (threaded) resizes it
    and finds the polyp. Choosing Mode tile says how many tiles instead."""
    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    image, mask = upscaled(JUST_OVER)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    widget.image.value = viewer.add_image(image, name="photo", rgb=True)
    assert widget.model.value == COLONOSCOPY and widget.mode.value == AUTO
    resized = (
        f"{JUST_OVER[1]} x {JUST_OVER[0]} image: resized to the model's 512 x 512 input as it "
        "was trained; choose Mode tile for a slide"
    )
    assert widget.mode_note.value == resized
    assert not widget.mode_note.native.isHidden()
    from napari_tmunet._widget_common import DOCK_MAX_MIN_WIDTH

    # the note wraps: it never forces the dock (and the window) wider
    assert widget.mode_note.native.wordWrap()
    assert widget.native.minimumSizeHint().width() <= DOCK_MAX_MIN_WIDTH
    widget.mode.value = "tile"
    assert widget.mode_note.value.startswith(f"{JUST_OVER[1]} x {JUST_OVER[0]} image: 88 tiles")
    widget.mode.value = AUTO
    assert widget.mode_note.value == resized
    widget.segment_button.native.click()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert widget.status.value == "done", widget.status.value
    assert widget.last_layer.metadata["mode"] == "resize"
    assert widget.last_result.windows == 1 and widget.last_result.objects <= 3
    assert dice(widget.last_layer.data, mask) > MIN_DICE
    small = viewer.add_image(image[::2, ::2], name="half", rgb=True)
    widget.image.value = small  # a 2048 px photo: nothing to say
    assert widget.mode_note.value == "" and widget.mode_note.native.isHidden()


def test_a_large_frame_is_mapped_in_bands_to_the_same_input(monkeypatch):
    """Resize mode maps a frame over MAPPED_BAND_PIXELS a band of rows at a time (less
    memory): the model's input is the same to the bit as the frame mapped whole, for every
    stored type (uint8, 16-bit, float, uint32 mapped on the CPU)."""
    from napari_tmunet import inference
    from napari_tmunet.config import InputConfig

    rng = np.random.default_rng(0)
    config = InputConfig(size=(64, 64))
    frames = [
        rng.integers(0, 256, (301, 203, 3)).astype(np.uint8),
        rng.integers(0, 4000, (301, 203)).astype(np.uint16),
        rng.normal(size=(301, 203, 3)).astype(np.float32),
        rng.integers(0, 2**20, (301, 203)).astype(np.uint32),
    ]
    whole = [inference.FrameInput(f, 3, config).resized() for f in frames]
    monkeypatch.setattr(inference, "MAPPED_BAND_PIXELS", 203 * 7)  # 43 bands of 7 rows
    for frame, expected in zip(frames, whole, strict=True):
        assert inference.FrameInput(frame, 3, config).resized().equal(expected), frame.dtype


@needs_clinic
def test_predict_follows_the_same_rule(tmp_path, capsys):
    """``napari-tmunet-predict`` without --mode takes the dock's rule: a TIFF over the pixel
        budget (read in bands) is tiled also by the colonoscopy model, which resizes what fits
        in memory (main refused it: "choose mode 'tile'"), and says so in a line naming the image
    (the header names the model's own mode, resize); --mode resize is still refused."""
    import tifffile

    from napari_tmunet.data.images import read_image
    from napari_tmunet.predict_cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    image = read_image(CLINIC / "images" / f"{FRAME}.png")  # 288 x 384: 110592 pixels
    tifffile.imwrite(folder / "frame.tif", image, tile=(64, 64), photometric="rgb")
    argv = [str(folder), str(tmp_path / "masks"), "--model", COLONOSCOPY, "--device", "cpu"]
    budget = ["--max-pixels", "100000", "--min-confidence", "0"]
    assert main([*argv, *budget]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err.splitlines()
    # the model's header names its own mode; the image says the mode it ran in
    assert any(f"model {COLONOSCOPY!r} (mode resize," in line for line in err), err
    assert "frame.tif: mode tile, read in bands (over the pixel budget)" in err, err
    mask = read_image(tmp_path / "masks" / "frame.png")
    assert mask.shape == image.shape[:2]
    assert main([*argv, *budget, "--mode", "resize", "--overwrite"]) == 1
    assert "choose mode 'tile'" in capsys.readouterr().err


@pytest.mark.gui
@needs_clinic
def test_the_dock_says_a_small_crop_is_enlarged(make_napari_viewer):
    """A 64 x 64 crop of a CVC-ClinicDB frame in the Segment dock with the colonoscopy model
    (resize, 512 x 512 input): before Segment the dock says it is enlarged 8x (main said
    nothing; a tester's crop so enlarged gave false objects on light reflections). In Mode
    tile it is smaller than one tile: run whole at its own size (``sliding_window`` clips
    its tile to the image). The full 384 x 288 frame, enlarged under 2x: nothing to say."""
    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    from napari_tmunet.data.images import read_image

    frame = read_image(CLINIC / "images" / f"{FRAME}.png")
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    widget.image.value = viewer.add_image(frame[100:164, 150:214], name="crop", rgb=True)
    assert widget.model.value == COLONOSCOPY and widget.mode.value == AUTO
    assert widget.mode_note.value == (
        "64 x 64 image: enlarged 8x to the model's 512 x 512 input; a crop this small may "
        "give false or missed objects"
    )
    assert not widget.mode_note.native.isHidden()
    widget.mode.value = "tile"
    assert widget.mode_note.value == (
        "64 x 64 image: smaller than one 512 x 512 tile; run whole at its own size; the model "
        "was trained on whole images resized to its input: choose Mode resize (or auto)"
    )
    widget.mode.value = AUTO
    widget.image.value = viewer.add_image(frame, name="frame", rgb=True)
    assert widget.mode_note.value == "" and widget.mode_note.native.isHidden()
