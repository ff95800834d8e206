"""The configuration of a training run (``config.json``): :class:`TrainConfig`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..config import ARCHITECTURES, VARIANTS, InputConfig, ModelConfig
from ..inference import MAX_OVERLAP
from ..options import DEVICES, DICE_OVER, MODE_ALIASES, MODES, PRETEXTS

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
        "cuda_graphs",
        "channels_last",
    }
)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` and in checkpoints.

    Flat on purpose: one field per ``napari-tmunet-train fit`` option, so the CLI, the
    saved ``config.json``, the resume check (``RESUMABLE_CHANGES``) and the release's
    re-run command map one to one. The model and input fields are requests (a variant
    name, overrides, a size); :meth:`model_config` and :meth:`input_config` resolve them
    into the ModelConfig and InputConfig that the checkpoint stores.

    Attributes:
        data: dataset folder (``images/`` + ``masks/``, or pictures with their masks beside
            them: ``data.datasets.scan_pairs``) or a NativeCache ``.npz`` file.
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
        init_checkpoint: start from these weights (fine-tuning); model config, input
            channels and normalisation come from the checkpoint (``in_channels``,
            ``mean``, ``std`` that differ from its are an error; images of other
            channels are converted to its). From a ``pretext`` checkpoint only the
            trunk is taken: the model flags and a fresh output layer come from here.
            The CLI stores it as an absolute path; ``resume`` does not read it (the
            run's ``last.pt`` holds every weight).
        pretext: "" (segmentation) or "inpaint": self-supervised pre-training that
            restores masked-out patches of the images of the training part of the
            split (the dataset folder still needs ``masks/``: they are read but
            unused); no validation, no test; ``num_classes`` must stay 1; fine-tune
            ``last.pt`` with ``init_checkpoint``.
        modality: the kind of image the model is for ("ultrasound", ...), saved in its
            checkpoints' metadata; "" = the one ``init_checkpoint`` is for (its record,
            else its lineage's: ``registry.checkpoint_modality``), else unknown (the
            Fine-tune dock sets the start's, else that of the images it trains on).
        in_channels: 1 or 3; 0 picks 1 when every image is grey, else 3.
        num_classes: 1 (sigmoid, BCE) or N >= 2 (softmax, CE; class 0 is background).
        size: (H, W) model input: the resize target ("resize") or the crop ("tile").
        mode: "resize" (paper: whole images resized to ``size``) or "tile" (random
            crops at native resolution, sliding-window evaluation; "crop" is read as
            "tile", its earlier name).
        mean, std: normalisation after mapping to [0, 1]; empty = ImageNet statistics.
        per_image_norm: standardise each sample by its own per-channel mean and std
            instead (``InputConfig.per_image_norm``, saved with the weights).
        epochs: epochs (epoch mode) or the number of periods of a step run.
        steps: optimiser steps of a step run; 0 = epoch mode.
        batch_size: GLOBAL batch size (split over DDP ranks).
        lr, gamma, weight_decay: Adam learning rate, ExponentialLR factor, L2 weight decay.
        adam_eps: Adam's epsilon (PyTorch default 1e-8).
        lr_decay_every: period length in steps (0: an epoch, or steps / epochs).
        grad_clip: clip the gradient norm to this (0 = off; the paper does not clip).
        ema: decay of an exponential moving average of the weights, updated after every
            optimiser step (``ema.WeightAverage``); validation scores the average and
            ``best.pt`` holds it, ``last.pt`` keeps the raw weights and the average.
            0 = off (the paper; the Fine-tune dock keeps it off).
        ce_weight, dice_weight: lambda1, lambda2 of the loss.
        dice_over: "image" (the paper's soft Dice per image) or "batch" (one soft Dice of
            the whole batch: informative on images with an empty mask; see
            ``loss.segmentation_loss``).
        presence_weight: weight of the image-level presence term (``loss.presence_loss``:
            an image's most confident pixels against whether its mask has foreground);
            0 = off (the paper's loss). One output class only. For a model with a
            presence head (``model={"presence_head": True}``) it weighs the head's BCE
            instead (``loss.presence_head_loss``), 0 meaning 1: the head has no other loss.
        edge_weight: K of ``loss.edge_weights``: pixels beside the mask's edges weigh up to
            1 + K in both terms of the loss; 0 = off (the paper's loss). One output class.
        hflip, vflip: flip probabilities; rot90: random multiples of 90 degrees.
        zoom, rotate, colour: random zoom (factor up to 1 + zoom either way), rotation
            (up to +- rotate degrees) and colour jitter strength; 0 = off (see
            ``batches.Augment``).
        tone, blur: random gamma curve (exponent up to 1 + tone either way) and Gaussian
            blur (standard deviation up to ``blur`` pixels); 0 = off.
        empty_repeat: each training image with an empty mask (e.g. a lesion-free
            ultrasound) is drawn this many times per pass over the training set, so
            false regions on such images weigh more in the loss; 1 = like the others.
        amp: bf16 autocast on CUDA (ignored on CPU).
        cuda_graphs: replay each training step from a CUDA graph (one GPU; ignored on
            the CPU and under DDP).
        channels_last: keep the model and its input in channels-last (NHWC) memory on
            CUDA, cuDNN's native layout for bf16 convolutions (one H200, batch 16, 512 x
            512: U-Net's step 135 -> 66 ms, b's 62 -> 48 ms; docs/benchmarks.md). Same
            numbers up to rounding; ignored on the CPU.
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
    pretext: str = ""
    modality: str = ""
    in_channels: int = 0
    num_classes: int = 1
    size: tuple[int, int] = (512, 512)
    mode: str = "resize"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    per_image_norm: bool = False
    epochs: int = 200
    steps: int = 0
    batch_size: int = 16
    lr: float = 1e-4
    gamma: float = 0.98
    lr_decay_every: int = 0
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    grad_clip: float = 0.0
    ema: float = 0.0
    ce_weight: float = 2.0
    dice_weight: float = 1.0
    dice_over: str = "image"
    presence_weight: float = 0.0
    edge_weight: float = 0.0
    hflip: float = 0.25
    vflip: float = 0.0
    rot90: bool = False
    zoom: float = 0.0
    rotate: float = 0.0
    colour: float = 0.0
    tone: float = 0.0
    blur: float = 0.0
    empty_repeat: int = 1
    amp: bool = True
    cuda_graphs: bool = True
    channels_last: bool = True
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
        self.mode = MODE_ALIASES.get(self.mode, self.mode)
        problems = self._bad_choices() + self._out_of_bounds() + self._conflicts()
        if problems:
            raise ValueError("; ".join(problems))

    def _bad_choices(self) -> list[str]:
        """One sentence per field whose value is not among its choices."""
        choices = {
            "mode": MODES,
            "arch": ARCHITECTURES,
            "device": DEVICES,
            "dice_over": DICE_OVER,
            "pretext": PRETEXTS,
            "in_channels": (0, 1, 3),
        }
        if self.arch == "tmunet":
            choices["variant"] = tuple(sorted(VARIANTS))
        return [
            _bad(name, getattr(self, name), "one of " + ", ".join(repr(c) for c in allowed))
            for name, allowed in choices.items()
            if getattr(self, name) not in allowed
        ]

    def _out_of_bounds(self) -> list[str]:
        """One sentence per number outside its range (``BOUNDS``), naming the range."""
        return [
            _bad(name, getattr(self, name), expected)
            for name, ok, expected in BOUNDS
            if not ok(getattr(self, name))
        ]

    def _conflicts(self) -> list[str]:
        """Settings that are each valid but do not go together."""
        problems = []
        one_class = {"--presence-weight": self.presence_weight, "--edge-weight": self.edge_weight}
        for flag, value in one_class.items():
            if value and self.num_classes != 1:
                problems.append(
                    f"{flag} {_show(value)} with --num-classes {self.num_classes}: it "
                    "needs num_classes 1 (one output class)"
                )
        if self.edge_weight and (self.model.get("presence_head") or self.pretext):
            problems.append(
                f"--edge-weight {_show(self.edge_weight)} with "
                f"{'--presence-head' if self.model.get('presence_head') else 'pre-training'}: "
                "edge weights apply to the plain segmentation loss only; leave one of them out"
            )
        if self.model.get("presence_head") and self.dice_over != "image":
            problems.append(
                f"--dice-over {self.dice_over} with a presence head: its mask loss runs on "
                "images with a lesion only, with the per-image Dice ('image')"
            )
        if self.pretext and (self.model.get("presence_head") or self.presence_weight):
            problems.append(
                f"pretext={self.pretext!r}: pre-training restores images and has no "
                "presence output; add the presence head when fine-tuning"
            )
        if self.pretext and self.num_classes != 1:
            problems.append(
                f"num_classes={self.num_classes} with pretext={self.pretext!r}: pre-training "
                "restores the image (one output per input channel); set the classes when "
                "fine-tuning"
            )
        if len(self.mean) != len(self.std):
            problems.append(
                f"--mean {_show(self.mean)} with --std {_show(self.std)}: give both, one "
                "value per input channel"
            )
        if self.resume and self.overwrite:
            problems.append("--resume and --overwrite exclude each other: pick one")
        return problems

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
        """The ModelConfig this training config asks for (ignoring ``init_checkpoint``); a
        ``pretext`` run has one output per input channel (the restored image)."""
        base = ModelConfig.unet() if self.arch == "unet" else ModelConfig.variant(self.variant)
        values = base.to_dict()
        values.update(self.model)
        outputs = in_channels if self.pretext else self.num_classes
        values.update(arch=self.arch, in_channels=in_channels, num_classes=outputs)
        return ModelConfig.from_dict(values)

    def input_config(self, in_channels: int) -> InputConfig:
        """The InputConfig (size and normalisation) for ``in_channels`` channels."""
        if self.mean:
            if len(self.mean) != in_channels:
                raise ValueError(
                    f"mean/std have {len(self.mean)} values but the model takes {in_channels} "
                    "channels; give one value per channel"
                )
            return InputConfig(
                size=self.size, mean=self.mean, std=self.std, per_image_norm=self.per_image_norm
            )
        return InputConfig.for_channels(
            in_channels, size=self.size, per_image_norm=self.per_image_norm
        )


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int | float):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 32:
        raise ValueError(_bad(name, value, "one or two numbers (H W), each at least 32"))
    return value


def _option(name: str) -> str:
    """The ``napari-tmunet-train fit`` option of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _show(value) -> str:
    """A value as it is typed on the command line: ``1e-05``, ``0.5``, ``64 64``."""
    if isinstance(value, tuple | list):
        return " ".join(_show(v) for v in value) or "(none)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bad(name: str, value, expected: str) -> str:
    """One sentence for a bad value: ``--batch-size 0: expected at least 1``."""
    return f"{_option(name)} {_show(value)}: expected {expected}"


def _within(low: float, high: float) -> Callable[[float], bool]:
    return lambda v: low <= v <= high


# (field, test, what is expected): one sentence per number outside its range
BOUNDS: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("epochs", lambda v: v >= 1, "at least 1"),
    ("steps", lambda v: v >= 0, "0 (train by --epochs) or more"),
    ("batch_size", lambda v: v >= 1, "at least 1"),
    ("lr", lambda v: v > 0, "a learning rate above 0"),
    ("gamma", lambda v: 0 < v <= 1, "a factor above 0 and at most 1"),
    ("lr_decay_every", lambda v: v >= 0, "0 (an epoch) or more steps"),
    ("ema", lambda v: 0 <= v < 1, "a decay from 0 (off) to below 1, e.g. 0.999"),
    ("presence_weight", _within(0, 100), "from 0 (off) to 100"),
    ("edge_weight", _within(0, 100), "from 0 (off) to 100"),
    ("hflip", _within(0, 1), "a probability from 0 to 1"),
    ("vflip", _within(0, 1), "a probability from 0 to 1"),
    ("zoom", _within(0, 1), "from 0 to 1"),
    ("rotate", _within(0, 180), "from 0 to 180 (degrees)"),
    ("colour", _within(0, 1), "from 0 to 1"),
    ("tone", _within(0, 1), "from 0 to 1"),
    ("blur", _within(0, 8), "from 0 to 8 (pixels)"),
    ("empty_repeat", _within(1, 100), "from 1 to 100"),
    ("overlap", _within(0, MAX_OVERLAP), f"from 0 to {MAX_OVERLAP}"),
    ("split_seed", lambda v: v >= 0, "an integer 0 or more"),
    ("seed", lambda v: v >= 0, "an integer 0 or more"),
    ("eval_every", lambda v: v >= 1, "at least 1"),
    ("eval_batch_size", lambda v: v >= 1, "at least 1"),
    ("max_images", lambda v: v >= 0, "at least 1 (or 0: all pairs)"),
)
