"""registry.guess_modality on real images: grey with a few coloured pixels is still grey."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS, REPO

from napari_tmunet import registry

EXTRA = REPO.parent / "extra-data"  # Kvasir-SEG, BUSI, CPM-15 (shared/datasets/EXTRA.md)
# BUSI images stored as RGB with a coloured caliper box, text or a faint tint: before, the
# first non-grey pixel made them "colour", hence colonoscopy.
BUSI_TINTED = [
    "benign (102)", "benign (13)", "benign (173)", "benign (234)", "benign (240)",
    "benign (255)", "benign (261)", "benign (277)", "benign (323)", "benign (330)",
    "benign (6)", "benign (69)", "malignant (196)", "malignant (65)", "malignant (67)",
    "normal (113)",
]  # fmt: skip


def thumbnail(path) -> np.ndarray:
    """What the Segment dock judges: napari's pixels of the file, at most ~256 px a side."""
    import imageio.v3 as iio

    image = iio.imread(path)
    step = max(1, max(image.shape[:2]) // 256)
    return image[::step, ::step]


def guess(path) -> str:
    image = thumbnail(path)
    return registry.guess_modality(image, rgb=image.ndim == 3 and image.shape[-1] in (3, 4))


def test_grey_with_a_coloured_box_or_a_tint_is_grey():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[50:52, 40:200] = rgb[150:152, 40:200] = (255, 255, 0)  # a yellow caliper box
    assert registry.guess_modality(rgb) == "ultrasound"
    tinted = np.clip(rgb.astype(int) + (6, 0, -6), 0, 255).astype(np.uint8)  # a faint cast
    assert registry.guess_modality(tinted) == "ultrasound"
    he = np.zeros((50, 60, 3), np.uint8) + np.array([200, 120, 190], np.uint8)
    assert registry.guess_modality(he) == "nuclei"


@pytest.mark.skipif(not (EXTRA / "BUSI").is_dir(), reason=f"no BUSI at {EXTRA}")
def test_busi_images_with_colour_marks_are_ultrasound():
    folder = EXTRA / "BUSI" / "images"
    guesses = {name: guess(folder / f"{name}.png") for name in BUSI_TINTED}
    assert set(guesses.values()) == {"ultrasound"}, guesses


@pytest.mark.parametrize(
    ("folder", "modality"),
    [
        (DATASETS / "CVC-ClinicDB", "colonoscopy"),
        (DATASETS / "MoNuSeg", "nuclei"),
        (DATASETS / "UDIAT", "ultrasound"),
        (EXTRA / "Kvasir-SEG", "colonoscopy"),
        (EXTRA / "CPM15", "nuclei"),
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_colour_datasets_keep_their_modality(folder, modality):
    """Every 10th image of each set (all of them agree, measured on the whole sets)."""
    if not folder.is_dir():
        pytest.skip(f"no dataset at {folder}")
    files = sorted((folder / "images").iterdir())[::10]
    guesses = [guess(path) for path in files]
    assert guesses.count(modality) == len(files), [
        f.name for f, g in zip(files, guesses, strict=True) if g != modality
    ]


DSB_GREY = EXTRA / "DSB2018-stage1test" / "images" / (
    "0999dab07b11bc85fb8464fc36c947fbd8b5d6ec49817361cb780659ca805eac.png"
)  # fluorescent nuclei, grey stored as RGBA
UDIAT_SCAN = DATASETS / "UDIAT" / "images" / "000002.png"


def fluorescence_16bit() -> np.ndarray:
    """A DSB2018 fluorescence image as a 16-bit camera writes it."""
    import imageio.v3 as iio

    return iio.imread(DSB_GREY)[..., 0].astype(np.uint16) * 257


@pytest.mark.skipif(not (DSB_GREY.is_file() and UDIAT_SCAN.is_file()), reason="no DSB2018/UDIAT")
def test_grey_is_only_a_hint_of_ultrasound_and_16_bit_data_is_not_a_match():
    """Both are grey, so both get the ultrasound model, but only the 8-bit scan is called
    a fit, and even then the words say it is for breast ultrasound only."""
    scan, fluorescence = thumbnail(UDIAT_SCAN), fluorescence_16bit()
    assert registry.guess_modality(scan) == registry.guess_modality(fluorescence) == "ultrasound"
    why, fits = registry.shipped_model_reason("ultrasound", scan)
    assert fits and "grey" in why and "breast ultrasound (BUSI, UDIAT) only" in why
    assert "not meant for other grey images such as fluorescence" in why
    why, fits = registry.shipped_model_reason("ultrasound", fluorescence)
    assert not fits and "16-bit data" in why and "no shipped model is meant" in why
    assert not registry.shipped_model_reason("ultrasound", fluorescence.astype(np.float32))[1]
    # 16-bit storage of 8-bit values (a converted export) is still a fit
    assert registry.shipped_model_reason("ultrasound", scan.astype(np.uint16))[1]
