"""Check the "auto" mask rule (``data.images.read_mask``) on real datasets.

For every mask of each dataset folder given, in either layout the trainer reads
(``images/`` + ``masks/``, or pictures with their masks beside them; ``scan_pairs``):
the rule ``read_mask`` chooses now and the rule it chose before 8-bit ids were also told
by objects of values 1..127 of their own (``MASK_MIN_OWN_SHARE``; before that only by a
top value holding little of the foreground), how many masks changed rule, how many
differ in foreground from the plain max rule of before 8-bit ids were told apart at all
(``>127`` when an 8-bit mask reaches 128..255, else ``>0``), and how many the trainer
warns about (``>127`` leaving out flat regions, ``MASK_WARN_FLAT_DROPPED``).

Then the masks of the ``--ids`` datasets as 8-bit instance ids (their own ids when
stored as such, as DSB2018's and CPM-15's; else ``scipy.ndimage`` objects), numbered four
ways: 1..N (the first N objects, N from 128 to 255), random ids of 1..255, the largest
object 240 and the others 1..127 (tester38 #2), the larger half 128..255 and the smaller
half 1..127. Every one must be read as ``> 0``.

    PYTHONPATH=. python bench/check_mask_rules.py ../shared/datasets/CVC-ClinicDB \
        ../shared/datasets/MoNuSeg ../shared/datasets/UDIAT ../extra-data/Kvasir-SEG \
        ../extra-data/BUSI ../extra-data/CPM15 ../extra-data/DSB2018-stage1test \
        --ids ../shared/datasets/MoNuSeg ../extra-data/CPM15 ../extra-data/DSB2018-stage1test

Prints one line per dataset and per id numbering; exits 1 when any dataset mask changed
rule or any id mask is not read as ``> 0``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_tmunet.data import images
from napari_tmunet.data.datasets import scan_pairs
from napari_tmunet.data.images import binarise_mask, mask_grey, read_image, read_mask

ID_COUNTS = (128, 160, 200, 230, 255)


def plain_max_rule(values: np.ndarray) -> np.ndarray:
    """The foreground by the earlier rule: ``>127`` for a mask reaching 128..255 stored
    in at most 8 bits (or float), else ``>0``."""
    wide = values.dtype.kind in "iu" and values.dtype.itemsize > 1
    top = float(values.max())
    return values > (127 if not wide and values.dtype != bool and 127 < top <= 255 else 0)


@contextmanager
def earlier_rule():
    """``binarise_mask`` as before objects of values 1..127 told 8-bit ids apart."""
    share = images.MASK_MIN_OWN_SHARE
    images.MASK_MIN_OWN_SHARE = float("inf")
    try:
        yield
    finally:
        images.MASK_MIN_OWN_SHARE = share


class Warned(logging.Handler):
    """Counts the warnings ``data.images`` logs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


@contextmanager
def counted_warnings():
    """A :class:`Warned` counting ``data.images``' warnings, which are not printed."""
    warned, logger = Warned(), images.logger
    level, propagate = logger.level, logger.propagate
    logger.addHandler(warned)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield warned
    finally:
        logger.removeHandler(warned)
        logger.setLevel(level)
        logger.propagate = propagate


def mask_files(root: Path) -> list[Path]:
    """ROOT's mask files as the trainer pairs them (both layouts), sorted."""
    report = scan_pairs(root, check_sizes=False)
    return sorted(path for pair in report.pairs for path in pair.mask_paths)


def grey(path: Path) -> np.ndarray:
    """A mask file's (H, W) values as ``read_mask`` takes them."""
    values = read_image(path, allow_stack=False)
    return mask_grey(values, colour=values.ndim == 3)


def check_dataset(root: Path) -> int:
    """Print the rules used for ROOT's masks now and before; return how many changed."""
    now, before, changed, unlike_max = Counter(), Counter(), [], 0
    with counted_warnings() as warned:
        for path in mask_files(root):
            mask, rule = read_mask(path)  # as the trainer reads it (warnings counted)
            values = grey(path)
            with earlier_rule():
                earlier = binarise_mask(values)[1]
            now[rule] += 1
            before[earlier] += 1
            if rule != earlier:
                changed.append(path.name)
            unlike_max += not np.array_equal(mask, plain_max_rule(values))
    print(f"{root.name}: {sum(now.values())} masks, rules before {dict(before)}, now "
          f"{dict(now)}, changed {len(changed)}; unlike the plain max rule {unlike_max}; "
          f"warned {warned.count}")  # fmt: skip
    for name in changed[:10]:
        print(f"  changed: {name}")
    return len(changed)


def instance_labels(path: Path) -> np.ndarray:
    """A mask file's objects: its ids when it holds them, else its connected objects."""
    from scipy import ndimage

    labels, rule = images.read_mask_labels(path)
    return labels if rule == "ids" else ndimage.label(labels > 0)[0]


def numberings(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``labels``' objects as 8-bit ids reaching 128..255, numbered in several ways."""
    ids = np.unique(labels[labels > 0])  # (K,) objects
    count = len(ids)
    rank = np.empty(count, int)  # each object's place by size, smallest first
    rank[np.argsort(np.bincount(labels.ravel())[ids], kind="stable")] = np.arange(count)
    ways = {}  # way -> (K,) each object's new id, 0 to leave it out
    for n in ID_COUNTS:
        if count >= n:
            ways[f"1..{n}"] = np.where(np.arange(count) < n, np.arange(count) + 1, 0)
    kept = min(count, 255)
    ways["random"] = np.zeros(count, int)
    ways["random"][rng.permutation(count)[:kept]] = rng.permutation(255)[:kept] + 1
    if 2 <= count <= 128:
        ways["largest 240"] = np.where(rank == count - 1, 240, rank + 1)
    if 2 <= count <= 254:
        half = count // 2
        ways["larger half high"] = np.where(rank < half, rank + 1, 255 - (rank - half))
    numbered = {}
    for way, new_ids in ways.items():
        lut = np.zeros(int(labels.max()) + 1, np.uint8)
        lut[ids] = new_ids
        numbered[way] = lut[labels]
    return {way: ids8 for way, ids8 in numbered.items() if ids8.max() > 127}


def check_ids(root: Path) -> int:
    """ROOT's masks as 8-bit ids; print the rules per numbering; return how many are not
    read as ``> 0`` now."""
    rng = np.random.default_rng(0)
    rules: dict[str, tuple[Counter, Counter, list[int]]] = {}
    for path in mask_files(root):
        for way, ids8 in numberings(instance_labels(path), rng).items():
            now, before, wrong = rules.setdefault(way, (Counter(), Counter(), [0, 0]))
            mask, rule = binarise_mask(ids8)
            with earlier_rule():
                earlier_mask, earlier = binarise_mask(ids8)
            now[rule] += 1
            before[earlier] += 1
            wrong[0] += not np.array_equal(earlier_mask, ids8 > 0)
            wrong[1] += not np.array_equal(mask, ids8 > 0)
    for way, (now, before, wrong) in rules.items():
        print(f"{root.name} as 8-bit ids, {way}: {sum(now.values())} masks, rules before "
              f"{dict(before)}, now {dict(now)}; not read as > 0 before {wrong[0]}, "
              f"now {wrong[1]}")  # fmt: skip
    return sum(wrong[1] for _, _, wrong in rules.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="*", type=Path, help="dataset folders")
    parser.add_argument("--ids", nargs="*", type=Path, default=[],
                        help="datasets whose masks to number as 8-bit ids")  # fmt: skip
    args = parser.parse_args(argv)
    bad = sum(check_dataset(root) for root in args.roots)
    bad += sum(check_ids(root) for root in args.ids)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
