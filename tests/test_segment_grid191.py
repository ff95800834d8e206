"""Segment's frames in napari's grid: the view the user made is kept, read through napari
0.9's ``viewer.canvas.grid`` without the deprecated ``viewer.grid`` (fix-191 #2)."""

import warnings

import pytest
from _paths import DATASETS, require
from test_segment_choices import segment_dock
from test_segment_view_fixes165 import CLINIC, OTHER, SMALL, camera, open_frame, resized, view

pytestmark = pytest.mark.gui


def test_grid_mode_keeps_the_view_without_deprecated_api(make_napari_viewer, tmp_path):
    """With napari's grid on, a frame of another size opened with the Segment dock open
    keeps the user's zoom (frames are not fitted in the grid), and nothing reads the
    deprecated ``viewer.grid``."""
    require(DATASETS / "CVC-ClinicDB")
    viewer = make_napari_viewer()
    segment_dock(viewer)
    grid = getattr(getattr(viewer, "canvas", None), "grid", None) or viewer.grid
    grid.enabled = True
    open_frame(viewer, CLINIC / "images" / f"{SMALL}.png")
    camera(viewer).zoom *= 3  # the user zooms in
    zoomed = view(viewer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        large = open_frame(viewer, resized(tmp_path, OTHER))
    assert large.visible
    assert view(viewer)[1] == pytest.approx(zoomed[1])
    grid_warnings = [str(w.message) for w in caught if "grid" in str(w.message)]
    assert grid_warnings == []
