"""Model configuration: one dataclass, saved as a plain dict inside every checkpoint.

Variants are data, not subclasses: ``ModelConfig.variant("b")`` gives the paper's
standard model (channels 32..512), ``"s"`` and ``"t"`` the smaller rows of Table 3.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields

# Channel sizes C1..C5 of the paper's Table 3.
VARIANTS: dict[str, tuple[int, ...]] = {
    "t": (8, 16, 32, 64, 128),
    "s": (16, 32, 64, 128, 256),
    "b": (32, 64, 128, 256, 512),
}

ARCHITECTURES = ("tmunet", "unet")
SKIPS = ("add", "concat")
# "token_channel": windows over scan positions x channels of the token tensor (what the
# released code's AvgPool2d on (B, N, C) does); "spatial": windows of the 2-D feature map.
POOLINGS = ("spatial", "token_channel")
POOLING_ALIASES = {"released": "token_channel"}  # the earlier name, in older checkpoints
SCANS = ("alternate", "fused")
DWCONV_ORDERS = ("after", "before")

# Bounds a checkpoint's config must respect before any model is built: far above every
# real model (widths up to 1024, a few classes, 1024-pixel inputs), far below the sizes
# that would exhaust memory while building (a bit-flipped num_classes of 1e9 is 19 GB).
MAX_CLASSES = 1024
MAX_WIDTH = 2048
MAX_HEADS = 256
MAX_POOL_SIZE = 255
MAX_CHUNK_SIZE = 4096
MAX_INPUT_SIDE = 16384


@dataclass
class ModelConfig:
    """Constructor arguments of a segmentation model.

    The defaults are the released code's topology: additive skips, two single-direction
    xLSTM layers per MSTM block, DWConv after each, and pooling over the token and channel
    axes (not the 2-D pooling of the paper's text; docs/benchmarks.md compares them).

    Attributes:
        arch: "tmunet" or "unet" (classic Ronneberger U-Net with BatchNorm).
        in_channels: 1 (grey) or 3 (RGB).
        num_classes: 1 for a binary logit map, N for N-class logits.
        channels: C1..C5 (TM-UNet) or the five U-Net widths (64..1024).
        num_heads: mLSTM heads in every xLSTM layer.
        use_xlstm, use_pooling, use_dwconv: the ablation switches of Table 2.
        pooling: "token_channel" (windows over scan positions and channels; "released"
            is read as this, its earlier name) or "spatial" (2-D feature map).
        pool_sizes: kernel sizes of the multi-scale average pooling.
        skip: "add" (released code) or "concat" (paper text) decoder skip connections.
        scan: "alternate" (two layers, the second on the flipped sequence; released code)
            or "fused" (eq. 5-6: one layer that gates a forward by a backward scan).
        dwconv_order: "after" each xLSTM layer (released code) or "before" (eq. 7).
        mlstm_kernel: "auto" or an ``mlstm_kernels`` name such as
            "chunkwise--native_custbw" or "chunkwise--triton_xl_chunk".
        chunk_size: chunk length of the chunkwise mLSTM kernels.
        presence_head: a TM-UNet with one class gets a second output, an image-level
            "lesion present" logit from its deepest features; its probability map is
            then P(present) x P(pixel | present) (``model.tmunet``). Off in the paper.
    """

    arch: str = "tmunet"
    in_channels: int = 3
    num_classes: int = 1
    channels: tuple[int, ...] = VARIANTS["b"]
    num_heads: int = 4
    use_xlstm: bool = True
    use_pooling: bool = True
    use_dwconv: bool = True
    pooling: str = "token_channel"
    pool_sizes: tuple[int, ...] = (5, 9, 13)
    skip: str = "add"
    scan: str = "alternate"
    dwconv_order: str = "after"
    mlstm_kernel: str = "auto"
    chunk_size: int = 64
    presence_head: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.channels = _int_tuple("channels", self.channels, MAX_WIDTH)
        self.pool_sizes = _int_tuple("pool_sizes", self.pool_sizes, MAX_POOL_SIZE)
        self.num_classes = _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        self.num_heads = _check_int("num_heads", self.num_heads, 1, MAX_HEADS)
        self.chunk_size = _check_int("chunk_size", self.chunk_size, 1, MAX_CHUNK_SIZE)
        for name in ("use_xlstm", "use_pooling", "use_dwconv", "presence_head"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected true or false.")
        if not isinstance(self.mlstm_kernel, str) or not isinstance(self.extra, dict):
            raise ValueError(
                f"mlstm_kernel={self.mlstm_kernel!r}, extra={self.extra!r}: expected a name "
                "and a mapping."
            )
        self.pooling = POOLING_ALIASES.get(self.pooling, self.pooling)
        choices = {
            "arch": ARCHITECTURES,
            "skip": SKIPS,
            "pooling": POOLINGS,
            "scan": SCANS,
            "dwconv_order": DWCONV_ORDERS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {allowed}.")
        if not _is_int(self.in_channels) or self.in_channels not in (1, 3):
            raise ValueError(
                f"in_channels={self.in_channels}: expected 1 (grey) or 3 (RGB); convert other "
                "images (e.g. drop alpha, pick channels) before training."
            )
        if self.presence_head and (self.arch != "tmunet" or self.num_classes != 1):
            raise ValueError(
                f"presence_head with arch={self.arch!r}, num_classes={self.num_classes}: a "
                "presence head needs a TM-UNet with one output class."
            )
        if len(self.channels) != 5:
            raise ValueError(f"channels={self.channels}: expected five positive widths C1..C5.")
        if self.arch == "tmunet":
            for c in self.channels[2:]:
                if c % self.num_heads or (c // self.num_heads) % 4:
                    raise ValueError(
                        f"channels={self.channels} with num_heads={self.num_heads}: C3..C5 must "
                        "split into heads whose size is a multiple of 4 (the q/k block size)."
                    )

    @classmethod
    def variant(cls, name: str, **overrides) -> ModelConfig:
        """The paper's t / s / b model (Table 3), with optional overrides."""
        if name not in VARIANTS:
            raise ValueError(f"variant {name!r}: expected one of {sorted(VARIANTS)}.")
        overrides.setdefault("channels", VARIANTS[name])
        return cls(**overrides)

    @classmethod
    def unet(cls, **overrides) -> ModelConfig:
        """The classic U-Net of Ronneberger et al. (64..1024 channels, BatchNorm)."""
        overrides.setdefault("channels", (64, 128, 256, 512, 1024))
        return cls(arch="unet", **overrides)

    def to_dict(self) -> dict:
        """Plain dict of builtins (lists, not tuples) for ``weights_only`` checkpoints."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["pool_sizes"] = list(self.pool_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Rebuild from ``to_dict()``; unknown keys are an error (a newer file format)."""
        return cls(**_known_keys(cls, d, "model config"))


# Every model pads its input to a multiple of STRIDE (TM-UNet's five stages halve it five
# times). Its deepest BatchNorm normalises features down-sampled by NORM_STRIDE: TM-UNet's
# first decoder stage (dec5) those at H/32, U-Net's bottleneck those at H/16.
STRIDE = 32
NORM_STRIDE = {"tmunet": 32, "unet": 16}


def samples_for_batchnorm(arch: str, size: tuple[int, int]) -> int:
    """The fewest samples a training batch of ``size`` (H, W) inputs needs for ``arch``'s
    BatchNorm statistics: 2 where its deepest BatchNorm sees a 1 x 1 map (TM-UNet at 32 x
    32: one value per channel from one sample, no variance), else 1."""
    cells = [math.ceil(side / STRIDE) * STRIDE // NORM_STRIDE[arch] for side in size]
    return 2 if cells[0] * cells[1] == 1 else 1


# ImageNet statistics: the released code normalises every dataset with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class InputConfig:
    """How raw images become model inputs; saved with the weights, read by inference.

    Attributes:
        size: (H, W) the model was trained at (images are resized to it, as the paper).
        mean, std: per-channel normalisation after intensities are mapped to [0, 1]
            (uint8 / 255, full-range uint16 / 65535, others, 14-bit data in uint16
            included, by robust percentiles; see ``preprocess.to_unit_float``).
        threshold: default probability threshold for a binary mask.
        min_confidence: default for dropping unsure objects: an object whose mean
            probability is below this is dropped (0: keep all; ``postprocess``).
        per_image_norm: standardise each image by its own per-channel mean and std
            (after the mapping to [0, 1]) instead of by ``mean`` and ``std``, as
            nnU-Net does for non-CT images: a scanner's gain and contrast or an
            endoscope's colour cast do not reach the model. Inference takes the stats of
            the whole image, the trainer those of each augmented sample;
            ``mean``/``std`` still map the trainer's stored images and its colour jitter.
    """

    size: tuple[int, int] = (512, 512)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    threshold: float = 0.5
    min_confidence: float = 0.0
    per_image_norm: bool = False

    def __post_init__(self):
        self.size = _int_tuple("size", self.size, MAX_INPUT_SIDE)
        self.mean = _float_tuple("mean", self.mean)
        self.std = _float_tuple("std", self.std)
        if len(self.size) != 2 or min(self.size) < 32:
            raise ValueError(f"size={self.size}: expected (H, W), each at least 32 pixels.")
        if not self.std or len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"mean={self.mean}, std={self.std}: expected equal lengths, std > 0.")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real):
            raise ValueError(f"threshold={self.threshold!r}: expected a number in (0, 1).")
        self.threshold = float(self.threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: expected a probability in (0, 1).")
        self.min_confidence = checked_min_confidence(self.min_confidence)
        if not isinstance(self.per_image_norm, bool):
            raise ValueError(f"per_image_norm={self.per_image_norm!r}: expected true or false.")

    @classmethod
    def for_channels(cls, channels: int, **overrides) -> InputConfig:
        """Defaults for 1 (grey) or 3 (RGB) channels."""
        if channels == 1:
            overrides.setdefault("mean", (sum(IMAGENET_MEAN) / 3,))
            overrides.setdefault("std", (sum(IMAGENET_STD) / 3,))
        return cls(**overrides)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> InputConfig:
        return cls(**_known_keys(cls, d, "input config"))


def checked_min_confidence(value) -> float:
    """``value`` as a float in [0, 1): the least mean probability an object keeps."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(
            f"min_confidence={value!r}: expected a probability in [0, 1) (0: keep all)."
        )
    return float(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value, low: int, high: int) -> int:
    """``value`` as an int when it is a whole number in [low, high] (not a bool or float)."""
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"{name}={value!r}: expected a whole number in {low}..{high}.")
    return int(value)


def _int_tuple(name: str, values, high: int) -> tuple[int, ...]:
    """A sequence of integers in 1..high as a tuple; anything else is a ValueError."""
    if isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}={values!r}: expected a list of whole numbers.")
    values = tuple(values)
    if len(values) > 16:
        raise ValueError(f"{name} has {len(values)} entries: expected a short list.")
    return tuple(_check_int(name, v, 1, high) for v in values)


def _float_tuple(name: str, values) -> tuple[float, ...]:
    """A short sequence of finite numbers as a tuple of floats."""
    if isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}={values!r}: expected a list of numbers.")
    values = tuple(values)
    if len(values) > 16 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise ValueError(f"{name}={list(values)!r}: expected a few finite numbers.")
    return tuple(float(v) for v in values)


def _known_keys(cls, d: dict, what: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{what} is a {type(d).__name__}, expected a mapping of settings.")
    if not all(isinstance(k, str) for k in d):
        raise ValueError(f"{what} has keys that are not names.")
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(
            f"{what} has unknown keys {sorted(unknown)}: the checkpoint was written by a newer "
            "napari-tmunet; upgrade the package to load it."
        )
    return dict(d)


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
    if mc.presence_head:
        label += " +presence head"
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
