"""Segmentation metrics on boolean masks; the one source for trainer, plugin and tests.

Pure functions (``dice_score``, ``iou_score``, ``precision_recall``,
``hausdorff_distance``, ``hd95``) plus ``SegmentationMetrics``, which accumulates
per-image results and aggregates them; ``instance_scores`` compares instance label
images object by object (panoptic quality and the aggregated Jaccard index),
``pool_instance_scores`` several images' together.

Empty masks, explicitly:

- Dice, IoU, precision, recall: both empty -> 1.0; exactly one empty -> 0.0.
- Hausdorff: both empty -> 0.0; exactly one empty -> the image diagonal
  ``sqrt((H*sy)^2 + (W*sx)^2)`` (the worst case, finite, unlike MONAI's inf/nan), and
  ``SegmentationMetrics`` flags the image (``empty_prediction`` / ``empty_reference``)
  so it can be counted or left out (``hd_mean_nonempty``, as the released code
  drops inf).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

EMPTY_PREDICTION = "empty_prediction"
EMPTY_REFERENCE = "empty_reference"
PER_IMAGE_KEYS: tuple[str, ...] = (
    "name",
    "dice",
    "iou",
    "precision",
    "recall",
    "hd",
    "hd95",
    EMPTY_PREDICTION,
    EMPTY_REFERENCE,
)
_SCORES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd", "hd95")


def dice_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice ``2|P & R| / (|P| + |R|)``, no smoothing; both empty -> 1.0."""
    pred, ref = _masks(pred, ref)
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def iou_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union, no smoothing; both empty -> 1.0."""
    pred, ref = _masks(pred, ref)
    union = int(np.logical_or(pred, ref).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(pred, ref).sum()) / union


def precision_recall(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Pixel precision TP/(TP+FP) and recall TP/(TP+FN).

    Both empty -> (1.0, 1.0); an empty prediction or an empty reference gives 0.0 for
    the undefined ratio (TP = 0 there anyway).
    """
    pred, ref = _masks(pred, ref)
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if n_pred == 0 and n_ref == 0:
        return 1.0, 1.0
    tp = int(np.logical_and(pred, ref).sum())
    return (tp / n_pred if n_pred else 0.0), (tp / n_ref if n_ref else 0.0)


def hausdorff_distance(
    pred: np.ndarray,
    ref: np.ndarray,
    percentile: float = 100,
    spacing: Sequence[float] | None = None,
) -> float:
    """Symmetric Hausdorff distance between the mask boundaries.

    Boundary = ``mask ^ binary_erosion(mask)`` (pixels outside the image count as
    background), as in MONAI. The result is the max of the two directed distances,
    each the ``percentile`` of the boundary-to-nearest-boundary distances (MONAI's
    convention for hd95).

    Args:
        pred: (H, W) bool prediction (N-D works too).
        ref: (H, W) bool reference.
        percentile: 100 for the Hausdorff distance, 95 for hd95.
        spacing: pixel size per axis, e.g. (sy, sx); None means pixels.

    Returns:
        The distance in pixels or spacing units; 0.0 when both masks are empty, the
        image diagonal when exactly one is.
    """
    pred, ref = _masks(pred, ref)
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    sampling = _spacing(spacing, pred.ndim)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if not has_pred or not has_ref:
        return image_diagonal(pred.shape, sampling)
    edge_pred = pred ^ ndimage.binary_erosion(pred)
    edge_ref = ref ^ ndimage.binary_erosion(ref)
    # Every boundary pixel lies in the union's bounding box, so the distance
    # transforms can be computed there only.
    box = ndimage.find_objects((edge_pred | edge_ref).astype(np.uint8))[0]
    edge_pred, edge_ref = edge_pred[box], edge_ref[box]
    to_ref = ndimage.distance_transform_edt(~edge_ref, sampling=sampling)[edge_pred]
    to_pred = ndimage.distance_transform_edt(~edge_pred, sampling=sampling)[edge_ref]
    return float(max(np.percentile(to_ref, percentile), np.percentile(to_pred, percentile)))


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile Hausdorff distance (max of the two directed 95th percentiles)."""
    return hausdorff_distance(pred, ref, percentile=95, spacing=spacing)


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Length of the image diagonal, ``sqrt(sum((n_i * s_i)^2))``."""
    sampling = _spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sampling, strict=True))))


def f1_from_means(mean_precision: float, mean_recall: float) -> float:
    """F1 from the mean precision and recall over a test set, as the released code does."""
    total = mean_precision + mean_recall
    return 2.0 * mean_precision * mean_recall / total if total > 0 else 0.0


class SegmentationMetrics:
    """Accumulates per-image metrics and aggregates them.

    Example:
        >>> metrics = SegmentationMetrics()
        >>> row = metrics.update(pred > 0.5, ref, name="12")
        >>> summary = metrics.aggregate()  # {"count": 1, "dice_mean": ..., "f1": ...}
    """

    def __init__(self) -> None:
        self._rows: list[dict] = []

    def __len__(self) -> int:
        return len(self._rows)

    def reset(self) -> None:
        """Forget all images."""
        self._rows.clear()

    def update(
        self,
        pred: np.ndarray,
        ref: np.ndarray,
        name: str | None = None,
        spacing: Sequence[float] | None = None,
    ) -> dict:
        """Score one image and keep the result.

        Args:
            pred: (H, W) bool prediction.
            ref: (H, W) bool reference.
            name: image name (default: its index).
            spacing: (sy, sx) pixel size for the Hausdorff distances; None for pixels.

        Returns:
            The per-image row, keys ``PER_IMAGE_KEYS``.
        """
        pred, ref = _masks(pred, ref)
        precision, recall = precision_recall(pred, ref)
        has_pred, has_ref = bool(pred.any()), bool(ref.any())
        row = {
            "name": str(len(self._rows)) if name is None else str(name),
            "dice": dice_score(pred, ref),
            "iou": iou_score(pred, ref),
            "precision": precision,
            "recall": recall,
            "hd": hausdorff_distance(pred, ref, spacing=spacing),
            "hd95": hd95(pred, ref, spacing=spacing),
            EMPTY_PREDICTION: has_ref and not has_pred,
            EMPTY_REFERENCE: has_pred and not has_ref,
        }
        self._rows.append(row)
        return dict(row)

    def per_image(self) -> list[dict]:
        """One dict per image, in update order (copies)."""
        return [dict(row) for row in self._rows]

    def aggregate(self) -> dict:
        """Mean and std (population, ddof=0) over the images; nan when there are none.

        Returns:
            "count"; "<m>_mean" and "<m>_std" for m in dice, iou, precision, recall, hd,
            hd95; "f1" from the mean precision and recall; the "empty_prediction" and
            "empty_reference" counts; "hd_mean_nonempty" and "hd95_mean_nonempty", means
            over the images where no mask is empty alone (nan when none).
        """
        result: dict = {"count": len(self._rows)}
        for key in _SCORES:
            values = np.array([row[key] for row in self._rows], dtype=np.float64)
            result[f"{key}_mean"] = float(values.mean()) if values.size else math.nan
            result[f"{key}_std"] = float(values.std()) if values.size else math.nan
        result["f1"] = (
            f1_from_means(result["precision_mean"], result["recall_mean"])
            if self._rows
            else math.nan
        )
        result[EMPTY_PREDICTION] = sum(row[EMPTY_PREDICTION] for row in self._rows)
        result[EMPTY_REFERENCE] = sum(row[EMPTY_REFERENCE] for row in self._rows)
        valid = [r for r in self._rows if not (r[EMPTY_PREDICTION] or r[EMPTY_REFERENCE])]
        for key in ("hd", "hd95"):
            values = [row[key] for row in valid]
            result[f"{key}_mean_nonempty"] = float(np.mean(values)) if values else math.nan
        return result

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-image rows as CSV (header ``PER_IMAGE_KEYS``)."""
        from .storage import write_csv

        return write_csv(path, self._rows, PER_IMAGE_KEYS)


def instance_scores(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Object-level agreement of two (H, W) instance label images (0 = background).

    - PQ (panoptic quality, Kirillov et al. 2019): objects pair up one to one where their
      IoU exceeds 0.5; DQ = TP / (TP + FP / 2 + FN / 2), SQ = mean IoU of the pairs,
      PQ = DQ x SQ.
    - AJI (aggregated Jaccard index, Kumar et al. 2017): each reference object joins the
      predicted object of highest IoU (none: the reference object alone); AJI = summed
      intersections / summed unions, with predicted objects that joined nothing added
      to the unions.

    Both images without objects: every score is NaN (nothing to measure).

    Returns:
        ``{"pq", "dq", "sq", "aji", "tp", "fp", "fn", "ref_objects", "pred_objects"}``,
        and AJI's summed intersections and unions (``"aji_intersection"``,
        ``"aji_union"``), which :func:`pool_instance_scores` adds up.
    """
    pred, ref = _labels(pred, "pred"), _labels(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs ref {ref.shape}")
    pairs = _overlaps(pred, ref)
    scores = {"ref_objects": len(pairs.ref_area), "pred_objects": len(pairs.pred_area)}
    scores["tp"] = int(np.count_nonzero(pairs.iou > 0.5))  # IoU > 0.5: each pair unique
    scores["sq"] = float(pairs.iou[pairs.iou > 0.5].mean()) if scores["tp"] else 0.0
    scores["aji_intersection"], scores["aji_union"] = _aji_sums(pairs)
    return _pq_aji(scores)


def pool_instance_scores(scores: Sequence[dict]) -> dict:
    """:func:`instance_scores` of several images (a stack's slices) taken together, as of
    one image holding them side by side: the counts and AJI's intersections and unions
    summed, SQ the mean IoU of all matched pairs, PQ and AJI from those."""
    pooled = {
        key: sum(int(s[key]) for s in scores)
        for key in ("tp", "ref_objects", "pred_objects", "aji_intersection", "aji_union")
    }
    matched_iou = sum(s["sq"] * s["tp"] for s in scores if s["tp"])
    pooled["sq"] = matched_iou / pooled["tp"] if pooled["tp"] else 0.0
    return _pq_aji(pooled)


def _pq_aji(scores: dict) -> dict:
    """``scores`` (counts of objects and matches, SQ, AJI's sums) with FP, FN, DQ, PQ and
    AJI; NaN scores where neither image holds an object."""
    tp, n_ref, n_pred = scores["tp"], scores["ref_objects"], scores["pred_objects"]
    scores = {**scores, "fp": n_pred - tp, "fn": n_ref - tp}
    if n_ref == n_pred == 0:
        return scores | dict.fromkeys(("pq", "dq", "sq", "aji"), math.nan)
    dq = tp / (tp + scores["fp"] / 2 + scores["fn"] / 2)
    union = scores["aji_union"]
    aji = scores["aji_intersection"] / union if union else math.nan
    return scores | {"pq": dq * scores["sq"], "dq": dq, "aji": float(aji)}


def _labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(
            f"{what}: expected a 2-D integer label image, got {labels.dtype} {labels.shape}"
        )
    if labels.dtype != bool and labels.min() < 0:
        raise ValueError(f"{what}: labels must be >= 0 (0 = background)")
    return labels.astype(np.int64)


# Above this many (reference, predicted) label pairs the overlapping ones are found by
# sorting the pixels' pairs rather than by counting into a table of every pair, which
# grows with the product of the objects' counts (20,000 nuclei each: 3.2 GB).
DENSE_PAIRS_MAX = 1 << 22


@dataclass(frozen=True)
class _Pairs:
    """The overlapping object pairs of two label images, objects numbered densely in
    ascending label order (background dropped): each pair's reference and predicted
    object, intersection, union and IoU; every object's area."""

    ref: np.ndarray  # (N,) reference object of each pair
    pred: np.ndarray  # (N,) predicted object
    inter: np.ndarray  # (N,) pixels in both
    union: np.ndarray  # (N,) pixels in either
    iou: np.ndarray  # (N,)
    ref_area: np.ndarray  # (R,)
    pred_area: np.ndarray  # (P,)


def _overlaps(pred: np.ndarray, ref: np.ndarray) -> _Pairs:
    """The pairs of objects that overlap (a sparse intersection table: only those)."""
    ref_ids, ref_ix = _dense_ids(ref)  # ref_ix: (H * W,) each pixel's object, 0..R
    pred_ids, pred_ix = _dense_ids(pred)
    n_r, n_p = len(ref_ids), len(pred_ids)
    codes = ref_ix * n_p + pred_ix  # one number per (reference, predicted) pair
    if n_r * n_p <= DENSE_PAIRS_MAX:
        table = np.bincount(codes, minlength=n_r * n_p)
        found = np.flatnonzero(table)
        inter = table[found]
    else:
        found, inter = np.unique(codes, return_counts=True)
    r, p = np.divmod(found, n_p)
    r0, p0 = int(ref_ids[0] == 0), int(pred_ids[0] == 0)  # drop the background row/column
    keep = (r >= r0) & (p >= p0)
    r, p, inter = r[keep] - r0, p[keep] - p0, inter[keep]
    ref_area = np.bincount(ref_ix, minlength=n_r)[r0:]
    pred_area = np.bincount(pred_ix, minlength=n_p)[p0:]
    union = ref_area[r] + pred_area[p] - inter
    return _Pairs(r, p, inter, union, inter / union, ref_area, pred_area)


def _dense_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels present, ascending, and each pixel's index among them, flat. Labels
    up to a few times the pixel count (ids of nuclei, 0..N) are looked up in a table of
    all values: 5x quicker than sorting the pixels (``np.unique``), which larger ones
    need."""
    flat = labels.reshape(-1)
    top = int(flat.max()) if flat.size else 0
    if top > 4 * flat.size + 1024:
        ids, index = np.unique(flat, return_inverse=True)
        return ids, index.reshape(-1)
    ids = np.flatnonzero(np.bincount(flat, minlength=1))
    lookup = np.zeros(top + 1, np.int64)
    lookup[ids] = np.arange(len(ids))
    return ids, lookup[flat]


def _aji_sums(pairs: _Pairs) -> tuple[int, int]:
    """AJI's summed intersections and unions: each reference object with the predicted
    object of its highest IoU (the lowest label of ties), else alone; the predicted
    objects no reference object joined added to the unions."""
    order = np.lexsort((pairs.pred, -pairs.iou, pairs.ref))  # by object, best IoU first
    ranked = pairs.ref[order]
    best = order[np.r_[True, ranked[1:] != ranked[:-1]]] if len(order) else order
    joined_ref = np.zeros(len(pairs.ref_area), bool)
    joined_ref[pairs.ref[best]] = True
    joined_pred = np.zeros(len(pairs.pred_area), bool)
    joined_pred[pairs.pred[best]] = True
    inter = int(pairs.inter[best].sum())
    union = int(pairs.union[best].sum()) + int(pairs.ref_area[~joined_ref].sum())
    return inter, union + int(pairs.pred_area[~joined_pred].sum())


def _masks(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a prediction/reference pair to bool arrays of one shape."""
    pred, ref = _as_bool(pred, "pred"), _as_bool(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    if pred.ndim < 1 or pred.size == 0:
        raise ValueError(f"expected non-empty (H, W) masks, got shape {pred.shape}")
    return pred, ref


def _as_bool(mask: np.ndarray, what: str) -> np.ndarray:
    """A bool array, or a 0/1 array converted; anything else is an error."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind in "iuf" and ((mask == 0) | (mask == 1)).all():
        return mask.astype(bool)
    low, high = (float(mask.min()), float(mask.max())) if mask.size else (0.0, 0.0)
    raise ValueError(
        f"{what} must be a boolean (or 0/1) mask, got dtype {mask.dtype} with values in "
        f"[{low:g}, {high:g}]; threshold it first (e.g. prob > 0.5)"
    )


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Pixel size per axis; None -> 1.0 each."""
    if spacing is None:
        return (1.0,) * ndim
    sampling = tuple(float(s) for s in spacing)
    if len(sampling) != ndim or not all(s > 0 and math.isfinite(s) for s in sampling):
        raise ValueError(f"spacing must be {ndim} positive numbers (sy, sx), got {spacing}")
    return sampling
