"""Texts of the docks are readable at their default width on a 1366 x 768 window (Xvfb)."""

from __future__ import annotations

import pytest
from _paths import EXTRA
from _view import column_keys

from napari_tmunet import registry
from napari_tmunet._widget_common import shown_text
from napari_tmunet.training.finetune import comparison_rows

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"
LONG_LABEL = "fine-tuned on kvasir1 20261202-184916"
KVASIR = EXTRA / "Kvasir-SEG"
KVASIR_FRAME = "cju0qkwl35piu0993l0dewei2"  # 529 x 622, its polyp found at Dice 0.91


@pytest.fixture
def window(make_napari_viewer, qtbot):
    """A shown viewer of the tester's screen size; ``add(name)`` docks a widget, settled."""
    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1366, 768)
    viewer.window._qt_window.show()

    def add(name):
        _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name=name)
        qtbot.wait(50)
        return widget

    return viewer, add


def _fits(widget, text: str, padding: int = 12) -> bool:
    return widget.fontMetrics().horizontalAdvance(text) + padding <= widget.width()


def test_model_names_show_whole_in_the_segment_dock(window):
    viewer, add = window
    viewer.open_sample(PLUGIN, "colonoscopy")
    combo = add("Segment").model.native
    names = [entry.name for entry in registry.available_models()]
    assert names, "no shipped model installed"
    for name in names:
        combo.setCurrentText(name)
        assert combo.currentText() == name and shown_text(combo) == name


def test_revert_button_text_fits_and_names_the_model_in_its_tooltip(window, qtbot):
    viewer, add = window
    tune = add("Fine-tune")
    first, second = (entry.name for entry in registry.available_models()[:2])
    tune.active.set(second, label=LONG_LABEL)  # e.g. after a revert, a fine-tuned model
    tune.active.set(first)
    tune._update_buttons()
    qtbot.wait(50)
    button = tune.revert_button
    assert button.enabled and _fits(button.native, button.text), button.text
    assert LONG_LABEL in button.tooltip


def test_comparison_scores_are_in_view_at_the_default_width(window, qtbot):
    _, add = window
    metrics = add("Metrics")
    scores = dict(dice=0.71, iou=0.6, precision=0.8, recall=0.7, hd=12.3, hd95=8.1)
    rows = comparison_rows(scores, scores, "TM-UNet nuclei", LONG_LABEL, "20% held out")
    metrics.set_comparison(rows)
    qtbot.wait(50)
    table = metrics.comparison_table.native
    headers = column_keys(table)
    assert headers[:3] == ["model", "dice", "hd95_px"]
    for column in range(3):
        end = table.columnViewportPosition(column) + table.columnWidth(column)
        assert end <= table.viewport().width(), headers[column]
    assert table.item(0, 0).toolTip() == rows[0]["model"]


def _lines(label) -> int:
    """How many lines the wrapped QLabel ``label`` takes at its width."""
    native = label.native
    return round(native.heightForWidth(native.width()) / native.fontMetrics().lineSpacing())


def test_the_channel_first_colour_words_leave_the_summary_in_view(window, tmp_path):
    """The Segment dock's words on a colour TIFF that napari's own reader opened as grey
    frames take a few lines at 1366 x 768, not 12 that push the summary out of view
    (tester19 F)."""
    import tifffile

    from napari_tmunet._sample_data import load_sample

    viewer, add = window
    colour, _ = load_sample("colonoscopy")
    path = tmp_path / "clinic_chw.tif"
    tifffile.imwrite(path, colour.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    (layer,) = viewer.open(str(path), plugin="napari")
    widget = add("Segment")
    widget.image.value = layer
    assert "is a channel-first colour TIFF" in widget.model_reason.value
    assert _lines(widget.model_reason) <= 6, widget.model_reason.value


def _shows_whole(body, label) -> bool:
    """Whether the wrapped ``label`` in ``body`` (a ``scroll_body``) shows all its lines
    across the view: its right edge within the scroll area's viewport, which does not
    scroll sideways, and as tall as its text wrapped at its width."""
    from qtpy.QtCore import QPoint

    native, viewport = label.native, body.scroll_area.viewport()
    right = native.mapTo(viewport, QPoint(native.width(), 0)).x()
    return right <= viewport.width() and native.height() >= native.heightForWidth(native.width())


@pytest.mark.skipif(not KVASIR.is_dir(), reason="extra-data Kvasir-SEG not present")
def test_the_metrics_texts_wrap_within_the_dock_with_kvasir_names(window, qtbot):
    """1366 x 768: a Kvasir-SEG frame segmented (threaded path), then Metrics opened tabbed
    with Segment, as the launcher has them, and Fine-tune: the frame's labels are the only
    mask, then its JPEG mask is opened and scored. The 25-letter names ("cju0... labels")
    in the choosers made the Metrics body wider than the dock, and its hint and score line
    were cut at the right (tester26 D8); they wrap within the view, the choosers elide the
    names in the middle."""
    from napari_tmunet._widget_common import shown_text

    viewer, add = window
    (frame,) = viewer.open(str(KVASIR / "images" / f"{KVASIR_FRAME}.jpg"), plugin="napari")
    segment = add("Segment")
    assert segment.image.value is frame
    segment.segment()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=600_000)  # a busy CPU
    labels = viewer.layers[f"{KVASIR_FRAME} labels"]
    windows = viewer.window
    metrics = windows.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Metrics", tabify=True)
    metrics = metrics[1]
    add("Fine-tune")
    qtbot.wait(100)
    assert metrics.pair_note.value.startswith(f"{labels.name!r} is the only mask: to score")
    assert _shows_whole(metrics.body, metrics.pair_note), metrics.pair_note.native.width()

    (mask,) = viewer.open(str(KVASIR / "masks" / f"{KVASIR_FRAME}.jpg"), plugin="napari")
    metrics.prediction.value, metrics.reference.value = labels, mask
    metrics.compute_button.native.click()
    qtbot.waitUntil(lambda: bool(metrics.results) and metrics._worker is None, timeout=20_000)
    qtbot.wait(100)
    assert metrics.status.value.startswith(f"{labels.name} vs {mask.name}: Dice 0.9")
    assert _shows_whole(metrics.body, metrics.status), metrics.status.native.width()
    shown = shown_text(metrics.prediction.native)
    assert shown.endswith(" labels") and "\u2026" in shown  # elided in the middle


def _ink_bands(native) -> list[tuple[int, int]]:
    """The (first, last) rows of each line of text drawn in the widget ``native`` (rows
    with pixels far from its background's grey), in its own coordinates."""
    image = native.grab().toImage()
    background = image.pixelColor(0, 0).lightness()
    bands, start = [], None
    for row in range(image.height() + 1):
        ink = row < image.height() and any(
            abs(image.pixelColor(x, row).lightness() - background) > 60
            for x in range(image.width())
        )
        if ink and start is None:
            start = row
        elif not ink and start is not None:
            bands.append((start, row - 1))
            start = None
    return bands


def test_a_long_model_reason_leaves_the_summary_in_whole_lines(window, qtbot):
    """1366 x 768, a 16-bit grey scan (its model reason takes 6 lines) segmented on the
    threaded path: the dock keeps the Image and Model boxes in view and shows the summary
    under them in whole lines, scrolling the rest in its box; the view's bottom edge cut
    its last line in half (tester33 #9)."""
    import numpy as np
    from _view import in_view
    from qtpy.QtCore import QPoint, QRect

    from napari_tmunet._sample_data import load_sample

    viewer, add = window
    image, _ = load_sample("ultrasound")
    layer = viewer.add_image(image.astype(np.uint16) * 257, name="us16")
    segment = add("Segment")
    segment.image.value = layer
    # 6 lines across the dock (8 in the value column, before tester36 #7)
    assert "16-bit" in segment.model_reason.value and _lines(segment.model_reason) >= 6
    segment.segment()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=600_000)  # a busy CPU
    assert segment.status.value == "done", segment.status.value
    assert "may not suit this image" in segment.summary.value
    qtbot.wait(800)  # the scroll follows Qt's layout for half a second

    body, label = segment.body, segment.summary.native
    assert in_view(body, segment.image) and in_view(body, segment.model)
    box = label.parentWidget().parentWidget().parentWidget()  # the summary's scrolled box
    dock_view, box_view = body.scroll_area.viewport(), box.viewport()
    shown = QRect(label.mapFrom(dock_view, QPoint(0, 0)), dock_view.size())
    shown = shown.intersected(QRect(label.mapFrom(box_view, QPoint(0, 0)), box_view.size()))
    bands = _ink_bands(label)  # its lines, all of them drawn
    whole = [b for b in bands if shown.top() <= b[0] and b[1] <= shown.bottom()]
    cut = [b for b in bands if b not in whole and b[1] >= shown.top() and b[0] <= shown.bottom()]
    assert bands[0] in whole and len(whole) >= 3, (bands, shown)
    assert cut == [], (cut, shown)  # no line shows in part
    # the rest scrolls in the box (since the run's texts span the dock, tester36 #7, this
    # summary may fit it whole)
    assert len(whole) == len(bands) or box.verticalScrollBar().maximum() > 0
