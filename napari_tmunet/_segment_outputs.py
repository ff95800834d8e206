"""The Segment dock's output layers: made, replaced while unedited, recoloured.

A mixin of :class:`~napari_tmunet._segment_widget.SegmentWidget` (it uses the dock's
``viewer``, ``outlines``, ``add_probability``, and the ``_options`` and ``_defaults`` of
the image whose result is being added). An output the user has edited (its content no
longer matches what was written) is never replaced: a new layer is added instead. Outputs
are kept per (image, model): another model's run adds its own layer (named with the model,
in a colour of its own) beside the first, to compare the two; a run with a model replaces
that model's unedited output; the label settings act on the output of the model the dock
shows (:meth:`OutputLayers._output_of`).

napari makes a new dock widget each time the dock is reopened; the new one takes over the
outputs an earlier one made (:meth:`OutputLayers._adopt_outputs`), from what their layers'
metadata keep: the image's name, the probability, the label options, the model's own
threshold and confidence, and a digest of the labels as written; and it describes them
as a run's summary does (:func:`adopted_outcome`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info

from . import active_model
from ._layer_style import (
    COMPARISON_COLOURS,
    PREDICTION_COLOUR,
    PROBABILITY_OPACITY,
    ours,
    prediction_colours,
    prediction_look,
)
from ._placement import place_like, placement
from ._reader import picture_metadata
from ._segment_jobs import SegmentOutcome
from ._unsaved import DIGEST_KEY, content_digest
from ._widget_common import PROBABILITY_MARK, is_probability_map
from .postprocess import LabelOptions, count_objects

DISCLAIMER = "Research use only, not a medical device."
COLOUR_KEY = "tmunet_colour"  # metadata: the colour of an output (its objects, label 1)
PROBABILITY_KEY = "tmunet_probability"  # metadata: the compact probability of an output
MODEL_DEFAULTS_KEY = "model_defaults"  # metadata: the model's own threshold, confidence...
# What may follow "<image> labels" in a name Segment gave: the model of a layer kept to
# compare ("(TM-UNet nuclei)"), napari's number of a repeated name ("[1]").
_NAME_TAIL = r"((?: \(.+\))?(?: \[\d+\])?)"


def _free_colour(shown: list[_Output]) -> str:
    """The first of cyan and the comparison colours that no output in ``shown`` has (an
    output removed and remade must not take the colour of one still shown); when all are
    taken, the comparison colours in turn."""
    used = {o.labels.metadata.get(COLOUR_KEY, PREDICTION_COLOUR) for o in shown}
    for colour in (PREDICTION_COLOUR, *COMPARISON_COLOURS):
        if colour not in used:
            return colour
    return COMPARISON_COLOURS[(len(shown) - 1) % len(COMPARISON_COLOURS)]


@dataclass
class _Output:
    """The layers one Segment run made for an image and what they derive from."""

    labels: Labels
    digest: str  # of the labels as written: the user's edits change it
    probability: np.ndarray | None  # (..., H, W) uint8 compact probability (postprocess);
    # None: segmented in bands (over the pixel budget), its labels cannot be re-derived
    defaults: dict  # the model's threshold / mode / instances
    probability_layer: Image | None = None


class OutputLayers:
    """Output-layer bookkeeping of the Segment dock (see the module docstring)."""

    # --- output layers -----------------------------------------------------------------

    def _outputs_of(self, image: Image) -> list[_Output]:
        """``image``'s outputs, one per model, the newest (made or replaced) last."""
        return [output for (key, _), output in self._outputs.items() if key == image.unique_id]

    def _output_of(self, image: Image) -> _Output | None:
        """``image``'s output of the model the dock would run on it (the label settings act
        on it); else its newest output (e.g. the dock now shows a model not run on it yet)."""
        output = self._outputs.get((image.unique_id, _model_id(self._dock_model(image))))
        if output is not None:
            return output
        outputs = self._outputs_of(image)
        return outputs[-1] if outputs else None

    def _track(self, image: Image, model: str, output: _Output) -> None:
        """Keep ``output`` as ``image``'s output of ``model``, as its newest."""
        key = (image.unique_id, _model_id(model))
        self._outputs.pop(key, None)
        self._outputs[key] = output

    def _add_result(self, image: Image, outcome: SegmentOutcome) -> None:
        options = self._options
        label_options = outcome.label_options
        choice = self.model_choice(options.model, options.model_label)
        metadata = {
            "model": options.model,
            "model_label": options.model_label,
            # the model as the Model box and this layer's name say it, and its full name,
            # the models it was fine-tuned from and its file
            "model_name": self.model_text(choice),
            "model_provenance": active_model.provenance(choice),
            "provisional": options.provisional,
            "mapping": outcome.mapping,
            "conversion": outcome.conversion,
            **label_metadata(label_options, outcome.objects),
            MODEL_DEFAULTS_KEY: dict(self._defaults),
            "mode": outcome.mode,
            "windows": outcome.windows,
            "mode_mismatch": outcome.mode_mismatch,
            "device": options.device,
            # its image's name, and a channel's file (the file's mask is its reference)
            **picture_metadata(image.name, image.metadata),
            "seconds": outcome.seconds,  # unrounded: a reopened dock says what the run said
            "loading_seconds": outcome.loading,
            "note": DISCLAIMER,
            # the model's raw output, kept compact: re-thresholding, and telling the user's
            # edits from the model's prediction (Fine-tune)
            PROBABILITY_KEY: outcome.probability,
        }
        previous = self._outputs.get((image.unique_id, _model_id(options.model)))
        if previous is not None and self._replaceable(previous):
            output = previous
            output.probability, output.defaults = outcome.probability, dict(self._defaults)
            colour = output.labels.metadata.get(COLOUR_KEY, PREDICTION_COLOUR)
            _follow_image_name(output.labels, image.name, "labels")  # before "image" changes
            # first: writing the labels adds their digest
            output.labels.metadata = {**metadata, COLOUR_KEY: colour}
            self._write_labels(output, outcome.labels)
            place_like(output.labels, image)  # the user may have moved or rotated the image
        else:
            output = self._add_output(image, outcome, metadata, previous)
        self._track(image, options.model, output)
        if outcome.probability is None:
            show_info(banded_note(image.name))
        elif options is not None and self.add_probability.value:
            output.probability_layer = self._put_probability(image, output, metadata)
            self._under_labels(image)
        self.last_layer = output.labels
        self.last_result = outcome

    def _add_output(
        self, image: Image, outcome: SegmentOutcome, metadata: dict, previous: _Output | None
    ) -> _Output:
        """A new labels layer for ``outcome``: the image's first output, one beside another
        model's output (named with its model, in a colour of its own, to compare them), or
        one beside this model's ``previous`` output, which the user edited or removed."""
        name, colour = f"{image.name} labels", PREDICTION_COLOUR
        shown = [o for o in self._outputs_of(image) if o.labels in self.viewer.layers]
        if previous is not None and previous.labels in self.viewer.layers:
            name = previous.labels.name  # napari numbers the new one: "... labels [1]"
            colour = previous.labels.metadata.get(COLOUR_KEY, PREDICTION_COLOUR)
            show_info(f"{name!r} was edited since it was made; keeping it and adding a new layer.")
        elif shown:  # kept to compare the two models' results (its model in short)
            name = f"{image.name} labels ({metadata['model_name']})"
            colour = _free_colour(shown)
            other = shown[-1].labels
            who = other.metadata.get("model_label") or "another model"
            show_info(f"{other.name!r} is {who}'s; keeping it and adding {name!r} to compare.")
        digest = _digest(outcome.labels)
        # Hidden with its image: a dataset folder shows one picture, and the masks of the
        # hidden ones would cover it.
        layer = self.viewer.add_labels(
            outcome.labels,
            name=name,
            metadata={**metadata, DIGEST_KEY: digest, COLOUR_KEY: colour},
            visible=image.visible,
            **placement(image, outcome.labels.ndim),
        )
        output = _Output(
            labels=layer,
            digest=digest,
            probability=outcome.probability,
            defaults=dict(self._defaults),
        )
        self._colour(output, fresh=True)
        return output

    def _under_labels(self, image: Image) -> None:
        """Put ``image``'s probability maps below all its labels (each model's) and keep its
        newest labels active: on top a map would wash a mask out, and the brush paints on
        the active layer."""
        layers = self.viewer.layers
        outputs = [o for o in self._outputs_of(image) if o.labels in layers]
        for output in outputs:
            below = min(layers.index(o.labels) for o in outputs)
            if output.probability_layer is not None and output.probability_layer in layers:
                here = layers.index(output.probability_layer)
                if here > below:
                    layers.move(here, below)
        layers.selection.active = outputs[-1].labels

    def _write_labels(self, output: _Output, labels: np.ndarray) -> None:
        """Replace an output's labels (not a user edit), forget the layer's undo history,
        keep their digest (also in the metadata, for a reopened dock) and recolour it."""
        output.labels.data = labels
        _forget_history(output.labels)
        output.digest = _digest(labels)
        output.labels.metadata = {**output.labels.metadata, DIGEST_KEY: output.digest}
        self._colour(output)

    def _adopt_outputs(self) -> tuple[_Output | None, list[tuple[Image, SegmentOutcome]]]:
        """Take over the outputs an earlier Segment dock of this viewer made, so that the
        label settings update them again and a new run replaces those still as written.

        An output is a Labels layer whose metadata hold the probability, the label options,
        the digest of the labels as written and the name of an image still open; the last
        one of an image and model wins, with its probability map. Returns the chosen image's
        output (:meth:`_output_of`; None when it has none) and, per output, its image and
        what its metadata say of it (:func:`adopted_outcome`), for the summary (also kept
        as the summary line of its image and model, shown when that model is picked again
        after a comparison).
        """
        images = {
            layer.name: layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not is_probability_map(layer)
        }
        maps, adopted = {}, {}
        for layer in self.viewer.layers:
            meta = layer.metadata or {}
            name = meta.get("image")
            image = images.get(name) if isinstance(name, str) else None
            if image is None:
                continue
            key = (image.unique_id, _model_id(str(meta.get("model") or "")))
            if is_probability_map(layer):
                maps[key] = layer
            elif isinstance(layer, Labels) and _made_here(meta):
                self._outputs[key] = _Output(
                    labels=layer,
                    digest=meta[DIGEST_KEY],
                    probability=meta[PROBABILITY_KEY],
                    defaults=_adopted_defaults(meta),
                )
                adopted[key] = image
        for key, output in self._outputs.items():
            output.probability_layer = maps.get(key)
        chosen = self.image.value
        output = self._output_of(chosen) if chosen is not None else None
        described = []
        for key, image in adopted.items():
            outcome = adopted_outcome(self._outputs[key])
            self._outcomes[key] = (outcome, False)  # its line when its model is shown again
            described.append((image, outcome))
        return output, described

    def _colour(self, output: _Output, fresh: bool = False) -> None:
        """Colour the output in its colour (:data:`COLOUR_KEY`) as
        :func:`~._layer_style.prediction_colours` says (instances or binary, filled or
        outlined), on a ``fresh`` layer and on one in colours of ours (napari's random
        colours, the user's "shuffle colors", are kept); filled or outlined as the dock's
        "show outlines only" says (``_layer_style.prediction_look``: its opacity on a
        ``fresh`` layer only)."""
        layer = output.labels
        outlined = bool(self.outlines.value)
        if fresh or ours(layer.colormap):
            colour = layer.metadata.get(COLOUR_KEY, PREDICTION_COLOUR)
            instances = layer.data.dtype != np.uint8  # binary outputs are uint8 0/1
            layer.colormap = prediction_colours(colour, instances, outlined)
        contour, opacity = prediction_look(layer.data.shape, outlined)
        layer.contour = contour
        if fresh:  # a later write keeps the opacity the user set
            layer.opacity = opacity

    def _replaceable(self, output: _Output) -> bool:
        """Whether a previous output is still in the viewer and holds what was written.

        By content, not by paint events: a stroke undone (Ctrl+Z) leaves the model's labels
        as they were, and an edit made without events (``layer.data[...] = ...``) shows.
        """
        if output.labels not in self.viewer.layers:
            return False
        return _digest(output.labels.data) == output.digest

    def _put_probability(self, image: Image, output: _Output, metadata) -> Image:
        """The probability as an image layer (the compact uint8, shown as 0..1), marked as
        one of ours in its metadata (:func:`is_probability_map`)."""
        meta = {k: v for k, v in metadata.items() if k not in (PROBABILITY_KEY, DIGEST_KEY)}
        # Marked before it is added: adding makes it the active layer, and the dock's image
        # chooser, which follows the active layer, must recognise it then.
        meta[PROBABILITY_MARK] = "probability"
        old = output.probability_layer
        named = output.labels.name.replace(f"{image.name} labels", f"{image.name} probability", 1)
        if old is not None and old in self.viewer.layers:
            _follow_image_name(old, image.name, "probability")
            old.data = output.probability
            old.metadata = meta
            place_like(old, image)
            return old
        return self.viewer.add_image(
            output.probability,
            name=named,
            colormap="magma",
            contrast_limits=(0, 255),
            blending="additive",
            opacity=PROBABILITY_OPACITY,
            metadata=meta,
            visible=image.visible,
            **placement(image, output.probability.ndim),
        )


def _forget_history(labels: Labels) -> None:
    """Clear the undo and redo history of ``labels``, whose data were just replaced:
    napari's data setter keeps it, and Ctrl+Z would then replay strokes painted on the old
    labels onto the new ones (their pixels as they were then)."""
    # napari has no public way (it calls this when editing is switched off); a napari
    # without it keeps the history, as before (the tests of the dock's undo notice that)
    reset = getattr(labels, "_reset_history", None)
    if callable(reset):
        reset()


def _follow_image_name(layer: Labels | Image, image_name: str, role: str) -> None:
    """Rename an output ``layer`` that Segment named after its image ("<image> labels",
    maybe with :data:`_NAME_TAIL`) after the image, now named ``image_name``; a name the
    user gave it is kept (napari's Save dialog proposes the layer's name)."""
    made_from = (layer.metadata or {}).get("image")
    if not isinstance(made_from, str) or made_from == image_name:
        return
    given = re.fullmatch(re.escape(f"{made_from} {role}") + _NAME_TAIL, layer.name)
    if given is not None:
        layer.name = f"{image_name} {role}{given.group(1)}"


def banded_note(name: str) -> str:
    """What a user is told of an output made in bands: it has no probability map."""
    return (
        f"{name!r} is over the pixel budget, so it was segmented in bands and only its "
        "mask is kept, not its probability: the label settings (Threshold, Confidence, "
        "Output...) do not update it and no probability map is added. Segment again to "
        "apply new settings."
    )


def label_metadata(options, objects: int) -> dict:
    """The metadata an output layer keeps of the label settings it was derived with, and
    of the objects those labels hold."""
    return {
        "threshold": options.threshold,
        "output": "instances" if options.instances else "binary",
        "label_options": options.to_dict(),
        "objects": int(objects),
    }


def adopted_outcome(output: _Output) -> SegmentOutcome:
    """What an adopted output's metadata say of it, as the run that made it would: its
    labels as they are now, the options they were derived with, the model, mode and run
    time (None where the metadata do not hold them: made by an older version)."""
    meta = output.labels.metadata
    labels = np.asarray(output.labels.data)
    objects = meta.get("objects")
    if not isinstance(objects, int) or _digest(labels) != output.digest:  # edited since
        objects = count_objects(labels)
    seconds, windows = meta.get("seconds"), meta.get("windows")
    loading = meta.get("loading_seconds")
    return SegmentOutcome(
        labels=labels,
        probability=output.probability,
        label_options=LabelOptions(**meta["label_options"]),
        mapping=str(meta.get("mapping") or ""),
        mode=str(meta.get("mode") or ""),
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
        objects=objects,
        model_label=str(meta.get("model_label") or meta.get("model") or ""),
        conversion=str(meta.get("conversion") or ""),
        windows=windows if isinstance(windows, int) else 1,
        mode_mismatch=str(meta.get("mode_mismatch") or ""),
        loading=float(loading) if isinstance(loading, int | float) else 0.0,
    )


def _made_here(meta: dict) -> bool:
    """Whether layer metadata are those of a Segment output, all that re-deriving needs."""
    if not (
        isinstance(meta.get(PROBABILITY_KEY), np.ndarray)
        and isinstance(meta.get("label_options"), dict)
        and isinstance(meta.get(DIGEST_KEY), str)
    ):
        return False
    try:  # options a user or script changed into something else are not ours to derive
        LabelOptions(**meta["label_options"])
    except (TypeError, ValueError):
        return False
    return True


def _adopted_defaults(meta: dict) -> dict:
    """An adopted output's defaults: its model's own threshold, confidence, output kind and
    mode as the run that made it kept them; for an output without them (made by an older
    version), the label options it was derived with, so that settings left to the model
    keep their values."""
    kept = meta.get(MODEL_DEFAULTS_KEY)
    if isinstance(kept, dict) and {"threshold", "min_confidence", "instances"} <= set(kept):
        return dict(kept)
    options = meta["label_options"]
    return {
        "threshold": options["threshold"],
        "min_confidence": options["min_confidence"],
        "instances": options["instances"],
        "mode": meta.get("mode"),
    }


def _model_id(model: str) -> str:
    """A model as output keys name it: a registry name as it is, a checkpoint by its full path."""
    return os.path.abspath(model) if model and os.path.isfile(model) else model


def _digest(data) -> str:
    """Content hash of a label array (detects edits made without events)."""
    return content_digest(data)
