"""The Fine-tune dock's training pairs: an image layer and its corrected Labels layer.

The Labels layer pre-selected for an image is the Segment output of that image that the
user edited (Segment keeps the model's own prediction in the layer's metadata, so an
edit shows), else a reference mask of the image (a layer named after it that Segment did
not make, e.g. a sample's mask), else an unedited Segment output of it. A layer whose
shape does not fit the image is never chosen: the chooser stays empty and says why.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels

from ._widget_common import full_data, is_probability_map, keeping_layers, narrow
from .data.colour_spaces import GREY_ALPHA, colour_conversion
from .postprocess import kept_prediction
from .training.finetune import TrainingPair, training_pairs

NO_FIT = "no Labels layer of this image's shape"
IMAGE_TIP = "The image layer to train on."
LABELS_TIP = (
    "Its corrected Labels layer (pre-selected: the Segment output you edited, else the "
    "image's reference mask)."
)


class PairRow(Container):
    """One (image layer, Labels layer) pair: the two choosers one above the other (side by
    side each showed two or three characters of a name in a 1366 x 768 window), and a
    remove button beside them.

    The Labels chooser (``mask``) may be empty: its empty entry reads :data:`NO_FIT`. Each
    chooser's tooltip starts with the full name of its layer (the box may show it elided).
    """

    def __init__(self, image_choices, labels_choices, on_remove):
        super().__init__(layout="horizontal", labels=False)
        self.user_choice = False  # the user picked the Labels layer: keep it
        self._filling = False  # our own changes of the Labels choice
        self.image = ComboBox(choices=image_choices)
        self.mask = ComboBox(choices=labels_choices, nullable=True)
        self.mask.null_string = NO_FIT
        self.mask.reset_choices()  # the empty entry with its new text
        self.remove_button = PushButton(text="✕", tooltip="Remove this pair.")
        self.remove_button.max_width = 28
        narrow(self.image)
        narrow(self.mask)
        choosers = Container(widgets=[self.image, self.mask], labels=False)
        choosers.margins = (0, 0, 0, 0)
        choosers.native.layout().setSpacing(2)  # closer than to the next pair: one pair
        self.extend([choosers, self.remove_button])
        self.margins = (0, 0, 0, 0)
        self.remove_button.changed.connect(lambda: on_remove(self))
        self.image.changed.connect(self.show_names)
        self.mask.changed.connect(self.show_names)
        self.show_names()

    def reset_choices(self, *_args) -> None:
        """Refresh both choosers and their tooltips; each stays on its layer when that is
        renamed."""
        with keeping_layers([self.image, self.mask]):
            super().reset_choices()
        self.show_names()

    def show_names(self, _=None) -> None:
        """Put the chosen layers' full names at the head of the choosers' tooltips."""
        image, labels = self.image.value, self.mask.value
        self.image.tooltip = f"{image.name}\n{IMAGE_TIP}" if image is not None else IMAGE_TIP
        self.mask.tooltip = f"{labels.name if labels is not None else NO_FIT}\n{LABELS_TIP}"


def fits(image: Image, labels: Labels) -> bool:
    """Whether ``labels`` has the spatial shape of ``image`` (an (H, W, 2) grey + alpha
    image is (H, W): Segment reads it as grey)."""
    shape = full_data(image).shape
    channels = image.rgb or colour_conversion(shape, image.rgb) == GREY_ALPHA
    spatial = shape[:-1] if channels else shape
    return tuple(full_data(labels).shape) == tuple(spatial)


def guess_labels(
    image: Image, candidates: list[Labels], shown: Labels | None = None
) -> Labels | None:
    """The Labels layer most likely to be the user's correction of ``image``.

    Of the layers that fit the image: a Segment output of this image that the user
    edited, then a reference mask (not made by Segment, and named after the image or
    ``shown``, the layer the pair already shows: a rename keeps it the reference), then
    an unedited Segment output of it, then any other; the last added of equals.
    """

    def rank(item: tuple[int, Labels]) -> tuple:
        index, layer = item
        meta = layer.metadata or {}
        segmented = "tmunet_probability" in meta
        ours = segmented and meta.get("image") == image.name
        predicted = kept_prediction(meta) if ours else None
        edited = predicted is not None and bool(np.any((np.asarray(layer.data) > 0) != predicted))
        reference = not segmented and (layer is shown or layer.name.startswith(image.name))
        return (edited, reference, ours, index)

    fitting = [(i, la) for i, la in enumerate(candidates) if fits(image, la)]
    return max(fitting, key=rank)[1] if fitting else None


class PairRows:
    """The Fine-tune dock's pair rows: made, pre-filled, refilled as layers come and go.

    A mixin of :class:`~napari_tmunet._finetune_widget.FinetuneWidget` (it uses the dock's
    ``viewer``, ``rows``, ``pairs_box``, ``reset_choices`` and ``_show_model_state``).
    """

    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        """Image layers to train on; Segment's probability maps are model output, not images."""
        return [
            (la.name, la)
            for la in self.viewer.layers
            if isinstance(la, Image) and not is_probability_map(la)
        ]

    def _labels_choices(self, _widget=None) -> list[tuple[str, Labels]]:
        return [(la.name, la) for la in self.viewer.layers if isinstance(la, Labels)]

    def add_pair(self, _=None) -> PairRow:
        """Add a row, pre-filled with an unused image and the Labels layer that fits it."""
        row = PairRow(self._image_choices, self._labels_choices, self.remove_pair)
        used = [r.image.value for r in self.rows]
        image = next((la for _, la in self._image_choices() if la not in used), None)
        if image is not None:
            row.image.value = image
        self._fill_labels(row)
        row.image.changed.connect(lambda _: self._on_row_image(row))
        row.mask.changed.connect(lambda _: self._on_row_labels(row))
        self.rows.append(row)
        self.pairs_box.append(row)
        return row

    def remove_pair(self, row: PairRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self.pairs_box.remove(row)
            self._show_model_state()  # the first pair may have changed

    def _on_layers_changed(self, event=None):
        layer = getattr(event, "value", None)
        if isinstance(layer, Labels) and event.type == "inserted":
            # an edit of a Segment output makes it the likelier correction
            layer.events.paint.connect(self._refill_rows)
        for row in self.rows:
            row._filling = True
        try:
            self.reset_choices()
        finally:
            for row in self.rows:
                row._filling = False
        self._refill_rows()
        self._show_model_state()

    def _refill_rows(self, _event=None) -> None:
        for row in self.rows:
            self._fill_labels(row)

    def _on_row_image(self, row: PairRow) -> None:
        self._fill_labels(row, refit=True)
        self._show_model_state()

    def _on_row_labels(self, row: PairRow) -> None:
        if not row._filling:
            row.user_choice = True  # the user's pick is kept from now on
        self._show_model_state()

    def _fill_labels(self, row: PairRow, refit: bool = False):
        """Give a row the Labels layer that fits its image best (see :func:`guess_labels`),
        unless the user picked one that still fits; none when no layer fits."""
        image = row.image.value
        current = row.mask.value
        if image is None:
            return
        if row.user_choice and current is not None and not refit and fits(image, current):
            return
        shown = None if refit else current  # of the row's previous image after a refit
        guess = guess_labels(image, [la for _, la in self._labels_choices()], shown)
        if guess is not current:
            row._filling = True
            try:
                row.mask.value = guess
            finally:
                row._filling = False

    def _layer_pairs(self) -> list[TrainingPair]:
        """Copies of the chosen layers' data (painting may go on during training), the
        images' colours converted as Segment converts them (grey + alpha to grey, CMYK to
        RGB)."""
        from ._segment_widget import _colour_conversion

        pairs = []
        for row in self.rows:
            image, labels = row.image.value, row.mask.value
            if image is None and labels is None:
                continue
            if image is None or labels is None:
                raise ValueError("every pair needs an image layer and a Labels layer")
            pairs += training_pairs(
                np.array(full_data(image)),
                np.array(full_data(labels)),
                name=image.name,
                rgb=bool(image.rgb),
                source=f"layers {image.name!r} + {labels.name!r}",
                predicted=kept_prediction(labels.metadata),  # tells the edits apart
                conversion=_colour_conversion(image),
            )
        return pairs
