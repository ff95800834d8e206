"""Scoring a predicted mask against a reference, slice by slice (no Qt).

The rows the Metrics dock shows and exports, from ``napari_tmunet.metrics`` (the same
code as the trainer's reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import SegmentationMetrics, f1_from_means, hausdorff_distance

OVERALL = "mean"  # the ``slice`` value of the summary row


def score_labels(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    unit: str = "",
    prediction_name: str = "prediction",
    reference_name: str = "reference",
) -> list[dict[str, Any]]:
    """Per-slice metric rows for (..., H, W) masks (> 0 is foreground), then a mean row.

    Distances are in pixels (``hd_px``, ``hd95_px``) and, with ``spacing`` (sy, sx),
    also in physical units (``hd_physical``, ``hd95_physical``, ``unit``).
    """

    shape = pred.shape
    pred = np.asarray(pred > 0).reshape(-1, *shape[-2:])  # (S, H, W)
    ref = np.asarray(ref > 0).reshape(-1, *shape[-2:])  # (S, H, W)
    lead = shape[:-2]
    metrics = SegmentationMetrics()
    rows = []
    for index in range(pred.shape[0]):
        name = ",".join(str(i) for i in np.unravel_index(index, lead)) if lead else "0"
        scores = metrics.update(pred[index], ref[index], name=name)
        row = {
            "slice": name,
            "dice": scores["dice"],
            "iou": scores["iou"],
            "precision": scores["precision"],
            "recall": scores["recall"],
            "f1": f1_from_means(scores["precision"], scores["recall"]),
            "hd_px": scores["hd"],
            "hd95_px": scores["hd95"],
        }
        if spacing is not None:
            row["hd_physical"] = hausdorff_distance(pred[index], ref[index], spacing=spacing)
            row["hd95_physical"] = hausdorff_distance(
                pred[index], ref[index], percentile=95, spacing=spacing
            )
            row["unit"] = unit
        row["note"] = _empty_note(scores)
        row.update(prediction=prediction_name, reference=reference_name)
        rows.append(row)

    summary = metrics.aggregate()
    overall = {
        "slice": OVERALL,
        "dice": summary["dice_mean"],
        "iou": summary["iou_mean"],
        "precision": summary["precision_mean"],
        "recall": summary["recall_mean"],
        "f1": summary["f1"],
        "hd_px": summary["hd_mean"],
        "hd95_px": summary["hd95_mean"],
    }
    if spacing is not None:
        overall["hd_physical"] = float(np.mean([r["hd_physical"] for r in rows]))
        overall["hd95_physical"] = float(np.mean([r["hd95_physical"] for r in rows]))
        overall["unit"] = unit
    empties = summary["empty_prediction"] + summary["empty_reference"]
    overall["note"] = f"mean of {len(rows)} slice(s)" + (
        f"; {empties} with one mask empty (HD = image diagonal)" if empties else ""
    )
    overall.update(prediction=prediction_name, reference=reference_name)
    rows.append(overall)
    return rows




def _empty_note(scores: dict[str, Any]) -> str:
    if scores.get("empty_prediction"):
        return "empty prediction"
    if scores.get("empty_reference"):
        return "empty reference"
    return ""
