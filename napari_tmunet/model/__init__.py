"""Segmentation models: TM-UNet and the classic U-Net, built from a ModelConfig."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .tmunet import TMUNet
from .unet import UNet

__all__ = ["ModelConfig", "TMUNet", "UNet", "build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """The model that ``config.arch`` names, freshly initialised."""
    return {"tmunet": TMUNet, "unet": UNet}[config.arch](config)
