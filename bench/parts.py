"""Split a file into parts small enough for one device call, and join them again.

python bench/parts.py split .gpu-data/colonoscopy.npz --max-mib 60
    # -> colonoscopy.npz.part0, .part1, ... and colonoscopy.npz.sha256 beside it
python bench/parts.py join .gpu-data/colonoscopy.npz
    # on the GPU machine, once every part is there: checks the SHA-256, removes the parts
python bench/parts.py pack .gpu-data/a.npz .gpu-data/b.npz --max-mib 26.4 --call-mib 53
    # parts of both files binned into .gpu-up/c1, c2, ... of at most 53 MiB each (one
    # device call carries one folder; c1 also holds the .sha256 files)
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

CHUNK = 1 << 20


def split(path: Path, max_mib: float) -> list[Path]:
    """Write ``path.partN`` files of at most ``max_mib`` MiB and ``path.sha256``."""
    size = int(max_mib * (1 << 20))
    digest = hashlib.sha256()
    parts = []
    with open(path, "rb") as source:
        while block := source.read(size):
            digest.update(block)
            parts.append(path.with_name(f"{path.name}.part{len(parts)}"))
            parts[-1].write_bytes(block)
    path.with_name(path.name + ".sha256").write_text(f"{digest.hexdigest()} {len(parts)}\n")
    return parts


def join(path: Path, keep: bool = False) -> Path:
    """Concatenate ``path.part0..`` into ``path`` after checking count and SHA-256."""
    expected, count = path.with_name(path.name + ".sha256").read_text().split()
    parts = [path.with_name(f"{path.name}.part{i}") for i in range(int(count))]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise SystemExit(f"{path}: parts missing: {', '.join(missing)}")
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".joining")
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                while block := source.read(CHUNK):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected:
        tmp.unlink()
        raise SystemExit(f"{path}: SHA-256 of the joined parts differs; copy the parts again")
    tmp.replace(path)
    if not keep:
        for part in parts:
            part.unlink()
    return path


def pack(files: list[Path], max_mib: float, call_mib: float, out: Path) -> list[Path]:
    """Split ``files`` and bin their parts into ``out/c1``, ``c2``, ... (first fit).

    Each folder is what one device call carries; the order keeps a file's parts in the
    earliest calls, so the first file can be joined (and its runs start) first. The call
    folders of an earlier pack are replaced; other files in ``out`` (scripts) are kept.
    """
    limit = call_mib * (1 << 20)
    calls: list[list[Path]] = []
    sizes: list[int] = []
    for path in files:
        for part in split(path, max_mib):
            size = part.stat().st_size
            i = next((i for i, used in enumerate(sizes) if used + size <= limit), len(calls))
            if i == len(calls):
                calls.append([])
                sizes.append(0)
            calls[i].append(part)
            sizes[i] += size
    for old in out.glob("c*"):  # the last pack's call folders; anything else there stays
        if old.is_dir() and old.name[1:].isdigit():
            shutil.rmtree(old)
    folders = []
    for i, parts in enumerate(calls, 1):
        folder = out / f"c{i}"
        folder.mkdir(parents=True)
        for part in parts:
            part.replace(folder / part.name)
        folders.append(folder)
    for path in files:
        shutil.copy(path.with_name(path.name + ".sha256"), folders[0])
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("split", "join", "pack"))
    p.add_argument("file", type=Path, nargs="+")
    p.add_argument("--max-mib", type=float, default=60.0)
    p.add_argument("--keep", action="store_true", help="join: keep the parts")
    p.add_argument("--call-mib", type=float, default=53.0, help="pack: MiB per call folder")
    p.add_argument("--out", type=Path, default=Path(".gpu-up"), help="pack: call folders")
    args = p.parse_args(argv)
    if args.action == "pack":
        for folder in pack(args.file, args.max_mib, args.call_mib, args.out):
            mib = sum(f.stat().st_size for f in folder.iterdir()) / (1 << 20)
            print(f"{folder}: {sorted(f.name for f in folder.iterdir())} {mib:.1f} MiB")
        return 0
    if len(args.file) > 1:
        p.error(f"{args.action} takes one file")
    args.file = args.file[0]
    if args.action == "split":
        for part in split(args.file, args.max_mib):
            print(f"{part} {part.stat().st_size / (1 << 20):.1f} MiB")
    else:
        print(join(args.file, args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
