"""Closing napari with corrections that no file keeps asks first (tester40 #4).

Each dock watches the window it lies in (:func:`guard_window`, once per window): when the
user closes it (a spontaneous close event: the title bar's X, the window manager) while a
Labels layer that Segment made or this plugin opened holds corrections not saved since
(``_unsaved.unsaved_layers``), one question names them, with Save / Discard / Cancel.
Save writes each as the TM-UNet mask writer does, beside its picture under a new name (or
in the data dir, ``_unsaved.save_layer``) and says where; Cancel, or a save that failed,
keeps the window open. After Save or Discard the window closes without napari's own
"close the window?" as well: the question was asked once.

A close from code (``viewer.close()``, a test, a script) is not spontaneous and never
asks; nor do napari's File > Close Window and Exit, which close from code after their own
question (napari calls no hook a plugin could use there). By an event filter on the
window (``widget.window()``), not napari's private attributes.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QMainWindow, QMessageBox

from ._unsaved import save_layer, unsaved_layers, unsaved_text

GUARDED = "tmunet_close_guard"  # the window's Qt property, set once it is guarded
SAVE_NOTE = (
    "Save writes each as a TIFF mask beside its picture (or in the plugin's data folder), "
    "never over a file; Discard closes without them."
)


def layers_to_ask(spontaneous: bool, layers) -> list:
    """The layers a close asks about: on the user's close (``spontaneous``), the Labels
    layers of ours with unsaved corrections; none for a close from code."""
    return unsaved_layers(layers) if spontaneous else []


def guard_window(native, viewer) -> None:
    """Watch the window that ``native`` (a dock's widget) lies in once it is shown (a dock
    is added to the window after its widget is made), one :class:`CloseGuard` a window."""

    class FirstShow(QObject):
        def eventFilter(self, widget, event):  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Show and _guard(widget.window(), viewer):
                widget.removeEventFilter(self)
            return False

    viewer = getattr(viewer, "__wrapped__", viewer)  # napari may pass a public proxy
    if not _guard(native.window(), viewer):
        native.installEventFilter(FirstShow(native))


def _guard(window, viewer) -> bool:
    """Install a :class:`CloseGuard` on ``window`` unless it has one; False while the
    widget lies in no main window yet."""
    if not isinstance(window, QMainWindow):
        return False
    if not window.property(GUARDED):
        window.setProperty(GUARDED, True)
        window.installEventFilter(CloseGuard(window, viewer))
    return True


class CloseGuard(QObject):
    """The event filter of a napari window that asks before corrections are lost."""

    def __init__(self, window, viewer):
        super().__init__(window)  # lives as long as the window
        self.window = window
        self.viewer = viewer
        self.saved: list[tuple[str, str]] = []  # (layer name, file) of the last Save

    def eventFilter(self, watched, event):  # noqa: N802 - Qt's name
        if watched is self.window and event.type() == QEvent.Type.Close:
            return self.on_close(event, event.spontaneous())
        return False

    def on_close(self, event, spontaneous: bool) -> bool:
        """Ask about the layers :func:`layers_to_ask` names, if any; True when the event
        is taken here (the window stays open, or closes again from code just after)."""
        layers = layers_to_ask(spontaneous, self.viewer.layers)
        if not layers:
            return False  # napari's own closing, its question included
        answer = self.ask(layers)
        if answer == QMessageBox.StandardButton.Save and not self.save(layers):
            answer = QMessageBox.StandardButton.Cancel  # a failed save keeps the window
        event.ignore()
        if answer in (QMessageBox.StandardButton.Save, QMessageBox.StandardButton.Discard):
            # a close from code: napari asks nothing more (not while this one is handled)
            QTimer.singleShot(0, self.window.close)
        return True

    def ask(self, layers) -> QMessageBox.StandardButton:
        """Save / Discard / Cancel, naming ``layers``."""
        box = QMessageBox(self.window)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Unsaved corrections")
        box.setText(unsaved_text(layers))
        box.setInformativeText(SAVE_NOTE)
        buttons = QMessageBox.StandardButton
        box.setStandardButtons(buttons.Save | buttons.Discard | buttons.Cancel)
        box.setDefaultButton(buttons.Save)
        box.setEscapeButton(buttons.Cancel)
        box.exec()
        clicked = box.clickedButton()  # the escape button (Cancel) when the box is closed
        return box.standardButton(clicked) if clicked is not None else buttons.Cancel

    def save(self, layers) -> bool:
        """Save each of ``layers`` (``_unsaved.save_layer``) and say where; on a failure,
        say which layer and why, and return False (those saved stay saved)."""
        from . import settings

        self.saved = []
        for layer in layers:
            try:
                path = save_layer(layer, self.viewer.layers, settings.data_dir())
            except Exception as err:  # OSError, LabelsNotSaved: say it, keep the window
                QMessageBox.warning(
                    self.window,
                    "Corrections not saved",
                    f"{layer.name} was not saved: {err}\nThe window stays open: save it "
                    "with File > Save Selected Layers.",
                )
                return False
            self.saved.append((layer.name, str(path)))
        lines = "\n".join(f"{name} -> {path}" for name, path in self.saved)
        QMessageBox.information(self.window, "Corrections saved", f"Saved:\n{lines}")
        return True
