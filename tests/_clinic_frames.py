"""CVC-ClinicDB frames in tests: three of one size (frames 1, 101, 200), as the Metrics
tests use them (a dataset folder opened with the plugin's reader beside the Metrics dock,
or their masks stacked with an eroded copy to score); the first N frames renumbered 1..N,
as the reader tests lay out large folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from _paths import DATASETS, dataset_subset
from scipy import ndimage

CLINIC = DATASETS / "CVC-ClinicDB"
FRAMES = ("1", "101", "200")
# The core's warning about a CVC-ClinicDB mask whose flat region of value 11 the rule '>127'
# leaves out (masks 1-5, 8, 9, 122, ...), which the reader shows as a napari warning
# (tests/test_file_warnings_fixes181.py); tests of its other warnings leave it out.
MASK_RULE_WARNING = "the mask rule '>127' leaves out"


def besides_mask_rules(texts: list[str]) -> list[str]:
    """``texts`` (notifications) less those holding :data:`MASK_RULE_WARNING`."""
    return [text for text in texts if MASK_RULE_WARNING not in text]


def open_with_metrics(viewer, tmp_path):
    """Open the three frames' dataset folder in ``viewer`` and add the Metrics dock; returns
    the dock and the frames' mask layers by frame name."""
    root = dataset_subset(CLINIC, tmp_path / "clinic", FRAMES)
    viewer.open(str(root), plugin="napari-tmunet")
    _, widget = viewer.window.add_plugin_dock_widget(
        plugin_name="napari-tmunet", widget_name="Metrics"
    )
    return widget, {name: viewer.layers[f"{name} mask"] for name in FRAMES}


def mask_stack(tmp_path, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The three frames' masks as a (3, H, W) int32 stack, and each eroded ``iterations``
    times (a prediction that misses their rims)."""
    from napari_tmunet.data.images import read_mask

    root = dataset_subset(CLINIC, tmp_path / "clinic", FRAMES)
    reference = np.stack([read_mask(path)[0] for path in sorted((root / "masks").iterdir())])
    prediction = np.stack([ndimage.binary_erosion(m, iterations=iterations) for m in reference])
    return reference.astype(np.int32), prediction.astype(np.int32)


def clinic_stems(count: int) -> list[str]:
    """The name stems of the first ``count`` CVC-ClinicDB frames (its numbers have gaps)."""
    return [str(n) for n in sorted(int(p.stem) for p in (CLINIC / "images").glob("*.png"))][:count]


def numbered_dataset(root: Path, count: int) -> Path:
    """``root`` as a dataset folder of the first ``count`` frames as ``images/K.png`` +
    ``masks/K.tif``, K = 1..count; returns ``root``."""
    for part in ("images", "masks"):
        (root / part).mkdir(parents=True)
    for k, stem in enumerate(clinic_stems(count), start=1):
        shutil.copy(CLINIC / "images" / f"{stem}.png", root / "images" / f"{k}.png")
        shutil.copy(CLINIC / "masks" / f"{stem}.tif", root / "masks" / f"{k}.tif")
    return root


def paired_folder(folder: Path, pairs: int, lone: int = 0) -> Path:
    """``K.png`` + ``K_mask.tif`` for K = 1..pairs, then ``lone`` masks without their
    picture (``K_mask.tif``, K after the pairs); returns ``folder``."""
    folder.mkdir()
    for k, stem in enumerate(clinic_stems(pairs + lone), start=1):
        if k <= pairs:
            shutil.copy(CLINIC / "images" / f"{stem}.png", folder / f"{k}.png")
        shutil.copy(CLINIC / "masks" / f"{stem}.tif", folder / f"{k}_mask.tif")
    return folder
