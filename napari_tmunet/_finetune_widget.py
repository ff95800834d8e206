"""The Fine-tune dock widget: train the active model further on the user's corrected masks.

Training data are (image layer, Labels layer) pairs picked in the widget and/or a dataset
folder (``images/`` + ``masks/``, or pictures with their masks beside them). The job itself,
its run folder and its scores are :mod:`napari_tmunet.training.finetune` (no Qt); this
module is the napari layer. The widget runs
:func:`~napari_tmunet.training.finetune.run_finetune` in a napari worker thread, and its callbacks
reach the GUI thread as Qt signals (progress, ETA, live plot). Stop keeps the best
checkpoint; Resume continues a stopped run.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal

from . import active_model, registry, settings
from ._close_guard import guard_window
from ._dock_texts import FINETUNE_TIPS
from ._docks import find_dock, open_dock, place_dock, place_when_shown, raise_from_menu
from ._finetune_folder import READING, FolderRead
from ._finetune_pairs import PairRow, PairRows
from ._finetune_plot import LivePlot, read_history
from ._image_layers import layer_modality, layer_thumbnail
from ._reader import file_warnings_shown
from ._view_fit import keep_fitted
from ._widget_common import (
    CheckpointCheck,
    Eta,
    error_text,
    fit_width,
    hold_texts,
    intro_above,
    narrow,
    note_device_problem,
    on_dock_closed,
    open_in_checkpoint_folder,
    scroll_body,
    scroll_into_view,
    scrolled_text,
    set_tooltips,
    show_path_end,
    span_row,
    start_worker,
    track_run,
    wait_for_run,
    wrap,
)
from .storage import NotWritableError
from .training.finetune import (
    AUGMENTATIONS,
    TRAINING_PHASE,
    FinetuneJob,
    compare_models,
    left_run_note,
    mark_shown,
    new_run_folder,
    next_free_folder,
    nothing_corrected,
    remove_unfinished_writes,
    run_finetune,
    run_folder_state,
    run_progress,
    run_size_note,
    saved_verdict,
)

PLUGIN = "napari-tmunet"
ACTIVE_CHOICE = "Model that made the mask"
INTRO = (
    "Trains the model further on your corrected masks (a part with the fewest corrections "
    "is held out to check the rest), then compares old and new."
)
CHECKPOINT_CHOICE = "Checkpoint file..."
DISK_FULL = "no space left on its device"
# lines of a run's full comparison shown at once under its headline and 'Use ... anyway'
# (it scrolls in its box): the three fit a 1366 x 768 dock a third of the column high
DETAILS_LINES = 6
# the widest name new_run_folder gives a run folder (its time stamp, "-2" where taken): the
# Run folder field shows it whole after the path's "/"
RUN_NAME = "/20261231-235959-2"


# ----------------------------------------------------------------------- the widget


class _Relay(QObject):
    """Carries the engine's callbacks from the training thread to the GUI thread."""

    stepped = Signal(int, int, float)
    evaluated = Signal(object)
    phase = Signal(str)


class FinetuneWidget(PairRows, LivePlot, Container):
    """Fine-tune the active model on corrected masks, in a worker thread.

    Sub-widgets are attributes so that scripts and tests can set values and call
    :meth:`start`, :meth:`stop`, :meth:`resume` and :meth:`revert`: ``rows`` (a list of
    :class:`PairRow` with ``image`` and ``mask``), ``add_pair_button``,
    ``dataset_folder``, ``model``, ``checkpoint``, ``steps``, ``learning_rate``,
    ``batch_size``, ``augmentation``, ``device``, ``run_folder``, ``start_button``,
    ``stop_button``, ``resume_button`` (in the row ``buttons``), ``revert_button``,
    ``progress_bar``, ``eta``, ``canvas`` (matplotlib), ``status`` (a run's verdict in a
    headline), ``use_anyway_button`` (under it), ``details`` (the run's full comparison,
    under the button). After a run:
    ``result`` (see :func:`run_finetune`), ``history`` (losses and validation records).
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        raise_from_menu(viewer)  # the menus' items of this dock show it, never hide it
        place_when_shown(self.native)  # tabbed where the window is too short to stack it
        guard_window(self.native, viewer)  # closing napari asks before corrections are lost
        keep_fitted(viewer)  # the picture fitted again as the dock narrows the canvas
        self.body = scroll_body(self)
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self.active = active_model.for_viewer(self.viewer)
        self.worker = None
        self.result: dict[str, Any] | None = None
        self.error: str = ""
        self.history: dict[str, list] = {"loss": [], "eval": []}
        self.step = 0
        self._busy = False
        self._training = False  # the running job has begun training (its phase said so)
        self._refusal = ""  # the status line's reason why Start did not start, while shown
        self._closed = False  # the dock's widgets are gone (napari or the dock closed)
        self._window_closed = False  # gone with napari's window (else the dock's X)
        self._stop_event = threading.Event()
        self._ended = threading.Event()  # the worker has emitted its last signal
        self._eta = Eta()
        self._mask_like: dict[Any, tuple] = {}  # image id -> (data, looks like a mask)
        self._modality = ""  # of the first pair's image ("": the starting model's)
        self._verdict = ""  # the last run's end ("finished at step 2/2"), before its outcome
        self._device_note = ""  # why the chosen Device is not on this machine
        self._guesses: dict[tuple[int, int], str] = {}  # the pairs' image modalities
        # the chosen Folder's modality and problems, read in a worker thread
        self._folder = FolderRead(self._on_folder_read)
        self._start_after_read = False  # Start was clicked while the Folder was read
        self._checkpoint_label = ("", "")  # (the chosen checkpoint file, its model_label)
        # a checkpoint file chosen is read in the background: a picture is flagged at once
        self._file_check = CheckpointCheck(
            self._chosen_file, lambda _path, _problem: self._show_model_state(), segments=False
        )
        self._last_draw = 0.0
        self._auto_folder = True
        self._setting_folder = False
        self._relay = _Relay()
        self._relay.stepped.connect(self._on_step)
        self._relay.evaluated.connect(self._on_eval)
        self._relay.phase.connect(self._on_phase)
        self.rows: list[PairRow] = []
        self._make_widgets()
        self._make_plot()
        fit_width(self.body)
        self._label_fitter = _LabelFitter(self.body, lambda: [r.title for r in self.rows])
        intro_above(self, self.intro)
        self._connect()
        self.add_pair()
        self._show_model_state()
        self._update_buttons()
        missing = self.active.take_note()  # a saved model whose file is not found
        if missing:
            self.status.value = missing
            show_warning(missing)
        self._offer_closed_run()

    def _make_widgets(self) -> None:
        self.intro = Label(value=INTRO)
        self.pairs_box = Container(labels=False)
        self.pairs_box.margins = (0, 0, 0, 0)  # each pair is titled in it (PairRow)
        self.add_pair_button = PushButton(text="Add image / mask pair")
        self.dataset_folder = FileEdit(label="Folder", mode="d", nullable=True)
        self.folder_note = Label(value="", visible=False)
        self.model = ComboBox(label="Start from", choices=self._model_choices())
        self.checkpoint = FileEdit(
            label="Checkpoint", mode="r", filter="TM-UNet checkpoint (*.pt *.pth *.ckpt)"
        )
        open_in_checkpoint_folder(self.checkpoint)
        self.active_label = Label(value="")
        self.modality_note = Label(value="", visible=False)
        self.steps = SpinBox(label="Steps", value=200, min=1, max=1_000_000, step=50)
        self.learning_rate = FloatSpinBox(
            label="Learning rate", value=1e-4, min=1e-5, max=0.1, step=1e-5
        )
        self.batch_size = SpinBox(label="Batch size", value=4, min=1, max=256)
        self.augmentation = ComboBox(label="Augmentation", choices=list(AUGMENTATIONS))
        self.device = ComboBox(
            label="Device", choices=[("auto", "auto"), ("CUDA", "cuda"), ("CPU", "cpu")]
        )
        self.run_folder = FileEdit(label="Run folder", mode="d", value=new_run_folder())
        # a run the newest run folder holds undone (napari closed or killed during it):
        # named under the Run folder at the dock's start, the default folder kept
        self.run_note = Label(value=left_run_note(settings.runs_dir()))
        self.run_note.visible = bool(self.run_note.value)
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False)
        self.buttons = Container(
            widgets=[self.start_button, self.stop_button, self.resume_button],
            layout="horizontal",
            labels=False,
        )
        self.buttons.margins = (0, 0, 0, 0)
        self.revert_button = PushButton(text="Revert to previous model", enabled=False)
        self.use_anyway_button = PushButton(text="Use the fine-tuned model anyway", visible=False)
        self.progress_bar = ProgressBar(label="Progress", value=0, min=0, max=1)
        self.eta = Label(value="")
        self.plot_box = Container(labels=False)
        self.status = Label(value="")
        # the last run's full comparison (numbers, pixels, held-out Dice), under its
        # headline (the status) and 'Use ... anyway'; hidden while there is none
        self.details = Label(value="", visible=False)
        notes = (
            self.intro,
            self.folder_note,
            self.active_label,
            self.modality_note,
            self.run_note,
            self.eta,
            self.status,
            self.details,
        )
        for widget in notes:
            widget.label = ""
        self.plot_box.label = "Curves"
        for widget in notes:
            wrap(widget)
        fields = (self.dataset_folder, self.checkpoint, self.run_folder)
        for widget in (*fields, self.model, self.augmentation):
            narrow(widget)
        for field in fields:
            show_path_end(field)
        hold_texts(self.run_folder, (RUN_NAME.replace("/", os.sep),))
        self.body.extend(
            [
                self.pairs_box,
                self.add_pair_button,
                self.dataset_folder,
                self.folder_note,
                self.model,
                self.checkpoint,
                self.active_label,
                self.modality_note,
                self.steps,
                self.learning_rate,
                self.batch_size,
                self.augmentation,
                self.device,
                self.run_folder,
                self.run_note,
                self.buttons,
                self.progress_bar,
                self.eta,
                self.status,  # the verdict's headline under the buttons: in view
                self.use_anyway_button,  # right under it (a short dock shows both)
                self.details,
                self.revert_button,
                self.plot_box,
            ]
        )
        set_tooltips(self, FINETUNE_TIPS)
        # the notes, and the pairs with theirs, span the dock, not the value column
        for widget in (self.pairs_box, *notes[1:]):
            span_row(self.body, widget)
        scrolled_text(self.details, DETAILS_LINES)

    def reset_choices(self, *_args) -> None:
        """Refresh the choosers (the widgets live in the scrolled body)."""
        self.body.reset_choices()

    def _fit_labels(self) -> None:
        """Give the pairs' titles the width of the dock's labels (a pair added, renumbered)."""
        self._label_fitter.fit()

    def _connect(self) -> None:
        self.add_pair_button.changed.connect(self.add_pair)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.resume_button.changed.connect(self.resume)
        self.revert_button.changed.connect(self.revert)
        self.use_anyway_button.changed.connect(self.use_fine_tuned)
        self.model.changed.connect(self._show_model_state)
        self.checkpoint.changed.connect(self._show_model_state)
        self.model.changed.connect(self._check_chosen_file)
        self.checkpoint.changed.connect(self._check_chosen_file)
        self.dataset_folder.changed.connect(self._on_dataset_folder_changed)
        self.run_folder.changed.connect(self._on_folder_changed)
        # Enter, or the field left: a typed Run folder is the user's choice only then
        self.run_folder.line_edit.native.editingFinished.connect(self._on_folder_entered)
        self.device.changed.connect(self._say_device_problem)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self._watch_paints()
        self.active.subscribe(self._on_active_changed)
        # first: the run is stopped and waited for before _on_closed forgets the widgets
        self.native.destroyed.connect(lambda *_: self._on_window_closed())
        on_dock_closed(self.native, self._on_closed)

    # --- model choice ------------------------------------------------------------------

    def _model_choices(self) -> list[tuple[str, str]]:
        try:
            entries = registry.available_models()
        except RuntimeError as err:
            show_warning(str(err))
            entries = []
        return [
            (ACTIVE_CHOICE, ACTIVE_CHOICE),
            *((e.name, e.name) for e in entries),
            (CHECKPOINT_CHOICE, CHECKPOINT_CHOICE),
        ]

    def start_model(self) -> tuple[str, str] | None:
        """``(model, label)`` that fine-tuning starts from, or None when there is none.

        "Model that made the mask": the model Segment ran to make the first Labels layer of
        the pairs that records one (its metadata says; :meth:`_mask_model`) or, when a
        fine-tuning of that model has been made active since, the active model (so a
        second Start goes on from the first one's result); else (no mask records one: hand
        painted, from a file) the active model (an earlier fine-tuning, or Revert), else
        the shipped model for the image's modality. With no pair, only a dataset Folder:
        the active model when it is for the Folder's images (:meth:`_folder_alone`), else
        the shipped model for them.
        """
        value = str(self.model.value)
        if value == CHECKPOINT_CHOICE:
            path = self.checkpoint.value
            ok = path is not None and Path(path).is_file()
            return (str(path), self._checkpoint_name(str(path))) if ok else None
        if value != ACTIVE_CHOICE:
            return value, value
        row = self.rows[0] if self.rows else None
        active = self.active.current
        made_by = self._mask_model()
        if made_by is not None and (active is None or made_by[0] not in active.lineage):
            return made_by
        folder_kind = self._folder_alone()
        if active is not None and folder_kind in ("", self._start_modality(active.model)):
            return active.model, active.label
        image = row.image.value if row is not None else None
        entry = registry.model_for_modality(folder_kind) if folder_kind else None
        if image is not None:
            entry = registry.default_model_for(layer_thumbnail(image), rgb=image.rgb)
        entries = registry.available_models()
        entry = entry or (entries[0] if entries else None)
        return (entry.name, entry.name) if entry is not None else None

    def _chosen_file(self) -> str:
        """The checkpoint file chosen in the Checkpoint field, when it is the model to
        start from and a file; ""."""
        path = self.checkpoint.value
        if self.model.value != CHECKPOINT_CHOICE or path is None or not Path(path).is_file():
            return ""
        return str(path)

    def _check_chosen_file(self, _=None) -> None:
        """Read the checkpoint file chosen in the background; a problem is shown under the
        model (:meth:`_show_model_state`) and stops Start."""
        path = self._chosen_file()
        if path:
            self._file_check.check(path)

    def _checkpoint_name(self, path: str) -> str:
        """:func:`active_model.model_label` of the chosen checkpoint file ``path``, read
        once for each file chosen (it reads the run's finetune.json; :meth:`start_model`
        runs on every layer event)."""
        if self._checkpoint_label[0] != path:
            self._checkpoint_label = (path, active_model.model_label(path))
        return self._checkpoint_label[1]

    def _mask_model(self) -> tuple[str, str] | None:
        """``(model, label)`` that Segment ran to make a pair's Labels layer, the first pair
        whose layer's metadata names one that is still there; None when none does."""
        for row in self.rows:
            # a first pair with a mask from a file or painted by hand records no model:
            # the Segment output corrected in a later pair still names the one to go on from
            meta = row.mask.value.metadata if row.mask.value is not None else {}
            made_by = str(meta.get("model", ""))
            if made_by and (registry.find_model(made_by) or Path(made_by).is_file()):
                return made_by, str(meta.get("model_label") or active_model.model_label(made_by))
        return None

    def _show_model_state(self, _=None):
        """Show the checkpoint field, or name the model Start would begin from and why:
        "active:" only for the viewer's active model (the one Segment runs). Called on
        every change of what Start takes (pairs, layers, Folder, model): a refusal in the
        status line is old news then."""
        if self.status.value == self._refusal and not self.running:
            self.status.value = ""
        self._refusal = ""
        self.checkpoint.visible = self.model.value == CHECKPOINT_CHOICE
        chosen = None
        if self.model.value == ACTIVE_CHOICE:
            chosen = self.start_model()
            active = self.active.current
            if chosen is None:
                text = "no model to start from: choose one"
            elif self._folder_unread():  # it decides the model: said once it is read
                text = f"the model for the Folder's images: {READING}"
            elif active is not None and chosen[0] == active.model:
                text = f"active: {chosen[1]}"
            elif chosen == self._mask_model():
                text = f"the mask's model: {chosen[1]}"
            else:
                text = f"shipped model: {chosen[1]}"
                kind = self._folder_alone()
                if kind and registry.model_modality(chosen[0]) == kind:
                    text += f" (the Folder's images look like {kind})"
            self.active_label.value = text
            self.active_label.visible = True
        else:  # a checkpoint file found unreadable when chosen says why
            problem = self._file_check.problem(self._chosen_file())
            self.active_label.value = f"cannot start from this file: {problem}" if problem else ""
            self.active_label.visible = bool(problem)
        note = self.modality_mismatch(chosen)
        self.modality_note.value = note
        self.modality_note.visible = bool(note)
        folder = self._chosen_folder()
        problems = self._folder_state(folder)[1] if folder else ""
        self.folder_note.value = problems
        self.folder_note.visible = bool(problems)

    def modality_mismatch(self, chosen: tuple[str, str] | None = None) -> str:
        """A sentence naming the pairs and the dataset Folder whose images look like
        another modality (:func:`registry.guess_modality`) than the one the starting model
        is for, the model, and what to do: remove those pairs or clear Folder or, when the
        Folder and every pair are of one other modality, choose its shipped model in Start
        from; "" when none do or the model's modality is unknown. A warning, not a
        refusal: a model may be fine-tuned on another modality on purpose (e.g. a
        colonoscopy model on the images of another endoscope). ``chosen``: the
        :meth:`start_model` when already known."""
        chosen = chosen or self.start_model()
        if chosen is None:
            return ""
        modality = self._start_modality(chosen[0])
        if not modality:
            return ""
        others, kinds = [], set()
        guesses, self._guesses = self._guesses, {}
        for row in self.rows:
            image = row.image.value
            if image is None:
                continue
            kind = self._image_modality(image, guesses)
            kinds.add(kind)
            if kind != modality:
                others.append(f"{image.name!r} ({kind})")
        folder = self._chosen_folder()
        folder_kind = self._folder_state(folder)[0] if folder else ""
        if not others and folder_kind in ("", modality):
            return ""
        several = len(others) > 1
        named = f"{', '.join(others[:-1])} and {others[-1]}" if several else "".join(others)
        subject = f"{'Images' if several else 'Image'} {named}" if others else ""
        remedy = f"remove {'those pairs' if several else 'that pair'}" if others else ""
        if folder_kind not in ("", modality):
            in_folder = f"images of folder {Path(folder).name!r} ({folder_kind})"
            subject = f"{subject} and the {in_folder}" if subject else f"The {in_folder}"
            shipped = registry.model_for_modality(folder_kind)
            if shipped is not None and kinds <= {folder_kind}:  # all the data: one other kind
                remedy = f"choose Start from: {shipped.name}"
            else:
                remedy = f"{remedy} and clear Folder" if remedy else "clear Folder"
            several = True
        return (
            f"{subject} {'do' if several else 'does'} not look like the {modality} images "
            f"{chosen[1]} is for: fine-tuning it on {'them' if several else 'it'} may make it "
            f"worse on {modality} images; {remedy} unless that is what you want."
        )

    def _chosen_folder(self) -> str:
        """The dataset folder to train on, or "" when none is chosen."""
        folder = self.dataset_folder.value
        return str(folder) if folder and str(folder) not in ("", ".") else ""

    def _on_dataset_folder_changed(self, _=None) -> None:
        """A Folder chosen (again): read it afresh in the background, "reading folder..."
        under it meanwhile (a read of the Folder chosen before is dropped). A Start that
        waited for that read goes on when this one ends, or now for no Folder."""
        self._folder.forget()
        self._show_model_state()
        self._start_if_read()

    def _on_folder_read(self) -> None:
        """The chosen Folder has been read (GUI thread): its notes, then a Start that
        waited for it."""
        if self._closed:
            return
        self._show_model_state()
        self._start_if_read()

    @property
    def reading_folder(self) -> bool:
        """Whether the chosen dataset Folder is being read (in a worker thread)."""
        return self._folder.reading

    def _folder_state(self, folder: str) -> tuple[str, str]:
        """(modality, problems) of dataset folder ``folder`` (:class:`FolderRead`: read in
        the background, kept while it and its images/ and masks/ are unchanged); ("",
        "reading folder...") until it has been read."""
        return self._folder.state(folder) or ("", READING)

    def _folder_alone(self) -> str:
        """The chosen Folder's modality when it is trained on alone (no pair has an
        image); "" otherwise, or when its images cannot be read (or are being read)."""
        first = self.rows[0].image.value if self.rows else None
        folder = self._chosen_folder()
        return self._folder_state(folder)[0] if folder and first is None else ""

    def _folder_unread(self) -> bool:
        """Whether the Folder is trained on alone and not read yet (it picks the model)."""
        first = self.rows[0].image.value if self.rows else None
        folder = self._chosen_folder()
        return bool(folder) and first is None and self._folder.state(folder) is None

    def _image_modality(self, layer, earlier: dict) -> str:
        """:func:`registry.guess_modality` of an image layer, kept while its data is the same
        array (the note is redone on every layer event; a guess takes ~20 ms). ``earlier``:
        the guesses kept by the last call, of the pairs' layers then."""
        key = (id(layer), id(layer.data))
        self._guesses[key] = earlier[key] if key in earlier else layer_modality(layer)
        return self._guesses[key]

    def _start_modality(self, model: str) -> str:
        """The modality the starting model ``model`` is for: the active model's (its
        fine-tuning images'), else the registry's or its checkpoint's
        (:func:`registry.model_modality`)."""
        active = self.active.current
        if active is not None and active.model == model and active.modality:
            return active.modality
        return registry.model_modality(model)

    def _say_device_problem(self, _=None) -> None:
        """Say at once that the chosen Device is not on this machine, as the Segment
        dock does (:func:`note_device_problem`)."""
        self._device_note = note_device_problem(
            self, self._device_note, lambda note: show_warning(f"Fine-tuning: {note}")
        )

    def _on_active_changed(self, choice: active_model.ModelChoice):
        self._show_model_state()
        self._update_buttons()

    def revert(self, _=None) -> None:
        """Make the previous model active again (and the fine-tuned one the previous)."""
        with file_warnings_shown():  # a settings file that refuses the save: said
            choice = self.active.revert()
        if choice is not None:
            self.status.value = f"active model: {choice.label}"

    # --- run folder --------------------------------------------------------------------

    def _on_folder_changed(self, _=None):
        """Resume follows each change of the Run folder (each key typed); what the folder
        holds is shown (a verdict never shown: decided) only once the user has chosen
        it: set by the folder dialog (or by code), or typed and then entered
        (:meth:`_on_folder_entered`), not at each key of a path being typed, which may
        pass through the name of another run (``run-1`` on the way to ``run-12``)."""
        if not self._setting_folder:
            self._auto_folder = False
            self.run_note.visible = False  # a folder is chosen: its own status says
        self._update_buttons()
        typing = self.run_folder.line_edit.native.isModified()  # Qt: keys, not code
        if not typing and not self._setting_folder and not self.running:
            self._show_folder_run()

    def _on_folder_entered(self) -> None:
        """Show what a typed Run folder holds (:meth:`_show_folder_run`) at Enter or when
        the field is left; not again for a folder already shown (Enter twice)."""
        edit = self.run_folder.line_edit.native
        if not edit.isModified():  # not typed since it was last shown
            return
        edit.setModified(False)
        if not self.running and not self._closed:  # left as the dock closes: nothing
            self._show_folder_run()

    def _show_folder_run(self) -> None:
        """Say what the Run folder the user chose holds: a stopped run (Resume continues
        it), one trained to its end but not compared (Resume compares), or a comparison
        never shown (the dock was closed, napari killed): that verdict, decided as at the
        end of a run (:meth:`_show_verdict`)."""
        path = Path(self.run_folder.value).expanduser()
        state = run_folder_state(path)
        if state in ("resumable", "uncompared"):
            step, total = run_progress(path)
            self.progress_bar.max, self.progress_bar.value = max(total, 1), min(step, total)
            if state == "uncompared" or (total and step >= total):
                self.status.value = (
                    f"the run in {path.name} trained all its {total or step} steps but its "
                    "models were not compared: Resume compares them"
                )
            else:
                self.status.value = (
                    f"the run in {path.name} stopped at step {step} of {total}: Resume continues it"
                )
            return
        saved = saved_verdict(path) if state == "finished" else None
        if saved is None:
            return
        self.result, self._modality = saved, ""  # the run's modality, not the last run's
        self.progress_bar.max = max(int(saved.get("total_steps") or 1), 1)
        self.progress_bar.value = min(int(saved.get("step") or 0), self.progress_bar.max)
        # a verdict never shown is decided now as it would have been; one of an older
        # version (not known whether it was shown) only offers 'Use ... anyway'
        self._show_verdict(saved, decide=saved.get("shown") is False)

    def _set_folder(self, path: Path):
        self._setting_folder = True
        try:
            self.run_folder.value = path
        finally:
            self._setting_folder = False

    def _fresh_run_dir(self) -> Path | None:
        """The folder a new run goes to: the Run folder when it is empty; a new dated one
        for a folder the dock chose; beside a folder the user chose that holds a
        finished or never-trained run (``NAME-2``...); None (refused, with the reason)
        for a stopped run (Resume continues it) or other files."""
        path = Path(self.run_folder.value).expanduser()
        state = run_folder_state(path)
        if state == "empty":
            return path
        if self._auto_folder:
            fresh = new_run_folder()
        elif state == "resumable":
            self._refuse(
                f"The run folder {path} holds a stopped run: Resume it, or choose another folder."
            )
            return None
        elif state == "other":
            self._refuse(f"The run folder {path} holds other files: choose an empty or new folder.")
            return None
        else:  # finished, or never trained: kept as it is
            fresh = next_free_folder(path)
            what = "a finished run" if state == "finished" else "a run stopped before training"
            show_info(f"{path} holds {what}: this run is saved in {fresh}.")
        self._set_folder(fresh)
        return fresh

    # --- running -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a fine-tuning job is in progress (from the click until it has ended)."""
        return self._busy

    def start(self, _=None) -> None:
        """Write the data and configuration, then fine-tune in a worker thread. With a
        dataset Folder, once it has been read again in the background (its files may have
        changed since it was chosen): the model to start from and the notes come from it."""
        if self.running:
            show_info("Fine-tuning is already running.")
            return
        folder = self._chosen_folder()
        if not folder:
            self._start_now()
            return
        self._start_after_read = True
        self._busy = True  # Stop cancels the Start; Start is not clicked twice
        self._update_buttons()
        self.status.value = READING
        self._folder.read(folder)  # where workers run inline: read, and started, by now
        if self._start_after_read:
            self._show_model_state()

    def _start_if_read(self) -> None:
        """Go on with a Start that waited for the Folder's read, when no read is under way
        (another Folder may have been chosen meanwhile: the Start waits for that one)."""
        if not self._start_after_read or self._folder.reading:
            return
        self._start_after_read = False
        self._busy = False
        self._start_now()
        self._update_buttons()  # refused: Start is offered again

    def _start_now(self) -> None:
        """Check the settings and the data, then launch the run (:meth:`start`)."""
        self._show_model_state()
        chosen = self.start_model()
        if chosen is None:
            self._refuse("Choose a model to start from (a shipped model or a checkpoint file).")
            return
        path = self._chosen_file()  # chosen a moment ago: Start waits for its read
        if self._file_check.wait_for(self, [path] if path else [], self._start_again):
            return
        bad_file = self._file_check.problem(path)
        if bad_file:
            self._refuse(bad_file)
            return
        problem = self._pair_problem()
        if problem:
            self._refuse(problem)
            return
        try:
            pairs = self._layer_pairs()
        except ValueError as err:
            self._refuse(str(err))
            return
        folder = self._chosen_folder()
        if not pairs and not folder:
            self._refuse("Add an (image, Labels) pair or choose a dataset folder to train on.")
            return
        uncorrected = nothing_corrected(pairs, bool(folder))
        if uncorrected:
            self._refuse(uncorrected)
            return
        run_dir = self._fresh_run_dir()
        if run_dir is None:
            return
        mismatch = self.modality_mismatch()
        if mismatch:  # said in the dock already; once more as the run starts
            show_warning(f"Fine-tuning: {mismatch}")
        first = self.rows[0].image.value if self.rows else None
        # the guess modality_mismatch just made, kept (a guess takes ~20 ms)
        self._modality = self._image_modality(first, self._guesses) if first is not None else ""
        self._launch(
            FinetuneJob(
                run_dir=run_dir,
                pairs=pairs,
                dataset_folder=folder,
                start_model=chosen[0],
                start_label=chosen[1],
                modality=self._modality,  # "": the run guesses the Folder's
                steps=int(self.steps.value),
                lr=float(self.learning_rate.value),
                batch_size=int(self.batch_size.value),
                augmentation=str(self.augmentation.value),
                device=str(self.device.value),
                threads=_torch_threads(),
            )
        )

    def _start_again(self, path: str) -> None:
        """Click Start again now that the checkpoint file ``path`` a Start waited for is
        read (:meth:`CheckpointCheck.wait_for`): refused with the check's words, or
        started; nothing starts when the file to start from is another one now."""
        if self._chosen_file() == path:
            self.start()

    def resume(self, _=None) -> None:
        """Continue the stopped run in the run folder (its saved settings)."""
        if self.running:
            return
        run_dir = Path(self.run_folder.value).expanduser()
        if _stopping_in(self.viewer, run_dir):
            self._refuse(f"The run in {run_dir} is still stopping: Resume it once it has stopped.")
            return
        if not (run_dir / "train" / "last.pt").is_file():
            self._refuse(f"{run_dir} holds no run to resume (no train/last.pt).")
            return
        try:
            self.history = read_history(run_dir / "train")
        except ValueError as err:  # a damaged metrics.jsonl: the run cannot resume either
            self._refuse(str(err))
            return
        self._launch(
            FinetuneJob(
                run_dir=run_dir,
                resume=True,
                device=str(self.device.value),
                threads=_torch_threads(),
            ),
            keep_history=True,
        )

    def _refuse(self, reason: str) -> None:
        """Say why a job does not start: an error message, and the status line until
        what Start takes changes."""
        self.status.value = self._refusal = reason
        show_error(reason)

    def stop(self, _=None) -> None:
        """Stop after the current step (the engine evaluates and keeps the best
        checkpoint), or before training when it has not begun (the job checks between
        its phases and while scoring)."""
        if self._start_after_read:  # waiting for the Folder's read: no run is started
            self._start_after_read = False
            self._busy = False
            self._update_buttons()
            self.status.value = "not started: Stop was clicked while the Folder was read"
            return
        if self.running:
            self._stop_event.set()
            training = self._training
            self.status.value = "stopping: evaluating and saving..." if training else "stopping..."

    def _on_closed(self) -> None:
        """The dock is closed (napari's X, or napari closed): stop a run as Stop does (it
        saves last.pt, so the run can be resumed), and leave the widgets alone from now on
        (closing napari deletes them). A run stopped by the X is offered by the dock
        reopened in this viewer (:meth:`_offer_closed_run`)."""
        self._closed = True
        self._file_check.close()
        self._folder.close()
        self._stop_event.set()
        if self.running and not self._window_closed:
            _CLOSED_RUNS[self.viewer] = self
        try:
            for signal in (self._relay.stepped, self._relay.evaluated, self._relay.phase):
                signal.disconnect()
        except RuntimeError:  # the relay went first (the interpreter is ending)
            pass

    def _on_window_closed(self) -> None:
        """napari's window is closing (the dock's widget is destroyed): stop a run and
        wait for its worker's last signal, so that no training thread outlives the
        window (at the interpreter's exit its signals are deleted under it)."""
        self._window_closed = True
        if self.running:
            wait_for_run(self._stop_event, self._ended, RUN_WORDS)

    def _offer_closed_run(self, *_) -> None:
        """Show the run that the closed dock of this viewer left (:meth:`_on_closed`) in
        this dock: its Run folder, and in the status whether it is still stopping or
        where it stopped (Resume continues it). Not once this dock has a run or a Run
        folder the user chose."""
        closed = _CLOSED_RUNS.get(self.viewer)
        if closed is None or closed is self or self.running or self._closed:
            return
        if not self._auto_folder:  # the user has chosen another
            return
        run_dir = Path(closed.run_folder.value)
        self._set_folder(run_dir)
        if closed.running:  # tells this dock again when it has stopped
            closed.worker.finished.connect(self._offer_closed_run)
            self.status.value = (
                f"the run in {run_dir} is stopping (its dock was closed); Resume "
                "continues it once it has stopped."
            )
        else:
            self.status.value = _closed_run_text(closed)
            if closed.result and closed.result.get("total_steps"):  # where it stopped
                self.progress_bar.max = int(closed.result["total_steps"])
                self.progress_bar.value = int(closed.result.get("step", 0))
            if run_folder_state(run_dir) == "finished":  # its verdict, never shown
                self._show_folder_run()
        self._update_buttons()
        self._show_run_controls()  # Resume and the status, under the settings

    def _launch(self, job: FinetuneJob, keep_history: bool = False) -> None:
        _CLOSED_RUNS.pop(self.viewer, None)  # a new run: the closed dock's one is not shown
        self.result, self.error, self.step, self._verdict = None, "", 0, ""
        self._show_details("")  # the last run's comparison
        self._training = False
        if not keep_history:  # a new run: not the last run's history, nor its 100%
            self.history = {"loss": [], "eval": []}
            self.progress_bar.value = 0
        self._redraw(force=True)
        self._stop_event = threading.Event()
        self._ended = threading.Event()
        self._eta = Eta()
        self.use_anyway_button.visible = False
        # _auto_folder is kept: after this run, Start gives way to a fresh folder if the
        # dock chose this one, and refuses to reuse one the user picked (_fresh_run_dir).
        self._set_folder(job.run_dir)  # shown, for Resume
        # what killed runs' checkpoint writes left beside it (this run's too), said under
        # the Run folder: a few listings, before this run's engine takes its lock
        removed = remove_unfinished_writes(Path(job.run_dir).expanduser().parent)
        self.run_note.value = removed
        self.run_note.visible = bool(removed)
        relay = self._relay
        callbacks = {
            "on_step": lambda step, total, loss: _emit(relay, "stepped", step, total, float(loss)),
            "on_eval": lambda record: _emit(relay, "evaluated", dict(record)),
            "on_phase": lambda text: _emit(relay, "phase", str(text)),
        }
        self._busy = True
        self._update_buttons()
        self.status.value = f"starting...; {removed}" if removed else "starting..."
        self._show_run_controls()
        ended = track_run(self._stop_event, self._ended, RUN_WORDS)
        self.worker = start_worker(
            run_finetune,
            job,
            self._stop_event,
            callbacks,
            connect={
                "returned": self._on_returned,
                "errored": self._on_error,
                "finished": self._on_finished,
            },
            direct={"finished": ended},  # closing napari waits for it
        )

    def _show_run_controls(self) -> None:
        """Scroll a short dock to Stop, the progress bar and the status under them (they
        sit below the settings); Stop first where they do not all fit."""
        scroll_into_view(self.body, self.buttons, self.progress_bar, self.status)

    def _update_buttons(self, _=None):
        busy = self._busy
        self.start_button.enabled = not busy
        self.stop_button.enabled = busy
        self.add_pair_button.enabled = not busy
        folder = self.run_folder.value
        state = run_folder_state(folder) if folder is not None else ""
        resumable = state in ("resumable", "uncompared")  # the latter is compared
        resumable = resumable and not _stopping_in(self.viewer, folder)
        self.resume_button.enabled = not busy and resumable
        previous = self.active.previous
        self.revert_button.enabled = not busy and previous is not None
        # the label (e.g. "fine-tuned on kvasir1 20261202-184916") is too long for the
        # button at a dock's width: it goes in the tooltip
        tip = FINETUNE_TIPS["revert_button"]
        tip = f"{tip} Previous model: {previous.label}." if previous else tip
        # a saved model whose file is not found, said for as long as it lasts (the message
        # at the start fades)
        missing = self.active.missing_words()
        self.revert_button.tooltip = f"{tip} {missing}" if missing else tip

    # --- signals from the worker (GUI thread) ------------------------------------------

    def _on_phase(self, text: str):
        self._training = self._training or text == TRAINING_PHASE
        if self._stop_event.is_set() and not self._training:  # "stopping..." stays to the end
            return
        self.status.value = text

    def _on_step(self, step: int, total: int, loss: float):
        self.step = step
        self.progress_bar.max = total
        self.progress_bar.value = step
        self.eta.value = "step " + self._eta.text(step, total)
        self.history["loss"].append((step, loss))
        self._redraw()

    def _on_eval(self, record: dict):
        self.history["eval"].append(record)
        if not record.get("baseline"):
            self.status.value = _validation_text(record)
        self._redraw(force=True)

    def _on_returned(self, result: dict):
        """Compare old and new; make the new model active only when it was trained (at
        least one step in this run) and :func:`compare_models` says so; else the user
        decides ('Use the fine-tuned model anyway'). Not once the dock is closed: the run
        folder keeps the checkpoints."""
        self.result = result
        if self._closed:
            if not self._window_closed:
                show_info(f"Fine-tuning: {_closed_run_text(self, menu=True)}")
            return
        if result.get("new") is None and not result.get("rows"):  # nothing learned
            self.status.value = f"stopped before any training step; {self._staying(result)}"
            return
        self._show_verdict(result)

    def _show_verdict(self, result: dict, decide: bool = True) -> None:
        """Show a run's comparison and verdict; make its model active when ``decide`` and
        :func:`compare_models` says so, else offer 'Use the fine-tuned model anyway'
        (nor, for a verdict not decided now, when its model is active). Recorded in
        comparison.json (``mark_shown``): a verdict is decided once."""
        self._show_comparison(result["rows"])
        state = "stopped" if result["stopped"] else "finished"
        verdict = compare_models(result)
        self._verdict = f"{state} at step {result['step']}/{result['total_steps']}"
        why = _unbroken(verdict["why"])  # it may give the held-out Dice, a -> b
        # the full comparison under the headline and the button: read after them
        details = [_unbroken(verdict["compared"]), why, result.get("checkpoint_note", "")]
        self._show_details("; ".join(part for part in details if part) + _left_out_line(result))
        run_dir = result.get("run_dir") or self.run_folder.value
        mark_shown(run_dir)
        # decided: the room it takes and where, under the Run folder (the guide says
        # which of its files can go)
        self.run_note.value = run_size_note(run_dir)
        self.run_note.visible = True
        current = self.active.current
        active = current is not None and current.model == result["best_checkpoint"]
        if active and not decide:  # an older version's verdict, already taken
            self.status.value = f"{self._verdict}; active: {current.label}"
            return
        if verdict["use_new"] and decide:
            self.use_fine_tuned()
            return
        staying = self._staying(result)
        # the headline: what happened, in one clause why, and which model is active
        self.status.value = (
            f"{self._verdict}: the fine-tuned model was not made active "
            f"({verdict['short']}); {staying}"
        )
        self.use_anyway_button.visible = True
        show_warning(f"Fine-tuning: {why}; {staying} ('Use the fine-tuned model anyway' switches).")

    def _show_details(self, text: str) -> None:
        """Show ``text``, the last run's full comparison, under the verdict's headline and
        'Use ... anyway' (hidden when "")."""
        self.details.value = text.strip()
        self.details.visible = bool(self.details.value)

    def _staying(self, result: dict) -> str:
        """What Segment goes on using for images of the run's kind when its model is not
        made active, in words: "M stays active" for the active model when it is for them,
        else for their shipped model (a checkpoint file started from never was active)."""
        start = result.get("start_model", "")
        modality = self._modality or result.get("modality") or registry.model_modality(start)
        current = self.active.current
        if current is not None and current.modality in ("", modality):
            return f"{current.label} stays active"
        shipped = registry.model_for_modality(modality) if modality else None
        if shipped is not None:
            return f"{shipped.name} stays active"
        return "no model is active (Segment uses the shipped model for each kind)"

    def use_fine_tuned(self, _=None) -> active_model.ModelChoice | None:
        """Make the last run's best checkpoint the active model (Revert brings the old back)
        and say so in the status.

        Both are filed under the modality of the images trained on (the first pair's) or,
        for a dataset folder, of the starting model: Segment uses them for such images."""
        result = self.result
        if result is None:
            return None
        with file_warnings_shown():  # a settings file that refuses the save: said
            choice = self._make_active(result)
        verdict = f"{self._verdict}; " if self._verdict else ""
        self.status.value = f"{verdict}active: {choice.label}"  # the comparison under it
        return choice

    def _make_active(self, result: dict) -> active_model.ModelChoice:
        """Make the run's best checkpoint the active model, its starting model (or the
        model active now) the previous one."""
        start, previous = self.active.current, None  # None: the active one becomes it
        modality = self._modality or result.get("modality", "")
        if start is None or start.model != result["start_model"]:  # the one Revert brings back
            start = self._start_choice(result, modality)
            previous = None if result.get("start_problem") else start
        self.use_anyway_button.visible = False
        # listeners (Segment) use it for images of this modality; masks made by the models it
        # descends from are masks it replaces (a next Start goes on from it)
        lineage = (start.model, *start.lineage)
        best = result["best_checkpoint"]
        # the model's one name (the run's, after what it trained on): in this dock,
        # Segment, Metrics, and after a restart
        name = result.get("name") or active_model.model_label(best)
        # one change, one save: the start model would otherwise push out of the settings
        # file a model another window made active meanwhile
        return self.active.set(best, name, modality, lineage, previous)

    def _start_choice(self, result: dict, modality: str) -> active_model.ModelChoice:
        """The run's starting model, which the fine-tuned one's previous model becomes so
        that Revert brings it back; one that could not be scored (its file gone:
        ``start_problem``) does not: Revert would bring back a file that is not there (the
        model active now stays the previous one)."""
        model, label = result["start_model"], result["old_label"]
        if result.get("start_problem"):
            return active_model.ModelChoice(model, label, modality, active_model.run_lineage(model))
        return active_model.with_modality(active_model.ModelChoice(model, label, modality))

    def _on_error(self, err: Exception):
        # A write that fails names a file inside the run folder, or none: name the Run
        # folder the user chose instead, and what to do
        why = _run_folder_problem(err)
        folder = self.run_folder.value
        if why == DISK_FULL:
            self.error = (
                f"cannot write to the Run folder {folder} ({why}): free space there or "
                "choose another Run folder"
            )
        elif why:
            self.error = (
                f"cannot write to the Run folder {folder} ({why}): choose another Run folder"
            )
        else:
            self.error = _error_words(err)
        if self._closed:
            if not self._window_closed:
                show_error(f"Fine-tuning failed after its dock was closed: {self.error}")
            return
        self.status.value = f"failed: {self.error}"
        show_error(f"Fine-tuning failed: {self.error}")

    def _on_finished(self):
        self._busy = False
        self.worker = None
        if self._closed:
            return
        self.eta.value = ""  # nothing is left to wait for
        self._update_buttons()
        self._redraw(force=True)
        # the verdict's headline, 'Use ... anyway' under it (where it is shown) and the
        # comparison's box, made no taller than the room left, in a dock a third of a
        # small screen high
        scroll_into_view(self.body, self.status, self.use_anyway_button, self.details)

    def _show_comparison(self, rows: list[dict]):
        """Show the before/after rows in the Metrics dock; a Metrics dock opened here is
        placed by :func:`place_dock` with this dock kept in view: tabbed with another
        dock on its side (e.g. Segment) where the column is short, so that the docks
        there are not squeezed to a third of the window each."""
        if not rows:
            return
        try:
            was_open = find_dock(self.viewer, "Metrics") is not None
            dock, metrics = open_dock(self.viewer, "Metrics")
            if not was_open:
                place_dock(dock, front=self.native)
            metrics.set_comparison(rows)
        except Exception as err:  # noqa: BLE001 - the results are also in comparison.json
            show_warning(f"Could not show the comparison in the Metrics dock: {err}")


# ------------------------------------------------------------------------- helpers


class _LabelFitter(QObject):
    """Widens the label column of a Container to its longest label in the font the labels
    are shown in: magicgui measures them before napari's style sets that font, which cut
    "Augmentation" to "Augmentatio" at a dock's width. ``titles()`` gives more labels (magicgui
    Labels) that take the column's width: the pairs' titles, so that their choosers line up
    with the fields under them."""

    def __init__(self, container: Container, titles: Callable[[], list] = list):
        super().__init__(container.native)
        self.container = container
        self.titles = titles
        container.native.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        from qtpy.QtCore import QEvent

        if event.type() in (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange):
            self.fit()
        return False

    def fit(self) -> None:
        """Give every label of the container, and the titles, the width of the longest one
        (at least the widest that magicgui gave one), as the label's own size hint has it
        in its style: its text's advance and a few px left 7 px of "Augmentation" out
        under napari's style (tester37 #7). The body's scroll area then widens to hold
        it (:func:`fit_width`)."""
        from qtpy.QtCore import QTimer

        labels = [getattr(w, "_labeled_widget", lambda: None)() for w in self.container]
        natives = [lw._label_widget.native for lw in labels if lw is not None]
        natives += [title.native for title in self.titles()]
        if natives:
            width = max(max(n.sizeHint().width(), n.minimumWidth()) for n in natives)
            for native in natives:
                native.setMinimumWidth(width)
            QTimer.singleShot(0, self._fit_body)  # once the layout has taken the widths

    def _fit_body(self) -> None:
        try:
            fit_width(self.container)
        except RuntimeError:  # the dock was closed meanwhile
            pass


def _left_out_line(result: dict) -> str:
    """A line naming the pairs and folder images the run did not train on (an unedited
    Segment output, a folder image open as a pair), to end the verdict with ("" when
    none were left out): said during setup, it was gone in a moment."""
    left_out = result.get("left_out") or ""
    return f"\n{left_out}" if left_out else ""


def _validation_text(record: dict) -> str:
    """A validation record of the engine in words: its held-out Dice and the best so far,
    or where no foreground is held out (Dice means nothing there) its false positives."""
    if "val_false_positive_px" in record:
        return (
            f"step {record['step']}: held-out false-positive pixels "
            f"{record['val_false_positive_px']} (no foreground held out)"
        )
    return (
        f"step {record['step']}: validation Dice {record.get('val_dice', float('nan')):.4f}"
        f" (best {record.get('best_val_dice') or float('nan'):.4f})"
    )


def _unbroken(text: str) -> str:
    """``text`` with its "a -> b" as "a → b" between no-break spaces: a line may break
    before or after the pair, not inside it ("0.9982 -" / "> 0.9457")."""
    return text.replace(" -> ", "\u00a0\u2192\u00a0")


RUN_WORDS = "a fine-tuning run"  # what a run still going when napari closes is called
# the dock of each viewer closed (its X) while a run went on: a reopened dock offers that run
_CLOSED_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _closed_run_text(closed: FinetuneWidget, menu: bool = False) -> str:
    """What became of the run of the dock ``closed``, closed while it ran; ``menu``: say
    where the dock that resumes it is (a notification, read outside the dock)."""
    run_dir = Path(closed.run_folder.value).expanduser()
    result, where = closed.result, f"the run in {run_dir}"
    if closed.error:
        return f"{where} failed after its dock was closed: {closed.error}"
    if result is None:
        return f"{where} ended after its dock was closed"
    at = f"step {result.get('step', 0)}/{result.get('total_steps', '?')}"
    if run_folder_state(run_dir) == "resumable":
        resume = "Resume (in Plugins > TM-UNet > Fine-tune)" if menu else "Resume"
        return f"{where} stopped at {at} when its dock was closed; {resume} continues it"
    if result.get("new") is None and not result.get("rows"):  # nothing learned
        return f"{where} stopped before any training step when its dock was closed"
    return f"{where} finished ({at}) as its dock was closed; its model: {result['best_checkpoint']}"


def _stopping_in(viewer, folder) -> bool:
    """Whether the run of this viewer's closed dock is still stopping in ``folder``."""
    closed = _CLOSED_RUNS.get(viewer)
    if closed is None or not closed.running:
        return False
    return Path(closed.run_folder.value).expanduser() == Path(folder).expanduser()


def _emit(relay: _Relay, name: str, *args) -> None:
    """Emit the relay's signal ``name`` from the training thread; a closed widget must not
    stop the training (reading the signal off a deleted relay raises too)."""
    try:
        getattr(relay, name).emit(*args)
    except RuntimeError:  # the relay's C++ object is gone (dock closed)
        pass


# errors that come from a mistake in the code: their type says more than their message
_CODE_ERRORS = (LookupError, TypeError, AttributeError, NameError, AssertionError)


def _error_words(err: BaseException) -> str:
    """A worker's error for the user: :func:`error_text` (the message alone for bad input),
    and the message alone too for the other errors the job meets on purpose (a file,
    memory, CUDA); ``Type: message`` for a code error or an empty message. Problem files
    that the Python API could skip are named without its ``skip_bad=True``: the dock has
    no such control (:func:`skip_message`)."""
    from .data.datasets import skip_message

    cause = err.__cause__ if err.__cause__ is not None else err
    message = (skip_message(cause, None) or str(cause)).strip()
    if isinstance(cause, _CODE_ERRORS) or isinstance(err, _CODE_ERRORS) or not message:
        return error_text(err)
    return message


def _torch_threads() -> int:
    """The GUI thread's torch thread count, when torch is loaded (0: leave the default)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 0


def _run_folder_problem(err: BaseException) -> str:
    """Why the run folder cannot be written, when ``err`` or an error it was raised from
    says so, in words ("" when neither does): :data:`DISK_FULL`, a read-only file system,
    permission denied, a file in the way. A bare permission error may be a read, so only
    storage's NotWritableError counts for those."""
    errors = []
    while err is not None:
        errors.append(err)
        err = err.__cause__ or err.__context__
    for error in errors:  # a full disk first: its OSError often names no file
        # torch.save raises a RuntimeError that only says so in words
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
            return DISK_FULL
    for error in errors:
        code = getattr(error, "errno", None)
        if isinstance(error, OSError) and code == errno.EROFS:
            return "it is on a read-only file system"
        if isinstance(error, NotWritableError):
            return "permission denied" if code in (errno.EACCES, errno.EPERM) else error.reason
    return ""
