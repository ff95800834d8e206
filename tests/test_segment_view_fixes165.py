"""The picture in view with the Segment dock open (tester36 #1, #2, #3; found on Kvasir-SEG
frames of 490 x 531 .. 1920 x 1072), on the threaded path in a real viewer with the
shipped colonoscopy model, on CVC-ClinicDB frames (384 x 288) and one resized to another
size: the view is fitted to a picture shown alone at another extent, and keeps the user's
zoom for one of the same extent; closing the picture in front shows the one the Image box
moves to, with its result, and hides and names the closed one's result; a mask opened as
an image is drawn see-through and shows its own picture."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _paths import DATASETS, require
from PIL import Image as PILImage
from test_segment_choices import segment_dock
from test_segment_widget import wait_done

from napari_tmunet._layer_style import MASK_IMAGE_OPACITY
from napari_tmunet._segment_frames import CLOSED_TAIL

pytestmark = pytest.mark.gui

CLINIC = DATASETS / "CVC-ClinicDB"
# frames of different scenes where the shipped colonoscopy model finds the polyp
SMALL, OTHER, SCENE = "45", "137", "446"
LARGE = (720, 560)  # (width, height) of a frame resized: larger, another aspect
BUSY_CPU_MS = 600_000  # the most a run may take on a shared, busy CPU (a few s when idle)


@pytest.fixture(autouse=True)
def _clinic_and_model():
    require(CLINIC, model="TM-UNet colonoscopy")


def open_frame(viewer, path):
    """Open one picture file with napari's own reader, as File > Open does."""
    (layer,) = viewer.open(str(path), plugin="napari")
    return layer


def resized(tmp_path, stem: str, size=LARGE):
    """The CVC-ClinicDB frame ``stem`` resized to ``size`` (width, height), as a PNG."""
    path = tmp_path / f"{stem}_{size[0]}x{size[1]}.png"
    with PILImage.open(CLINIC / "images" / f"{stem}.png") as picture:
        picture.convert("RGB").resize(size, PILImage.BILINEAR).save(path)
    return path


def segment(qtbot, widget) -> None:
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget, timeout=BUSY_CPU_MS)
    assert widget.status.value == "done", widget.status.value


def shown(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.visible]


def camera(viewer):
    return getattr(viewer, "scene", viewer).camera  # napari 0.9 moved it


def view(viewer) -> tuple:
    return tuple(camera(viewer).center), camera(viewer).zoom


def fitted(viewer, layer) -> tuple:
    """The view napari's reset view gives ``layer`` alone (the view is left as it was)."""
    before = view(viewer)
    viewer.reset_view(layers=[layer])
    fit = view(viewer)
    camera(viewer).center, camera(viewer).zoom = before
    return fit


def assert_view(viewer, expected) -> None:
    (center, zoom), (want_center, want_zoom) = view(viewer), expected
    np.testing.assert_allclose(center, want_center, atol=1e-6)
    assert zoom == pytest.approx(want_zoom)


def test_a_picture_of_another_size_is_fitted_to_the_view(make_napari_viewer, qtbot, tmp_path):
    """A 384 x 288 frame segmented, then a 720 x 560 one opened and segmented: the view is
    fitted to the larger frame, so neither it nor its result is cut (it kept the first
    frame's framing). The user then zooms in and shows another frame of that size: the
    zoom is kept. Showing the small frame again fits the view to it."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    small = open_frame(viewer, CLINIC / "images" / f"{SMALL}.png")
    segment(qtbot, widget)

    large = open_frame(viewer, resized(tmp_path, OTHER))
    assert widget.image.value is large
    segment(qtbot, widget)
    assert shown(viewer) == [large.name, f"{large.name} labels"]
    assert_view(viewer, fitted(viewer, large))

    camera(viewer).zoom *= 3  # the user zooms in on a corner of the large frame
    camera(viewer).center = (100.0, 150.0)
    zoomed = view(viewer)
    same_size = open_frame(viewer, resized(tmp_path, SCENE))
    assert shown(viewer) == [same_size.name]
    assert_view(viewer, zoomed)

    viewer.layers.selection.active = small  # selected in the layer list
    assert shown(viewer) == [small.name, f"{small.name} labels"]
    assert_view(viewer, fitted(viewer, small))


def test_closing_the_picture_in_front_shows_the_next_with_its_result(
    make_napari_viewer, qtbot, tmp_path
):
    """Two frames of different sizes, each segmented, the larger in front; deleting it in
    the layer list shows the one the Image box moves to, with its result, fitted to the
    view; the closed frame's result is kept, hidden, and named as its picture's is gone
    (the canvas was black: the next frame hidden, the closed one's result shown)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    small = open_frame(viewer, CLINIC / "images" / f"{SMALL}.png")
    segment(qtbot, widget)
    large = open_frame(viewer, resized(tmp_path, OTHER))
    segment(qtbot, widget)
    kept = widget._output_of(large).labels
    painted = np.array(kept.data)
    assert shown(viewer) == [large.name, kept.name]

    viewer.layers.selection.active = large
    viewer.layers.remove_selected()  # the layer list's delete button
    qtbot.waitUntil(lambda: small.visible, timeout=5_000)
    assert widget.image.value is small
    assert shown(viewer) == [small.name, f"{small.name} labels"]
    assert kept in viewer.layers and not kept.visible  # the user's, never deleted
    assert kept.name == f"{large.name} labels{CLOSED_TAIL}"
    np.testing.assert_array_equal(kept.data, painted)
    assert_view(viewer, fitted(viewer, small))


def test_a_mask_opened_as_an_image_is_see_through_and_shows_its_picture(
    make_napari_viewer, qtbot, tmp_path
):
    """Frames A and B segmented, B in front; A's mask file ("A_mask.tif") opened with File >
    Open becomes an image layer: it is drawn see-through, and A is shown
    with it, B and B's result hidden (it was drawn opaque over B, A hidden). Selecting B,
    then the mask again, shows A again and chooses it in the Image box."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    first = open_frame(viewer, CLINIC / "images" / f"{SMALL}.png")
    segment(qtbot, widget)
    second = open_frame(viewer, CLINIC / "images" / f"{OTHER}.png")
    segment(qtbot, widget)
    assert shown(viewer) == [second.name, f"{second.name} labels"]

    mask_file = tmp_path / f"{SMALL}_mask.tif"  # a name the layer's does not start with
    shutil.copy(CLINIC / "masks" / f"{SMALL}.tif", mask_file)
    mask = open_frame(viewer, mask_file)
    assert type(mask).__name__ == "Image" and widget._is_mask(mask)
    assert mask.opacity == MASK_IMAGE_OPACITY < 1
    assert shown(viewer) == [first.name, f"{first.name} labels", mask.name]
    assert widget.image.value is first
    # the user's clicks come after the event loop has turned (napari's own selection of
    # the layer it added is over then); in one turn, selecting is napari's, not the user's
    qtbot.wait(50)

    viewer.layers.selection.active = second
    assert shown(viewer) == [second.name, f"{second.name} labels"]
    viewer.layers.selection.active = mask  # hidden with its picture; selected again
    assert shown(viewer) == [first.name, f"{first.name} labels", mask.name]
    assert widget.image.value is first
