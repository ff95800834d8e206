"""The Segment dock widget: an image layer in, a Labels layer out.

The computation is :func:`napari_tmunet.inference.segment`, a generator run in a napari
``thread_worker`` (torch is imported there, not at plugin load) with a napari progress
bar and a Cancel button; ``NAPARI_TMUNET_INLINE=1`` runs it on the calling thread
instead (tests, scripts).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
)
from napari.layers import Image, Labels
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

from . import active_model, registry

INLINE_ENV = "NAPARI_TMUNET_INLINE"
CHECKPOINT_CHOICE = "Checkpoint file..."
DISCLAIMER = "Research use only, not a medical device."
LARGE_IMAGE = 1024  # pixels; larger images default to tiled inference


@dataclass
class _Output:
    """The layers one Segment run made for an image, and how to tell if they were edited."""

    labels: Labels
    digest: str
    probability: Image | None = None
    edited: bool = False
    callbacks: list = field(default_factory=list)


@dataclass
class _Options:
    """A snapshot of the widget's settings, taken when Segment is clicked."""

    model: str  # registry name or checkpoint path
    model_label: str
    provisional: bool
    device: str
    threshold: float
    mode: str
    instances: bool
    add_probability: bool
    batch_size: int


class SegmentWidget(Container):
    """Segment image layers with a TM-UNet model into Labels layers.

    Sub-widgets are attributes (``image``, ``model``, ``checkpoint``, ``device``,
    ``threshold``, ``mode``, ``output``, ``add_probability``, ``segment_button``,
    ``cancel_button``, ``segment_all_button``) so that scripts and tests can set values
    and call :meth:`segment`, :meth:`segment_all` and :meth:`cancel`.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._setting_model = False  # programmatic model changes keep auto-selection on
        self._setting_data = False  # our own writes to an output layer are not user edits
        self._progress_index = -1
        self._outcome = ""
        self._busy = False
        # The plugin proxy guards napari's privates; this widget uses public API only, and
        # unwrapped layers compare and hash as themselves.
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self.worker = None  # the napari worker of the last run
        self.last_layer: Labels | None = None  # the Labels layer written last
        self.last_result = None  # the SegmentationResult of the last image segmented
        self.batch_size = 4  # tiles per forward pass in tile mode
        self._outputs: dict[Any, _Output] = {}
        self._progress: progress | None = None
        self._jobs: list[Image] = []
        self._options: _Options | None = None
        self._auto_model = True  # follow the image's modality until the user picks a model

        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.model = ComboBox(label="Model", choices=self._model_choices())
        self.checkpoint = FileEdit(
            label="Checkpoint", mode="r", filter="TM-UNet checkpoint (*.pt *.pth *.ckpt)"
        )
        self.device = ComboBox(
            label="Device", choices=[("auto", "auto"), ("CUDA", "cuda"), ("CPU", "cpu")]
        )
        self.threshold = FloatSpinBox(label="Threshold", value=0.5, min=0.01, max=0.99, step=0.05)
        self.mode = ComboBox(
            label="Mode",
            choices=[
                ("resize to model input (paper)", "resize"),
                ("sliding-window tiles (large images)", "tile"),
            ],
        )
        self.output = ComboBox(
            label="Output",
            choices=[
                ("binary mask", "binary"),
                ("instances (split touching objects)", "instances"),
            ],
        )
        self.add_probability = CheckBox(text="also add probability map", value=False)
        self.segment_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.segment_all_button = PushButton(text="Segment all image layers")
        self.provisional_label = Label(value="")
        self.disclaimer = Label(value=DISCLAIMER)
        self.status = Label(value="")
        for widget in (self.provisional_label, self.disclaimer, self.status):
            widget.label = ""
        self.extend(
            [
                self.image,
                self.model,
                self.checkpoint,
                self.device,
                self.threshold,
                self.mode,
                self.output,
                self.add_probability,
                self.segment_button,
                self.cancel_button,
                self.segment_all_button,
                self.provisional_label,
                self.disclaimer,
                self.status,
            ]
        )

        self.model.changed.connect(self._on_model_changed)
        self.image.changed.connect(self._on_image_changed)
        self.segment_button.changed.connect(self.segment)
        self.cancel_button.changed.connect(self.cancel)
        self.segment_all_button.changed.connect(self.segment_all)
        self.viewer.layers.events.inserted.connect(self.reset_choices)
        self.viewer.layers.events.removed.connect(self.reset_choices)
        self.reset_choices()
        self._on_image_changed(self.image.value)
        self._show_model_state()
        # the viewer's active model: set by Fine-tune (and Revert), shown here
        self.active_model = active_model.for_viewer(self.viewer)
        self.active_model.subscribe(self.use_model)
        if self.active_model.current is not None:
            self.use_model(self.active_model.current)

    def use_model(self, choice: active_model.ModelChoice) -> None:
        """Show the active model (set by Fine-tune or Revert) as the model to use."""
        self._auto_model = False
        if registry.find_model(choice.model) is not None:
            self.model.value = choice.model
        else:
            self.checkpoint.value = choice.model
            self.model.value = CHECKPOINT_CHOICE

    # --- choices and small state -------------------------------------------------------

    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _model_choices(self) -> list[tuple[str, str]]:
        try:
            entries = registry.available_models()
        except RuntimeError as err:  # unreadable registry: still usable with a file
            show_warning(str(err))
            entries = []
        choices = [
            (f"{e.name} (provisional)" if e.provisional else e.name, e.name) for e in entries
        ]
        return [*choices, (CHECKPOINT_CHOICE, CHECKPOINT_CHOICE)]

    @property
    def running(self) -> bool:
        """Whether a Segment run is in progress (from the click until its layers are added)."""
        return self._busy

    def _on_model_changed(self, value):
        entry = registry.find_model(str(value))
        if not self._setting_model:
            self._auto_model = False
            layer = self.image.value
            if entry is not None and layer is not None:  # remembered for this kind of image
                modality = registry.guess_modality(_thumbnail(layer), rgb=layer.rgb)
                registry.remember_model(modality, entry.name)
        if entry is not None and entry.mode == "tile":
            self.mode.value = "tile"  # trained on native-resolution crops: tile, never shrink
        self._show_model_state()

    def _show_model_state(self):
        is_file = self.model.value == CHECKPOINT_CHOICE
        self.checkpoint.visible = is_file
        entry = None if is_file else registry.find_model(str(self.model.value))
        if entry is not None and entry.provisional:
            self.provisional_label.value = (
                "provisional model: a small interim model, expect rough masks"
            )
            self.provisional_label.visible = True
        else:
            self.provisional_label.value = ""
            self.provisional_label.visible = False

    def _on_image_changed(self, layer):
        if layer is None:
            return
        shape = layer.data.shape if not layer.multiscale else layer.data[0].shape
        spatial = shape[-3:-1] if layer.rgb else shape[-2:]
        if max(spatial) > LARGE_IMAGE:
            self.mode.value = "tile"
        if self._auto_model and len(self.model.choices) > 2:
            entry = registry.default_model_for(_thumbnail(layer), rgb=layer.rgb)
            if entry is not None:
                self._setting_model = True
                try:
                    self.model.value = entry.name
                finally:
                    self._setting_model = False

    # --- running -----------------------------------------------------------------------

    def segment(self, _=None):
        """Segment the chosen image layer."""
        if self.image.value is None:
            show_info("Open an image first (File > Open, or File > Open Sample > TM-UNet).")
            return
        self._start([self.image.value])

    def segment_all(self, _=None):
        """Segment every image layer (except probability maps made here) with the same options."""
        ours = [o.probability for o in self._outputs.values() if o.probability is not None]
        layers = [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not any(layer is p for p in ours)
        ]
        if not layers:
            show_info("There are no image layers to segment.")
            return
        self._start(layers)

    def cancel(self, _=None):
        """Stop the running job after the current forward pass."""
        if self.running and self.worker is not None:
            self.status.value = "cancelling..."
            self.worker.quit()

    def _read_options(self) -> _Options | None:
        model = str(self.model.value)
        label, provisional = model, False
        if model == CHECKPOINT_CHOICE:
            path = self.checkpoint.value
            if not path or not os.path.isfile(path):
                show_error(
                    "Choose a checkpoint file made by napari-tmunet-train or the Fine-tune "
                    f"widget (got {str(path) or 'nothing'!r})."
                )
                return None
            model = label = str(path)
        else:
            entry = registry.find_model(model)
            if entry is None:
                show_error(f"The model {model!r} is not installed.")
                return None
            provisional = entry.provisional
        # Fine-tune starts from what Segment uses
        self.active_model.set(model, os.path.basename(label))
        return _Options(
            model=model,
            model_label=label,
            provisional=provisional,
            device=str(self.device.value),
            threshold=float(self.threshold.value),
            mode=str(self.mode.value),
            instances=self.output.value == "instances",
            add_probability=bool(self.add_probability.value),
            batch_size=int(self.batch_size),
        )

    def _start(self, layers: list[Image]):
        if self.running:
            show_info("A segmentation is already running; cancel it or wait.")
            return
        options = self._read_options()
        if options is None:
            return
        self._options = options
        self._jobs = list(layers)
        self._progress_index = -1
        self._outcome = ""
        jobs = [(layer.data[0] if layer.multiscale else layer.data, layer.rgb) for layer in layers]
        self._set_running(True)
        self._progress = progress(total=0, desc=f"TM-UNet: segmenting {layers[0].name}")
        if os.environ.get(INLINE_ENV, "0") not in ("0", "", "false", "False"):
            self.worker = None
            try:
                for message in _segment_jobs(jobs, options):
                    self._on_yielded(message)
            except Exception as err:  # noqa: BLE001 - shown to the user, as in a worker
                self._on_error(err)
            self._on_finished()
            return
        from napari.qt.threading import thread_worker

        worker = thread_worker(_segment_jobs, start_thread=False)(jobs, options)
        worker.yielded.connect(self._on_yielded)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def _set_running(self, running: bool):
        self._busy = running
        self.segment_button.enabled = not running
        self.segment_all_button.enabled = not running
        self.cancel_button.enabled = running
        if running:
            self.status.value = "loading model..."

    def _on_yielded(self, message: tuple):
        kind = message[0]
        if kind == "progress":
            if not self._busy:  # a report that arrived after the run ended
                return
            _, index, done, total = message
            self.status.value = f"{self._jobs[index].name}: {done}/{total}"
            # Last: napari's progress bar may process pending Qt events (even "finished").
            self._update_progress(index, done, total)
        elif kind == "result":
            _, index, result = message
            self._add_result(self._jobs[index], result)
        elif kind == "error":
            _, index, text = message
            show_error(f"Segmenting {self._jobs[index].name} failed: {text}")

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
        self._outcome = f"failed: {type(err).__name__}: {err}"
        show_error(f"TM-UNet segmentation {self._outcome}")

    def _on_aborted(self):
        self._outcome = "cancelled"
        show_info("TM-UNet segmentation cancelled.")

    def _on_finished(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._set_running(False)
        self.status.value = self._outcome or "done"

    # --- output layers -----------------------------------------------------------------

    def _add_result(self, image: Image, result) -> None:
        options = self._options
        metadata = {
            "model": options.model_label,
            "provisional": options.provisional,
            "mapping": result.mapping,
            "threshold": result.threshold,
            "mode": result.mode,
            "output": "instances" if result.instances else "binary",
            "device": options.device,
            "image": image.name,
            "note": DISCLAIMER,
        }
        key = image.unique_id
        previous = self._outputs.get(key)
        labels = result.labels
        if previous is not None and self._replaceable(previous):
            layer = previous.labels
            self._setting_data = True
            try:
                layer.data = labels
            finally:
                self._setting_data = False
            layer.metadata = metadata
            layer.scale, layer.translate = image.scale, image.translate
            previous.digest = _digest(labels)
            output = previous
        else:
            if previous is not None and previous.labels in self.viewer.layers:
                show_info(
                    f"{previous.labels.name!r} was edited since it was made; keeping it and "
                    "adding a new layer."
                )
            layer = self.viewer.add_labels(
                labels,
                name=f"{image.name} labels",
                scale=image.scale,
                translate=image.translate,
                metadata=metadata,
                **_units(image),
            )
            output = _Output(labels=layer, digest=_digest(labels))
            self._watch_edits(output)
            self._outputs[key] = output
        if options.add_probability and result.probability is not None:
            output.probability = self._put_probability(image, result.probability, output, metadata)
        self.last_layer = layer
        self.last_result = result

    def _replaceable(self, output: _Output) -> bool:
        """Whether a previous output is still in the viewer and unedited since made."""
        if output.labels not in self.viewer.layers or output.edited:
            return False
        return _digest(output.labels.data) == output.digest

    def _watch_edits(self, output: _Output):
        def mark_edited(event=None):
            if not self._setting_data:
                output.edited = True

        output.labels.events.paint.connect(mark_edited)
        output.labels.events.data.connect(mark_edited)
        output.callbacks.append(mark_edited)  # keep a reference for the layer's lifetime

    def _put_probability(self, image: Image, probability, output: _Output, metadata) -> Image:
        name = f"{image.name} probability"
        old = output.probability
        if old is not None and old in self.viewer.layers:
            old.data = probability
            old.metadata = dict(metadata)
            old.scale, old.translate = image.scale, image.translate
            return old
        return self.viewer.add_image(
            probability,
            name=name,
            scale=image.scale,
            translate=image.translate,
            colormap="magma",
            contrast_limits=(0.0, 1.0),
            blending="additive",
            opacity=0.6,
            metadata=dict(metadata),
            **_units(image),
        )


def _segment_jobs(jobs: list[tuple[Any, bool]], options: _Options) -> Generator[tuple, None, None]:
    """Worker body: load the model, then segment each image; yields progress and results.

    Messages: ``("progress", index, done, total)``, ``("result", index, result)`` and
    ``("error", index, text)`` for an image that could not be segmented (the others go on).
    """
    # torch and the model code load here, on the worker thread, not at plugin import.
    from .batch import segment_each

    checkpoint = registry.load_model(options.model, options.device)
    yield from segment_each(
        jobs,
        checkpoint,
        raise_if_single=True,
        threshold=options.threshold,
        mode=options.mode,
        instances=options.instances,
        batch_size=options.batch_size,
    )


def _digest(data) -> str:
    """Content hash of a label array (detects edits made without events)."""
    array = np.ascontiguousarray(np.asarray(data))
    h = hashlib.blake2b(digest_size=16)
    h.update(str((array.shape, array.dtype.str)).encode())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def _thumbnail(layer: Image) -> np.ndarray:
    """A small view of a layer's first frame, enough to guess its modality."""
    data = layer.data[-1] if layer.multiscale else layer.data
    spatial = 3 if layer.rgb else 2
    index = (0,) * (data.ndim - spatial)
    frame = data[index]
    step = max(1, max(frame.shape[:2]) // 256)
    return np.asarray(frame[::step, ::step])


def _units(image: Image) -> dict:
    """``units=`` for a new layer where this napari has layer units."""
    units = getattr(image, "units", None)
    return {"units": units} if units is not None else {}
