"""The Fine-tune dock's dataset Folder, read off the GUI thread.

Choosing a Folder lists it and reads its image and mask headers (their sizes) and a few of
its images (their modality): CVC-ClinicDB's 550 pairs take a quarter of a second with the
files in the page cache, seconds from a cold cache or a network drive. :class:`FolderRead`
does that in a napari worker, so that napari stays live meanwhile; the latest choice wins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ._widget_common import LatestRead, error_text

READING = "reading folder..."  # shown while the chosen Folder is read
# A Folder of up to this many pairs has its image and mask sizes compared from the file
# headers (~0.5 ms a pair); a larger one at Start, by the run (the read would take long
# enough to leave the dock saying "reading folder..." for a while)
FOLDER_SIZES_CHECKED = 1000


class FolderRead:
    """(modality, problems) of the dock's dataset Folder (:func:`read_folder`), read in a
    worker thread (a :class:`LatestRead` keyed by the folder and when it, its images/ and
    masks/ last changed) and kept while those are unchanged.

    The latest read wins: one started later drops a read still running, whose result is
    never shown over the newer one. ``done()`` is called on the GUI thread when the
    latest read has ended; ``NAPARI_TMUNET_INLINE=1`` reads on the calling thread.
    """

    def __init__(self, done: Callable[[], None]) -> None:
        self._done = done
        self._reads = LatestRead(_read_key, failed=lambda key, err: _failed(key[0], err))

    @property
    def reading(self) -> bool:
        """Whether a read of the Folder is under way."""
        return self._reads.reading

    def close(self) -> None:
        """The dock is gone: no result is taken."""
        self._reads.closed = True

    def state(self, folder: str) -> tuple[str, str] | None:
        """(modality, problems) of ``folder`` when read since its files last changed;
        else None, a read being under way (started here unless it is)."""
        key = _folder_key(folder)
        if not self._reads.is_read(key) and not self._reads.under_way(key):
            self._read(key, tell=False)  # inline: read by now, and the caller uses it
        return self._reads.result(key)

    def read(self, folder: str) -> None:
        """Read ``folder`` afresh (its files may have changed in place); ``done()`` when
        the read ends (at once where workers run inline)."""
        self._read(_folder_key(folder), tell=True)

    def forget(self) -> None:
        """Drop what was read, and the result of a read under way: a file fixed in place
        (a mask saved again at its image's size) leaves its folder's time as it was."""
        self._reads.forget()

    def _read(self, key: tuple, tell: bool) -> None:
        """Read ``key`` alone (an earlier read's result is dropped); ``done()`` when it
        ends, where it runs in a worker or ``tell`` asks."""
        self._reads.forget()
        self._reads.start(key)
        if tell or not self._reads.is_read(key):
            self._reads.when_read(key, self._done)


def _read_key(key: tuple) -> tuple[str, str]:
    """:func:`read_folder` of the folder of ``key`` (in a worker thread)."""
    return read_folder(key[0])


def _folder_key(folder: str) -> tuple:
    """``folder`` and when it, its images/ and its masks/ last changed (a folder of
    pictures with their masks beside them has no images/ or masks/): a new key, a new
    read."""
    root = Path(folder)
    return (folder, *(_changed_at(path) for path in (root, root / "images", root / "masks")))


def _changed_at(path: Path) -> int | None:
    """When folder ``path``'s list of files last changed (None: it cannot be read)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _failed(folder: str, err: BaseException) -> tuple[str, str]:
    """The state of a Folder whose read failed with ``err`` (a fault in the code: the
    read reports bad files itself)."""
    return "", f"{folder}: could not be read ({error_text(err)}); Start reads it again"


def read_folder(folder: str) -> tuple[str, str]:
    """(modality, problems) of dataset folder ``folder`` (``images/`` + ``masks/``, or
    pictures with their masks beside them: ``data.datasets.scan_pairs``):
    :func:`registry.guess_folder_modality` of a few of its images, and
    :func:`folder_problems`: images without masks, one name twice, and (a folder of at
    most :data:`FOLDER_SIZES_CHECKED` pairs) images and masks of
    different sizes or unreadable; or why it is no dataset folder. No Qt: it runs in a
    worker thread."""
    from . import registry
    from .data.datasets import DatasetError, scan_pairs
    from .training.finetune import folder_problems

    try:  # listed once; the file headers (their sizes) read up to FOLDER_SIZES_CHECKED pairs
        report = scan_pairs(folder, max_sized=FOLDER_SIZES_CHECKED)
    except (DatasetError, OSError) as err:
        return "", str(err)
    then = " before Start"
    if not report.sizes_checked:
        then += " (Start also compares image and mask sizes)"
    problems = folder_problems(report, then)
    return registry.guess_folder_modality(folder, report.pairs), problems
