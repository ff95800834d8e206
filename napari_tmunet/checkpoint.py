"""One-file checkpoints: config as plain dicts, weights, input mapping, metadata, metrics.

Files load with ``torch.load(..., weights_only=True)``, so a checkpoint from a stranger
cannot run code. Writes are atomic (temporary file, then rename): a crash mid-save
never leaves a half-written file in place of a good one.

Layout (format version 1)::

    {"format": "napari-tmunet", "format_version": 1,
     "model_config": {...}, "input_config": {...}, "state_dict": {name: tensor},
     "weights_dtype": "float32" | "float16", "metadata": {...}, "metrics": {...},
     "training_state": {...} | absent}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .config import InputConfig, ModelConfig
from .storage import atomic_path

FORMAT = "napari-tmunet"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not a napari-tmunet checkpoint."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model plus everything saved beside it."""

    model: nn.Module
    model_config: ModelConfig
    input_config: InputConfig
    metadata: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training_state: dict | None = None
    path: Path | None = None


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    model_config: ModelConfig,
    input_config: InputConfig,
    metadata: dict | None = None,
    metrics: dict | None = None,
    training_state: dict | None = None,
    half: bool = False,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        half: store floating-point weights as float16 (shipped models: half the size).
        training_state: optimiser/scheduler/RNG state for exact resume (plain types and
            tensors only).
    """
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.half() if half and v.is_floating_point() else v
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model_config": model_config.to_dict(),
        "input_config": input_config.to_dict(),
        "state_dict": state,
        "weights_dtype": "float16" if half else "float32",
        "metadata": dict(metadata or {}),
        "metrics": dict(metrics or {}),
    }
    if training_state is not None:
        payload["training_state"] = training_state
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw payload of a checkpoint file, validated; raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors, refused globals, truncation...
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]} "
            "(is it a napari-tmunet checkpoint, completely copied?)"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a napari-tmunet checkpoint (no '{FORMAT}' format marker); "
            "checkpoints are made by napari-tmunet-train or the Fine-tune widget."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, this napari-tmunet reads up to "
            f"{FORMAT_VERSION}: upgrade the package."
        )
    for key in ("model_config", "input_config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks '{key}': the file is incomplete.")
    return payload


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint, in eval mode, on ``device``."""
    from .model import build_model

    payload = read_checkpoint(path)
    try:
        model_config = ModelConfig.from_dict(payload["model_config"])
        input_config = InputConfig.from_dict(payload["input_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an incompatible config: {err}") from err
    model = build_model(model_config)
    try:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        )
    except RuntimeError as err:
        raise CheckpointError(
            f"weights in {path} do not fit its model config: {str(err).splitlines()[0]}"
        ) from err
    model.to(device).eval()
    return Checkpoint(
        model=model,
        model_config=model_config,
        input_config=input_config,
        metadata=payload.get("metadata", {}),
        metrics=payload.get("metrics", {}),
        training_state=payload.get("training_state"),
        path=Path(path),
    )
