"""Where the tests find the real datasets (see shared/datasets/README.md)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TMUNET_DATASETS", REPO.parent / "shared" / "datasets"))
EXTRA = Path(os.environ.get("TMUNET_EXTRA", REPO.parent / "extra-data"))
# Kvasir-SEG, BUSI, CPM-15, DSB2018 (shared/datasets/EXTRA.md)
# fluorescent nuclei, grey stored as RGBA
DSB_GREY = (
    EXTRA / "DSB2018-stage1test" / "images"
    / "0999dab07b11bc85fb8464fc36c947fbd8b5d6ec49817361cb780659ca805eac.png"
)  # fmt: skip
SCAN = DATASETS / "UDIAT" / "images" / "000002.png"  # a breast ultrasound scan
POLYP = DATASETS / "CVC-ClinicDB" / "images" / "1.png"  # a colonoscopy frame


def dataset_subset(source: Path, dest: Path, stems) -> Path:
    """``dest`` as a dataset folder holding ``source``'s pairs of these name stems (each
    image and mask copied with its own suffix); returns ``dest``."""
    import shutil

    for part in ("images", "masks"):
        (dest / part).mkdir(parents=True)
        for stem in stems:
            (found,) = (source / part).glob(f"{stem}.*")
            shutil.copy(found, dest / part / found.name)
    return dest


def require(path: Path, model: str | None = None) -> None:
    """Skip the calling test unless ``path`` (a real dataset's file or folder) exists and,
    when named, the shipped ``model`` (e.g. "TM-UNet colonoscopy") is installed."""
    import pytest

    if not path.exists():
        pytest.skip(f"no {path} (a shared dataset)")
    if model is not None:
        from napari_tmunet import registry

        if registry.find_model(model) is None:
            pytest.skip(f"the shipped model {model!r} is needed")
