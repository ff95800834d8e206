"""The training loss of the paper (eq. 9): ``2 * CE + 1 * Dice``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ce_weight: float = 2.0,
    dice_weight: float = 1.0,
    smooth: float = 1e-5,
    reduction: str = "mean",
) -> torch.Tensor:
    """``ce_weight * CE + dice_weight * (1 - soft Dice)``, the paper's eq. 9.

    One class: BCE-with-logits and the Dice of ``sigmoid(logits)``. N classes: softmax
    cross-entropy and the soft Dice averaged over all N classes (background included).
    Both terms are computed per sample (CE: mean over pixels; Dice: sums over pixels,
    ``(2 * inter + smooth) / (|p| + |t| + smooth)``) and then reduced over the batch, so
    the batch loss is the mean of the per-sample losses (needed for exact DDP sharding).
    Computed in float32 whatever the logits' dtype.

    Args:
        logits: (B, N, H, W).
        target: binary (B, 1, H, W) / (B, H, W) mask for N = 1; class indices
            (B, H, W) or (B, 1, H, W) for N >= 2.
        reduction: "mean", "sum" or "none" ((B,) per-sample losses).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, N, H, W), got shape {tuple(logits.shape)}")
    logits = logits.float()
    B, N, H, W = logits.shape
    if N == 1:
        t = target.reshape(B, 1, H, W).float()
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(1).mean(1)
        p = torch.sigmoid(logits).flatten(1)  # (B, HW)
        t = t.flatten(1)
        inter = (p * t).sum(1)
        dice = 1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)  # (B,)
    else:
        t = target.reshape(B, H, W).long()
        ce = F.cross_entropy(logits, t, reduction="none").flatten(1).mean(1)  # (B,)
        p = torch.softmax(logits, dim=1).flatten(2)  # (B, N, HW)
        onehot = F.one_hot(t, N).movedim(-1, 1).flatten(2).float()  # (B, N, HW)
        inter = (p * onehot).sum(2)
        dice = (1 - (2 * inter + smooth) / (p.sum(2) + onehot.sum(2) + smooth)).mean(1)
    per_sample = ce_weight * ce + dice_weight * dice
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction={reduction!r}: expected 'mean', 'sum' or 'none'")
