"""Stopping a model's forward pass part way, when the run that started it is cancelled.

A model made :func:`stoppable` checks, before each of its modules runs, whether the
thread running it is inside :func:`stop_when` with an event that is set, and raises
:class:`Cancelled` there: Cancel in the Segment dock then ends the forward pass under way
within one layer, instead of after it (a batch of tiles takes seconds on a busy CPU).
Other threads using the same (cached) model are not affected. No Qt.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_MARK = "_tmunet_stoppable"
_events: dict[int, threading.Event] = {}  # thread id -> the cancel event of its run


class Cancelled(Exception):
    """A forward pass stopped because its run was cancelled (not an error)."""


def stoppable(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` itself, with a check before each of its modules (once per model)."""
    if not getattr(model, _MARK, False):
        for module in model.modules():
            module.register_forward_pre_hook(_check)
        setattr(model, _MARK, True)
    return model


@contextlib.contextmanager
def stop_when(event: threading.Event | None) -> Iterator[None]:
    """Within this block, forward passes of :func:`stoppable` models on this thread raise
    :class:`Cancelled` once ``event`` is set (None: never)."""
    if event is None:
        yield
        return
    thread = threading.get_ident()
    _events[thread] = event
    try:
        yield
    finally:
        _events.pop(thread, None)


def stop_if_cancelled() -> None:
    """Raise :class:`Cancelled` if this thread's run was cancelled: between steps that no
    forward pass checks (e.g. the labelling of a large image after it, seconds long)."""
    event = _events.get(threading.get_ident())
    if event is not None and event.is_set():
        raise Cancelled("cancelled")


def _check(module: torch.nn.Module, args) -> None:
    """Forward pre-hook: raise :class:`Cancelled` if this thread's run was cancelled
    (never while a CUDA graph is being captured: that would leave the capture open)."""
    event = _events.get(threading.get_ident())
    if event is None or not event.is_set():
        return
    if torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing():
        return
    raise Cancelled("cancelled")
