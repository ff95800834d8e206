"""Check the "auto" mask rule (``data.images.read_mask``) on real datasets.

For every mask of each dataset folder given (ROOT/masks/*): the rule ``read_mask``
chooses now, and whether its foreground equals that of the plain max rule the rule had
before 8-bit ids were told apart (``>127`` when an 8-bit mask reaches 128..255, else
``>0``). Then each MoNuSeg mask relabelled as 8-bit instance ids 1..N (``scipy.ndimage``
objects, the first N kept, N from 3 to 255) must be read as ``> 0``.

    python bench/check_mask_rules.py ../shared/datasets/CVC-ClinicDB \
        ../shared/datasets/MoNuSeg ../shared/datasets/UDIAT ../extra-data/Kvasir-SEG \
        --ids ../shared/datasets/MoNuSeg

Prints one line per dataset (masks, rules used, masks whose foreground changed) and
exits 1 when any dataset mask changed or any id mask was not read as ``> 0``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from napari_tmunet.data.images import (
    IMAGE_SUFFIXES,
    binarise_mask,
    mask_grey,
    read_image,
    read_mask,
)

ID_COUNTS = (3, 64, 127, 128, 160, 200, 230, 255)


def plain_max_rule(values: np.ndarray) -> np.ndarray:
    """The foreground by the earlier rule: ``>127`` for a mask reaching 128..255 stored
    in at most 8 bits (or float), else ``>0``."""
    wide = values.dtype.kind in "iu" and values.dtype.itemsize > 1
    top = float(values.max())
    return values > (127 if not wide and values.dtype != bool and 127 < top <= 255 else 0)


def mask_files(root: Path) -> list[Path]:
    """ROOT/masks' image files, sorted."""
    return sorted(p for p in (root / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def check_dataset(root: Path) -> int:
    """Print the rules used for ROOT's masks; return how many changed foreground."""
    rules, changed = Counter(), []
    for path in mask_files(root):
        mask, rule = read_mask(path)
        rules[rule] += 1
        values = read_image(path, allow_stack=False)
        if not np.array_equal(mask, plain_max_rule(mask_grey(values, colour=values.ndim == 3))):
            changed.append(path.name)
    print(f"{root.name}: {sum(rules.values())} masks, rules {dict(rules)}, changed {len(changed)}")
    for name in changed[:10]:
        print(f"  changed: {name}")
    return len(changed)


def check_ids(root: Path) -> int:
    """Relabel ROOT's masks as 8-bit ids 1..N; return how many are not read as ``> 0``."""
    from scipy import ndimage

    rules, wrong, tried = Counter(), 0, 0
    for path in mask_files(root):
        labels, count = ndimage.label(read_mask(path)[0])
        for n in ID_COUNTS:
            if count < n:
                continue
            ids = np.where(labels <= n, labels, 0).astype(np.uint8)
            mask, rule = binarise_mask(ids)
            rules[rule] += 1
            tried += 1
            wrong += not np.array_equal(mask, ids > 0)
    print(f"{root.name} as 8-bit ids 1..N (N in {ID_COUNTS}): {tried} masks, rules "
          f"{dict(rules)}, not read as > 0: {wrong}")  # fmt: skip
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="dataset folders (ROOT/masks)")
    parser.add_argument("--ids", type=Path, help="a dataset whose masks to relabel as ids")
    args = parser.parse_args(argv)
    bad = sum(check_dataset(root) for root in args.roots)
    if args.ids:
        bad += check_ids(args.ids)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
