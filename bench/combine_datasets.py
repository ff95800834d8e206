"""Build one dataset folder from several: ``OUT/images`` + ``OUT/masks`` of prefixed names.

Every pair of each source folder appears as ``<prefix>_<name>`` (extensions kept), as a
symbolic link to the source file (``--copy``: a copy), so names stay unique across sets
and the split files of ``bench/splits/`` (made by ``bench/make_splits.py``) apply::

    python bench/combine_datasets.py ../extra-data/colonoscopy \
        kvasir=../extra-data/Kvasir-SEG cvc=../shared/datasets/CVC-ClinicDB

Running it again over the same sources is a no-op; a name that would point elsewhere
stops with its path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from napari_tmunet.data.datasets import find_pairs


def combined_name(prefix: str, name: str) -> str:
    """Name of a source pair in the combined folder."""
    return f"{prefix}_{name}"


def combine(out: str | os.PathLike, sources: dict[str, str | os.PathLike], copy=False) -> int:
    """Link (or copy) every pair of ``sources`` (prefix -> folder) into ``out``.

    Returns:
        The number of pairs in the combined folder.
    """
    out = Path(out)
    placed = {sub: _existing(out / sub) for sub in ("images", "masks")}  # stem -> path
    count = 0
    for prefix, root in sources.items():
        for pair in find_pairs(root):
            if pair.extra_masks:  # files are linked as they are: a union has no file
                files = ", ".join(path.name for path in pair.mask_paths)
                raise SystemExit(f"{pair.image_path} has several mask files ({files}): merge them")
            name = combined_name(prefix, pair.name)
            for sub, source in (("images", pair.image_path), ("masks", pair.mask_path)):
                target = out / sub / (name + source.suffix)
                _place(source.resolve(), target, placed[sub].get(name), copy)
            count += 1
    return count


def _existing(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.iterdir()} if folder.is_dir() else {}


def _place(source: Path, target: Path, existing: Path | None, copy: bool) -> None:
    """Link or copy ``source`` to ``target``; a file already there must be the same."""
    if existing is not None:
        same = existing == target and (
            existing.resolve() == source if existing.is_symlink() else copy
        )
        if not same:
            raise SystemExit(f"{existing} exists and is not {source}: remove OUT or pick another")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(source, target)
    else:
        target.symlink_to(source)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="combined dataset folder to create")
    p.add_argument("sources", nargs="+", help="PREFIX=FOLDER, one per dataset")
    p.add_argument("--copy", action="store_true", help="copy the files instead of linking")
    args = p.parse_args(argv)
    sources = dict(s.split("=", 1) for s in args.sources if "=" in s)
    if len(sources) != len(args.sources):
        raise SystemExit("give every source as PREFIX=FOLDER, prefixes unique")
    print(f"{args.out}: {combine(args.out, sources, args.copy)} pairs from {sorted(sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
