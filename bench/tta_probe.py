"""Validation only: does averaging a model's probabilities over flips help?

    python bench/tta_probe.py colonoscopy ../extra-data/colonoscopy \
        bench/splits/colonoscopy-combined.json OUT.json

Scores the split's validation part (resize mode, threshold 0.5, CPU) without flips, with
the horizontal flip (2 forwards) and with both flips (4), and prints mean Dice, overall
and over the Kvasir frames (names starting with "kvasir"); per-image Dice goes to OUT.json.
"""

import json
import sys
import time

import numpy as np
from cross_eval import samples

from napari_tmunet.inference import predict_probability
from napari_tmunet.metrics import dice_score
from napari_tmunet.registry import load_model

FLIPS = {"none": (), "h": (1,), "v": (0,), "hv": (0, 1)}


def flipped_probabilities(image, checkpoint) -> dict:
    """Foreground probability of ``image`` under each flip, flipped back."""
    probs = {}
    for key, axes in FLIPS.items():
        view = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        p, _ = predict_probability(view, checkpoint)
        probs[key] = np.flip(p, axes) if axes else p
    return probs


def main(model, data, split, out) -> None:
    checkpoint = load_model(model, "cpu")
    scores, names, began = {"plain": [], "h2": [], "hv4": []}, [], time.time()
    for name, image, mask in samples(data, split, "valid", None):
        probs, ref = flipped_probabilities(image, checkpoint), mask > 0
        scores["plain"].append(dice_score(probs["none"] > 0.5, ref))
        scores["h2"].append(dice_score((probs["none"] + probs["h"]) / 2 > 0.5, ref))
        scores["hv4"].append(dice_score(sum(probs.values()) / 4 > 0.5, ref))
        names.append(name)
    kvasir = [i for i, n in enumerate(names) if n.startswith("kvasir")]
    print({k: round(100 * float(np.mean(v)), 2) for k, v in scores.items()}, len(names),
          f"{time.time() - began:.0f} s")  # fmt: skip
    print("kvasir", {k: round(100 * float(np.mean([v[i] for i in kvasir])), 2)
                     for k, v in scores.items()}, len(kvasir))  # fmt: skip
    with open(out, "w") as f:
        json.dump({"names": names, **scores}, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
