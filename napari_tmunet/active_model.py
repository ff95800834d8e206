"""The active model: which model Segment uses, and the one before it (no Qt, no napari).

One :class:`ActiveModel` per viewer (:func:`for_viewer`). The Fine-tune widget sets the
model it trained; Segment shows it; "Revert to previous model" swaps back. A viewer's
holder saves both models in the settings file at every change and a new viewer's starts
from them (a next session goes on with the model the user made active); each save reads the
file again, and a model another window made active meanwhile becomes the previous one. A
saved model whose checkpoint file is not found (a run folder moved, a network share not yet
mounted) is kept in the settings file but not used by that holder: Segment runs the shipped
model in this session, :attr:`ActiveModel.note` says so (for the active model: the previous
one is not in use) and :meth:`ActiveModel.missing_words` says it for as long as it lasts;
the model comes back in a session that finds the file. Revert (to the previous model, when
its file is there) or making another model active (a fine-tune, or a shipped model chosen
for its images in Segment) replaces it, keeping it as the previous model. Widgets subscribe
with a callback taking the new :class:`ModelChoice`; bound methods are held weakly, so a
closed widget is dropped without unsubscribing. Callbacks run on the thread that called
:meth:`ActiveModel.set` / :meth:`ActiveModel.revert` (the GUI thread in napari).
"""

from __future__ import annotations

import json
import os
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from . import settings

RUN_PLAN = "finetune.json"  # a Fine-tune run's record: RUN/finetune.json, RUN/train/best.pt
# run_name's form, "fine-tuned on IMAGE 2026-12-04 16:30:02" (older runs: no image, or no
# seconds); a name a script gave its run may be anything
_RUN_NAME = re.compile(
    r"fine-tuned on (?:.+ )?\d{4}-(?P<day>\d\d-\d\d) (?P<minute>\d\d:\d\d)(?P<second>:\d\d)?"
)
SHIPPED_PREFIX = "TM-UNet "  # "TM-UNet nuclei": the shipped models' names
LINEAGE_MAX = 20  # finetune.json files followed back (a hand-edited plan may loop)


@dataclass(frozen=True)
class ModelChoice:
    """A model by registry name or checkpoint path, with a short name for people.

    ``modality``: the kind of image it is meant for (e.g. the modality of the images it
    was fine-tuned on); "" when unknown. ``lineage``: the models it was fine-tuned from,
    the nearest first (a mask made by one of them is a mask this model has replaced).
    """

    model: str  # registry name or checkpoint file path
    label: str = ""
    modality: str = ""
    lineage: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.model)


Listener = Callable[[ModelChoice], None]


class ActiveModel:
    """The current model and the previous one; tells subscribers when either changes."""

    def __init__(self, persist: bool = False) -> None:
        self._lock = threading.Lock()
        # the saved models: either may be one whose file this session did not find
        self._current: ModelChoice | None = None
        self._previous: ModelChoice | None = None
        self._missing: set[str] = set()  # those files (models), found missing at the start
        self._seen: str | None = None  # the file's active model as this holder last saw it
        self._listeners: list[Callable[[], Listener | None]] = []
        self._persist = persist
        self.note = ""  # why a saved model is not used this session ("" when all are)
        if persist:
            self._restore()

    def _restore(self) -> None:
        """Start from the models the settings file saved. One whose checkpoint file is not
        found is kept (saved as it was: the file may come back, e.g. a share mounted later)
        but not used in this session (:attr:`current` / :attr:`previous` leave it out), and
        :attr:`note` says so."""
        saved = settings.saved_active_models()
        self._seen = _model_of(saved.get("current"))
        self._current = with_modality(_choice_from(saved.get("current")))
        self._previous = with_modality(_choice_from(saved.get("previous")))
        missing = {
            key: choice
            for key, choice in (("current", self._current), ("previous", self._previous))
            if choice is not None and not _exists(choice.model)
        }
        self._missing = {choice.model for choice in missing.values()}
        # a settings file that cannot be used (a hand edit): said at the start, not only
        # in a terminal; only the model in use is worth a message at every start: a
        # missing previous one is said where Revert is (missing_words)
        notes = settings.problems()
        if "current" in missing:
            notes.append(_missing_words(missing["current"], self._usable(self._previous)))
        self.note = " ".join(notes)

    def take_note(self) -> str:
        """:attr:`note`, once: the first widget to show it clears it."""
        note, self.note = self.note, ""
        return note

    def _save(self) -> None:
        """Save both models for the next session (under the lock, after a change). The
        settings file is read again first: a model that another window (or a script) made
        active since this holder last saw the file becomes the previous one here, rather
        than vanishing from both."""
        if not self._persist:
            return

        def merged(saved) -> dict:  # the file's active models now
            other = made_active_elsewhere(saved, self._current, self._previous, self._seen)
            if other is not None:
                self._previous = other  # another window's: kept, Revert brings it back
                if not _exists(other.model):
                    self._missing.add(other.model)
            models = {"current": self._current, "previous": self._previous}
            return {k: asdict(v) for k, v in models.items() if v is not None}

        if settings.update(settings.ACTIVE_KEY, merged):
            self._seen = self._current.model if self._current is not None else None

    @property
    def current(self) -> ModelChoice | None:
        """The model made active; None when none is, or its file was not found at the
        start (then the shipped model runs)."""
        with self._lock:
            return self._usable(self._current)

    @property
    def previous(self) -> ModelChoice | None:
        """The model Revert makes active; None when there is none, or its file was not
        found at the start and is not there yet. An active model found missing does not
        stop it: Revert is the way back to a model that is there."""
        with self._lock:
            return self._revertible()

    @property
    def missing_current(self) -> ModelChoice | None:
        """The model made active whose file was not found at the start (kept; the shipped
        model runs meanwhile); None when there is none."""
        with self._lock:
            return self._missing_one(self._current)

    @property
    def missing_previous(self) -> ModelChoice | None:
        """The previous model, when its file was not found at the start and is not there
        yet (kept; Revert does not offer it meanwhile); None otherwise."""
        with self._lock:
            return self._missing_one(self._previous, recheck=True)

    def missing_words(self) -> str:
        """Sentences for the Revert button's tooltip: which saved model's file is not found
        (the active one's and the previous one's), and what Revert does meanwhile; "" when
        both are there."""
        with self._lock:
            current = self._missing_one(self._current)
            previous = self._revertible()
            lost = self._missing_one(self._previous, recheck=True)
        words = []
        if current is not None:
            words.append(f"{_not_found(current)}; the shipped model runs meanwhile.")
            words.append(_ways_out(current, previous, current.label))
        if lost is not None:
            words.append(f"{_not_found(lost)} (kept: Revert offers it when it is there).")
        return " ".join(words)

    def _usable(self, choice: ModelChoice | None) -> ModelChoice | None:
        """``choice``, or None for one whose file this session found missing."""
        return None if choice is None or choice.model in self._missing else choice

    def _missing_one(self, choice: ModelChoice | None, recheck: bool = False):
        """``choice`` when its file was found missing (under the lock); ``recheck``: unless
        it is there now (a previous model: Revert may offer it again at once)."""
        if choice is None or choice.model not in self._missing:
            return None
        if recheck and os.path.isfile(choice.model):
            self._missing.discard(choice.model)  # e.g. the share is mounted now
            return None
        return choice

    def _revertible(self) -> ModelChoice | None:
        """:attr:`previous` (under the lock)."""
        if self._missing_one(self._previous, recheck=True) is not None:
            return None
        return self._previous

    def set(
        self,
        model: str,
        label: str = "",
        modality: str = "",
        lineage: tuple[str, ...] = (),
        previous: ModelChoice | None = None,
    ) -> ModelChoice:
        """Make ``model`` active; the active one becomes the previous (unless the same), or
        ``previous`` when given (a fine-tune's starting model: Revert brings it back; one
        change, one save). Without ``modality``, the one its model gives
        (:func:`with_modality`)."""
        choice = with_modality(ModelChoice(str(model), label, modality, tuple(lineage)))
        with self._lock:
            self._missing.discard(choice.model)  # made active again: its file is there
            if previous is not None:
                self._previous, self._current = previous, choice
            elif self._current is not None and self._current.model == choice.model:
                self._current = choice  # same model (e.g. a resumed run): keep the previous
            else:
                self._previous, self._current = self._current, choice
            self._save()
        self._notify(choice)
        return choice

    def revert(self) -> ModelChoice | None:
        """Swap the active and the previous model; returns the now active one (or None:
        no previous model, or its file not found, see :attr:`previous`). An active model
        whose file is not found becomes the previous one, kept as it is."""
        with self._lock:
            if self._revertible() is None:
                return None
            self._current, self._previous = self._previous, self._current
            choice = self._current
            self._save()
        self._notify(choice)
        return choice

    def subscribe(self, callback: Listener) -> None:
        """Call ``callback(choice)`` after every change (held weakly for bound methods)."""
        ref = (
            weakref.WeakMethod(callback)
            if hasattr(callback, "__self__")
            else (lambda cb=callback: cb)
        )
        with self._lock:
            self._listeners.append(ref)

    def unsubscribe(self, callback: Listener) -> None:
        with self._lock:
            self._listeners = [r for r in self._listeners if r() not in (None, callback)]

    def _notify(self, choice: ModelChoice) -> None:
        with self._lock:
            self._listeners = [r for r in self._listeners if r() is not None]
            callbacks = [r() for r in self._listeners]
        for callback in callbacks:
            if callback is not None:
                callback(choice)


def made_active_elsewhere(
    saved, current: ModelChoice | None, previous: ModelChoice | None, seen: str | None
) -> ModelChoice | None:
    """The model another window (or a script) made active since a holder last saw the
    settings file, which the holder then keeps as its previous model (rather than it
    vanishing from both): the active model of ``saved`` (the file's active models now,
    ``{"current": fields, "previous": fields}``) when it is neither the holder's
    ``current`` nor its ``previous`` model nor ``seen`` (the file's active model as the
    holder last saw it: its own save, or one it already took in); None otherwise."""
    other = _choice_from(saved.get("current") if isinstance(saved, dict) else None)
    known = {c.model for c in (current, previous) if c is not None} | {seen}
    return other if other is not None and other.model not in known else None


_holders: dict[int, tuple[Callable[[], object], ActiveModel]] = {}
_default = ActiveModel()


def for_viewer(viewer=None) -> ActiveModel:
    """The active-model holder of a viewer (napari's public proxy is seen through).

    ``None`` gives one process-wide holder (scripts without a viewer).
    """
    if viewer is None:
        return _default
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    entry = _holders.get(key)
    if entry is not None and entry[0]() is viewer:
        return entry[1]
    holder = ActiveModel(persist=True)
    _holders[key] = (weakref.ref(viewer, lambda _ref, k=key: _holders.pop(k, None)), holder)
    return holder


def saved_active() -> tuple[ModelChoice | None, ModelChoice | None]:
    """The model the user made active (Fine-tune, Revert), as the settings file saves it
    and a new viewer's Segment dock starts with it, for a tool without a viewer
    (``napari-tmunet-predict``): (that model, or None when none is saved or its file is
    not found; the one saved whose file is not found, or None). Nothing is written."""
    holder = ActiveModel(persist=True)
    return holder.current, holder.missing_current


def with_modality(choice: ModelChoice | None) -> ModelChoice | None:
    """``choice`` with the kind of image it is for: its own ``modality``, else its model's
    (:func:`registry.model_modality`: a shipped model's, what its checkpoint records, else
    its lineage's); left "" when none says (such a model runs on every kind,
    :func:`model_for_image`). Nothing is written to the model's file."""
    from . import registry

    if choice is None or choice.modality:
        return choice
    try:
        modality = registry.model_modality(choice.model)
    except RuntimeError:  # an unreadable registry: the docks say so
        modality = ""
    return replace(choice, modality=modality) if modality else choice


# How the lines name an active model that records no kind of image (model_for_image)
NO_KIND = "which records no kind of image, so it runs on every kind"


def model_for_image(
    modality: str, thumbnail, active: ModelChoice | None, who: str = "the active model", said=""
) -> tuple[str, str, bool]:
    """(model, why, fits): the model for an image of ``modality`` seen in ``thumbnail``,
    the one rule of the Segment dock (Segment, Segment all) and ``napari-tmunet-predict``:
    the ``active`` model (``ActiveModel.current``, :func:`saved_active`) for images of its
    modality, and for every kind when it records none (:func:`with_modality` gave it the
    one its checkpoint or lineage says); else :func:`registry.choose_model`'s (the shipped
    model the user chose for that kind, else the kind's shipped model; "" when no model is
    installed). ``who``: how ``why`` names the active model, ``said``: words after its
    reason (before a caveat). ``fits``: a checkpoint file of the user's fits; a shipped
    model is judged by the image (:func:`registry.users_choice`)."""
    from . import registry

    if active is None or active.modality not in ("", modality):
        choice = registry.choose_model(thumbnail, modality=modality)
        return (choice.entry.name if choice.entry else ""), choice.why, choice.fits
    why = f"{who} for {modality} images" if active.modality else f"{who}, {NO_KIND}"
    why += said
    entry = registry.find_model(active.model)
    if entry is None:
        return active.model, why, True
    choice = registry.users_choice(entry, thumbnail, modality, why)
    return entry.name, choice.why, choice.fits


def _choice_from(saved) -> ModelChoice | None:
    """A ModelChoice from its saved fields; None for anything else (a hand-edited file)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), str):
        return None
    lineage = saved.get("lineage") or ()
    return ModelChoice(
        saved["model"],
        str(saved.get("label") or ""),
        str(saved.get("modality") or ""),
        tuple(str(m) for m in lineage) if isinstance(lineage, list | tuple) else (),
    )


def _model_of(saved) -> str | None:
    """The "model" of a saved ModelChoice's fields; None for anything else."""
    choice = _choice_from(saved)
    return choice.model if choice is not None else None


def _missing_words(choice: ModelChoice, previous: ModelChoice | None) -> str:
    """The message at a start: the model made active, ``choice``, is not found, what is
    used instead in this session, that it is kept, and how to stop using it
    (:func:`_ways_out`)."""
    return (
        f"The model you made active, {choice.label}, is not found ({choice.model}): "
        "Segment uses the shipped model in this session; it is kept, and comes back "
        "at a start that finds the file (a run folder moved back, a drive mounted). "
        + _ways_out(choice, previous, "this one")
    )


def _ways_out(choice: ModelChoice, previous: ModelChoice | None, name: str) -> str:
    """How to stop using the active model ``choice`` whose file is not found (called
    ``name``): Revert to ``previous`` (a saved previous model that is there), a shipped
    model chosen for its images in Segment's Model box, or a new fine-tune made active;
    each makes another model active and keeps ``choice`` as the previous one."""
    revert = f"Revert (makes {previous.label} active), " if previous is not None else ""
    images = f"for {choice.modality} images " if choice.modality else ""
    return (
        f"To stop using it: {revert}choose a shipped model {images}in Segment's Model box, "
        f"or make a new fine-tune active; each keeps {name} as the previous model."
    )


def _not_found(choice: ModelChoice) -> str:
    """ "LABEL's file is not found: PATH"."""
    return f"{choice.label}'s file is not found: {choice.model}"


def _exists(model: str) -> bool:
    """Whether ``model`` can still run: a file that is there, or a shipped model's name
    (kept when the registry cannot be read: the docks say so, and it may come back)."""
    from . import registry

    if os.path.isfile(model):
        return True
    try:
        return registry.find_model(model) is not None
    except RuntimeError:
        return True


def run_name(image: str, when: datetime | None = None) -> str:
    """The name of a fine-tuned model: the image trained on and the time to the second
    (two runs on one image a minute apart are told apart)."""
    stamp = (when or datetime.now()).strftime("%Y-%m-%d %H:%M:%S")
    return f"fine-tuned on {image or 'your masks'} {stamp}"


def short_name(choice: ModelChoice, seconds: bool = False) -> str:
    """A model's name for the Segment dock's Model box and its result layers' names: a
    Fine-tune run's model (:func:`run_name`) as "BASE · tuned MM-DD HH:MM" (BASE:
    :func:`base_name`; ``seconds`` adds them, to tell apart two runs of one minute), any
    other model by its label (a shipped model's name, a file's name).

    The image trained on, the year and the models before are left to :func:`provenance`:
    the Model box and the layer list show about 25 letters, and what tells two fine-tuned
    models apart is when they were made.
    """
    match = _RUN_NAME.fullmatch(choice.label)
    if match is None:
        return choice.label
    stamp = f"{match['day']} {match['minute']}{(match['second'] or '') if seconds else ''}"
    base = base_name(choice)
    return f"{base} · tuned {stamp}" if base else f"tuned {stamp}"


def base_name(choice: ModelChoice) -> str:
    """What a fine-tuned model descends from, in a word: the shipped model at the start of
    its lineage without "TM-UNet " ("nuclei"), else the modality it is for, else ""."""
    lineage = choice.lineage or run_lineage(choice.model)
    root = lineage[-1] if lineage else ""
    if root.startswith(SHIPPED_PREFIX) and not os.path.isfile(root):
        return root[len(SHIPPED_PREFIX) :]
    return choice.modality


def run_lineage(model: str) -> tuple[str, ...]:
    """The models a Fine-tune run's checkpoint was fine-tuned from, the nearest first (each
    run's finetune.json ``start_model``: a shipped model's name or a checkpoint file); ()
    for a model that is no run's checkpoint."""
    lineage: list[str] = []
    seen = {model}
    while len(lineage) < LINEAGE_MAX:
        start = _plan_of(model).get("start_model")
        if not isinstance(start, str) or not start or start in seen:
            break
        seen.add(start)
        lineage.append(start)
        model = start
    return tuple(lineage)


def provenance(choice: ModelChoice) -> str:
    """A model's full name and where it comes from, for a tooltip or metadata: "fine-tuned
    on slide1 2026-12-04 16:30:02, from TM-UNet nuclei" (each model before it by its label),
    then its checkpoint file."""
    lineage = choice.lineage or run_lineage(choice.model)
    names = [choice.label, *(model_label(m) if os.path.isfile(m) else m for m in lineage)]
    text = ", from ".join(names)
    return f"{text}\n{choice.model}" if os.path.isfile(choice.model) else text


def file_choice(path: str, label: str = "") -> ModelChoice:
    """A checkpoint file as a :class:`ModelChoice` (one chosen by file, not made active): a
    Fine-tune run's by its run's name, modality and lineage (its finetune.json)."""
    return ModelChoice(str(path), label or model_label(path), run_modality(path), run_lineage(path))


def run_modality(model: str) -> str:
    """The modality a Fine-tune run's finetune.json records for its checkpoint ``model``
    ("" for a model that is no run's checkpoint, or a run that records none)."""
    modality = _plan_of(model).get("modality")
    return modality if isinstance(modality, str) else ""


def _plan_of(model: str) -> dict:
    """The finetune.json of the run whose checkpoint (RUN/train/*.pt) ``model`` is; {} for
    anything else."""
    path = Path(model)
    if path.parent.name != "train":
        return {}
    try:
        plan = json.loads((path.parent.parent / RUN_PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def model_label(path: str | os.PathLike) -> str:
    """The name of a checkpoint file for people: a Fine-tune run's checkpoint
    (RUN/train/*.pt) by the run's name (its finetune.json ``name``, or for a run made
    before runs had one, its first image and start time), else the file's name."""
    path = Path(path)
    try:
        plan = json.loads((path.parent.parent / RUN_PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.name
    if path.parent.name != "train" or not isinstance(plan, dict):
        return path.name
    if isinstance(plan.get("name"), str) and plan["name"]:
        return plan["name"]
    pairs = plan.get("pairs") if isinstance(plan.get("pairs"), list) else []
    image = str(pairs[0].get("name", "")) if pairs and isinstance(pairs[0], dict) else ""
    image = re.sub(r"^\d+-", "", image)  # "01-slide1": the run's file name of "slide1"
    try:
        when = datetime.fromisoformat(str(plan.get("created")))
    except ValueError:
        return path.name
    return run_name(str(image or Path(str(plan.get("dataset_folder") or "")).name), when)
