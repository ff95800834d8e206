"""One owner of "is the view still the fit?" (fix-177): ``_view_fit`` decides both when a
picture shown alone is fitted (fix-165: at another extent; one of the same extent keeps
the view) and when a canvas that changes size fits the view again (fix-168: while it is
the last fit's). Where the two rules disagreed on main: a picture of the same extent shown
in place of the one fitted kept the view, but the view stayed the fit of the picture it
replaced; once that one was closed, a canvas narrowed (a dock opened) kept the old zoom,
and the picture in view was cut.

A viewer with the Segment dock and real CVC-ClinicDB frames. The canvas is narrowed as a
dock opened beside it narrows it: napari's canvas model says its new size (in a shown
window under xvfb, a canvas redrawn after a picture was closed crashed in glDrawArrays,
on main too).
"""

from __future__ import annotations

import numpy as np
import pytest
from _paths import require
from test_channels_view_fixes168 import fitted
from test_segment_choices import segment_dock
from test_segment_view_fixes165 import CLINIC, OTHER, SMALL, open_frame, resized, shown, view

pytestmark = pytest.mark.gui

SIZE = (900, 700)  # (width, height): larger than the 384 x 288 frame, another aspect


def assert_fitted(viewer, layer) -> None:
    """The view is napari's fit of ``layer`` alone to the canvas."""
    (center, zoom), (fit_center, fit_zoom) = view(viewer), fitted(viewer, layer)
    np.testing.assert_allclose(center, fit_center, atol=1e-6)
    assert zoom == pytest.approx(fit_zoom)


def test_a_frame_of_the_same_extent_is_refitted_once_the_fitted_one_is_closed(
    make_napari_viewer, qtbot, tmp_path
):
    """A frame, then a larger one (the dock fits it), then another of the larger's extent
    (the view kept: the same fit). The user closes the hidden larger frame, then a dock
    narrows the canvas: the frame in view is fitted again (main: the fit was the closed
    frame's, so none was made; the old zoom was kept, the frame cut on its sides)."""
    require(CLINIC)
    viewer = make_napari_viewer()
    segment_dock(viewer)
    open_frame(viewer, CLINIC / "images" / f"{SMALL}.png")
    large = open_frame(viewer, resized(tmp_path, SMALL, SIZE))
    assert shown(viewer) == [large.name]
    assert_fitted(viewer, large)
    twin = open_frame(viewer, resized(tmp_path, OTHER, SIZE))
    assert shown(viewer) == [twin.name]
    assert_fitted(viewer, twin)

    viewer.layers.remove(large)
    qtbot.wait(100)  # the dock looks at closed pictures once the event loop turns
    assert shown(viewer) == [twin.name]
    height, width = viewer.canvas.size
    before = view(viewer)
    viewer.canvas.size = (height, width - 300)  # a dock opened beside the canvas
    assert_fitted(viewer, twin)
    assert view(viewer)[1] < before[1]  # zoomed out: the frame whole on a narrower canvas
