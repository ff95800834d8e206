"""What the GUI tests expect of the shipped models on their bundled samples."""

from __future__ import annotations

import numpy as np

# A little below what each shipped model measures on its sample (docs/models.md, "Bundled
# sample": colonoscopy 80.7 since recipe F10k of 2026-12-03, nuclei 83.2, ultrasound 95.7).
SAMPLE_MIN_DICE = {"nuclei": 0.75, "colonoscopy": 0.77, "ultrasound": 0.85}


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)
