"""Validation scores of each period, computed where the model trains.

:class:`ResidentValidation` (resize mode, the paper's protocol) maps the validation images
once with the plugin's input path and keeps them, their masks at the model size and at
native size on the device; each period it predicts in batches and scores there
(``device_metrics``): Dice and IoU at the model size and Dice at native size, Hausdorff
distances at the model size. The numbers are those of
:func:`napari_tmunet.evaluation.evaluate` (tested) for images resized whole; an elongated
one (``tiling.resize_window``), which Segment and ``evaluate`` cut into windows, is
squeezed whole here, as resize-mode training squeezes its images. Tile mode (random-crop training,
sliding-window scoring) uses ``evaluate`` itself: its validation sets are few, large
images, whose sliding window is the cost anyway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..config import InputConfig
from ..device_metrics import hausdorff, overlap_scores
from ..evaluation import evaluate
from ..inference import FrameInput, foreground_probability, forward_logits, resize, resize_mask


class ResidentValidation:
    """Validation images on ``device``, scored each period (resize mode).

    Args:
        items: samples with ``image`` and ``mask``.
        channels, input_config: the model's input channels, size, normalisation and
            threshold.
        device: the training device.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        items: Sequence,
        channels: int,
        input_config: InputConfig,
        device: torch.device,
        batch_size: int = 16,
    ):
        self.size = tuple(input_config.size)
        self.threshold = input_config.threshold
        self.batch_size = batch_size
        frames = [FrameInput(i.image, channels, input_config) for i in items]
        self.inputs = torch.cat([f.resized(device) for f in frames])  # (N, C, h, w)
        native = [torch.from_numpy(np.asarray(i.mask, dtype=bool)).to(device) for i in items]
        self.refs = torch.cat([resize_mask(m[None, None], self.size)[:, 0] for m in native])
        self.by_shape: dict[tuple, list[int]] = defaultdict(list)  # native shape -> images
        for n, m in enumerate(native):
            self.by_shape[tuple(m.shape)].append(n)
        self.native = {
            shape: torch.stack([native[n] for n in ids]) for shape, ids in self.by_shape.items()
        }

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @torch.no_grad()
    def score(self, model: nn.Module, amp: bool) -> dict:
        """The period's ``val_*`` record entries (reads the GPU once per image for HD)."""
        net = getattr(model, "module", model)
        was_training = net.training
        net.eval()
        try:
            logits = torch.cat(
                [
                    forward_logits(net, self.inputs[s : s + self.batch_size], amp)
                    for s in range(0, len(self), self.batch_size)
                ]
            )  # (N, K, h, w)
        finally:
            net.train(was_training)
        pred = foreground_probability(logits) > self.threshold  # (N, h, w)
        dice, iou = overlap_scores(pred, self.refs)
        native_dice = torch.empty_like(dice)
        for shape, ids in self.by_shape.items():
            prob = foreground_probability(resize(logits[ids], shape))
            native_dice[ids] = overlap_scores(prob > self.threshold, self.native[shape])[0]
        hd = torch.tensor(
            [hausdorff(p, r) for p, r in zip(pred, self.refs, strict=True)], dtype=torch.float64
        )
        empty = int((~pred.flatten(1).any(1) & self.refs.flatten(1).any(1)).sum())
        return {
            "val_dice": float(dice.mean()),
            "val_iou": float(iou.mean()),
            "val_hd": float(hd[:, 0].mean()),
            "val_hd95": float(hd[:, 1].mean()),
            "val_dice_size": float(dice.mean()),
            "val_dice_native": float(native_dice.mean()),
            "val_empty": empty,
        }


def tile_validation_scores(
    model: nn.Module, items: Sequence, input_config: InputConfig, device, amp, batch_size, overlap
) -> dict:
    """The period's ``val_*`` entries in tile mode, scored at native resolution."""
    agg = evaluate(
        model,
        items,
        input_config,
        "tile",
        device=device,
        amp=amp,
        batch_size=batch_size,
        overlap=overlap,
    ).aggregate()
    return validation_record(agg)


def validation_record(agg: dict) -> dict[str, float]:
    """The ``val_*`` entries of a period's record from an evaluation's aggregate, scored at
    native resolution (``val_dice_size``: at the evaluation size)."""
    return {
        "val_dice": agg["native_dice_mean"],
        "val_iou": agg["native_iou_mean"],
        "val_hd": agg["native_hd_mean"],
        "val_hd95": agg["native_hd95_mean"],
        "val_dice_size": agg["dice_mean"],
        "val_dice_native": agg["native_dice_mean"],
        "val_empty": agg["native_empty_prediction"],
    }
