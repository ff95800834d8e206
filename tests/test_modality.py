"""registry.guess_modality and registry.fluorescence_sign on real images: grey with a few
coloured pixels is still grey; grey fluorescence is not taken for ultrasound."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS, DSB_GREY, EXTRA

from napari_tmunet import registry

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


UDIAT_SCAN = DATASETS / "UDIAT" / "images" / "000002.png"


def fluorescence_16bit() -> np.ndarray:
    """A DSB2018 fluorescence image as a 16-bit camera writes it."""
    import imageio.v3 as iio

    return iio.imread(DSB_GREY)[..., 0].astype(np.uint16) * 257


def ultrasound_entry() -> registry.ModelEntry:
    return next(e for e in registry.registry_entries() if e.modality == "ultrasound")


@pytest.mark.skipif(not (DSB_GREY.is_file() and UDIAT_SCAN.is_file()), reason="no DSB2018/UDIAT")
def test_grey_is_only_a_hint_of_ultrasound_and_fluorescence_is_not_a_match():
    """Both are grey, so both get the ultrasound model, but only the scan is called a fit,
    and even then the words say it is for breast ultrasound only; the fluorescence image,
    8-bit or 16-bit, is said to look like fluorescence, with what to do."""
    scan, fluorescence = thumbnail(UDIAT_SCAN), fluorescence_16bit()
    assert registry.guess_modality(scan) == registry.guess_modality(fluorescence) == "ultrasound"
    entry = ultrasound_entry()
    why, fits = registry.shipped_model_reason(entry, scan)
    assert fits and "grey" in why and "breast ultrasound (BUSI, UDIAT) only" in why
    assert "not meant for other grey images such as fluorescence" in why
    for image in (thumbnail(DSB_GREY), fluorescence):
        why, fits = registry.shipped_model_reason(entry, image)
        assert not fits and "looks like fluorescence microscopy (" in why, why
        assert "no shipped model is trained for fluorescence" in why and "fine-tune" in why
    assert "16-bit data" in registry.shipped_model_reason(entry, fluorescence)[0]
    assert not registry.shipped_model_reason(entry, fluorescence.astype(np.float32))[1]
    # 16-bit storage of 8-bit values (a converted export) is still a fit
    assert registry.shipped_model_reason(entry, scan.astype(np.uint16))[1]
    # a grey image that is neither, yet 16-bit: the bit depth alone says it
    why, fits = registry.shipped_model_reason(entry, scan.astype(np.uint16) * 257)
    assert not fits and "16-bit data" in why and "fluorescence microscopy" not in why


DSB = EXTRA / "DSB2018-stage1test" / "images"


@pytest.mark.skipif(not DSB.is_dir(), reason=f"no DSB2018 stage-1 test images at {DSB}")
def test_most_grey_dsb2018_images_look_like_fluorescence():
    """DSB2018 stage-1 test: 53 of its 65 images are grey fluorescence (the rest stained
    brightfield, in colour); the sign fires on 51 of the 53 (measured), and choose_model
    calls none of those a fit."""
    images = [thumbnail(path) for path in sorted(DSB.iterdir())]
    grey = [image for image in images if registry.guess_modality(image) == "ultrasound"]
    fluorescent = [image for image in grey if registry.fluorescence_sign(image)]
    assert len(grey) >= 50 and len(fluorescent) >= 0.9 * len(grey), (len(fluorescent), len(grey))
    choices = [registry.choose_model(image) for image in fluorescent]
    assert {c.entry.modality for c in choices} == {"ultrasound"}  # the only grey model
    assert not any(c.fits for c in choices)


@pytest.mark.parametrize(
    ("folder", "every"),
    [
        (DATASETS / "UDIAT", 1),
        (EXTRA / "BUSI", 2),
        (DATASETS / "CVC-ClinicDB", 10),
        (EXTRA / "Kvasir-SEG", 10),
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_ultrasound_and_endoscopy_never_look_like_fluorescence(folder, every):
    """No UDIAT (163) or BUSI (780) scan, no CVC-ClinicDB (550) or Kvasir-SEG (1000) frame
    has the sign, measured on all of them: an ultrasound scan's black margins can be as
    large as a fluorescence background, but its tissue is one wide bright region (at least
    10.5% of the image); endoscopy frames have no such background. Each one here judged as
    it is and as grey."""
    if not folder.is_dir():
        pytest.skip(f"no dataset at {folder}")
    files = sorted((folder / "images").iterdir())[::every]
    signs = {}
    for path in files:
        image = thumbnail(path)
        grey = image[..., :3].mean(axis=-1).astype(np.uint8) if image.ndim == 3 else image
        signs[path.name] = registry.fluorescence_sign(image) or registry.fluorescence_sign(grey)
    assert not any(signs.values()), {name: sign for name, sign in signs.items() if sign}


def test_nan_or_infinite_pixels_do_not_make_a_colour_image_grey():
    """tester20 #2: the colonoscopy sample as float32 / 255 (as a registration step leaves
    it) with one NaN channel value was guessed "ultrasound" (every percentile was NaN); NaN
    and infinite pixels are left out, and an image of nothing else does not fail."""
    from napari_tmunet._sample_data import load_sample

    colour, _ = load_sample("colonoscopy")
    unit = colour[..., :3].astype(np.float32) / 255
    assert registry.guess_modality(unit) == "colonoscopy"
    unit[0, 0, 0] = np.nan
    assert registry.guess_modality(unit) == "colonoscopy"
    unit[5, 5] = np.inf
    unit[6, 6, 1] = -np.inf
    assert registry.guess_modality(unit, rgb=True) == "colonoscopy"
    assert registry.guess_modality(np.full((20, 30, 3), np.nan, np.float32)) == "ultrasound"
    assert registry.fluorescence_sign(np.full((20, 30), np.nan, np.float32)) == ""


@pytest.mark.skipif(not DSB_GREY.is_file(), reason="no DSB2018 stage-1 test images")
def test_a_nan_pixel_keeps_the_fluorescence_sign():
    """A grey fluorescence image as float with one NaN pixel still looks like fluorescence
    (before, any NaN gave no sign, so no warning that no shipped model suits it)."""
    grey = thumbnail(DSB_GREY)[..., :3].mean(axis=-1).astype(np.float32)
    sign = registry.fluorescence_sign(grey)
    assert sign
    grey[0, 0] = np.nan
    assert registry.fluorescence_sign(grey) == sign
