"""The multi-scale token-memory (MSTM) block of TM-UNet (Section 2.3, Fig. 2).

Default form, as the released code computes it (residual form, eq. 8):

    x <- x + sum_k (AvgPool_k(LN1 x) - LN1 x)          multi-scale pooling, k = 5, 9, 13
    x <- x + DWConv(xLSTM_rev(DWConv(xLSTM_fwd(LN2 x))))   two scans, DWConv after each

Tokens are the row-major scan of the (H, W) feature map; the second xLSTM layer reads
the flipped sequence (bottom-right to top-left). AvgPool_k runs over the token and
channel axes as in the released code (see ``MultiScalePooling``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mlstm import FusedBidirectionalXLSTMLayer, XLSTMLayer


class DWConvBNReLU(nn.Module):
    """3x3 depth-wise convolution + BatchNorm + ReLU on a token sequence."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        y = x.transpose(1, 2).reshape(B, C, *hw)  # (B, C, H, W)
        y = F.relu(self.bn(self.conv(y)))
        return y.flatten(2).transpose(1, 2)  # (B, N, C)


class MultiScalePooling(nn.Module):
    """PoolFormer-style multi-scale token mixing: sum_k (AvgPool_k(y) - y).

    ``axes="token_channel"`` (default) averages (B, N, C) tokens over k x k windows of the
    (N, C) plane of each sample, as the released code's ``AvgPool2d`` on the token tensor
    does: neighbouring scan positions and neighbouring channels. ``axes="spatial"``
    averages k x k windows of the 2-D feature map (the paper's text). Windows are clipped
    at the borders (the mean over the pixels inside), computed as two 1-D means, which
    gives the same mean as one k x k window at 2k instead of k^2 reads.
    """

    def __init__(self, pool_sizes: tuple[int, ...], axes: str = "token_channel"):
        super().__init__()
        self.axes = axes
        self.pool_sizes = tuple(pool_sizes)

    def forward(self, y: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C = y.shape
        if self.axes == "token_channel":
            return sum(_box_mean(y, k) - y for k in self.pool_sizes)  # over (N, C) per sample
        img = y.transpose(1, 2).reshape(B, C, *hw)  # (B, C, H, W)
        mixed = sum(_box_mean(img, k) - img for k in self.pool_sizes)
        return mixed.flatten(2).transpose(1, 2)  # (B, N, C)


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over k x k windows of the last two axes, clipped at the borders; same shape."""
    kwargs = {"stride": 1, "count_include_pad": False}
    x = F.avg_pool2d(x, (k, 1), padding=(k // 2, 0), **kwargs)
    return F.avg_pool2d(x, (1, k), padding=(0, k // 2), **kwargs)


class MultiScaleTokenMemory(nn.Module):
    """MSTM block on tokens (B, N, C) of an (H, W) map; see the module docstring.

    Args:
        dim: channels C.
        num_heads: mLSTM heads.
        use_xlstm, use_pooling, use_dwconv: Table 2 ablation switches.
        pooling: "token_channel" (token and channel axes) or "spatial" (2-D map) pooling.
        scan: "alternate" (two single-direction layers) or "fused" (eq. 5-6).
        dwconv_order: DWConv "after" each xLSTM layer (released) or "before" (eq. 7).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        use_xlstm: bool = True,
        use_pooling: bool = True,
        use_dwconv: bool = True,
        pooling: str = "token_channel",
        pool_sizes: tuple[int, ...] = (5, 9, 13),
        scan: str = "alternate",
        dwconv_order: str = "after",
        kernel: str = "auto",
        chunk_size: int = 64,
    ):
        super().__init__()
        self.pool = MultiScalePooling(pool_sizes, pooling) if use_pooling else None
        self.norm1 = nn.LayerNorm(dim) if use_pooling else None
        self.norm2 = nn.LayerNorm(dim)
        self.dwconv_order = dwconv_order
        if not use_xlstm:
            layers = []
        elif scan == "fused":
            layers = [FusedBidirectionalXLSTMLayer(dim, num_heads, kernel, chunk_size)]
        else:
            layers = [
                XLSTMLayer(dim, num_heads, reverse=False, kernel=kernel, chunk_size=chunk_size),
                XLSTMLayer(dim, num_heads, reverse=True, kernel=kernel, chunk_size=chunk_size),
            ]
        self.layers = nn.ModuleList(layers)
        n_dw = max(len(layers), 1) if use_dwconv else 0  # one DWConv per xLSTM layer
        self.dwconvs = nn.ModuleList(DWConvBNReLU(dim) for _ in range(n_dw))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) tokens of an (H, W) map -> (B, N, C)."""
        if self.pool is not None:
            x = x + self.pool(self.norm1(x), hw)
        if not self.layers and not self.dwconvs:
            return x
        h = self.norm2(x)
        for j in range(max(len(self.layers), len(self.dwconvs))):
            layer = self.layers[j] if j < len(self.layers) else None
            dw = self.dwconvs[j] if j < len(self.dwconvs) else None
            if dw is not None and self.dwconv_order == "before":
                h = dw(h, hw)
            if layer is not None:
                h = layer(h)
            if dw is not None and self.dwconv_order == "after":
                h = dw(h, hw)
        return x + h
