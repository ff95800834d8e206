"""How an error is told to the user: plain words for bad input, a short technical form
(and a logged traceback) for anything unexpected. No Qt, no torch.

Expected errors are the ones raised on purpose about the user's input or choices: a
``ValueError`` (``ImageReadError``, ``DatasetError`` and ``CheckpointError`` are ones) or
any error class of this package (``NotWritableError``, ``RunDirError``, ...). Their
messages are written as sentences for the user, so the class name is left out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("napari_tmunet")


def is_expected(err: BaseException) -> bool:
    """Whether ``err`` is a message for the user: a ValueError or one of this package's errors."""
    module = type(err).__module__ or ""
    return isinstance(err, ValueError) or module.split(".")[0] in ("napari_tmunet", "trainer")


def describe_error(err: BaseException) -> str:
    """``err``'s message alone when :func:`is_expected`; else ``"Type: message"``, with
    the traceback logged (warning level)."""
    text = str(err).strip()
    if is_expected(err) and text:
        return text
    log.warning("unexpected %s", type(err).__name__, exc_info=(type(err), err, err.__traceback__))
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextlib.contextmanager
def exit_on_interrupt(message: str, code: int = 130):
    """Within the block, Ctrl-C (SIGINT) ends the process at once: ``message`` on stderr
    and exit ``code``. For a command-line tool's start-up (importing torch, loading a
    model), before it writes anything: a KeyboardInterrupt raised inside a library's
    import may be swallowed there or leave a module half imported, and then end the
    tool with a traceback (a RecursionError in numpy) instead of the one line."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread
        return

    def handler(signum, frame):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(code)  # no unwinding through half-done imports; nothing to clean up yet

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
