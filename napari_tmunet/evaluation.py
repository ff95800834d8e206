"""Scoring predictions against references, on labels or as the plugin predicts them (no Qt).

- :func:`score_labels`: the rows the Metrics dock shows and exports for two label images.
- :func:`evaluate`: a model scored on labelled images exactly as the plugin predicts them
  (``napari_tmunet.inference``: the same input mapping, resizing, sliding window and
  foreground probability); the trainer's test and fine-tuning's held-out scores use it.

Both score with ``napari_tmunet.metrics``. Torch is imported by :func:`evaluate` only, so
the Metrics dock stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import (
    PER_IMAGE_KEYS,
    SegmentationMetrics,
    f1_from_means,
    hausdorff_distance,
    instance_scores,
    pool_instance_scores,
)
from .options import canonical_mode
from .words import plural

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .config import InputConfig

OVERALL = "mean"  # the ``slice`` value of the summary row


class EvaluationStopped(Exception):
    """:func:`evaluate` was asked to stop (its ``stop`` callable returned True)."""


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
    also in physical units (``hd_physical``, ``hd95_physical``, ``unit``). Where both
    hold instance ids (``data.images.holds_instance_labels``) each row also scores the
    objects (:func:`object_columns`); the mean row those of all slices together
    (``metrics.pool_instance_scores``).
    """
    from .data.images import holds_instance_labels

    shape = pred.shape
    pred_labels = np.asarray(pred).reshape(-1, *shape[-2:])  # (S, H, W)
    ref_labels = np.asarray(ref).reshape(-1, *shape[-2:])  # (S, H, W)
    objects = holds_instance_labels(pred_labels) and holds_instance_labels(ref_labels)
    pred, ref = pred_labels > 0, ref_labels > 0
    lead = shape[:-2]
    metrics = SegmentationMetrics()
    rows, per_slice_objects = [], []
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
        if objects:
            per_slice_objects.append(instance_scores(pred_labels[index], ref_labels[index]))
            row.update(object_columns(per_slice_objects[-1]))
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
    if objects:
        overall.update(object_columns(pool_instance_scores(per_slice_objects)))
    empties = summary["empty_prediction"] + summary["empty_reference"]
    overall["note"] = f"mean of {len(rows)} slice(s)" + (
        f"; {empties} with one mask empty (HD = image diagonal)" if empties else ""
    )
    overall.update(prediction=prediction_name, reference=reference_name)
    rows.append(overall)
    return rows


# The object columns of score_labels' rows, from metrics.instance_scores' keys: objects
# paired one to one at IoU > 0.5 (true positives), reference objects left unpaired (false
# negatives), predicted ones (false positives), panoptic quality, aggregated Jaccard index.
OBJECT_COLUMNS: dict[str, str] = {
    "matched": "tp",
    "missed": "fn",
    "extra": "fp",
    "pq": "pq",
    "aji": "aji",
}


def object_columns(scores: dict[str, Any]) -> dict[str, Any]:
    """``metrics.instance_scores`` (or ``pool_instance_scores``) as a row's object
    columns (:data:`OBJECT_COLUMNS`), counts as ints."""
    return {
        column: int(scores[key]) if key in ("tp", "fn", "fp") else float(scores[key])
        for column, key in OBJECT_COLUMNS.items()
    }


def _empty_note(scores: dict[str, Any]) -> str:
    if scores.get("empty_prediction"):
        return "empty prediction"
    if scores.get("empty_reference"):
        return "empty reference"
    return ""


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is no terminal (a log file), as train's and predict's
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)


class Evaluation(SegmentationMetrics):
    """Per-image metrics at the evaluation size (the paper's 512 x 512) + native column.

    The inherited rows/aggregate are the metrics at ``size`` (None: at each scored part's
    own resolution, as the native ones); ``native`` holds the same metrics at each image's
    own resolution. ``aggregate()`` returns both, the native ones prefixed ``native_``, and
    ``size`` (a list, or None); ``to_csv`` writes one row per image with both.
    """

    def __init__(self, size: tuple[int, int] | None):
        super().__init__()
        self.size = None if size is None else tuple(size)
        self.native = SegmentationMetrics()
        self.shapes: list[tuple[int, int]] = []
        # (name, (H, W) bool prediction, (H, W) bool mask), whole, when asked to keep them
        self.predictions: list[tuple[str, np.ndarray, np.ndarray]] = []

    def add(self, name: str, pred_size, ref_size, pred_native, ref_native) -> dict:
        row = self.update(pred_size, ref_size, name=name)
        native = self.native.update(pred_native, ref_native, name=name)
        self.shapes.append(tuple(ref_native.shape))
        return {**row, **{f"native_{k}": v for k, v in native.items() if k != "name"}}

    def reset(self) -> None:
        super().reset()
        self.native.reset()
        self.shapes.clear()

    def aggregate(self) -> dict:
        result = super().aggregate()
        native = self.native.aggregate()
        result.update({f"native_{k}": v for k, v in native.items() if k != "count"})
        result["size"] = None if self.size is None else list(self.size)
        return result

    def per_image(self) -> list[dict]:
        rows = []
        for row, native, shape in zip(
            super().per_image(), self.native.per_image(), self.shapes, strict=True
        ):
            row.update({f"native_{k}": v for k, v in native.items() if k != "name"})
            row["height"], row["width"] = shape
            rows.append(row)
        return rows

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-image rows as CSV, at the evaluation size and native."""
        from .storage import write_csv

        keys = [*PER_IMAGE_KEYS, *(f"native_{k}" for k in PER_IMAGE_KEYS[1:]), "height", "width"]
        return write_csv(path, self.per_image(), keys)


def percent(fraction: float) -> str:
    """A score in [0, 1] in percent points with its unit, as the docs' tables give them:
    0.0765 -> "7.65%"."""
    return f"{100 * fraction:.2f}%"


def scores_line(aggregate: dict) -> str:
    """A test part's scores (:meth:`Evaluation.aggregate`) in one line: Dice, IoU, F1 in
    %, Hausdorff distances in pixels at the evaluation size, native Dice in %."""
    a = aggregate
    return (
        f"test ({plural(a['count'], 'image')}): Dice {percent(a['dice_mean'])} IoU "
        f"{percent(a['iou_mean'])} F1 {percent(a['f1'])} HD {a['hd_mean']:.2f} px HD95 "
        f"{a['hd95_mean']:.2f} px, {plural(a['empty_prediction'], 'empty prediction')}; "
        f"native Dice {percent(a['native_dice_mean'])}"
    )


PAPER_TEST_SIZE = (512, 512)  # the paper scores every test image at 512 x 512


def evaluate(
    model: nn.Module,
    samples: Sequence,
    input_config: InputConfig,
    mode: str = "resize",
    *,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    batch_size: int = 8,
    overlap: float = 0.25,
    progress: bool = False,
    region: tuple[slice, slice] | None = None,
    stop=None,
    keep_predictions: bool = False,
    on_progress: Callable[[float, int], None] | None = None,
) -> Evaluation:
    """Score a model on (name, image, mask) samples (e.g. ``NativeCache`` items).

    The prediction is the plugin's (``napari_tmunet.inference``), building block for
    building block: the same input mapping (``FrameInput``), resizing, forward pass and
    foreground probability, thresholded at ``input_config.threshold``. "resize" (paper):
    the image is resized to ``input_config.size`` and the mask compared with the mask
    resized to that size; the native column resizes the logits back to the image's size.
    "tile": ``inference.sliding_window`` at native resolution (windows of
    ``input_config.size``, Gaussian blending, as the plugin's tile mode); the main column
    resizes that probability to 512 x 512 (``PAPER_TEST_SIZE``, the paper's test
    resolution), so crop and resize models are scored alike. Dice/IoU without smoothing, HD/HD95
    in pixels, an empty prediction on a non-empty mask scores HD = image diagonal and is
    counted (see ``napari_tmunet.metrics``).

    Args:
        model: the model (DDP wrapper accepted); put in eval mode and restored after.
        samples: items with ``name``, ``image`` ((H, W[, C]) array), ``mask`` ((H, W)
            bool), or (name, image, mask) tuples.
        amp: bf16 autocast; default on for CUDA.
        batch_size: images (resize) or windows (crop) per forward pass.
        region: (rows, columns) slices: score only this part of every image (e.g. the
            strip of an image held out for fine-tuning); the model still sees the whole
            image, as Segment runs it. Both columns score that part at its own
            resolution (the result's ``size`` is None): resized to a square, a strip's
            shapes and distances would be stretched.
        stop: a callable checked between forward passes; when it returns True,
            :class:`EvaluationStopped` is raised.
        keep_predictions: keep every sample's whole native prediction and mask in the
            result's ``predictions``.
        on_progress: called between forward passes and after each sample with (samples
            scored, samples); the first is fractional within a sliding window (its
            windows done), so that a caller can say how far a long scoring is.
    Returns:
        An :class:`Evaluation` (a ``SegmentationMetrics`` with a ``native`` column).
    """
    mode = canonical_mode(mode)
    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    try:
        run = _EvaluationRun(net, input_config, mode, device, amp, region)
        run.stop, run.keep = stop, keep_predictions
        items = list(samples)
        run.on_progress, run.samples = on_progress, len(items)
        if mode == "tile":
            run.score_tiled(items, overlap, batch_size, progress)
        else:
            run.score_resized(items, overlap, batch_size, progress)
    finally:
        net.train(was_training)
    return run.result


class _EvaluationRun:
    """The settings of one :func:`evaluate` call and the ``Evaluation`` it fills."""

    def __init__(self, net: nn.Module, input_config: InputConfig, mode: str, device, amp, region):
        import torch

        self.net = net
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        self.amp = self.device.type == "cuda" if amp is None else amp
        self.channels = getattr(getattr(net, "config", None), "in_channels", len(input_config.mean))
        self.input_config = input_config
        self.size = tuple(input_config.size)
        # None: a region is scored as it is (see ``evaluate``)
        self.eval_size = (
            None if region is not None else self.size if mode == "resize" else PAPER_TEST_SIZE
        )
        self.result = Evaluation(self.eval_size)
        self.region = region
        self.stop = None  # a callable: True raises EvaluationStopped between forward passes
        self.keep = False  # keep whole predictions in result.predictions
        self.on_progress = None  # a callable: (samples scored, samples), see ``evaluate``
        self.samples = 0
        self.scored = 0  # samples scored so far

    def check_stop(self, done: int | None = None, total: int | None = None) -> None:
        """Report how far the scoring is (``done`` of ``total`` windows of the current
        sample, when given); raise :class:`EvaluationStopped` when ``stop`` says so."""
        if self.on_progress is not None:
            self.on_progress(self.scored + (done / total if done and total else 0.0), self.samples)
        if self.stop is not None and self.stop():
            raise EvaluationStopped("evaluation stopped")

    def score_tiled(self, items: list, overlap: float, batch_size: int, progress: bool) -> None:
        """Sliding window at native resolution; the main column resized to 512 x 512."""
        for sample in _progress(items, len(items), "evaluate", progress):
            self.score_windows(self.prepare(sample), "tile", overlap, batch_size)

    def score_resized(self, items: list, overlap: float, batch_size: int, progress: bool) -> None:
        """Batches resized to the model's size; the native column from resized-back logits.

        An elongated frame is cut into windows, each resized, as Segment does
        (``FrameInput.window``); its main column is its probability resized to the model's size.
        """
        import torch

        from .inference import foreground_probability, forward_logits, resize

        starts = range(0, len(items), batch_size)
        for start in _progress(starts, len(starts), "evaluate", progress):
            self.check_stop()
            prepared = [self.prepare(s) for s in items[start : start + batch_size]]
            whole = [p for p in prepared if p[1].window("resize") is None]
            if whole:
                x = torch.cat([frame.resized(self.device) for _, frame, _ in whole])
                logits = iter(forward_logits(self.net, x, self.amp))  # (n, K, h, w)
            for name, frame, mask in prepared:  # in order: results are listed as given
                if frame.window("resize") is not None:
                    self.score_windows((name, frame, mask), "resize", overlap, batch_size)
                    continue
                lg = next(logits)[None]  # (1, K, h, w)
                native = foreground_probability(resize(lg, frame.hw))[0]
                self.score(name, foreground_probability(lg)[0], native, mask)

    def score_windows(self, prepared: tuple, mode: str, overlap: float, batch_size: int) -> None:
        """One frame through ``sliding_window`` in ``mode``'s windows (``FrameInput.window``);
        the main column is its probability resized to the evaluation size."""
        from .inference import resize, run_to_completion, sliding_window, window_probability

        name, frame, mask = prepared
        resized_to = self.size if mode == "resize" else None
        probability = window_probability(self.net, self.amp, resized_to)
        windows = sliding_window(
            probability, frame, frame.window(mode), overlap, batch_size, "gaussian", self.device
        )
        prob = run_to_completion(windows, self.check_stop)  # (1, 1, H, W)
        at_size = None if self.eval_size is None else resize(prob, self.eval_size)[0, 0]
        self.score(name, at_size, prob[0, 0], mask)

    def prepare(self, sample) -> tuple[str, Any, np.ndarray]:
        """(name, FrameInput, (H, W) bool mask) of one sample; refuses a mask of another size."""
        from .inference import FrameInput

        name, image, mask = _sample_fields(sample)
        frame = FrameInput(image, self.channels, self.input_config)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != frame.hw:
            raise ValueError(f"sample {name}: image is {frame.hw} but mask is {mask.shape}")
        return name, frame, mask

    def score(self, name: str, prob_size, prob_native, mask: np.ndarray) -> None:
        """Probabilities (h, w) at the evaluation size (None with a region: not used) and
        (H, W) at the image's."""
        import torch

        from .inference import resize_mask

        threshold = self.input_config.threshold
        pred_native = (prob_native > threshold).cpu().numpy()
        if self.keep:
            self.result.predictions.append((name, pred_native, np.asarray(mask, bool)))
        if self.region is not None:  # only this part counts, as it is: both columns from it
            pred_native, mask = pred_native[self.region], mask[self.region]
            self.result.add(name, pred_native, mask, pred_native, mask)
        else:
            ref_size = resize_mask(torch.from_numpy(mask)[None, None], self.eval_size)[0, 0]
            self.result.add(
                name, (prob_size > threshold).cpu().numpy(), ref_size.numpy(), pred_native, mask
            )
        self.scored += 1
        if self.on_progress is not None:
            self.on_progress(self.scored, self.samples)


def _sample_fields(sample) -> tuple[str, np.ndarray, np.ndarray]:
    if hasattr(sample, "image") and hasattr(sample, "mask"):
        return str(getattr(sample, "name", "")), sample.image, sample.mask
    name, image, mask = sample
    return str(name), image, mask
