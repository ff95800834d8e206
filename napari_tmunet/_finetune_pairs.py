"""The Fine-tune dock's training pairs: an image layer and its corrected Labels layer.

The Labels layer pre-selected for an image is the Segment output of that image that the
user edited (Segment keeps the model's own prediction in the layer's metadata, so an
edit shows), before any other Segment output of it, a layer named after it, or a
reference mask.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels

from ._widget_common import narrow
from .postprocess import kept_prediction


class PairRow(Container):
    """One (image layer, Labels layer) pair with a remove button."""

    def __init__(self, image_choices, labels_choices, on_remove):
        super().__init__(layout="horizontal", labels=False)
        self.user_choice = False  # the user picked the Labels layer: keep it
        self._filling = False  # our own changes of the Labels choice
        self.image = ComboBox(choices=image_choices, tooltip="The image layer to train on.")
        self.labels = ComboBox(
            choices=labels_choices,
            tooltip="Its corrected Labels layer (pre-selected: the Segment output you edited).",
        )
        self.remove_button = PushButton(text="✕", tooltip="Remove this pair.")
        self.remove_button.max_width = 28
        narrow(self.image)
        narrow(self.labels)
        self.extend([self.image, self.labels, self.remove_button])
        self.margins = (0, 0, 0, 0)
        self.remove_button.changed.connect(lambda: on_remove(self))


def fits(image: Image, labels: Labels) -> bool:
    shape = image.data[0].shape if image.multiscale else image.data.shape
    spatial = shape[:-1] if image.rgb else shape
    lshape = labels.data[0].shape if labels.multiscale else labels.data.shape
    return tuple(lshape) == tuple(spatial)


def guess_labels(image: Image, candidates: list[Labels]) -> Labels | None:
    """The Labels layer most likely to be the user's correction of ``image``.

    Of the layers that fit the image: a Segment output of this image that the user
    edited, then any Segment output of it, then one named after the image; the last
    added of equals. A reference mask (e.g. a sample's) comes last.
    """

    def rank(item: tuple[int, Labels]) -> tuple:
        index, layer = item
        meta = layer.metadata or {}
        ours = meta.get("image") == image.name and "tmunet_probability" in meta
        predicted = kept_prediction(meta) if ours else None
        edited = predicted is not None and bool(np.any((np.asarray(layer.data) > 0) != predicted))
        return (edited, ours, layer.name.startswith(image.name), index)

    fitting = [(i, la) for i, la in enumerate(candidates) if fits(image, la)]
    return max(fitting, key=rank)[1] if fitting else None
