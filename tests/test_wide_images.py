"""Images far wider than the model's input, in the shipped models' resize mode.

Real CVC-ClinicDB test frames (bench/splits/colonoscopy-combined.json) placed side by side,
each resized to the same height, as a tester made them of Kvasir-SEG frames (D2): resized
whole to 512 x 512 such a strip is squeezed far beyond the frames the model was trained on
(Dice per frame 0.00 / 0.00 / 0.73 / 0.59); cut into windows of its height, each resized,
every frame is found. Frames of ordinary shape, up to the widest UDIAT image the
ultrasound model was trained on (2.1:1), are still resized whole, to the bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS
from _shipped import dice

CLINIC = DATASETS / "CVC-ClinicDB"
UDIAT = DATASETS / "UDIAT"
CLINIC_STRIP = ("17", "53")  # CVC-ClinicDB test frames, 768 x 288 (2.7:1)
MIN_PART_DICE = 0.5  # resized whole, a frame of the strip scores 0.00 to 0.46
# Four CVC-ClinicDB test frames of four scenes, 1536 x 288 (5.3:1): per frame Dice 0.97 /
# 0.90 / 0.93 / 0.96 in windows, 0.00 / 0.00 / 0.73 / 0.59 resized whole (main before D2)
CLINIC_STRIP4 = ("17", "53", "226", "446")
STRIP4_MIN_DICE = 0.85
# The most elongated UDIAT image (517 x 246, 2.1:1), of the ultrasound model's training
# set: still resized whole
UDIAT_WIDEST = "000099"


def shipped(name: str):
    """The shipped model ``name`` on the CPU, in resize mode (the mode these tests are about)."""
    from napari_tmunet import registry

    checkpoint = registry.load_model(name, "cpu")
    assert checkpoint.inference_mode == "resize"
    return checkpoint


@pytest.fixture(scope="module")
def colonoscopy():
    return shipped("TM-UNet colonoscopy")


def clinic_pair(stem: str) -> tuple[np.ndarray, np.ndarray]:
    from napari_tmunet.data.images import read_image, read_mask

    mask, _ = read_mask(CLINIC / "masks" / f"{stem}.tif")
    return read_image(CLINIC / "images" / f"{stem}.png"), mask


def side_by_side(pairs, height: int) -> tuple[np.ndarray, np.ndarray, list[slice]]:
    """(H, W, 3) frames and (H, W) masks placed side by side, each resized to ``height``
    (bilinear, the mask above one half); the columns of each frame."""
    from PIL import Image

    images, masks = [], []
    for image, mask in pairs:
        size = (round(image.shape[1] * height / image.shape[0]), height)  # (w, h)
        images.append(np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)))
        grey = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)
        masks.append(np.asarray(grey) > 127)
    edges = np.cumsum([0] + [image.shape[1] for image in images])
    parts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return np.concatenate(images, axis=1), np.concatenate(masks, axis=1), parts


def part_dice(labels, mask, parts) -> list[float]:
    return [round(dice(labels[:, part], mask[:, part]), 3) for part in parts]


@pytest.fixture(scope="module")
def clinic_strip4():
    if not CLINIC.is_dir():
        pytest.skip(f"no datasets at {CLINIC}")
    return side_by_side([clinic_pair(stem) for stem in CLINIC_STRIP4], 288)


@pytest.fixture(scope="module")
def clinic_strip():
    if not CLINIC.is_dir():
        pytest.skip(f"no datasets at {CLINIC}")
    return side_by_side([clinic_pair(stem) for stem in CLINIC_STRIP], 288)


def test_a_strip_of_four_frames_is_segmented_frame_by_frame(colonoscopy, clinic_strip4):
    """A strip of four CVC-ClinicDB frames, 5.3:1, in the model's own mode: every frame's
    polyp is found (resized whole: 0.00 / 0.00 / 0.73 / 0.59), in windows of the strip's
    height."""
    from napari_tmunet.inference import run_to_completion, segment
    from napari_tmunet.tiling import resize_window, tile_starts

    image, mask, parts = clinic_strip4
    assert image.shape == (288, 1536, 3)
    result = run_to_completion(segment(image, colonoscopy, mode=colonoscopy.inference_mode))
    scores = part_dice(result.labels, mask, parts)
    assert min(scores) >= STRIP4_MIN_DICE, scores
    window = resize_window(image.shape[:2], colonoscopy.input_config.size)
    assert window == (288, 288)
    # a quarter shared: step int(288 * 0.75) = 216, ceil((1536 - 288) / 216) + 1 = 7 windows,
    # starts spread evenly 208 apart
    assert tile_starts(1536, 288, 0.25) == [0, 208, 416, 624, 832, 1040, 1248]
    assert result.mode == "resize" and result.windows == 7


def test_resize_windows_follow_the_model_inputs_shape():
    """Within 2.2 times the model input's aspect ratio an image is resized whole; beyond,
    windows of the input's aspect ratio as large as the image allows, along either side."""
    from napari_tmunet.tiling import resize_window

    square = (512, 512)
    assert resize_window((288, 384), square) is None  # CVC-ClinicDB
    assert resize_window((1072, 1920), square) is None  # the widest Kvasir-SEG frame
    assert resize_window((246, 517), square) is None  # the widest UDIAT image, 2.1:1
    assert resize_window((1080, 2376), square) is None  # 2.2:1
    assert resize_window((547, 2502), square) == (547, 547)
    assert resize_window((2502, 547), square) == (547, 547)
    assert resize_window((256, 1100), (256, 512)) is None  # 2.15 times the input's 2:1
    assert resize_window((256, 1200), (256, 512)) == (256, 512)  # 2.34 times
    assert resize_window((256, 1200), (512, 256)) == (256, 128)
    assert resize_window((100, 1000), (256, 512)) == (100, 200)


def test_ordinary_frames_are_resized_whole_as_before(colonoscopy):
    """The bundled sample and a CVC-ClinicDB frame with the colonoscopy model, the widest
    UDIAT image (2.1:1) with the ultrasound model go through the model whole, exactly as
    resize mode always ran: the same probability."""
    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.data.images import read_image
    from napari_tmunet.inference import (
        FrameInput,
        foreground_probability,
        forward_logits,
        resize,
        run_to_completion,
        segment,
    )

    if not (CLINIC.is_dir() and UDIAT.is_dir()):
        pytest.skip(f"no datasets at {DATASETS}")
    ultrasound = shipped("TM-UNet ultrasound")
    widest = read_image(UDIAT / "images" / f"{UDIAT_WIDEST}.png")
    assert widest.shape == (246, 517)
    frames = {
        "sample": (colonoscopy, load_sample("colonoscopy")[0]),
        "CVC-ClinicDB 30": (colonoscopy, clinic_pair("30")[0]),
        f"UDIAT {UDIAT_WIDEST}": (ultrasound, widest),
    }
    for name, (model, image) in frames.items():
        result = run_to_completion(segment(image, model, mode="resize"))
        frame = FrameInput(image, model.model_config.in_channels, model.input_config)
        logits = forward_logits(model.model, frame.resized(), amp=False)  # (1, 1, h, w)
        whole = foreground_probability(resize(logits, frame.hw))[0].numpy()
        assert result.windows == 1, name
        np.testing.assert_array_equal(result.probability, whole, err_msg=name)


def test_predict_cli_segments_a_wide_strip_frame_by_frame(clinic_strip, tmp_path):
    """``napari-tmunet-predict`` with the model's own mode on a 2.7:1 strip of two
    CVC-ClinicDB frames finds both polyps (resized whole: the second is lost)."""
    from napari_tmunet.data.images import read_mask, write_image
    from napari_tmunet.predict_cli import main

    image, mask, parts = clinic_strip
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "strip.png", image)
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "--model", "TM-UNet colonoscopy"]
    assert main([*args, "--device", "cpu"]) == 0
    labels, _ = read_mask(tmp_path / "out" / "strip.png")
    scores = part_dice(labels, mask, parts)
    assert min(scores) >= MIN_PART_DICE, scores


def test_evaluation_scores_a_strip_as_segment_runs_it(colonoscopy, clinic_strip):
    """The evaluation (validation, fine-tuning's held-out score) in resize mode predicts a
    strip as Segment does: the same windows, the same mask."""
    from napari_tmunet.evaluation import evaluate
    from napari_tmunet.inference import run_to_completion, segment

    image, mask, parts = clinic_strip
    scored = evaluate(
        colonoscopy.model,
        [("strip", image, mask)],
        colonoscopy.input_config,
        "resize",
        device="cpu",
        keep_predictions=True,
    )
    [(_, predicted, _)] = scored.predictions
    result = run_to_completion(segment(image, colonoscopy, mode="resize", device="cpu"))
    np.testing.assert_array_equal(predicted, result.labels > 0)
    assert min(part_dice(predicted, mask, parts)) >= MIN_PART_DICE


@pytest.mark.gui
def test_the_segment_dock_segments_a_strip_in_windows_and_says_so(
    make_napari_viewer, qtbot, clinic_strip
):
    """The Segment dock with everything left to the model: both polyps found, and the
    summary line says the strip went through the model in windows."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Segment"
    )
    image, mask, parts = clinic_strip
    layer = viewer.add_image(image, name="strip", rgb=True)
    widget.image.value = layer
    assert widget.model.value == "TM-UNet colonoscopy"
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.status.value == "done", widget.status.value
    labels = viewer.layers["strip labels"].data
    assert min(part_dice(labels, mask, parts)) >= MIN_PART_DICE
    assert "(resize in 4 windows along its length, " in widget.summary.value
