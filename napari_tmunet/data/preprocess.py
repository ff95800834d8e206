"""Mapping raw images to model inputs; the one path shared by trainer and inference.

Order: ``to_unit_float`` (dtype -> [0, 1]), ``to_channels`` (layout -> (C, H, W)),
``normalize`` (channel-wise mean/std); ``to_model_input`` does all three.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
# Percentiles of very large images are estimated on a regular subsample of this many values.
_PERCENTILE_SAMPLES = 1 << 22


def to_unit_float(
    image: np.ndarray, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Scale an image to float32 in [0, 1], same shape.

    uint8 is divided by 255, bool becomes 0/1; any other dtype (uint16, int, float) is
    mapped by its robust range, the 1st and 99.8th percentiles, and clipped. Alpha
    (last channel of (H, W, 2|4)) does not enter the percentiles. NaN and -inf become
    0, +inf 1. A constant image maps to 0.

    Args:
        value_range: (low, high) to use instead of this array's own percentiles, e.g.
            those of a whole image of which ``image`` is a band (``robust_range``).
    """
    image = np.asarray(image)
    if image.dtype == bool:
        return image.astype(np.float32)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    low, high = robust_range(image) if value_range is None else value_range
    scaled = (image.astype(np.float32) - np.float32(low)) / np.float32(max(high - low, 1e-12))
    scaled = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return scaled.astype(np.float32, copy=False)


def describe_mapping(image: np.ndarray, value_range: tuple[float, float] | None = None) -> str:
    """The rule ``to_unit_float`` applies to this image, in words.

    E.g. "uint8 / 255" or "uint16 percentiles 1-99.8 (412-3980) -> [0,1]".
    """
    image = np.asarray(image)
    if image.dtype == bool:
        return "bool -> 0/1"
    if image.dtype == np.uint8:
        return "uint8 / 255"
    low, high = robust_range(image) if value_range is None else value_range
    if high <= low:
        return f"{image.dtype} constant ({low:.6g}) -> 0"
    return (
        f"{image.dtype} percentiles {LOW_PERCENTILE:g}-{HIGH_PERCENTILE:g} "
        f"({low:.6g}-{high:.6g}) -> [0,1]"
    )


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Bring an (H, W) or (H, W, C) image into (channels, H, W) float32.

    Grey is replicated to ``channels``; alpha (C = 2 or 4) is dropped; RGB becomes grey
    by the channel mean when ``channels == 1``. Values are not rescaled: call
    ``to_unit_float`` first.
    """
    image = np.asarray(image)
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    expected = "(H, W) grey or (H, W, C) channels-last with C in 1..4"
    if image.size == 0:
        raise ValueError(f"empty image of shape {image.shape}; expected {expected}")
    if image.ndim == 2:
        image = image[..., None]  # (H, W, 1)
    elif image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"image of shape {image.shape}; expected {expected}")
    if image.shape[-1] in (2, 4):
        image = image[..., :-1]  # drop alpha
    image = image.astype(np.float32, copy=False)
    if image.shape[-1] == 1:
        grey = image[..., 0]  # (H, W)
        return np.ascontiguousarray(np.broadcast_to(grey, (channels, *grey.shape)))
    if channels == 1:
        return image.mean(axis=-1, dtype=np.float32)[None]  # (1, H, W)
    if channels == 3:
        return np.ascontiguousarray(image.transpose(2, 0, 1))  # (3, H, W)
    raise ValueError(
        f"cannot map an RGB image of shape {image.shape} to {channels} channels; "
        "use channels=1 or channels=3"
    )


def normalize(chw, mean: Sequence[float], std: Sequence[float]):
    """Channel-wise ``(x - mean) / std`` as float32.

    ``chw`` is a (C, H, W) NumPy array, or a torch tensor of (..., C, H, W) on any device
    (the trainer normalises its training batches on the GPU with this same function); the
    result is of the same kind.
    """
    is_tensor = not isinstance(chw, np.ndarray) and hasattr(chw, "new_tensor")
    chw = chw.float() if is_tensor else np.asarray(chw, dtype=np.float32)
    mean_a = np.asarray(mean, dtype=np.float32).reshape(-1)
    std_a = np.asarray(std, dtype=np.float32).reshape(-1)
    if chw.ndim != 3 and not (is_tensor and chw.ndim > 3):
        raise ValueError(f"expected a (C, H, W) array, got shape {tuple(chw.shape)}")
    channels = chw.shape[-3]
    if mean_a.size != channels or std_a.size != channels:
        raise ValueError(
            f"mean ({mean_a.size} values) and std ({std_a.size} values) must have one value "
            f"per channel; the image has {channels} channels"
        )
    if (std_a <= 0).any():
        raise ValueError(f"std must be > 0 for every channel, got {std_a.tolist()}")
    if is_tensor:
        mean_a, std_a = chw.new_tensor(mean_a), chw.new_tensor(std_a)
    return (chw - mean_a[:, None, None]) / std_a[:, None, None]


def to_model_input(
    image: np.ndarray, channels: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Raw image -> normalised (channels, H, W) float32 model input."""
    return normalize(to_channels(to_unit_float(image), channels), mean, std)


def robust_range(image: np.ndarray) -> tuple[float, float]:
    """1st and 99.8th percentiles of the finite colour values; min/max if they coincide."""
    values = image[..., :-1] if image.ndim == 3 and image.shape[-1] in (2, 4) else image
    values = values.reshape(-1)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    if values.size > _PERCENTILE_SAMPLES:
        values = values[:: values.size // _PERCENTILE_SAMPLES]
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        low, high = values.min(), values.max()
    return float(low), float(high)
