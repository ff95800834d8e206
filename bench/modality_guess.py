"""How registry.guess_modality classes every image of the real datasets: a confusion table
per dataset (rows: the set and the modality it is, columns: the guess), on the thumbnails
the Segment dock judges (napari's pixels of the file, every k-th pixel to ~256 a side, as
``_image_layers.layer_thumbnail``), and the range of each set's colour shares
(``registry.colour_shares``, where the checked-out version has it).

    python bench/modality_guess.py [--datasets DIR] [--extra DIR] [--wrong N]

Run it with PYTHONPATH at another checkout (e.g. main) for that version's table. DSB2018's
stage-1 test set is split into its fluorescence images (grey stored as RGB: equal channels)
and its stained brightfield ones. Sets that are absent are left out. Takes about half a
two minutes on 2 cores (3,500 images)."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_tmunet import registry

HERE = Path(__file__).resolve().parents[1]
COLUMNS = ("colonoscopy", "nuclei", "ultrasound")
# (set, folder under --datasets or --extra, the modality its images are)
SETS = [
    ("CVC-ClinicDB", "datasets", "CVC-ClinicDB", "colonoscopy"),
    ("Kvasir-SEG", "extra", "Kvasir-SEG", "colonoscopy"),
    ("MoNuSeg", "datasets", "MoNuSeg", "nuclei"),
    ("CPM15", "extra", "CPM15", "nuclei"),
    ("DSB2018 stained", "extra", "DSB2018-stage1test", "nuclei"),
    ("DSB2018 fluorescence", "extra", "DSB2018-stage1test", "ultrasound"),
    ("UDIAT", "datasets", "UDIAT", "ultrasound"),
    ("BUSI", "extra", "BUSI", "ultrasound"),
]


def thumbnail(path: Path) -> np.ndarray:
    """What the Segment dock judges: napari's pixels of the file, at most ~256 px a side."""
    image = iio.imread(path)
    step = max(1, max(image.shape[:2]) // 256)
    return image[::step, ::step]


def is_fluorescence_rgb(image: np.ndarray) -> bool:
    """Whether a DSB2018 image is grey stored as RGB(A) (its fluorescence images are)."""
    rgb = image[..., :3]
    return bool((rgb == rgb[..., :1]).all())


def measure(name: str, folder: Path, wrong: int) -> tuple[Counter, list, list]:
    """(guesses counted, colour shares of each image, names guessed otherwise than the set's
    modality, at most ``wrong``) for the images of one set."""
    _, _, _, modality = next(row for row in SETS if row[0] == name)
    guesses, shares, names = Counter(), [], []
    for path in sorted((folder / "images").iterdir()):
        image = thumbnail(path)
        if name.startswith("DSB2018"):
            if is_fluorescence_rgb(image) != (modality == "ultrasound"):
                continue
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
        guess = registry.guess_modality(image, rgb=rgb)
        guesses[guess] += 1
        if hasattr(registry, "colour_shares"):
            shares.append(registry.colour_shares(image, rgb))
        if guess != modality and len(names) < wrong:
            names.append(path.name)
    return guesses, shares, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=HERE.parent / "shared" / "datasets")
    parser.add_argument("--extra", type=Path, default=HERE.parent / "extra-data")
    parser.add_argument("--wrong", type=int, default=3, help="names shown of wrong guesses")
    args = parser.parse_args()
    roots = {"datasets": args.datasets, "extra": args.extra}
    print(f"napari_tmunet from {Path(registry.__file__).parent} (cpu {os.cpu_count()})")
    print("| set (is) | images | " + " | ".join(COLUMNS) + " | coloured | stained |")
    print("|---|---|" + "---|" * len(COLUMNS) + "---|---|")
    for name, root, sub, modality in SETS:
        folder = roots[root] / sub
        if not (folder / "images").is_dir():
            continue
        guesses, shares, names = measure(name, folder, args.wrong)
        cells = [f"**{guesses[c]}**" if c == modality else str(guesses[c]) for c in COLUMNS]
        ranges = ["-", "-"]
        if shares:
            coloured, stained = np.array(shares).T
            ranges = [f"{a.min():.1%}..{a.max():.1%}" for a in (coloured, stained)]
        row = [f"{name} ({modality})", str(sum(guesses.values())), *cells, *ranges]
        print("| " + " | ".join(row) + " |")
        if names:
            print(f"  otherwise: {', '.join(names)}")


if __name__ == "__main__":
    main()
