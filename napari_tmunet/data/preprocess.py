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
# Unsigned integers wider than 8 bits whose values, but for a few hot or saturated pixels
# (their HIGH_PERCENTILE), stay below their top 2 bits (uint16: at most 16383) hold 14-bit
# (or 12-, 10-bit) data, and are mapped by their robust range.
_UNUSED_TOP_BITS = 2


def has_nominal_range(image: np.ndarray, value_range: tuple[float, float] | None = None) -> bool:
    """Whether ``to_unit_float`` (given the same ``value_range``) maps this image by its
    type's range (pixel by pixel).

    True for bool, uint8 and wider unsigned integers that use their range (see
    :func:`to_unit_float`); floats need a look at their values, signed integers never
    have one.
    """
    image = np.asarray(image)
    if image.dtype.kind == "b":
        return True
    return image.dtype.kind == "u" and _uses_its_range(image, value_range)


def to_unit_float(image: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale an image to float32 in [0, 1], same shape; one rule for every dtype.

    - bool -> 0/1; uint8 -> / 255; wider unsigned integers whose 99.8th percentile (the
      top of their robust range) is above 1/4 of their type's maximum (uint16: above
      16383) -> divided by that maximum (uint16 / 65535), as ``skimage.img_as_float``
      does;
    - floats whose finite values lie in [0, 1] -> taken as they are;
    - anything else (signed integers, floats outside [0, 1], and wider unsigned integers
      whose 99.8th percentile is at or below 1/4 of their maximum) -> by its robust
      range, the 1st and 99.8th percentiles, clipped (alpha, the last channel of
      (H, W, 2|4), does not enter the percentiles; a constant image maps to 0).

    Why the uint16 exception: cameras, scanners and ultrasound machines store 14-bit (or
    12-, 10-bit) data in 16-bit files, values up to 16383. Divided by 65535 such an image
    is at most 25% bright (12-bit: 6%), too dark for a model trained on 8-bit pictures (a
    14-bit ultrasound frame gave an empty mask); by its own range it looks as it does in
    napari, which shows it by its contrast limits. The rule goes by the percentile, not
    the maximum, because a camera's hot or saturated pixel at 65535 is common: by the
    maximum, one such pixel switched a whole 14-bit image to / 65535 (an empty mask); by
    the percentile it is clipped like any other outlier. The trainer and inference both map
    images here (``inference.FrameInput``), so a 14-bit training image and a 14-bit image
    to segment get the same rule.

    So an 8-bit image converted with ``skimage.img_as_uint`` or ``img_as_float`` maps to
    the same values, hence the same labels. Non-finite values become 0 (+inf: 1).

    Args:
        value_range: (low, high) for the robust rule instead of this array's own
            percentiles, e.g. those of a whole image of which ``image`` is a band
            (:func:`robust_range`); for a wider unsigned integer its top also decides
            the rule, as the image's own 99.8th percentile would.
    """
    image = np.asarray(image)
    rule, low, high = _rule(image, value_range)
    if rule == "bool":
        return image.astype(np.float32)
    if rule == "unit":
        out = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        return out.astype(np.float32, copy=False)
    # float64 first: x * 257 / 65535 and x / 255 then round to the same float32
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-12)
    scaled = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return scaled.astype(np.float32)


def describe_mapping(image: np.ndarray, value_range: tuple[float, float] | None = None) -> str:
    """The rule ``to_unit_float`` applies to this image, in words.

    E.g. "uint8 / 255", "float32 in [0, 1] as is",
    "int16 percentiles 1-99.8 (412-3980) -> [0,1]" or, for a wider unsigned integer that
    does not use its range, "uint16 of 14-bit data (max 16320) percentiles 1-99.8
    (0-16064) -> [0,1]" (the max leaves out hot or saturated pixels above 16383 and
    counts them: "(max 16320; 1 pixel above 16383, clipped)").
    """
    image = np.asarray(image)
    rule, low, high = _rule(image, value_range)
    if rule == "bool":
        return "bool -> 0/1"
    if rule == "dtype":
        return f"{image.dtype} / {high:g}"
    if rule == "unit":
        return f"{image.dtype} in [0, 1] as is"
    if high <= low:
        return f"{image.dtype} constant ({low:.6g}) -> 0"
    return (
        f"{_dtype_words(image, value_range)} percentiles {LOW_PERCENTILE:g}-{HIGH_PERCENTILE:g} "
        f"({low:.6g}-{high:.6g}) -> [0,1]"
    )


def _dtype_words(image: np.ndarray, value_range: tuple[float, float] | None) -> str:
    """The dtype, and for a wider unsigned integer mapped by its own range the bits its
    data uses ("uint16 of 14-bit data (max 16320)"): why it is not divided by its type's
    max. Hot or saturated pixels above 1/4 of the type's max (uint16: 16383) are counted
    apart ("uint16 of 14-bit data (max 16320; 1 pixel above 16383, clipped)")."""
    if image.dtype.kind != "u" or value_range is not None or image.size == 0:
        return str(image.dtype)
    values = drop_alpha(image)
    limit = _data_top(image.dtype)
    over = values > limit
    hot = int(np.count_nonzero(over))
    top = int(values[~over].max()) if hot < values.size else 0
    words = f"{image.dtype} of {max(top.bit_length(), 1)}-bit data (max {top}"
    if hot:
        words += f"; {hot} pixel{'s' * (hot != 1)} above {limit}, clipped"
    return words + ")"


def _rule(
    image: np.ndarray, value_range: tuple[float, float] | None = None
) -> tuple[str, float, float]:
    """("bool" | "dtype" | "unit" | "robust", low, high) of ``to_unit_float``'s rule."""
    kind = image.dtype.kind
    if kind == "b":
        return "bool", 0.0, 1.0
    if kind == "u":
        if image.dtype.itemsize > 1 and image.size:
            value_range = robust_range(image) if value_range is None else value_range
        if _uses_its_range(image, value_range):
            return "dtype", 0.0, float(np.iinfo(image.dtype).max)
    if kind == "f":
        finite = image[np.isfinite(image)] if image.size else image
        if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
            return "unit", 0.0, 1.0
    low, high = robust_range(image) if value_range is None else value_range
    return "robust", low, high


def _uses_its_range(image: np.ndarray, value_range: tuple[float, float] | None = None) -> bool:
    """Whether an unsigned integer image's robust range (:func:`robust_range`, or
    ``value_range`` when given: a band of a larger image) goes above 1/4 of its type's
    maximum; always for uint8 and empty images.

    By the 99.8th percentile, not the maximum: a few hot or saturated pixels at 65535 in
    14-bit data do not make the whole image / 65535.
    """
    if image.dtype.itemsize == 1 or image.size == 0:
        return True
    high = (robust_range(image) if value_range is None else value_range)[1]
    return high > _data_top(image.dtype)


def _data_top(dtype: np.dtype) -> int:
    """1/4 of an unsigned integer type's maximum (uint16: 16383): the most that data
    mapped by its own range (14 bits or fewer) holds."""
    return int(np.iinfo(dtype).max >> _UNUSED_TOP_BITS)


def data_ceiling(image: np.ndarray) -> int:
    """The highest value an unsigned integer image may hold and keep ``to_unit_float``'s
    rule: its type's maximum when it uses its range, else its own maximum, at most 1/4
    of the type's (uint16: 16383; higher hot pixels are clipped by the rule anyway)."""
    image = np.asarray(image)
    if has_nominal_range(image):
        return int(np.iinfo(image.dtype).max)
    return min(int(drop_alpha(image).max()), _data_top(image.dtype))


def drop_alpha(image: np.ndarray) -> np.ndarray:
    """The colour channels of an image: (H, W, 2|4) loses its last (alpha) channel."""
    return image[..., :-1] if image.ndim == 3 and image.shape[-1] in (2, 4) else image


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
    image = drop_alpha(image).astype(np.float32, copy=False)
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


# A channel flatter than this is only shifted by per-image standardisation, not
# stretched: the std of a black frame with a few noisy pixels must not blow them up.
MIN_IMAGE_STD = 1e-2


def channel_stats(chw: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a (C, H, W) image, the std at least
    :data:`MIN_IMAGE_STD`: the ``mean``/``std`` of per-image standardisation."""
    chw = np.asarray(chw, dtype=np.float32)
    flat = chw.reshape(chw.shape[0], -1).astype(np.float64)  # (C, HW)
    mean = flat.mean(axis=1)
    std = np.maximum(flat.std(axis=1), MIN_IMAGE_STD)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def to_model_input(
    image: np.ndarray, channels: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Raw image -> normalised (channels, H, W) float32 model input."""
    return normalize(to_channels(to_unit_float(image), channels), mean, std)


def robust_range(image: np.ndarray) -> tuple[float, float]:
    """1st and 99.8th percentiles of the finite colour values; min/max if they coincide."""
    values = drop_alpha(image).reshape(-1)
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
