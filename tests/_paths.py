"""Where the tests find the real datasets (see shared/datasets/README.md)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TMUNET_DATASETS", REPO.parent / "shared" / "datasets"))
