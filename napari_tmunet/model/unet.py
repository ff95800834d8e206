"""The classic U-Net of Ronneberger et al. (2015) with BatchNorm, for Table 1's U-Net row.

Four 2x2 max-pool steps, two 3x3 conv + BN + ReLU per level, 2x2 transposed-conv
up-sampling and concatenated skips; padded convolutions so the output matches the input.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .tmunet import pad_and_crop


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with widths ``config.channels`` (64, 128, 256, 512, 1024 by default)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        self.down = nn.ModuleList(
            [double_conv(config.in_channels, ch[0])]
            + [double_conv(ch[i], ch[i + 1]) for i in range(len(ch) - 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(len(ch) - 1))
        )
        self.up_conv = nn.ModuleList(
            double_conv(2 * ch[i], ch[i]) for i in reversed(range(len(ch) - 1))
        )
        self.head = nn.Conv2d(ch[0], config.num_classes, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for j, block in enumerate(self.down):
            x = block(x if j == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, conv in zip(self.up, self.up_conv, strict=True):
            x = conv(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C0, H, W) -> (B, num_classes, H, W) logits, any H and W."""
        return pad_and_crop(x, self.config.in_channels, self._forward)
