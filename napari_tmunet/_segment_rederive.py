"""The Segment dock's label settings re-derive the last result, without the network.

A mixin of :class:`~napari_tmunet._segment_widget.SegmentWidget` (it uses the dock's
``image``, ``status``, ``outlines``, label-setting widgets, ``_outputs`` and the
debounce timer). Moving the threshold, the confidence, hole filling, the minimum size or
the output kind derives the chosen image's labels again (its output of the model the dock
shows, :meth:`OutputLayers._output_of`) from the kept probability, in a
worker thread: on a large slide the instance split takes seconds, and the sliders stay
live meanwhile. A change made while a derive runs is taken up when it ends, and one made
while Segment runs once the run's result is in (the run used the settings of its click).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import numpy as np
from napari.utils.notifications import show_error

from ._layer_style import prediction_look
from ._segment_jobs import label_options
from ._segment_outputs import _model_id, _Output, banded_note, label_metadata
from ._widget_common import error_text, start_worker, track_run, wait_for_run
from .postprocess import LabelOptions, count_objects, derive_labels, gated_out
from .words import plural

INLINE_ENV = "NAPARI_TMUNET_INLINE"  # 1: segment and derive on the calling thread (scripts)
DERIVE_WORDS = "a re-derive of Segment's labels"  # one still going when napari closes


def runs_inline() -> bool:
    """True when ``NAPARI_TMUNET_INLINE`` asks for no worker threads."""
    return os.environ.get(INLINE_ENV, "0") not in ("0", "", "false", "False")


class Rederive:
    """Re-derives the chosen image's labels when a label setting moves."""

    def _on_model_setting(self, name: str) -> None:
        if not self._setting:
            self._remember_moved(name)  # the user's value for the shown model, from now on
            self._rederive_timer.start()

    def _on_label_setting(self, _value=None) -> None:
        if not self._setting:
            self._rederive_timer.start()

    def rederive(self) -> LabelOptions | None:
        """Labels of the chosen image's last result again, with the dock's current settings.

        Derived from the kept probability without the network, in a worker thread: on a
        large slide the instance split takes seconds, and the sliders stay live meanwhile.
        A change made while a derive runs is taken up when it ends (the latest settings
        win). ``NAPARI_TMUNET_INLINE=1`` derives on the calling thread. An output the user
        has edited or removed is left alone (a message says so). While Segment runs, the
        derive waits for its result. Returns the options derived with (None: nothing to
        derive, or not yet); :attr:`deriving` is True until the labels are written.
        """
        if self.running:  # deriving now would be overwritten by the run's older settings
            self._rederive_after_run = True
            return None
        image = self.image.value
        output = self._output_of(image) if image is not None else None
        if output is None:
            return None
        return self._derive_output(image, output, self._label_settings())

    def _derive_output(self, image, output: _Output, settings: dict) -> LabelOptions | None:
        """Derive ``image``'s ``output`` again with the label ``settings`` (see
        :meth:`rederive`)."""
        if not self._replaceable(output):
            self._say_kept(output)
            return None
        if output.probability is None:  # segmented in bands: no probability was kept
            self.status.value = banded_note(image.name)
            return None
        options = label_options(output.defaults, **settings)
        if self._derive is not None:  # one derive at a time; this one follows it
            self._derive_again = True
            return options
        self._derive = (image, output, output.probability, options, time.perf_counter())
        if runs_inline():
            self._put_derived(_derive_shown(output.probability, options))
            return options
        self.status.value = f"{image.name}: updating the labels..."
        # not stoppable part way: closing napari waits for it (wait_for_derive)
        self._derive_ended = threading.Event()
        ended = track_run(threading.Event(), self._derive_ended, DERIVE_WORDS)
        start_worker(
            _derive_shown,
            output.probability,
            options,
            connect={"returned": self._put_derived, "errored": self._on_derive_error},
            direct={"finished": ended},
        )
        return options

    def wait_for_derive(self) -> None:
        """Wait for the derive under way to end (napari's window is closing: its worker
        must not outlive the window, or Python ends under it: a traceback, an abort)."""
        if self._derive is not None and not runs_inline():
            wait_for_run(threading.Event(), self._derive_ended, DERIVE_WORDS)

    def _rederive_if_moved(self) -> None:
        """After a Segment run: derive each of its results again whose label settings moved
        away from those it was derived with (while the run went on): its threshold and
        confidence those moved for the model that made it, also when the Model or Image box
        was switched meanwhile (:meth:`_ran_output`); one at a time, the next when a derive
        ends. Then the chosen image's output, if the dock's settings moved for it."""
        if self._derive is not None:  # after the derive under way (see _put_derived)
            self._rederive_after_run = True
            return
        ran_outputs = [(image, self._ran_output(image)) for image, _ in self._results]
        ran_outputs = [(image, ran) for image, ran in ran_outputs if ran is not None]
        for image, (output, settings) in ran_outputs:
            options = label_options(output.defaults, **settings)
            if options.to_dict() != output.labels.metadata.get("label_options"):
                self._derive_output(image, output, settings)
                if self._derive is not None:  # the next ones once this one is written
                    self._rederive_after_run = True
                    return
        image = self.image.value
        if image is None or any(image is ran for ran, _ in ran_outputs):
            return
        output = self._output_of(image)
        if output is not None:
            options = label_options(output.defaults, **self._label_settings())
            if options.to_dict() == output.labels.metadata.get("label_options"):
                return
        self.rederive()

    @property
    def deriving(self) -> bool:
        """True while re-derived labels are being made."""
        return self._derive is not None

    def _put_derived(self, derived: tuple[np.ndarray, tuple[int, int]]) -> None:
        """Write a derive's labels (``derived``: labels and what the gate hid) into its
        output, unless Segment replaced that output (or its probability) or the user edited
        it meanwhile; then derive again if the settings moved."""
        labels, hidden = derived
        image, output, probability, options, began = self._derive
        self._derive = None
        if self._closed:  # the dock's widgets are gone
            return
        current = any(kept is output for kept in self._outputs.values())
        current = current and output.probability is probability  # not one a run replaced
        if current and output.labels in self.viewer.layers:
            if self._replaceable(output):
                self._write_derived(image, output, options, (labels, hidden), began)
            else:
                self._say_kept(output)
        if self._derive_again:
            self._derive_again = False
            self.rederive()
        elif self._rederive_after_run and not self.running:  # a run ended meanwhile
            self._rederive_after_run = False
            self._rederive_if_moved()

    def _write_derived(self, image, output, options: LabelOptions, derived, began: float) -> None:
        labels, hidden = derived
        self._write_labels(output, labels)
        objects = count_objects(labels)
        output.labels.metadata = {**output.labels.metadata, **label_metadata(options, objects)}
        self.last_rederive_seconds = time.perf_counter() - began
        kind = "instance" if options.instances else "object"  # as in the summary
        # The layer, not the image: with two models' outputs, or a model shown that has not
        # run on the image (its newest output is derived), the user sees which one moved.
        unseen = "" if output.labels.visible else f" (hidden: show {image.name!r} to see it)"
        self.status.value = (
            f"{output.labels.name!r}{self._whose(image, output)}{unseen}: "
            f"{plural(objects, kind)} at "
            f"{_cutoffs(options)} (updated in {self.last_rederive_seconds * 1000:.0f} ms, "
            "model not run again)"
        )
        self._update_summary(image, output, labels, options, (objects, hidden))

    def _whose(self, image, output: _Output) -> str:
        """The status's note on ``output``'s model, " (<model>'s output)", when it is not the
        model the dock shows (that one has not run on ``image``, so the newest output was
        derived); else ""."""
        meta = output.labels.metadata
        if _model_id(meta.get("model", "")) == _model_id(self._dock_model(image)):
            return ""
        return f" ({meta.get('model_label') or meta.get('model') or 'another model'}'s output)"

    def _update_summary(self, image, output, labels, options: LabelOptions, counts) -> None:
        """Rewrite the summary line of ``image``'s ``output`` (its model's) for its
        re-derived labels (``counts``: its objects, and the objects and pixels the gate
        hid), so that the summary names the settings in effect."""
        objects, hidden = counts
        meta = output.labels.metadata
        derived = {"labels": labels, "label_options": options, "objects": objects, "hidden": hidden}
        key = (image.unique_id, _model_id(meta.get("model", "")))
        if key in self._outcomes:  # the line shown while the dock shows its model
            outcome, misfit = self._outcomes[key]
            self._outcomes[key] = (replace(outcome, **derived), misfit)
        for index, (ran, outcome) in enumerate(self._results):
            if ran is image and outcome.model_label in (meta.get("model_label"), meta.get("model")):
                self._results[index] = (ran, replace(outcome, **derived))
        if any(ran is image for ran, _, _ in self._summary_lines()):
            self.summary.value = self._summary_text()

    def _on_derive_error(self, err: Exception) -> None:
        self._derive, self._derive_again = None, False
        if self._closed:
            return
        self.status.value = f"updating the labels failed: {error_text(err)}"
        show_error(f"TM-UNet: {self.status.value}")

    def _say_kept(self, output: _Output) -> None:
        """Say why an output is not updated: the user removed it, or edited it."""
        if output.labels not in self.viewer.layers:
            self.status.value = (
                f"{output.labels.name!r} was removed: click Segment for a new labels layer."
            )
            return
        self.status.value = (
            f"{output.labels.name!r} was edited, so it is kept as it is; Segment again "
            "for a new layer with these settings."
        )

    def _label_settings(self, layer=None) -> dict:
        """The dock's label settings for ``layer`` (default: the chosen image); threshold and
        confidence those of its model (:meth:`_model_settings`), None while they follow the
        model (:func:`_segment_jobs.label_options` takes them from its defaults)."""
        return {
            "output": str(self.output.value),
            **self._model_settings(layer),
            "fill_holes": bool(self.fill_holes.value),
            "min_size": int(self.min_size.value),
        }

    def _show_outlines(self, _=None) -> None:
        """Draw the outputs filled and see-through, or as opaque outlines (in their colours
        for either, ``_colour``)."""
        for output in self._outputs.values():
            labels = output.labels
            self._colour(output)
            labels.opacity = prediction_look(labels.data.shape, self.outlines.value)[1]


def _derive_shown(probability: np.ndarray, options: LabelOptions) -> tuple:
    """(labels, (objects, pixels) the confidence gate hid) of a kept compact probability."""
    return derive_labels(probability, options), gated_out(probability, options)


def _cutoffs(options: LabelOptions) -> str:
    """'threshold 0.50', plus the least object confidence where one is set."""
    text = f"threshold {options.threshold:.2f}"
    if options.min_confidence:
        text += f", confidence {options.min_confidence:.2f}"
    return text
