"""Time the Segment dock's live re-threshold: labels from the kept uint8 probability.

    OMP_NUM_THREADS=2 python bench/rethreshold_speed.py [image.tif]

Segments a 1000 x 1000 MoNuSeg tile once with the shipped nuclei model (tile mode),
then times :func:`napari_tmunet.postprocess.derive_labels` (what moving the threshold
runs, without the network) for binary and instance outputs; best and median of 5.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from napari_tmunet import registry
from napari_tmunet.data.images import read_image
from napari_tmunet.inference import run_to_completion, segment
from napari_tmunet.postprocess import LabelOptions, compact, derive_labels

TILE = Path(__file__).resolve().parents[1].parent / "shared/datasets/MoNuSeg/images"


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else TILE / "TCGA-18-5592-01Z-00-DX1.tif"
    image = read_image(path)
    checkpoint = registry.load_model("TM-UNet nuclei", "cpu")
    began = time.perf_counter()
    result = run_to_completion(segment(image, checkpoint, mode="tile"))
    print(f"{image.shape}: network {time.perf_counter() - began:.1f} s")
    kept = compact(result.probability)
    for options in (
        LabelOptions(0.4),
        LabelOptions(0.4, fill_holes=True, min_size=20),
        LabelOptions(0.4, instances=True),
        LabelOptions(0.4, instances=True, fill_holes=True, min_size=20),
    ):
        times = []
        for _ in range(5):
            began = time.perf_counter()
            derive_labels(kept, options)
            times.append(time.perf_counter() - began)
        print(f"{options}: best {min(times):.3f} s, median {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()
