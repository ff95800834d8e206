"""Segmentation models: TM-UNet and the classic U-Net, built from a ModelConfig."""

from __future__ import annotations

from ..settings import persist_kernel_cache

persist_kernel_cache()  # before the mLSTM's Triton kernels can be compiled (tmunet imports)

from torch import nn  # noqa: E402

from ..config import ModelConfig  # noqa: E402
from .tmunet import TMUNet  # noqa: E402
from .unet import UNet  # noqa: E402

__all__ = ["ModelConfig", "TMUNet", "UNet", "build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """The model that ``config.arch`` names, freshly initialised."""
    return {"tmunet": TMUNet, "unet": UNet}[config.arch](config)
