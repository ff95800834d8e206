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

from ._widget_common import full_data, keeping_layers, narrow
from .postprocess import kept_prediction

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
    """Whether ``labels`` has the spatial shape of ``image``."""
    shape = full_data(image).shape
    spatial = shape[:-1] if image.rgb else shape
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
