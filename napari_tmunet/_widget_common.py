"""Pieces the three docks share: workers, ETA, labels that wrap, theme colours, sizes."""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# Every dock must fit a 1366 x 768 screen beside napari's own panels: this wide at most,
# and scrolls rather than forcing the window taller.
DOCK_MAX_MIN_WIDTH = 400
DOCK_MAX_MIN_HEIGHT = 250
# Workers that may run at once in Qt's global pool (_allow_threads): each dock's run and
# the checks and reads beside them
WORKER_THREADS = 8
PROBABILITY_MARK = "tmunet_layer"  # metadata key: "probability" on Segment's probability maps
# Closing napari waits this long for a dock's run to stop (a fine-tuning run finishes its
# step, scores and saves last.pt; a Segment run its layer of the forward pass, or the
# labelling under way) before the window goes: a worker still running as Python ends
# prints a traceback (its signals are deleted under it)
STOP_WAIT_S = 300.0
# At the interpreter's exit, after the runs ended: how long the workers' threads may take
# to return (their last signal; a worker nobody tracks is not waited for longer)
EXIT_TAIL_WAIT_S = 10.0
# (stop, ended, what) of the docks' runs under way, for the interpreter's exit
_RUNS: set[tuple[threading.Event, threading.Event, str]] = set()


class WorkerRuntimeError(Exception):
    """A RuntimeError of a generator worker's function, raised again as another type.

    superqt takes a RuntimeError out of a generator worker for the worker's own deletion
    and emits neither ``errored`` nor ``finished``, so a dock would wait for ever (e.g.
    CUDA chosen on a machine without a GPU, or CUDA out of memory).
    """


def error_text(err: BaseException) -> str:
    """A worker's error in words (``errors.describe_error``: the message alone for bad
    input, else ``"Type: message"``), a re-raised RuntimeError as its own."""
    from .errors import describe_error

    if isinstance(err, WorkerRuntimeError) and err.__cause__ is not None:
        err = err.__cause__
    return describe_error(err)


def _runtime_errors_reported(function: Callable) -> Callable:
    """The generator function ``function``, its RuntimeErrors raised as WorkerRuntimeError."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return (yield from function(*args, **kwargs))
        except RuntimeError as err:
            raise WorkerRuntimeError(str(err)) from err

    return run


def start_worker(
    function: Callable,
    *args,
    connect: dict[str, Callable],
    direct: dict[str, Callable] | None = None,
    **kwargs,
):
    """Run ``function`` in a napari worker with its handlers connected at creation.

    Connecting ``errored`` when the worker is made keeps superqt from attaching its
    default handler, which re-raises the error (a second, raw message; an abort where
    napari's excepthook is not installed). A generator's RuntimeError reaches
    ``errored`` too (see :class:`WorkerRuntimeError`). ``direct``: handlers called in
    the worker's thread as the signal is emitted (Qt's DirectConnection), connected
    before it starts so that none is missed.
    """
    from napari.qt.threading import create_worker
    from qtpy.QtCore import Qt

    if "errored" not in connect:
        raise ValueError("connect an 'errored' handler: the worker would re-raise otherwise")
    if inspect.isgeneratorfunction(function):
        function = _runtime_errors_reported(function)
    worker = create_worker(function, *args, _connect=connect, _start_thread=False, **kwargs)
    for name, handler in (direct or {}).items():
        getattr(worker, name).connect(handler, Qt.ConnectionType.DirectConnection)
    _allow_threads(WORKER_THREADS)
    worker.start()
    return worker


def _allow_threads(count: int) -> None:
    """Let Qt's global thread pool, which napari's workers run in, run ``count`` at once.
    It runs one per CPU core by default: on a 2-core laptop a Segment run and a
    fine-tuning run held both threads, and the Metrics dock's Compute and checks, a
    checkpoint file's check or a folder's reading queued behind them for minutes. The
    docks' workers mostly wait (on torch's own threads, on files, on a gate), so more
    threads than cores cost nothing."""
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    if pool.maxThreadCount() < count:
        pool.setMaxThreadCount(count)


def track_run(stop: threading.Event, ended: threading.Event, what: str) -> Callable[[], None]:
    """Keep a run (``stop``: the event that stops it; ``ended``: set as its worker's last
    signal goes; ``what``: "a fine-tuning run") for :func:`wait_for_run` and the
    interpreter's exit; returns the handler to connect to its worker's ``finished`` in the
    worker's thread (``start_worker``'s ``direct``), which sets ``ended``."""
    run = (stop, ended, what)
    _RUNS.add(run)

    def end() -> None:
        ended.set()
        _RUNS.discard(run)

    return end


def wait_for_run(stop: threading.Event, ended: threading.Event, what: str) -> None:
    """Stop a run and wait (up to :data:`STOP_WAIT_S`) for its worker's last signal (napari's
    window is closing: no worker may outlive it)."""
    stop.set()
    if not ended.wait(STOP_WAIT_S):
        print(f"napari-tmunet: {what} went on after {STOP_WAIT_S:.0f} s", file=sys.stderr)


@atexit.register
def _wait_for_runs() -> None:
    """At the interpreter's exit, stop the runs still going (a dock closed by its X, then
    napari) and wait for them: Python must not delete their workers' signals under them."""
    for run in list(_RUNS):
        wait_for_run(*run)
    if "qtpy.QtCore" in sys.modules:
        from qtpy.QtCore import QThreadPool

        # a run's ``ended`` is set as its worker emits ``finished``; superqt's worker emits
        # one more signal after it (a Python ending then aborted now and then)
        pool = QThreadPool.globalInstance()
        # None once Qt has torn its globals down (napari's app made, its event loop never
        # run): no pool, no worker threads left to wait for
        if pool is not None:
            pool.waitForDone(int(EXIT_TAIL_WAIT_S * 1000))


@contextlib.contextmanager
def keeping_layers(choosers: Sequence) -> Iterator[None]:
    """Keep each layer chooser (a magicgui ComboBox) on its layer while its choices refresh.

    napari refreshes a dock's choices on every layer-list event, renames included, and
    magicgui keeps a ComboBox's current item by its *text*: a renamed layer would lose its
    place to the first entry (or the empty one). Inside this block the choosers' ``changed``
    is held; after it each chooser gets its layer back, by identity, when that is still
    offered, and ``changed`` fires only for a chooser whose layer really changed (e.g. it
    was removed).
    """
    before = [(chooser, chooser.value) for chooser in choosers]
    with contextlib.ExitStack() as held:
        for chooser, _ in before:
            held.enter_context(chooser.changed.blocked())
        yield
        for chooser, layer in before:
            if layer is not None and any(choice is layer for choice in chooser.choices):
                chooser.value = layer
    for chooser, layer in before:
        if chooser.value is not layer:
            chooser.changed.emit(chooser.value)


class Eta:
    """Time left of a job from its progress reports; no guess until there is a rate.

    The first report only starts the clock (the model loading and the first forward
    pass are not the pace), so a job never reads "ETA 0:00:00" at its first step.
    """

    def __init__(self) -> None:
        self._start: tuple[float, int] | None = None
        self._key: Any = None

    def text(self, done: int, total: int, unit: str = "", key: Any = None) -> str:
        """E.g. "12/121 tiles · ETA 0:01:05" (or "· estimating..." before a rate is known)."""
        now = time.monotonic()
        if self._start is None or key != self._key or done < self._start[1]:
            self._start, self._key = (now, done), key
        began, first = self._start
        unit = f" {unit}" if unit else ""
        head = f"{done}/{total}{unit}"
        elapsed = now - began
        if done - first < 1 or elapsed < 0.2:
            return f"{head} · ETA estimating..." if done < total else head
        left = elapsed / (done - first) * (total - done)
        return f"{head} · ETA {clock(left)}" if done < total else head


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS ("?" when not finite)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def full_data(layer):
    """A layer's data at full resolution: the first level of multiscale data (lazy arrays
    stay lazy)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_probability_map(layer) -> bool:
    """Whether ``layer`` is a probability map made by the Segment dock (model output, never
    an input to segment or to train on)."""
    return getattr(layer, "metadata", {}).get(PROBABILITY_MARK) == "probability"


# A word longer than this (a file name such as Kvasir-SEG's 25 letters, a path) may break
# between any two letters where it does not fit a line: Qt wraps at spaces only, and cut
# such a word at the label's right edge (tester36 #7).
BREAK_LETTERS = 16
_BREAK = "\u200b"  # zero-width space: where Qt may break a line, drawn as nothing
_LONG_WORD = re.compile(rf"[^\s{_BREAK}]{{{BREAK_LETTERS + 1},}}")


def wrap(label) -> None:
    """Let a magicgui Label wrap its text instead of widening the dock (and the window);
    a long word breaks where it does not fit a line (:func:`breakable`) while the
    label's ``value`` stays the text as set.

    The breaks are zero-width spaces put in by magicgui's value hooks of its Qt backend:
    QLabel offers no wrap mode but at spaces (``setWordWrap``; its text document's
    ``WrapAtWordBoundaryOrAnywhere`` is not reachable), and its ``heightForWidth``, which
    the docks' layouts and text boxes size it by, cannot be replaced on a QLabel that
    magicgui made: a label painted with other breaks would be cut. Where a magicgui has
    no such hooks, long words do not break (tests/test_dock_notes_fixes167.py fails).
    No dock's label is selectable, so the breaks are never copied with its text."""
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    native.setWordWrap(True)
    native.setMinimumWidth(0)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    backend = getattr(label, "_widget", None)  # magicgui's Qt backend: hooks on its value
    if hasattr(backend, "_pre_set_hook") and hasattr(backend, "_post_get_hook"):
        text = label.value
        backend._pre_set_hook = breakable
        backend._post_get_hook = lambda shown: shown.replace(_BREAK, "")
        label.value = text


def breakable(text) -> str:
    """``text`` with a zero-width space between the letters of each word longer than
    :data:`BREAK_LETTERS`, where Qt may then break the line."""
    return _LONG_WORD.sub(lambda word: _BREAK.join(word.group()), str(text))


def span_row(body, widget) -> None:
    """Let ``widget`` (a text, or a box of rows with their own titles: Fine-tune's pairs)
    take the whole width of its row in ``body``, a labelled Container: its label, empty,
    is hidden (magicgui keeps the width of the labels' column for it, about 100 px of a
    330-px dock, tester36 #7). The docks' texts all span so (Metrics' body has no labels'
    column: its texts span without)."""
    from qtpy.QtWidgets import QLabel

    row = widget.native
    while row.parentWidget() is not None and row.parentWidget() is not body.native:
        row = row.parentWidget()
    item = row.layout().itemAt(0) if row.layout() is not None else None
    label = item.widget() if item is not None else None
    if isinstance(label, QLabel) and label is not widget.native and not label.text():
        label.hide()


# A narrowed combo box keeps room for its items up to this many letters (a model name
# such as "TM-UNet colonoscopy"); longer ones, e.g. layer names, are elided.
NARROW_LETTERS = (8, 22)


def narrow(widget, width: int = 60) -> None:
    """Let a combo box or file field shrink below its longest item's width.

    A combo box keeps room for its present items up to ``NARROW_LETTERS[1]`` letters
    and shows longer text elided in the middle (see :func:`shown_text`), so long names
    that share a beginning stay apart.
    """
    from qtpy.QtWidgets import QComboBox, QSizePolicy

    native = widget.native
    combo = native if isinstance(native, QComboBox) else None
    if combo is not None:
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        longest = max((len(combo.itemText(i)) for i in range(combo.count())), default=0)
        combo.setMinimumContentsLength(min(max(longest, NARROW_LETTERS[0]), NARROW_LETTERS[1]))
        combo.installEventFilter(_middle_elider_type()(combo))
    native.setMinimumWidth(width)
    native.setSizePolicy(QSizePolicy.Policy.Expanding, native.sizePolicy().verticalPolicy())


def hold_texts(widget, texts: Sequence[str]) -> None:
    """Keep a combo box or a text field (magicgui widget) at least as wide as it must be
    to show each of ``texts`` whole, in the font its style gives it; measured again when
    it is shown and when its style or font changes (magicgui builds it before napari's
    style applies). :func:`narrow` let it shrink to 60 px: at 1366 x 768 Fine-tune's pair
    chooser read "no Label…is shape" and its run folder field lost 6 px of the folder's
    name (tester37 #7). The body's :func:`fit_width` then holds the widened widget."""
    from qtpy.QtCore import QEvent, QObject

    class Holder(QObject):
        def eventFilter(self, native, event):  # noqa: N802 - Qt's name
            kinds = (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange)
            if event.type() in kinds:
                native.setMinimumWidth(max(_width_for(native, text) for text in texts))
            return False

    native = getattr(widget, "line_edit", widget).native  # a FileEdit: its text field
    native.installEventFilter(Holder(native))


def _width_for(native, text: str) -> int:
    """The width (px) at which the QComboBox or QLineEdit ``native`` shows ``text`` whole
    in its text part: the text's advance, the space the text part keeps (1 px each side
    in a combo box, 2 in a field, as :func:`shown_text` and Qt draw them) and the rest of
    the widget (frame, padding, the combo box's arrow) as its style lays them out; at
    1366 x 768 with napari's style "no Labels of this shape" takes 208 px."""
    from qtpy.QtCore import QRect, Qt
    from qtpy.QtWidgets import QComboBox, QStyle, QStyleOptionFrame

    probe = 400  # px: any width; the parts beside the text part do not grow with it
    if isinstance(native, QComboBox):
        inner = _combo_field(native, probe)
        spare = 2
    else:
        option = QStyleOptionFrame()
        native.initStyleOption(option)
        option.rect = QRect(0, 0, probe, native.height())
        style = native.style()
        inner = style.subElementRect(QStyle.SubElement.SE_LineEditContents, option, native)
        spare = 4
    metrics = native.fontMetrics()
    advance = metrics.horizontalAdvance(text)
    # Qt elides at a width a pixel or so past the rounded advance (its text's own extent)
    while metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, advance) != text:
        advance += 1
    return advance + spare + probe - inner.width()


def show_path_end(field) -> None:
    """Give a FileEdit's path the room of its "Choose directory" / "Select file" button:
    the button reads "Browse..." instead.

    The field keeps its cursor, at the end of the path, in view, so the folder or file
    name then shows whole at a dock's width.
    """
    field.choose_btn.text = "Browse..."


def checkpoint_folder(typed: str) -> Path:
    """Where a checkpoint file dialog opens: the folder of the checkpoint in the field
    (``typed``: chosen before) when that folder exists, else the user's fine-tune runs
    folder (:func:`settings.runs_dir`, where the plugin's checkpoints are) when it
    exists, else the home folder."""
    from . import settings

    chosen = Path(typed).expanduser().parent if typed.strip() else None
    for folder in (chosen, settings.runs_dir()):
        if folder is not None and folder.is_dir():
            return folder.absolute()
    return Path.home()


def open_in_checkpoint_folder(field) -> None:
    """Make the FileEdit ``field`` open its dialog in :func:`checkpoint_folder`.

    magicgui opens it at the field's value, which for an empty field is ``.``: the
    process's current folder, seldom where checkpoints are. Its dialog call (the
    backend's ``show_file_dialog``, kept in ``_show_file_dialog``) is wrapped to pass
    the folder instead.
    """
    show = getattr(field, "_show_file_dialog", None)
    if show is None:  # another magicgui: its dialog opens where magicgui says
        return

    def shown(mode, caption=None, start_path=None, filter=None):
        folder = checkpoint_folder(field.line_edit.value)
        return show(mode, caption=caption, start_path=str(folder), filter=filter)

    field._show_file_dialog = shown


def shown_text(combo) -> str:
    """The text a narrowed (non-editable) QComboBox shows: its current text, elided in
    the middle to fit its text field."""
    from qtpy.QtCore import Qt

    # the label is drawn, and clipped, in the edit field; 1 px spare each side
    width = _combo_field(combo).width() - 2
    return combo.fontMetrics().elidedText(combo.currentText(), Qt.TextElideMode.ElideMiddle, width)


def _combo_field(combo, width: int | None = None):
    """The QRect of the QComboBox ``combo``'s edit field, where its text is drawn, as its
    style lays it out at the combo box's size, or at ``width`` px wide and its height."""
    from qtpy.QtCore import QRect
    from qtpy.QtWidgets import QStyle, QStyleOptionComboBox

    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    if width is not None:
        option.rect = QRect(0, 0, width, combo.height())
    field = QStyle.SubControl.SC_ComboBoxEditField
    return combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option, field, combo)


@functools.cache
def _middle_elider_type():
    """A QObject class whose instances paint a QComboBox with :func:`shown_text`."""
    from qtpy.QtCore import QEvent, QObject
    from qtpy.QtGui import QPalette
    from qtpy.QtWidgets import QStyle, QStyleOptionComboBox, QStylePainter

    class MiddleElider(QObject):
        def eventFilter(self, combo, event):  # noqa: N802 - Qt's name
            if event.type() != QEvent.Type.Paint or combo.isEditable():
                return False
            painter = QStylePainter(combo)
            painter.setPen(combo.palette().color(QPalette.ColorRole.Text))
            option = QStyleOptionComboBox()
            combo.initStyleOption(option)
            painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
            option.currentText = shown_text(combo)
            painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
            painter.end()
            return True

    return MiddleElider


def on_dock_closed(native, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once when the dock of the QWidget ``native`` closes.

    napari's X on a plugin dock takes the widget out of it (its parent becomes None) and
    keeps it alive; closing napari destroys it. Either one calls ``callback``.
    """
    called = []

    def close(*_):
        if not called:
            called.append(True)
            callback()

    native.destroyed.connect(close)  # a function: Qt calls it mid-destruction
    native.installEventFilter(_undock_watcher_type()(native, close))


@functools.cache
def _undock_watcher_type():
    """A QObject class whose instances call a function when their parent widget is taken
    out of its dock (parent set to None)."""
    from qtpy.QtCore import QEvent, QObject

    class UndockWatcher(QObject):
        def __init__(self, widget, on_undock):
            super().__init__(widget)  # lives as long as the widget
            self._on_undock = on_undock

        def eventFilter(self, widget, event):  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.ParentChange and widget.parent() is None:
                self._on_undock()
            return False

    return UndockWatcher


def theme_colours(viewer) -> dict[str, str]:
    """Background, text and grid colours of the viewer's napari theme (hex strings)."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(str(getattr(viewer, "theme", "dark")))
    except (KeyError, ValueError):
        theme = get_theme("dark")
    return {
        "background": theme.background.as_hex(),
        "foreground": theme.foreground.as_hex(),
        "text": theme.text.as_hex(),
    }


def set_tooltips(dock, tips: dict[str, str]) -> None:
    """Give each of a dock's controls (attribute name -> text) its tooltip."""
    for name, text in tips.items():
        getattr(dock, name).tooltip = text


def scroll_body(container, labels: bool = True):
    """A Container inside a scroll area that fills ``container``; put the dock's widgets in it.

    napari docks a magicgui widget's inner QWidget (not magicgui's own scroll area), so
    the scroll area is added here: the dock then fits a small screen and scrolls. The
    owner must forward ``reset_choices`` to the body.
    """
    from magicgui.widgets import Container
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    body = Container(labels=labels)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(body.native)
    scroll.setMinimumHeight(100)  # three docks and their intros fit 768 px together
    container.margins = (0, 0, 0, 0)
    container.native.layout().addWidget(scroll)
    body.scroll_area = scroll
    return body


def scrolled_text(label, lines: int):
    """Put the wrapped magicgui Label ``label``, already in a dock's body, in a box as tall
    as its text up to ``lines`` lines, which scrolls the rest of it (a long run summary),
    from its first line each time the text changes; returns the box (a QScrollArea).

    The dock then needs not scroll its top rows out of view to show a long text: the
    text's box fits under them (see :func:`scroll_into_view`'s ``keep``, which also makes
    the box no taller than the view's room under its top). A box shorter than its text
    shows whole lines, blank under the last one, never a line cut in half.
    """
    native = label.native
    row = native.parentWidget().layout()
    index = row.indexOf(native)
    box = _text_box_type()(native, lines)
    row.insertWidget(index, box)
    return box


@functools.cache
def _text_box_type():
    """A QScrollArea class whose instances hold one wrapped QLabel and are as tall as its
    text at their width, up to a number of its lines and to the room they are given
    (``fit_room``), showing whole lines of it."""
    from qtpy.QtCore import QEvent, QSize, Qt
    from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

    class TextBox(QScrollArea):
        def __init__(self, label, lines: int):
            super().__init__()
            self._label, self._lines, self._text = label, lines, label.text()
            self._room: int | None = None  # px at most, from fit_room
            label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            inner = QWidget()
            layout = QVBoxLayout(inner)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(label)
            # one line laid out as the label's are (beside it, never shown): its height
            # gives the label's margins around its lines, which its style and alignment set
            # (a framed label indents its text from the top it is aligned to)
            self._one_line = QLabel("x", inner)
            self._one_line.setWordWrap(True)
            self._one_line.setAlignment(label.alignment())
            self._one_line.setIndent(label.indent())
            self._one_line.setMargin(label.margin())
            self._one_line.hide()
            self.setWidget(inner)
            self.setWidgetResizable(True)
            self.setFrameShape(QFrame.Shape.NoFrame)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            policy.setHeightForWidth(True)
            self.setSizePolicy(policy)
            inner.installEventFilter(self)  # its layout asks again when the text changes

        def fit_room(self, room: int) -> None:
            """Be no taller than ``room`` px (the dock's view under the box's top), as long
            as that holds a line; the text scrolls in it."""
            room = room if room >= self._whole_lines(1) + 2 * self.frameWidth() else None
            if room != self._room:
                self._room = room
                self.updateGeometry()

        def _whole_lines(self, count: int) -> int:
            """The height (px) from the label's top down to the end of its ``count``-th
            line: its margin above (half of its margins), its lines one ``lineSpacing``
            apart, the last one's full height (the next line's top shows under more)."""
            metrics = self._label.fontMetrics()
            pitch = metrics.lineSpacing()
            self._one_line.ensurePolished()  # styled now (a hidden widget is not)
            margins = self._one_line.heightForWidth(10_000) - metrics.height()
            return (margins + 1) // 2 + count * pitch + metrics.height() - pitch

        def _lines_in(self, height: int) -> int:
            """How many whole lines of the label show in ``height`` px from its top."""
            pitch = self._label.fontMetrics().lineSpacing()
            return max(0, (height - self._whole_lines(0)) // pitch)

        def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
            return True

        def _text_height(self, count: int) -> int:
            """The height (px) of ``count`` lines of the label with its margins above and
            below: a text of that many lines shows whole in it, without a scroll bar."""
            metrics = self._label.fontMetrics()
            margins = self._one_line.heightForWidth(10_000) - metrics.height()
            return self._whole_lines(count) + margins - (margins + 1) // 2

        def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
            frame = 2 * self.frameWidth()
            most = self._text_height(self._lines) + frame
            if self._room is not None:
                most = min(most, self._room)
            return min(self.widget().heightForWidth(width - frame) + frame, most)

        def sizeHint(self):  # noqa: N802 - Qt's name
            return QSize(0, self.heightForWidth(max(self.width(), 1)))

        def minimumSizeHint(self):  # noqa: N802 - Qt's name
            return QSize(0, 0)

        def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
            self._end_on_a_line()
            super().resizeEvent(event)

        def _end_on_a_line(self) -> None:
            """Where the text is taller than the box, show whole lines of it and leave the
            rest of the box's height blank under them (the view would cut a line); where
            it fits, no scroll bar."""
            inside = self.contentsRect()
            text = self.widget().heightForWidth(inside.width())
            shown = inside.height()
            # A scroll bar shown once stayed on a text that fits the box's whole width: at
            # the width the bar leaves, it wrapped to a line more, and that line was cut
            # (tester36 #7).
            bar = (
                Qt.ScrollBarPolicy.ScrollBarAlwaysOff
                if text <= shown
                else Qt.ScrollBarPolicy.ScrollBarAsNeeded
            )
            if self.verticalScrollBarPolicy() != bar:
                self.setVerticalScrollBarPolicy(bar)
            if text > shown:
                shown = self._whole_lines(self._lines_in(shown))
            spare = max(0, inside.height() - shown)
            if self.viewportMargins().bottom() != spare:
                self.setViewportMargins(0, 0, 0, spare)

        def eventFilter(self, inner, event):  # noqa: N802 - Qt's name
            if inner is self.widget() and event.type() == QEvent.Type.LayoutRequest:
                self.updateGeometry()  # the dock's layout gives it its new height
                self._end_on_a_line()
                if self._label.text() != self._text:  # a new text is read from its top
                    self._text = self._label.text()
                    self.verticalScrollBar().setValue(0)
            return super().eventFilter(inner, event)

    return TextBox


SCROLL_MARGIN = 10  # px left above and below what a dock scrolls to
KEEP_LINES = 3  # lines of what a dock scrolls to that must show under its kept top rows
ROW_SNAP = 40  # px at most that a scroll moves further to stop on a row's edge


def scroll_into_view(body, *widgets, keep=None) -> None:
    """Scroll ``body`` (a :func:`scroll_body`) to show ``widgets`` together (from the
    first one's top line where they do not all fit): now, and again while Qt lays out
    what just changed (a label that wraps a new text grows after this call) for half a
    second. The view moves no more than it must (not at all when they are in view), and
    stops on a row's edge rather than cut a row in half. ``keep``, a widget in one of
    the top rows (Segment's Image box), stays in view when it is in view now: the view
    goes no lower than its row's top, as long as the first :data:`KEEP_LINES` lines of
    the first of ``widgets``, and the others under it, show with it (tester27 #4,
    tester28: a run's summary scrolled the Image and Model boxes away; a long one scrolls
    in its own box, :func:`scrolled_text`; tester36 #7: the status and disclaimer under
    it were pushed out). A widget in such a box counts as the box, which is made no
    taller than the view's room under its top, less the others' (:func:`_fit_text_boxes`)."""
    from qtpy.QtCore import QTimer

    bar = body.scroll_area.verticalScrollBar()
    keep_row = _row_of(body, keep) if keep is not None else None
    if keep_row is not None and not _in_view(body, keep_row):
        keep_row = None  # the user scrolled it away: nothing to keep

    def scroll(*_) -> None:
        try:
            value = _value_showing(body, [w.native for w in widgets], keep_row)
            if value is not None:
                bar.setValue(value)
            kept = keep_row is not None and bar.value() == keep_row.y()
            _fit_text_boxes(body, widgets, leave_under=kept)
            # a table wider than the dock would pull the view sideways, cutting off the
            # left edge of everything (the body does not scroll sideways on its own)
            body.scroll_area.horizontalScrollBar().setValue(0)
        except RuntimeError:  # the dock was closed meanwhile
            pass

    def stop_following() -> None:
        try:
            bar.rangeChanged.disconnect(scroll)
        except (RuntimeError, TypeError):  # closed, or already disconnected
            pass

    bar.rangeChanged.connect(scroll)
    QTimer.singleShot(0, scroll)
    QTimer.singleShot(500, stop_following)


def _fit_text_boxes(body, widgets, leave_under: bool = False) -> None:
    """Make each scrolled text box (:func:`scrolled_text`) among ``widgets`` no taller than
    the view's room under its top, so that the view's bottom edge cuts none of its lines
    (tester33 #9: a long model reason above it left 4.6 of its 6 lines in view); its text
    scrolls in it. With ``leave_under`` (the view kept on the dock's top rows, which
    :func:`_value_showing` does only where they fit) also less what the widgets under it
    take, which it would push out (tester36 #7: the status and disclaimer)."""
    area = body.scroll_area
    bottom = area.verticalScrollBar().value() + area.viewport().height()
    parts = [_shown_part(body, widget.native) for widget in widgets]
    for box in parts:
        if hasattr(box, "fit_room"):
            under = _under(body, box, parts) if leave_under else 0
            box.fit_room(bottom - _top(body, box) - under)


def _under(body, box, parts) -> int:
    """The height (px) that those of ``parts`` below ``box`` take under it, down to the
    last one's bottom (the status and disclaimer under Segment's summary): the box leaves
    them that room in the view (tester36 #7)."""
    box_bottom = _top(body, box) + box.height()
    below = [_top(body, p) + p.height() for p in parts if _top(body, p) >= box_bottom]
    return max(below, default=box_bottom) - box_bottom


def _value_showing(body, natives: list, keep_row) -> int | None:
    """The scroll value that shows ``natives`` (see :func:`scroll_into_view`), or None
    where the view is to stay."""
    area = body.scroll_area
    bar, view = area.verticalScrollBar(), area.viewport().height()
    shown = [_shown_part(body, n) for n in natives if n.isVisibleTo(body.native)]
    if not shown or view <= 0:
        return None
    now = bar.value()
    top = min(_top(body, n) for n in shown)
    bottom = max(_top(body, n) + n.height() for n in shown)
    if now <= top and bottom <= now + view:
        return None  # in view: the user's view stays
    if top - SCROLL_MARGIN < now or bottom - top + 2 * SCROLL_MARGIN > view:
        # above the view, or taller than it: from the first line (a verdict is read
        # from its top; Qt would centre a widget taller than the view)
        value = top - SCROLL_MARGIN
    else:
        value = bottom + SCROLL_MARGIN - view  # the least scroll that shows them
    first = shown[0]  # the one that must be seen
    first_bottom = _top(body, first) + first.height()
    # a snap up must keep whole what the scroll shows: all of them where they fit (the
    # status under Stop was cut by 3 px), else the first one
    whole_bottom = bottom if bottom - top + 2 * SCROLL_MARGIN <= view else first_bottom
    if keep_row is not None and value > keep_row.y():
        seen = min(first.height(), KEEP_LINES * first.fontMetrics().lineSpacing())
        seen += _under(body, first, shown)  # and the others under it, whole
        if _top(body, first) + seen + SCROLL_MARGIN - view <= keep_row.y():
            value = keep_row.y()  # the kept rows on top, the first one's lines as fit
    value = max(0, min(value, bar.maximum()))
    return _on_row_edge(body, value, top, whole_bottom, view)


def _on_row_edge(body, value: int, top: int, whole_bottom: int, view: int) -> int:
    """``value`` moved to the nearer edge of the body's row that it would cut at the
    view's top, a few lines at most: down to the next row where that does not pass
    ``top`` (what is shown keeps its first line), up to the row's top where what is
    shown (down to ``whole_bottom``) stays whole."""
    rows = _rows(body)
    cut = next((r for r in rows if r.y() < value < r.y() + r.height()), None)
    if cut is None:
        return value
    maximum = body.scroll_area.verticalScrollBar().maximum()
    edges = []
    down = min((r.y() for r in rows if r.y() > value), default=None)
    if down is not None and down <= min(top, maximum):
        edges.append(down)
    if whole_bottom <= cut.y() + view:
        edges.append(cut.y())
    edges = [edge for edge in edges if abs(edge - value) <= ROW_SNAP]
    return min(edges, key=lambda edge: abs(edge - value), default=value)


def _rows(body) -> list:
    """The geometries (in the body's coordinates) of the body's shown rows."""
    layout = body.native.layout()
    items = (layout.itemAt(i).widget() for i in range(layout.count()))
    return [w.geometry() for w in items if w is not None and w.isVisibleTo(body.native)]


def _row_of(body, widget):
    """The geometry of the body's row that holds ``widget`` (a magicgui widget)."""
    native = widget.native
    while native is not None and native.parentWidget() is not body.native:
        native = native.parentWidget()
    return native.geometry() if native is not None else None


def _shown_part(body, native):
    """``native``, or the box in ``body`` that scrolls it (:func:`scrolled_text`)."""
    from qtpy.QtWidgets import QAbstractScrollArea

    parent = native.parentWidget()
    while parent is not None and parent is not body.native:
        if isinstance(parent, QAbstractScrollArea):
            return parent
        parent = parent.parentWidget()
    return native


def _top(body, native) -> int:
    """The y of ``native``'s top edge in the body's coordinates."""
    return native.mapTo(body.native, native.rect().topLeft()).y()


def _in_view(body, rect) -> bool:
    """Whether all of ``rect`` (in the body's coordinates) is in the scroll area's view."""
    area = body.scroll_area
    now = area.verticalScrollBar().value()
    return now <= rect.y() and rect.y() + rect.height() <= now + area.viewport().height()


def fit_width(body) -> None:
    """Keep the scroll area at least as wide as its content (no horizontal scrolling)."""
    scroll = body.scroll_area
    bar = scroll.verticalScrollBar().sizeHint().width()
    # napari's style frames the area (1 px each side), NoFrame or not: 2 px were cut
    frame = 2 * scroll.frameWidth()
    scroll.setMinimumWidth(body.native.minimumSizeHint().width() + bar + frame)


def intro_above(container, label) -> None:
    """Put a dock's one-line "what this does" above its scrolled body, full width."""
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    native.setWordWrap(True)
    native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    native.setContentsMargins(6, 6, 6, 2)
    container.native.layout().insertWidget(0, native)


def note_device_problem(dock, old: str, warn: Callable[[str], None]) -> str:
    """Say as soon as it is chosen that ``dock``'s Device is not on this machine (CUDA
    without a GPU: :func:`options.device_problem`), in its status (unless it runs) and
    through ``warn``; clear that status when another device is chosen. ``old`` is the
    dock's previous note; returns the new one ("" when the device is there). CUDA stays
    offered: the choices are the same on every machine."""
    from .options import device_problem

    note = device_problem(str(dock.device.value))
    if note:
        if not dock.running:
            dock.status.value = note
        warn(note)
    elif old and not dock.running and dock.status.value in (old, f"failed: {old}"):
        dock.status.value = ""
    return note


class LatestRead:
    """Results of ``read(key)``, each read in a napari worker so that napari stays live
    (on the calling thread where workers run inline: ``NAPARI_TMUNET_INLINE=1``), one
    kept for each key. A read of a key asked for while one of it runs supersedes that
    one, and :meth:`forget` all of them: a superseded read's result is dropped, never
    kept over the newer one's. As a read ends, on the GUI thread: ``done(key, result)``,
    then the calls waiting for that key (:meth:`when_read`); neither once
    :attr:`closed`. A read that raises has the result ``failed(key, error)``."""

    def __init__(
        self,
        read: Callable[[Any], Any],
        failed: Callable[[Any, BaseException], Any],
        done: Callable[[Any, Any], None] | None = None,
    ) -> None:
        self._read, self._failed, self._done = read, failed, done
        self._results: dict = {}  # key -> the result of its latest read
        self._under_way: dict = {}  # key -> the number of its read under way
        self._waiting: dict[Any, list[Callable[[], None]]] = {}  # key -> called once read
        self._number = 0  # of the latest read asked for
        self.closed = False  # the dock is gone: nothing is called

    @property
    def reading(self) -> bool:
        """Whether a read is under way (and not superseded)."""
        return bool(self._under_way)

    def under_way(self, key) -> bool:
        """Whether ``key`` is being read."""
        return key in self._under_way

    def is_read(self, key) -> bool:
        """Whether ``key`` has been read (since :meth:`forget`)."""
        return key in self._results

    def result(self, key) -> Any:
        """The result of ``key``'s latest read; None when it has not been read."""
        return self._results.get(key)

    def start(self, key) -> None:
        """Read ``key`` (again), superseding a read of it under way."""
        from ._segment_rederive import runs_inline

        self._number += 1
        number = self._under_way[key] = self._number
        if runs_inline():
            self._take(key, number, self._read(key))
            return
        # kept for the interpreter's exit (a read cannot be stopped: it is waited for),
        # which must not delete the worker's signals under it
        ended = track_run(threading.Event(), threading.Event(), "a file read")
        start_worker(
            self._read,
            key,
            connect={
                "returned": lambda result: self._take(key, number, result),
                "errored": lambda err: self._take(key, number, self._failed(key, err)),
            },
            direct={"finished": ended},
        )

    def when_read(self, key, then: Callable[[], None]) -> None:
        """Call ``then()`` once ``key`` is read: at once when it is, else when its read
        (started here unless one is under way) ends."""
        if self.is_read(key):
            then()
            return
        self._waiting.setdefault(key, []).append(then)
        if not self.under_way(key):
            self.start(key)

    def forget(self) -> None:
        """Drop what was read, the reads under way and the calls waiting for them."""
        self._results.clear()
        self._under_way.clear()
        self._waiting.clear()

    def _take(self, key, number: int, result) -> None:
        """Keep the result of read ``number`` of ``key`` unless a later read superseded
        it, and tell."""
        if self._under_way.get(key) != number:
            return
        del self._under_way[key]
        self._results[key] = result
        if self.closed:
            return
        if self._done is not None:
            self._done(key, result)
        for then in self._waiting.pop(key, []):
            then()


class CheckpointCheck:
    """Reads a checkpoint file chosen in a dock off the GUI thread
    (:func:`registry.checkpoint_problem`: torch's import takes seconds; a
    :class:`LatestRead` of each file as it is now), so that a file that is not a
    checkpoint (a picture, a damaged copy) is flagged when it is chosen, not at Start or
    Segment; ``show(path, problem)`` is called on the GUI thread when the file read has
    a problem and is still the one ``chosen()`` returns. A click that comes while the
    file is read waits for it (:meth:`wait_for`)."""

    def __init__(self, chosen: Callable[[], str], show: Callable[[str, str], None], segments):
        self._chosen, self._show = chosen, show
        # not read: no problem to show, and a click waiting on it runs (the run says)
        self._reads = LatestRead(
            functools.partial(_read_checkpoint, segments=segments),
            failed=lambda _key, _err: "",
            done=self._checked,
        )
        self._click: object = None  # the latest click waiting for a file to be read

    def close(self) -> None:
        """The dock is gone: no result is shown, no click goes on."""
        self._reads.closed = True
        self._click = None

    @property
    def waiting(self) -> bool:
        """Whether a click waits for a file to be read (:meth:`wait_for`); it is carried
        out, or dropped, as the read ends (the smoke check waits for that)."""
        return self._click is not None

    def check(self, path: str) -> None:
        """Read ``path`` in the background (at once where workers run inline), unless it
        is being read."""
        key = _checkpoint_key(path)
        if not self._reads.under_way(key):
            self._reads.start(key)

    def problem(self, path: str) -> str:
        """The problem found in ``path`` when it has not changed since it was read; ""."""
        return self._reads.result(_checkpoint_key(path)) or ""

    def is_read(self, path: str) -> bool:
        """Whether ``path`` was read as it is now (its :meth:`problem` is known)."""
        return self._reads.is_read(_checkpoint_key(path))

    def when_read(self, path: str, then: Callable[[], None]) -> None:
        """Call ``then()`` on the GUI thread once ``path`` is read as it is now: at once
        when it is, else when its read (started here if none runs) ends; never once the
        dock is closed."""
        self._reads.when_read(_checkpoint_key(path), then)

    def wait_for(self, dock, files, then: Callable[[str], None]) -> bool:
        """Whether one of ``files``, checkpoint files that a click on ``dock`` runs, is
        not read as it is now (chosen a moment ago). ``dock.status`` then says
        "checking NAME...", and once the first of them is read ``then(path)`` carries
        the click out (refused with the check's words, or run), unless a later click
        waited meanwhile or ``dock`` is running by then. A run started on an unread file
        would fail with a rawer message."""
        unread = sorted(str(f) for f in files if not self.is_read(f))
        if not unread:
            return False
        path, click = unread[0], object()
        self._click, text = click, f"checking {Path(path).name}..."
        dock.status.value = text

        def read() -> None:
            if self._click is not click:  # another click waits
                return
            self._click = None
            if dock.running:  # a run started meanwhile
                return
            if dock.status.value == text:
                dock.status.value = ""
            then(path)

        self.when_read(path, read)
        return True

    def _checked(self, key: tuple, problem: str) -> None:
        path = key[0]
        if problem and path == self._chosen():
            self._show(path, problem)


def _checkpoint_key(path) -> tuple:
    """``path`` and its :func:`registry.file_version`: a file rewritten is read again."""
    from . import registry  # no torch: its checkpoint reading is imported when used

    return str(path), registry.file_version(path)


def _read_checkpoint(key: tuple, segments: bool) -> str:
    """:func:`registry.checkpoint_problem` of the file of ``key`` (in a worker thread)."""
    from . import registry

    return registry.checkpoint_problem(key[0], segments)
