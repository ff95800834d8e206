"""The training loss of the paper (eq. 9): ``2 * CE + 1 * Dice``, an optional
image-level presence term, the loss of a model with a presence head, and the loss of
self-supervised pre-training (restoring masked-out patches)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..options import DICE_OVER

PATCH = 32  # pre-training: the side of a masked-out square, the model's total stride
MASKED_SHARE = 0.5  # pre-training: the expected share of an image that is masked out
PRESENCE_SHARE = 1024  # presence logit: the mean of the top 1/1024 of an image's logits
EDGE_WINDOW = 31  # edge weights: the side of the window whose mean finds a mask's edges


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ce_weight: float = 2.0,
    dice_weight: float = 1.0,
    smooth: float = 1e-5,
    reduction: str = "mean",
    dice_over: str = "image",
    sum_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None,
    presence_weight: float = 0.0,
    edge_weight: float = 0.0,
) -> torch.Tensor:
    """``ce_weight * CE + dice_weight * (1 - soft Dice)``, the paper's eq. 9.

    One class: BCE-with-logits and the Dice of ``sigmoid(logits)``. N classes: softmax
    cross-entropy and the soft Dice averaged over all N classes (background included).
    Both terms are computed per sample (CE: mean over pixels; Dice: sums over pixels,
    ``(2 * inter + smooth) / (|p| + |t| + smooth)``) and then reduced over the batch, so
    the batch loss is the mean of the per-sample losses (needed for exact DDP sharding).
    Computed in float32 whatever the logits' dtype.

    ``dice_over="batch"``: one soft Dice over the whole batch (the sums run over its
    samples too, as nnU-Net's batch Dice), given to each sample. On an image with an
    empty mask the per-image Dice is ~1 whatever the prediction (its gradient is about
    smooth / |p|^2), so only CE pushes a false region down there; in the batch's Dice
    that region enlarges the denominator like a false region on any other image.
    ``sum_ranks`` sums the batch's (3[, N]) sums over DDP ranks (differentiably), so a
    sharded batch has the Dice of the global batch.

    ``presence_weight`` adds that times ``presence_loss`` (one class only).

    ``edge_weight`` K (one class only) weighs each pixel by ``edge_weights``, 1 far from
    the mask's edges and up to 1 + K beside them, in both terms: the CE is the weighted
    mean, the Dice's sums are weighted sums (as PraNet's structure loss weighs its BCE and
    IoU). K = 0 is the paper's loss.

    Args:
        logits: (B, N, H, W).
        target: binary (B, 1, H, W) / (B, H, W) mask for N = 1; class indices
            (B, H, W) or (B, 1, H, W) for N >= 2.
        reduction: "mean", "sum" or "none" ((B,) per-sample losses).
        dice_over: "image" (the paper's) or "batch".
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, N, H, W), got shape {tuple(logits.shape)}")
    logits = logits.float()
    B, N, H, W = logits.shape
    if N == 1:
        t = target.reshape(B, 1, H, W).float()
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(1)
        p = torch.sigmoid(logits).flatten(1)  # (B, HW)
        if edge_weight:  # weighted mean and sums; the paper's loss needs no weights
            w = edge_weights(t, edge_weight).flatten(1)  # (B, HW)
            ce, p, wt = (w * ce).sum(1) / w.sum(1), w * p, w * t.flatten(1)
        else:
            ce, wt = ce.mean(1), t.flatten(1)  # (B,), (B, HW)
        t = t.flatten(1)
        sums = torch.stack([(p * t).sum(1), p.sum(1), wt.sum(1)], 1)  # (B, 3)
    else:
        if edge_weight:
            raise ValueError(f"edge_weight needs one output class, got {N}")
        t = target.reshape(B, H, W).long()
        ce = F.cross_entropy(logits, t, reduction="none").flatten(1).mean(1)  # (B,)
        p = torch.softmax(logits, dim=1).flatten(2)  # (B, N, HW)
        onehot = F.one_hot(t, N).movedim(-1, 1).flatten(2).float()  # (B, N, HW)
        sums = torch.stack([(p * onehot).sum(2), p.sum(2), onehot.sum(2)], 1)  # (B, 3, N)
    dice = _dice_loss(sums, smooth, dice_over, sum_ranks)  # (B,)
    per_sample = ce_weight * ce + dice_weight * dice
    if presence_weight:
        if N != 1:
            raise ValueError(f"presence_weight needs one output class, got {N}")
        per_sample = per_sample + presence_weight * presence_loss(logits, t)
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction={reduction!r}: expected 'mean', 'sum' or 'none'")


def edge_weights(target: torch.Tensor, k: float) -> torch.Tensor:
    """(B, 1, H, W) pixel weights ``1 + k * |mean of the EDGE_WINDOW-square around - t|``.

    The local mean differs from the pixel's own value only near the mask's edges (by ~0.5
    on a straight edge, up to ~1 at a sharp corner or a thin part), so the weights rise
    towards the edges on both sides and stay 1 inside the mask and in the background.
    Why: a boundary pixel is where a model trained from scratch is least sure, and a
    lesion's outline is what the Dice counts.

    Args:
        target: (B, 1, H, W) binary mask, float.
    """
    local = F.avg_pool2d(
        target, EDGE_WINDOW, stride=1, padding=EDGE_WINDOW // 2, count_include_pad=False
    )  # (B, 1, H, W)
    return 1 + k * (local - target).abs()


def presence_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) BCE between each image's presence logit and whether its mask has foreground.

    The presence logit is the mean of the image's top ``HW // PRESENCE_SHARE`` pixel
    logits (at 512 x 512 its 256 most confident pixels). Why: the pixel-mean CE charges a
    small confident false region on a lesion-free image by its area (1% of the image: 1%
    of the cost), this term as a whole wrong image; on an image with foreground it asks
    that many pixels to be confident.

    Args:
        logits: (B, 1, H, W), any float dtype.
        target: (B, ...) binary mask.
    """
    B = logits.shape[0]
    flat = logits.float().reshape(B, -1)  # (B, HW)
    k = max(1, flat.shape[1] // PRESENCE_SHARE)
    score = flat.topk(k, dim=1).values.mean(1)  # (B,)
    present = (target.reshape(B, -1) > 0).any(1).float()  # (B,)
    return F.binary_cross_entropy_with_logits(score, present, reduction="none")


def presence_head_loss(
    z: torch.Tensor,
    q: torch.Tensor,
    target: torch.Tensor,
    ce_weight: float = 2.0,
    dice_weight: float = 1.0,
    presence_weight: float = 1.0,
) -> torch.Tensor:
    """(B,) per-sample loss of a model with a presence head (``model.tmunet``).

    The mask loss (``segmentation_loss``, per-image Dice) on the pixel logits ``z`` of
    images whose mask has foreground only, since ``z`` means "this pixel, given a lesion";
    plus ``presence_weight`` x the BCE of the image logit ``q`` against whether the mask
    has foreground, on every image. A lesion-free image thus trains only ``q``.

    Args:
        z: (B, 1, H, W) pixel logits; q: (B, 1) image logits; target: (B, ...) binary mask.
    """
    B = z.shape[0]
    present = (target.reshape(B, -1) > 0).any(1).float()  # (B,)
    mask = segmentation_loss(z, target, ce_weight, dice_weight, reduction="none")  # (B,)
    head = F.binary_cross_entropy_with_logits(q.float().reshape(B), present, reduction="none")
    return present * mask + presence_weight * head


def _dice_loss(sums: torch.Tensor, smooth: float, over: str, sum_ranks=None) -> torch.Tensor:
    """(B,) ``1 - soft Dice`` from per-sample sums (B, 3[, N]) of p*t, p and t; per image,
    or (``over="batch"``) of the summed batch, the same value for each sample; classes
    (N) averaged."""
    if over == "batch":
        total = sums.sum(0, keepdim=True)  # (1, 3[, N])
        sums = (sum_ranks(total) if sum_ranks else total).expand_as(sums)
    elif over not in DICE_OVER:
        raise ValueError(f"dice_over={over!r}: expected one of {DICE_OVER}")
    inter, p, t = sums.unbind(1)  # (B[, N]) each
    dice = 1 - (2 * inter + smooth) / (p + t + smooth)
    return dice if dice.ndim == 1 else dice.mean(1)


def patch_mask(shape: torch.Size, device: torch.device, generator=None) -> torch.Tensor:
    """Random (B, 1, H, W) mask of 1s over whole ``PATCH`` x ``PATCH`` squares, each
    square out with probability ``MASKED_SHARE`` (for ``inpainting_loss``)."""
    B, _, H, W = shape
    grid = (-(-H // PATCH), -(-W // PATCH))
    out = torch.rand((B, 1, *grid), device=device, generator=generator) < MASKED_SHARE
    out = out.float().repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)
    return out[:, :, :H, :W]  # (B, 1, H, W)


def inpainting_loss(model, x: torch.Tensor, mask: torch.Tensor, amp: bool) -> torch.Tensor:
    """Per-sample (B,) mean squared error over the masked-out pixels of ``x``.

    The model sees ``x`` with the squares of ``mask`` set to 0 (the normalised mean) and
    outputs one value per input channel. Only the hidden pixels count: the decoder's
    skips would copy the visible ones, so restoring the hidden ones from their context
    is what teaches the encoder (as in masked-image pre-training of CNNs).
    """
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        restored = model(x * (1 - mask))  # (B, C, H, W)
    squared = (restored.float() - x.float()) ** 2 * mask
    hidden = mask.flatten(1).sum(1) * x.shape[1]  # (B,)
    return squared.flatten(1).sum(1) / hidden.clamp_min(1)
