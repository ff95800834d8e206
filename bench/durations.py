"""Where a test run's time goes (not a test): sums pytest's ``--durations=0`` lines.

Reads the log of a run made with ``--durations=0`` and prints the sum of the test times
(setup, call, teardown), the sums by file (a file runs on one worker under
``--dist loadfile``) and the slowest single phases.

    .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile \\
        --durations=0 > run.log
    python bench/durations.py run.log [--top 40]
"""

from __future__ import annotations

import argparse
import collections
import re

LINE = re.compile(r"\s*([\d.]+)s (setup|call|teardown)\s+(\S+)")


def parse(path: str) -> list[tuple[float, str, str]]:
    """(seconds, phase, test id) of each ``--durations`` line in the log at ``path``."""
    rows = []
    with open(path) as log:
        for line in log:
            match = LINE.match(line)
            if match:
                rows.append((float(match.group(1)), match.group(2), match.group(3)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    rows = parse(args.log)
    by_file, by_phase = collections.Counter(), collections.Counter()
    for seconds, phase, test in rows:
        by_file[test.split("::")[0]] += seconds
        by_phase[phase] += seconds
    phases = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in by_phase.items())
    print(f"sum of the test times: {sum(by_phase.values()):.0f} s ({phases})")
    print("by file:")
    for name, seconds in by_file.most_common(args.top):
        print(f"{seconds:8.1f} s  {name}")
    print("slowest phases:")
    for seconds, phase, test in sorted(rows, reverse=True)[: args.top]:
        print(f"{seconds:8.1f} s  {phase:8} {test}")


if __name__ == "__main__":
    main()
