"""Choose a model's least object confidence (``min_confidence``) on a validation part.

For each cutoff, objects whose mean probability is below it are dropped
(``postprocess.drop_unsure``, as Segment and ``napari-tmunet-predict`` do), and the table
gives: images without a lesion that keep a mask, lesion images left empty, mean Dice over
the lesion images, and Dice over all images (an empty prediction on an empty mask counts
1). The cutoff with the best Dice over all images is chosen; a bootstrap (the choice made
again on each stratified resample, scored on the images left out) says how far that
choice can be trusted. Probabilities are computed once per image and kept in --cache.

    python bench/gate_probe.py "TM-UNet ultrasound" --data ../extra-data/ultrasound \\
        --split bench/splits/ultrasound-combined.json --part valid --cache gate.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cross_eval import samples  # noqa: E402

from napari_tmunet.inference import predict_probability  # noqa: E402
from napari_tmunet.metrics import dice_score  # noqa: E402
from napari_tmunet.postprocess import compact, drop_unsure, expand  # noqa: E402
from napari_tmunet.registry import load_model  # noqa: E402

CUTOFFS = np.round(np.arange(0.0, 0.95, 0.01), 2)


def probabilities(args) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, compact probability, mask > 0) per image, from --cache when it is there."""
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        kept = np.load(cache, allow_pickle=False)
        names = [str(n) for n in kept["names"]]
        return [(n, kept[f"p{i}"], kept[f"m{i}"]) for i, n in enumerate(names)]
    checkpoint = load_model(args.model, device=args.device)
    rows = []
    for name, image, mask in samples(args.data, args.split, args.part, None):
        probability, _ = predict_probability(image, checkpoint, mode=checkpoint.inference_mode)
        rows.append((name, compact(probability), mask > 0))
    if cache:
        arrays = {f"p{i}": p for i, (_, p, _) in enumerate(rows)}
        arrays.update({f"m{i}": m for i, (_, _, m) in enumerate(rows)})
        np.savez_compressed(cache, names=np.array([n for n, _, _ in rows]), **arrays)
    return rows


def dice_table(rows, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(images, cutoffs) Dice of each image at each cutoff, and whether its mask is empty."""
    table = np.zeros((len(rows), len(CUTOFFS)))
    empty = np.zeros(table.shape, bool)
    for i, (_, kept, mask) in enumerate(rows):
        probability = expand(kept)
        for j, cutoff in enumerate(CUTOFFS):
            pred = drop_unsure(probability > threshold, probability, cutoff)
            empty[i, j] = not pred.any()
            table[i, j] = 1.0 if empty[i, j] and not mask.any() else dice_score(pred, mask)
    return table, empty


def bootstrap(table, empty, lesion: np.ndarray, draws: int, seed: int = 0) -> dict:
    """Out-of-bag scores of the cutoff chosen on each stratified resample."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(lesion), np.flatnonzero(~lesion)]
    false, emptied, chosen = [], [], []
    for _ in range(draws):
        drawn = np.concatenate([rng.choice(g, g.size) for g in groups])
        best = int(np.argmax(table[drawn].mean(0)))
        left = np.setdiff1d(np.arange(len(table)), drawn)
        free, sick = left[~lesion[left]], left[lesion[left]]
        if free.size and sick.size:  # a draw that left out one kind entirely says nothing
            false.append(np.mean(~empty[free, best]))
            emptied.append(np.mean(empty[sick, best]))
            chosen.append(float(CUTOFFS[best]))
    return {
        "draws_scored": len(false),
        "false_mask_rate": float(np.mean(false)),
        "false_mask_rate_p90": float(np.percentile(false, 90)),
        "lesion_images_left_empty": float(np.mean(emptied)),
        "cutoff_p5_p50_p95": [float(np.percentile(chosen, q)) for q in (5, 50, 95)],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a shipped model's name or a .pt checkpoint")
    p.add_argument("--data", required=True, help="dataset folder (images/ + masks/) or cache")
    p.add_argument("--split", required=True, help="split JSON")
    p.add_argument("--part", default="valid", choices=("train", "valid"))  # never test
    p.add_argument("--cache", help=".npz keeping the probabilities between runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--out", help="JSON of the table and the bootstrap")
    args = p.parse_args(argv)

    rows = probabilities(args)
    threshold = load_model(args.model, device="cpu").input_config.threshold
    table, empty = dice_table(rows, threshold)  # (images, cutoffs)
    lesion = np.array([m.any() for _, _, m in rows])
    print("cutoff  lesion-free with mask  lesion images left empty  lesion Dice  all Dice")
    result = {"threshold": threshold, "rows": []}
    for j, cutoff in enumerate(CUTOFFS):
        row = {
            "cutoff": float(cutoff),
            "lesion_free_with_mask": int((~empty[~lesion, j]).sum()),
            "lesion_images_left_empty": int(empty[lesion, j].sum()),
            "lesion_dice": float(table[lesion, j].mean()),
            "all_dice": float(table[:, j].mean()),
        }
        result["rows"].append(row)
        print(
            f"{cutoff:5.2f}  {row['lesion_free_with_mask']:3d} of {(~lesion).sum()}"
            f"  {row['lesion_images_left_empty']:3d} of {lesion.sum()}"
            f"  {100 * row['lesion_dice']:6.2f}  {100 * row['all_dice']:6.2f}"
        )
    best = int(np.argmax(table.mean(0)))
    result["chosen"] = float(CUTOFFS[best])
    result["bootstrap"] = bootstrap(table, empty, lesion, args.draws)
    print(f"chosen: {CUTOFFS[best]:.2f}; bootstrap: {json.dumps(result['bootstrap'])}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
