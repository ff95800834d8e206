"""napari sample data: one real image with its reference mask per modality.

The files in ``napari_tmunet/samples/`` are small crops of the development datasets
(see ``shared/datasets/README.md`` for sources and licences); ``bench/make_samples.py``
regenerates them from :data:`SAMPLES`, so changing a sample is a one-line edit here
followed by running that script.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._layer_style import as_reference, outline_in_current_viewer
from ._unsaved import note_kept


class SampleSpec(NamedTuple):
    """Where a sample comes from and how it is cut."""

    dataset: str  # folder under shared/datasets
    name: str  # base name in images/ and masks/
    crop: tuple[int, int, int, int] | None  # (y0, x0, height, width); None: whole image
    title: str  # layer name
    credit: str  # dataset and licence, kept in the layer metadata


# The one table to edit when swapping samples (e.g. for frames of a model's test split).
# Each sample comes from the TEST part of the split seed 0 that the shipped models use
# (napari_tmunet.data.make_split), so no shipped model has trained on it.
SAMPLES: dict[str, SampleSpec] = {
    "colonoscopy": SampleSpec(
        "CVC-ClinicDB", "176", None, "CVC-ClinicDB 176", "CVC-ClinicDB, research use only"
    ),
    "nuclei": SampleSpec(
        "MoNuSeg",
        "TCGA-A7-A13F-01Z-00-DX1",
        (372, 372, 256, 256),
        "MoNuSeg TCGA-A7-A13F crop",
        "MoNuSeg 2018, CC BY-NC-SA 4.0",
    ),
    "ultrasound": SampleSpec(
        "UDIAT", "000074", None, "UDIAT 000074", "UDIAT Dataset B, research use only"
    ),
}

SAMPLES_DIR = Path(__file__).parent / "samples"


def sample_paths(modality: str) -> tuple[Path, Path]:
    """Return the (image, mask) file paths of a shipped sample."""
    if modality not in SAMPLES:
        raise KeyError(f"Unknown sample {modality!r}; choose one of {sorted(SAMPLES)}.")
    return SAMPLES_DIR / f"{modality}_image.png", SAMPLES_DIR / f"{modality}_mask.png"


def load_sample(modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (image, mask) of a sample: image in its native dtype, mask uint8 0/1 (H, W)."""
    from .data.images import read_image, read_mask

    image_path, mask_path = sample_paths(modality)
    mask, _rule = read_mask(mask_path)
    return read_image(image_path), mask.astype(np.uint8)


def _layers(modality: str) -> list[tuple]:
    spec = SAMPLES[modality]
    image, mask = load_sample(modality)
    meta = {"source": f"{spec.dataset}/{spec.name}", "crop": spec.crop, "credit": spec.credit}
    outline_in_current_viewer()  # the reference mask: drawn as outlines
    mask_kwargs = as_reference({"name": f"{spec.title} mask", "metadata": dict(meta)}, mask)
    note_kept(mask)  # as the sample file keeps it: closing napari asks only once it changes
    return [
        (image, {"name": spec.title, "metadata": dict(meta)}, "image"),
        (mask, mask_kwargs, "labels"),
    ]


def colonoscopy_sample() -> list[tuple]:
    """CVC-ClinicDB colonoscopy frame (384x288 RGB) with its polyp mask."""
    return _layers("colonoscopy")


def nuclei_sample() -> list[tuple]:
    """MoNuSeg H&E crop (256x256 RGB) with its nuclei mask."""
    return _layers("nuclei")


def ultrasound_sample() -> list[tuple]:
    """UDIAT breast ultrasound image (grey) with its lesion mask."""
    return _layers("ultrasound")
