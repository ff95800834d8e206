"""The Segment dock shows one frame at a time, and follows the frame shown.

A mixin of :class:`~napari_tmunet._segment_widget.SegmentWidget` (it uses the dock's
``viewer``, ``image``, ``_outputs``, ``_is_mask`` and ``reset_choices``). Pictures opened
together (several files given or dropped at once) lie stacked at the origin, and the
masks of those underneath were drawn over the one in front. A *frame* is an image layer
that is a picture: drawn opaque (a channel added onto others, or a layer made
see-through, is an overlay), not a probability map, not a mask opened as an image. A
frame's *own layers* are its Segment outputs and probability maps and its masks: layers
whose metadata name it as their image, or named "<frame> ..." (Labels, probability maps,
masks opened as images).

Showing a frame (selecting it, clicking its eye, picking it in the Image box, Segment,
Segment all) hides the other frames that overlap it on the canvas, with their own layers;
a frame hidden hides its own layers, and one shown again shows them (but those the user
had hidden). A hidden frame selected in the layer list is not shown: napari selects each
layer it adds, also the hidden pictures of a folder, and a neighbour of a layer deleted.
The Image box follows the frame shown and the frame of an output selected, so the label
settings act on the result the user looks at.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from napari.layers import Image, Labels

from ._widget_common import is_probability_map


class FrameVisibility:
    """One frame shown at a time (see the module docstring)."""

    def _watch_frames(self) -> None:
        """Follow the eyes of the image layers open now and of those added later."""
        self._toggling = False  # the dock is showing or hiding layers itself
        self._adding_output = False  # an output being added (napari makes it active)
        # frame id -> ids of its own layers the user hid while it was shown
        self._hidden_by_user: dict = {}
        for layer in self.viewer.layers:
            layer.events.visible.connect(self._on_layer_visible)
        self.viewer.layers.events.inserted.connect(self._watch_layer)
        # activated: a pick of the user's in the Image box, not one the dock made
        self.image.native.activated.connect(lambda _index: self._show_frame(self.image.value))

    def _watch_layer(self, event) -> None:
        event.value.events.visible.connect(self._on_layer_visible)

    def _is_frame(self, layer) -> bool:
        """Whether ``layer`` is a picture of its own: an image layer drawn opaque over what
        is under it, not made by Segment and not a mask opened as an image. An overlay (a
        channel added onto others, a layer made see-through) is left alone."""
        return (
            isinstance(layer, Image)
            and not is_probability_map(layer)
            and layer.blending != "additive"
            and layer.opacity == 1
            and not self._is_mask(layer)
        )

    def _frames(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if self._is_frame(layer)]

    def _frame_of(self, layer, frames: list[Image]) -> Image | None:
        """The frame among ``frames`` that ``layer`` belongs to: the image of a Segment
        output, else the frame its metadata name, else the one whose name starts its own
        ("<frame> mask", "<frame> labels (model)"; the longest such name); None for a frame
        or a layer of no frame."""
        mask = isinstance(layer, Image) and not is_probability_map(layer) and self._is_mask(layer)
        if not (isinstance(layer, Labels) or is_probability_map(layer) or mask):
            return None
        for (image_id, _), output in self._outputs.items():
            if layer is output.labels or layer is output.probability_layer:
                return next((frame for frame in frames if frame.unique_id == image_id), None)
        named = (layer.metadata or {}).get("image")
        by_name = [frame for frame in frames if frame.name == named]
        if by_name:
            return by_name[0]
        prefixed = [frame for frame in frames if layer.name.startswith(f"{frame.name} ")]
        return max(prefixed, key=lambda frame: len(frame.name), default=None)

    def _own_layers(self, frame: Image) -> list:
        """The layers that belong to ``frame`` (:meth:`_frame_of`)."""
        frames = self._frames()
        return [
            layer
            for layer in self.viewer.layers
            if layer is not frame and self._frame_of(layer, frames) is frame
        ]

    def _show_frame(self, layer) -> None:
        """Show the image ``layer``, and its own layers when it was hidden; when it is a
        frame, hide the other frames that overlap it (:meth:`_hide_covered`)."""
        if layer is None or layer not in self.viewer.layers:
            return
        self._hide_covered(layer)
        if not layer.visible:
            with self._toggled():
                layer.visible = True
            self._show_own_layers(layer)

    def _hide_covered(self, layer) -> None:
        """When ``layer`` is a frame, hide the other shown frames that overlap it on the
        canvas, with their own layers: they would cover it, or their masks would be drawn
        over it."""
        if not self._is_frame(layer):
            return
        covered = [
            frame
            for frame in self._frames()
            if frame is not layer and frame.visible and _overlap(frame, layer)
        ]
        with self._toggled():
            for frame in covered:
                frame.visible = False
                self._hide_own_layers(frame)

    def _hide_own_layers(self, frame: Image) -> None:
        """Hide ``frame``'s own layers, noting those the user had hidden already."""
        own = self._own_layers(frame)
        self._hidden_by_user[frame.unique_id] = {
            layer.unique_id for layer in own if not layer.visible
        }
        with self._toggled():
            for layer in own:
                layer.visible = False

    def _show_own_layers(self, frame: Image) -> None:
        """Show ``frame``'s own layers, but those the user had hidden."""
        kept = self._hidden_by_user.pop(frame.unique_id, set())
        with self._toggled():
            for layer in self._own_layers(frame):
                if layer.unique_id not in kept:
                    layer.visible = True

    def _on_layer_visible(self, event) -> None:
        """A frame's eye clicked: shown, the frames it overlaps are hidden, its own layers
        shown, and it is chosen; hidden, its own layers are hidden with it."""
        layer = event.source
        if self._closed or self._toggling or layer not in self.viewer.layers:
            return
        if not self._is_frame(layer):
            return
        if layer.visible:
            self._hide_covered(layer)
            self._show_own_layers(layer)
            self._choose_frame(layer)
        else:
            self._hide_own_layers(layer)

    def _choose_frame(self, frame: Image) -> None:
        """Put ``frame`` in the Image box (the label settings act on its result)."""
        if frame is not self.image.value:
            self.reset_choices()
            self.image.value = frame

    def _follow_selected(self, layer) -> None:
        """Follow the layer the user selected, when it is a shown frame (shown alone) or a
        shown layer of a frame (its output or mask: its frame is chosen)."""
        if self._adding_output or not layer.visible:
            return
        if self._is_frame(layer):
            self._show_frame(layer)
            self._choose_frame(layer)
            return
        frame = self._frame_of(layer, self._frames())
        if frame is not None:
            self._choose_frame(frame)

    @contextlib.contextmanager
    def _toggled(self) -> Iterator[None]:
        """Visibility changes made by the dock itself: not the user's eye clicks."""
        before, self._toggling = self._toggling, True
        try:
            yield
        finally:
            self._toggling = before

    @contextlib.contextmanager
    def _adding(self) -> Iterator[None]:
        """An output being added: napari makes it the active layer, which is no choice of
        the user's (Segment all adds the outputs of frames side by side one by one)."""
        self._adding_output = True
        try:
            yield
        finally:
            self._adding_output = False


def _overlap(first, second) -> bool:
    """Whether two layers cover a common area of the canvas: their world extents' last
    two axes (y, x) intersect."""
    a = np.asarray(first.extent.world, dtype=float)[:, -2:]  # (2, 2): min and max of y, x
    b = np.asarray(second.extent.world, dtype=float)[:, -2:]
    return bool(np.all(np.maximum(a[0], b[0]) < np.minimum(a[1], b[1])))
