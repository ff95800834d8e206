"""The Fine-tune dock's training pairs: an image layer and its corrected Labels layer.

The Labels layer pre-selected for an image is the Segment output of that image that the
user edited (Segment keeps the model's own prediction in the layer's metadata, so an
edit shows), else a reference mask of the image (a layer named after it that Segment did
not make, e.g. a sample's mask), else an unedited Segment output of it. A layer whose
shape does not fit the image is never chosen: the chooser stays empty and says why.

A row whose image or Labels layer is closed becomes empty and says so (it never falls
back to another layer). A row whose Labels layer is a Segment output the user did not
edit, while another row's is edited, says under its choosers that it will not be
trained on (Start leaves it out: the model's own output, ``finetune.edited_only``); a
stack's frames are pairs, so a partly edited stack's row names the edited frames that
train and counts the unedited ones left out. While no row is edited, such a row says it
is not corrected yet, and Start refuses unless a reference mask or a dataset folder
trains too (``finetune.nothing_corrected``). An
image layer that looks like a mask (Segment all's rule) is not offered. Start refuses a
row with a closed layer, an incomplete one, one whose image became a mask, and two rows
of the same layer (:meth:`PairRows._pair_problem`).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Image, Labels

from ._image_layers import owning_picture
from ._widget_common import (
    full_data,
    hold_texts,
    is_probability_map,
    keeping_layers,
    narrow,
    wrap,
)
from .data.colour_spaces import GREY_ALPHA, colour_conversion
from .postprocess import kept_prediction, made_by_segment
from .training.finetune import TrainingPair, number_runs, training_pairs

NO_FIT = "no Labels of this shape"  # short: the chooser is as wide as it (hold_texts)
NO_IMAGE = "no image open"
UNEDITED = "not edited (the model's own output): will not be trained on"
# while no pair is corrected: an unedited Segment output trains, or Start refuses when
# nothing else does (``finetune.nothing_corrected``)
NOT_CORRECTED = "not corrected yet: it would train the model on its own output"
CLOSED = {"image": "its image was closed", "mask": "its Labels were closed"}
IMAGE_TIP = "The image layer to train on."
LABELS_TIP = (
    "Its corrected Labels layer (pre-selected: the Segment output you edited, else the "
    "image's reference mask)."
)


class PairRow(Container):
    """One (image layer, Labels layer) pair: its title ("Pair 1", :meth:`number`) in the
    dock's label column, the two choosers one above the other (side by side each showed
    two or three characters of a name in a 1366 x 768 window), a remove button beside
    them, and under them its note, across the dock's width.

    The Labels chooser (``mask``) may be empty: its empty entry reads :data:`NO_FIT`. Each
    chooser's tooltip starts with the full name of its layer (the box may show it elided).
    """

    def __init__(self, image_choices, labels_choices, on_remove):
        super().__init__(labels=False)
        self.user_choice = False  # the user picked the Labels layer: keep it
        self._filling = False  # our own changes of the Labels choice
        self.closed: dict[str, str] = {}  # "image" / "mask" -> name of the closed layer
        self.image = ComboBox(choices=image_choices, nullable=True)
        self.mask = ComboBox(choices=labels_choices, nullable=True)
        self.image.null_string = NO_IMAGE
        self.mask.null_string = NO_FIT
        self.image.reset_choices()  # the empty entries with their new texts
        self.mask.reset_choices()
        self.remove_button = PushButton(text="✕", tooltip="Remove this pair.")
        self.remove_button.max_width = 28
        narrow(self.image)
        narrow(self.mask)
        # their empty entries say why they are empty: read whole, as a layer's name is not
        hold_texts(self.image, (NO_IMAGE, CLOSED["image"]))
        hold_texts(self.mask, (NO_FIT, CLOSED["mask"]))
        # the dock's label column holds the pair's title, not one "Pairs" beside them all:
        # the note under the choosers then spans the dock (in the value column a stack's
        # note took 4 lines, tester36 #7), and the messages' "Pair 2" is found
        self.title = Label(value="Pair")
        self.note = Label(value="", visible=False)  # why the pair will not be trained on
        wrap(self.note)
        choosers = Container(widgets=[self.image, self.mask], labels=False)
        line = Container(
            widgets=[self.title, choosers, self.remove_button], layout="horizontal", labels=False
        )
        for box in (choosers, line, self):
            box.margins = (0, 0, 0, 0)
        for box in (choosers, self):
            box.native.layout().setSpacing(2)  # closer than to the next pair: one pair
        self.extend([line, self.note])
        self.remove_button.changed.connect(lambda: on_remove(self))
        self.image.changed.connect(self.show_names)
        self.mask.changed.connect(self.show_names)
        self.show_names()

    def number(self, number: int) -> None:
        """Title the pair "Pair ``number``" (as the dock's messages name it)."""
        self.title.value = f"Pair {number}"

    def reset_choices(self, *_args) -> None:
        """Refresh both choosers and their tooltips; each stays on its layer when that is
        renamed, and becomes empty, saying so, when its layer is closed."""
        with keeping_layers([self.image, self.mask]):
            before = {"image": self.image.value, "mask": self.mask.value}
            super().reset_choices()
            for key, layer in before.items():
                chooser = getattr(self, key)
                if layer is not None and not any(c is layer for c in chooser.choices):
                    self.closed[key] = layer.name
                    chooser.value = None
                    self._say_empty(key)
        self.show_names()

    def say_left_out(self, note: str) -> None:
        """Show ``note`` (what Start leaves out of the pair, :func:`left_out_note`) under
        the choosers; hide it when "" (nothing is)."""
        self.note.value = note
        self.note.visible = bool(note)

    def reopen(self) -> None:
        """Forget the closed layers (the user chose another image): the choosers' empty
        entries read as usual again."""
        self.closed.clear()
        for key in ("image", "mask"):
            self._say_empty(key)

    def _say_empty(self, key: str) -> None:
        """Give chooser ``key``'s empty entry its text: closed, or the usual one."""
        chooser = getattr(self, key)
        text = CLOSED[key] if key in self.closed else (NO_IMAGE if key == "image" else NO_FIT)
        if chooser.null_string != text:
            chooser.null_string = text
            value = chooser.value
            with chooser.changed.blocked():
                chooser.reset_choices()
                chooser.value = value

    def show_names(self, _=None) -> None:
        """Put the chosen layers' full names, or the closed ones', at the head of the
        choosers' tooltips."""
        for key, tip in (("image", IMAGE_TIP), ("mask", LABELS_TIP)):
            chooser = getattr(self, key)
            layer = chooser.value
            if layer is not None:
                head = layer.name
            elif key in self.closed:
                head = f"{self.closed[key]!r} was closed: choose another or remove the pair"
            else:
                head = chooser.null_string
            chooser.tooltip = f"{head}\n{tip}"


def fits(image: Image, labels: Labels) -> bool:
    """Whether ``labels`` has the spatial shape of ``image`` (an (H, W, 2) grey + alpha
    image is (H, W): Segment reads it as grey)."""
    shape = full_data(image).shape
    channels = image.rgb or colour_conversion(shape, image.rgb) == GREY_ALPHA
    spatial = shape[:-1] if channels else shape
    return tuple(full_data(labels).shape) == tuple(spatial)


def guess_labels(
    image: Image, candidates: list[Labels], shown: Labels | None = None, own: bool = False
) -> Labels | None:
    """The Labels layer most likely to be the user's correction of ``image``.

    Of the layers that fit the image: a Segment output of this image that the user
    edited, then a reference mask (not made by Segment, and named after the image or
    ``shown``, the layer the pair already shows: a rename keeps it the reference), then
    an unedited Segment output of it, then any other (not with ``own``: after the
    pair's Labels layer was closed, another image's must not take its place); the last
    added of equals.
    """

    def rank(item: tuple[int, Labels]) -> tuple:
        index, layer = item
        meta = layer.metadata or {}
        segmented = made_by_segment(meta)
        ours = segmented and meta.get("image") == image.name
        reference = not segmented and (layer is shown or named_after(layer, image))
        return (edited_output(layer, image), reference, ours, index)

    fitting = [(i, la) for i, la in enumerate(candidates) if fits(image, la)]
    if own:
        fitting = [item for item in fitting if any(rank(item)[:3])]
    return max(fitting, key=rank)[1] if fitting else None


def named_after(layer: Labels, image: Image) -> bool:
    """Whether ``layer`` is named after ``image``: the picture it belongs to by the docks'
    rule (:func:`~napari_tmunet._image_layers.owning_picture`: a dataset folder's mask,
    ``NAME_mask.png``), or a name that is the image's, alone or followed by a word ("1
    mask", "1_corrected"): picture "1" of a folder is not "12 mask"'s."""
    if owning_picture(layer) == image.name:
        return True
    rest = layer.name.removeprefix(image.name)
    return layer.name.startswith(image.name) and not rest[:1].isalnum()


def frame_edits(labels: Labels | None) -> np.ndarray | None:
    """(Z,) bool: per frame of ``labels`` (one for a 2-D layer), whether the user edited
    it, a Segment output of the shape of its kept prediction (None: not one, so its
    edits are unknown), as Start tells the edits apart (``TrainingPair.edited``: a
    stack's frames are pairs)."""
    if labels is None:
        return None
    predicted = kept_prediction(labels.metadata or {})
    data = np.asarray(full_data(labels))
    if predicted is None or np.shape(predicted) != data.shape:
        return None
    changed = (data > 0) != predicted  # (..., H, W)
    return changed.reshape(-1, *data.shape[-2:]).any(axis=(1, 2))


def edit_state(labels: Labels | None) -> bool | None:
    """Whether the user edited ``labels`` (a frame of it), None when its edits are
    unknown (:func:`frame_edits`)."""
    edits = frame_edits(labels)
    return None if edits is None else bool(edits.any())


def edited_output(layer: Labels, image: Image) -> bool:
    """Whether ``layer`` is a Segment output of ``image`` that the user edited."""
    meta = layer.metadata or {}
    if not made_by_segment(meta) or meta.get("image") != image.name:
        return False
    return edit_state(layer) is True


def left_out_note(edits: np.ndarray | None) -> str:
    """What Start leaves out of a pair whose frames' edits are ``edits``
    (:func:`frame_edits`) while some frame of some pair is edited (``edited_only``'s
    rule), in words: :data:`UNEDITED` for an unedited pair, the edited frames of a partly
    edited stack ("frames 2, 5 edited: they train; 8 unedited frames are left out"), ""
    when nothing is left out."""
    if edits is None or edits.all():
        return ""
    if not edits.any():
        return UNEDITED
    edited = np.flatnonzero(edits).tolist()
    if len(edited) == 1:
        train = f"frame {edited[0]} edited: it trains"
    else:
        train = f"frames {number_runs(edited)} edited: they train"
    unedited = len(edits) - len(edited)
    rest = "1 unedited frame is" if unedited == 1 else f"{unedited} unedited frames are"
    return f"{train}; {rest} left out"


class PairRows:
    """The Fine-tune dock's pair rows: made, pre-filled, refilled as layers come and go.

    A mixin of :class:`~napari_tmunet._finetune_widget.FinetuneWidget` (it uses the dock's
    ``viewer``, ``rows``, ``pairs_box``, ``reset_choices``, ``_show_model_state`` and
    ``_fit_labels``).
    """

    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        """Image layers to train on; Segment's probability maps are model output, and a
        layer that looks like a mask (a mask PNG opened as an image) is no picture."""
        open_ids = {la.unique_id for la in self.viewer.layers}
        for key in [key for key in self._mask_like if key not in open_ids]:
            del self._mask_like[key]  # a closed layer's data is not kept
        return [
            (la.name, la)
            for la in self.viewer.layers
            if isinstance(la, Image) and not is_probability_map(la) and not self._is_mask(la)
        ]

    def _is_mask(self, layer: Image) -> bool:
        """Whether ``layer`` looks like a mask by Segment all's rule (``is_mask_image``);
        judged once per data array (the choosers refresh at each layer change)."""
        from ._image_layers import is_mask_image

        known = self._mask_like.get(layer.unique_id)
        if known is None or known[0] is not layer.data:
            known = self._mask_like[layer.unique_id] = (layer.data, is_mask_image(layer))
        return known[1]

    def _labels_choices(self, _widget=None) -> list[tuple[str, Labels]]:
        return [(la.name, la) for la in self.viewer.layers if isinstance(la, Labels)]

    def add_pair(self, _=None) -> PairRow:
        """Add a row, pre-filled with an unused image (:meth:`_next_image`) and the Labels
        layer that fits it."""
        row = PairRow(self._image_choices, self._labels_choices, self.remove_pair)
        row.image.value = self._next_image()
        self._fill_labels(row)
        row.image.changed.connect(lambda _: self._on_row_image(row))
        row.mask.changed.connect(lambda _: self._on_row_labels(row))
        self.rows.append(row)
        self.pairs_box.append(row)
        self._number_rows()
        self._mark_left_out()
        self._show_model_state()  # its image may be of another modality than the model's
        return row

    def _number_rows(self) -> None:
        """Title the rows "Pair 1", "Pair 2"... in order, their titles as wide as the
        dock's labels (``_fit_labels``: the choosers line up with the fields under them)."""
        for number, row in enumerate(self.rows, 1):
            row.number(number)
        self._fit_labels()

    def _next_image(self) -> Image | None:
        """The image a new row starts with: of those no row has, the first whose Segment
        output the user edited, else the first; the first image when every one is used."""
        images = [la for _, la in self._image_choices()]
        labels = [la for _, la in self._labels_choices()]
        used = [r.image.value for r in self.rows]
        unused = [im for im in images if not any(im is u for u in used)]
        edited = [im for im in unused if any(edited_output(la, im) for la in labels)]
        return next(iter(edited + unused + images), None)

    def _fill_empty_rows(self) -> None:
        """Give rows that never had an image (none was open) the next image."""
        for row in self.rows:
            if row.image.value is None and "image" not in row.closed:
                row.image.value = self._next_image()

    def _pair_problem(self) -> str:
        """Why the pairs cannot start, in one sentence naming the pair ("" when they can):
        a closed or missing layer, an image that looks like a mask, or two pairs of the same
        image or Labels layer."""
        fix = "choose one, or remove the pair (✕)"
        for number, row in enumerate(self.rows, 1):
            image, labels = row.image.value, row.mask.value
            for key, what in (("image", "image"), ("mask", "Labels layer")):
                if key in row.closed and getattr(row, key).value is None:
                    return f"Pair {number}: its {what} {row.closed[key]!r} was closed: {fix}."
            if image is None and labels is not None:
                return f"Pair {number} has no image: {fix}."
            if labels is None and image is not None:
                return f"Pair {number} has no Labels layer of its image's shape: {fix}."
            if image is not None and self._is_mask(image):  # its data was replaced by a mask
                return (
                    f"Pair {number}: image {image.name!r} looks like a mask, not a picture: "
                    "choose the image it belongs to."
                )
        for key, what in (("image", "image"), ("mask", "Labels layer")):
            problem = self._same_layer(key, what)
            if problem:
                return problem
        return ""

    def _same_layer(self, key: str, what: str) -> str:
        """A sentence when two rows have the same layer in chooser ``key`` ("" if none)."""
        seen: dict[int, int] = {}
        for number, row in enumerate(self.rows, 1):
            layer = getattr(row, key).value
            if layer is None:
                continue
            if id(layer) in seen:
                first = seen[id(layer)]
                return (
                    f"Pairs {first} and {number} have the same {what} {layer.name!r}: "
                    f"remove pair {number} (✕) or choose another {what} in it."
                )
            seen[id(layer)] = number
        return ""

    def remove_pair(self, row: PairRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self.pairs_box.remove(row)
            self._number_rows()
            self._mark_left_out()
            self._show_model_state()  # the first pair may have changed

    def _watch_paints(self) -> None:
        """Follow the edits of the Labels layers open when the dock opens (those added
        later: :meth:`_on_layers_changed`)."""
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                layer.events.paint.connect(self._refill_rows)

    def _on_layers_changed(self, event=None):
        layer = getattr(event, "value", None)
        if isinstance(layer, Labels) and event.type == "inserted":
            # an edit of a Segment output makes it the likelier correction, and may
            # leave another pair out (its row says so)
            layer.events.paint.connect(self._refill_rows)
        for row in self.rows:
            row._filling = True
        try:
            self.reset_choices()
        finally:
            for row in self.rows:
                row._filling = False
        if isinstance(layer, Image) and event.type == "inserted":
            self._fill_empty_rows()
        self._refill_rows()
        self._show_model_state()

    def _refill_rows(self, _event=None) -> None:
        for row in self.rows:
            self._fill_labels(row)
        self._mark_left_out()  # a paint may have edited a pair

    def _mark_left_out(self) -> None:
        """Say under each row what Start will not train on (``edited_only``'s rule, frame
        by frame: a stack's frames are pairs): while some frame of some row is edited, an
        unedited Segment output, or a stack's unedited frames (:func:`left_out_note`).
        While none is, an unedited Segment output is not left out: its row says
        :data:`NOT_CORRECTED` (Start refuses when nothing else trains)."""
        edits = [frame_edits(row.mask.value) for row in self.rows]
        some_edited = any(e is not None and e.any() for e in edits)
        for row, row_edits in zip(self.rows, edits, strict=True):
            if some_edited:
                row.say_left_out(left_out_note(row_edits))
            else:  # a Segment output (its edits known), none corrected
                row.say_left_out(NOT_CORRECTED if row_edits is not None else "")

    def _on_row_image(self, row: PairRow) -> None:
        if row.image.value is not None and row.closed:
            row.reopen()  # the user chose another image
        self._fill_labels(row, refit=True)
        self._mark_left_out()
        self._show_model_state()

    def _on_row_labels(self, row: PairRow) -> None:
        if not row._filling and row.mask.value is not None:
            row.user_choice = True  # the user's pick is kept from now on
            if row.closed.pop("mask", None) is not None:
                row._say_empty("mask")
        self._mark_left_out()
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
        closed = "mask" in row.closed  # its Labels layer was closed: one of this image only
        guess = guess_labels(image, [la for _, la in self._labels_choices()], shown, closed)
        if guess is not current:
            row._filling = True
            try:
                row.mask.value = guess
            finally:
                row._filling = False
        if closed and guess is not None:
            del row.closed["mask"]
            row._say_empty("mask")

    def _layer_pairs(self) -> list[TrainingPair]:
        """Copies of the chosen layers' data (painting may go on during training), the
        images' colours converted as Segment converts them (grey + alpha to grey, CMYK to
        RGB)."""
        from ._image_layers import layer_colour_conversion

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
                conversion=layer_colour_conversion(image),
            )
        return pairs
