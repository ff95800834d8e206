"""TM-UNet: a U-Net with multi-scale token-memory (xLSTM) stages (Section 2.4, Fig. 2).

Encoder: three conv stages (3x3 conv, BN, 2x2 max-pool, ReLU) to C1..C3 at H/2..H/8,
then two token stages (stride-2 3x3 patch embedding + LayerNorm, MSTM block, LayerNorm)
to C4, C5 at H/16, H/32. Decoder: five stages of 3x3 conv + BN, bilinear x2 upsampling
and ReLU, each joined to the matching encoder output (added, or concatenated and fused
by a 1x1 conv); the two deepest decoder stages end in an MSTM block. The last stage
halves C1 and a 1x1 conv gives ``num_classes`` logits at the input resolution.

With ``presence_head`` (off in the paper) a linear layer on the globally pooled deepest
encoder features gives an image-level logit ``q`` ("a lesion is present") beside the
pixel logits ``z`` ("this pixel is lesion, given one is present"). The model's output is
then the logit of ``sigmoid(q) * sigmoid(z)``: one logit map, so thresholds, gates and
every caller work unchanged. Training needs the two apart (``forward(x, parts=True)``):
``z`` learns only on images with a lesion, ``q`` on all (``training.loss``).

Any H x W: the input is padded to a multiple of 32 and the logits cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import STRIDE, ModelConfig  # STRIDE: total down-sampling of the five stages
from .mstm import MultiScaleTokenMemory


class ConvStage(nn.Module):
    """Encoder stage 1-3: 3x3 conv -> BN -> 2x2 max-pool -> ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.max_pool2d(self.bn(self.conv(x)), 2))


class TokenStage(nn.Module):
    """Encoder stage 4-5: overlapping patch embedding (stride 2) + LN, MSTM, LN."""

    def __init__(self, cin: int, cout: int, mstm_kwargs: dict):
        super().__init__()
        self.embed = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.embed_norm = nn.LayerNorm(cout)
        self.mstm = MultiScaleTokenMemory(cout, **mstm_kwargs)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)  # (B, C, H, W)
        B, C, H, W = x.shape
        t = self.embed_norm(x.flatten(2).transpose(1, 2))  # (B, N, C)
        t = self.norm(self.mstm(t, (H, W)))
        return t.transpose(1, 2).reshape(B, C, H, W)


class UpStage(nn.Module):
    """Decoder stage: 3x3 conv (+ BN) -> bilinear x2 -> ReLU, then join the skip."""

    def __init__(self, cin: int, cout: int, skip: str | None, batchnorm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        self.skip = skip
        # concatenation (paper text) doubles the channels; a 1x1 conv fuses them back
        self.fuse = nn.Conv2d(2 * cout, cout, 1) if skip == "concat" else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(self.bn(self.conv(x)), scale_factor=2, mode="bilinear")
        x = F.relu(x)
        if skip is None:
            return x
        if self.fuse is not None:
            return self.fuse(torch.cat([x, skip], dim=1))
        return x + skip


class TokenMixer(nn.Module):
    """MSTM block + LN applied to a (B, C, H, W) map (the two deepest decoder stages)."""

    def __init__(self, dim: int, mstm_kwargs: dict):
        super().__init__()
        self.mstm = MultiScaleTokenMemory(dim, **mstm_kwargs)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        t = self.norm(self.mstm(t, (H, W)))
        return t.transpose(1, 2).reshape(B, C, H, W)


class TMUNet(nn.Module):
    """TM-UNet; build it from a :class:`~napari_tmunet.config.ModelConfig`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c1, c2, c3, c4, c5 = config.channels
        mstm = dict(
            num_heads=config.num_heads,
            use_xlstm=config.use_xlstm,
            use_pooling=config.use_pooling,
            use_dwconv=config.use_dwconv,
            pooling=config.pooling,
            pool_sizes=config.pool_sizes,
            scan=config.scan,
            dwconv_order=config.dwconv_order,
            kernel=config.mlstm_kernel,
            chunk_size=config.chunk_size,
        )
        self.enc1 = ConvStage(config.in_channels, c1)
        self.enc2 = ConvStage(c1, c2)
        self.enc3 = ConvStage(c2, c3)
        self.enc4 = TokenStage(c3, c4, mstm)
        self.enc5 = TokenStage(c4, c5, mstm)
        skip = config.skip
        self.dec5 = UpStage(c5, c4, skip)
        self.mix4 = TokenMixer(c4, mstm)
        self.dec4 = UpStage(c4, c3, skip)
        self.mix3 = TokenMixer(c3, mstm)
        self.dec3 = UpStage(c3, c2, skip)
        self.dec2 = UpStage(c2, c1, skip)
        self.dec1 = UpStage(c1, c1 // 2, None, batchnorm=False)
        self.head = nn.Conv2d(c1 // 2, config.num_classes, 1)
        self.presence = nn.Linear(c5, 1) if config.presence_head else None

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C0, H, W), H and W multiples of 32 -> decoder features (B, C1/2, H, W) and
        the deepest encoder features (B, C5, H/32, W/32)."""
        t1 = self.enc1(x)  # (B, C1, H/2)
        t2 = self.enc2(t1)  # (B, C2, H/4)
        t3 = self.enc3(t2)  # (B, C3, H/8)
        t4 = self.enc4(t3)  # (B, C4, H/16)
        t5 = self.enc5(t4)  # (B, C5, H/32)
        y = self.mix4(self.dec5(t5, t4))  # (B, C4, H/16)
        y = self.mix3(self.dec4(y, t3))  # (B, C3, H/8)
        y = self.dec3(y, t2)  # (B, C2, H/4)
        y = self.dec2(y, t1)  # (B, C1, H/2)
        return self.dec1(y), t5  # (B, C1/2, H), (B, C5, H/32)

    def forward(self, x: torch.Tensor, parts: bool = False):
        """(B, C0, H, W) float image -> (B, num_classes, H, W) logits, any H and W.

        With a presence head the logits are those of ``sigmoid(q) * sigmoid(z)``;
        ``parts=True`` returns ``(z, q)`` instead, q shaped (B, 1) (None without a head).
        """
        padded, (H, W) = pad_to_stride(x, self.config.in_channels)
        features, deepest = self._features(padded)
        z = self.head(features)[..., :H, :W]
        q = None if self.presence is None else self.presence(deepest.mean((2, 3)))  # (B, 1)
        if parts:
            return z, q
        return z if q is None else present_and_inside(z, q)


def present_and_inside(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Logit of ``sigmoid(q) * sigmoid(z)``, (B, 1, H, W) from z (B, 1, H, W), q (B, 1).

    In float32 and in log space: ``log p = logsigmoid(q) + logsigmoid(z)``, and the logit
    is ``log p - log(1 - p)``. ``log p`` is held just below 0 so that p = 1 stays finite
    (a logit of about 16; any threshold below 1 - 1e-7 reads it as foreground).
    """
    log_p = F.logsigmoid(q.float())[:, :, None, None] + F.logsigmoid(z.float())
    log_p = log_p.clamp(max=-1e-7)
    return log_p - torch.log(-torch.expm1(log_p))


def check_input(x: torch.Tensor, in_channels: int) -> None:
    """Raise a ValueError that says what was expected for a malformed model input."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (B, {in_channels}, H, W), got {type(x)}")
    if x.ndim != 4:
        hint = " (a time or z axis? segment frame by frame)" if x.ndim == 5 else ""
        raise ValueError(
            f"expected a 4-D input (B, {in_channels}, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channel(s), got {x.shape[1]} (shape "
            f"{tuple(x.shape)}); replicate grey images or drop alpha first"
        )
    if x.numel() == 0:
        raise ValueError(f"input has zero size: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(
            f"expected a floating-point input, got {x.dtype}; normalise images first "
            "(napari_tmunet.data.preprocess)"
        )


def pad_to_stride(x: torch.Tensor, in_channels: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Check (B, C, H, W) and pad it to multiples of 32 by reflection; also (H, W)."""
    check_input(x, in_channels)
    H, W = x.shape[-2:]
    ph, pw = (-H) % STRIDE, (-W) % STRIDE
    if ph or pw:
        mode = "reflect" if ph < H and pw < W else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (H, W)


def pad_and_crop(x: torch.Tensor, in_channels: int, fn) -> torch.Tensor:
    """Pad (B, C, H, W) to multiples of 32 by reflection, apply ``fn``, crop back."""
    padded, (H, W) = pad_to_stride(x, in_channels)
    return fn(padded)[..., :H, :W]
