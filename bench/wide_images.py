"""Elongated images in resize mode: whole, in windows, letterboxed, cropped to the content.

The shipped colonoscopy model (resize mode: whole frames squeezed to 512 x 512, as it was
trained) on Kvasir-SEG test frames (bench/splits/colonoscopy-combined.json) composed
into images of other shapes; Dice of each frame's part at native resolution:

- ``strips N``: N frames side by side, each resized to 547 pixels high (a tester's
  2502 x 547 strip of 4 frames, D2);
- ``crops A``: each frame cut to aspect ratio A around its polyp (a wider view);
- ``border H``: each frame resized to H pixels high in the middle of a black
  1920 x 1080 frame (an endoscope's picture on an HD screen).

Ways: ``whole`` (resize mode before windows), ``win1.0`` / ``win1.25`` (windows of the
image's height and aspect 1 or 1.25, each resized, blended: ``tiling.sliding_window``),
``letterbox`` (padded to a square with black), ``content`` (cropped to the rows and
columns with over 5% of pixels brighter than 20, then resized), ``segment``
(``predict_probability`` in the model's own mode, what the Segment dock runs), ``tile``
(native-resolution tiles).

    python bench/wide_images.py strips 4 --ways whole win1.0 letterbox segment
    python bench/wide_images.py border 720 --ways whole content segment --count 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from napari_tmunet import registry
from napari_tmunet.data.images import read_image, read_mask
from napari_tmunet.inference import (
    FrameInput,
    foreground_probability,
    forward_logits,
    predict_probability,
    prepared_model,
    resize,
    run_to_completion,
    sliding_window,
    window_probability,
)

REPO = Path(__file__).resolve().parents[1]
KVASIR = REPO.parent / "extra-data" / "Kvasir-SEG"
SPLIT = REPO / "bench" / "splits" / "colonoscopy-combined.json"
STRIP_HEIGHT = 547
CONTENT_LEVEL = 20  # brighter than this (any channel): the endoscope's picture, not its frame
CONTENT_SHARE = 0.05  # a row or column with more such pixels belongs to the picture


def test_stems() -> list[str]:
    names = json.loads(SPLIT.read_text())["test"]
    return [name.removeprefix("kvasir_") for name in names if name.startswith("kvasir_")]


def pair(stem: str, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A Kvasir-SEG frame and mask, resized to ``height`` pixels high (None: as stored)."""
    image = read_image(KVASIR / "images" / f"{stem}.jpg")
    mask, _ = read_mask(KVASIR / "masks" / f"{stem}.jpg")
    if height is None or height == image.shape[0]:
        return image, mask
    size = (round(image.shape[1] * height / image.shape[0]), height)
    image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    grey = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)
    return image, np.asarray(grey) > 127


def layouts(kind: str, value: float, stems: list[str]):
    """(name, image, mask, [(rows, cols) of each frame]) of the composed images."""
    if kind == "strips":
        n = int(value)
        for start in range(0, len(stems) - n + 1, n):
            pairs = [pair(stem, STRIP_HEIGHT) for stem in stems[start : start + n]]
            edges = np.cumsum([0] + [image.shape[1] for image, _ in pairs])
            parts = [(slice(None), slice(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
            image = np.concatenate([image for image, _ in pairs], axis=1)
            mask = np.concatenate([mask for _, mask in pairs], axis=1)
            yield f"strip of {n} from {stems[start]}", image, mask, parts
    elif kind == "crops":
        for stem in stems:
            image, mask = pair(stem)
            H, W = mask.shape
            h = min(H, round(W / value))
            rows = np.nonzero(mask.any(axis=1))[0]
            centre = (rows.min() + rows.max()) // 2 if len(rows) else H // 2
            top = int(np.clip(centre - h // 2, 0, H - h))
            whole = [(slice(None), slice(None))]
            yield stem, image[top : top + h], mask[top : top + h], whole
    elif kind == "border":
        h = int(value)
        for stem in stems:
            image, mask = pair(stem, h)
            canvas = np.zeros((1080, 1920, 3), np.uint8)
            truth = np.zeros((1080, 1920), bool)
            y, x = (1080 - h) // 2, (1920 - image.shape[1]) // 2
            canvas[y : y + h, x : x + image.shape[1]] = image
            truth[y : y + h, x : x + image.shape[1]] = mask
            yield stem, canvas, truth, [(slice(None), slice(None))]
    else:
        raise SystemExit(f"layout {kind!r}: expected strips, crops or border")


class Ways:
    """The ways to run the model on an image; each returns its (H, W) probability."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.model, self.device, self.amp = prepared_model(checkpoint, "cpu")
        self.size = tuple(checkpoint.input_config.size)

    def frame(self, image: np.ndarray) -> FrameInput:
        return FrameInput(image, 3, self.checkpoint.input_config)

    def whole(self, image):
        frame = self.frame(image)
        logits = forward_logits(self.model, frame.resized(self.device), self.amp)
        return foreground_probability(resize(logits, frame.hw))[0].numpy()

    def windows(self, image, aspect: float):
        frame = self.frame(image)
        H, W = frame.hw
        window = (H, min(W, round(H * aspect))) if W >= H else (min(H, round(W * aspect)), W)
        probability = window_probability(self.model, self.amp, self.size)
        blended = sliding_window(probability, frame, window, 0.25, None, "gaussian", self.device)
        return run_to_completion(blended)[0, 0].numpy()

    def letterbox(self, image):
        H, W = image.shape[:2]
        side = max(H, W)
        y, x = (side - H) // 2, (side - W) // 2
        square = np.zeros((side, side, *image.shape[2:]), image.dtype)
        square[y : y + H, x : x + W] = image
        return self.whole(square)[y : y + H, x : x + W]

    def content(self, image):
        bright = image.max(axis=-1) > CONTENT_LEVEL
        # rows and columns with some picture (text on the black frame is less than this)
        rows = np.nonzero(bright.mean(axis=1) > CONTENT_SHARE)[0]
        cols = np.nonzero(bright.mean(axis=0) > CONTENT_SHARE)[0]
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        probability = np.zeros(image.shape[:2], np.float32)
        probability[box] = self.whole(image[box])
        return probability

    def run(self, way: str, image):
        if way == "whole":
            return self.whole(image)
        if way.startswith("win"):
            return self.windows(image, float(way[3:]))
        if way in ("segment", "tile"):
            mode = self.checkpoint.inference_mode if way == "segment" else "tile"
            return predict_probability(image, self.checkpoint, mode, "cpu")[0]
        return getattr(self, way)(image)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layout", choices=("strips", "crops", "border"))
    parser.add_argument("value", type=float, help="frames per strip, aspect, or height")
    parser.add_argument("--ways", nargs="+", default=["whole", "win1.0", "segment"])
    parser.add_argument("--first", type=int, default=0, help="first Kvasir test frame used")
    parser.add_argument("--count", type=int, default=20, help="Kvasir test frames used")
    args = parser.parse_args()
    checkpoint = registry.load_model("TM-UNet colonoscopy", "cpu")
    ways = Ways(checkpoint)
    threshold = checkpoint.input_config.threshold
    stems = test_stems()[args.first : args.first + args.count]
    scores: dict[str, list[float]] = {way: [] for way in args.ways}
    for name, image, mask, parts in layouts(args.layout, args.value, stems):
        line = []
        for way in args.ways:
            predicted = ways.run(way, image) > threshold
            part_scores = [dice(predicted[part], mask[part]) for part in parts]
            scores[way] += part_scores
            line.append(f"{way} " + " ".join(f"{s:.2f}" for s in part_scores))
        print(f"{name} {image.shape[1]}x{image.shape[0]}: " + " | ".join(line), flush=True)
    print(f"mean Dice per frame, {args.layout} {args.value:g}:")
    for way, values in scores.items():
        below = sum(v < 0.5 for v in values)
        print(
            f"  {way}: {np.mean(values):.3f} (median {np.median(values):.3f}, "
            f"{below} of {len(values)} below 0.5)"
        )


if __name__ == "__main__":
    main()
