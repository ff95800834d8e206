"""Dice, IoU and Hausdorff distances on torch tensors, on the GPU or the CPU.

The definitions are ``napari_tmunet.metrics``' (its module docstring), computed where
the masks already are, so validation during training never copies masks to the host:
Dice and IoU without smoothing (both empty -> 1), Hausdorff distances between the mask
boundaries (``mask ^ erosion``, cross-shaped, pixels outside the image counting as
background) as the percentile of boundary-to-nearest-boundary distances, 0 when both
masks are empty and the image diagonal when one is. Tests compare the two modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def overlap_scores(pred: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Dice and IoU of (n, H, W) bool masks: two (n,) float64 tensors."""
    pred, ref = pred.flatten(1), ref.flatten(1)
    inter = (pred & ref).sum(1).double()
    p, r = pred.sum(1).double(), ref.sum(1).double()
    union = p + r - inter
    dice = torch.where(p + r > 0, 2 * inter / (p + r).clamp_min(1), torch.ones_like(inter))
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
    return dice, iou


def boundary(mask: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> pixels of the mask with a 4-neighbour outside it (or the image)."""
    m = F.pad(mask.float(), (1, 1, 1, 1))  # outside = background
    core = m[..., 1:-1, 1:-1]
    eroded = core * m[..., :-2, 1:-1] * m[..., 2:, 1:-1] * m[..., 1:-1, :-2] * m[..., 1:-1, 2:]
    return mask & (eroded == 0)


def hausdorff(
    pred: torch.Tensor, ref: torch.Tensor, percentiles: tuple[float, ...] = (100.0, 95.0)
) -> list[float]:
    """Hausdorff distances of two (H, W) bool masks at ``percentiles``, in pixels."""
    H, W = pred.shape
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred or has_ref):
        return [0.0] * len(percentiles)
    if not (has_pred and has_ref):
        return [math.hypot(H, W)] * len(percentiles)
    a = boundary(pred).nonzero().float()  # (p, 2) y, x
    b = boundary(ref).nonzero().float()  # (q, 2)
    to_ref, to_pred = _nearest(a, b), _nearest(b, a)
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=torch.float64, device=a.device)
    d = torch.maximum(torch.quantile(to_ref, q), torch.quantile(to_pred, q))
    return d.tolist()


def _nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each point of ``a`` (p, 2) to the nearest of ``b`` (q, 2), float64."""
    rows = max(1, 2**24 // b.shape[0])  # bound the (rows, q) block in memory
    out = []
    for start in range(0, a.shape[0], rows):
        diff = a[start : start + rows, None, :] - b[None, :, :]  # (rows, q, 2), exact integers
        out.append(diff.square().sum(-1).amin(1))
    return torch.cat(out).double().sqrt()
