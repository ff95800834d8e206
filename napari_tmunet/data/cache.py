"""The training cache: a decoded dataset at native resolution in one .npz file.

A ``NativeCache`` holds, per image/mask pair of a dataset folder (``datasets.scan_pairs``),
the image (H, W, C) uint8/uint16 with C in {1, 3}, the mask as booleans, the rule that
binarised the mask, and a content group (identical images share one, so a split keeps
them in one part). ``decode_folder`` makes one in memory; ``build_cache`` /
``NativeCache.save`` write it as one file, and ``load_cache`` reads it back to the same data.

Why: decoding thousands of JPEG/PNG/TIFF files is slow and needs the source folder;
one compact file is copied to a GPU machine (whose calls carry little data, see
docs/datasets.md) and read there in seconds. Format 3 keeps each image in its smallest
faithful form (JPEG source bytes, lossless WebP, 16-bit PNG), optionally shrunk to a
maximum side; formats 1 and 2 still load.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..storage import atomic_path
from ..words import plural
from .datasets import (
    DATASET_FOLDER,
    DatasetError,
    Pair,
    _group_ids,
    _listing,
    _scan_to_train,
    check_pair,
    content_hash,
    skippable,
)
from .images import ImageReadError
from .preprocess import data_ceiling, drop_alpha, to_unit_float

logger = logging.getLogger(__name__)

CACHE_FORMAT = "napari-tmunet-native-cache"
# 3: JPEG sources as their file bytes, 8-bit images as lossless WebP, optional max side;
# 2: lossless PNG bytes; 1: raw arrays. All three load.
CACHE_VERSION = 3
_JPEG_SUFFIXES = (".jpg", ".jpeg")
RESIZED_JPEG_QUALITY = 95  # a JPEG source shrunk for the cache is stored as JPEG again


class CacheItem(NamedTuple):
    """One decoded sample of a ``NativeCache``."""

    name: str
    image: np.ndarray  # (H, W, C) uint8 or uint16, C in {1, 3}
    mask: np.ndarray  # (H, W) bool


@dataclass(eq=False)
class NativeCache(Sequence):
    """A decoded dataset at native resolution; a sequence of ``CacheItem``."""

    names: list[str]
    images: list[np.ndarray]  # (H, W, C) uint8 or uint16, C in {1, 3}
    masks: list[np.ndarray]  # (H, W) bool
    rules: list[str]  # mask binarisation rule per item
    groups: list[int]  # content group per item (identical images share one)
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # source image file per item, if known

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return CacheItem(self.names[index], self.images[index], self.masks[index])

    def __iter__(self) -> Iterator[CacheItem]:
        return (self[i] for i in range(len(self)))

    def subset(self, indices: Sequence[int]) -> NativeCache:
        """A cache of the items at ``indices`` (arrays shared, not copied)."""
        return NativeCache(
            names=[self.names[i] for i in indices],
            images=[self.images[i] for i in indices],
            masks=[self.masks[i] for i in indices],
            rules=[self.rules[i] for i in indices],
            groups=[self.groups[i] for i in indices],
            source=self.source,
            skipped=list(self.skipped),
            files=[self.files[i] for i in indices] if self.files else [],
        )

    def rule_counts(self) -> dict[str, int]:
        """How many masks each binarisation rule was used for."""
        return dict(Counter(self.rules))

    def save(self, path: str | os.PathLike, max_side: int = 0) -> Path:
        """Write the cache as one compact .npz file (atomic).

        Per image, the smallest faithful form: a JPEG source file's bytes as they are
        (when they decode to the stored image; re-encoding only grows them); 8-bit grey
        or RGB as lossless WebP (~30% below PNG on colonoscopy frames), 16-bit grey as
        PNG, anything else as a raw array. Grey images are one channel (``_cache_image``).

        Args:
            max_side: when > 0, images (and masks) whose longer side exceeds it are
                shrunk to it (Lanczos; masks by area, >= 0.5) before storing; a shrunk
                JPEG source is stored as JPEG at quality ``RESIZED_JPEG_QUALITY``.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        mask_shapes, channels = [], []
        for i, (image, mask) in enumerate(zip(self.images, self.masks, strict=True)):
            file = self.files[i] if i < len(self.files) else ""
            kind, data, mask = _encode_item(image, mask, file, max_side)
            arrays[f"{kind}_{i:06d}"] = data
            arrays[f"mask_{i:06d}"] = np.packbits(mask.reshape(-1))
            mask_shapes.append(list(mask.shape))
            channels.append(int(image.shape[-1]))
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "source": self.source,
            "names": self.names,
            "rules": self.rules,
            "groups": [int(g) for g in self.groups],
            "mask_shapes": mask_shapes,
            "channels": channels,
            "max_side": int(max_side),
            "skipped": [list(s) for s in self.skipped],
        }
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            np.savez_compressed(file, **arrays)
        return path


def decode_folder(
    root: str | os.PathLike,
    skip_bad: bool = False,
    max_images: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> NativeCache:
    """Decode a dataset folder into an in-memory ``NativeCache`` (nothing written).

    Images are stored (H, W, C) with alpha dropped and grey stored as RGB as one channel
    (the model input is the same): uint8 and uint16 as they are, bool
    as 0/255 uint8, other dtypes mapped by ``to_unit_float`` to uint16 (with a warning),
    so a folder and the cache file made from it (``build_cache``) give the same data.

    Args:
        root: dataset folder (``images/`` + ``masks/``, or pictures with their masks
            beside them: ``datasets.scan_pairs``).
        skip_bad: leave unreadable or mismatched pairs out (listed in ``skipped``).
        max_images: decode only the first N pairs in natural name order (0 = all).
        workers: threads that decode.
        progress: called as ``progress(done, total)`` after each pair.
    """
    report = _scan_to_train(root, skip_bad)
    pairs = report.pairs[:max_images] if max_images else report.pairs
    cache = NativeCache([], [], [], [], [], source=str(Path(root)), skipped=list(report.skipped))
    hashes: list[str] = []
    converted: list[str] = []

    def decode(pair: Pair):
        try:
            return check_pair(pair)
        except (ImageReadError, DatasetError) as error:
            if not skip_bad:
                fix, skip = "fix this file", "skip such pairs"
                raise skippable(type(error), str(error), fix, skip) from error
            return error

    pool = ThreadPoolExecutor(max(1, workers))
    try:
        decoded_pairs = zip(pairs, pool.map(decode, pairs), strict=True)
        for done, (pair, decoded) in enumerate(decoded_pairs, start=1):
            if isinstance(decoded, Exception):
                cache.skipped.append((pair.name, str(decoded)))
            else:
                image, mask, rule = decoded
                hashes.append(content_hash(image))
                stored, was_converted = _cache_image(image)
                if was_converted:
                    converted.append(f"{pair.name} ({image.dtype})")
                cache.names.append(pair.name)
                cache.images.append(stored)
                cache.masks.append(mask)
                cache.rules.append(rule)
                cache.files.append(str(pair.image_path))
            if progress is not None:
                progress(done, len(pairs))
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, decode no more
    if not cache.names:
        raise DatasetError(f"{root}: no usable image/mask pairs")
    cache.groups = _group_ids(hashes)
    if converted:
        logger.warning("mapped to uint16 by percentiles: %s", _listing(converted))
    if cache.skipped:
        logger.warning(
            "%s: skipped %s: %s",
            root,
            plural(len(cache.skipped), "item"),
            "; ".join(f"{n}: {e}" for n, e in cache.skipped[:10]),
        )
    logger.info("%s: %d pairs, mask rules %s", root, len(cache), cache.rule_counts())
    return cache


def build_cache(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    max_side: int = 0,
) -> NativeCache:
    """Decode a dataset folder once (``decode_folder``) and save it as a cache file.

    Args:
        root: dataset folder (either layout of ``datasets.scan_pairs``).
        out_path: the .npz file to write.
        skip_bad: leave unreadable or mismatched pairs out (listed in ``skipped``).
        progress: called as ``progress(done, total)`` after each pair.
        workers: threads that decode.
        max_side: store images at most this long on their longer side (see ``save``;
            the returned in-memory cache keeps native resolution).
    """
    cache = decode_folder(root, skip_bad=skip_bad, workers=workers, progress=progress)
    cache.save(out_path, max_side=max_side)
    return cache


def is_cache_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that ``NativeCache.save`` wrote (any format version):
    its ``meta`` entry names ``CACHE_FORMAT``. Reads only that entry."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"])) if "meta" in npz.files else {}
    except Exception:  # noqa: BLE001  (unreadable, not an .npz, a folder: not a cache)
        return False
    return isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT


def load_cache(path: str | os.PathLike) -> NativeCache:
    """Read a file written by ``build_cache`` / ``NativeCache.save``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"cache file {path} does not exist; build one with build_cache")
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and advise that
        raise DatasetError(
            f"{path} is not a cache file (an .npz archive made by `napari-tmunet-train "
            f"cache`); give {DATASET_FOLDER} or such a cache file"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "meta" not in npz.files:
                raise DatasetError(f"{path} is not a napari-tmunet cache (no 'meta' entry)")
            meta = json.loads(str(npz["meta"]))
            if meta.get("format") != CACHE_FORMAT or meta.get("version", 0) > CACHE_VERSION:
                raise DatasetError(
                    f"{path}: cache format {meta.get('format')!r} version {meta.get('version')} "
                    f"is not readable by this version (expects {CACHE_FORMAT} <= {CACHE_VERSION})"
                )
            images, masks = [], []
            channels = meta.get("channels") or [0] * len(meta["mask_shapes"])
            for i, shape in enumerate(meta["mask_shapes"]):
                images.append(_decode_item(npz, i, channels[i]))
                bits = np.unpackbits(npz[f"mask_{i:06d}"], count=math.prod(shape))
                masks.append(bits.reshape(shape).astype(bool))
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(f"cannot read cache {path}: {type(error).__name__}: {error}") from error
    cache = NativeCache(
        names=list(meta["names"]),
        images=images,
        masks=masks,
        rules=list(meta["rules"]),
        groups=[int(g) for g in meta["groups"]],
        source=meta.get("source", ""),
        skipped=[tuple(s) for s in meta.get("skipped", [])],
    )
    logger.info(
        "%s: %d pairs from %s, mask rules %s", path, len(cache), cache.source, cache.rule_counts()
    )
    return cache


def _cache_image(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """Image -> (H, W, C) uint8/uint16 with C in {1, 3}; True when values were remapped."""
    image = image[..., None] if image.ndim == 2 else drop_alpha(image)  # (H, W, C)
    if image.shape[-1] == 3 and _is_grey(image):
        image = image[..., :1]  # grey stored as RGB (BUSI): one channel, same model input
    if image.dtype == bool:
        return image.astype(np.uint8) * np.uint8(255), False
    if image.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(image), False
    return np.round(to_unit_float(image) * 65535).astype(np.uint16), True


def _is_grey(rgb: np.ndarray) -> bool:
    """Whether the three channels of an (H, W, 3) image are equal everywhere."""
    first = rgb[..., 0]
    return bool(np.array_equal(first, rgb[..., 1]) and np.array_equal(first, rgb[..., 2]))


def _encode_item(
    image: np.ndarray, mask: np.ndarray, file: str, max_side: int
) -> tuple[str, np.ndarray, np.ndarray]:
    """(kind, stored data, stored mask) of one cache item; kind names its npz key."""
    is_jpeg = Path(file).suffix.lower() in _JPEG_SUFFIXES
    if max_side and max(mask.shape) > max_side:
        image, mask = shrink(image, mask, max_side)
        if is_jpeg and image.dtype == np.uint8:
            return "jpg", _encode(image, "JPEG", quality=RESIZED_JPEG_QUALITY), mask
    elif is_jpeg:
        data = np.fromfile(file, np.uint8)
        if np.array_equal(_decode(data), image):  # e.g. not with an EXIF rotation
            return "jpg", data, mask
    if image.dtype == np.uint8 and max(image.shape[:2]) <= 16383 and _has_webp():
        # effort 1/50: 4x faster than Pillow's default, 3% larger (ClinicDB: 66 vs 89 KB PNG)
        return "webp", _encode(image, "WEBP", lossless=True, method=1, quality=50), mask
    if image.dtype == np.uint8 or image.shape[-1] == 1:  # PNG: 8-bit, or 16-bit grey
        return "png", _encode(image, "PNG", compress_level=9), mask
    return "image", image, mask


def shrink(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) uint8/uint16 image and (H, W) mask scaled so the longer side is max_side.

    Lanczos for the image (per channel, in float, rounded and clipped back: to the
    type's range, or, when it does not use that range, to its own maximum capped at 1/4
    of the type's (``preprocess.data_ceiling``), so 14-bit data stays 14-bit, with or
    without a few hot pixels at 65535, and keeps ``preprocess.to_unit_float``'s rule),
    area average >= 0.5 for the mask; the aspect ratio is kept.
    """
    from PIL import Image

    h, w = mask.shape
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL order: (W, H)
    planes = [  # per channel in float: Pillow resizes 16-bit and float only as mode F
        np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize(size, Image.LANCZOS))
        for plane in np.moveaxis(image.astype(np.float32), -1, 0)
    ]
    small = np.clip(np.rint(np.stack(planes, -1)), 0, data_ceiling(image)).astype(
        image.dtype
    )  # (h', w', C)
    area = np.asarray(Image.fromarray(mask.astype(np.float32)).resize(size, Image.BOX))
    return small, area >= 0.5


def _has_webp() -> bool:
    from PIL import features

    return bool(features.check("webp"))


def _encode(image: np.ndarray, fmt: str, **options) -> np.ndarray:
    """(H, W, C) image with C in {1, 3} -> file bytes in a Pillow format."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buffer, format=fmt, **options
    )
    return np.frombuffer(buffer.getvalue(), np.uint8)


def _decode(data: np.ndarray, channels: int = 0) -> np.ndarray:
    """File bytes -> (H, W, C) array as ``_cache_image`` stores it.

    ``channels`` (from the cache's meta; 0 = as decoded) restores one channel where the
    codec gave three (WebP keeps grey as RGB).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data.tobytes())) as picture:
        array = np.array(picture)  # writable, as arrays from np.load
    if array.dtype.byteorder == ">" or array.dtype == np.int32:  # 16-bit grey modes
        array = array.astype(np.uint16)
    if channels == 1 and array.ndim == 3:
        return array[..., :1]
    return _cache_image(array)[0]


def _decode_item(npz, index: int, channels: int) -> np.ndarray:
    """Image ``index`` of an opened cache file, whichever form it was stored in."""
    for kind in ("jpg", "webp", "png"):
        key = f"{kind}_{index:06d}"
        if key in npz.files:
            return _decode(npz[key], channels)
    return npz[f"image_{index:06d}"]
