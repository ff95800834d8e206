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

import errno
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .config import InputConfig, ModelConfig
from .storage import NotWritableError, atomic_path

FORMAT = "napari-tmunet"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not a napari-tmunet checkpoint."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. a full disk); the previous file is intact.
    ``CheckpointSaveError(errno, message)``: its text is the message alone (OSError's
    would start with "[Errno 28]", which tells a user nothing)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


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

    @property
    def inference_mode(self) -> str:
        """The mode this model is meant to segment in: the one its training run scored
        with ("tile" for a model trained on native-resolution crops, else "resize")."""
        from .options import inference_mode

        return inference_mode(self.metadata)


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
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as err:
        raise _save_error(path, err) from None
    return path


def _save_error(path: Path, err: Exception) -> CheckpointSaveError:
    """One-line error for a failed save; a full disk is named as such (torch does not)."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
        free is not None and free < (64 << 20)
    )
    kept = " (an earlier file of that name is unchanged)" if path.exists() else ""
    if full:
        left = f"; {free / 2**20:.1f} MiB free" if free is not None else ""
        return CheckpointSaveError(
            errno.ENOSPC, f"no space left on device writing {path}{left}{kept}: free some space"
        )
    if isinstance(err, NotWritableError):  # a read-only folder, no permission, ...
        reason = f"{err.reason}; choose another folder"
        return CheckpointSaveError(err.errno, f"could not write checkpoint {path}{kept}: {reason}")
    first = (str(err).strip().splitlines() or [""])[0]
    return CheckpointSaveError(
        getattr(err, "errno", None) or errno.EIO,
        f"could not write checkpoint {path}{kept}: {type(err).__name__}: {first}",
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw payload of a checkpoint file, validated; raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): its copy or save did not complete."
        )
    _check_zip_records(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # a class or function the safe unpickler refused
            raise CheckpointError(
                f"refused to load {path}: it holds Python objects that a napari-tmunet "
                "checkpoint never contains and that could run code; nothing was executed. "
                "Use checkpoints made by napari-tmunet from a source you trust."
            ) from None
        raise _unreadable(path, err) from None
    except Exception as err:  # zip errors, truncation, not a torch file...
        raise _unreadable(path, err) from None
    _check_payload(path, payload)
    return payload


def _check_zip_records(path: Path) -> None:
    """Refuse a checkpoint whose zip records fail their CRC (torch.load does not check
    them: a flipped byte inside the weights would load as other weights, silently)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # not a zip: torch.load says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # any damage of the zip structure (bad headers, names...)
        raise _unreadable(path, err) from None
    if bad is not None:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is damaged (its record {bad!r} fails its "
            "checksum); copy it again or use another checkpoint."
        )


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    # PyTorch's own text advises reloading without weights_only: unsafe, so left out.
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    torch_advice = ("Weights only load failed", "Please file", "Check the documentation")
    lines = [line for line in lines if not line.startswith(torch_advice)]
    first = (lines or [""])[0].replace("WeightsUnpickler error: ", "")[:200]
    return CheckpointError(
        f"cannot read checkpoint {path}: it is truncated, damaged or not a checkpoint "
        f"({type(err).__name__}{': ' + first if first else ''}); copy it again or use "
        "another checkpoint."
    )


def _check_payload(path: Path, payload) -> None:
    """Refuse a payload whose layout is not ours, before anything is built from it."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a napari-tmunet checkpoint (no '{FORMAT}' format marker); "
            "checkpoints are made by napari-tmunet-train or the Fine-tune widget."
        )
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{path} has an invalid checkpoint format version {version!r} (expected a whole "
            "number): the file is damaged or was not written by napari-tmunet."
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, this napari-tmunet reads up to "
            f"{FORMAT_VERSION}: upgrade the package."
        )
    for key in ("model_config", "input_config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks '{key}': the file is incomplete.")
    kinds = {"model_config": dict, "input_config": dict, "state_dict": dict}
    kinds.update(metadata=dict, metrics=dict, training_state=(dict, type(None)))
    for key, kind in kinds.items():
        if key in payload and not isinstance(payload[key], kind):
            raise CheckpointError(
                f"checkpoint {path}: '{key}' is a {type(payload[key]).__name__}, not a mapping: "
                "the file is damaged or was not written by napari-tmunet."
            )
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad or not all(isinstance(k, str) for k in payload["state_dict"]):
        raise CheckpointError(
            f"checkpoint {path}: its weights hold entries that are not tensors "
            f"({', '.join(map(str, bad[:3]))}): the file is damaged."
        )


def _with_modality(path: str | os.PathLike, metadata: dict) -> dict:
    """``metadata`` with the ``modality`` the checkpoint ``path`` is for
    (:func:`registry.checkpoint_modality`: an old fine-tune that records none takes its
    lineage's), in memory only: the file stays as the user has it."""
    from .registry import checkpoint_modality

    modality = checkpoint_modality(path, metadata)
    return {**metadata, "modality": modality} if modality else metadata


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint, in eval mode, on ``device``."""
    from .model import build_model

    payload = read_checkpoint(path)
    try:
        model_config = ModelConfig.from_dict(payload["model_config"])
        input_config = InputConfig.from_dict(payload["input_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {err}") from None
    state = payload["state_dict"]
    nonfinite = [
        k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if nonfinite:
        raise CheckpointError(
            f"weights in {path} hold NaN or infinite values ({', '.join(nonfinite[:3])}"
            f"{', ...' if len(nonfinite) > 3 else ''}): the training diverged; use an earlier "
            "checkpoint (e.g. best.pt) or train again with a lower learning rate."
        )
    model = build_model(model_config)
    misfit = weights_misfit(model, state)
    if misfit:
        raise CheckpointError(
            f"weights in {path} do not fit its model config: {misfit}. "
            + _misfit_advice(payload.get("package_version"))
        )
    try:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except (RuntimeError, TypeError, ValueError) as err:  # what weights_misfit does not check
        text = " ".join(str(err).split())
        raise CheckpointError(f"weights in {path} do not fit its model config: {text}") from None
    model.to(device).eval()
    return Checkpoint(
        model=model,
        model_config=model_config,
        input_config=input_config,
        metadata=_with_modality(path, payload.get("metadata") or {}),
        metrics=payload.get("metrics") or {},
        training_state=payload.get("training_state"),
        path=Path(path),
    )


MISFITS_NAMED = 3  # weight names listed per kind of misfit; the rest are counted


def weights_misfit(model: nn.Module, state: dict) -> str:
    """Which weights of ``state`` do not fit ``model``, in words: those it lacks, those it
    does not have, those of another shape (a few names of each, the rest counted); ""
    when all fit."""
    own = model.state_dict()
    missing = [name for name in own if name not in state]
    unexpected = [name for name in state if name not in own]
    shaped = [
        f"{name} {tuple(state[name].shape)} (the model's: {tuple(own[name].shape)})"
        for name in own
        if name in state and tuple(state[name].shape) != tuple(own[name].shape)
    ]
    kinds = (
        ("missing from the file", missing),
        ("not in the model", unexpected),
        ("of another shape", shaped),
    )
    return "; ".join(
        f"{len(names)} {what}: {_first_names(names)}" for what, names in kinds if names
    )


def _misfit_advice(written: str | None) -> str:
    """What to do about weights that do not fit, by the napari-tmunet version that wrote
    them (``written``; None: not recorded)."""
    if written == __version__:  # this code wrote it: edited since, or made for another model
        return (
            f"It was written by this version of napari-tmunet ({written}), so it was changed "
            "since or holds another model's weights: train the model again."
        )
    by = f"napari-tmunet {written}" if written else "a napari-tmunet version it does not record"
    return (
        f"It was written by {by} (this is {__version__}): use the version that wrote it, or "
        "train the model again."
    )


def _first_names(names: list[str]) -> str:
    """The first :data:`MISFITS_NAMED` of ``names``, and how many more."""
    text = ", ".join(names[:MISFITS_NAMED])
    if len(names) > MISFITS_NAMED:
        text += f" and {len(names) - MISFITS_NAMED} more"
    return text
