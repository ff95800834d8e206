"""The Segment dock shows one frame at a time, and follows the frame shown.

A mixin of :class:`~napari_tmunet._segment_widget.SegmentWidget` (it uses the dock's
``viewer``, ``image``, ``_outputs``, ``_is_mask`` and ``reset_choices``). Pictures opened
together (several files given or dropped at once) lie stacked at the origin, and the
masks of those underneath were drawn over the one in front. A *frame* is an image layer
that is a picture: drawn opaque (a channel added onto others, or a layer made
see-through, is an overlay), not a probability map, not a mask opened as an image. A
frame's *own layers* are its Segment outputs and probability maps and its masks: layers
whose metadata name it as their image, or named "<frame> ..." (Labels, probability maps,
masks opened as images). A file of channels the TM-UNet reader opened apart ("NAME [ch 0]",
"NAME [ch 1]") is one picture: its first channel is the frame, its other channels (added
onto it) are its own layers, and so are the results of any of them and the file's masks
(``_image_layers.owning_picture``: they name the file's picture). A channel picked in the
Image box, or selected, is shown with its file's frame and masks, and stays chosen.

Showing a frame (selecting it, clicking its eye, picking it in the Image box, Segment,
Segment all) hides the other frames that overlap it on the canvas, with their own layers,
and shows its own layers (but those the user had hidden). A frame hidden by its eye leaves
its own layers as they are (a mask may be looked at on black). The Image box follows the
frame shown and the frame of a layer selected, so the label settings act on the result
the user looks at. A layer of a frame selected (also as napari adds it) while another
frame is drawn where it lies shows its own frame: a frame's layers are never drawn over
another picture. A hidden layer napari selects itself, as it adds it (the hidden
pictures of a folder) or removes its neighbour, is not followed. A mask opened as an
image is drawn see-through, its zeros transparent
(:func:`~napari_tmunet._layer_style.mask_image_look`), so it hides or dims no picture,
until it is converted.

The view is fitted to a frame shown alone whose extent on the canvas differs from that
of the frame shown alone before (or of those it replaced); a frame of the same extent
keeps the user's zoom. A fitted view is fitted again as a dock narrows or widens the
canvas, while the user has not zoomed or panned. ``_view_fit`` owns both rules
(:func:`~napari_tmunet._view_fit.show_alone`).

Closing the frame in front shows the frame the Image box moves to, with its own layers;
the closed frame's own layers (its results, masks) are hidden, never deleted, and named
"<name> (picture closed)" (:data:`CLOSED_TAIL`), so the user knows their picture is gone.

Only the layers whose visibility changes are touched (:func:`set_visible`): napari rebuilds
its whole scene graph on every ``visible`` set, even one that changes nothing (0.1-0.2 s
with 40 pictures open), and the pictures of a folder lie hidden already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from napari.layers import Image, Labels

from ._image_layers import owning_picture
from ._layer_style import mask_image_look
from ._reader import CHANNEL_KEY, layer_picture
from ._view_fit import grid_enabled, show_alone, yx_extent
from ._widget_common import is_probability_map

# what the name of a layer whose picture was closed ends with (its picture's other layers
# are closed with it or kept; words, no "<>:" that a file name the Save dialog proposes
# from the layer's name could not hold on Windows)
CLOSED_TAIL = " (picture closed)"


class FrameVisibility:
    """One frame shown at a time (see the module docstring)."""

    def _watch_frames(self) -> None:
        """Follow the eyes of the image layers open now and of those added later, and tell
        the layers napari selects itself (as it adds or removes layers) from the user's."""
        from qtpy.QtCore import QTimer

        self._toggling = False  # the dock is showing or hiding layers itself
        self._adding_output = False  # an output being added (napari makes it active)
        # until the event loop turns (napari selects layers then, the user later): the layer
        # added last, which napari makes active, and whether layers were removed, after
        # which napari selects a neighbour
        self._inserted = None
        self._removing = False
        # frame id -> ids of its own layers the user hid while it was shown
        self._hidden_by_user: dict = {}
        self._closed_frames: list[Image] = []  # frames closed since the event loop turned
        for layer in self.viewer.layers:
            layer.events.visible.connect(self._on_layer_visible)
            self._see_through_if_mask(layer)
        self.viewer.layers.events.inserted.connect(self._watch_layer)
        self.viewer.layers.events.removed.connect(self._note_removal)
        self._settle_timer = QTimer(self.native)  # parented: it goes with the dock
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(0)
        self._settle_timer.timeout.connect(self._layers_settled)
        # activated: a pick of the user's in the Image box, not one the dock made
        self.image.native.activated.connect(lambda _index: self._show_frame(self.image.value))

    def _watch_layer(self, event) -> None:
        self._inserted = event.value
        self._settle_timer.start()
        event.value.events.visible.connect(self._on_layer_visible)
        self._see_through_if_mask(event.value)

    def _see_through_if_mask(self, layer) -> None:
        """Draw ``layer``, when it is a mask opened as an image at napari's opacity 1 (one
        the user made see-through is left as it is), see-through with its zeros
        transparent: opaque, it would hide the picture under it; grey at 0.5, dim it."""
        mask = isinstance(layer, Image) and not is_probability_map(layer)
        if mask and layer.opacity == 1 and self._is_mask(layer):
            mask_image_look(layer)

    def _note_removal(self, event=None) -> None:
        self._removing = True
        if event is not None and self._is_frame(event.value):
            self._closed_frames.append(event.value)
        self._settle_timer.start()

    def _layers_settled(self) -> None:
        """Once the event loop turned after layers were added or removed: napari's own
        selections are made; the layers of frames closed meanwhile are flagged
        (:meth:`_after_frames_closed`). A file's first channel closed while others of it
        are open closes no picture: the file's masks and results stay as they are."""
        self._inserted, self._removing = None, False
        closed, self._closed_frames = self._closed_frames, []
        closed = [frame for frame in closed if not self._channels_open(frame)]
        if closed and not self._closed:
            self._after_frames_closed(closed)

    def _after_frames_closed(self, closed: list[Image]) -> None:
        """The frames ``closed`` were closed: hide their own layers still open and name
        them "<name> (picture closed)"; when one of them was in front (shown), show the
        frame the Image box moved to, with its own layers (else the canvas is left black,
        or showing a result without its picture)."""
        owners = self._owners(self._frames() + closed)
        for frame in closed:
            self._hidden_by_user.pop(frame.unique_id, None)
        with self._toggled():
            for layer in self.viewer.layers:
                if any(owners.get(id(layer)) is frame for frame in closed):
                    set_visible(layer, False)
                    if not layer.name.endswith(CLOSED_TAIL):
                        layer.name += CLOSED_TAIL
        shown = [frame for frame in closed if frame.visible]  # as it was when closed
        chosen = self.image.value
        if not shown or chosen is None or chosen not in self.viewer.layers:
            return
        frame = chosen if self._is_frame(chosen) else owners.get(id(chosen))
        if frame is not None and frame in self.viewer.layers and not frame.visible:
            self._show_frame(frame, replaced=shown)
            self._choose_frame(frame)

    def _channels_open(self, frame: Image) -> bool:
        """Whether another channel of ``frame``'s file (a channel the TM-UNet reader opened
        apart) is open."""
        path = (frame.metadata or {}).get("path")
        return _is_channel(frame) and any(
            _is_channel(layer) and layer is not frame and layer.metadata.get("path") == path
            for layer in self.viewer.layers
        )

    def _is_frame(self, layer) -> bool:
        """Whether ``layer`` is a picture of its own: an image layer drawn opaque over what
        is under it, not made by Segment and not a mask opened as an image. An overlay (a
        channel added onto others, a layer made see-through) is left alone, but a file's
        other channels, which go with its first (:meth:`_owners`)."""
        return (
            isinstance(layer, Image)
            and not is_probability_map(layer)
            and layer.blending != "additive"
            and layer.opacity == 1
            and not self._is_mask(layer)
        )

    def _frames(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if self._is_frame(layer)]

    def _owners(self, frames: list[Image]) -> dict[int, Image]:
        """id(layer) -> the frame among ``frames`` that the layer belongs to, for each
        Labels layer, probability map and mask opened as an image that belongs to one: the
        image of a Segment output, else the frame it names as its picture (its metadata, or
        its file's name as a mask's: ``_image_layers.owning_picture``, the Metrics dock's
        pairing rule; a file of channels' picture is its first channel's frame, also for
        its other channels), else the one whose name starts its own ("<frame> mask",
        "<frame> labels (model)", "<frame> [1]"; the longest)."""
        by_id = {frame.unique_id: frame for frame in frames}
        made = {}  # id(layer) -> its image, of Segment's outputs and probability maps
        for (image_id, _), output in self._outputs.items():
            for layer in (output.labels, output.probability_layer):
                if layer is not None and image_id in by_id:
                    made[id(layer)] = by_id[image_id]
        by_name = {frame.name: frame for frame in frames}
        for frame in frames:  # a channel's frame: by its file's picture too
            by_name.setdefault(layer_picture(frame), frame)
        owners = {}
        for layer in self.viewer.layers:
            owner = made.get(id(layer)) or by_name.get(owning_picture(layer))
            if owner is None:
                prefixed = [frame for frame in frames if layer.name.startswith(f"{frame.name} ")]
                owner = max(prefixed, key=lambda frame: len(frame.name), default=None)
            if owner is not None and owner is not layer and self._may_belong(layer):
                owners[id(layer)] = owner
        return owners

    def _may_belong(self, layer) -> bool:
        """Whether ``layer`` is of a kind that belongs to a frame: Labels, a probability
        map, a mask opened as an image, a channel of a file (not its frame)."""
        if isinstance(layer, Labels) or is_probability_map(layer) or _is_channel(layer):
            return True
        return isinstance(layer, Image) and self._is_mask(layer)

    def _own_layers(self, frame: Image, owners: dict[int, Image]) -> list:
        """The layers that belong to ``frame`` (``owners``: :meth:`_owners`)."""
        return [layer for layer in self.viewer.layers if owners.get(id(layer)) is frame]

    def _show_frame(self, layer, replaced: list | None = None) -> None:
        """Show the image ``layer``, and its own layers when it was hidden; when it is a
        frame, hide the others that overlap it (:meth:`_hide_covered`) and fit the view to
        it when it is shown alone at another extent (:meth:`_fit_view`; ``replaced``: the
        frames shown before, were they closed). A channel of a file that is no frame is
        shown with its file (:meth:`_show_channel`)."""
        if layer is None or layer not in self.viewer.layers:
            return
        if _is_channel(layer) and not self._is_frame(layer):
            self._show_channel(layer)
            return
        hidden = self._hide_covered(layer)
        if not layer.visible:
            with self._toggled():
                set_visible(layer, True)
            self._show_own_layers(layer)
        self._fit_view(layer, hidden + (replaced or []))

    def _show_channel(self, layer: Image) -> None:
        """Show the channel ``layer`` (added onto its file's first channel, the frame) with
        its file: the frame, with the file's masks, results and other channels, when the
        channel was hidden or its frame lies hidden under another picture (as a mask
        selected shows its frame, :meth:`_follow_selected`); then the channel itself."""
        frames = self._frames()
        frame = self._owners(frames).get(id(layer))
        if frame is not None:
            elsewhere = any(f.visible and f is not frame and _overlap(f, frame) for f in frames)
            if not layer.visible or (not frame.visible and elsewhere):
                self._show_frame(frame)
        with self._toggled():
            set_visible(layer, True)

    def _fit_view(self, frame, replaced: list) -> None:
        """When ``frame`` is the only frame shown, fit the view to it as ``_view_fit`` says
        (:func:`~napari_tmunet._view_fit.show_alone`: at another extent than the frame
        shown alone before, or, before one was, than a frame in ``replaced``: those it hid
        or that were closed). Frames laid side by side, or napari's grid, keep the view
        the user made."""
        if not self._is_frame(frame) or not frame.visible or grid_enabled(self.viewer):
            return
        if any(other.visible and other is not frame for other in self._frames()):
            return
        show_alone(self.viewer, frame, replaced)

    def _hide_covered(self, layer) -> list[Image]:
        """When ``layer`` is a frame, hide the other frames that overlap it on the canvas,
        and their own layers (also those of a frame the user hid, shown on their own): they
        would cover it, or be drawn over it. Returns the frames it hid that were shown."""
        if not self._is_frame(layer):
            return []
        frames = self._frames()
        owners = self._owners(frames)
        own_of: dict[int, list] = {}  # id(frame) -> its own layers (one pass, not one a frame)
        for other in self.viewer.layers:
            if id(other) in owners:
                own_of.setdefault(id(owners[id(other)]), []).append(other)
        shown = []
        with self._toggled():
            for frame in frames:
                if frame is layer or not _overlap(frame, layer):
                    continue
                own = own_of.get(id(frame), [])
                if frame.visible:  # those the user hid stay hidden when it is shown again
                    hidden = {other.unique_id for other in own if not other.visible}
                    self._hidden_by_user[frame.unique_id] = hidden
                    set_visible(frame, False)
                    shown.append(frame)
                for other in own:
                    set_visible(other, False)
        return shown

    def _show_own_layers(self, frame: Image) -> None:
        """Show ``frame``'s own layers, but those the user had hidden."""
        kept = self._hidden_by_user.pop(frame.unique_id, set())
        with self._toggled():
            for layer in self._own_layers(frame, self._owners(self._frames())):
                if layer.unique_id not in kept:
                    set_visible(layer, True)

    def _on_layer_visible(self, event) -> None:
        """A frame's eye clicked on: the frames it overlaps are hidden with their own layers,
        its own layers shown, and it is chosen. (One clicked off leaves its own layers as
        they are: a mask may be looked at on black.)"""
        layer = event.source
        if self._closed or self._toggling or layer not in self.viewer.layers:
            return
        if layer.visible and self._is_frame(layer):
            hidden = self._hide_covered(layer)
            self._show_own_layers(layer)
            self._fit_view(layer, hidden)
            self._choose_frame(layer)

    def _choose_frame(self, frame: Image, image: Image | None = None) -> None:
        """Put ``image`` (a channel of ``frame``'s file, the image of a result), else
        ``frame``, in the Image box (the label settings act on its result); without
        ``image``, a channel of ``frame``'s file there already stays (a file's mask
        selected leaves the channel the user picked chosen)."""
        chosen = self.image.value
        if image is None:
            mine = chosen is not None and chosen in self.viewer.layers and _is_channel(chosen)
            owner = self._owners(self._frames()).get(id(chosen)) if mine else None
            image = chosen if owner is frame else frame
        if image is not chosen:
            self.reset_choices()
            self.image.value = image

    def _image_of(self, layer) -> Image | None:
        """The image ``layer`` stands for in the Image box: a channel itself; the image a
        Segment output or probability map of the dock was made from, while open; None."""
        if _is_channel(layer):
            return layer
        for (image_id, _), output in self._outputs.items():
            if layer is output.labels or layer is output.probability_layer:
                return next((i for i in self.viewer.layers if i.unique_id == image_id), None)
        return None

    def _follow_selected(self, layer) -> None:
        """Follow the layer the user selected: a frame is shown alone and chosen; a layer of
        a frame (its output or mask, also one opened as an image) chooses its frame, which
        is shown if the layer was hidden, or drawn over another frame (a mask opened while
        another picture is in front). A hidden layer napari selected itself is not
        followed: one it added (also the hidden pictures of a folder), or the neighbour of
        one removed; nor an output the dock is adding."""
        by_napari = layer is self._inserted or self._removing
        if self._adding_output or (by_napari and not layer.visible):
            return
        if self._is_frame(layer):
            self._show_frame(layer)
            self._choose_frame(layer)
            return
        frames = self._frames()
        frame = self._owners(frames).get(id(layer))
        if frame is None:
            return
        # a frame hidden by its eye leaves its shown mask on black; not over another picture
        elsewhere = any(f.visible and f is not frame and _overlap(f, frame) for f in frames)
        if _is_channel(layer):
            self._show_channel(layer)
        elif not layer.visible or (not frame.visible and elsewhere):
            self._show_frame(frame)
        self._choose_frame(frame, self._image_of(layer))

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


def _is_channel(layer) -> bool:
    """Whether ``layer`` is a channel the TM-UNet reader opened apart from a file of
    channels (``_reader.image_layers_data``)."""
    return isinstance(layer, Image) and CHANNEL_KEY in (layer.metadata or {})


def set_visible(layer, visible: bool) -> None:
    """Show or hide ``layer``, only when that changes it: napari emits ``visible`` and
    rebuilds the canvas's scene graph (all layers) on every set, also one to the same
    value."""
    if layer.visible != visible:
        layer.visible = visible


def _overlap(first, second) -> bool:
    """Whether two layers cover a common area of the canvas: their world extents' last
    two axes (y, x) intersect."""
    a, b = yx_extent(first), yx_extent(second)  # (2, 2): min and max of y, x
    return bool(np.all(np.maximum(a[0], b[0]) < np.minimum(a[1], b[1])))
