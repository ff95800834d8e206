"""A file of channels shares its mask with every channel, and a dock opened or closed keeps
the picture fitted (fix-168).

1. ``napari-tmunet`` on files of 2 channels ("NAME [ch 0]", "NAME [ch 1]") with their masks
   (a folder of two, one file with its mask beside it): the mask goes over the first
   channel; picking the second in the Segment dock's Image box shows it with its file's
   first channel and mask (another file in front is hidden), and Segment on it (the
   dock's worker thread) gives a result the Metrics dock pairs with the file's mask
   (main: with itself). The files are channels of a real MoNuSeg tile with its real mask
   (test_channels_launcher_fixes162's fixtures).
2. A real window of 1366 x 768 with a CVC-ClinicDB frame: the Metrics dock opened from the
   Plugins menu narrows the canvas, and the frame is fitted to it again, whole (main: cut
   on its sides); a view the user zoomed is kept as the dock closes; the Segment dock's
   fit of one frame (a larger one hidden) is fitted again to that frame alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_channels_launcher_fixes162 as fixes162
from _paths import DATASETS
from test_dock_menu_scroll import menu_item
from test_segment_view_fixes165 import camera, open_frame, resized, view

pytestmark = pytest.mark.gui

channels, truth = fixes162.channels, fixes162.truth  # fixtures: real MoNuSeg channels, mask
CLINIC = DATASETS / "CVC-ClinicDB"
FRAME = "45"  # 384 x 288
LOADED = 900_000  # ms: a wait for a busy machine (2 shared cores), not a timing


def pick(segment, name: str) -> None:
    """Choose the image ``name`` in the Segment dock's Image box as the user does (Qt says
    ``activated`` for a pick)."""
    combo = segment.image.native
    index = combo.findText(name)
    assert index >= 0, name
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def shown(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.visible]


def second_channel_segmented(picture: str, others: list[str]):
    """What the launcher's window shows as ``picture``'s second channel is picked in the
    Segment dock and segmented on its worker thread: the layers shown after the pick,
    after Segment, the Image box's choice and the Metrics dock's pair; ``others``: the
    layers of another file, hidden meanwhile."""

    def then(viewer):
        from napari_tmunet import launch

        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        metrics = viewer.window.dock_widgets["Metrics (TM-UNet)"]
        pick(segment, f"{picture} [ch 1]")
        picked = shown(viewer)
        launch._click_segment(segment, timeout=LOADED / 1000)  # the dock's worker thread
        assert segment.worker is not None
        hidden = [name for name in others if viewer.layers[name].visible]
        return {
            "picked": picked,
            "segmented": shown(viewer),
            "chosen": segment.image.value.name,
            "hidden shown": hidden,
            "pair": (metrics.prediction.value.name, metrics.reference.value.name),
            "pair note": metrics.pair_note.value if metrics.pair_note.visible else "",
        }

    return then


def test_a_channels_result_is_paired_with_its_files_mask(
    launcher_app, monkeypatch, channels, truth, tmp_path
):
    """One 2-channel file with its mask beside it: the mask goes over the first channel;
    Segment on the second keeps it chosen, and Metrics pairs its result with the file's
    mask (main: the result with itself). A folder of two such files, each with its mask:
    picking b's second channel shows b's channels and mask, a's hidden (main: b [ch 1] was
    drawn added onto a, under a's mask); Segment on it pairs its result with b's mask."""
    beside = fixes162.save_channels(tmp_path / "one" / "fluo2.tif", channels[:2], imagej=True)
    fixes162.save_mask(tmp_path / "one" / "fluo2_mask.png", truth)
    then = second_channel_segmented("fluo2", [])
    status, _, labels, _, seen = fixes162.launch_and_look(monkeypatch, [beside], then)
    assert status == 0
    np.testing.assert_array_equal(labels["fluo2 [ch 0] mask"][0] > 0, truth)
    assert seen["chosen"] == "fluo2 [ch 1]"
    assert seen["pair"] == ("fluo2 [ch 1] labels", "fluo2 [ch 0] mask")
    assert seen["pair note"] == ""

    folder = tmp_path / "folder"
    fixes162.save_channels(folder / "a.tif", channels[:2], imagej=True)
    fixes162.save_channels(folder / "b.tif", channels[2:], imagej=True)
    fixes162.save_mask(folder / "a_mask.png", truth)
    fixes162.save_mask(folder / "b_mask.png", truth[:, ::-1])
    a_layers = ["a [ch 0]", "a [ch 1]", "a [ch 0] mask"]
    then = second_channel_segmented("b", a_layers)
    status, layers, _, _, seen = fixes162.launch_and_look(monkeypatch, [folder], then)
    assert status == 0
    assert [name for name, _, visible in layers if visible] == a_layers  # a in front
    assert seen["picked"] == ["b [ch 0]", "b [ch 1]", "b [ch 0] mask"]
    assert seen["segmented"] == ["b [ch 0]", "b [ch 1]", "b [ch 0] mask", "b [ch 1] labels"]
    assert seen["hidden shown"] == []
    assert seen["chosen"] == "b [ch 1]"
    assert seen["pair"] == ("b [ch 1] labels", "b [ch 0] mask")
    assert seen["pair note"] == ""


def test_a_channel_selected_shows_its_file_and_stays_chosen(
    make_napari_viewer, qtbot, channels, truth, tmp_path
):
    """The folder opened with File > Open (the TM-UNet reader), the Segment dock open:
    selecting b's second channel in the layer list shows b with its mask, a hidden, and
    chooses that channel (main: nothing changed, a's mask drawn over b's channel);
    selecting a's mask then shows a and chooses a's first channel. Closing a's first
    channel leaves its second with a's mask (the file is still open)."""
    from _view import open_dock

    folder = tmp_path / "folder"
    fixes162.save_channels(folder / "a.tif", channels[:2], imagej=True)
    fixes162.save_channels(folder / "b.tif", channels[2:], imagej=True)
    fixes162.save_mask(folder / "a_mask.png", truth)
    fixes162.save_mask(folder / "b_mask.png", truth[:, ::-1])
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    viewer.open(str(folder), plugin="napari-tmunet")
    assert shown(viewer) == ["a [ch 0]", "a [ch 1]", "a [ch 0] mask"]

    viewer.layers.selection.active = viewer.layers["b [ch 1]"]
    assert shown(viewer) == ["b [ch 0]", "b [ch 1]", "b [ch 0] mask"]
    assert segment.image.value.name == "b [ch 1]"
    viewer.layers.selection.active = viewer.layers["a [ch 0] mask"]
    assert shown(viewer) == ["a [ch 0]", "a [ch 1]", "a [ch 0] mask"]
    assert segment.image.value.name == "a [ch 0]"

    # a's first channel closed: its second is still open, so is the file's picture: its
    # mask stays shown, not renamed "(picture closed)"
    viewer.layers.remove(viewer.layers["a [ch 0]"])
    qtbot.wait(100)  # the dock looks at closed pictures once the event loop turns
    assert shown(viewer) == ["a [ch 1]", "a [ch 0] mask"]


@pytest.fixture
def window(launcher_app, qtbot):
    """A shown napari window of the tester's screen size (1366 x 768), settled, no dock
    open, its Plugins menu as napari makes it (``launcher_app``: a viewer of its own)."""
    import napari

    if not CLINIC.is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    viewer = napari.Viewer(show=True)
    try:
        viewer.window._qt_window.resize(1366, 768)
        qtbot.waitUntil(lambda: viewer.window._qt_window.width() == 1366, timeout=LOADED)
        qtbot.wait(200)  # the layout settles
        yield viewer
    finally:
        viewer.close()


def canvas_width(viewer) -> int:
    return int(viewer.canvas.size[1])  # (height, width)


def on_screen(viewer, layer) -> tuple[float, float]:
    """Where ``layer``'s left and right edges lie on the canvas (px from its left edge)."""
    (center, zoom), width = view(viewer), canvas_width(viewer)
    x0, x1 = np.asarray(layer.extent.world, dtype=float)[:, -1]
    return (x0 - center[-1]) * zoom + width / 2, (x1 - center[-1]) * zoom + width / 2


def fitted(viewer, *layers) -> tuple:
    """The view napari's reset view gives ``layers`` alone; the view is left as it was, and
    no reset is said (``events.reset_view`` blocked: the plugin takes a reset said for a
    fit to keep)."""
    before = view(viewer)
    with viewer.events.reset_view.blocker():
        viewer.reset_view(layers=list(layers))
    fit = view(viewer)
    camera(viewer).center, camera(viewer).zoom = before
    return fit


def assert_fitted(viewer, *layers) -> None:
    """The view is napari's fit of ``layers`` alone: the first of them lies whole on the
    canvas."""
    (center, zoom), (fit_center, fit_zoom) = view(viewer), fitted(viewer, *layers)
    np.testing.assert_allclose(center, fit_center, atol=1e-6)
    assert zoom == pytest.approx(fit_zoom)
    left, right = on_screen(viewer, layers[0])
    assert 0 <= left < right <= canvas_width(viewer), (left, right, canvas_width(viewer))


def change_canvas(qtbot, viewer, action) -> None:
    """Do ``action`` (open or close a dock) and wait until the canvas changed width."""
    before = canvas_width(viewer)
    action()
    qtbot.waitUntil(lambda: canvas_width(viewer) != before, timeout=LOADED)
    qtbot.wait(100)  # the layout settles


def test_the_metrics_dock_opened_keeps_the_picture_fitted(window, qtbot):
    """A CVC-ClinicDB frame opened (napari fits it); the Metrics dock opened from the
    Plugins menu narrows the canvas: the frame is fitted to it again, whole (main: napari
    kept its zoom, both sides cut). The user zooms in; closing the dock by its X keeps
    that zoom. The Home button, then the dock opened again: fitted again."""
    from napari_tmunet._docks import find_dock

    viewer = window
    frame = open_frame(viewer, CLINIC / "images" / f"{FRAME}.png")
    assert_fitted(viewer, frame)
    metrics_item = menu_item(viewer, "Plugins", "TM-UNet", "Metrics (TM-UNet)")
    change_canvas(qtbot, viewer, metrics_item.trigger)
    assert_fitted(viewer, frame)

    camera(viewer).zoom *= 2  # the user zooms in on a corner
    camera(viewer).center = (100.0, 120.0)
    zoomed = view(viewer)
    dock, _ = find_dock(viewer, "Metrics")
    change_canvas(qtbot, viewer, dock.title.close_button.click)
    np.testing.assert_allclose(view(viewer)[0], zoomed[0])
    assert view(viewer)[1] == pytest.approx(zoomed[1])

    viewer.window._qt_viewer.viewerButtons.resetViewButton.click()  # Home
    change_canvas(
        qtbot, viewer, menu_item(viewer, "Plugins", "TM-UNet", "Metrics (TM-UNet)").trigger
    )
    assert_fitted(viewer, frame)


def test_the_segment_docks_fit_of_one_frame_is_kept_as_a_dock_closes(window, qtbot, tmp_path):
    """The Segment dock open, a frame and a larger one opened (stacked): the dock fits the
    view to the frame shown alone. Selecting the small one fits it; closing the Segment
    dock by its X widens the canvas: the small frame alone is fitted again (not both, as
    napari's reset view would: the larger hidden one too)."""
    from napari_tmunet._docks import find_dock, open_dock

    viewer = window
    change_canvas(qtbot, viewer, lambda: open_dock(viewer, "Segment"))
    small = open_frame(viewer, CLINIC / "images" / f"{FRAME}.png")
    large = open_frame(viewer, resized(tmp_path, FRAME, (900, 700)))
    assert shown(viewer) == [large.name]
    viewer.layers.selection.active = small
    assert shown(viewer) == [small.name]
    assert_fitted(viewer, small)

    dock, _ = find_dock(viewer, "Segment")
    change_canvas(qtbot, viewer, dock.title.close_button.click)
    assert_fitted(viewer, small)
    assert view(viewer)[1] != pytest.approx(fitted(viewer, small, large)[1])
