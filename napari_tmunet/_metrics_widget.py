"""Metrics dock widget: compare a prediction Labels layer with a reference mask: a Labels
layer, or an Image layer that is a mask (``_image_layers.is_mask_image``, the rule the
Segment dock's hint promises it by: ``data.images.looks_like_mask``, a 0/255
or instance-id PNG that napari's File > Open made an image, a grey + alpha PNG as
MoNuSeg's masks, or a mask saved as RGB with equal channels, as Kvasir-SEG's JPEG masks),
read as a mask file is (``data.images.mask_grey``: the grey channel, or the max of the
colour ones; ``data.images.binarise_mask``: ``>127`` for 0/255 masks, so JPEG noise is
background; ``>0`` for 0/1 masks and instance ids).

Scores come from ``napari_tmunet.metrics`` (the same code as the trainer's reports):
Dice, IoU, precision, recall, F1 and the Hausdorff distances per 2-D slice and over
all slices, in pixels and, when the layers are scaled, in physical units; where both
layers hold instance ids (``data.images.holds_instance_labels``: a nuclei model's output
and a CPM-15 mask, not a 0/1 or 0/255 mask), also the objects matched, missed and extra
at IoU > 0.5, PQ and AJI (``metrics.instance_scores``), in a table of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Table

from . import active_model
from ._close_guard import guard_window
from ._dock_texts import CONVERT_TO_MASK, METRICS_TIPS
from ._docks import place_when_shown, raise_from_menu
from ._image_layers import layer_source_path, owning_picture
from ._layer_style import is_reference
from ._placement import placement_warning
from ._reader import layer_picture
from ._view_fit import keep_fitted
from ._widget_common import (
    DOCK_MAX_MIN_WIDTH,
    fit_width,
    full_data,
    intro_above,
    keeping_layers,
    narrow,
    on_dock_closed,
    scroll_body,
    scroll_into_view,
    set_tooltips,
    start_worker,
    wrap,
)
from .evaluation import OBJECT_COLUMNS, OVERALL, score_labels
from .metrics import dice_score
from .storage import write_csv
from .words import plural

if TYPE_CHECKING:
    import napari

# Display order of the known columns; unknown keys follow in the order they appear.
COLUMN_ORDER: tuple[str, ...] = (
    "model",
    "image",
    "slice",
    "dice",
    "iou",
    "precision",
    "recall",
    "f1",
    "hd_px",
    "hd95_px",
    "hd_physical",
    "hd95_physical",
    "unit",
    *OBJECT_COLUMNS,
    "note",
)
# The comparison table's order: which model, its Dice and HD95 (its false-positive pixels
# first where the held-out part has no foreground, and no Dice), the other scores; the
# image (the held-out part, named in the title) last: the main scores are in view in a
# narrow dock.
_FIRST_SCORES = ("model", "false_positive_px", "dice", "hd95_px", "hd95_physical")
COMPARISON_ORDER: tuple[str, ...] = (
    *_FIRST_SCORES,
    *(c for c in COLUMN_ORDER if c not in (*_FIRST_SCORES, "image", "slice")),
    "image",
    "slice",
)
# The per-slice table's order: Dice and the distances first, in view in a dock of
# ordinary width (at 1366 x 768 HD was reached only by scrolling, past IoU, precision,
# recall and F1, which follow; IoU is in the status line too); the CSV keeps COLUMN_ORDER.
RESULT_ORDER: tuple[str, ...] = (
    "slice",
    "dice",
    "hd_px",
    "hd95_px",
    "hd_physical",
    "hd95_physical",
    "unit",
    *(c for c in COLUMN_ORDER if c not in ("slice", "dice") and not c.startswith("hd")),
)
# The objects table's order (score_labels' object columns, where both layers hold ids);
# its last row is all slices' objects together, named so in its slice column.
OBJECT_ORDER: tuple[str, ...] = ("slice", *OBJECT_COLUMNS)
ALL_SLICES = "all"
ALL_SLICES_TIP = "All slices' objects together: counts summed, PQ and AJI over them all"
# The unit of distances scaled by a layer whose scale has no physical unit (napari's
# "pixel"): the status line gives them in pixels, and scaled in words (_scale_words).
SCALED_PX = "scaled px"
# A text column's widest, in pixels: longer texts wrap (e.g. "before fine-tuning: TM-UNet
# nuclei"), whole in their tooltip too.
TEXT_COLUMN_MAX_WIDTH = 110
TEXT_COLUMNS = ("model", "image", "note")
# The tables' headers, short so that the columns fit a dock at 1366 x 768 (precision,
# hd95_px... made the per-slice table 565 px wide in a 352 px view), each with its full
# name as tooltip; a column's key (the CSV's name) is its header item's UserRole data
# (column_keys). The distances' unit is the header's second line.
HEADERS: dict[str, tuple[str, str]] = {
    "slice": ("slice", "The 2-D slice scored (mean: the mean over the slices)"),
    "dice": ("Dice", "Dice coefficient"),
    "iou": ("IoU", "Intersection over union (Jaccard index)"),
    "precision": ("Prec.", "Precision: the share of the predicted pixels in the reference"),
    "recall": ("Rec.", "Recall: the share of the reference's pixels predicted"),
    "f1": ("F1", "Pixel F1 from precision and recall (a slice's equals its Dice)"),
    "hd_px": ("HD\npx", "Hausdorff distance, in pixels"),
    "hd95_px": ("HD95\npx", "95th-percentile Hausdorff distance, in pixels"),
    "hd_physical": ("HD\n{unit}", "Hausdorff distance, in the layers' unit ({unit})"),
    "hd95_physical": ("HD95\n{unit}", "95th-percentile Hausdorff distance, in {unit}"),
    "false_positive_px": ("FP\npx", "False-positive pixels (the held-out part has no foreground)"),
    "matched": (
        "Matched",
        "Reference objects matched one to one by a predicted object, IoU > 0.5 (true positives)",
    ),
    "missed": ("Missed", "Reference objects no predicted object matches (false negatives)"),
    "extra": ("Extra", "Predicted objects that match no reference object (false positives)"),
    "pq": (
        "PQ",
        "Panoptic quality: matched / (matched + (missed + extra) / 2), times the mean IoU "
        "of the matched pairs",
    ),
    "aji": (
        "AJI",
        "Aggregated Jaccard index: each reference object with the predicted object it "
        "overlaps most; their summed intersections over their summed unions (the "
        "unpaired predicted objects' pixels added)",
    ),
    "model": ("model", "The model scored (its full name in the cell's tooltip)"),
}
# Decimals of the scores between 0 and 1 in the per-slice table: 3 (the status line gives
# the mean's Dice and IoU to 4); the comparison table keeps 4, the decimals its verdict
# is decided and worded on (1.0000 -> 0.9686). Distances: 1 decimal of a pixel in both.
SLICE_DECIMALS = 3
COMPARISON_DECIMALS = 4
# In the CSV, not in the table (the status line names the layers and the stack's Dice; the
# distances' headers their unit; the slices' notes are the line under the table).
HIDDEN_COLUMNS: frozenset[str] = frozenset({"prediction", "reference", "stack_dice"})
# The pixel F1 is in the CSV only: a slice's equals its Dice (the mean's is from the mean
# precision and recall, the released code's), and beside the objects' scores "F1" read as
# the nuclei papers' detection F1 (that is the DQ of PQ). The object columns have a table
# of their own (with them the pixel table was 12 columns, wider than a dock at 1366 x 768).
SLICE_HIDDEN: frozenset[str] = HIDDEN_COLUMNS | {"unit", "note", "f1", *OBJECT_COLUMNS}
# ... nor in the comparison table, whose rows hold a model and its numbers: the part
# scored is in its title, the rows' notes in a line under it (a note in a cell made a
# row 324 px tall, its Dice out of view)
COMPARISON_HIDDEN: frozenset[str] = HIDDEN_COLUMNS | {"image", "slice", "note", "stage", "model_id"}

# The pair note while Prediction and Reference are one layer (the only one offered): a
# Segment output lacks its reference, another layer (e.g. a mask painted by hand) a
# prediction. {name} is the layer's name.
CHOOSE_REFERENCE = (
    "{name} is the only mask: to score it, open the reference mask of its image, or paint "
    "one in a new Labels layer."
)
CHOOSE_PREDICTION = (
    "{name} is the only mask: to score a prediction against it, segment its image "
    "(Segment dock) or open a second mask."
)
# ... said of a layer alone while masks of other pictures of its size are offered (a dataset
# folder's frames): it is the only one of its own picture
OF_ITS_PICTURE = " is the only mask of its picture:"
# The pair note (and Compute's refusal) while the user chose one layer in both boxes and
# others of its size and picture are offered; {name} is the layer's name.
SAME_LAYER = "Prediction and Reference are the same layer ({name}): choose two different layers."
# The pair note of a pair the dock cannot tell is right: neither names the other's picture
# (by metadata, file or layer name) and other layers of their size are offered.
PAIRED_BY_SIZE = (
    "Paired by size only, a guess: check that {reference} is the reference for {prediction}."
)
# The status line while the shown scores are out of date: {names} changed after Compute
# read them (a paint stroke, an undo, Segment's threshold re-deriving its labels).
STALE_SCORES = (
    "{names} changed after these scores: Compute again (Export is off until then). "
    "Before the change: {line}"
)
# How long the layers' refreshes must pause before their data are compared with what was
# scored: a refresh (set_data) also comes with each step through a stack and each brush
# dab, and comparing hashes the whole arrays again (in a worker: MetricsWidget._check_scored).
STALE_CHECK_MS = 300
# :func:`_pair_rank` of two layers that name different pictures (a dataset folder's frames
# share one size, so shape alone is no pair): never a candidate for the other.
OTHER_PICTURE = -1
# Layer names that suggest a reference (e.g. "612 mask" from the reader or the samples).
_REFERENCE_HINT = re.compile(r"mask|reference|ground.?truth|\bgt\b", re.IGNORECASE)
# Words that name a layer's role, not its image ("101 mask", "101 labels" -> "101"), and
# napari's suffix for a repeated name ("101 labels [1]").
_ROLE_WORDS = re.compile(
    r"\[\d+\]|\b(mask|labels|reference|ground.?truth|gt|prediction|probability)\b",
    re.IGNORECASE,
)


class MetricsWidget(Container):
    """Choose a prediction and a reference Labels layer, compute, read and export scores.

    The choosers offer the Labels layers and the Image layers that look like masks
    (:func:`_is_mask_image`; such an image is taken for a reference). They follow the
    layer the user selects (a reference-like one goes to Reference, any other to
    Prediction). Comparison rows (e.g. before/after fine-tuning)
    and the per-slice rows of a computation are separate tables.

    Attributes:
        prediction, reference: layer choosers (values are layers).
        compute_button, export_button: the actions.
        table: the per-slice results table (a ``QTableWidget`` underneath).
        table_note: the per-slice table's notes (slices with an empty mask), under it.
        comparison_table: the comparison rows' table (hidden while there are none).
        results: rows of the last computation, one dict per slice and a last
            ``slice == "mean"`` row.
        comparison: rows set by ``set_comparison`` (e.g. old/new model).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        raise_from_menu(viewer)  # the menus' items of this dock show it, never hide it
        place_when_shown(self.native)  # tabbed where the window is too short to stack it
        guard_window(self.native, viewer)  # closing napari asks before corrections are lost
        keep_fitted(viewer)  # the picture fitted again as the dock narrows the canvas
        self.body = scroll_body(self, labels=False)
        # unwrapped (as Segment and Fine-tune): the choosers keep their layers by identity
        self._viewer = getattr(viewer, "__wrapped__", viewer)
        self.results: list[dict[str, Any]] = []
        self.comparison: list[dict[str, Any]] = []
        self._worker = None
        self._closed = False  # the dock's widgets are gone (napari or the dock closed)
        self._dock_sets = False  # the dock itself is setting the choosers
        # the two layers the shown rows score, held weakly: deleting one clears the rows
        self._scored: tuple = ()
        # what the scores depend on in each scored layer (:func:`_fingerprint`), as
        # Compute's worker read it ([] until then)
        self._fingerprints: list[tuple] = []
        # the worker hashing the scored layers whole (_check_scored), or None
        self._checker = None
        # a scored layer changed while no check could run (before Compute's worker took
        # the fingerprints, or while a check ran): checked as soon as one can
        self._check_pending = False
        # the scored layers whose change events this dock follows, held weakly
        self._watched: list[weakref.ref] = []
        # the names of the scored layers changed since Compute read them ("" while the
        # scores are current): the rows are shown greyed, never exported
        self._stale = ""
        self._line = ""  # the status line of the shown scores
        self._scale = ""  # how the distances were scaled, in words (_scale_words), or ""
        # why the scored layers' pixels do not lie on each other (_placement_warning), or ""
        self._placement = ""
        # prediction -> the reference the user chose for it in its box, both held weakly:
        # a closed layer's data is not kept
        self._chosen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # a layer Convert to mask is putting in a closed layer's place -> the boxes ("prediction",
        # "reference") it is to take when inserted (:meth:`_await_replacements`)
        self._in_place: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # the layers just put in their places: their selection (Convert to mask selects
        # them) keeps the boxes as they are
        self._placed: list[weakref.ref] = []

        self.intro = Label(value="Scores a prediction against a reference mask, per slice.")
        self.prediction = ComboBox(label="Prediction", choices=self._mask_choices)
        self.reference = ComboBox(label="Reference", choices=self._mask_choices)
        self.pair_note = Label(value="")
        self.compute_button = PushButton(text="Compute")
        self.export_button = PushButton(text="Export CSV…", enabled=False)
        self.status = Label(value="")
        self.comparison_title = Label(value="Before / after fine-tuning (held-out part)")
        self.comparison_table = Table()
        self.comparison_note = Label(value="")
        self.comparison_box = Container(
            widgets=[self.comparison_title, self.comparison_table, self.comparison_note],
            labels=False,
        )
        self.comparison_box.margins = (0, 0, 0, 0)
        self.table = Table()
        self.table_note = Label(value="", visible=False)  # the slices' notes, if any
        # the objects' scores, where both layers hold instance ids: hidden otherwise
        self.objects_title = Label(value="", visible=False)
        self.objects_table = Table(visible=False)
        # what Compute gives: its status line (the layers and mean scores, or what is
        # wrong) and the per-slice tables, under the button; shown when it comes
        self.results_box = Container(
            widgets=[
                self.status,
                self.table,
                self.table_note,
                self.objects_title,
                self.objects_table,
            ],
            labels=False,
        )
        self.results_box.margins = (0, 0, 0, 0)
        labels = (self.intro, self.pair_note, self.status, self.comparison_title)
        for label in (*labels, self.comparison_note, self.table_note, self.objects_title):
            wrap(label)
        # long layer names (Kvasir-SEG's are 25 letters, "<name> labels") would widen the
        # choosers, and the body with them, past the dock: its texts were cut at the right
        for chooser in (self.prediction, self.reference):
            narrow(chooser)
        self.body.extend(
            [
                Container(widgets=[self.prediction, self.reference], labels=True),
                self.pair_note,
                self.compute_button,
                self.results_box,
                self.export_button,
                self.comparison_box,  # shown when Fine-tune sets it
            ]
        )
        for table in (self.table, self.objects_table, self.comparison_table):
            _setup_table(table)
        self.comparison_box.visible = False
        self.pair_note.visible = False
        fit_width(self.body)
        intro_above(self, self.intro)
        set_tooltips(self, METRICS_TIPS)
        self.compute_button.changed.connect(self._on_compute_clicked)
        on_dock_closed(self.native, self._on_closed)
        from qtpy.QtCore import QTimer

        # no parent: it outlives the widgets when napari closes (_unwatch stops it then)
        self._check_timer = QTimer()
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(STALE_CHECK_MS)
        self._check_timer.timeout.connect(self._check_scored)
        self.export_button.changed.connect(self._on_export_clicked)
        self.prediction.changed.connect(self._update_pair_note)
        self.reference.changed.connect(self._update_pair_note)
        self.prediction.changed.connect(self._on_prediction_chosen)
        self.reference.changed.connect(self._on_reference_chosen)

        layers = self._viewer.layers
        # renames come through napari's own refresh of the dock (reset_choices)
        for event in (layers.events.inserted, layers.events.removed, layers.events.moved):
            event.connect(self._refresh_choices)
        layers.events.removed.connect(self._on_layer_removed)
        layers.selection.events.active.connect(self._on_active_layer)
        self._refresh_choices()

    def reset_choices(self, *_args) -> None:
        """Refresh the choosers (the widgets live in the scrolled body); each stays on its
        layer when that is renamed, and a closed one is replaced (:meth:`_replace_closed`)."""
        before = self.prediction.value, self.reference.value
        with self._setting(), keeping_layers([self.prediction, self.reference]):
            self.body.reset_choices()
        self._replace_closed(*before)
        self._update_pair_note()  # the names it shows may have changed

    # ----------------------------------------------------------------- layer lists
    def _mask_choices(self, _widget=None) -> list[tuple[str, Any]]:
        """(name, layer) of the Labels layers and of the Image layers that look like masks."""
        return [(layer.name, layer) for layer in self._viewer.layers if _is_mask_layer(layer)]

    def _unoffered_hint(self) -> str:
        """With fewer than two layers to compare and two images not offered (a picture and,
        perhaps, its mask opened as a picture): how to make one a mask; else "" (one
        picture and its Labels, the common case, need no note)."""
        from napari.layers import Image

        if len(self._mask_choices()) >= 2:
            return ""
        images = [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not _is_mask_layer(layer)
        ]
        if len(images) < 2:
            return ""
        return f"To score against an image that is a mask, {CONVERT_TO_MASK}."

    def _refresh_choices(self, event=None) -> None:
        """Re-read the Labels layers; keep the selection, else (at the start, or when a
        layer is added) guess a sensible pair.

        The guess takes the active layer when it is a prediction with a reference of its
        shape, else the newest such layer (:meth:`_reference_for`), else pairs two layers
        of one shape. A closed layer's place is taken in :meth:`reset_choices`.
        """
        _forget_mask_images(self._viewer.layers)
        self.reset_choices()
        if self._take_place(getattr(event, "value", None)):
            return
        layers = [layer for _, layer in self._mask_choices()]
        if len(layers) < 2 or not _same(self.prediction.value, self.reference.value):
            return
        if getattr(event, "type", "inserted") != "inserted":
            return  # a prediction whose reference was closed waits for one, alone
        with self._setting():
            self._guess_pair(layers)

    def _replace_closed(self, prediction, reference) -> None:
        """After a refresh of the choosers, which showed ``prediction`` and ``reference``:
        a closed prediction gives way to a new guess; a closed reference to one of the
        prediction's shape and picture, else to the prediction itself, which the pair note
        asks to replace (magicgui's own pick, the first layer offered, may be of any shape
        or picture)."""
        layers = [layer for _, layer in self._mask_choices()]
        if self._await_replacements(prediction, reference, layers) or len(layers) < 2:
            return
        with self._setting():
            if prediction is not None and not _in(prediction, layers):
                self._guess_pair(layers)
            elif reference is not None and not _in(reference, layers):
                kept = self.prediction.value
                self._follow_prediction(kept, None)
                if not _in(self.reference.value, self._candidates(kept, references=False)):
                    self.reference.value = kept

    def _await_replacements(self, prediction, reference, layers: list) -> bool:
        """Whether a closed layer of the boxes (``prediction``, ``reference``: what they
        showed) is being replaced by Convert to mask (``_convert_mask.replacement``): its
        boxes are noted for the new layer, which takes them when inserted
        (:meth:`_take_place`), and the user's choice of a reference for or by the closed
        layer passes to it. Nothing is guessed meanwhile."""
        from ._convert_mask import replacement

        waiting = False
        for box, layer in (("prediction", prediction), ("reference", reference)):
            new = None if layer is None or _in(layer, layers) else replacement(layer)
            if new is not None:
                self._in_place[new] = (*self._in_place.get(new, ()), box)
                waiting = True
        for key, chosen in list(self._chosen.items()):
            theirs = chosen()  # the reference chosen for the prediction ``key``
            if theirs is None:
                continue
            new_key, new_ref = replacement(key), replacement(theirs)
            if new_key is not None or new_ref is not None:
                self._chosen[new_key or key] = weakref.ref(new_ref or theirs)
        return waiting

    def _take_place(self, layer) -> bool:
        """Put the inserted ``layer`` in the boxes of the layer it replaces
        (:meth:`_await_replacements`); whether it took any."""
        boxes = self._in_place.pop(layer, ()) if layer is not None else ()
        if not boxes or not _is_mask_layer(layer):
            return False
        with self._setting():
            for box in boxes:
                getattr(self, box).value = layer
        self._placed.append(weakref.ref(layer))
        self._update_pair_note()
        return True

    def _guess_pair(self, layers: list) -> None:
        """Choose the pair :meth:`_refresh_choices` guesses among ``layers``."""
        active = self._viewer.layers.selection.active
        first = [active] if _in(active, layers) else []  # what the user looks at
        # each prediction with its reference: the surest pair (:func:`_pair_rank`: the
        # reference of its own picture), the active layer's, then the newest, first of
        # ties (the newest prediction with any reference took a mask of another picture)
        found = [
            (layer, reference)
            for layer in [*first, *reversed(layers)]
            if not _looks_like_reference(layer)
            and (reference := self._reference_for(layer)) is not None
        ]
        if found:
            pair = max(found, key=lambda pair: _pair_rank(*pair))
            self.reference.value, self.prediction.value = pair[1], pair[0]
            return
        # no layer looks like a reference: the first that is no model's output (a Labels
        # layer a script or the user made), else the first
        refs = [layer for layer in layers if _looks_like_reference(layer)] or (
            [layer for layer in layers if not _is_prediction(layer)] or layers
        )[:1]
        # a reference with another layer of its shape and picture (:meth:`_candidates`);
        # the newest such layer is the prediction (two samples' masks differ in shape and
        # are no pair)
        pairs = [
            (ref, layer)
            for ref in refs
            for layer in reversed(self._candidates(ref, references=False))
        ]
        if not pairs:  # the newest layer of its picture, of any shape
            others = self._candidates(refs[0], references=False, shaped=False)
            pairs = [(refs[0], layer) for layer in others[-1:]]
        if not pairs:  # only masks of different pictures: one alone, its note says why
            self.reference.value = self.prediction.value = active if first else layers[-1]
            return

        def rank(pair) -> tuple[bool, int]:
            """The active layer's pair first, then two layers of one picture (a saved
            correction and its mask) before a pair by size only."""
            return _in(active, pair), _pair_rank(pair[1], pair[0])

        self.reference.value, self.prediction.value = max(pairs, key=rank)  # first of ties

    def _on_active_layer(self, _event=None) -> None:
        """Follow the selected Labels layer: a reference-like one is the reference, any
        other the prediction.

        A reference-like layer whose shape differs from the chosen prediction's is not
        taken; one of another picture than the prediction's (:func:`_same_picture`) is the
        prediction of a pair of its own picture, else alone (its note says what is
        missing). A new prediction takes the reference of its own image
        (:meth:`_reference_for`); without one it keeps its reference when that is another
        layer of the same shape, else takes another Labels layer of its shape if there is
        one (else the pair note says the shapes differ).
        """
        layer = self._viewer.layers.selection.active
        placed, self._placed = [ref() for ref in self._placed], []
        if not _is_mask_layer(layer) or _in(layer, placed):
            return  # a layer put in its place stays in the boxes the user chose it in
        self.reset_choices()
        prediction, reference = self.prediction.value, self.reference.value
        with self._setting():
            if not _looks_like_reference(layer):
                self.prediction.value = layer
                self._follow_prediction(layer, reference)
            elif prediction is None or _same(prediction, layer):
                self.reference.value = layer
                self._refresh_choices()
                shown = (self.prediction.value, self.reference.value)
                if not any(_same_picture(layer, other) for other in shown):
                    # the guess is a pair of another picture: the selected layer, alone
                    self.prediction.value = self.reference.value = layer
            elif not _same_picture(prediction, layer):  # another picture's: its pair
                self.prediction.value = layer
                self._follow_prediction(layer, reference)
            elif _shape(prediction) == _shape(layer):
                self.reference.value = layer

    def _on_prediction_chosen(self, layer=None) -> None:
        """The user chose ``layer`` in the Prediction box: the reference follows it as when
        it is selected in the layer list (:meth:`_follow_prediction`)."""
        if self._dock_sets or not _is_mask_layer(layer):
            return
        with self._setting():
            self._follow_prediction(layer, self.reference.value)

    def _on_reference_chosen(self, reference=None) -> None:
        """The user chose ``reference`` in the Reference box: it stays the reference of
        the chosen prediction when that is chosen again."""
        prediction = self.prediction.value
        if self._dock_sets or prediction is None or reference is None:
            return
        if not _same(prediction, reference):
            self._chosen[prediction] = weakref.ref(reference)

    def _follow_prediction(self, layer, reference) -> None:
        """Choose the reference of the new prediction ``layer`` (``reference``: the one
        chosen before): the one the user chose for it in the Reference box while it is
        offered and of its shape; else the reference of its own image
        (:meth:`_reference_for`); without one it keeps ``reference`` when that is another
        layer of its shape and picture, else takes another Labels layer of its shape and
        picture if there is one, else (when ``reference`` is of another picture) the
        layer itself: the pair note says what is missing."""
        chosen = self._user_reference(layer)
        if chosen is not None:
            self.reference.value = chosen
            return
        best = self._reference_for(layer)
        apart = not _same_picture(layer, reference)
        unfit = reference is None or _same(reference, layer) or _shape(reference) != _shape(layer)
        if best is None and (unfit or apart):
            best = self._reference_for(layer, references=False)
        surer = best is not None and _pair_rank(layer, best) > _pair_rank(layer, reference)
        if best is not None and (unfit or apart or surer):
            self.reference.value = best
        elif apart:
            self.reference.value = layer

    def _user_reference(self, prediction):
        """The reference the user chose for ``prediction`` in the Reference box, while it
        is offered and of its shape; else None."""
        chosen = self._chosen.get(prediction)
        reference = chosen() if chosen is not None else None
        if reference is None:
            return None
        offered = any(layer is reference for _, layer in self._mask_choices())
        return reference if offered and _shape(reference) == _shape(prediction) else None

    @contextlib.contextmanager
    def _setting(self):
        """A block in which the dock sets the choosers: their changes are not the user's."""
        before, self._dock_sets = self._dock_sets, True
        try:
            yield
        finally:
            self._dock_sets = before

    def _offered(self, layer, *, references: bool = True, shaped: bool = True) -> list:
        """The offered layers other than ``layer``, in the layer list's order: of its
        shape (``shaped``), reference-like (``references``: :func:`_looks_like_reference`);
        of any picture."""
        return [
            other
            for _, other in self._mask_choices()
            if not _same(other, layer)
            and (not shaped or _shape(other) == _shape(layer))
            and (not references or _looks_like_reference(other))
        ]

    def _candidates(self, layer, *, references: bool = True, shaped: bool = True) -> list:
        """The layers the dock may pair with ``layer`` by itself, in the layer list's
        order: :meth:`_offered` ones but for those of another picture
        (:func:`_same_picture`). The one rule every guess of a pair goes by."""
        return [
            other
            for other in self._offered(layer, references=references, shaped=shaped)
            if _same_picture(layer, other)
        ]

    def _reference_for(self, prediction, *, references: bool = True):
        """The reference to guess for ``prediction``, or None: among its
        :meth:`_candidates` of its shape (reference-like ones unless ``references`` is
        False), the one of its own image (:func:`_pair_rank`), else the first."""
        candidates = self._candidates(prediction, references=references)
        if not candidates:
            return None
        return max(candidates, key=lambda layer: _pair_rank(prediction, layer))  # first of ties

    def _other_pictures(self, prediction) -> list:
        """The pictures (Image layers not offered as masks) of ``prediction``'s size other
        than its own (the one it names, :func:`owning_picture`), any of which a reference that
        names no picture may be the mask of; of a prediction that names none, all such
        pictures when there are two or more (one alone is taken for its own)."""
        from napari.layers import Image

        pictures = [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Image)
            and not _is_mask_layer(layer)
            and _shape(layer) == _shape(prediction)
        ]
        own = _name_stem(owning_picture(prediction))
        if not own:
            return pictures if len(pictures) > 1 else []
        # a file's channels are one picture: by the file's name (_reader.layer_picture)
        return [layer for layer in pictures if _name_stem(layer_picture(layer)) != own]

    def _update_pair_note(self, _value=None) -> None:
        """Show :meth:`_unoffered_hint`, else :meth:`_pair_warning`, under the choosers
        (hidden when there is none): the hint says how to make a picture the reference
        that one Labels layer lacks."""
        note = self._unoffered_hint()
        note = note or self._pair_warning(self.prediction.value, self.reference.value)
        self.pair_note.value = note
        self.pair_note.visible = bool(note)

    def _pair_warning(self, prediction, reference) -> str:
        """A warning about the chosen pair, or "": the layers differ in shape (Compute
        would refuse them), they lie differently on the canvas (:func:`_placement_warning`),
        or the pair is only a guess by shape (the reference is not of the prediction's
        image and other layers, or other pictures, of that shape are open); one layer in
        both (the only mask): what is missing, the reference of a Segment output, else a
        prediction (e.g. for a mask painted by hand)."""
        if prediction is None or reference is None:
            return ""
        if _same(prediction, reference):
            if self._candidates(prediction, references=False):
                # the user chose one layer twice while another of its size and picture is
                # there (the dock shows one layer in both only when none is)
                return SAME_LAYER.format(name=prediction.name)
            missing = CHOOSE_REFERENCE if _is_prediction(prediction) else CHOOSE_PREDICTION
            note = missing.format(name=repr(prediction.name))
            # masks of other pictures are no candidates (:meth:`_candidates`): the note
            # says they are there, and why this one stands alone
            others = self._offered(prediction)
            if not all(_same_picture(prediction, layer) for layer in others):
                note = note.replace(" is the only mask:", OF_ITS_PICTURE, 1)
            return note
        if _shape(prediction) != _shape(reference):
            return _extra_axis(prediction, reference) or (
                f"{prediction.name!r} ({_size(prediction)}) and {reference.name!r} "
                f"({_size(reference)}) differ in size: choose the reference of the "
                "prediction's image."
            )
        placement = _placement_warning(prediction, reference)
        if placement:
            return placement
        # a pair across pictures is never guessed (:meth:`_candidates`), but one the user
        # chose stays chosen and is scored (a hand-painted mask may name another picture
        # by mistake): the note says so
        pictures = _pictures_apart(prediction, reference)
        if pictures:
            return pictures
        if _pair_rank(prediction, reference) > 0:
            return ""
        # other layers of its shape, of any picture (references for the prediction, or
        # predictions for the reference), or another picture of its size (its mask may be
        # the one chosen): this pair may be the wrong one
        others = self._offered(prediction, references=False)
        if not any(not _same(layer, reference) for layer in others) and not (
            self._other_pictures(prediction)
        ):
            return ""
        return PAIRED_BY_SIZE.format(
            reference=repr(reference.name), prediction=repr(prediction.name)
        )

    # ----------------------------------------------------------------- computing
    def compute(self) -> list[dict[str, Any]]:
        """Score the chosen layers now (on this thread); show and return the rows.

        The previous rows are cleared first, so a failure leaves no stale scores.
        """
        self._clear_results()
        rows, fingerprints = _score_and_fingerprint(*self._job())
        self._set_results(rows)
        self._set_fingerprints(fingerprints)
        return rows

    def _job(self) -> tuple[dict[str, Any], list[tuple]]:
        """Read the chosen layers into arrays (and keep them as the layers scored), or
        raise ValueError saying what is wrong: ``score_labels``' arguments, and the
        layers' data and yx scales for their fingerprints (:func:`_score_and_fingerprint`)."""
        pred_layer, ref_layer = self.prediction.value, self.reference.value
        if pred_layer is None or ref_layer is None:
            raise ValueError(
                "Choose a prediction and a reference: Labels layers, or images that look "
                "like masks."
            )
        if _same(pred_layer, ref_layer):
            # the pair note's words: what is missing (a mask alone: segment its picture,
            # or open its reference), else that two layers are to be chosen
            raise ValueError(self._pair_warning(pred_layer, ref_layer))
        pred, ref = _layer_array(pred_layer), _layer_array(ref_layer)
        if pred.shape != ref.shape:
            raise ValueError(
                _extra_axis(pred_layer, ref_layer)
                or f"{pred_layer.name!r} has shape {pred.shape} but {ref_layer.name!r} has "
                f"{ref.shape}; the layers must cover the same pixels."
            )
        if pred.ndim < 2:
            raise ValueError(f"Expected 2-D masks or stacks of them, got shape {pred.shape}.")
        spacing, unit, source = _shared_spacing(pred_layer, ref_layer)
        self._scale = _scale_words(spacing, unit, source, pred_layer, ref_layer)
        self._placement = _placement_warning(pred_layer, ref_layer)
        if self._placement:
            from napari.utils.notifications import show_warning

            show_warning(self._placement)
        self._scored = (weakref.ref(pred_layer), weakref.ref(ref_layer))
        self._watch(pred_layer, ref_layer)
        job = {
            "pred": pred,
            "ref": ref,
            "spacing": spacing,
            "unit": unit,
            "prediction_name": pred_layer.name,
            "reference_name": ref_layer.name,
        }
        return job, [(full_data(layer), _yx_scale(layer)) for layer in (pred_layer, ref_layer)]

    # ----------------------------------------------------------------- staleness
    def _watch(self, *layers) -> None:
        """Follow the changes of ``layers``, whose fingerprints Compute's worker takes
        (:meth:`_set_fingerprints`): new data (``data``: Segment's re-derive, a script) is
        checked at once, an edit (``paint``: once per stroke, fill or polygon) once napari
        has written it (:meth:`_check_soon`); a refresh (``set_data``: an undo, or
        ``layer.data[...] = ...`` then ``refresh()``, but also a step through a stack)
        once they pause (:data:`STALE_CHECK_MS`)."""
        self._unwatch()
        for layer in layers:
            layer.events.data.connect(self._check_scored)
            paint = getattr(layer.events, "paint", None)  # an Image layer (a mask) has none
            if paint is not None:
                paint.connect(self._check_soon)
            layer.events.set_data.connect(self._check_later)
            self._watched.append(weakref.ref(layer))

    def _unwatch(self) -> None:
        """Stop following the scored layers' changes (new scores, cleared, dock closed)."""
        for ref in self._watched:
            layer = ref()
            if layer is None:
                continue
            layer.events.data.disconnect(self._check_scored)
            paint = getattr(layer.events, "paint", None)
            if paint is not None:
                paint.disconnect(self._check_soon)
            layer.events.set_data.disconnect(self._check_later)
        self._watched, self._fingerprints = [], []
        self._check_pending = False
        self._stop_check_timer()

    def _stop_check_timer(self) -> None:
        """Stop the wait before a check (:meth:`_check_later`). The timer has no parent:
        when a script ends without ``napari.run()``, Python's exit may delete it before
        the dock's close callback runs (which then raised in Qt's destroyed handler and
        aborted the process); a deleted timer has nothing to stop."""
        with contextlib.suppress(RuntimeError):  # "wrapped C/C++ object ... deleted"
            self._check_timer.stop()

    def _set_fingerprints(self, fingerprints: list[tuple]) -> None:
        """Keep the fingerprints of the layers scored (:func:`_score_and_fingerprint`);
        a change signalled before they came is checked now, in full."""
        if not self._watched:
            return  # cleared meanwhile (a scored layer closed, the dock closed)
        self._fingerprints = fingerprints
        self._check_if_pending()

    def _check_later(self, _event=None) -> None:
        """Check the scored layers once their refreshes pause (restarts the wait)."""
        if not self._stale and not self._closed:
            with contextlib.suppress(RuntimeError):  # deleted at exit (_stop_check_timer)
                self._check_timer.start()

    def _check_soon(self, _event=None) -> None:
        """Check the scored layers at the event loop's next turn (a stroke, fill or
        polygon): ``Labels.paint`` emits its event before it writes the pixels."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self._check_scored)

    def _check_scored(self, _event=None) -> None:
        """Mark the scores stale when a scored layer's data or scale differ from what
        Compute read (a stroke that painted what was there, or a refresh, leaves them
        current), hashing both layers whole in a worker (:func:`_fingerprints_of`): on
        the GUI thread a large stack stalled it at each stroke and each pause in a step
        through it. One check at a time: a change signalled while one runs is checked
        when it is done. Before Compute's worker has taken the fingerprints, when it has
        (:meth:`_set_fingerprints`)."""
        if self._stale or self._closed or not self._watched:
            return
        if not self._fingerprints or self._checker is not None:
            self._check_pending = True
            return
        before = self._fingerprints
        live = [
            (layer, old)
            for ref, old in zip(self._watched, before, strict=True)
            if (layer := ref()) is not None
        ]
        self._checker = start_worker(
            _fingerprints_of,
            [(full_data(layer), _yx_scale(layer)) for layer, _ in live],
            connect={
                "returned": lambda now: self._on_checked(before, live, now),
                "errored": self._on_check_errored,
                "finished": self._on_check_finished,
            },
        )

    def _on_checked(self, before: list[tuple], live: list[tuple], now: list[tuple]) -> None:
        """A worker's fingerprints ``now`` of the ``live`` (layer, fingerprint at Compute)
        pairs: mark the scores stale when one differs (unless Compute ran meanwhile: the
        fingerprints are no longer ``before``)."""
        if self._stale or self._closed or before is not self._fingerprints:
            return
        changed = [layer.name for (layer, old), new in zip(live, now, strict=True) if new != old]
        if changed:
            self._mark_stale(changed)

    def _on_check_errored(self, err: Exception) -> None:
        if not self._closed:
            self._report_error(f"Metrics could not check the scored layers: {err}")

    def _on_check_finished(self) -> None:
        self._checker = None
        self._check_if_pending()

    def _check_if_pending(self) -> None:
        """Check the scored layers when a change waits for a check (:meth:`_check_scored`)."""
        if self._check_pending:
            self._check_pending = False
            self._check_scored()

    def _mark_stale(self, names: Sequence[str]) -> None:
        """Say the shown scores are from before ``names`` changed, grey the table and
        keep them out of Export until Compute runs again."""
        self._stale = " and ".join(repr(name) for name in names)
        self._stop_check_timer()
        self._update_table()
        if self.results:  # else Compute is still running: its rows come stale
            self.status.value = self._stale_line()

    def _stale_line(self) -> str:
        """The status line of stale scores (:data:`STALE_SCORES`)."""
        return STALE_SCORES.format(names=self._stale, line=self._line)

    def _on_layer_removed(self, event) -> None:
        """A layer the shown rows score was closed: clear them (Export would write them as
        current) and say why; a computation still running for it is dropped when done."""
        removed = getattr(event, "value", None)
        scored = [ref() for ref in self._scored]
        if self._closed or removed is None or not any(_same(removed, layer) for layer in scored):
            return
        names = " vs ".join(repr(layer.name) for layer in scored if layer is not None)
        self._clear_results()
        self.status.value = f"Scores of {names} cleared: {removed.name!r} was closed."

    def _on_compute_clicked(self, _value=None) -> None:
        """Clear the previous rows, check the layers and score them in a worker."""
        self._clear_results()
        try:
            job = self._job()
        except ValueError as err:
            self._report_error(str(err))
            return
        self.compute_button.enabled = False
        self.status.value = "Computing…"
        self._worker = start_worker(
            _score_and_fingerprint,
            *job,
            connect={
                "returned": self._on_worker_returned,
                "errored": self._on_worker_errored,
                "finished": self._on_worker_finished,
            },
        )

    def _on_closed(self) -> None:
        """The dock is closed (napari's X, or its viewer closed): a computation still
        running ends unseen, since closing the viewer deletes the widgets."""
        self._closed = True
        self._unwatch()

    def _on_worker_returned(self, result: tuple[list[dict[str, Any]], list[tuple]]) -> None:
        rows, fingerprints = result
        if not self._closed and self._scored:  # () when a scored layer was closed meanwhile
            self._set_results(rows)
            self._set_fingerprints(fingerprints)

    def _on_worker_errored(self, err: Exception) -> None:
        if not self._closed:
            self._report_error(f"Metrics failed: {err}")

    def _on_worker_finished(self) -> None:
        self._worker = None
        if not self._closed:
            self.compute_button.enabled = True

    def _report_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.value = message
        self._show_results()
        show_error(message)

    def _show_results(self) -> None:
        """Scroll a small dock to the status line and the table under it (the view may
        be on the comparison, or on the Compute button above them)."""
        if not self._closed:
            scroll_into_view(self.body, self.results_box)

    def _clear_results(self) -> None:
        """Empty the results table (Export stays on only for comparison rows)."""
        self.results, self._scored, self._stale, self._line = [], (), "", ""
        self._unwatch()
        self._update_table()

    def _set_results(self, rows: list[dict[str, Any]]) -> None:
        self.results = [dict(row) for row in rows]
        if rows:
            # the scores hold only pixel by pixel: the warning stays next to them
            warning = f". Warning: {self._placement}" if self._placement else ""
            self._line = _status_line(rows, self._scale) + warning
            self.status.value = self._stale_line() if self._stale else self._line
        self._update_table()
        self._show_results()

    # ----------------------------------------------------------------- display
    def set_comparison(self, rows: Iterable[dict[str, Any]]) -> None:
        """Show extra rows (e.g. ``{"model": "before fine-tuning", "dice": ...}``) first.

        Any keys are accepted; ``COLUMN_ORDER`` places the known ones. An empty list
        removes the comparison. A small dock scrolls to it: it is what the user waits for.
        """
        self.comparison = [dict(row) for row in rows]
        self._update_table()
        if self.comparison:
            scroll_into_view(self.body, self.comparison_box)

    def rows(self) -> list[dict[str, Any]]:
        """Everything shown and current: the comparison rows, then the results (none while
        they are stale)."""
        return self.comparison + ([] if self._stale else self.results)

    def _update_table(self) -> None:
        width = _fill_table(self.table, self.results, RESULT_ORDER, SLICE_HIDDEN, SLICE_DECIMALS)
        self.table_note.value = _slice_notes(self.results)
        self.table_note.visible = bool(self.table_note.value)
        objects = _object_rows(self.results)
        width = max(
            width, _fill_table(self.objects_table, objects, OBJECT_ORDER, decimals=SLICE_DECIMALS)
        )
        if objects:  # the last row is no mean: its cell says what it is
            self.objects_table.native.item(len(objects) - 1, 0).setToolTip(ALL_SLICES_TIP)
        self.objects_title.value = _objects_title(self.results)
        self.objects_title.visible = self.objects_table.visible = bool(objects)
        shown = [_short_model_row(row) for row in self.comparison]
        compared = _fill_table(
            self.comparison_table, shown, COMPARISON_ORDER, COMPARISON_HIDDEN, COMPARISON_DECIMALS
        )
        self._make_room(max(width, compared))
        _model_tips(self.comparison_table, self.comparison)
        _fit_rows(self.comparison_table)

        self.comparison_note.value = _comparison_note(self.comparison)
        self.comparison_note.visible = bool(self.comparison_note.value)
        shown = bool(self.comparison)
        self.comparison_box.visible = shown
        self.table.visible = bool(self.results) or not shown  # no empty table above it
        for table in (self.table, self.objects_table):
            table.native.setEnabled(not self._stale)  # greyed: from before a change
        self.export_button.enabled = bool(self.rows())

    def _make_room(self, columns: int) -> None:
        """Widen the dock, up to :data:`DOCK_MAX_MIN_WIDTH`, to hold tables whose columns
        are ``columns`` px wide: at 1366 x 768 the per-slice table's 8 columns (363 px) had
        a 352 px view beside Fine-tune, 320 beside Segment alone. Never narrowed again (the
        column would jump at every Compute); wider tables scroll sideways."""
        tables = (self.table.native, self.objects_table.native, self.comparison_table.native)
        area = self.body.scroll_area
        margins = self.body.native.layout().contentsMargins()
        # napari's style draws the scroll bar 2 px wider than its size hint
        bar = area.verticalScrollBar().sizeHint().width() + 2
        spare = margins.left() + margins.right() + bar  # the dock's width around a table
        frame = 2 * self.table.native.frameWidth()
        width = min(columns + frame, DOCK_MAX_MIN_WIDTH - spare)
        if width <= max(t.minimumWidth() for t in tables):
            return
        for table in tables:
            table.setMinimumWidth(width)
        # as fit_width would, once the layout has run
        area.setMinimumWidth(max(area.minimumWidth(), width + spare))

    # ----------------------------------------------------------------- export
    def export_csv(self, path: str | os.PathLike) -> Path:
        """Write all shown rows (with the layer names) to a CSV file; return its path."""
        rows = self.rows()
        if not rows and self._stale:
            raise ValueError(f"The scores are from before {self._stale} changed: Compute again.")
        if not rows:
            raise ValueError("Nothing to export yet: compute the metrics first.")
        return write_csv(path, rows, _columns(rows))

    def _on_export_clicked(self, _value=None) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self.native, "Export metrics", "metrics.csv", "CSV files (*.csv)"
        )
        if not path:
            return
        if not path.lower().endswith(".csv"):
            path += ".csv"  # a name the dialog did not check: ask before replacing it
            if Path(path).exists() and not self._confirm_replace(path):
                self.status.value = f"Not exported: {path} exists and was kept."
                return
        try:
            written = self.export_csv(path)
        except (OSError, ValueError) as err:
            self._report_error(f"Could not export: {err}")
            return
        self.status.value = f"Saved {written}"
        self._show_results()

    def _confirm_replace(self, path: str) -> bool:
        """Ask whether to replace ``path``; True only for Yes."""
        from qtpy.QtWidgets import QMessageBox

        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        answer = QMessageBox.question(
            self.native,
            "Export metrics",
            f"{path} already exists. Replace it?",
            buttons,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes


def _setup_table(table: Table) -> None:
    from qtpy.QtWidgets import QAbstractItemView, QSizePolicy, QStyledItemDelegate

    native = table.native
    native.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    # magicgui's delegate re-rounds numbers to 4 digits; cells are formatted here.
    native.setItemDelegate(QStyledItemDelegate(native))
    native.verticalHeader().setVisible(False)
    native.setMinimumHeight(90)
    native.setMinimumWidth(120)
    native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)


def _fill_table(
    table: Table,
    rows: list[dict[str, Any]],
    order: Sequence[str] = COLUMN_ORDER,
    hidden: frozenset[str] = HIDDEN_COLUMNS,
    decimals: int = COMPARISON_DECIMALS,
) -> int:
    """Show ``rows`` in ``order`` but for the ``hidden`` columns, scores between 0 and 1
    to ``decimals`` decimals, under short headers (:data:`HEADERS`); the columns fit
    their contents, text ones at most ``TEXT_COLUMN_MAX_WIDTH`` wide (wrapped, whole in
    the cell's tooltip), the last one stretched to the view's width. Returns their
    width before that stretch (px)."""
    columns = [c for c in _columns(rows, order) if c not in hidden]
    cells = [[_format(col, row.get(col), decimals, table=True) for col in columns] for row in rows]
    table.value = {
        "data": cells,
        "index": [],
        "columns": columns,
    }
    native = table.native
    unit = next((str(row["unit"]) for row in rows if row.get("unit")), "scaled")
    _name_columns(native, columns, "scaled" if unit == SCALED_PX else unit)
    for column, name in enumerate(columns):
        if name in TEXT_COLUMNS:
            for row in range(native.rowCount()):
                item = native.item(row, column)
                if item is not None:
                    item.setToolTip(item.text())
    header = native.horizontalHeader()
    header.setStretchLastSection(False)  # else the last column keeps its stretched width
    native.resizeColumnsToContents()
    for column, name in enumerate(columns):
        if name in TEXT_COLUMNS:
            native.setColumnWidth(column, min(native.columnWidth(column), TEXT_COLUMN_MAX_WIDTH))
    width = sum(native.columnWidth(column) for column in range(len(columns)))
    header.setStretchLastSection(True)  # the view's spare width
    native.resizeRowsToContents()  # capped columns wrap their text
    return width


def _name_columns(native, columns: Sequence[str], unit: str) -> None:
    """Give the QTableWidget ``native``'s headers their short names and full-name
    tooltips (:data:`HEADERS`; ``unit``: the physical distances'), each keeping its
    column's key (:func:`column_keys`)."""
    from qtpy.QtCore import Qt

    for index, key in enumerate(columns):
        item = native.horizontalHeaderItem(index)
        if item is None:
            continue
        text, tip = HEADERS.get(key, (key, ""))
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setText(text.format(unit=unit))
        if tip:
            item.setToolTip(tip.format(unit=unit))


def column_keys(native) -> list[str]:
    """The keys ("dice", "hd95_px"...; the CSV's column names) of the QTableWidget
    ``native``'s columns, whose headers show short names."""
    from qtpy.QtCore import Qt

    keys = []
    for index in range(native.columnCount()):
        item = native.horizontalHeaderItem(index)
        key = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        keys.append(str(key) if key else item.text() if item is not None else "")
    return keys


def _compared_model(row: dict[str, Any]) -> active_model.ModelChoice | None:
    """The model of a comparison row that names it (``model_id``: a registry name or a
    checkpoint file, a Fine-tune run's by its run's name and lineage); None for one that
    does not."""
    model = str(row.get("model_id") or "")
    if not model or not row.get("stage"):
        return None
    return (
        active_model.file_choice(model)
        if os.path.isfile(model)
        else active_model.ModelChoice(model)
    )


def _short_model_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its model named by its stage in the table ("before", "after"): the
    note under it names the models short, as the Segment dock does (:func:`_model_names`);
    the name in the cell ("before: TM-UNet colonoscopy") wrapped over 3 lines at a dock's
    width. Its full name and lineage are the cell's tooltip (:func:`_model_tips`)."""
    choice = _compared_model(row)
    if choice is None:
        return row
    return {**row, "model": str(row["stage"])}


def _model_tips(table: Table, rows: list[dict[str, Any]]) -> None:
    """Give the model cell of each of ``table``'s rows that names its model short the full
    name, the models it descends from and its checkpoint file
    (:func:`active_model.provenance`) as its tooltip."""
    header = column_keys(table.native)
    if "model" not in header:
        return
    for index, row in enumerate(rows):
        choice = _compared_model(row)
        item = table.native.item(index, header.index("model"))
        if choice is not None and item is not None:
            item.setToolTip(f"{row['stage']} fine-tuning: {active_model.provenance(choice)}")


def _fit_rows(table: Table) -> None:
    """Make ``table`` as high as its header, rows and horizontal scroll bar: every row in
    view without an inner vertical scroll bar (a few comparison rows)."""
    native = table.native
    rows = sum(native.rowHeight(row) for row in range(native.rowCount()))
    bar = native.horizontalScrollBar().sizeHint().height()
    frame = 2 * native.frameWidth()
    native.setMinimumHeight(native.horizontalHeader().sizeHint().height() + rows + bar + frame)
    native.setMaximumHeight(native.minimumHeight())


def _layer_array(layer) -> np.ndarray:
    """A Labels layer's data (numpy, dask, multiscale) as a numpy array; an Image layer
    that looks like a mask as its labels (``mask_labels``, as Convert to mask makes them: a
    grey + alpha image's grey channel, an RGB one's colour channels collapsed, a 0/255
    mask as 0/1, its JPEG noise background; instance ids kept, so that a CPM-15 mask
    opened with File > Open is scored object by object)."""
    from napari.layers import Image

    from .data.images import drop_leading_singletons, mask_labels

    data = np.asarray(full_data(layer))
    if isinstance(layer, Image):
        data, _ = mask_labels(data, colour=bool(layer.rgb))
    return drop_leading_singletons(data)


def _yx_scale(layer) -> tuple[float, ...]:
    """A layer's scale of its last two axes (what the physical distances depend on)."""
    return tuple(float(s) for s in layer.scale[-2:])


def _fingerprint(data, scale: tuple[float, ...]) -> tuple:
    """What a layer's scores depend on: a content hash of its ``data`` at full resolution
    (``full_data``; lazy data, which is not edited in place, by identity: hashing would
    load it all) and its yx ``scale`` (the physical distances)."""
    if not isinstance(data, np.ndarray):
        return id(data), scale
    array = np.ascontiguousarray(data)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str((array.shape, array.dtype.str)).encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest(), scale


def _score_and_fingerprint(job: dict[str, Any], sources: list[tuple]) -> tuple[list, list]:
    """Compute's work, in its worker: the :func:`_fingerprint` of each scored layer's data
    and scale (``sources``), taken before the scores read the data (an edit meanwhile
    then shows as a change), and the rows (:func:`_score_layers`). Hashing a large stack
    takes a while: on the GUI thread it stalled Compute, or the first stroke after it."""
    fingerprints = _fingerprints_of(sources)
    return _score_layers(**job), fingerprints


def _fingerprints_of(sources: list[tuple]) -> list[tuple]:
    """The :func:`_fingerprint` of each (data, yx scale) of ``sources`` (in a worker)."""
    return [_fingerprint(data, scale) for data, scale in sources]


def _physical_spacing(layer) -> tuple[tuple[float, float] | None, str]:
    """(sy, sx) and a unit name when the layer's last two axes are scaled, else (None, "")."""
    scale = _yx_scale(layer)
    if np.allclose(scale, 1.0):
        return None, ""
    unit = ""
    units = getattr(layer, "units", None)
    if units:
        try:
            unit = format(units[-1], "~")  # pint's short form, e.g. "µm"
        except (TypeError, ValueError):
            unit = str(units[-1])
        if unit in ("px", "pixel"):
            unit = SCALED_PX
    return scale, unit


def _shared_spacing(pred_layer, ref_layer) -> tuple[tuple[float, float] | None, str, Any]:
    """The spacing, unit and layer of the scale for physical distances: the reference's
    when it is scaled, else the prediction's (e.g. a Segment output of a scaled TIFF
    against a PNG mask). Scales that differ are warned about, naming the layer used."""
    source = ref_layer
    spacing, unit = _physical_spacing(ref_layer)
    if spacing is None:
        source = pred_layer
        spacing, unit = _physical_spacing(pred_layer)
    if spacing is not None and not np.allclose(pred_layer.scale[-2:], ref_layer.scale[-2:]):
        from napari.utils.notifications import show_warning

        show_warning(f"The layers' scales differ; distances use the scale of {source.name!r}.")
    return spacing, unit, source


def _scale_words(spacing, unit: str, source, prediction, reference) -> str:
    """How the distances were scaled, for the status line, or "" where that needs no
    words (pixels, or one scale with a physical unit): "at 0.25 µm per px, the scale of
    'x'; the layers' scales differ", "scaled by 0.5, the scale of 'x'"."""
    if spacing is None:
        return ""
    differ = not np.allclose(prediction.scale[-2:], reference.scale[-2:])
    if unit != SCALED_PX and not differ:
        return ""
    sy, sx = spacing
    size = f"{sy:g}" if np.isclose(sy, sx) else f"{sy:g} x {sx:g}"
    how = f"scaled by {size}" if unit == SCALED_PX else f"at {size} {unit} per px"
    words = f"{how}, the scale of {source.name!r}"
    return words + ("; the layers' scales differ" if differ else "")


def _placement_warning(prediction, reference) -> str:
    """:func:`placement_warning` for a pair as Compute scores it: over the prediction's yx
    size as it is read (:func:`_shape`); "" for fewer than 2 axes (a scale difference is
    :func:`_shared_spacing`'s)."""
    shape = _shape(prediction)
    if len(shape) < 2:
        return ""  # Compute refuses it
    return placement_warning(prediction, reference, shape[-2:])


def _shape(layer) -> tuple[int, ...]:
    """A layer's data shape at full resolution, without an image's channel axis (RGB, or
    grey + alpha: ``data.images.is_grey_alpha``) and without leading axes of size 1
    (``data.images.leading_singletons``), as :func:`_layer_array` reads it; nothing is
    loaded."""
    from napari.layers import Image

    from .data.images import is_grey_alpha, leading_singletons

    shape = tuple(full_data(layer).shape)
    channels = isinstance(layer, Image) and (layer.rgb or is_grey_alpha(shape))
    shape = shape[:-1] if channels else shape
    return shape[leading_singletons(shape) :]


def _extra_axis(prediction, reference) -> str:
    """When one layer has a last axis of 2 to 4 values that the other lacks (a mask image's
    channels, which napari's Convert to Labels keeps as an axis), a sentence naming it and
    what to do; else ""."""
    for layer, other in ((reference, prediction), (prediction, reference)):
        shape = _shape(layer)
        if shape[:-1] == _shape(other) and 2 <= shape[-1] <= 4:
            return (
                f"{layer.name!r} ({_size(layer)}) has a last axis of {shape[-1]} values that "
                f"{other.name!r} ({_size(other)}) lacks (a mask image's channels, kept as an "
                "axis by Convert to Labels): delete it, open the mask file again with "
                "File > Open and choose that image as the reference, which Metrics reads "
                f"as a mask (to paint on it: {CONVERT_TO_MASK})."
            )
    return ""


def _size(layer) -> str:
    """A layer's shape for a sentence: "360 x 528"."""
    return " x ".join(str(n) for n in _shape(layer))


def _same(a, b) -> bool:
    """Identity of two layers, seeing through napari's PublicOnlyProxy wrappers."""
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def _in(layer, layers: Iterable) -> bool:
    """Whether ``layer`` is one of ``layers`` (by identity; False for None)."""
    return layer is not None and any(_same(layer, other) for other in layers)


def _looks_like_reference(layer) -> bool:
    """A reference by its name ("612 mask", "ground truth"), an Image layer that looks
    like a mask (predictions are Segment's Labels layers), or a layer this plugin made a
    reference mask (``_layer_style.is_reference``: a mask file the reader opened, or one
    Convert to mask made, named "101 [1]" after its file) that names no model (a saved
    Segment result the reader reopened is a prediction)."""
    from napari.layers import Image

    if isinstance(layer, Image) or (is_reference(layer) and not _is_prediction(layer)):
        return True
    return _REFERENCE_HINT.search(layer.name) is not None


def _is_prediction(layer) -> bool:
    """Whether ``layer`` is a model's output: its metadata name the model (Segment's)."""
    return bool((layer.metadata or {}).get("model"))


def _is_mask_layer(layer) -> bool:
    """A Labels layer, or an Image layer that looks like a mask (:func:`_is_mask_image`)."""
    from napari.layers import Labels

    return isinstance(layer, Labels) or _is_mask_image(layer)


# id(data) -> (data, whether it looks like a mask): judged once per array, not at each
# refresh of the choosers; entries of arrays no longer in a layer go at the next refresh.
_MASK_IMAGES: dict[int, tuple[Any, bool]] = {}


def _is_mask_image(layer) -> bool:
    """Whether ``layer`` is an Image layer holding a mask by the one rule the Segment
    dock's hint and the Fine-tune pairs use (``_image_layers.is_mask_image``: grey, grey +
    alpha as MoNuSeg's PNG masks, or RGB(A) with equal colour channels as Kvasir-SEG's
    JPEGs, integer with flat regions; a stack by its first frame, a lazy or large one by
    its thumbnail), judged once per array."""
    from napari.layers import Image

    from ._image_layers import is_mask_image

    if not isinstance(layer, Image):
        return False
    data = layer.data
    known = _MASK_IMAGES.get(id(data))
    if known is None or known[0] is not data:
        known = _MASK_IMAGES[id(data)] = (data, is_mask_image(layer))
    return known[1]


def _forget_mask_images(layers) -> None:
    """Drop the judgements of arrays that no layer in ``layers`` holds any more."""
    held = {id(layer.data) for layer in layers}
    for key in [key for key in _MASK_IMAGES if key not in held]:
        del _MASK_IMAGES[key]


def _name_stem(name: str) -> str:
    """A layer or file name without its role words, lowercased: "101 mask" -> "101"."""
    return _ROLE_WORDS.sub(" ", name).strip(" _-.").lower()


def _image_names(reference) -> set[str]:
    """The names under which ``reference`` belongs to an image: its picture
    (:func:`owning_picture`), its file's stem and its own name's stem (napari's suffix for a
    repeated name dropped: "20 [1]", a mask file "20.tif" opened beside the picture "20",
    is "20")."""
    names = {owning_picture(reference), reference.name}
    path = layer_source_path(reference)
    if path:
        names.add(Path(str(path)).stem)
    return {_name_stem(name) for name in names} - {""}


def _same_picture(layer, other) -> bool:
    """Whether two layers may be of one picture: False only when both name the picture
    they belong to (:func:`owning_picture`) and the names differ (by :func:`_name_stem`), e.g.
    the masks of two pictures of a dataset folder; True when either is None."""
    if layer is None or other is None:
        return True
    pictures = owning_picture(layer), owning_picture(other)
    return "" in pictures or _name_stem(pictures[0]) == _name_stem(pictures[1])


def _pictures_apart(prediction, reference) -> str:
    """A warning when the two layers name different pictures (:func:`_same_picture`),
    e.g. the masks of two pictures of a folder paired by their size; else ""."""
    if _same_picture(prediction, reference):
        return ""
    return (
        f"{prediction.name!r} belongs to the picture {owning_picture(prediction)!r} and "
        f"{reference.name!r} to {owning_picture(reference)!r}: choose the reference of the "
        "prediction's picture."
    )


def _pair_rank(prediction, reference) -> int:
    """How surely ``reference`` belongs to ``prediction``'s image: 2 when the image the
    prediction was made from (Segment's metadata) is the reference's, 1 when only their
    name stems match, 0 otherwise (and for no reference); :data:`OTHER_PICTURE` when the
    two name different pictures (:func:`_same_picture`, either way round): the dock never
    pairs those by itself (:meth:`MetricsWidget._candidates`)."""
    if not _same_picture(prediction, reference):
        return OTHER_PICTURE
    if reference is None:
        return 0
    images = _image_names(reference)
    made_from = _name_stem(owning_picture(prediction))
    if made_from and made_from in images:
        return 2
    return 1 if _name_stem(prediction.name) in images else 0


def _model_names(rows: Sequence[dict[str, Any]]) -> str:
    """Which model each comparison row that names its model by its stage ("before",
    "after": the table's model column) is, named short as the Segment dock does
    (:func:`active_model.short_name`); "" when none does."""
    named = [(row["stage"], _compared_model(row)) for row in rows if row.get("stage")]
    return "; ".join(f"{stage}: {active_model.short_name(c)}" for stage, c in named if c)


def _slice_notes(rows: Sequence[dict[str, Any]]) -> str:
    """The per-slice table's notes, in a line under it: the slices with an empty mask
    (their HD is the image's diagonal); the mean's count of them is in the status line."""
    notes = [f"slice {row['slice']}: {row['note']}" for row in rows[:-1] if row.get("note")]
    return "; ".join(notes) + (" (HD = image diagonal)" if notes else "")


def _comparison_note(rows: Sequence[dict[str, Any]]) -> str:
    """The lines under the comparison table: the models its rows name by stage
    (:func:`_model_names`), then the rows' notes, each of their lines once (the rows
    share the held-out part and the pairs left out: one line each)."""
    lines = (line for row in rows if row.get("note") for line in str(row["note"]).splitlines())
    lines = [_model_names(rows), *dict.fromkeys(line for line in lines if line.strip())]
    return "\n".join(line for line in lines if line)


def _score_layers(**job) -> list[dict[str, Any]]:
    """``score_labels``' rows; on a stack the mean row also gets ``stack_dice``, the Dice
    of all slices together (a missed lesion on one slice is not hidden by empty slices
    that each score 1)."""
    rows = score_labels(**job)
    if len(rows) > 2:
        rows[-1]["stack_dice"] = dice_score(job["pred"] > 0, job["ref"] > 0)
    return rows


def _status_line(rows: Sequence[dict[str, Any]], scale: str = "") -> str:
    """The layers and their mean scores (``rows``' last row) in one line: Dice, IoU, HD and
    HD95, so that they can be read in a narrow dock where the table's columns run out of
    view; distances in the layers' physical unit where they are scaled, else in pixels,
    with ``scale`` (:func:`_scale_words`) in brackets: a scale without a unit gives the
    scaled distances there. On a stack it says the scores are means, carries the table's
    empty-mask note and gives the Dice over the whole stack."""
    overall = rows[-1]
    hd, hd95, unit = overall["hd_px"], overall["hd95_px"], "px"
    physical = overall.get("hd_physical") is not None
    if physical and overall.get("unit") != SCALED_PX:
        hd, hd95 = overall["hd_physical"], overall["hd95_physical"]
        unit = overall.get("unit") or "scaled units"
    elif physical:  # a scale in napari's "pixel": the pixels first, scaled in brackets
        scaled = (_format("hd", overall[key]) for key in ("hd_physical", "hd95_physical"))
        scale = " and ".join(scaled) + f" {scale}"
    scores = (
        f"Dice {overall['dice']:.4f}, IoU {overall['iou']:.4f}, "
        f"HD {_format('hd', hd)} {unit}, HD95 {_format('hd', hd95)} {unit}"
    )
    if scale:
        scores += f" ({scale})"
    layers = f"{overall['prediction']} vs {overall['reference']}"
    slices = len(rows) - 1
    if slices == 1:
        return f"{layers}: {scores} over 1 slice" + _objects_words(overall)
    line = f"{layers}, mean over {plural(slices, 'slice')}: {scores}"
    empty_note = str(overall.get("note") or "").partition("; ")[2]  # after "mean of N"
    if empty_note:
        line += f"; {empty_note}"
    if overall.get("stack_dice") is not None:
        line += f". Dice over the whole stack: {overall['stack_dice']:.4f}"
    return line + _objects_words(overall)


def _objects_words(overall: dict[str, Any]) -> str:
    """The objects' scores of the mean row (all slices' objects), for the status line:
    ". Objects: 173 of 256 matched (IoU > 0.5), 87 extra; PQ 0.5160, AJI 0.5507"; "" for
    a pair without instance ids."""
    if "matched" not in overall:
        return ""
    matched, reference = overall["matched"], overall["matched"] + overall["missed"]
    return (
        f". Objects: {matched} of {reference} matched (IoU > 0.5), {overall['extra']} extra; "
        f"PQ {_format('pq', overall['pq'])}, AJI {_format('aji', overall['aji'])}"
    )


def _object_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects table's rows: each row's slice and object columns, the mean row's as
    :data:`ALL_SLICES` (all slices' objects together, not a mean); [] without them."""
    if not rows or "matched" not in rows[-1]:
        return []
    shown = [{key: row[key] for key in OBJECT_ORDER} for row in rows]
    if shown[-1]["slice"] == OVERALL:
        shown[-1]["slice"] = ALL_SLICES
    return shown


def _objects_title(rows: Sequence[dict[str, Any]]) -> str:
    """The line above the objects table: how objects are paired, and how many each layer
    holds (Segment's summary counts the prediction's; this says how many of them are
    right); "" without object scores."""
    if not rows or "matched" not in rows[-1]:
        return ""
    overall = rows[-1]
    predicted = overall["matched"] + overall["extra"]
    reference = overall["matched"] + overall["missed"]
    return (
        f"Objects, paired one to one at IoU > 0.5: {plural(predicted, 'object')} in "
        f"{overall['prediction']!r}, {reference} in {overall['reference']!r}"
    )


def _columns(rows: Sequence[dict[str, Any]], order: Sequence[str] = COLUMN_ORDER) -> list[str]:
    """The rows' keys: the known ones in ``order``, then the others as they appear."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    known = [c for c in order if c in seen]
    return known + [c for c in seen if c not in order]


def _format(column: str, value: Any, decimals: int = 4, table: bool = False) -> str:
    """``value`` of ``column`` in words: a score between 0 and 1 to ``decimals``
    decimals, a distance to 2 (1 in a ``table``: a tenth of a pixel is all they tell)."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "nan"
        if column.startswith("hd"):
            return f"{value:.1f}" if table else f"{value:.2f}"
        return f"{value:.{decimals}f}"
    return str(value)
