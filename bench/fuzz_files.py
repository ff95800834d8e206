"""A larger run of the hostile-image fuzzer than CI's (tests/test_fuzz_images.py), with
its count and outcome recorded.

    python bench/fuzz_files.py --examples 3000

Runs pytest on the fuzz tests with ``NAPARI_TMUNET_FUZZ_EXAMPLES`` set, derandomised
(the same files every time for a given count), and prints one JSON line: examples,
seconds, pytest's exit code and summary. Record the line in docs/robustness.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="files per fuzz test")
    args = parser.parse_args()
    env = {**os.environ, "NAPARI_TMUNET_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging",
         "tests/test_fuzz_images.py"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    summary = (run.stdout.strip().splitlines() or [""])[-1]
    record = {
        "examples": args.examples,
        "seconds": round(time.perf_counter() - start, 1),
        "exit_code": run.returncode,
        "summary": summary,
    }
    print(json.dumps(record))
    if run.returncode:
        print(run.stdout[-5000:], file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
