"""Regenerate the napari sample files in napari_tmunet/samples/ from the real datasets.

The choice of images and crop boxes is the table ``SAMPLES`` in
``napari_tmunet/_sample_data.py``; edit it there, then run::

    python bench/make_samples.py                 # all modalities
    python bench/make_samples.py nuclei          # one
    python bench/make_samples.py --datasets /path/to/datasets

Images are written as lossless PNG (RGB or grey, uint8 as in the source); masks are
binarised by the dataset rules of ``imageio.read_mask`` and written by ``write_mask``
(PNG 0/255).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_tmunet._sample_data import SAMPLES, SAMPLES_DIR, sample_paths  # noqa: E402
from napari_tmunet.data.images import read_image, read_mask, write_mask  # noqa: E402


def _find(folder: Path, name: str) -> Path:
    """The file in ``folder`` whose base name is ``name`` (any image suffix)."""
    hits = sorted(p for p in folder.iterdir() if p.is_file() and p.stem == name)
    if not hits:
        raise FileNotFoundError(f"No file named {name}.* in {folder}")
    return hits[0]


def make_sample(modality: str, datasets: Path, out_dir: Path) -> tuple[Path, Path]:
    """Cut one sample from ``datasets`` and write its image and mask PNGs to ``out_dir``."""
    from PIL import Image

    spec = SAMPLES[modality]
    root = datasets / spec.dataset
    image = read_image(_find(root / "images", spec.name))
    mask, rule = read_mask(_find(root / "masks", spec.name))
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"{modality}: image {image.shape} and mask {mask.shape} differ")
    if spec.crop is not None:
        y0, x0, h, w = spec.crop
        if y0 + h > image.shape[0] or x0 + w > image.shape[1]:
            raise ValueError(f"{modality}: crop {spec.crop} exceeds image {image.shape[:2]}")
        image, mask = image[y0 : y0 + h, x0 : x0 + w], mask[y0 : y0 + h, x0 : x0 + w]
    if image.dtype != np.uint8:
        raise ValueError(f"{modality}: expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 4:  # samples are shown as plain RGB
        image = image[..., :3]

    out_dir.mkdir(parents=True, exist_ok=True)
    image_path, mask_path = (out_dir / p.name for p in sample_paths(modality))
    Image.fromarray(np.ascontiguousarray(image)).save(image_path, optimize=True)
    write_mask(mask_path, mask.astype(np.uint8))
    for p in (image_path, mask_path):  # write_mask's temp file would leave 0600
        p.chmod(0o644)
    print(
        f"{modality}: {image_path.name} {image.shape} {image.dtype}, "
        f"mask rule {rule!r}, foreground {float(mask.mean()):.3f}"
    )
    return image_path, mask_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modalities", nargs="*", help=f"any of {', '.join(SAMPLES)} (default: all)")
    parser.add_argument(
        "--datasets",
        type=Path,
        default=Path(os.environ.get("TMUNET_DATASETS", REPO.parent / "shared" / "datasets")),
        help="folder holding CVC-ClinicDB/, MoNuSeg/, UDIAT/ (default: ../shared/datasets)",
    )
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="output folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modalities) - set(SAMPLES))
    if unknown:
        parser.error(f"unknown modality {unknown}; choose from {sorted(SAMPLES)}")

    written = []
    for modality in args.modalities or list(SAMPLES):
        written.extend(make_sample(modality, args.datasets, args.out))
    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {total / 1e6:.2f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
