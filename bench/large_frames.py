"""A colonoscopy frame far larger than the model's input, segmented as the Segment dock does.

A CVC-ClinicDB test frame (bench/splits/colonoscopy-combined.json) and its mask upscaled
(bilinear; the mask above one half) to a camera photo's size, e.g. the 4976 x 4232 JPEG a
tester opened, then the dock's own work (``_segment_jobs.segment_jobs``, Mode "auto" unless
``--mode``) with the shipped colonoscopy model on the CPU (``--device``): the mode "auto"
chose, seconds, objects, Dice against the mask, and the process's peak memory (ru_maxrss;
run one size per process to read it; on a GPU also the card's peak). ``--whole`` maps the
frame to the model's input in one piece, as before resize mode mapped large frames in
bands (``inference.MAPPED_BAND_PIXELS``), to compare the two side by side.

    python bench/large_frames.py --size 4232 4976
    python bench/large_frames.py --size 4232 4976 --mode tile
    python bench/large_frames.py --size 16384 16384 --stem 17
    python bench/large_frames.py --size 8192 8192 --device cuda --whole
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TMUNET_DATASETS", REPO.parent / "shared" / "datasets"))
CLINIC = DATASETS / "CVC-ClinicDB"
MODEL = "TM-UNet colonoscopy"


def upscaled(stem: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The frame ``stem`` and its mask, resized to ``size`` (h, w)."""
    from napari_tmunet.data.images import read_image, read_mask

    image = read_image(CLINIC / "images" / f"{stem}.png")
    mask, _ = read_mask(CLINIC / "masks" / f"{stem}.tif")
    h, w = size
    big = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    grey = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)
    return big, np.asarray(grey) > 127


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def main() -> None:
    from napari_tmunet._segment_jobs import SegmentOptions, segment_jobs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(4232, 4976), metavar=("H", "W"))
    parser.add_argument("--stem", default="17", help="CVC-ClinicDB frame (a test frame)")
    parser.add_argument("--mode", default="auto", choices=("auto", "resize", "tile"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--whole", action="store_true", help="map the frame in one piece")
    parser.add_argument("--repeat", type=int, default=1, help="runs (the last one reported)")
    args = parser.parse_args()
    if args.whole:
        import napari_tmunet.inference as inference

        inference.MAPPED_BAND_PIXELS = 1 << 62
    image, mask = upscaled(args.stem, tuple(args.size))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    options = SegmentOptions(MODEL, MODEL, False, args.device, None, args.mode, "auto")
    for _ in range(args.repeat):  # the first run loads the model (and on a GPU compiles)
        start = time.perf_counter()
        outcome = None
        for message in segment_jobs([(image, True, options)]):
            if message[0] == "result":
                outcome = message[2]
            elif message[0] == "error":
                raise SystemExit(message[2])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"frame {args.stem} at {args.size[1]} x {args.size[0]}, mode {args.mode}"
        f"{', mapped whole' if args.whole else ''}, {args.device}: ran "
        f"{outcome.mode} ({outcome.windows} windows), {outcome.seconds:.2f} s segmenting "
        f"({time.perf_counter() - start:.2f} s with loading), {outcome.objects} objects, "
        f"Dice {dice(outcome.labels, mask):.3f}; peak memory {peak:.2f} GiB "
        f"(image and mask in memory: {before:.2f} GiB){_card_peak()}"
    )


def _card_peak() -> str:
    """The GPU's peak allocated memory, when one ran."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.max_memory_allocated():
        return ""
    return f"; GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"


if __name__ == "__main__":
    main()
