"""Split a file into parts small enough for one device call, and join them again.

    python bench/parts.py split .gpu-data/colonoscopy.npz --max-mib 60
        # -> colonoscopy.npz.part0, .part1, ... and colonoscopy.npz.sha256 beside it
    python bench/parts.py join .gpu-data/colonoscopy.npz
        # on the GPU machine, once every part is there: checks the SHA-256, removes the parts
"""

from __future__ import annotations

import argparse
import hashlib
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("split", "join"))
    p.add_argument("file", type=Path)
    p.add_argument("--max-mib", type=float, default=60.0)
    p.add_argument("--keep", action="store_true", help="join: keep the parts")
    args = p.parse_args(argv)
    if args.action == "split":
        for part in split(args.file, args.max_mib):
            print(f"{part} {part.stat().st_size / (1 << 20):.1f} MiB")
    else:
        print(join(args.file, args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
