"""Score a checkpoint on another dataset's images (cross-dataset evaluation).

Each image goes through ``napari_tmunet.inference.predict_probability`` as in the Segment
dock (the checkpoint's mode unless --mode), is thresholded at the checkpoint's threshold
(objects less sure than its ``min_confidence`` dropped), and is compared with its mask at
native resolution (``metrics.dice_score`` / ``iou_score``). With --instances the masks
are instance label images (CPM-15, DSB2018): the prediction is split into objects as the
Segment dock's "instances" output does (``postprocess.split_instances``) and compared
object by object (``metrics.instance_scores``: PQ and AJI).

Summary (over images whose mask is non-empty): mean and median Dice and IoU, frames with
Dice < 0.5, empty predictions; over images with an empty mask (BUSI "normal"): how many
get a non-empty prediction. Per-image CSV and summary JSON with --out.

    python bench/cross_eval.py "TM-UNet colonoscopy" --data ../extra-data/Kvasir-SEG \
        --names ../extra-data/Kvasir-SEG/pranet_test100.txt --out eval-kvasir
    python bench/cross_eval.py runs/x/best.pt --data combined --split bench/splits/s.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_tmunet.data.cache import load_cache
from napari_tmunet.data.datasets import find_pairs, load_split, read_pair_mask, split_from_lists
from napari_tmunet.data.images import read_image
from napari_tmunet.inference import predict_probability
from napari_tmunet.metrics import dice_score, instance_scores, iou_score
from napari_tmunet.postprocess import drop_unsure, split_instances
from napari_tmunet.registry import load_model


def wanted_names(all_names: list[str], split: str | None, part: str, names: str | None):
    """The names to score: a split part, a list (one name per line), or all."""
    if split:
        return load_split(split, all_names)[0][part]
    if names:
        wanted = split_from_lists(names, names)["test"]
        missing = sorted(set(wanted) - set(all_names))
        if missing:
            raise SystemExit(f"{len(missing)} listed names are not in the dataset: {missing[:5]}")
        return wanted
    return all_names


def samples(
    data: str, split: str | None, part: str, names: str | None, instances: bool = False
) -> Iterator[tuple]:
    """(name, image, mask) of the chosen images of a folder or a cache file.

    ``instances``: the mask as its instance label image (a folder's label files).
    """
    if Path(data).is_file():
        if instances:
            raise SystemExit("--instances needs a dataset folder (a cache keeps binary masks)")
        cache = load_cache(data)
        index = {n: i for i, n in enumerate(cache.names)}
        for name in wanted_names(cache.names, split, part, names):
            yield cache[index[name]]
        return
    pairs = {p.name: p for p in find_pairs(data)}
    for name in wanted_names(list(pairs), split, part, names):
        image = read_image(pairs[name].image_path, allow_stack=False)
        if instances:
            yield name, image, _instance_labels(pairs[name].mask_path)
        else:
            yield name, image, read_pair_mask(pairs[name])[0]


def _instance_labels(path) -> np.ndarray:
    labels = read_image(path, allow_stack=False)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise SystemExit(f"{path}: --instances needs a 2-D integer label image")
    return labels


def score(
    checkpoint, items, mode: str, threshold: float, min_confidence: float, instances=False
) -> list[dict]:
    """Per-image rows: name, dice, iou, mask and prediction pixel counts (+ PQ, AJI...)."""
    rows = []
    for name, image, mask in items:
        probability, _ = predict_probability(image, checkpoint, mode=mode)
        pred = drop_unsure(probability > threshold, probability, min_confidence)
        row = {
            "name": name,
            "dice": dice_score(pred, mask > 0),
            "iou": iou_score(pred, mask > 0),
            "mask_pixels": int((mask > 0).sum()),
            "pred_pixels": int(pred.sum()),
        }
        if instances:
            row.update(instance_scores(split_instances(pred), mask))
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Scores over lesion images (non-empty mask) and false alarms on empty-mask images."""
    lesion = [r for r in rows if r["mask_pixels"] > 0]
    normal = [r for r in rows if r["mask_pixels"] == 0]
    dice = np.array([r["dice"] for r in lesion], float)
    iou = np.array([r["iou"] for r in lesion], float)
    out = {"images": len(rows), "lesion_images": len(lesion), "empty_mask_images": len(normal)}
    if lesion:
        out.update(
            dice_mean=float(dice.mean()),
            dice_median=float(np.median(dice)),
            iou_mean=float(iou.mean()),
            iou_median=float(np.median(iou)),
            below_half=int((dice < 0.5).sum()),
            zero_dice=int((dice == 0).sum()),
            empty_predictions=sum(r["pred_pixels"] == 0 for r in lesion),
        )
        if "pq" in lesion[0]:
            for key in ("pq", "dq", "sq", "aji"):
                values = np.array([r[key] for r in lesion], float)
                out[f"{key}_mean"] = float(np.nanmean(values))
                out[f"{key}_median"] = float(np.nanmedian(values))
    if normal:
        out["empty_mask_with_prediction"] = sum(r["pred_pixels"] > 0 for r in normal)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a shipped model's name or a .pt checkpoint")
    p.add_argument("--data", required=True, help="dataset folder (images/ + masks/) or cache")
    p.add_argument("--split", help="split JSON; scores its --part")
    p.add_argument("--part", default="test", choices=("train", "valid", "test"))
    p.add_argument("--names", help="text file, one image base name per line")
    p.add_argument("--mode", choices=("resize", "tile"), help="default: the checkpoint's")
    p.add_argument(
        "--instances",
        action="store_true",
        help="masks are instance labels: add PQ and AJI of the split prediction",
    )
    p.add_argument("--threshold", type=float, help="default: the checkpoint's")
    p.add_argument(
        "--min-confidence",
        type=float,
        help="drop objects whose mean probability is below this (default: the checkpoint's)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="folder for per-image.csv and summary.json")
    args = p.parse_args(argv)

    start = time.time()
    checkpoint = load_model(args.model, device=args.device)
    mode = args.mode or checkpoint.inference_mode
    items = samples(args.data, args.split, args.part, args.names, args.instances)
    given = checkpoint.input_config
    threshold = given.threshold if args.threshold is None else args.threshold
    confidence = given.min_confidence if args.min_confidence is None else args.min_confidence
    rows = score(checkpoint, items, mode, threshold, confidence, args.instances)
    summary = {
        "model": args.model,
        "data": args.data,
        "selection": args.split or args.names or "all",
        "mode": mode,
        "threshold": threshold,
        "min_confidence": confidence,
        **summarise(rows),
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "per-image.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
