"""Three CVC-ClinicDB frames of one size (frames 1, 101, 200), as the Metrics tests use
them: a dataset folder opened with the plugin's reader beside the Metrics dock, or their
masks stacked with an eroded copy to score."""

from __future__ import annotations

import numpy as np
from _paths import DATASETS, dataset_subset
from scipy import ndimage

CLINIC = DATASETS / "CVC-ClinicDB"
FRAMES = ("1", "101", "200")


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
