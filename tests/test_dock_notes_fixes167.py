"""The Fine-tune and Metrics docks' notes span the dock at 1366 x 768, as Segment's do
(fix-166); the long words of a wrapped text break, and no dock's text can be copied with
the zero-width spaces that break them.

Fine-tune's model line ("shipped model: ...", "cannot start from this file: ...") and
each pair's note sat in the value column, right of the labels (about 100 px of the dock
unused): a left-out stack's note took 4 lines. The pairs are now titled "Pair 1",
"Pair 2" in the label column (the dock's messages name them so), their choosers in line
with the fields under them, their notes across the dock.
"""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS, dataset_subset
from _view import open_dock

from napari_tmunet._finetune_pairs import left_out_note
from napari_tmunet._widget_common import wrap

pytestmark = pytest.mark.gui

CLINIC = DATASETS / "CVC-ClinicDB"


@pytest.fixture
def clinic(tmp_path):
    """A dataset folder of CVC-ClinicDB pairs 1 and 2. Taken before make_napari_viewer:
    napari's viewer fixture fails at teardown after a skip in setup."""
    if not (CLINIC / "images").is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    return dataset_subset(CLINIC, tmp_path / "clinic", ["1", "2"])


def _window(make_napari_viewer, qtbot, folder):
    """A shown viewer of the tester's screen size, ``folder`` opened with the plugin's
    reader (pictures and their masks as Labels)."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.open(str(folder), plugin="napari-tmunet")
    qtbot.waitUntil(lambda: viewer.window._qt_window.width() == 1366)
    return viewer


def _left(dock, native) -> int:
    """The x of ``native``'s left edge in the dock's scrolled view."""
    from qtpy.QtCore import QPoint

    return native.mapTo(dock.body.scroll_area.viewport(), QPoint(0, 0)).x()


def _spans(dock, label, row_left: int) -> bool:
    """Whether the text ``label`` starts where the dock's rows start (their labels' left
    edge) and takes nine tenths of the view's width or more."""
    native, width = label.native, dock.body.scroll_area.viewport().width()
    starts = _left(dock, native) <= row_left + 2
    return native.isVisible() and starts and native.width() >= 0.9 * width


def _label_of(widget):
    """The QLabel of ``widget``'s row in a labelled Container (e.g. "Folder")."""
    return widget._labeled_widget()._label_widget.native


def test_the_fine_tune_notes_and_the_pairs_notes_span_the_dock(clinic, make_napari_viewer, qtbot):
    """1366 x 768, two CVC-ClinicDB pairs, Start from TM-UNet ultrasound (a modality
    warning), a left-out stack's note under pair 2: the model line, the warning, the
    ETA and status lines and the pair's note start at the rows' left edge and span the
    dock; the pairs' titles show whole and their choosers line up with Folder's field."""
    viewer = _window(make_napari_viewer, qtbot, clinic)
    tune = open_dock(viewer, "Fine-tune")
    if len(tune.rows) < 2:
        tune.add_pair()
    first, second = tune.rows[:2]
    assert [r.image.value.name for r in (first, second)] == ["1", "2"]
    note = left_out_note(np.array([False, True, False, False]))
    second.say_left_out(note)
    tune.eta.value = "12/200 steps · ETA 0:01:05"
    tune.status.value = "The fine-tuned model scores worse on the held-out part: kept the old one."
    qtbot.wait(200)

    row_left = _left(tune, _label_of(tune.dataset_folder))
    assert tune.active_label.value == "shipped model: TM-UNet colonoscopy"
    for text in (tune.active_label, tune.eta, tune.status, second.note):
        assert _spans(tune, text, row_left), (text.value, _left(tune, text.native))
    assert second.note.value == note
    tune.model.value = "TM-UNet ultrasound"  # for another modality than the pairs'
    qtbot.wait(200)
    assert "do not look like the ultrasound images" in tune.modality_note.value
    assert _spans(tune, tune.modality_note, row_left), tune.modality_note.native.width()

    field_left = _left(tune, tune.dataset_folder.native)
    for number, row in enumerate((first, second), 1):
        title = row.title.native
        assert row.title.value == f"Pair {number}"
        assert title.fontMetrics().horizontalAdvance(title.text()) <= title.contentsRect().width()
        assert abs(_left(tune, title) - row_left) <= 2
        assert abs(_left(tune, row.image.native) - field_left) <= 2, (
            _left(tune, row.image.native),
            field_left,
        )

    first.remove_button.native.click()  # the rest renumbered, still in line
    qtbot.wait(100)
    (last,) = tune.rows
    assert last is second and second.title.value == "Pair 1"
    assert abs(_left(tune, second.image.native) - field_left) <= 2
    second.say_left_out(note)  # (the removal marked the pairs again: no note)
    qtbot.wait(100)
    assert _spans(tune, second.note, row_left), second.note.native.width()


def test_the_metrics_notes_span_the_dock(clinic, make_napari_viewer, qtbot):
    """1366 x 768, CVC-ClinicDB 1 and its mask: the only-mask note, then (a copy of the
    mask scored against it on the threaded path) the status line span the dock, from
    the Prediction row's left edge."""
    one = dataset_subset(clinic, clinic.parent / "one", ["1"])
    viewer = _window(make_napari_viewer, qtbot, one)
    metrics = open_dock(viewer, "Metrics")
    qtbot.wait(200)
    row_left = _left(metrics, _label_of(metrics.prediction))
    assert "is the only mask" in metrics.pair_note.value
    assert _spans(metrics, metrics.pair_note, row_left), metrics.pair_note.native.width()

    mask = viewer.layers["1 mask"]
    copy = viewer.add_labels(np.asarray(mask.data).copy(), name="1 labels")
    metrics.prediction.value, metrics.reference.value = copy, mask
    metrics.compute_button.native.click()
    assert metrics._worker is not None  # the threaded path
    qtbot.waitUntil(lambda: bool(metrics.results) and metrics._worker is None, timeout=20_000)
    qtbot.wait(100)
    assert metrics.status.value.startswith("1 labels vs 1 mask: Dice 1.0")
    assert _spans(metrics, metrics.status, row_left), metrics.status.native.width()


def test_a_long_word_breaks_and_reads_back_as_set(qtbot):
    """A wrapped label 200 px wide with a 62-letter file name: no run of the text drawn
    is wider than the label (the name breaks between letters), yet its value is the text
    as set (the zero-width spaces that let Qt break it are not in it). A magicgui update
    that stopped calling the hooks :func:`wrap` uses fails here."""
    import re

    from magicgui.widgets import Container, Label

    name = "polyp_frame_from_the_second_colonoscopy_session_cju1hp9i2xu8e0988u2dazk7m"
    text = f"{name}: 1 object, 2134 px"
    label = Label(value=text)
    wrap(label)
    box = Container(widgets=[label], labels=False)
    box.native.setFixedWidth(200)
    qtbot.addWidget(box.native)
    box.native.show()
    qtbot.waitUntil(label.native.isVisible)
    native = label.native
    assert label.value == text and "\u200b" not in label.value
    runs = re.split(r"[\s\u200b]+", native.text())
    assert max(native.fontMetrics().horizontalAdvance(r) for r in runs) <= native.width() <= 200
    assert native.fontMetrics().horizontalAdvance(name) > native.width()


def test_no_dock_text_can_be_copied_with_its_breaks(make_napari_viewer):
    """The zero-width spaces that break long words are in the QLabels' text: no label of
    the three docks may be selectable (Ctrl+C or a context menu's Copy would carry them
    into what the user pastes)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QLabel

    viewer = make_napari_viewer()
    selectable = Qt.TextInteractionFlag.TextSelectableByMouse
    selectable |= Qt.TextInteractionFlag.TextSelectableByKeyboard
    for name in ("Segment", "Metrics", "Fine-tune"):
        dock = open_dock(viewer, name)
        wrapped = [q for q in dock.native.findChildren(QLabel) if q.wordWrap()]
        assert len(wrapped) >= 3, name
        for native in wrapped:
            assert not native.textInteractionFlags() & selectable, (name, native.text())
