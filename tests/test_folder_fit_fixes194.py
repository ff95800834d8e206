"""A folder of pictures of different sizes (fix-194, tester41 #2, #9): ``napari-tmunet
FOLDER`` showed its first picture (683 x 585) at zoom 0.15, fitted to a hidden 4000 x 3000
one, at start, after Segment all and on napari's Home button: napari 0.9's reset view
fits all layers, hidden ones too. Now each of those fits the picture shown.

And a run says itself: napari's status bar said "Click Segment in the right-hand dock"
all through a run (now "Segmenting ...", and the hint again after), and the first run's
summary said "in 7.6 s" of a click that took 18.5 s (now its time counts loading the
model, and says how much of it that was).

The launcher's own window (``open_viewer``) on a folder of two real CVC-ClinicDB frames,
one resized larger; Segment all on the threaded path.
"""

from __future__ import annotations

import shutil

import pytest
from _paths import require
from qtpy.QtCore import QTimer
from test_channels_view_fixes168 import fitted
from test_segment_view_fixes165 import BUSY_CPU_MS, CLINIC, OTHER, SMALL, resized, shown, view
from test_segment_widget import wait_done

from napari_tmunet import registry
from napari_tmunet._dock_texts import START_HINT
from napari_tmunet._segment_widget import STATUS_BAR_TAIL

pytestmark = pytest.mark.gui

LARGE = (1600, 1200)  # (width, height): far larger than the 384 x 288 frame shown first


def assert_fits(viewer, *layers) -> None:
    """The view is napari's fit of ``layers`` alone to the canvas."""
    (center, zoom), (fit_center, fit_zoom) = view(viewer), fitted(viewer, *layers)
    assert zoom == pytest.approx(fit_zoom), (zoom, fit_zoom)
    assert center == pytest.approx(fit_center)


@pytest.fixture
def folder(tmp_path):
    """A folder of a CVC-ClinicDB frame ("a ...", opened first) and another frame resized to
    ``LARGE`` ("b ...", hidden behind it)."""
    require(CLINIC, model="TM-UNet colonoscopy")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    shutil.copy(CLINIC / "images" / f"{SMALL}.png", pictures / "a small.png")
    shutil.move(resized(tmp_path, OTHER, LARGE), pictures / "b large.png")
    return pictures


def test_a_folder_of_two_sizes_fits_the_picture_shown(qtbot, launcher_app, folder):
    """At start (and once the window is laid out), on Home, through Segment all and after
    it, the view is the fit of the picture shown, not of the hidden larger one (main: zoom
    of the 1600 x 1200 picture's fit, the 384 x 288 one drawn small in a corner). During
    the run napari's status bar says it; after, the launcher's hint again; the summary's
    first time counts the model's loading."""
    from napari_tmunet.launch import build_parser, open_viewer

    viewer, segment = open_viewer(build_parser().parse_args([str(folder)]))
    try:
        viewer.status = START_HINT  # as the launcher says it before napari.run
        qtbot.waitUntil(segment.native.isVisible)
        qtbot.wait(100)  # the launcher's second fit, once the event loop runs
        small, large = viewer.layers["a small"], viewer.layers["b large"]
        assert shown(viewer) == [small.name]
        assert_fits(viewer, small)
        assert view(viewer)[1] > fitted(viewer, large)[1] * 3  # drawn large, not a thumbnail

        viewer.camera.zoom *= 0.5  # the user zooms out, then presses Home
        viewer.reset_view()
        assert_fits(viewer, small)

        for thread in segment._prepared.values():  # the dock's early warm-up has ended:
            thread.join()
        registry._cache.clear()  # this run loads the model, as a first click in a session
        seen = []  # napari's status bar every 10 ms of the run (a dict: a layer's details)
        timer = QTimer()
        timer.timeout.connect(lambda: seen.append(viewer.status))
        timer.start(10)
        segment.segment_all()
        assert segment.worker is not None  # the threaded path
        wait_done(qtbot, segment, timeout=BUSY_CPU_MS)
        timer.stop()
        assert segment.status.value == "done", segment.status.value
        said = list(dict.fromkeys(text for text in seen if isinstance(text, str)))
        assert said[0] == f"Segmenting 2 images... {STATUS_BAR_TAIL}", said
        assert f"Segmenting 'b large' (2/2)... {STATUS_BAR_TAIL}" in said, said
        assert START_HINT not in said[:-1], said  # main: the hint all through the run
        assert viewer.status == START_HINT

        assert shown(viewer)[0] == small.name
        assert_fits(viewer, *[layer for layer in viewer.layers if layer.visible])
        viewer.reset_view()
        assert_fits(viewer, small)

        first = segment.summary.value.splitlines()
        line = next(text for text in first if text.startswith("a small:"))
        assert "s of it loading the model)" in line, segment.summary.value
    finally:
        viewer.close()
