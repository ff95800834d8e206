"""The choices that several parts of napari-tmunet share, each written down once.

Devices, inference/training modes and modality names: the widgets, the CLIs, the
trainer and the checkpoints all take their values from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a device is resolved, not at plugin load
    import torch

DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")

# "resize": the whole image resized to the model's input size (the paper);
# "tile": overlapping tiles at native resolution, blended (training: random crops).
MODES: tuple[str, ...] = ("resize", "tile")
# Older names still read from run folders, checkpoints, plan files and the command line.
MODE_ALIASES: dict[str, str] = {"crop": "tile"}

MODALITIES: tuple[str, ...] = ("colonoscopy", "nuclei", "ultrasound")

# Training: the soft Dice of each image (the paper) or of the whole batch.
DICE_OVER: tuple[str, ...] = ("image", "batch")

# Training: self-supervised pre-training tasks ("" = segmentation; training.loss).
PRETEXTS: tuple[str, ...] = ("", "inpaint")

# Inference precision on CUDA ("bf16": autocast); the CPU always runs fp32.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


class DeviceError(RuntimeError):
    """A device the user chose that this machine does not have (CUDA without a GPU): its
    message is a sentence for the user, so the docks show it without the class name or a
    traceback (``errors.is_expected``) and the command-line tools print it as one line
    (exit 2). A RuntimeError, as torch's own device errors are."""


def device_problem(device: str) -> str:
    """Why ``device`` (a name, e.g. "cuda") cannot be used on this machine, in words
    ("" when it can): "cuda" without CUDA. The words :func:`resolve_device` raises."""
    name = str(device).lower()
    if not name.startswith("cuda"):
        return ""
    import torch

    if torch.cuda.is_available():
        return ""
    return (
        f"device={device!r} but CUDA is not available (no GPU, or a CPU-only torch build); "
        "choose 'auto' or 'cpu'."
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is a
    :class:`DeviceError`."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        problem = device_problem(device)
        if problem:
            raise DeviceError(problem)
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device={device!r}: expected one of {DEVICES}.")


def inference_mode(metadata) -> str:
    """The mode a checkpoint with ``metadata`` is meant to segment in: the one its training
    run scored with ("tile" for a model trained on native-resolution crops, else "resize")."""
    train = metadata.get("train_config") if isinstance(metadata, dict) else None
    mode = str(train.get("mode", "resize")) if isinstance(train, dict) else "resize"
    mode = MODE_ALIASES.get(mode, mode)
    return mode if mode in MODES else "resize"


def canonical_mode(mode: str) -> str:
    """``mode`` with an old name replaced ("crop" -> "tile"); an unknown mode is an error."""
    mode = MODE_ALIASES.get(str(mode), str(mode))
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}.")
    return mode
