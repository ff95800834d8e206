"""The active model: which model Segment uses, and the one before it (no Qt, no napari).

One :class:`ActiveModel` per viewer (:func:`for_viewer`). The Fine-tune widget sets the
model it trained; Segment shows it; "Revert to previous model" swaps back. Widgets
subscribe with a callback taking the new :class:`ModelChoice`; bound methods are held
weakly, so a closed widget is dropped without unsubscribing. Callbacks run on the thread
that called :meth:`ActiveModel.set` / :meth:`ActiveModel.revert` (the GUI thread in
napari).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass


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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: ModelChoice | None = None
        self._previous: ModelChoice | None = None
        self._listeners: list[Callable[[], Listener | None]] = []

    @property
    def current(self) -> ModelChoice | None:
        return self._current

    @property
    def previous(self) -> ModelChoice | None:
        return self._previous

    def set(
        self, model: str, label: str = "", modality: str = "", lineage: tuple[str, ...] = ()
    ) -> ModelChoice:
        """Make ``model`` active; the active one becomes the previous (unless the same)."""
        choice = ModelChoice(str(model), label, modality, tuple(lineage))
        with self._lock:
            if self._current is not None and self._current.model == choice.model:
                self._current = choice  # same model (e.g. a resumed run): keep the previous
            else:
                self._previous, self._current = self._current, choice
        self._notify(choice)
        return choice

    def revert(self) -> ModelChoice | None:
        """Swap the active and the previous model; returns the now active one (or None)."""
        with self._lock:
            if self._previous is None:
                return None
            self._current, self._previous = self._previous, self._current
            choice = self._current
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
    holder = ActiveModel()
    _holders[key] = (weakref.ref(viewer, lambda _ref, k=key: _holders.pop(k, None)), holder)
    return holder
