"""The Segment dock widget: an image layer in, a Labels layer out.

The work is :func:`napari_tmunet._segment_jobs.segment_jobs` (inference, then labels
derived from the kept probability), run in a napari ``thread_worker`` (torch is imported
there, not at plugin load) with a progress bar, an ETA and a Cancel button;
``NAPARI_TMUNET_INLINE=1`` runs it on the calling thread instead (scripts).

Which model runs: the model for the image's modality (guessed from its colours), or the
user's choice for that modality (remembered across sessions for a shipped model trained
for that modality; one trained for another is used in this session only, and said so; one
picked on a colour TIFF that napari's reader opened as grey frames, for that image only), or
the model Fine-tune made active for it (shown by its name, and kept across sessions:
:mod:`napari_tmunet.active_model`); the dock says which and why.
An image layer that looks like a mask (:func:`napari_tmunet._image_layers.is_mask_image`)
is not followed as the image to segment; the dock says how to make it Labels. "Segment all image
layers" runs on each image the model a Segment click on it would run. The threshold, the
least object confidence, mode and output kind default to the loaded model's own; a
threshold or confidence the user moves holds for the model shown then (each model keeps
its own), and an image with a result of the model shown shows the settings it was made
with, and the summary that result (a threshold moved while Segment runs holds for the
model that runs, also when the Model box is switched before it ends). Moving
the threshold (or the confidence, hole filling, minimum size, output kind) re-derives the
labels from the kept probability without running the network again
(:class:`~napari_tmunet._segment_rederive.Rederive`). Pictures opened together are shown
one at a time, each result with its picture, and the dock follows the picture shown or
selected (:class:`~napari_tmunet._segment_frames.FrameVisibility`).
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import replace
from functools import partial
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

from . import active_model, registry
from ._close_guard import guard_window
from ._dock_texts import (
    CHANNEL_FIRST_COLOUR,
    CHANNEL_FIRST_MAYBE,
    CMYK_AS_STORED,
    CONVERT_TO_MASK,
    EXIF_AS_STORED,
    NO_CHECKPOINT_REASON,
    SAVED_MASK_AS_IMAGE,
    SEGMENT_TIPS,
    SPLIT_CHANNEL,
)
from ._docks import place_when_shown, raise_from_menu
from ._image_layers import (
    is_mask_image,
    layer_colour_conversion,
    layer_modality,
    layer_source_path,
    layer_thumbnail,
    orientation_not_applied,
    saved_by_tmunet,
)
from ._layer_style import outline_references
from ._reader import CHANNEL_KEY, file_warnings_shown
from ._segment_frames import FrameVisibility, set_visible
from ._segment_jobs import (
    AUTO,
    LARGE_IMAGE,
    SegmentOptions,
    SegmentOutcome,
    header_defaults,
    mode_note,
    prepare_early,
    segment_jobs,
    until_cancelled,
)
from ._segment_outputs import DISCLAIMER, OutputLayers, _model_id, _Output
from ._segment_rederive import Rederive, _cutoffs, runs_inline
from ._view_fit import keep_fitted
from ._widget_common import (
    CheckpointCheck,
    Eta,
    error_text,
    fit_width,
    full_data,
    intro_above,
    is_probability_map,
    keeping_layers,
    narrow,
    note_device_problem,
    on_dock_closed,
    open_in_checkpoint_folder,
    scroll_body,
    scroll_into_view,
    scrolled_text,
    set_tooltips,
    span_row,
    start_worker,
    track_run,
    wait_for_run,
    wrap,
)
from .data.colour_spaces import (
    CMYK,
    CONVERSION_NOTES,
    conversion_problem,
    convert_colours,
    stored_channel_first_colour,
)
from .data.images import is_grey_alpha
from .words import plural

CHECKPOINT_CHOICE = "Checkpoint file..."

INTRO = "Segments the chosen image with a TM-UNet model into a new Labels layer."
SUSPICIOUS_COVER = 0.9  # a result covering more of the image than this is warned about
# what napari's status bar adds to the run it says (_follow_status_bar)
STATUS_BAR_TAIL = "(progress and Cancel in the Segment dock)"
MISFITS_NAMED = 5  # images a misfit warning names; the rest are counted
# How a "found nothing" warning says to switch to the image's modality's shipped model
OTHER_KIND_SWITCH = "choose {model} for such images"
# lines of the summary shown at once (it scrolls in its box): with the settings above it
# they fit a 1366 x 768 dock from the Image box down (tester28)
SUMMARY_LINES = 5
# why an active model that records no modality (e.g. a fine-tune of a `fit` checkpoint made
# before fine-tunes recorded the kind they trained on) runs: on every kind of image
EVERY_KIND = f"the active model, {active_model.NO_KIND}"
RUN_WORDS = "a Segment run"  # what a run still going when napari closes is called
MODEL_SETTINGS = ("threshold", "min_confidence")  # sliders that follow the model's own
# the summary's note on an RGBA image with transparent parts (the model sees its colours)
ALPHA_IGNORED = "alpha channel ignored: transparent parts were segmented too"
# the layers a "looks like a mask" hint was shown for, across docks; weak, so that a closed
# layer (or a closed viewer's layers) leaves it rather than growing it for the process' life
_MASK_HINTED: weakref.WeakSet[Image] = weakref.WeakSet()


class SegmentWidget(Rederive, OutputLayers, FrameVisibility, Container):
    """Segment image layers with a TM-UNet model into Labels layers.

    Sub-widgets are attributes (``image``, ``model``, ``checkpoint``, ``model_reason``,
    ``device``, ``mode``, ``output``, ``threshold``, ``fill_holes``, ``min_size``,
    ``min_confidence``, ``outlines``, ``add_probability``, ``segment_button``, ``cancel_button``,
    ``segment_all_button``, ``progress_text``, ``summary``, ``status``) so that scripts
    and tests can set values and call :meth:`segment`, :meth:`segment_all`,
    :meth:`cancel` and :meth:`rederive`.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        raise_from_menu(viewer)  # the menus' items of this dock show it, never hide it
        place_when_shown(self.native)  # tabbed where the window is too short to stack it
        guard_window(self.native, viewer)  # closing napari asks before corrections are lost
        keep_fitted(viewer)  # the picture fitted again as the dock narrows the canvas
        self.body = scroll_body(self)
        self._setting = False  # programmatic changes are not the user's choices
        self._progress_index = -1
        self._outcome = ""
        self._stop_note = ""  # why the run was stopped, when not by Cancel
        self._status_bar = ("", "")  # (napari's status before the run, the run's own)
        self._device_note = ""  # why the chosen Device is not on this machine
        self._stopped: set[str] = set()  # names of the closed images it speaks of
        self._busy = False
        self._closed = False  # the dock's widgets are gone (napari or the dock closed)
        # The plugin proxy guards napari's privates; this widget uses public API only, and
        # unwrapped layers compare and hash as themselves.
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self.worker = None  # the napari worker of the last run
        self._cancel = threading.Event()  # the last run's: set by Cancel
        self._ended = threading.Event()  # the last run's: set as its worker's last signal goes
        self.last_layer: Labels | None = None  # the Labels layer written last
        self.last_result: SegmentOutcome | None = None  # of the last image segmented
        self.last_rederive_seconds: float | None = None
        # (image, output, probability, options, start) of a running derive
        self._derive: tuple | None = None
        self._derive_again = False  # settings moved while it ran
        self._derive_ended = threading.Event()  # set as its worker's last signal goes
        self._rederive_after_run = False  # settings moved while Segment ran
        self.batch_size = None  # tiles per forward pass in tile mode; None: by device
        self._outputs: dict[tuple, _Output] = {}  # (image id, model) -> its output, newest last
        self._progress: progress | None = None
        self._eta = Eta()
        self._jobs: list[Image] = []
        self._results: list[tuple[Image, SegmentOutcome]] = []
        # (image id, model) -> (its result made in this dock, whether a misfit), newest
        # settings: the summary line of the model the dock shows for the chosen image
        self._outcomes: dict[tuple, tuple[SegmentOutcome, bool]] = {}
        self._failed = False  # the last run's status is a failure of one of its images
        self._failed_ids: set = set()  # ids of the last run's images that failed
        self._adopted: set = set()  # images whose summary line an earlier dock's run made
        self._job_options: list[SegmentOptions] = []  # per image of the run
        self._job_notes: list[str] = []  # per image of the run: how its colours were converted
        self._misfits: dict[Any, str] = {}  # image id -> why its model may not suit it
        self._trained: dict[Any, str] = {}  # image id -> what its model's checkpoint was for
        self._warned: set[tuple[Any, str]] = set()  # (image id, misfit) warned about already
        self._options: SegmentOptions | None = None  # of the image being segmented
        self._choices: dict[str, tuple[str, str]] = {}  # modality -> (model, why), this session
        # image id -> the model picked for it, of colour TIFFs read channel-first: not a
        # pick for the grey images their modality names
        self._layer_picks: dict[Any, str] = {}
        self._modality = ""  # of the chosen image
        self._followed: Image | None = None  # the image the model and reason shown are for
        self._pending_choice = ""  # a model chosen before any image was open
        self._mask_like: dict[Any, bool] = {}  # image id -> whether it looks like a mask
        # image id -> whether it is a colour TIFF read channel-first (None: may be one)
        self._channel_first: dict[Any, bool | None] = {}
        # model id -> the threshold / confidence the user moved for that model; the others
        # follow the model's own
        self._user_values: dict[str, dict[str, float]] = {}
        self._moved_in_run: dict[str, dict[str, float]] = {}  # those moved while Segment ran
        self._defaults: dict = {}  # that image's model's threshold / mode / instances...
        self._prepared: dict[tuple[str, str], threading.Thread] = {}  # (model, device)
        self._shipped = self._shipped_choices()
        # checkpoint path -> the Model box's text for it (a fine-tuned model's short name)
        self._named_files: dict[str, str] = {}
        self._named_choices: dict[str, active_model.ModelChoice] = {}  # and its full name
        # a checkpoint file chosen is read in the background: a picture is flagged at once
        self._file_check = CheckpointCheck(self._shown_model, self._say_bad_file, segments=True)
        self.active_model = active_model.for_viewer(self.viewer)  # followed once shown
        outline_references(self.viewer)  # masks opened over their pictures: outlines
        self._make_widgets()
        fit_width(self.body)
        intro_above(self, self.intro)
        self._connect()
        self.reset_choices()
        self._start_on_active_image()
        self._followed = self.image.value
        self._on_image_changed(self.image.value)
        self._show_model_state()
        self._show_mode_note()
        # the viewer's active model: set by Fine-tune (and Revert), used for its modality
        self.active_model.subscribe(self.use_model)
        missing = self.active_model.take_note()  # a saved model whose file is not found
        if missing:
            show_warning(missing)
        if self.active_model.current is not None:
            self.use_model(self.active_model.current)
        # a reopened dock is a new widget: it carries on with the outputs already made
        # (after the model is chosen: choosing one resets the settings the user set)
        self._show_adopted(*self._adopt_outputs())
        self._prepare_shown_model()

    def _make_widgets(self) -> None:
        self.intro = Label(value=INTRO)
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.checkpoint = FileEdit(
            label="Checkpoint", mode="r", filter="TM-UNet checkpoint (*.pt *.pth *.ckpt)"
        )
        open_in_checkpoint_folder(self.checkpoint)
        self.model_reason = Label(value="")
        self.device = ComboBox(
            label="Device", choices=[("auto", "auto"), ("CUDA", "cuda"), ("CPU", "cpu")]
        )
        self.mode = ComboBox(
            label="Mode",
            choices=[
                ("model's default", AUTO),
                ("resize to model input", "resize"),
                ("sliding-window tiles", "tile"),
            ],
        )
        # how Mode runs a large image, or one in a mode its model was not trained for
        self.mode_note = Label(value="", visible=False)
        self.output = ComboBox(
            label="Output",
            choices=[
                ("model's default", AUTO),
                ("binary mask", "binary"),
                ("instances", "instances"),
            ],
        )
        self.threshold = FloatSlider(label="Threshold", value=0.5, min=0.01, max=0.99, step=0.01)
        self.fill_holes = CheckBox(text="fill holes", value=False)
        self.min_size = SpinBox(label="Min. size (px)", value=0, min=0, max=1_000_000, step=10)
        self.min_confidence = FloatSlider(
            label="Confidence", value=0.0, min=0.0, max=0.99, step=0.01
        )
        self.outlines = CheckBox(text="show outlines only", value=False)
        self.add_probability = CheckBox(text="also add probability map", value=False)
        self.segment_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.segment_all_button = PushButton(text="Segment all image layers")
        self.progress_text = Label(value="")
        self.summary = Label(value="")
        self.status = Label(value="")
        self.provisional_label = Label(value="")
        self.disclaimer = Label(value=DISCLAIMER)
        texts = (self.intro, self.model_reason, self.progress_text, self.summary, self.status)
        for widget in (*texts, self.mode_note, self.provisional_label, self.disclaimer):
            widget.label = ""
            wrap(widget)
        for widget in (self.image, self.model, self.checkpoint, self.device, self.mode):
            narrow(widget)
        narrow(self.output)
        buttons = Container(
            widgets=[self.segment_button, self.cancel_button], layout="horizontal", labels=False
        )
        buttons.margins = (0, 0, 0, 0)
        self.body.extend(
            [
                self.image,
                self.model,
                self.checkpoint,
                self.model_reason,
                self.provisional_label,
                self.threshold,
                self.output,
                self.mode,
                self.mode_note,
                self.fill_holes,
                self.min_size,
                self.min_confidence,
                self.outlines,
                self.add_probability,
                self.device,
                buttons,
                self.segment_all_button,
                self.progress_text,
                self.summary,
                self.status,
                self.disclaimer,
            ]
        )
        # the texts span the dock, not the value column (a run's Image name, the hidden
        # objects' clause of a lesion-free scan, the disclaimer were cut, tester36 #7)
        for widget in (*texts[1:], self.mode_note, self.provisional_label, self.disclaimer):
            span_row(self.body, widget)
        self.progress_text.visible = False  # shown with a run's progress
        scrolled_text(self.summary, SUMMARY_LINES)
        set_tooltips(self, SEGMENT_TIPS)

    def reset_choices(self, *_args) -> None:
        """Refresh the choosers (the widgets live in the scrolled body); the Image chooser
        stays on its layer when that is renamed."""
        with keeping_layers([self.image]):
            self.body.reset_choices()

    def _connect(self) -> None:
        from qtpy.QtCore import QTimer

        self.model.changed.connect(self._on_model_changed)
        self.model.changed.connect(self._show_model_tips)
        self.model.changed.connect(self._prepare_shown_model)
        # the user's pick, also of the item shown (no change): a shipped model chosen
        self.model.native.activated.connect(self._on_model_picked)
        self.device.changed.connect(self._say_device_problem)
        self.device.changed.connect(self._prepare_shown_model)
        self.checkpoint.changed.connect(self._on_model_changed)
        self.image.changed.connect(self._on_image_chosen)
        for widget in (self.image, self.model, self.checkpoint, self.mode):
            widget.changed.connect(self._show_mode_note)
        self.segment_button.changed.connect(self.segment)
        self.cancel_button.changed.connect(self.cancel)
        self.segment_all_button.changed.connect(self.segment_all)
        self.outlines.changed.connect(self._show_outlines)
        # label settings re-derive the last result, once the user pauses (debounced)
        # parented: it goes with the dock, and cannot fire into a closed one
        self._rederive_timer = QTimer(self.native)
        self._rederive_timer.setSingleShot(True)
        self._rederive_timer.setInterval(80)
        self._rederive_timer.timeout.connect(self.rederive)
        # the image the chooser moves to when the one it showed is closed: followed a
        # moment later (closing the viewer removes every layer, and those passed on the
        # way must not warn or warm a model up)
        self._follow_timer = QTimer(self.native)
        self._follow_timer.setSingleShot(True)
        self._follow_timer.setInterval(0)
        self._follow_timer.timeout.connect(self._follow_chosen)
        for name in MODEL_SETTINGS:
            getattr(self, name).changed.connect(partial(self._on_model_setting, name))
        for widget in (self.fill_holes, self.min_size, self.output):
            widget.changed.connect(self._on_label_setting)
        layers = self.viewer.layers
        layers.events.inserted.connect(self.reset_choices)
        layers.events.removed.connect(self.reset_choices)
        layers.events.removed.connect(self._on_layers_removed)
        layers.selection.events.active.connect(self._on_active_layer)
        self._watch_frames()
        on_dock_closed(self.native, self._on_closed)
        # after _on_closed has cancelled the run: the window waits for it to end
        self.native.destroyed.connect(lambda *_: self._on_window_closed())

    def _on_closed(self) -> None:
        """The dock is closed (napari's X, or its viewer closed): stop a run as Cancel does,
        quietly, and leave the widgets alone from now on (closing the viewer deletes them)."""
        self._closed = True
        self._file_check.close()
        if self.running and self.worker is not None:
            self._cancel.set()
            self.worker.quit()

    def _on_window_closed(self) -> None:
        """napari's window is closing (the dock's widget is destroyed): wait for the run
        :meth:`_on_closed` cancelled, and a re-derive under way, to end (their workers' last
        signals), so that no Segment thread outlives the window (at the interpreter's exit
        its worker's signals would be deleted under it: a traceback, or an abort)."""
        if self.running and self.worker is not None:
            wait_for_run(self._cancel, self._ended, RUN_WORDS)
        self.wait_for_derive()

    # --- choices and small state -------------------------------------------------------

    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _shipped_choices(self) -> list[tuple[str, str]]:
        """(text, name) of each shipped model, read once (a warning if the registry is not
        readable: a checkpoint file still runs)."""
        try:
            entries = registry.available_models()
        except RuntimeError as err:
            show_warning(str(err))
            entries = []
        return [(f"{e.name} (provisional)" if e.provisional else e.name, e.name) for e in entries]

    def _model_choices(self, _widget=None) -> list[tuple[str, str]]:
        """The Model box's items: the shipped models, the fine-tuned models made active in
        this viewer or saved as active by an earlier session (by name), then "Checkpoint
        file..."."""
        named = [(label, path) for path, label in self._named_files.items()]
        return [*self._shipped, *named, (CHECKPOINT_CHOICE, CHECKPOINT_CHOICE)]

    @property
    def running(self) -> bool:
        """Whether a Segment run is in progress (from the click until its layers are added)."""
        return self._busy

    def _on_active_layer(self, event=None) -> None:
        """Follow the layer the user selects (:meth:`_follow_selected`): a frame, shown alone,
        or a layer of one (its output, probability map or mask, also a mask opened as an
        image), whose frame is chosen. A mask opened as an image also gets a hint that says
        how to use it as a mask."""
        layer = self.viewer.layers.selection.active
        if layer is None:
            return
        if isinstance(layer, Image) and not is_probability_map(layer) and self._is_mask(layer):
            _hint_mask(layer)
        self._follow_selected(layer)

    def _is_mask(self, layer: Image) -> bool:
        """Whether the image layer ``layer`` is a mask (:func:`is_mask_image`); judged once
        per layer."""
        if layer.unique_id not in self._mask_like:
            self._mask_like[layer.unique_id] = is_mask_image(layer)
        return self._mask_like[layer.unique_id]

    def _start_on_active_image(self) -> None:
        """Start on the image layer the user made active before the dock opened (the
        chooser alone would show the first image layer).

        Not on a hidden image that is the top layer: napari makes each layer it adds the
        active one, and a dataset folder's last image is added hidden; the user did not
        choose it.
        """
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image) or is_probability_map(layer):
            return
        if not layer.visible and layer is self.viewer.layers[-1]:
            return
        if self._is_mask(layer):  # selected before the dock opened: no selection event comes
            _hint_mask(layer)
            return
        self.image.value = layer

    def _on_image_chosen(self, layer) -> None:
        """Follow the image chosen: its model, reason and warnings, then warm its model up.
        When the chooser moved because the image it showed was closed, a moment later
        (:meth:`_follow_chosen`)."""
        if self._followed is not None and self._followed not in self.viewer.layers:
            self._follow_timer.start()
            return
        self._follow(layer)

    def _follow_chosen(self) -> None:
        """Follow the image the chooser holds once the layers were closed, if that image is
        still open (after the viewer closed: none; the timer goes with the dock)."""
        layer = self.image.value
        if layer is self._followed:
            return
        if layer is not None and layer not in self.viewer.layers:
            return
        self._follow(layer)

    def _follow(self, layer) -> None:
        self._followed = layer
        self._on_image_changed(layer)
        self._prepare_shown_model()  # after the model follows the image

    def _on_image_changed(self, layer) -> None:
        if layer is None:
            self._show_summary_of(layer)
            return
        self._drop_stop_note(layer)
        self._modality = layer_modality(layer)
        if self._pending_choice and self._modality not in self._choices:
            why = f"your choice for {self._modality} images"
            self._choices[self._modality] = (self._pending_choice, why)
        self._pending_choice = ""
        model, why, fits = self._model_for_layer(layer, self._modality)
        self._show_model(model, why)
        if self._is_mask(layer):  # no modality warnings: how to use it as a mask instead
            self.model_reason.value = _mask_hint(layer)
            return
        if not fits:  # e.g. a fluorescence image and the breast-ultrasound model
            self._warn_once([layer], f"{model} is {why}")
        if layer_colour_conversion(layer) == CMYK:  # the picture shown is not what the model gets
            self._warn_once([layer], CMYK_AS_STORED)
        turned = orientation_not_applied(layer)
        if turned:  # other viewers, and masks drawn there, show it turned
            self._warn_once([layer], EXIF_AS_STORED.format(turned=turned))
        self._show_outputs(layer)

    def _on_layers_removed(self, _event=None) -> None:
        """Stop a run whose images were closed; drop the summary lines of images that were
        closed (after the chooser follows)."""
        if self._closed:
            return
        self._stop_if_images_closed()
        self._show_summary_of(self.image.value)

    def _stop_if_images_closed(self) -> None:
        """Cancel the run (as Cancel does) when every image it has yet to segment was
        closed: nobody would see its result, and the dock would stay busy for nothing. The
        status says so in one line. A Segment all run with open images left goes on (the
        closed image's result is dropped)."""
        if not self.running or self.worker is None or self._cancel.is_set():
            return
        done = [image for image, _ in self._results]
        left = [image for image in self._jobs if not any(image is d for d in done)]
        if not left or any(image in self.viewer.layers for image in left):
            return
        names = ", ".join(repr(image.name) for image in left[:MISFITS_NAMED])
        closed = "was closed, so its" if len(left) == 1 else "were closed, so their"
        self._stop_note = f"{names} {closed} segmentation was stopped"
        self._stopped = {image.name for image in left}
        self.cancel()
        self.status.value = self._stop_note

    def _drop_stop_note(self, layer: Image) -> None:
        """Clear the status saying that ``layer``'s name was closed and its run stopped,
        once an image of that name is chosen again (reopened): it no longer holds."""
        stale = self.status.value == self._stop_note and layer.name in self._stopped
        if stale and not self.running:
            self.status.value = ""
            self._stopped = set()

    def _show_summary_of(self, layer) -> None:
        """Keep the summary only while it speaks of ``layer`` (the chosen image): it lists
        the last run's images still open (:meth:`_summary_lines`), and is cleared, with the
        status, when ``layer`` is not one of them (another image or model chosen, or the
        layers closed). A status saying that another image failed is cleared too."""
        if self.running:
            return
        self._results = [(i, o) for i, o in self._results if i in self.viewer.layers]
        lines = self._summary_lines()
        if any(image is layer for image, _, _ in lines):
            self.summary.value = self._summary_text(lines)
            return
        failed_elsewhere = self._failed and not any(image is layer for image in self._jobs)
        if self.summary.value or (failed_elsewhere and self.status.value == self._outcome):
            self.summary.value = ""
            self.status.value = ""

    def _summary_lines(self) -> list[tuple[Image, SegmentOutcome, bool]]:
        """(image, outcome, misfit) of each line of the summary: the last run's results,
        where the chosen image's is its result of the model the dock shows for it (that of
        a model compared on it before, when the Model box is switched back to it), and none
        when that model has no result for it (or its Labels layer was closed). An earlier
        dock's results are as they were."""
        chosen, lines = self.image.value, []
        for image, outcome in self._results:
            misfit = image.unique_id in self._misfits
            if image is chosen and image.unique_id not in self._adopted:
                key = (image.unique_id, _model_id(self._dock_model(image)))
                output = self._outputs.get(key)
                if key not in self._outcomes or output is None:
                    continue
                if output.labels not in self.viewer.layers:  # closed: no line for it
                    continue
                outcome, misfit = self._outcomes[key]
            lines.append((image, outcome, misfit))
        return lines

    def _summary_text(self, lines: list | None = None) -> str:
        """The summary: a line per result (``lines``, default :meth:`_summary_lines`)."""
        lines = self._summary_lines() if lines is None else lines
        return "\n".join(self._describe(*line) for line in lines)

    def _warn_once(self, images: list[Image], misfit: str) -> None:
        """Warn that ``misfit`` (why a model may not suit them) holds for ``images``, naming
        them, except those already warned about with the same words (choosing an image warns,
        and its Segment click then does not)."""
        names = [
            repr(image.name) for image in images if (image.unique_id, misfit) not in self._warned
        ]
        self._warned.update((image.unique_id, misfit) for image in images)
        if not names:
            return
        listed = ", ".join(names[:MISFITS_NAMED])
        if len(names) > MISFITS_NAMED:
            listed += f" and {len(names) - MISFITS_NAMED} more"
        show_warning(f"{listed}: {misfit}.")

    def _show_outputs(self, image: Image) -> None:
        """Show the outputs of ``image`` when it is shown and chosen: after Segment all on a
        folder its outputs were hidden with it, and the label settings, which act on them,
        would change nothing the user sees."""
        if not image.visible:
            return
        for output in self._outputs_of(image):
            if output.labels in self.viewer.layers:
                set_visible(output.labels, True)

    def _model_for(self, modality: str, thumbnail: np.ndarray) -> tuple[str, str, bool]:
        """(model, why, fits) for an image of ``modality``, seen in ``thumbnail``: the
        user's pick for that kind in this dock, else :func:`active_model.model_for_image`
        (the active model, else the shipped one: as napari-tmunet-predict picks); ``fits``
        is False for a shipped model the image does not look made for, also one the user
        chose (a checkpoint file of the user's always fits)."""
        if modality in self._choices:  # this session's choice, maybe a checkpoint file
            model, why = self._choices[modality]
            entry = registry.find_model(model)
            if entry is None:
                return model, why, True
            choice = registry.users_choice(entry, thumbnail, modality, why)
            return model, choice.why, choice.fits
        current = self.active_model.current
        model, why, fits = active_model.model_for_image(modality, thumbnail, current)
        if not model:  # no model installed
            return CHECKPOINT_CHOICE, f"{why}: choose a checkpoint file", True
        return model, why, fits

    def _model_for_layer(self, layer: Image, modality: str) -> tuple[str, str, bool]:
        """:meth:`_model_for` the image layer ``layer`` of ``modality``; for a colour TIFF
        that napari's own reader opened channel-first, as 3 or 4 grey frames, why says so
        and how to open it in colour (not that it is grey), and the model does not fit;
        for 3 frames of one size that may be one (:meth:`_is_channel_first`), why adds
        that hint, as it adds :data:`SPLIT_CHANNEL` for one channel of a colour image split
        into layers (:func:`_split_channel`). A colour TIFF read channel-first runs the model
        picked for it, if one was (:meth:`_picked_for_layer`)."""
        model, why, fits = self._model_for(modality, layer_thumbnail(layer))
        channel_first = self._is_channel_first(layer)
        if channel_first:
            model = self._layer_picks.get(layer.unique_id, model)
            frames = np.shape(full_data(layer))[0]
            return model, CHANNEL_FIRST_COLOUR.format(name=repr(layer.name), frames=frames), False
        if channel_first is None:
            return model, f"{why}; {CHANNEL_FIRST_MAYBE}", fits
        if _split_channel(layer, self.viewer.layers):
            return model, f"{why}; {SPLIT_CHANNEL.format(name=repr(layer.name))}", fits
        return model, why, fits

    def _is_channel_first(self, layer: Image) -> bool | None:
        """Whether the grey layer ``layer`` of 3 or 4 frames is a colour TIFF read
        channel-first (its first page's tags say RGB of as many samples, or its ImageJ
        description as many channels: :func:`stored_channel_first_colour`, read once per
        layer, never its pixels); None when it was read from a file that cannot be checked
        (not a TIFF, an unreadable one) and it has exactly 3 frames; False otherwise (a
        folder napari stacked, a layer made in memory included)."""
        if layer.unique_id not in self._channel_first:
            shape = np.shape(full_data(layer))
            path = layer_source_path(layer)
            known: bool | None = False
            if not layer.rgb and len(shape) == 3 and shape[0] in (3, 4):
                if path and not os.path.isdir(path):  # a folder: _folder_stack_hint
                    known = stored_channel_first_colour(path, shape[0])
                if known is None and shape[0] != 3:
                    known = False
            self._channel_first[layer.unique_id] = known
        return self._channel_first[layer.unique_id]

    def _show_model(self, model: str, why: str) -> None:
        """Show ``model`` (name or path) as the one to run, and why (not a user choice),
        with the settings a Segment click on the chosen image applies (:meth:`_show_settings`):
        the values the user moved for another model are not carried over to it."""
        self._setting = True
        try:
            if model in self._named_files:  # by its name; the Checkpoint field holds it too
                self.checkpoint.value = model
                self.model.value = model
            elif registry.find_model(model) is not None:
                self.model.value = model
            elif model != CHECKPOINT_CHOICE:
                self.checkpoint.value = model
                self.model.value = CHECKPOINT_CHOICE
            else:
                self.model.value = CHECKPOINT_CHOICE
        finally:
            self._setting = False
        self.model_reason.value = f"Runs {self._model_name(model)}: {why}."
        self._check_shown_file()
        self._show_model_state()
        self._show_settings()
        self._show_summary_of(self.image.value)  # that model's result, if it has one

    def _on_model_changed(self, _value=None) -> None:
        if self._setting:
            return
        model = self._shown_model()
        if model and self._modality:
            why = "" if self._picked_for_layer(model) else self._keep_choice(model)
            if why:  # a pick for the images of that modality
                self._choices[self._modality] = (model, why)
            if self.image.value is not None:  # a shipped model may still not suit the image
                why = self._model_for_layer(self.image.value, self._modality)[1]
            self.model_reason.value = f"Runs {self._model_name(model)}: {why}."
        elif not model:  # "Checkpoint file..." without a file: nothing to run yet
            self.model_reason.value = NO_CHECKPOINT_REASON
        else:  # no image yet: the choice holds for the kind of the next image opened
            self._pending_choice = model
        self._check_shown_file()
        if self._failed and self.status.value == self._outcome and not self.running:
            self.status.value = ""  # the last run's failure is not about the model chosen now
        self._show_model_state()
        self._show_settings()  # a model brings its own threshold and confidence, or the user's
        self._show_summary_of(self.image.value)  # and its result, if it has one

    def _check_shown_file(self) -> None:
        """Read the checkpoint file the dock shows in the background; a problem replaces
        the reason line (:meth:`_say_bad_file`)."""
        model = self._shown_model()
        if model and registry.find_model(model) is None:
            self._file_check.check(model)

    def _say_bad_file(self, path: str, problem: str) -> None:
        """Say on the reason line that the checkpoint file ``path`` cannot run, and why
        (the words Segment would fail with: what the file is and what to do)."""
        self.model_reason.value = f"Cannot run {os.path.basename(path)}: {problem}"

    def _model_name(self, model: str) -> str:
        """``model``'s full name, as the reason line says it: a fine-tuned model by its
        label (e.g. "fine-tuned on clinic10 <date>"), a shipped one by its name, a file by
        its name."""
        for path, choice in self._named_choices.items():
            if _model_id(path) == _model_id(model):
                return choice.label
        # only a file: model_label would name a run's checkpoint that is gone by its run
        # (its finetune.json stays), and read ./finetune.json for a shipped model's name
        return active_model.model_label(model) if os.path.isfile(model) else os.path.basename(model)

    def _picked_for_layer(self, model: str) -> bool:
        """Keep ``model`` as the pick for the chosen image alone when it is a colour TIFF
        that napari's own reader opened channel-first (its grey frames are no grey image:
        the pick is not one for grey images); whether it was."""
        image = self.image.value
        if image is None or not self._is_channel_first(image):
            return False
        self._layer_picks[image.unique_id] = model
        return True

    def _keep_choice(self, model: str) -> str:
        """Remember the shipped ``model`` the user picked as the model for images of the
        chosen image's modality, unless it was trained on another modality (a comparison:
        kept for this session only); why it runs, in words."""
        entry = registry.find_model(model)
        if entry is not None and entry.modality != self._modality:
            return f"your pick for {self._modality} images, this session only"
        if entry is not None:
            with file_warnings_shown():  # a settings file that refuses the save: said
                registry.remember_model(self._modality, model)
                self._replace_missing_active(entry.name)
        return f"your choice for {self._modality} images"

    def _on_model_picked(self, _index=None) -> None:
        """The user picked an item of the Model box, maybe the one shown: a shipped model
        for the chosen image's modality replaces an active model whose file is missing
        (:meth:`_replace_missing_active`; a changed pick does so in :meth:`_keep_choice`)."""
        image, entry = self.image.value, registry.find_model(str(self.model.value))
        if image is None or entry is None or self._is_channel_first(image):
            return  # no image's kind to choose for (a channel-first TIFF: a pick for it)
        if entry.modality == self._modality:
            with file_warnings_shown():  # a settings file that refuses the save: said
                self._replace_missing_active(entry.name)

    def _replace_missing_active(self, model: str) -> None:
        """Make the shipped ``model``, chosen for the chosen image's modality, the active
        model in place of one whose file was not found at the start (when that was for such
        images, or for none said), as Revert would replace it: the missing one becomes the
        previous model, kept (Revert offers it once its file is there), and the next start
        runs the choice instead of warning again. An active model that is there stays: the
        choice is one for those images."""
        missing = self.active_model.missing_current
        if missing is None or missing.modality not in ("", self._modality):
            return
        self.active_model.set(model, model, self._modality)
        show_info(
            f"{model} is now the active model for {self._modality} images; "
            f"{missing.label} (its file is not found) is kept as the previous model."
        )

    def _show_settings(self) -> None:
        """Put on the dock what a Segment click on the chosen image applies: the label
        settings its output of the shown model was made with, when it has one; else the
        shown model's threshold and confidence: those the user moved for that model, the
        others its own, read from its checkpoint's header (:func:`header_defaults`: a few
        ms, no torch), so they read what a Segment click applies before the first run."""
        if self._show_settings_of_shown_model():
            return
        model = self._shown_model()
        self._show_model_values((header_defaults(model) if model else None) or {})

    def _shown_model(self) -> str:
        """The model the dock shows (registry name or checkpoint path); "" when the
        Checkpoint field holds no file."""
        model = str(self.model.value)
        if model == CHECKPOINT_CHOICE:
            path = self.checkpoint.value
            model = str(path) if path and os.path.isfile(path) else ""
        return model

    def _show_settings_of_shown_model(self) -> bool:
        """Put the label settings the chosen image's output of the shown model was made
        with on the dock (if it has one), so that the sliders read what a re-derive uses,
        not another model's values; whether it has one."""
        output = self._shown_output()
        if output is not None:
            self._show_output_settings(output)
        return output is not None

    def _shown_output(self) -> _Output | None:
        """The chosen image's output of the shown model, if it has one (with the label
        options it was made with)."""
        image = self.image.value
        if image is None:
            return None
        output = self._outputs.get((image.unique_id, _model_id(self._dock_model(image))))
        if output is None or "label_options" not in output.labels.metadata:
            return None
        return output

    def use_model(self, choice: active_model.ModelChoice) -> None:
        """Use the active model (set by Fine-tune or Revert) for images of its modality; one
        that records none for images of every kind, and says so (the rule is
        :func:`active_model.model_for_image`, as napari-tmunet-predict's). It replaces the
        user's picks in this dock for those kinds; the chosen image shows its model."""
        kinds = (choice.modality,) if choice.modality else registry.MODALITIES
        if registry.find_model(choice.model) is None and choice.model != CHECKPOINT_CHOICE:
            self._offer_named_file(choice)
        for kind in kinds:
            self._choices.pop(kind, None)
        if self.image.value is not None and self._modality:
            self._show_model(*self._model_for_layer(self.image.value, self._modality)[:2])

    def _offer_named_file(self, choice: active_model.ModelChoice) -> None:
        """Add the checkpoint file of ``choice`` to the Model box by its short name
        (:meth:`_box_name`), so the box names the model that runs; its full name and
        lineage are its tooltip (:meth:`_show_model_tips`)."""
        path = choice.model
        if not choice.lineage:  # e.g. set by a script: its run's finetune.json may say
            choice = replace(choice, lineage=active_model.run_lineage(path))
        self._named_choices[path] = choice
        self._named_files[path] = self._box_name(choice)
        self._setting = True
        try:
            self.model.reset_choices()
        finally:
            self._setting = False
        self._show_model_tips()

    def _box_name(self, choice: active_model.ModelChoice) -> str:
        """The Model box's text for the checkpoint file of ``choice``, unlike any other
        item's (the box tells its items by their text): its short name
        (:func:`active_model.short_name`), to the second when another file has that (two
        runs of one minute), then with a number."""
        here = _model_id(choice.model)
        taken = {text for file, text in self._named_files.items() if _model_id(file) != here}
        taken.update(text for text, _ in self._shipped)
        taken.add(CHECKPOINT_CHOICE)
        exact = active_model.short_name(choice, seconds=True)
        for name in (active_model.short_name(choice), exact):
            if name not in taken:
                return name
        number = 2
        while f"{exact} ({number})" in taken:
            number += 1
        return f"{exact} ({number})"

    def _show_model_tips(self, _value=None) -> None:
        """Give each fine-tuned model in the Model box its full name, lineage and file as
        its tooltip (the box shows short names), and the box the shown one's."""
        from qtpy.QtCore import Qt

        combo = self.model.native
        tips = {
            text: active_model.provenance(self._named_choices[path])
            for path, text in self._named_files.items()
        }
        for index in range(combo.count()):
            tip = tips.get(combo.itemText(index))
            combo.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        shown = tips.get(combo.currentText())
        self.model.tooltip = SEGMENT_TIPS["model"] + (f"\n\n{shown}" if shown else "")

    def model_choice(self, model: str, label: str) -> active_model.ModelChoice:
        """``model`` (a registry name or checkpoint file) and its full name ``label`` as a
        :class:`~napari_tmunet.active_model.ModelChoice`, with its lineage when known."""
        for path, choice in self._named_choices.items():
            if _model_id(path) == _model_id(model):
                return choice
        if registry.find_model(model) is not None or not os.path.isfile(model):
            return active_model.ModelChoice(model, label)
        return active_model.file_choice(model, label)

    def model_text(self, choice: active_model.ModelChoice) -> str:
        """How the dock names ``choice``'s model in short, in the Model box and in the name
        of a result layer kept beside another model's: the box's text for it, the shipped
        model's name, or a checkpoint file's :meth:`_box_name`."""
        for path, text in self._named_files.items():
            if _model_id(path) == _model_id(choice.model):
                return text
        if registry.find_model(choice.model) is not None:
            return choice.label
        return self._box_name(choice)

    def _prepare_shown_model(self, _value=None) -> None:
        """Warm the shown model up in the background, once per model and device, so that
        the first click does not wait for imports, loading and kernels: a shipped model,
        or a fine-tuned one the Model box lists by name (the active model, whose first
        Segment after a restart took 18-21 s without, tester37 #5).

        Only with an image chosen: before that the model shown is a default that the
        first image may replace (its warm-up would hold up the right one's).
        """
        model, device = str(self.model.value), str(self.device.value)
        listed = registry.find_model(model) is not None or model in self._named_files
        if self.image.value is None or not listed:
            return  # another checkpoint file is loaded when used (checked first)
        if self._device_note:
            return  # the device is not there: the run says so
        if (model, device) in self._prepared:
            return
        self._prepared[(model, device)] = prepare_early(model, device)

    def _say_device_problem(self, _value=None) -> None:
        """Say at once that the chosen Device is not on this machine
        (:func:`note_device_problem`)."""
        self._device_note = note_device_problem(
            self, self._device_note, lambda note: show_warning(f"TM-UNet: {note}")
        )

    def _show_mode_note(self, _value=None) -> None:
        """Say under Mode how Segment runs the chosen image when it is large, or in a mode
        other than the one the shown model was trained for: resized to its input or in how
        many tiles (:func:`mode_note`: the checkpoint's header, read once per file version,
        no torch; no pixel read)."""
        layer, model = self.image.value, self._shown_model()
        note = ""
        if layer is not None and model:
            note = mode_note(model, str(self.mode.value), full_data(layer), layer.rgb)
        self.mode_note.value = note
        self.mode_note.visible = bool(note)

    def _show_model_state(self):
        is_file = self.model.value == CHECKPOINT_CHOICE
        self.checkpoint.visible = is_file
        entry = None if is_file else registry.find_model(str(self.model.value))
        provisional = entry is not None and entry.provisional
        self.provisional_label.value = (
            "provisional model: a small interim model, expect rough masks" if provisional else ""
        )
        self.provisional_label.visible = provisional

    # --- running -----------------------------------------------------------------------

    def segment(self, _=None):
        """Segment the chosen image layer."""
        if self.image.value is None:
            show_info("Open an image first (File > Open, or File > Open Sample > TM-UNet).")
            return
        self._start([self.image.value])

    def segment_all(self, _=None):
        """Segment every image layer (except probability maps made here and layers that look
        like masks, which are named), each with the model a Segment click on it would run,
        and the same settings."""
        images = [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not is_probability_map(layer)
        ]
        masks = [layer for layer in images if self._is_mask(layer)]
        layers = [layer for layer in images if layer not in masks]
        if masks:
            names = ", ".join(repr(layer.name) for layer in masks[:MISFITS_NAMED])
            more = f" and {len(masks) - MISFITS_NAMED} more" if len(masks) > MISFITS_NAMED else ""
            show_info(f"Not segmented, as they look like masks: {names}{more}.")
        if not layers:
            show_info("There are no image layers to segment.")
            return
        self._start(layers)

    def cancel(self, _=None):
        """Stop the running job: the forward pass under way stops part way (``cancel``)."""
        if self.running and self.worker is not None:
            self.status.value = "cancelling..."
            self._cancel.set()
            self.worker.quit()

    def _read_options(self, layers: list[Image]) -> list[SegmentOptions] | None:
        """The dock's settings as a snapshot, one per image with the model to run on it;
        None (and a message) when one of those models cannot be run."""
        settings = {
            "device": str(self.device.value),
            "mode": str(self.mode.value),
            "batch_size": self.batch_size,
        }
        named: dict[str, tuple[str, str, bool] | None] = {}  # each model checked once
        options = []
        for layer in layers:
            model = self._model_to_run(layer)
            if model not in named:
                named[model] = self._named_model(model)
            if named[model] is None:
                return None
            own = self._label_settings(layer)  # its model's threshold and confidence
            options.append(SegmentOptions(*named[model], **settings, **own))
        return options

    def _model_to_run(self, layer: Image) -> str:
        """The model a Segment click on ``layer`` runs: the one shown for the chosen image,
        else the one for the image's modality (its :meth:`_model_for_layer`: the model
        picked for a colour TIFF read channel-first)."""
        if layer is self.image.value:
            return str(self.model.value)
        return self._model_for_layer(layer, layer_modality(layer))[0]

    def _dock_model(self, image: Image) -> str:
        """The model (registry name or checkpoint path) a Segment click on ``image`` runs;
        "" when the Checkpoint field holds no file."""
        model = self._model_to_run(image)
        if model == CHECKPOINT_CHOICE:
            path = self.checkpoint.value
            model = str(path) if path and os.path.isfile(path) else ""
        return model

    def _named_model(self, model: str) -> tuple[str, str, bool] | None:
        """(model, label, provisional) of a registry name, a checkpoint path, or
        :data:`CHECKPOINT_CHOICE` (the Checkpoint field's file); None (and a message) when
        it cannot be run."""
        if model == CHECKPOINT_CHOICE:
            return self._checkpoint_file(self.checkpoint.value)
        entry = registry.find_model(model)
        if entry is not None:
            return entry.name, entry.name, entry.provisional
        if os.path.isfile(model):  # a fine-tuned model, or a file chosen for that modality
            return self._checkpoint_file(model)
        show_error(f"The model {model!r} is not installed.")
        return None

    def _checkpoint_file(self, path) -> tuple[str, str, bool] | None:
        """(path, label, False) of a checkpoint file; None (and a message) when it is missing."""
        if not path or not os.path.isfile(path):
            show_error(
                "Choose a checkpoint file made by napari-tmunet-train or the Fine-tune "
                f"widget (got {str(path) or 'nothing'!r})."
            )
            return None
        problem = self._file_check.problem(path)  # found when it was chosen, still so
        if problem:
            show_error(f"TM-UNet: {problem}")
            return None
        model, label = str(path), active_model.model_label(path)  # a run's name, not "best.pt"
        chosen = self.active_model.current  # e.g. "fine-tuned on <date>", not "best.pt"
        if chosen is not None and os.path.abspath(chosen.model) == os.path.abspath(model):
            label = chosen.label
        return model, label, False

    def _start(self, layers: list[Image]):
        if self.running:
            show_info("A segmentation is already running; cancel it or wait.")
            return
        self._closed = False  # a dock put back (the same widget) reports its runs again
        then = partial(self._start_again, list(layers))  # the click, once a file is read
        if self._file_check.wait_for(self, self._files_to_check(layers), then):
            return
        options = self._read_options(layers)
        if options is None:
            return
        inputs = _model_inputs(layers)
        if inputs is None:
            return
        if any(layer is self.image.value for layer in layers):
            # the chosen frame shown alone (e.g. a hidden picture of a folder, or one under
            # other pictures): each output is shown or hidden with its frame (_add_output)
            self._show_frame(self.image.value)
        self._job_options, self._options = options, options[0]
        self._job_notes = [note for _, note in inputs]
        self._misfits = self._misfit_reasons(layers, options)
        self._jobs = list(layers)
        self._results = []
        self._adopted = set()
        self._failed = False
        self._failed_ids = set()
        self._moved_in_run = {}
        self._progress_index = -1
        self._outcome = ""
        self._stop_note = ""
        self._eta = Eta()
        jobs = [
            (data, layer.rgb, opts)
            for layer, (data, _), opts in zip(layers, inputs, options, strict=True)
        ]
        self._set_running(True)
        self._progress = progress(total=0, desc=f"TM-UNet: segmenting {layers[0].name}")
        if runs_inline():
            self.worker = None
            try:
                for message in segment_jobs(jobs):
                    self._on_yielded(message)
            except Exception as err:  # noqa: BLE001 - shown to the user, as in a worker
                self._on_error(err)
            self._on_finished()
            return
        self._cancel = threading.Event()  # set by Cancel: stops the forward pass under way
        self._ended = threading.Event()
        ended = track_run(self._cancel, self._ended, RUN_WORDS)
        self.worker = start_worker(
            until_cancelled,
            segment_jobs(jobs),
            self._cancel,
            connect={
                "yielded": self._on_yielded,
                "errored": self._on_error,
                "aborted": self._on_aborted,
                "finished": self._on_finished,
            },
            direct={"finished": ended},  # closing napari waits for it
        )

    def _files_to_check(self, layers: list[Image]) -> set[str]:
        """The checkpoint files (not shipped models) that a Segment click on ``layers``
        runs."""
        files = {self._dock_model(layer) for layer in layers}
        return {f for f in files if registry.find_model(f) is None and os.path.isfile(f)}

    def _start_again(self, layers: list[Image], path: str) -> None:
        """Carry out the click on ``layers`` that waited for ``path`` to be read
        (:meth:`CheckpointCheck.wait_for`): refused with the check's words, or run;
        nothing starts when the images still open do not run that file now (the user
        changed their mind)."""
        layers = [layer for layer in layers if layer in self.viewer.layers]
        if any(self._dock_model(layer) == path for layer in layers):
            self._start(layers)

    def _misfit_reasons(self, layers: list[Image], options: list[SegmentOptions]) -> dict:
        """Image id -> "<model> is <why>" for each image whose model was picked for it but
        does not look made for it (e.g. a fluorescence image and the ultrasound model), as
        the chosen image's warning says; a checkpoint file of the user's fits."""
        misfits = {}
        for layer, opts in zip(layers, options, strict=True):
            model, why, fits = self._model_for_layer(layer, layer_modality(layer))
            if not fits and model == opts.model:
                misfits[layer.unique_id] = f"{opts.model_label} is {why}"
        return misfits

    def _set_running(self, running: bool):
        self._busy = running
        self.segment_button.enabled = not running
        self.segment_all_button.enabled = not running
        self.cancel_button.enabled = running
        if running:
            models = dict.fromkeys(options.model_label for options in self._job_options)
            self.status.value = f"loading {', '.join(models)}..."
            self._show_progress("")
            self.summary.value = ""
            self._follow_status_bar(True)

    def _follow_status_bar(self, running: bool) -> None:
        """napari's status bar says a run while it runs ("Segmenting 'name'..."), not the
        launcher's "Click Segment..." (tester41 h02), and what it said before once the run
        ends, unless something else was said there meanwhile (:meth:`_status_bar_free`)."""
        if running:
            names = [layer.name for layer in self._jobs]
            what = repr(names[0]) if len(names) == 1 else f"{len(names)} images"
            said = f"Segmenting {what}... {STATUS_BAR_TAIL}"
            self._status_bar = (self.viewer.status, said)
            self.viewer.status = said
            return
        before, said = self._status_bar
        self._status_bar = ("", "")
        if said and self._status_bar_free(said):
            self.viewer.status = before

    def _say_in_status_bar(self, text: str) -> None:
        """Put the run's step in napari's status bar (where it is free): napari puts a
        layer's details there as the run adds its labels layers."""
        before, said = self._status_bar
        if said and self._status_bar_free(said):
            self._status_bar = (before, f"{text}... {STATUS_BAR_TAIL}")
            self.viewer.status = self._status_bar[1]

    def _status_bar_free(self, said: str) -> bool:
        """Whether napari's status bar says the run's ``said``, or napari's details of the
        layer under the cursor (a dict, said again at the next mouse move), not another
        text someone put there during the run."""
        status = self.viewer.status
        return status == said or not isinstance(status, str)

    def _show_progress(self, text: str) -> None:
        """Say a run's progress; its row is hidden while it has none, so that the summary,
        status and disclaimer under it fit a 1366 x 768 dock (tester36 #7)."""
        self.progress_text.value = text
        self.progress_text.visible = bool(text)

    def _on_yielded(self, message: tuple):
        if self._closed:  # the run was dropped with its dock
            return
        kind = message[0]
        if kind == "loaded":  # image ``index``'s model: its options and defaults make its layers
            _, index, self._defaults, trained = message
            self._options = self._job_options[index]
            self._note_checkpoint_modality(self._jobs[index], self._options, trained)
            self._trained[self._jobs[index].unique_id] = trained
            if self._shows_run_model(index):  # the sliders show the chosen image's model's
                left = [name for name in MODEL_SETTINGS if getattr(self._options, name) is None]
                self._show_model_values(self._defaults, left)  # those left to its model
        elif kind == "cancelled":  # the forward pass under way stopped; aborted follows
            self._outcome = self._stop_note or self._cancelled_text()
        elif kind == "status":  # e.g. compiling GPU kernels before the first image
            self.status.value = message[1]
        elif kind == "progress":
            if not self._busy or self._stop_note:  # after the run ended, or was stopped
                return
            _, index, done, total = message
            several = f" ({index + 1}/{len(self._jobs)})" if len(self._jobs) > 1 else ""
            self.status.value = f"segmenting {self._jobs[index].name}{several}"
            self._say_in_status_bar(f"Segmenting {self._jobs[index].name!r}{several}")
            self._show_progress(self._eta.text(done, total, "steps", key=index))
            # Last: napari's progress bar may process pending Qt events (even "finished").
            self._update_progress(index, done, total)
        elif kind == "result":
            _, index, outcome = message
            outcome = replace(outcome, conversion=self._job_notes[index])
            image = self._jobs[index]
            if image not in self.viewer.layers:  # closed during the run: nothing to label
                self._outcome = f"{image.name} was closed during the run; its result was dropped"
                return
            with self._adding():
                self._add_result(image, outcome)
            self._results.append((image, outcome))
            key = (image.unique_id, _model_id(self._options.model))
            self._outcomes[key] = (outcome, image.unique_id in self._misfits)
        elif kind == "error":
            _, index, text = message
            text += _folder_stack_hint(self._jobs[index])
            self._outcome = f"{self._jobs[index].name} failed: {text}"
            self._failed = True
            self._failed_ids.add(self._jobs[index].unique_id)
            show_error(f"Segmenting {self._jobs[index].name} failed: {text}")

    def _shows_run_model(self, index: int) -> bool:
        """Whether the dock shows image ``index`` of the run and the model it runs on it
        (the Model box may have been switched to another model meanwhile)."""
        run = _model_id(self._job_options[index].model)
        return self._jobs[index] is self.image.value and run == _model_id(self._shown_model())

    def _note_checkpoint_modality(self, image: Image, options, trained: str) -> None:
        """Count a checkpoint file of the user's whose checkpoint records another modality
        (``trained``) than ``image`` looks like as a misfit: its warning and summary say so.
        A model Fine-tune made active for this modality (fine-tuned on such images) is not."""
        modality = layer_modality(image)
        if registry.find_model(options.model) is not None or trained in ("", modality):
            return
        active = self.active_model.current
        if active is not None and active.model == options.model and active.modality == modality:
            return
        caveat = registry.modality_caveat(trained, modality, source=" (its checkpoint says so)")
        self._misfits.setdefault(image.unique_id, f"{options.model_label}: {caveat}")

    def _show_model_values(self, defaults: dict, names=MODEL_SETTINGS) -> None:
        """Put the shown model's threshold and confidence (``names`` of them) on their
        sliders: the value the user moved for that model, else its own from ``defaults``
        (left as they are when not known)."""
        moved = self._moved(self._shown_model())
        self._setting = True
        try:
            for name in names:
                value = moved.get(name, defaults.get(name))
                if value is not None:
                    getattr(self, name).value = value
        finally:
            self._setting = False

    def _show_adopted(self, output: _Output | None, described: list) -> None:
        """Show what the outputs an earlier dock made are (``described``: (image,
        outcome) pairs) in the summary, and put the chosen image's ``output``'s label
        options on the dock.

        Its threshold, confidence and output kind are the output's own: where they differ
        from its model's, they were the user's and stay so (a re-derive and the next run
        use them, as in the dock that made it); where they are the model's, they follow
        the model.
        """
        if described:
            self._results = list(described)
            self._adopted = {image.unique_id for image, _ in described}
            self.summary.value = self._summary_text()
        if output is None:
            return
        self._show_output_settings(output)
        options = output.labels.metadata["label_options"]
        model = str(output.labels.metadata.get("model") or "")
        moved = self._user_values.setdefault(_model_id(model), {})  # as in the dock that made it
        for name in MODEL_SETTINGS:
            if abs(float(options[name]) - float(output.defaults[name])) > 1e-9:
                moved[name] = float(options[name])

    def _show_output_settings(self, output: _Output) -> None:
        """Put the label settings ``output`` was made with on the dock (its threshold,
        confidence, hole filling, minimum size, and its output kind where it is not its
        model's own)."""
        options = output.labels.metadata["label_options"]
        self._setting = True
        try:
            for name in (*MODEL_SETTINGS, "fill_holes", "min_size"):
                getattr(self, name).value = options[name]
            if options["instances"] != output.defaults["instances"]:  # the user's kind
                self.output.value = "instances" if options["instances"] else "binary"
        finally:
            self._setting = False

    def _moved(self, model: str) -> dict[str, float]:
        """The threshold / confidence the user moved for ``model`` (name or path)."""
        return self._user_values.get(_model_id(model), {})

    def _remember_moved(self, name: str) -> None:
        """The slider ``name`` was moved: its value holds for the shown model from now on;
        moved while Segment runs, also for that model's result once it is in (the Model
        box may show another model by then: :meth:`_ran_output`)."""
        model, value = _model_id(self._shown_model()), float(getattr(self, name).value)
        self._user_values.setdefault(model, {})[name] = value
        if self.running:
            self._moved_in_run.setdefault(model, {})[name] = value

    def _ran_output(self, image: Image) -> tuple[_Output, dict] | None:
        """The output the run that ended made for ``image``, and the label settings it is to
        have now: the dock's, with the threshold and confidence it was made with, or those
        the user moved for its model while it ran (for an image not chosen, the rest as it
        was made); None when the run made none for it."""
        jobs = zip(self._jobs, self._job_options, strict=True)
        models = [options.model for job, options in jobs if job is image]
        if not models or not any(done is image for done, _ in self._results):
            return None
        output = self._outputs.get((image.unique_id, _model_id(models[0])))
        if output is None or "label_options" not in output.labels.metadata:
            return None
        made = output.labels.metadata["label_options"]
        moved = self._moved_in_run.get(_model_id(models[0]), {})
        own = {name: moved.get(name, made[name]) for name in MODEL_SETTINGS}
        if image is self.image.value:
            return output, {**self._label_settings(), **own}
        kind = "instances" if made["instances"] else "binary"  # another image's: as made
        kept = {"output": kind, "fill_holes": made["fill_holes"], "min_size": made["min_size"]}
        return output, {**kept, **own}

    def _model_settings(self, layer: Image | None = None) -> dict[str, float | None]:
        """Threshold and confidence for a run or re-derive on ``layer`` (default: the chosen
        image); None where they follow its model's own.

        The chosen image: the sliders' values where they are not merely the model's own,
        i.e. moved by the user for the shown model, or those its output of that model was
        made with (shown on them). Another image (Segment all): the values the user moved
        for the model that runs on it.
        """
        if layer is None or layer is self.image.value:
            moved = self._moved(self._shown_model())
            kept = self._shown_output() is not None
            return {
                name: float(getattr(self, name).value) if kept or name in moved else None
                for name in MODEL_SETTINGS
            }
        moved = self._moved(self._dock_model(layer))
        return {name: moved.get(name) for name in MODEL_SETTINGS}

    def _update_progress(self, index: int, done: int, total: int):
        bar = self._progress
        if bar is None:
            return
        if index != self._progress_index:
            self._progress_index = index
            bar.total = total
            bar.n = 0
            several = f" ({index + 1}/{len(self._jobs)})" if len(self._jobs) > 1 else ""
            bar.set_description(f"TM-UNet: segmenting {self._jobs[index].name}{several}")
        bar.update(done - bar.n)

    def _on_error(self, err: Exception):
        if self._closed:
            return
        self._outcome = f"failed: {error_text(err)}"
        self._failed = True
        show_error(f"TM-UNet segmentation {self._outcome}")

    def _on_aborted(self):
        if self._closed:
            return
        if self._stop_note:  # its images were closed: the status says so, no pop-up
            self._outcome = self._stop_note
            return
        self._outcome = self._cancelled_text()
        show_info(f"TM-UNet segmentation {self._outcome}.")

    def _cancelled_text(self) -> str:
        """What the status says of a cancelled run: "cancelled", and for a run of several
        images how many were segmented and which are left unsegmented ("cancelled: 3 of 10
        images segmented, 7 left: 'a', 'b'..."; images closed during the run are neither,
        those that failed are counted)."""
        if len(self._jobs) < 2:
            return "cancelled"
        segmented = {image.unique_id for image, _ in self._results}
        ended = segmented | self._failed_ids
        left = [
            image
            for image in self._jobs
            if image.unique_id not in ended and image in self.viewer.layers
        ]
        names = ", ".join(repr(image.name) for image in left[:MISFITS_NAMED])
        if len(left) > MISFITS_NAMED:
            names += f" and {len(left) - MISFITS_NAMED} more"
        text = f"cancelled: {len(segmented)} of {len(self._jobs)} images segmented"
        if self._failed_ids:
            text += f", {len(self._failed_ids)} failed"
        return text + (f", {len(left)} left: {names}" if left else "")

    def _on_finished(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._closed:
            self._busy = False
            self._follow_status_bar(False)
            return
        self._set_running(False)
        self._show_progress("")
        # images closed during the run have no line (the summary skipped them while it ran)
        self._results = [(i, o) for i, o in self._results if i in self.viewer.layers]
        if self._results:
            self.summary.value = self._summary_text()
            for image, outcome in self._results:
                if image.unique_id not in self._misfits:  # else not a threshold matter
                    self._warn_if_odd(image, outcome)
            self._warn_misfits()
            self._activate_chosen_output()
        self.status.value = self._outcome or "done"
        self._show_summary()
        self._follow_status_bar(False)  # last: the output made active set napari's status
        if self._rederive_after_run:  # the run used the settings of its click
            self._rederive_after_run = False
            self._rederive_if_moved()

    def _show_summary(self) -> None:
        """Scroll a short dock to the summary, which holds the warnings ("may not suit
        this image"), from its first line, with the status and disclaimer under it as
        far as they fit; the Image and Model boxes at the top stay in view where they
        were (they say what the result and the sliders are of): a long summary scrolls
        in its own box (:data:`SUMMARY_LINES`)."""
        shown = (self.summary, self.status, self.disclaimer)
        scroll_into_view(self.body, *shown, keep=self.image)

    def _warn_misfits(self) -> None:
        """One warning per reason a model may not suit the images it ran on, naming those
        images: Segment all on a folder of 50 such images gives one warning, not 50."""
        images: dict[str, list[Image]] = {}
        for image, _ in self._results:
            misfit = self._misfits.get(image.unique_id)
            if misfit:
                images.setdefault(misfit, []).append(image)
        for misfit, misfits in images.items():
            self._warn_once(misfits, misfit)

    def _activate_chosen_output(self) -> None:
        """Make the chosen image's new output the active layer, where the brush paints: after
        Segment all, the output added last may be that of a hidden picture of a folder."""
        chosen = self.image.value
        if not any(image is chosen for image, _ in self._results):
            return
        output = self._output_of(chosen)
        if output is not None and output.labels in self.viewer.layers:
            self.viewer.layers.selection.active = output.labels

    def _describe(self, image: Image, outcome: SegmentOutcome, misfit: bool) -> str:
        """One line: objects, area, time and model of a result, how its image was converted
        for the model, whether it may not suit the image (``misfit``), and whether an
        earlier dock made it (what is not known is said)."""
        labels = outcome.labels
        area = int(np.count_nonzero(labels))
        share = area / max(labels.size, 1)
        kind = "instance" if outcome.label_options.instances else "object"
        took = _took_words(outcome)
        model = outcome.model_label or "a model not recorded"
        mode = outcome.mode or "mode not recorded"
        if outcome.mode == "resize" and outcome.windows > 1:  # an elongated image
            mode = f"resize in {outcome.windows} windows along its length"
        hidden = _hidden_words(outcome)
        shown = " shown" if hidden else ""
        line = (
            f"{image.name}: {plural(outcome.objects, kind)}{shown}, {area} px ({share:.1%} of the "
            "image) "
            f"{took} with {model} ({mode}, {_cutoffs(outcome.label_options)})"
        )
        line += hidden
        if outcome.mode_mismatch:  # a mode chosen other than the model's own
            line += f"; {outcome.mode_mismatch}"
        if outcome.conversion:
            line += f"; {outcome.conversion}"
        if misfit:
            line += f"; {model} may not suit this image (see its warning)"
        if image.unique_id in self._adopted:
            line += "; segmented before this dock was opened"
            made = [
                output
                for output in self._outputs_of(image)
                if outcome.model_label in _model_names(output.labels.metadata)
            ]
            if any(not self._replaceable(output) for output in made):
                line += ", edited or removed since"
        return line

    def _warn_if_odd(self, image: Image, outcome: SegmentOutcome) -> None:
        """Say so when a result is empty because nothing passed the threshold, or covers
        nearly everything. One the confidence gate emptied gets no warning: its summary line
        says what the gate hid (nothing found is also the answer on a lesion-free scan).
        When the model was trained on another kind of image than ``image`` looks like, the
        model is named as the likely cause first (a lower threshold rarely helps then); a
        model that does not suit an image for other reasons (e.g. fluorescence) is warned
        about by :meth:`_warn_misfits` instead, not here."""
        share = np.count_nonzero(outcome.labels) / max(outcome.labels.size, 1)
        model = outcome.model_label
        if share == 0:
            if outcome.hidden and outcome.hidden[0]:
                return
            hint = "try a lower threshold"
            if outcome.mode == "resize" and max(outcome.labels.shape[-2:]) > LARGE_IMAGE:
                # as its model was trained ("auto"), or as chosen: a slide needs tiles
                hint = (
                    "this large image was resized to the model's input: for a slide, try Mode tile"
                )
            cause = self._other_modality(image, outcome)
            if cause:
                hint = f"the model is the likely cause: {cause}; else {hint}"
            show_warning(f"{model} found nothing in {image.name!r}: {hint}.")
        elif share > SUSPICIOUS_COVER:
            show_warning(
                f"{model} marked {share:.0%} of {image.name!r} as foreground: check that the "
                "model suits this kind of image, or raise the threshold."
            )

    def _other_modality(self, image: Image, outcome: SegmentOutcome) -> str:
        """Why the model that made ``outcome`` does not suit ``image``, in words, when it
        records another modality than the image looks like (:func:`registry.modality_caveat`,
        with the shipped model to choose instead); "" when it records the same or none."""
        trained = self._trained.get(image.unique_id, "")
        modality = layer_modality(image)
        return registry.modality_caveat(
            trained, modality, outcome.model_label, switch=OTHER_KIND_SWITCH
        )


def _took_words(outcome: SegmentOutcome) -> str:
    """How long a result took, from its run's start: "in 18.5 s (10.9 s of it loading the
    model)" for the first image of a model that had to be loaded or prepared, else "in
    7.6 s" (segmenting alone)."""
    if outcome.seconds is None:
        return "run time not recorded"
    if outcome.loading < 0.05:  # shown as 0.0 s: nothing worth saying
        return f"in {outcome.seconds:.1f} s"
    return f"in {outcome.seconds:.1f} s ({outcome.loading:.1f} s of it loading the model)"


def _hidden_words(outcome: SegmentOutcome) -> str:
    """ "; 2 objects (4 px) below confidence 0.81 hidden" for a result whose confidence gate
    hid objects; "" when it hid none (or that is not known)."""
    objects, pixels = outcome.hidden or (0, 0)
    if not objects:
        return ""
    gate = outcome.label_options.min_confidence
    return f"; {plural(objects, 'object')} ({pixels} px) below confidence {gate:.2f} hidden"


def _hint_mask(layer: Image) -> None:
    """Say how to use ``layer``, a visible mask opened as an image, as a mask: once per
    layer, whichever Segment dock (a reopened one too) sees it selected."""
    if layer.visible and layer not in _MASK_HINTED:
        _MASK_HINTED.add(layer)
        show_info(_mask_hint(layer))


def _mask_hint(layer: Image) -> str:
    """In a few words: ``layer`` looks like a mask, and how to use it as one: the TM-UNet
    command that reads it as a mask file is read (not napari's Convert to Labels, which
    keeps a 0/255 mask's stray values 1..127 as foreground, and a colour or alpha mask's
    channels as an axis); for a mask the TM-UNet writer saved, to open it with the TM-UNet
    reader (Labels with its scale; a conversion would leave it at scale 1); for a grey +
    alpha mask, which napari's reader shows as slices 2 pixels wide, that it cannot be seen
    as opened."""
    if saved_by_tmunet(layer):  # the TM-UNet reader gives it back as Labels, in place
        return SAVED_MASK_AS_IMAGE.format(name=repr(layer.name))
    start = f"{layer.name!r} looks like a mask (integer values, flat regions), not a picture to "
    shape = layer.data.shape
    if not layer.rgb and is_grey_alpha(shape):
        # napari shows an (H, W, 2) image's last two axes: H slices W x 2, hence the slider
        return start + (
            f"segment. napari's own reader opened it as grey + alpha ({shape[1]} x {shape[0]} "
            f"x 2), shown as {shape[0]} slices 2 pixels wide on a slider: it cannot be seen "
            f"as it is. To see it, {CONVERT_TO_MASK}; the Metrics dock takes it as the "
            "reference as it is."
        )
    if layer.rgb:
        return start + (
            "segment: the Metrics dock takes it as the reference as it is; to paint on it, "
            f"{CONVERT_TO_MASK}, or open the picture with its mask: napari-tmunet PICTURE MASK."
        )
    return start + (
        f"segment: to use it as a mask, {CONVERT_TO_MASK}, or open the picture with its "
        "mask: napari-tmunet PICTURE MASK."
    )


def _model_names(metadata: dict) -> tuple:
    """The names a summary line may give an output's model (its label, else its model)."""
    return (metadata.get("model_label"), metadata.get("model"))


def _folder_stack_hint(layer: Image) -> str:
    """For a layer napari's own reader made of a whole folder: why it may fail, what to do.
    "" for a layer of one file (this plugin's reader names it in the metadata)."""
    path = getattr(layer.source, "path", None)
    if (layer.metadata or {}).get("path") or not (path and os.path.isdir(path)):
        return ""
    return (
        f". {layer.name!r} is the folder {path} read as one stack, which napari's own "
        "reader makes the size of its first image: open the folder again and choose "
        "napari-tmunet as its reader (one layer per image), or open the files themselves "
        "(File > Open Files...)"
    )


def _model_inputs(layers: list[Image]) -> list[tuple[Any, str]] | None:
    """Per layer, its data as the model takes it (converted where its colours need it,
    :func:`layer_colour_conversion`) and that conversion in words ("" for none); None (and a
    message naming the layer) when one cannot be converted."""
    inputs = []
    for layer in layers:
        data, conversion = full_data(layer), layer_colour_conversion(layer)
        problem = conversion_problem(data, conversion)
        if problem:
            show_error(f"Cannot segment {layer.name!r}: {problem}.")
            return None
        # converted in the worker (a CMYK photo takes a moment), like the inference after it
        source = partial(convert_colours, data, conversion) if conversion else data
        note = CONVERSION_NOTES.get(conversion, "")
        if not conversion and _is_transparent(layer):
            note = ALPHA_IGNORED
        inputs.append((source, note))
    return inputs


def _is_transparent(layer: Image) -> bool:
    """Whether ``layer`` is RGBA with an alpha channel that is not fully opaque somewhere
    (the model sees the colours, alpha dropped: also those of pixels the user cannot see).
    A layer read in parts (lazy) is judged by its thumbnail."""
    data = full_data(layer)
    if not layer.rgb or np.shape(data)[-1:] != (4,):
        return False
    if not isinstance(data, np.ndarray):
        data = layer_thumbnail(layer)
    alpha = data[..., 3]
    opaque = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1
    return bool(alpha.size) and bool(np.min(alpha) < opaque)


# The colormaps napari gives the channels it splits into layers (channel_axis: cyan,
# magenta, yellow...; Split RGB: red, green, blue)
CHANNEL_COLOURS = frozenset({"red", "green", "blue", "cyan", "magenta", "yellow"})


def _split_channel(layer: Image, layers) -> bool:
    """Whether the grey ``layer`` looks like one channel of a colour image split into layers:
    it and the other grey Image ``layers`` of its shape in channel colours
    (:data:`CHANNEL_COLOURS`) show 3 colours, at least 2 of those layers blended additively
    (napari blends the first channel over what is under it, the others onto it). Never
    for a channel the TM-UNet reader opened apart (``_reader.CHANNEL_KEY``): the file
    marks no colour (3 fluorescence channels, say)."""
    if layer.rgb or layer.colormap.name not in CHANNEL_COLOURS:
        return False
    if CHANNEL_KEY in layer.metadata:
        return False
    shape = np.shape(full_data(layer))
    group = [
        other
        for other in layers
        if isinstance(other, Image)
        and not other.rgb
        and other.colormap.name in CHANNEL_COLOURS
        and np.shape(full_data(other)) == shape
    ]
    additive = sum(other.blending == "additive" for other in group)
    return len({other.colormap.name for other in group}) == 3 and additive >= 2
