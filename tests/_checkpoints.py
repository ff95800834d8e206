"""Tiny untrained checkpoints for tests about messages and metadata, not about masks."""

from __future__ import annotations

from pathlib import Path


def tiny_checkpoint(path: Path, size: int = 64, metadata: dict | None = None) -> Path:
    """Save an untrained tiny ("t") model for ``size`` x ``size`` inputs at ``path`` (its
    folders made; seeded, so the same weights each time) with ``metadata``; returns the
    path."""
    import torch

    from napari_tmunet.checkpoint import save_checkpoint
    from napari_tmunet.config import InputConfig, ModelConfig
    from napari_tmunet.model import build_model

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    inputs = InputConfig(size=(size, size), threshold=0.5)
    save_checkpoint(path, build_model(config), config, inputs, metadata=metadata)
    return path
