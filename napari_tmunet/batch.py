"""Segmenting many images with one model, going on past the ones that fail.

One Qt-free generator shared by the Segment widget's worker ("segment all") and
``napari-tmunet-predict``: each image is segmented with :func:`inference.segment`, its
progress and result are yielded as messages, and an image that fails becomes an
``("error", ...)`` message instead of ending the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from .checkpoint import Checkpoint
from .errors import describe_error
from .inference import segment

# What one bad image may raise without ending a batch: unreadable or refused input
# (ImageReadError and DatasetError are ValueErrors), a failed forward pass, memory.
RECOVERABLE = (ValueError, RuntimeError, MemoryError, OSError)

Message = tuple  # ("progress", i, done, total) | ("result", i, result) | ("error", i, text)


def segment_each(
    jobs: Sequence[tuple[Any, bool | None]],
    checkpoint: Checkpoint,
    raise_if_single: bool = False,
    options_for: Callable[[Any, bool | None], dict] | None = None,
    **options,
) -> Generator[Message, None, None]:
    """Segment every job in turn; a generator of messages.

    Args:
        jobs: ``(data, rgb)`` per image; ``data`` is an array, or a callable returning
            one (called here, so that a file that cannot be read is that job's error).
        checkpoint: the loaded model.
        raise_if_single: with one job, let its error propagate instead of a message.
        options_for: ``(image, rgb) -> options`` for one image, added to ``options``
            (e.g. a mode chosen by the image's size).
        options: passed to :func:`inference.segment` (threshold, mode, instances,
            batch_size, max_pixels...).

    Yields:
        ``("progress", index, done, total)`` as each image goes on, then
        ``("result", index, SegmentationResult)`` or ``("error", index, text)``: the
        error in words (``errors.describe_error``).
    """
    for index, (data, rgb) in enumerate(jobs):
        try:
            image = data() if callable(data) else data
            # frames are read one at a time (dask/zarr stacks stay lazy)
            mine = {**options, **(options_for(image, rgb) if options_for else {})}
            steps = segment(image, checkpoint, rgb=rgb, **mine)
            while True:
                try:
                    done, total = next(steps)
                except StopIteration as stop:
                    result = stop.value
                    break
                yield ("progress", index, done, total)
        except RECOVERABLE as err:
            if raise_if_single and len(jobs) == 1:
                raise
            yield ("error", index, describe_error(err))
            continue
        yield ("result", index, result)
