"""This process's peak memory, measured from a reset point.

``ru_maxrss`` only ever grows: late in a test suite it holds the peak of earlier tests,
so a growth check against it passes whatever happens. Linux resets the peak
(``VmHWM``) when "5" is written to ``/proc/self/clear_refs``.
"""

from __future__ import annotations

import resource


def reset_peak_kib() -> int:
    """Reset this process's peak resident memory where Linux allows; the peak (KiB) that
    later growth is measured from."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:  # not Linux, or not allowed: growth beyond the all-time peak only
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kib()


def peak_kib() -> int:
    """This process's peak resident memory (KiB) since the last reset."""
    try:
        with open("/proc/self/status") as status:
            return int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
