"""Closing napari with painted, unsaved corrections asks first (helper 189, tester40 #4).

A real viewer with the Segment dock, the shipped nuclei model run on the threaded path
over a crop of the nuclei sample saved as a TIFF, its labels painted; then the window is
closed as a user does (``QWindow.close()``: a spontaneous close event, as the title bar's
X gives) and the question is answered by a timer that clicks a button of the box shown.
"""

from __future__ import annotations

import numpy as np
import pytest
from _view import open_dock

from napari_tmunet._sample_data import load_sample

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

PLUGIN = "napari-tmunet"
SHIPPED = "TM-UNet nuclei"


@pytest.fixture
def napari_asks(monkeypatch):
    """napari's own "close the window?" question on (its default), restored after."""
    from napari.settings import get_settings

    app = get_settings().application
    monkeypatch.setattr(app, "confirm_close_window", True)


def segmented(make_viewer, qtbot, tmp_path):
    """(viewer, labels layer, picture folder): the shipped nuclei model's labels of a
    128 x 128 crop of the nuclei sample, opened from pics/nuclei.tif by this plugin."""
    import tifffile

    folder = tmp_path / "pics"
    folder.mkdir()
    image, _ = load_sample("nuclei")
    tifffile.imwrite(folder / "nuclei.tif", np.ascontiguousarray(image[:128, :128]))
    viewer = make_viewer()
    widget = open_dock(viewer, "Segment")
    (layer,) = viewer.open(str(folder / "nuclei.tif"), plugin=PLUGIN)
    widget.image.value = layer
    widget.model.value = SHIPPED
    widget.segment_button.native.click()
    qtbot.waitUntil(lambda: not widget.status.value.startswith("checking "), timeout=60_000)
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert widget.status.value == "done", widget.status.value
    return viewer, widget.last_layer, folder


def paint(labels) -> None:
    """Three painted squares and one object erased, as tester40 did."""
    for y, x in ((20, 20), (60, 90), (100, 40)):
        labels.paint((y, x), 1, refresh=True)
    ids = np.unique(labels.data)
    labels.fill(tuple(np.argwhere(labels.data == ids[-1])[0]), 0)  # erase one object


class Answers:
    """Answer each message box shown with the button of ``roles`` in turn (e.g. Save,
    then the OK of "Corrections saved"); record (title, text) of each dialog seen, and
    reject any other dialog (napari's own question) after recording it."""

    def __init__(self, qtbot, *buttons):
        from qtpy.QtCore import QTimer

        self.buttons = list(buttons)
        self.seen: list[tuple[str, str]] = []
        self.shot = None
        self.timer = QTimer()
        self.timer.timeout.connect(self._answer)
        self.timer.start(50)

    def _answer(self):
        from qtpy.QtWidgets import QApplication, QDialog, QMessageBox

        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            self.seen.append((box.windowTitle(), box.text()))
            button = self.buttons.pop(0) if self.buttons else QMessageBox.StandardButton.Ok
            box.button(button).click()
        elif isinstance(box, QDialog):
            self.seen.append((box.windowTitle(), type(box).__name__))
            box.reject()

    def stop(self):
        self.timer.stop()


def closed(window) -> bool:
    """Whether napari's window is closed (hidden, or deleted: it is deleted on close)."""
    try:
        return not window.isVisible()
    except RuntimeError:  # wrapped C/C++ object ... has been deleted
        return True


def close_as_user(viewer, qtbot, closes: bool = True) -> bool:
    """Close the window as the window manager does (a spontaneous close event); whether
    it was closed (within 10 s when it ``closes``: Save and Discard close it again just
    after; else after a moment)."""
    window = viewer.window._qt_window
    window.windowHandle().close()
    if closes:
        qtbot.waitUntil(lambda: closed(window), timeout=10_000)
    else:
        qtbot.wait(500)
    return closed(window)


@pytest.fixture
def viewer_factory(qtbot, monkeypatch):
    """Shown napari viewers the test may close as a user does (napari's own fixture
    cannot close a window that was closed); those left open are closed after it."""
    import napari

    # as napari's make_napari_viewer: no status-checker thread, no console
    monkeypatch.setattr("napari._qt.threads.status_checker.StatusChecker.start", lambda *a: None)
    made = []

    def make():
        made.append(napari.Viewer(show=True))
        return made[-1]

    yield make
    for viewer in made:
        if not closed(viewer.window._qt_window):
            viewer.close()
            continue
        # closed as a user does: napari's Window.close() never ran for it, and a lambda
        # napari 0.9 ties to its themes keeps the Window, and through the closed window the
        # QtViewer, for good (napari's leak check would then fail the next
        # make_napari_viewer test in this worker): the rest of Window.close()
        viewer.window._teardown()
        del viewer.window._qt_window


def test_the_close_decision(viewer_factory, qtbot, tmp_path):
    """Unedited labels ask nothing; painted, they are named on the user's close, never on
    one from code; saved with the TM-UNet mask writer they ask nothing, painted again
    they do, and a stroke undone back to the saved labels asks nothing."""
    from napari_tmunet._close_guard import layers_to_ask
    from napari_tmunet._unsaved import unsaved_text

    viewer, labels, _folder = segmented(viewer_factory, qtbot, tmp_path)
    assert layers_to_ask(True, viewer.layers) == []  # the model's own output
    paint(labels)
    assert layers_to_ask(True, viewer.layers) == [labels]
    assert layers_to_ask(False, viewer.layers) == []  # viewer.close() from code
    assert unsaved_text([labels]) == "nuclei labels has unsaved corrections."

    viewer.layers.selection = {labels}
    viewer.layers.save(str(tmp_path / "saved.tif"), selected=True, plugin=PLUGIN)
    assert layers_to_ask(True, viewer.layers) == []
    labels.paint((5, 5), 1, refresh=True)
    assert layers_to_ask(True, viewer.layers) == [labels]
    labels.undo()
    assert layers_to_ask(True, viewer.layers) == []


def test_an_opened_mask_counts_once_painted(viewer_factory, qtbot, tmp_path):
    """A mask this plugin's reader opened (the nuclei sample's, as a TIFF mask) asks
    nothing as it was read, and is named once painted; a Labels layer the plugin neither
    made nor opened never is."""
    from napari_tmunet._close_guard import layers_to_ask
    from napari_tmunet._writer import write_labels

    _, mask = load_sample("nuclei")
    path = tmp_path / "nuclei mask.tif"
    write_labels(str(path), mask, {"name": "nuclei mask"})
    viewer = viewer_factory()
    (opened,) = viewer.open(str(path), plugin=PLUGIN)
    hand = viewer.add_labels(np.zeros_like(mask), name="drawn")
    assert layers_to_ask(True, viewer.layers) == []
    opened.paint((3, 3), 2, refresh=True)
    hand.paint((3, 3), 1, refresh=True)
    assert layers_to_ask(True, viewer.layers) == [opened]


def test_a_sample_mask_is_saved_in_the_data_dir(viewer_factory, tmp_path):
    """The nuclei sample's mask (opened with File > Open Sample: no picture file) painted
    is named, and saved into the data dir under a new name each time; saved, it asks no
    more."""
    from napari_tmunet._close_guard import layers_to_ask
    from napari_tmunet._unsaved import save_layer

    viewer = viewer_factory()
    viewer.open_sample(PLUGIN, "nuclei")
    mask = viewer.layers[-1]
    assert layers_to_ask(True, viewer.layers) == []
    mask.paint((3, 3), 2, refresh=True)
    assert layers_to_ask(True, viewer.layers) == [mask]
    data_dir = tmp_path / "data"
    first = save_layer(mask, viewer.layers, data_dir)
    second = save_layer(mask, viewer.layers, data_dir)
    assert (first, second) == (data_dir / f"{mask.name}.tif", data_dir / f"{mask.name} 2.tif")
    assert layers_to_ask(True, viewer.layers) == []


def test_save_writes_beside_the_picture_and_replaces_nothing(
    viewer_factory, qtbot, tmp_path, napari_asks
):
    """The user's close with painted labels: one question names them (napari's own does
    not come too); Save writes them beside the picture as a new TIFF (a file of the name
    it would take is left as it was), says where, and the window closes; the file reopens
    as the painted labels."""
    from qtpy.QtWidgets import QMessageBox

    from napari_tmunet._reader import napari_get_reader

    viewer, labels, folder = segmented(viewer_factory, qtbot, tmp_path)
    paint(labels)
    painted = labels.data.copy()
    taken = folder / "nuclei labels.tif"
    taken.write_bytes(b"the user's own file")
    answers = Answers(qtbot, QMessageBox.StandardButton.Save, QMessageBox.StandardButton.Ok)
    try:
        assert close_as_user(viewer, qtbot)
    finally:
        answers.stop()

    written = folder / "nuclei labels 2.tif"
    assert answers.seen == [
        ("Unsaved corrections", "nuclei labels has unsaved corrections."),
        ("Corrections saved", f"Saved:\nnuclei labels -> {written}"),
    ]  # and not napari's ConfirmCloseDialog
    assert taken.read_bytes() == b"the user's own file"
    ((data, _kwargs, kind),) = napari_get_reader(str(written))(str(written))
    assert kind == "labels"
    np.testing.assert_array_equal(data > 0, painted > 0)


def test_cancel_keeps_the_window_and_discard_closes_it(viewer_factory, qtbot, tmp_path):
    """Cancel: the window stays open and nothing is written; Discard then closes it,
    nothing written."""
    from qtpy.QtWidgets import QMessageBox

    viewer, labels, folder = segmented(viewer_factory, qtbot, tmp_path)
    paint(labels)
    before = sorted(folder.iterdir())
    answers = Answers(qtbot, QMessageBox.StandardButton.Cancel)
    try:
        assert not close_as_user(viewer, qtbot, closes=False)
        assert viewer.window._qt_window.isVisible()
        answers.buttons = [QMessageBox.StandardButton.Discard]
        assert close_as_user(viewer, qtbot)
    finally:
        answers.stop()
    assert [text for _title, text in answers.seen] == ["nuclei labels has unsaved corrections."] * 2
    assert sorted(folder.iterdir()) == before


def test_no_question_without_corrections(viewer_factory, qtbot, tmp_path, monkeypatch):
    """Unedited Segment labels, napari's own question off: the user's close closes at
    once, with no dialog at all."""
    from napari.settings import get_settings

    monkeypatch.setattr(get_settings().application, "confirm_close_window", False)
    viewer, _labels, _folder = segmented(viewer_factory, qtbot, tmp_path)
    answers = Answers(qtbot)
    try:
        assert close_as_user(viewer, qtbot)
    finally:
        answers.stop()
    assert answers.seen == []
