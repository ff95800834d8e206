"""One owner of "is the view still the fit?" (fix-177): ``_view_fit`` decides both when a
picture shown alone is fitted (fix-165: at another extent; one of the same extent keeps
the view) and when a dock opened or closed fits the view again (fix-168: while it is the
last fit's). Where the two rules disagreed on main: a picture of the same extent shown in
place of the one fitted kept the view, but the view stayed that picture's fit; once that
picture was closed, a dock opened kept the old zoom, and the picture in view was cut.

A real window of 1366 x 768 with the Segment dock open and real CVC-ClinicDB frames
(test_channels_view_fixes168's helpers and window).
"""

from __future__ import annotations

import pytest
from test_channels_view_fixes168 import (
    CLINIC,
    FRAME,
    assert_fitted,
    change_canvas,
    shown,
    window,  # noqa: F401 (a fixture)
)
from test_dock_menu_scroll import menu_item
from test_segment_view_fixes165 import open_frame, resized

pytestmark = pytest.mark.gui

SIZE = (900, 700)  # (width, height): larger than the 384 x 288 frame, another aspect


def test_a_frame_of_the_same_extent_is_refitted_once_the_fitted_one_is_closed(
    window,  # noqa: F811
    qtbot,
    tmp_path,
):
    """A frame, then a larger one (the dock fits it), then another of the larger's extent
    (the view kept: the same fit). The user closes the hidden larger frame and opens the
    Metrics dock, which narrows the canvas: the frame in view is fitted again, whole (main:
    the fit was the closed frame's, so none was made; the frame kept its zoom, cut)."""
    from napari_tmunet._docks import open_dock

    viewer = window
    change_canvas(qtbot, viewer, lambda: open_dock(viewer, "Segment"))
    open_frame(viewer, CLINIC / "images" / f"{FRAME}.png")
    large = open_frame(viewer, resized(tmp_path, FRAME, SIZE))
    assert shown(viewer) == [large.name]
    assert_fitted(viewer, large)
    twin = open_frame(viewer, resized(tmp_path, "137", SIZE))
    assert shown(viewer) == [twin.name]
    assert_fitted(viewer, twin)

    viewer.layers.remove(large)
    qtbot.wait(100)  # the dock looks at closed pictures once the event loop turns
    assert shown(viewer) == [twin.name]
    metrics_item = menu_item(viewer, "Plugins", "TM-UNet", "Metrics (TM-UNet)")
    change_canvas(qtbot, viewer, metrics_item.trigger)
    assert_fitted(viewer, twin)
