"""Training core of napari-tmunet: one code path for the CLI and the napari fine-tune widget.

No Qt, no napari. ``fit(config, run_dir, callbacks, stop_event)`` trains a model from a
:class:`TrainConfig`; ``evaluate`` scores a model on a list of samples;
``measure_efficiency`` counts parameters, MACs, FLOPs and times the forward pass.

Protocol (paper, Section 3.1; ``shared/reference/README.md`` for the released code):
Adam (lr 1e-4), ExponentialLR (gamma 0.98 per epoch), batch 16, 200 epochs, loss
``2 * CE + 1 * Dice``, horizontal flips (p = 0.25 as the released code), images resized
to 512 x 512 and normalised with the checkpoint's mean/std, best checkpoint by
validation Dice, bf16 autocast on CUDA.

Run folder (only rank 0 writes)::

    config.json        TrainConfig as a plain dict (``TrainConfig.from_dict`` reads it)
    run_info.json      resolved model/input config, dataset summary, versions, world size
    split.json         {"train": [...], "valid": [...], "test": [...]} (released format)
    metrics.jsonl      one JSON line per period (epoch, or step block): step, epoch,
                       train_loss, lr, time, and val_* after an evaluation
    curves.png         training loss and validation Dice per period
    best.pt            best validation Dice so far (never replaced by a worse model)
    last.pt            every period, with the full training state for exact resume
    test_metrics.csv   per test image, at the evaluation size and at native resolution
    summary.json       test aggregate (mean, std, F1 from mean P/R, empty counts),
                       efficiency (params, MACs, FLOPs, FPS), best validation score
    train.log          the log of every session of this run

Schedule. In epoch mode (``steps == 0``) a period is one pass over the shuffled training
set in global batches of ``batch_size`` (a last partial batch is kept unless it is
smaller than the number of ranks). In step mode (``steps > 0``) samples are drawn from an
endless stream of shuffled passes and the run is cut into ``epochs`` periods of
``steps / epochs`` steps; the learning rate decays by ``gamma`` per period, so a step run
sees the same total decay as ``epochs`` epochs of the paper (``lr_decay_every`` sets the
period length explicitly). Evaluation, ``metrics.jsonl`` lines and ``last.pt`` follow the
periods (``eval_every`` counts periods).

Determinism and exact resume. Every random choice of the data pipeline (the epoch's
permutation, flips, rotations, crop positions) is drawn from a NumPy generator seeded by
``(seed, what, epoch or step)``, never from a global RNG state, so a batch depends only
on the seed and the step number. ``last.pt`` stores model, optimiser, scheduler, step,
period, best score and the torch/CUDA/NumPy/Python RNG states; ``resume`` continues at
the next step, also in the middle of an epoch after a stop. On CPU a resumed run is
bit-for-bit the run without interruption (tested); CUDA kernels may be
non-deterministic (atomics), so GPU runs agree only closely.

Distributed data parallel (``torchrun --nproc_per_node N ...``): detected from the
RANK / WORLD_SIZE environment; PyTorch's own ``DistributedDataParallel``, NCCL on CUDA,
gloo on CPU. ``batch_size`` is the GLOBAL batch: every rank draws the same global batch
and takes the samples ``rank::world_size`` of it (as ``DistributedSampler``), and each
rank's loss is the sum of its per-sample losses times ``world_size / global_batch``,
so the averaged DDP gradient is exactly the gradient of the global batch mean.

BatchNorm decision: under DDP every BatchNorm is synchronised across ranks
(``sync_bn=True``, the default): ``torch.nn.SyncBatchNorm`` on GPUs; on CPU, where
PyTorch's SyncBatchNorm refuses CPU tensors (its kernels are CUDA-only),
``AllReduceBatchNorm2d``, a BatchNorm2d that sums its batch statistics over the ranks
with ``torch.distributed`` collectives (the same arithmetic). So N ranks at batch B/N
compute the statistics, gradients and running averages of one process at batch B, and a
result does not depend on how many GPUs trained it. The cost is one small all-gather
per BatchNorm layer (about 15 in TM-UNet), negligible next to the mLSTM. Measured:
gloo/CPU, TM-UNet t, 3 Adam steps, 2 ranks x 8 vs 1 process x 16: the weight change
differs by 2.0% (norm), the same as one process run with 1 vs 2 threads (2.2%: Adam's
first steps turn float rounding of near-zero gradients into lr-sized moves), while
plain per-rank BatchNorm (``sync_bn=False``) differs by ~100%. 2 H100s (NCCL, bf16) vs
1 H100, TM-UNet b, 24 steps: weights within 0.5% of their norm, epoch losses equal to
3-4 digits. Checkpoints always hold
plain BatchNorm2d keys, so inference needs no distributed setup.

Data pipeline: the dataset is decoded once (a ``NativeCache`` file or a folder, both by
``napari_tmunet.data.decode_folder``), kept as uint8 (or float16 for other depths) at
native resolution, on the GPU when it fits; batches are cropped / resized with
``napari_tmunet.inference.resize`` (bilinear, antialiased when shrinking; the released
code used cv2's linear resize, which does not antialias), flipped, rotated and
normalised (``preprocess.normalize``) there with torch ops. Masks are resized the same
way and thresholded at 0.5.

Evaluation predicts exactly as the napari plugin does (``napari_tmunet.inference``: the
same input mapping, resizing, sliding window with Gaussian blending and foreground
probability), so a validation score is the score of what the plugin would output.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import platform
import random
import shutil
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from napari_tmunet import __version__
from napari_tmunet.storage import atomic_path, jsonable, write_json
from napari_tmunet.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from napari_tmunet.config import ARCHITECTURES, VARIANTS, InputConfig, ModelConfig
from napari_tmunet.data.datasets import (
    CacheItem,
    DatasetError,
    NativeCache,
    decode_folder,
    load_cache,
    load_split,
    make_split,
    resolve_split,
    save_split,
    split_from_lists,
)
from napari_tmunet.inference import (
    MAX_OVERLAP,
    FrameInput,
    foreground_probability,
    forward_logits,
    resize,
    resolve_device,
    run_to_completion,
    sliding_window,
)
from napari_tmunet.metrics import PER_IMAGE_KEYS, SegmentationMetrics
from napari_tmunet.model import build_model
from napari_tmunet.data.preprocess import normalize, to_unit_float

logger = logging.getLogger(__name__)

MODES = ("resize", "crop")
DEVICES = ("auto", "cuda", "cpu")
# Fields that may differ between a run and its resumption (they do not change results).
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "steps",
        "resume",
        "overwrite",
        "device",
        "num_workers",
        "progress",
        "eval_batch_size",
        "test",
        "efficiency",
        "data",
        "dataset_name",
    }
)


class RunDirError(RuntimeError):
    """A run folder that cannot be used as asked (not empty, nothing to resume, ...)."""


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` and in checkpoints.

    Attributes:
        data: dataset folder (``images/`` + ``masks/``) or a NativeCache ``.npz`` file.
        dataset_name: label in reports (default: the folder or file name).
        split_file: JSON split (``{"train", "valid", "test"}``); without "valid", one is
            carved from train. Empty: a random 7:1:2 split from ``split_seed``.
        split_seed: seed of the random split (and of a carved validation part).
        official_split: use ``train.txt`` / ``test.txt`` of the dataset folder (MoNuSeg's
            official 30/14), validation carved from train.
        split_ratios: train, valid, test fractions of a random split.
        skip_bad: leave unreadable or mismatched pairs out (with a summary).
        max_images: use only the first N pairs in natural name order (0 = all).
        arch: "tmunet" or "unet".
        variant: TM-UNet channel variant "t", "s" or "b" (Table 3).
        model: ModelConfig overrides, e.g. {"use_xlstm": False, "channels": [...]}.
        init_checkpoint: start from these weights (fine-tuning); model config and
            normalisation come from the checkpoint.
        in_channels: 1 or 3; 0 picks 1 when every image is grey, else 3.
        num_classes: 1 (sigmoid, BCE) or N >= 2 (softmax, CE; class 0 is background).
        size: (H, W) model input: the resize target ("resize") or the crop ("crop").
        mode: "resize" (paper: whole images resized to ``size``) or "crop" (random
            crops at native resolution, sliding-window evaluation).
        mean, std: normalisation after mapping to [0, 1]; empty = ImageNet statistics.
        epochs: epochs (epoch mode) or the number of periods of a step run.
        steps: optimiser steps of a step run; 0 = epoch mode.
        batch_size: GLOBAL batch size (split over DDP ranks).
        lr, gamma, weight_decay: Adam learning rate, ExponentialLR factor, L2 weight decay.
        adam_eps: Adam's epsilon (PyTorch default 1e-8).
        lr_decay_every: period length in steps (0: an epoch, or steps / epochs).
        grad_clip: clip the gradient norm to this (0 = off; the paper does not clip).
        ce_weight, dice_weight: lambda1, lambda2 of the loss.
        hflip, vflip: flip probabilities; rot90: random multiples of 90 degrees.
        amp: bf16 autocast on CUDA (ignored on CPU).
        sync_bn: synchronise BatchNorm statistics over DDP ranks (see module docstring).
        seed: seed of initialisation and of the data pipeline.
        device: "auto" (CUDA if available), "cuda" or "cpu".
        num_workers: threads that decode the dataset.
        eval_every: evaluate every N periods (the last period is always evaluated).
        eval_batch_size: images (resize) or windows (crop) per forward in evaluation.
        overlap: sliding-window overlap fraction in crop mode.
        test: evaluate the best checkpoint on the test split at the end.
        efficiency: measure params/MACs/FLOPs/FPS at the end.
        progress: tqdm progress bars on rank 0.
        resume: continue the run in ``run_dir`` from ``last.pt``.
        overwrite: start a new run in a non-empty ``run_dir``; the old files are moved
            to ``run_dir/previous-<time>/`` (nothing is deleted).
    """

    data: str = ""
    dataset_name: str = ""
    split_file: str = ""
    split_seed: int = 0
    official_split: bool = False
    split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    skip_bad: bool = False
    max_images: int = 0
    arch: str = "tmunet"
    variant: str = "b"
    model: dict = field(default_factory=dict)
    init_checkpoint: str = ""
    in_channels: int = 0
    num_classes: int = 1
    size: tuple[int, int] = (512, 512)
    mode: str = "resize"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    epochs: int = 200
    steps: int = 0
    batch_size: int = 16
    lr: float = 1e-4
    gamma: float = 0.98
    lr_decay_every: int = 0
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    grad_clip: float = 0.0
    ce_weight: float = 2.0
    dice_weight: float = 1.0
    hflip: float = 0.25
    vflip: float = 0.0
    rot90: bool = False
    amp: bool = True
    sync_bn: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 4
    eval_every: int = 1
    eval_batch_size: int = 8
    overlap: float = 0.25
    test: bool = True
    efficiency: bool = True
    progress: bool = True
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self):
        self.size = _pair(self.size, "size")
        self.split_ratios = tuple(float(r) for r in self.split_ratios)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.model = dict(self.model or {})
        self.data = str(self.data)
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode={self.mode!r}: expected one of {MODES}")
        if self.arch not in ARCHITECTURES:
            problems.append(f"arch={self.arch!r}: expected one of {ARCHITECTURES}")
        if self.arch == "tmunet" and self.variant not in VARIANTS:
            problems.append(f"variant={self.variant!r}: expected one of {sorted(VARIANTS)}")
        if self.device not in DEVICES:
            problems.append(f"device={self.device!r}: expected one of {DEVICES}")
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs}: expected >= 1")
        if self.steps < 0 or self.batch_size < 1:
            problems.append(
                f"steps={self.steps}, batch_size={self.batch_size}: expected >= 0, >= 1"
            )
        if self.lr <= 0 or not 0 < self.gamma <= 1:
            problems.append(f"lr={self.lr}, gamma={self.gamma}: expected lr > 0, 0 < gamma <= 1")
        for name in ("hflip", "vflip"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)}: expected a probability in [0, 1]")
        if not 0 <= self.overlap <= MAX_OVERLAP:
            problems.append(f"overlap={self.overlap}: expected 0 <= overlap <= {MAX_OVERLAP}")
        if self.in_channels not in (0, 1, 3):
            problems.append(f"in_channels={self.in_channels}: expected 0 (auto), 1 or 3")
        if len(self.mean) != len(self.std):
            problems.append(f"mean={self.mean}, std={self.std}: expected equal lengths")
        if self.eval_every < 1 or self.eval_batch_size < 1 or self.lr_decay_every < 0:
            problems.append("eval_every and eval_batch_size must be >= 1, lr_decay_every >= 0")
        if self.resume and self.overwrite:
            problems.append("resume and overwrite exclude each other: pick one")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain dict of builtins (lists, not tuples): JSON and ``weights_only`` safe."""
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from ``to_dict()``; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"training config has unknown keys {unknown}; known keys: {sorted(known)}"
            )
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a ``config.json``."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"training config {path} does not exist") from None

    def model_config(self, in_channels: int) -> ModelConfig:
        """The ModelConfig this training config asks for (ignoring ``init_checkpoint``)."""
        base = ModelConfig.unet() if self.arch == "unet" else ModelConfig.variant(self.variant)
        values = base.to_dict()
        values.update(self.model)
        values.update(arch=self.arch, in_channels=in_channels, num_classes=self.num_classes)
        return ModelConfig.from_dict(values)

    def input_config(self, in_channels: int) -> InputConfig:
        """The InputConfig (size and normalisation) for ``in_channels`` channels."""
        if self.mean:
            if len(self.mean) != in_channels:
                raise ValueError(
                    f"mean/std have {len(self.mean)} values but the model takes {in_channels} "
                    "channels; give one value per channel"
                )
            return InputConfig(size=self.size, mean=self.mean, std=self.std)
        return InputConfig.for_channels(in_channels, size=self.size)


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int | float):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 32:
        raise ValueError(f"{name}={value}: expected (H, W) or one number, each >= 32")
    return value


# ----------------------------------------------------------------------------- loss


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ce_weight: float = 2.0,
    dice_weight: float = 1.0,
    smooth: float = 1e-5,
    reduction: str = "mean",
) -> torch.Tensor:
    """``ce_weight * CE + dice_weight * (1 - soft Dice)``, the paper's eq. 9.

    One class: BCE-with-logits and the Dice of ``sigmoid(logits)``. N classes: softmax
    cross-entropy and the soft Dice averaged over all N classes (background included).
    Both terms are computed per sample (CE: mean over pixels; Dice: sums over pixels,
    ``(2 * inter + smooth) / (|p| + |t| + smooth)``) and then reduced over the batch, so
    the batch loss is the mean of the per-sample losses (needed for exact DDP sharding).
    Computed in float32 whatever the logits' dtype.

    Args:
        logits: (B, N, H, W).
        target: binary (B, 1, H, W) / (B, H, W) mask for N = 1; class indices
            (B, H, W) or (B, 1, H, W) for N >= 2.
        reduction: "mean", "sum" or "none" ((B,) per-sample losses).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, N, H, W), got shape {tuple(logits.shape)}")
    logits = logits.float()
    B, N, H, W = logits.shape
    if N == 1:
        t = target.reshape(B, 1, H, W).float()
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(1).mean(1)
        p = torch.sigmoid(logits).flatten(1)  # (B, HW)
        t = t.flatten(1)
        inter = (p * t).sum(1)
        dice = 1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)  # (B,)
    else:
        t = target.reshape(B, H, W).long()
        ce = F.cross_entropy(logits, t, reduction="none").flatten(1).mean(1)  # (B,)
        p = torch.softmax(logits, dim=1).flatten(2)  # (B, N, HW)
        onehot = F.one_hot(t, N).movedim(-1, 1).flatten(2).float()  # (B, N, HW)
        inter = (p * onehot).sum(2)
        dice = (1 - (2 * inter + smooth) / (p.sum(2) + onehot.sum(2) + smooth)).mean(1)
    per_sample = ce_weight * ce + dice_weight * dice
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction={reduction!r}: expected 'mean', 'sum' or 'none'")


# ------------------------------------------------------------------- tensor helpers


def resize_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a (B, 1, H, W) binary mask like an image (``inference.resize``), then ``> 0.5``."""
    size = tuple(int(s) for s in size)
    if tuple(mask.shape[-2:]) == size:
        return mask.bool()
    return resize(mask.float(), size) > 0.5


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, c, H, W) -> (B, channels, H, W): grey replicated, RGB averaged to grey."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1:
        return x.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot map {c} image channels to {channels} model channels")


def image_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W) or (H, W, C) image -> stored (C, H, W) tensor: uint8 as is, else float16 [0, 1].

    Alpha (C = 2 or 4) is dropped. Depths other than 8 bits are mapped to [0, 1] by
    ``preprocess.to_unit_float`` (robust percentiles), as inference does.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    if image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.dtype == np.uint8:
        array = np.ascontiguousarray(image.transpose(2, 0, 1))
    else:
        array = to_unit_float(image).transpose(2, 0, 1).astype(np.float16)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def unit_float(stored: torch.Tensor) -> torch.Tensor:
    """A stored image tensor (uint8 or float16 in [0, 1]) as float32 in [0, 1]."""
    if stored.dtype == torch.uint8:
        return stored.float() / 255.0
    return stored.float()


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


# ------------------------------------------------------------------------ datasets


def load_dataset(config: TrainConfig) -> NativeCache:
    """Decode the dataset that ``config.data`` names (folder or cache file)."""
    if not config.data:
        raise DatasetError(
            "no dataset given: pass a dataset folder (images/ + masks/) or a cache file "
            "(--data PATH or --preset NAME)"
        )
    path = Path(config.data).expanduser()
    if path.is_file():
        cache = load_cache(path)
        if config.max_images:
            cache = cache.subset(range(min(config.max_images, len(cache))))
        return cache
    if path.is_dir():
        return decode_folder(
            path, skip_bad=config.skip_bad, max_images=config.max_images, workers=config.num_workers
        )
    raise DatasetError(
        f"dataset {path} (absolute: {path.resolve()}) does not exist: pass a folder with "
        "images/ and masks/, or a cache file made by `napari-tmunet-train cache`"
    )


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def resolve_run_split(
    config: TrainConfig, cache: NativeCache, existing: Path | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """The train/valid/test split of a run, and notes on how it was made.

    Order: an existing run's ``split.json`` (resume), ``split_file``, the dataset's
    official lists (``official_split``), else a random split from ``split_seed`` in
    which identical images stay in one part.
    """
    names = list(cache.names)
    if existing is not None and existing.is_file():
        return load_split(existing, names, seed=config.split_seed)
    if config.split_file:
        return load_split(config.split_file, names, seed=config.split_seed)
    if config.official_split:
        root = Path(config.data)
        train_txt, test_txt = root / "train.txt", root / "test.txt"
        if not (train_txt.is_file() and test_txt.is_file()):
            raise DatasetError(
                f"official_split: {root} has no train.txt and test.txt; use a random split "
                "or give --split-file"
            )
        lists = split_from_lists(train_txt, test_txt)
        known = set(names)
        lists = {k: [n for n in v if n in known] for k, v in lists.items()}
        return resolve_split(lists, names, seed=config.split_seed, source=str(root))
    split = make_split(names, config.split_seed, config.split_ratios, groups=cache.groups)
    return split, [f"random split {config.split_ratios} with seed {config.split_seed}"]


# ----------------------------------------------------------------- device pipeline


class DeviceData:
    """Training images and masks at native resolution, stored on ``store_device``.

    Batches are made on ``device`` with torch ops: crop or resize, flips, rotations,
    channel mapping and normalisation.
    """

    def __init__(
        self,
        items: Sequence[CacheItem],
        channels: int,
        input_config: InputConfig,
        device: torch.device,
        store_device: torch.device | None = None,
    ):
        store_device = store_device or device
        self.device = device
        self.channels = channels
        self.images = [image_tensor(item.image, store_device) for item in items]
        self.masks = [
            torch.from_numpy(np.ascontiguousarray(item.mask, dtype=np.uint8))[None].to(store_device)
            for item in items
        ]  # (1, H, W)
        self.mean, self.std = input_config.mean, input_config.std

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def nbytes(items: Sequence[CacheItem]) -> int:
        """Bytes the stored tensors of ``items`` take."""
        return sum(item.image.size * (1 if item.image.dtype == np.uint8 else 2) for item in items)

    def batch(
        self,
        indices: Sequence[int],
        draws: np.ndarray,
        size: tuple[int, int],
        mode: str,
        hflip: float = 0.0,
        vflip: float = 0.0,
        rot90: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A normalised (n, C, h, w) image batch and its (n, 1, h, w) float mask batch.

        Args:
            indices: sample indices.
            draws: (n, 5) uniforms in [0, 1): hflip, vflip, rotation, crop y, crop x.
            size: (h, w) output size.
            mode: "resize" or "crop".
        """
        h, w = size
        images, masks = [], []
        if mode == "crop":
            for i, (uy, ux) in zip(indices, draws[:, 3:5], strict=True):
                img, msk = self.images[i], self.masks[i]
                H, W = img.shape[-2:]
                y0 = int(uy * (max(H - h, 0) + 1))
                x0 = int(ux * (max(W - w, 0) + 1))
                img = img[:, y0 : y0 + h, x0 : x0 + w].to(self.device, non_blocking=True)
                msk = msk[:, y0 : y0 + h, x0 : x0 + w].to(self.device, non_blocking=True)
                img = match_channels(unit_float(img)[None], self.channels)  # (1, C, <=h, <=w)
                img = normalize(img, self.mean, self.std)
                pad = (0, w - img.shape[-1], 0, h - img.shape[-2])
                images.append(F.pad(img, pad))  # zeros = the mean colour
                masks.append(F.pad(msk[None].float(), pad))
            x, y = torch.cat(images), torch.cat(masks)
        else:
            shapes = {tuple(self.images[i].shape) for i in indices}
            if len(shapes) == 1:  # one interpolation for the whole batch
                img = torch.stack([self.images[i] for i in indices]).to(self.device)
                msk = torch.stack([self.masks[i] for i in indices]).to(self.device)
                x = resize(match_channels(unit_float(img), self.channels), size)
                y = resize_mask(msk, size).float()
            else:
                for i in indices:
                    img = self.images[i][None].to(self.device, non_blocking=True)
                    msk = self.masks[i][None].to(self.device, non_blocking=True)
                    images.append(resize(match_channels(unit_float(img), self.channels), size))
                    masks.append(resize_mask(msk, size).float())
                x, y = torch.cat(images), torch.cat(masks)
            x = normalize(x, self.mean, self.std)
        return _augment(x, y, draws, hflip, vflip, rot90)


def _augment(x, y, draws: np.ndarray, hflip: float, vflip: float, rot90: bool):
    """Per-sample flips and 90-degree rotations from the pre-drawn uniforms."""
    n = x.shape[0]
    flips = []
    if hflip > 0:
        flips.append((-1, draws[:, 0] < hflip))
    if vflip > 0:
        flips.append((-2, draws[:, 1] < vflip))
    for dim, chosen in flips:
        if chosen.any():
            sel = torch.as_tensor(chosen, device=x.device).view(n, 1, 1, 1)
            x = torch.where(sel, x.flip(dim), x)
            y = torch.where(sel, y.flip(dim), y)
    if rot90:
        square = x.shape[-1] == x.shape[-2]
        ks = (draws[:, 2] * (4 if square else 2)).astype(int) * (1 if square else 2)
        if ks.any():
            x = torch.stack([torch.rot90(x[j], int(k), (-2, -1)) for j, k in enumerate(ks)])
            y = torch.stack([torch.rot90(y[j], int(k), (-2, -1)) for j, k in enumerate(ks)])
    return x.contiguous(), y.contiguous()


# ---------------------------------------------------------------------- evaluation


class Evaluation(SegmentationMetrics):
    """Per-image metrics at the evaluation size (the paper's 512 x 512) + native column.

    The inherited rows/aggregate are the metrics at ``size``; ``native`` holds the same
    metrics at each image's own resolution. ``aggregate()`` returns both, the native ones
    prefixed ``native_``; ``to_csv`` writes one row per image with both.
    """

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = tuple(size)
        self.native = SegmentationMetrics()
        self.shapes: list[tuple[int, int]] = []

    def add(self, name: str, pred_size, ref_size, pred_native, ref_native) -> dict:
        row = self.update(pred_size, ref_size, name=name)
        native = self.native.update(pred_native, ref_native, name=name)
        self.shapes.append(tuple(ref_native.shape))
        return {**row, **{f"native_{k}": v for k, v in native.items() if k != "name"}}

    def reset(self) -> None:
        super().reset()
        self.native.reset()
        self.shapes.clear()

    def aggregate(self) -> dict:
        result = super().aggregate()
        native = self.native.aggregate()
        result.update({f"native_{k}": v for k, v in native.items() if k != "count"})
        result["size"] = list(self.size)
        return result

    def per_image(self) -> list[dict]:
        rows = []
        for row, native, shape in zip(
            super().per_image(), self.native.per_image(), self.shapes, strict=True
        ):
            row.update({f"native_{k}": v for k, v in native.items() if k != "name"})
            row["height"], row["width"] = shape
            rows.append(row)
        return rows

    def to_csv(self, path: str | os.PathLike) -> Path:
        import csv

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = [*PER_IMAGE_KEYS, *(f"native_{k}" for k in PER_IMAGE_KEYS[1:]), "height", "width"]
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.per_image())
        return path


PAPER_TEST_SIZE = (512, 512)  # the paper scores every test image at 512 x 512


@torch.no_grad()
def evaluate(
    model: nn.Module,
    samples: Sequence,
    input_config: InputConfig,
    mode: str = "resize",
    *,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    batch_size: int = 8,
    overlap: float = 0.25,
    progress: bool = False,
) -> Evaluation:
    """Score a model on (name, image, mask) samples (e.g. ``NativeCache`` items).

    The prediction is the plugin's (``napari_tmunet.inference``), building block for
    building block: the same input mapping (``FrameInput``), resizing, forward pass and
    foreground probability, thresholded at ``input_config.threshold``. "resize" (paper):
    the image is resized to ``input_config.size`` and the mask compared with the mask
    resized to that size; the native column resizes the logits back to the image's size.
    "crop": ``inference.sliding_window`` at native resolution (windows of
    ``input_config.size``, Gaussian blending, as the plugin's tile mode); the main column
    resizes that probability to 512 x 512 (``PAPER_TEST_SIZE``, the paper's test
    resolution), so crop and resize models are scored alike. Dice/IoU without smoothing, HD/HD95
    in pixels, an empty prediction on a non-empty mask scores HD = image diagonal and is
    counted (see ``napari_tmunet.metrics``).

    Args:
        model: the model (DDP wrapper accepted); put in eval mode and restored after.
        samples: items with ``name``, ``image`` ((H, W[, C]) array), ``mask`` ((H, W)
            bool), or (name, image, mask) tuples.
        amp: bf16 autocast; default on for CUDA.
        batch_size: images (resize) or windows (crop) per forward pass.
    Returns:
        An :class:`Evaluation` (a ``SegmentationMetrics`` with a ``native`` column).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    net = _unwrap(model)
    was_training = net.training
    net.eval()
    device = torch.device(device) if device is not None else next(net.parameters()).device
    amp = device.type == "cuda" if amp is None else amp
    channels = getattr(getattr(net, "config", None), "in_channels", len(input_config.mean))
    size = tuple(input_config.size)
    eval_size = size if mode == "resize" else PAPER_TEST_SIZE
    threshold = input_config.threshold
    result = Evaluation(eval_size)

    def probability(x: torch.Tensor) -> torch.Tensor:  # (n, C, h, w) -> (n, 1, h, w)
        return foreground_probability(forward_logits(net, x, amp))[:, None]

    def prepare(sample) -> tuple[str, FrameInput, np.ndarray]:
        name, image, mask = _sample_fields(sample)
        frame = FrameInput(image, channels, input_config)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != frame.hw:
            raise ValueError(f"sample {name}: image is {frame.hw} but mask is {mask.shape}")
        return name, frame, mask

    def score(name: str, prob_size: torch.Tensor, prob_native: torch.Tensor, mask: np.ndarray):
        """Probabilities (h, w) at the evaluation size and (H, W) at the image's."""
        ref_size = resize_mask(torch.from_numpy(mask)[None, None], eval_size)[0, 0]
        result.add(
            name,
            (prob_size > threshold).cpu().numpy(),
            ref_size.numpy(),
            (prob_native > threshold).cpu().numpy(),
            mask,
        )

    try:
        items = list(samples)
        if mode == "crop":
            for sample in _progress(items, len(items), "evaluate", progress):
                name, frame, mask = prepare(sample)
                windows = sliding_window(
                    probability, frame, size, overlap, batch_size, "gaussian", device
                )
                prob = run_to_completion(windows)  # (1, 1, H, W)
                score(name, resize(prob, eval_size)[0, 0], prob[0, 0], mask)
        else:
            bar = _progress(
                range(0, len(items), batch_size), -(-len(items) // batch_size), "evaluate", progress
            )
            for start in bar:
                prepared = [prepare(s) for s in items[start : start + batch_size]]
                x = torch.cat([frame.resized(device) for _, frame, _ in prepared])
                logits = forward_logits(net, x, amp)  # (n, K, h, w)
                for (name, frame, mask), lg in zip(prepared, logits, strict=True):
                    native = foreground_probability(resize(lg[None], frame.hw))[0]
                    score(name, foreground_probability(lg[None])[0], native, mask)
    finally:
        net.train(was_training)
    return result


def _sample_fields(sample) -> tuple[str, np.ndarray, np.ndarray]:
    if hasattr(sample, "image") and hasattr(sample, "mask"):
        return str(getattr(sample, "name", "")), sample.image, sample.mask
    name, image, mask = sample
    return str(name), image, mask


# ---------------------------------------------------------------------- efficiency


def measure_efficiency(
    model: nn.Module,
    size: Sequence[int] = (512, 512),
    device: torch.device | str = "cpu",
    *,
    batch: int = 16,
    warmup: int | None = None,
    repeats: int | None = None,
    amp: bool = False,
    count_macs: bool = True,
    count_flops: bool = True,
) -> dict:
    """Parameters, MACs as the paper counts them, true FLOPs, FPS and throughput.

    - ``macs``: ``thop.profile`` multiply-accumulates at batch 1 (what the paper's
      "FLOPs" column reports: 6.55 G for TM-UNet b; thop counts module layers only, not
      the mLSTM's matrix products); None when thop is not installed.
    - ``flops``: ``torch.utils.flop_counter`` floating-point operations of one forward at
      batch 1 (2 per multiply-accumulate), counted on a CPU copy so that the chunkwise
      mLSTM's matrix products are included (a Triton kernel would be invisible).
    - ``fps_batch1``: 1 / median forward time at batch 1 (CUDA-synchronised, after
      warm-up), ``ms_batch1`` the median; ``throughput``: images/s at ``batch``.
    """
    net = _unwrap(model)
    device = torch.device(device)
    size = tuple(int(s) for s in size)
    channels = getattr(getattr(net, "config", None), "in_channels", 3)
    cuda = device.type == "cuda"
    warmup = (10 if cuda else 2) if warmup is None else warmup
    repeats = (50 if cuda else 5) if repeats is None else repeats
    result: dict = {
        "params": int(sum(p.numel() for p in net.parameters())),
        "size": list(size),
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "amp": bool(amp and cuda),
        "batch": batch,
        "torch": torch.__version__,
    }
    if count_macs or count_flops:
        cpu_copy = copy.deepcopy(net).cpu().eval()
        x_cpu = torch.zeros(1, channels, *size)
        if count_macs:
            result["macs"] = _thop_macs(cpu_copy, x_cpu)
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                cpu_copy(x_cpu)
            result["flops"] = int(counter.get_total_flops())
        del cpu_copy
    was_training = net.training
    original_device = next(net.parameters()).device
    net.to(device).eval()
    try:
        ms1 = _median_ms(net, torch.randn(1, channels, *size, device=device), warmup, repeats, amp)
        msb = _median_ms(
            net,
            torch.randn(batch, channels, *size, device=device),
            max(1, warmup // 3),
            max(3, repeats // 5),
            amp,
        )
    finally:
        net.to(original_device).train(was_training)
    result.update(
        ms_batch1=ms1,
        fps_batch1=1000.0 / ms1,
        ms_batch=msb,
        throughput=batch * 1000.0 / msb,
    )
    return result


def _thop_macs(model: nn.Module, x: torch.Tensor) -> int | None:
    try:
        import thop
    except ImportError:
        logger.info("thop is not installed: MACs as the paper counts them are not reported")
        return None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        macs, _ = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)
    return int(macs)


@torch.no_grad()
def _median_ms(net: nn.Module, x: torch.Tensor, warmup: int, repeats: int, amp: bool) -> float:
    cuda = x.device.type == "cuda"

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and cuda):
            net(x)

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize(x.device)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


# --------------------------------------------------------------------- distributed


@dataclass
class DistContext:
    """Rank, world size and device of this process (world size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun); init the process group."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", local % torch.cuda.device_count())
            torch.cuda.set_device(dev)
        ctx = cls(rank=rank, world_size=world, local_rank=local, device=dev)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if dev.type == "cuda" else "gloo",
                timeout=timedelta(minutes=60),
                **({"device_id": dev} if dev.type == "cuda" else {}),
            )
            ctx.initialized_here = True
        elif world > 1:
            ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
        return ctx

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over all ranks; its gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with batch statistics summed over all ranks (CPU / gloo DDP).

    The CPU counterpart of ``torch.nn.SyncBatchNorm`` (whose kernels are CUDA-only):
    per-rank sums of x and x^2 and the element count are summed over the ranks by
    ``torch.distributed.all_reduce`` (the backward sums the ranks' gradients of those
    statistics, as SyncBatchNorm's backward does), so forward and backward equal
    BatchNorm over the global batch. Same state-dict keys as BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        C = x.shape[1]
        xf = x.float()
        local = torch.cat(
            [xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), xf.new_tensor([xf.numel() // C])]
        )  # (2C + 1)
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:C] / count
        var = (total[C : 2 * C] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        y = (xf - mean.view(1, C, 1, 1)) * torch.rsqrt(var + self.eps).view(1, C, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        return y.to(x.dtype)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace BatchNorm layers by cross-rank synchronised ones (see module docstring)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, AllReduceBatchNorm2d):
            new = AllReduceBatchNorm2d(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            new.load_state_dict(module.state_dict())
            if module.affine:
                new.weight, new.bias = module.weight, module.bias  # keep the Parameters
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, convert(child))
        return module

    return convert(model)


def _unused_parameters(model: nn.Module, channels: int) -> bool:
    """Whether some parameters get no gradient (ablations), probed on a copy."""
    probe = copy.deepcopy(model).cpu().train()
    probe(torch.randn(2, channels, 64, 64)).float().mean().backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


# -------------------------------------------------------------------------- schedule


@dataclass
class Schedule:
    """Which samples each optimiser step uses, and where the periods end."""

    n_train: int
    batch_size: int
    world_size: int
    epochs: int
    steps: int = 0
    lr_decay_every: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.n_train < self.world_size:
            raise ValueError(
                f"{self.n_train} training images for {self.world_size} ranks: need at least "
                "one image per rank"
            )
        if self.steps:
            self.steps_per_epoch = 0
            every = self.lr_decay_every or 0
            if every:
                self.period_ends = list(range(every, self.steps, every)) + [self.steps]
            else:
                n = min(self.epochs, self.steps)
                self.period_ends = sorted({round((p + 1) * self.steps / n) for p in range(n)})
        else:
            full, rest = divmod(self.n_train, self.batch_size)
            # a last partial batch smaller than the number of ranks cannot be sharded
            self.steps_per_epoch = full + (1 if rest >= self.world_size else 0)
            if self.steps_per_epoch == 0:
                raise ValueError("no complete batch: lower the batch size")
            every = self.lr_decay_every or self.steps_per_epoch
            total = self.epochs * self.steps_per_epoch
            self.period_ends = list(range(every, total, every)) + [total]

    @property
    def total_steps(self) -> int:
        return self.period_ends[-1]

    @property
    def periods(self) -> int:
        return len(self.period_ends)

    def period_of(self, step: int) -> int:
        """Index of the period that step ``step`` (0-based) belongs to."""
        for p, end in enumerate(self.period_ends):
            if step < end:
                return p
        return self.periods

    def epoch_of(self, step: int) -> float:
        """Epochs (passes over the training set) completed after ``step`` steps."""
        if self.steps_per_epoch:
            return step / self.steps_per_epoch
        return step * self.batch_size / self.n_train

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 1, epoch]).permutation(self.n_train)

    def indices(self, step: int) -> list[int]:
        """Global batch (sample indices) of optimiser step ``step`` (0-based)."""
        if self.steps_per_epoch:
            epoch, b = divmod(step, self.steps_per_epoch)
            return self.permutation(epoch)[b * self.batch_size : (b + 1) * self.batch_size].tolist()
        out = []
        for pos in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, i = divmod(pos, self.n_train)
            if i == 0 or not out:
                perm = self.permutation(epoch)
            out.append(int(perm[i]))
        return out

    def draws(self, step: int, n: int) -> np.ndarray:
        """(n, 5) augmentation uniforms of step ``step``."""
        return np.random.default_rng([self.seed, 2, step]).random((n, 5))


# --------------------------------------------------------------------------- fit


def fit(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    callbacks=None,
    stop_event: threading.Event | None = None,
    dataset: NativeCache | None = None,
) -> dict:
    """Train a model as ``config`` says; write everything into ``run_dir``.

    Args:
        config: the run's configuration (``config.resume`` continues ``run_dir``).
        run_dir: the run folder (created; see the module docstring for its files).
        callbacks: an object (or dict) with optional ``on_step(step, total, loss)``,
            called after every optimiser step, and ``on_eval(record)``, called after
            every evaluation with the ``metrics.jsonl`` record. Called on rank 0 only,
            from the training thread.
        stop_event: a ``threading.Event``; checked before every step. When set, the
            model is evaluated, ``last.pt`` saved (resumable), ``best.pt`` kept or
            improved, and ``fit`` returns with ``stopped=True``.
        dataset: an in-memory dataset to use instead of ``config.data``.

    Returns:
        A dict: run_dir, stopped, step, total_steps, epoch, best_score, best_step,
        best_checkpoint, last_checkpoint, test (aggregate or None), efficiency.
    """
    ctx = DistContext.from_env(config.device)
    try:
        return _Run(config, Path(run_dir), ctx, callbacks, stop_event, dataset).run()
    finally:
        ctx.close()


def _callback(callbacks, name: str) -> Callable | None:
    if callbacks is None:
        return None
    if isinstance(callbacks, dict):
        return callbacks.get(name)
    return getattr(callbacks, name, None)


class _Run:
    """One training session (a fresh run or a resumption); see ``fit``."""

    def __init__(self, config, run_dir, ctx, callbacks, stop_event, dataset):
        self.config = config
        self.run_dir = run_dir
        self.ctx = ctx
        self.on_step = _callback(callbacks, "on_step")
        self.on_eval = _callback(callbacks, "on_eval")
        self.stop_event = stop_event
        self.dataset = dataset
        self.log_handler = None

    # -- run folder --------------------------------------------------------------

    def prepare_run_dir(self) -> None:
        cfg, run_dir = self.config, self.run_dir
        if cfg.resume:
            if not (run_dir / "last.pt").is_file():
                raise RunDirError(
                    f"cannot resume: {run_dir / 'last.pt'} does not exist (start a new run "
                    "without --resume)"
                )
            saved_path = run_dir / "config.json"
            if saved_path.is_file():
                saved = TrainConfig.load(saved_path).to_dict()
                now = cfg.to_dict()
                changed = sorted(
                    k for k in now if k not in RESUMABLE_CHANGES and now[k] != saved.get(k)
                )
                if changed:
                    detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
                    raise RunDirError(
                        f"cannot resume {run_dir} with a different configuration ({detail}); "
                        "resume with the saved settings or start a new run folder"
                    )
            return
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"run folder {run_dir} exists and is not a folder")
        existing = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
        # a log alone (a start that failed before training) does not make a run
        content = [n for n in existing if n != "train.log" and not n.startswith("previous-")]
        if content and not cfg.overwrite:
            raise RunDirError(
                f"run folder {run_dir} is not empty ({', '.join(existing[:6])}"
                f"{', ...' if len(existing) > 6 else ''}); continue it with resume "
                "(--resume), start over with overwrite (--overwrite: old files are moved "
                "to previous-<time>/), or choose another folder"
            )
        if content and self.ctx.is_main:
            backup = run_dir / f"previous-{datetime.now():%Y%m%d-%H%M%S}"
            backup.mkdir()
            for name in existing:
                if not name.startswith("previous-"):
                    shutil.move(str(run_dir / name), str(backup / name))
            logger.warning("moved the earlier run in %s to %s", run_dir, backup)
        if self.ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)

    def start_log(self) -> None:
        if not self.ctx.is_main:
            return
        handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        self.log_levels = {}
        for name in ("trainer", "napari_tmunet"):
            lg = logging.getLogger(name)
            lg.addHandler(handler)
            self.log_levels[name] = lg.level
            if lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)
        self.log_handler = handler

    def stop_log(self) -> None:
        if self.log_handler is not None:
            for name, level in self.log_levels.items():
                logging.getLogger(name).removeHandler(self.log_handler)
                logging.getLogger(name).setLevel(level)
            self.log_handler.close()

    # -- main --------------------------------------------------------------------

    def run(self) -> dict:
        ctx = self.ctx
        if ctx.is_main:
            self.prepare_run_dir()
        ctx.barrier()
        self.start_log()
        try:
            return self._run()
        finally:
            self.stop_log()

    def _run(self) -> dict:
        cfg, ctx, run_dir = self.config, self.ctx, self.run_dir
        device = ctx.device
        started = time.time()
        logger.info(
            "%s run in %s on %s (world size %d)",
            "resuming" if cfg.resume else "new",
            run_dir,
            device,
            ctx.world_size,
        )

        # data and split
        cache = self.dataset if self.dataset is not None else load_dataset(cfg)
        split, notes = resolve_run_split(cfg, cache, run_dir / "split.json" if cfg.resume else None)
        for note in notes:
            logger.info("split: %s", note)
        index = {name: i for i, name in enumerate(cache.names)}
        parts = {k: [cache[index[n]] for n in v] for k, v in split.items()}
        if not parts["train"]:
            raise DatasetError("the split has no training images")
        logger.info(
            "dataset %s: %d train, %d valid, %d test; mask rules %s",
            cache.source or cfg.data,
            *(len(parts[k]) for k in ("train", "valid", "test")),
            cache.rule_counts(),
        )

        # model
        torch.manual_seed(cfg.seed)
        if cfg.init_checkpoint:
            start = load_checkpoint(cfg.init_checkpoint, "cpu")
            model_config = start.model_config
            input_config = replace(start.input_config, size=cfg.size)
            model = start.model.train()
            logger.info("starting from %s", cfg.init_checkpoint)
        else:
            channels = cfg.in_channels or (
                1 if all(item.image.shape[-1] == 1 for item in cache) else 3
            )
            model_config = cfg.model_config(channels)
            input_config = cfg.input_config(channels)
            model = build_model(model_config)
        channels = model_config.in_channels
        find_unused = ctx.distributed and _unused_parameters(model, channels)
        if ctx.distributed and cfg.sync_bn:
            model = synchronise_batchnorm(model, device)
        model.to(device)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
        schedule = Schedule(
            n_train=len(parts["train"]),
            batch_size=cfg.batch_size,
            world_size=ctx.world_size,
            epochs=cfg.epochs,
            steps=cfg.steps,
            lr_decay_every=cfg.lr_decay_every,
            seed=cfg.seed,
        )

        # state
        step, best_score, best_step, elapsed_before = 0, -math.inf, -1, 0.0
        resumed_losses: list[float] = []  # losses of a period interrupted by a stop
        records: list[dict] = []
        if cfg.resume:
            payload = read_checkpoint(run_dir / "last.pt")
            state = payload.get("training_state") or {}
            if "optimizer" not in state:
                raise RunDirError(f"{run_dir / 'last.pt'} holds no training state to resume")
            _unwrap(model).load_state_dict(payload["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step = int(state["step"])
            best_score = float(state.get("best_score", -math.inf))
            best_step = int(state.get("best_step", -1))
            elapsed_before = float(state.get("elapsed", 0.0))
            resumed_losses = [float(v) for v in state.get("period_losses", [])]
            _set_rng_state(state.get("rng", {}))
            records = [r for r in _read_jsonl(run_dir / "metrics.jsonl") if r["step"] <= step]
            if ctx.is_main:  # drop lines written after the checkpoint (a crash in between)
                (run_dir / "metrics.jsonl").write_text(
                    "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
                )
            if (run_dir / "best.pt").is_file():  # never replace a better best.pt
                best_metrics = read_checkpoint(run_dir / "best.pt").get("metrics", {})
                best_score = max(best_score, float(best_metrics.get("val_dice", -math.inf)))
            logger.info("resumed at step %d of %d", step, schedule.total_steps)
        elif ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", cfg.to_dict())
            save_split(run_dir / "split.json", split)
            (run_dir / "metrics.jsonl").write_text("", encoding="utf-8")
        if ctx.is_main:
            info = {
                "model_config": model_config.to_dict(),
                "input_config": input_config.to_dict(),
                "dataset": {
                    "source": cache.source or cfg.data,
                    "name": dataset_label(cfg, cache),
                    "images": len(cache),
                    "train": len(parts["train"]),
                    "valid": len(parts["valid"]),
                    "test": len(parts["test"]),
                    "mask_rules": cache.rule_counts(),
                    "skipped": [list(s) for s in cache.skipped],
                    "split_notes": notes,
                },
                "schedule": {
                    "total_steps": schedule.total_steps,
                    "periods": schedule.periods,
                    "steps_per_epoch": schedule.steps_per_epoch,
                },
                "world_size": ctx.world_size,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
                "versions": {"napari_tmunet": __version__, "torch": torch.__version__},
                "git_commit": _git_commit(),
                "host": platform.node(),
                "started": datetime.now().isoformat(timespec="seconds"),
            }
            write_json(run_dir / "run_info.json", info)

        if ctx.distributed:
            # depth-wise conv weights (C, 1, 3, 3) get gradients with other strides on the
            # size-1 axis: same memory layout, so DDP's performance warning does not apply
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            model = nn.parallel.DistributedDataParallel(
                model, find_unused_parameters=find_unused, **kwargs
            )
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        # data on the device (if it fits)
        store = device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if DeviceData.nbytes(parts["train"]) > 0.25 * free:
                store = torch.device("cpu")
                logger.info("training images stay in host memory (too large for the GPU)")
        data = DeviceData(parts["train"], channels, input_config, device, store)

        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.model_config, self.input_config = model_config, input_config
        self.parts, self.schedule, self.cache = parts, schedule, cache
        self.records = records
        self.best_score, self.best_step = best_score, best_step
        amp = cfg.amp and device.type == "cuda"

        self.bar = bar = None
        if ctx.is_main and cfg.progress:
            from tqdm.auto import tqdm

            self.bar = bar = tqdm(
                total=schedule.total_steps,
                initial=step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
            )
        stopped = False
        self.elapsed_before = elapsed_before  # training time of earlier sessions
        self.session = (time.time(), step)  # this session's start, for times and the ETA
        period = schedule.period_of(step)
        period_losses: list[float] = resumed_losses
        try:
            while step < schedule.total_steps:
                if self.stop_event is not None and ctx.any(self.stop_event.is_set()):
                    stopped = True
                    break
                model.train()
                indices = schedule.indices(step)
                draws = schedule.draws(step, len(indices))
                mine = slice(ctx.rank, None, ctx.world_size)
                x, y = data.batch(
                    indices[mine],
                    draws[mine],
                    cfg.size,
                    cfg.mode,
                    cfg.hflip,
                    cfg.vflip,
                    cfg.rot90,
                )
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    logits = model(x)
                per_sample = segmentation_loss(
                    logits, y, cfg.ce_weight, cfg.dice_weight, reduction="none"
                )
                loss = per_sample.sum() * (ctx.world_size / len(indices))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                batch_loss = float(ctx.sum(per_sample.detach().sum()).item()) / len(indices)
                if not math.isfinite(batch_loss):
                    raise FloatingPointError(
                        f"training loss is {batch_loss} at step {step}: lower the learning rate "
                        "or check the data (the run can be resumed from last.pt)"
                    )
                period_losses.append(batch_loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{batch_loss:.4f}", refresh=False)
                if ctx.is_main and self.on_step is not None:
                    self.on_step(step, schedule.total_steps, batch_loss)
                if step == schedule.period_ends[period]:
                    scheduler.step()
                    self.end_period(step, period, period_losses)
                    period += 1
                    period_losses = []
            if stopped:
                logger.info("stop requested: saving at step %d", step)
                self.end_period(step, period, period_losses, stopped=True)
        finally:
            if bar is not None:
                bar.close()

        result = {
            "run_dir": str(run_dir),
            "stopped": stopped,
            "step": step,
            "total_steps": schedule.total_steps,
            "epoch": schedule.epoch_of(step),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best_checkpoint": str(run_dir / "best.pt"),
            "last_checkpoint": str(run_dir / "last.pt"),
            "test": None,
            "efficiency": None,
        }
        if not stopped and ctx.is_main and (cfg.test or cfg.efficiency):
            result.update(self.finish(time.time() - started + elapsed_before))
        ctx.barrier()
        return result

    # -- periods, checkpoints -----------------------------------------------------

    def end_period(self, step, period, losses, stopped=False):
        """Evaluate (rank 0), save best/last, log the record, call on_eval.

        Evaluates every ``eval_every`` periods, at the end of training and at a stop.
        """
        if not self.ctx.is_main:
            return
        cfg = self.config
        do_eval = stopped or (period + 1) % cfg.eval_every == 0
        do_eval = do_eval or step == self.schedule.total_steps
        began, first = self.session
        record = {
            "step": step,
            "epoch": round(self.schedule.epoch_of(step), 4),
            "period": period + (0 if stopped else 1),
            "train_loss": float(np.mean(losses)) if losses else None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "time": round(self.elapsed_before + time.time() - began, 3),
        }
        if stopped:
            record["stopped"] = True
        improved = False
        if do_eval and self.parts["valid"]:
            ev = evaluate(
                self.model,
                self.parts["valid"],
                self.input_config,
                cfg.mode,
                device=self.ctx.device,
                amp=cfg.amp,
                batch_size=cfg.eval_batch_size,
                overlap=cfg.overlap,
            )
            agg = ev.aggregate()
            primary = "native_" if cfg.mode == "crop" else ""
            record.update(
                val_dice=agg[f"{primary}dice_mean"],
                val_iou=agg[f"{primary}iou_mean"],
                val_hd=agg[f"{primary}hd_mean"],
                val_hd95=agg[f"{primary}hd95_mean"],
                val_dice_size=agg["dice_mean"],
                val_dice_native=agg["native_dice_mean"],
                val_empty=agg[f"{primary}empty_prediction"],
            )
            if record["val_dice"] > self.best_score:
                improved = True
                self.best_score, self.best_step = record["val_dice"], step
        record["best"] = improved
        record["best_val_dice"] = self.best_score if math.isfinite(self.best_score) else None
        self.records.append(record)
        if improved:
            self.save("best.pt", step, record, with_state=False)
        self.save("last.pt", step, record, with_state=True, period_losses=losses if stopped else [])
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(jsonable(record)) + "\n")
        plot_curves(self.records, self.run_dir / "curves.png")
        if self.bar is not None and "val_dice" in record:
            self.bar.set_postfix(
                loss=f"{record['train_loss'] or float('nan'):.4f}",
                val_dice=f"{record['val_dice']:.4f}",
                best=f"{self.best_score:.4f}",
            )
        if "val_dice" in record:
            per_step = (time.time() - began) / max(step - first, 1)
            eta = timedelta(seconds=round(per_step * (self.schedule.total_steps - step)))
            logger.info(
                "step %d/%d epoch %.2f: loss %.4f, val Dice %.4f (best %.4f at step %d), ETA %s",
                step,
                self.schedule.total_steps,
                record["epoch"],
                record["train_loss"] or float("nan"),
                record["val_dice"],
                self.best_score,
                self.best_step,
                eta,
            )
            if self.on_eval is not None:
                self.on_eval(dict(record))

    def save(self, name, step, record, with_state, period_losses=()):
        cfg = self.config
        metadata = {
            "train_config": cfg.to_dict(),
            "step": step,
            "epoch": record["epoch"],
            "dataset": dataset_label(cfg, self.cache),
            "split": self.run_dir.name + "/split.json",
            "saved": datetime.now().isoformat(timespec="seconds"),
        }
        metrics = {k: v for k, v in record.items() if k.startswith("val_") or k == "train_loss"}
        state = None
        if with_state:
            state = {
                "step": step,
                "epoch": float(self.schedule.epoch_of(step)),
                "period": self.schedule.period_of(step),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best_score": self.best_score,
                "best_step": self.best_step,
                "elapsed": float(record["time"]),
                "period_losses": [float(v) for v in period_losses],
                "world_size": self.ctx.world_size,
                "rng": _get_rng_state(),
            }
        save_checkpoint(
            self.run_dir / name,
            self.model,
            self.model_config,
            self.input_config,
            metadata=jsonable(metadata),
            metrics=jsonable(metrics),
            training_state=state,
        )

    def finish(self, elapsed: float) -> dict:
        """Test the best checkpoint and measure efficiency; write summary.json."""
        cfg, run_dir, device = self.config, self.run_dir, self.ctx.device
        out: dict = {}
        best_path = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else run_dir / "last.pt"
        best = load_checkpoint(best_path, device)
        summary = {
            "dataset": dataset_label(cfg, self.cache),
            "model": model_label(best.model_config),
            "checkpoint": best_path.name,
            "best_val_dice": self.best_score if math.isfinite(self.best_score) else None,
            "best_step": self.best_step,
            "steps": self.schedule.total_steps,
            "train_time_s": round(elapsed, 1),
            "world_size": self.ctx.world_size,
            "mode": cfg.mode,
            "size": list(cfg.size),
        }
        if cfg.test and self.parts["test"]:
            ev = evaluate(
                best.model,
                self.parts["test"],
                best.input_config,
                cfg.mode,
                device=device,
                amp=cfg.amp,
                batch_size=cfg.eval_batch_size,
                overlap=cfg.overlap,
                progress=cfg.progress,
            )
            ev.to_csv(run_dir / "test_metrics.csv")
            summary["test"] = ev.aggregate()
            out["test"] = summary["test"]
            logger.info(
                "test (%d images): Dice %.4f IoU %.4f F1 %.4f HD %.2f (native Dice %.4f)",
                summary["test"]["count"],
                summary["test"]["dice_mean"],
                summary["test"]["iou_mean"],
                summary["test"]["f1"],
                summary["test"]["hd_mean"],
                summary["test"]["native_dice_mean"],
            )
        if cfg.efficiency:
            eff = measure_efficiency(best.model, cfg.size, device, amp=False)
            summary["efficiency"] = eff
            out["efficiency"] = eff
        write_json(run_dir / "summary.json", summary)
        return out


# ------------------------------------------------------------------------ helpers


def dataset_label(config: TrainConfig, cache: NativeCache | None = None) -> str:
    """Name of the dataset in reports: ``dataset_name`` or the folder / file stem."""
    if config.dataset_name:
        return config.dataset_name
    source = config.data or (cache.source if cache is not None else "")
    path = Path(source)
    return path.stem if path.suffix == ".npz" else path.name or "dataset"


def model_label(mc: ModelConfig) -> str:
    """Short model name for reports, e.g. "TM-UNet b", "U-Net", "TM-UNet b -xLSTM"."""
    if mc.arch == "unet":
        return (
            "U-Net"
            if tuple(mc.channels) == (64, 128, 256, 512, 1024)
            else ("U-Net " + "-".join(map(str, mc.channels)))
        )
    names = {v: k for k, v in VARIANTS.items()}
    label = "TM-UNet " + names.get(tuple(mc.channels), "-".join(map(str, mc.channels)))
    for key, text in (("use_xlstm", "-xLSTM"), ("use_pooling", "-pool"), ("use_dwconv", "-DW")):
        if not getattr(mc, key):
            label += " " + text
    return " ".join([label, *(f"{k}={v}" for k, v in topology_changes(mc).items())])


# Topology options, each with the ablation switch without which it means nothing.
_TOPOLOGY = {
    "pooling": "use_pooling",
    "skip": None,
    "scan": "use_xlstm",
    "dwconv_order": "use_dwconv",
}


def topology_changes(mc: ModelConfig) -> dict[str, str]:
    """A TM-UNet's departures from the default topology that matter, e.g. {"pooling": "spatial"}.

    An option of a part the model does not have (the pooling axes of a model without
    pooling) is left out, so ablation runs compare whatever their unused options say.
    """
    defaults = ModelConfig()
    return {
        key: getattr(mc, key)
        for key, switch in _TOPOLOGY.items()
        if (switch is None or getattr(mc, switch)) and getattr(mc, key) != getattr(defaults, key)
    }


def plot_curves(records: Sequence[dict], path: str | os.PathLike) -> None:
    """Training loss and validation Dice per period, as a PNG (matplotlib Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    pts = [(r["epoch"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    if pts:
        ax1.plot(*zip(*pts, strict=True), color="tab:blue")
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss (2 CE + 1 Dice)")
    val = [(r["epoch"], r["val_dice"]) for r in records if r.get("val_dice") is not None]
    if val:
        ax2.plot(*zip(*val, strict=True), marker=".", color="tab:green")
        best = max(val, key=lambda p: p[1])
        ax2.axhline(best[1], color="grey", lw=0.8, ls="--")
        ax2.set_title(f"validation Dice (best {best[1]:.4f})")
    else:
        ax2.set_title("validation Dice")
    ax2.set(xlabel="epoch", ylabel="Dice")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _git_commit() -> str:
    """The source checkout's commit (with "+dirty" for local changes), "" if unknown."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if commit and dirty else "")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def _get_rng_state() -> dict:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(
            (
                "MT19937",
                s["keys"].numpy().astype(np.uint32),
                s["pos"],
                s["has_gauss"],
                s["cached_gaussian"],
            )
        )
    if "python" in state:
        version, values, gauss = state["python"]
        random.setstate((version, tuple(values), gauss))
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
