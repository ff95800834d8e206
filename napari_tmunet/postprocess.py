"""From a kept probability map to labels, without running the network again (no Qt).

Segment keeps each prediction's foreground probability as uint8 (``compact``: 1 byte a
pixel, a quarter of float32) and derives the labels from it with :func:`derive_labels`:
threshold, removal of unsure objects, hole filling, removal of small objects, optional
instance split. Moving a
threshold in the dock re-runs only this (well under a second for 1000 x 1000 pixels).
:func:`edited_pixels` compares what the user painted with what the model gave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .config import checked_min_confidence

LEVELS = 255  # the compact probability p is stored as round(p * LEVELS)


@dataclass(frozen=True)
class LabelOptions:
    """How labels are derived from a probability map.

    Attributes:
        threshold: foreground where the probability is above this, in (0, 1).
        instances: split touching objects (distance-transform watershed) into instances.
        fill_holes: fill background enclosed by an object.
        min_size: objects smaller than this many pixels are dropped (0: keep all).
        min_confidence: objects whose mean probability is below this are dropped (0: keep
            all); see :func:`drop_unsure`.
    """

    threshold: float = 0.5
    instances: bool = False
    fill_holes: bool = False
    min_size: int = 0
    min_confidence: float = 0.0

    def __post_init__(self):
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold={self.threshold}: expected a probability in (0, 1).")
        if int(self.min_size) < 0:
            raise ValueError(f"min_size={self.min_size}: expected 0 or more pixels.")
        checked_min_confidence(self.min_confidence)

    def to_dict(self) -> dict:
        return asdict(self)

    def ungated(self) -> LabelOptions:
        """The same options without the confidence gate: what it hides, it hides from these."""
        return replace(self, min_confidence=0.0)


def compact(probability: np.ndarray) -> np.ndarray:
    """float probability in [0, 1] -> uint8 ``round(p * 255)``, same shape."""
    scaled = np.clip(np.asarray(probability, np.float32) * LEVELS, 0, LEVELS)
    return np.rint(scaled).astype(np.uint8)


def expand(compact_probability: np.ndarray) -> np.ndarray:
    """uint8 compact probability -> float32 in [0, 1]."""
    return compact_probability.astype(np.float32) / np.float32(LEVELS)


def foreground(compact_probability: np.ndarray, options: LabelOptions) -> np.ndarray:
    """Binary foreground (..., H, W) of a compact probability: threshold, holes, small objects."""
    mask = compact_probability > np.float32(options.threshold * LEVELS)
    if options.min_confidence:
        cutoff = options.min_confidence * LEVELS
        for index in np.ndindex(mask.shape[:-2]):  # slice by slice
            mask[index] = drop_unsure(mask[index], compact_probability[index], cutoff)
    return _cleaned(mask, options)


def _cleaned(mask: np.ndarray, options: LabelOptions) -> np.ndarray:
    """A copy of a (..., H, W) bool mask with holes filled and small objects dropped slice
    by slice, as ``options`` say (``mask`` itself when they ask neither)."""
    if options.fill_holes or options.min_size:
        mask = mask.copy()
        for index in np.ndindex(mask.shape[:-2]):
            mask[index] = _clean(mask[index], options)
    return mask


def drop_unsure(mask: np.ndarray, probability: np.ndarray, min_confidence: float) -> np.ndarray:
    """(H, W) mask without the objects whose mean probability is below ``min_confidence``.

    Objects are 4-connected components of ``mask`` (as ``min_size`` counts them);
    ``probability`` is (H, W) on the scale of ``min_confidence`` (float in [0, 1], or
    compact 0..255 with a cutoff scaled alike). A model's faint guess on an image without
    a lesion is one object of middling probability; a lesion it sees is mostly near 1.
    """
    from scipy import ndimage as ndi

    if min_confidence <= 0:
        return mask
    components, n = ndi.label(mask)
    if not n:
        return mask
    means = ndi.mean(probability, components, index=np.arange(1, n + 1))  # (n,)
    keep = np.concatenate([[False], np.asarray(means) >= min_confidence])  # (n + 1,)
    return keep[components]


def derive_labels(compact_probability: np.ndarray, options: LabelOptions) -> np.ndarray:
    """Labels (..., H, W) of a compact probability: uint8 0/1, or int32 instance ids.

    Instance ids are unique across the slices of a stack; the split is
    :func:`split_instances`.
    """
    return _labels_of(foreground(compact_probability, options), options)


def gated_out(compact_probability: np.ndarray, options: LabelOptions) -> tuple[int, int]:
    """(objects, pixels) that the confidence gate of ``options`` hides: the foreground the
    same options give without the gate, less the one they give with it; objects are its
    4-connected components per slice. (0, 0) without a gate."""
    if not options.min_confidence:
        return 0, 0
    hidden = foreground(compact_probability, options.ungated())
    hidden &= ~foreground(compact_probability, options)
    return count_objects(hidden.astype(np.uint8)), int(np.count_nonzero(hidden))


def mask_labels(mask: np.ndarray, options: LabelOptions) -> np.ndarray:
    """Labels (..., H, W) of a binary mask made without a kept probability (an image
    segmented in bands): holes filled, small objects dropped and instances split as
    ``options`` say; its threshold was applied when the mask was made, and no confidence
    gate can be (it needs the probability)."""
    return _labels_of(_cleaned(np.asarray(mask) > 0, options), options)


def _labels_of(mask: np.ndarray, options: LabelOptions) -> np.ndarray:
    """A binary foreground as uint8 0/1, or int32 instance ids unique across slices."""
    if not options.instances:
        return mask.astype(np.uint8)
    labels = np.zeros(mask.shape, np.int32)
    next_label = 0
    for index in np.ndindex(mask.shape[:-2]):
        frame = merge_small_instances(split_instances(mask[index]), options.min_size)
        frame[frame > 0] += next_label
        next_label = max(next_label, int(frame.max()))
        labels[index] = frame
    return labels


def split_instances(mask: np.ndarray, split_depth: float = 2.0) -> np.ndarray:
    """Instance labels of a 2-D binary mask; touching objects split by a watershed.

    Markers are the maxima of the distance transform that stand at least ``split_depth``
    pixels above their surroundings (h-maxima), so a shallow neck does not split an
    elongated object; objects without such a maximum keep one label. The h-maxima are
    found object by object in each bounding box (plus a one-pixel border): objects do not
    touch (8-connectivity), so the markers are those of the whole image, about twice as
    fast on a 1000 x 1000 nuclei mask. Used by inference and by the live re-threshold.

    Markers, flooding and markerless objects are all 8-connected, as the objects are: a
    4-connected flood leaves pixels that touch an instance only at a corner as 1-2 px
    instances of their own, and a maximum whose pixels touch only at corners as several
    markers (one nucleus cut in two).

    Returns:
        (H, W) int32 labels, 0 background, 1..N objects.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask of shape {mask.shape}: expected a 2-D (H, W) mask.")
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = ndi.distance_transform_edt(mask).astype(np.float32)  # (H, W)
    eight = np.ones((3, 3), bool)
    objects, _ = ndi.label(mask, structure=eight)
    peaks = np.zeros(mask.shape, bool)
    height, width = mask.shape
    for index, box in enumerate(ndi.find_objects(objects), start=1):
        ys = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
        xs = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width))
        own = objects[ys, xs] == index
        crop = np.where(own, distance[ys, xs], 0)
        if crop.max() >= split_depth:
            peaks[ys, xs] |= h_maxima(crop, split_depth).astype(bool) & own
    markers, n_markers = ndi.label(peaks, structure=eight)
    labels = watershed(-distance, markers, mask=mask, connectivity=2).astype(np.int32)
    orphans, n_orphans = ndi.label(mask & (labels == 0), structure=eight)  # no marker
    if n_orphans:
        labels[orphans > 0] = orphans[orphans > 0] + n_markers
    return labels


def merge_small_instances(labels: np.ndarray, min_size: int) -> np.ndarray:
    """(H, W) instance labels in which each instance smaller than ``min_size`` pixels joins
    the instance it shares the longest border with (a sliver the watershed cut off an
    object is part of it), or is dropped when it touches none; ids renumbered 1..N.
    ``labels`` unchanged (a copy is returned) with ``min_size`` 0.

    Small objects of the binary mask were dropped before the split (``_clean``); this
    holds the same size for the instances the split makes, so no instance shown is
    smaller than the Min. size asked.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential

    labels = np.array(labels, dtype=np.int32)
    if not min_size or not labels.any():
        return labels
    sizes = np.bincount(labels.ravel())  # (N + 1,)
    boxes = ndi.find_objects(labels)
    height, width = labels.shape
    for label in np.argsort(sizes, kind="stable"):  # smallest first: merged ones grow
        if label == 0 or not 0 < sizes[label] < min_size or boxes[label - 1] is None:
            continue
        ys, xs = boxes[label - 1]
        ys = slice(max(ys.start - 1, 0), min(ys.stop + 1, height))
        xs = slice(max(xs.start - 1, 0), min(xs.stop + 1, width))
        crop = labels[ys, xs]  # a view: the merge writes through
        own = crop == label
        border = ndi.binary_dilation(own, structure=np.ones((3, 3), bool)) & ~own
        touching = np.bincount(crop[border], minlength=1)
        touching[0] = 0
        into = int(touching.argmax()) if touching.any() else 0
        crop[own] = into
        if into:  # its box grows by the one merged in (which may be merged on in turn)
            other = boxes[into - 1]
            boxes[into - 1] = tuple(
                slice(min(a.start, b.start), max(a.stop, b.stop))
                for a, b in zip(other, boxes[label - 1], strict=True)
            )
            sizes[into] += sizes[label]
        sizes[label] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def count_objects(labels: np.ndarray) -> int:
    """Objects in labels: instance ids, or connected components of a binary mask."""
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if labels.size == 0 or not labels.any():
        return 0
    if labels.max() > 1:
        return int(np.unique(labels[labels > 0]).size)
    count = 0
    for index in np.ndindex(labels.shape[:-2]):
        count += ndi.label(labels[index] > 0)[1]
    return int(count)


def edited_pixels(painted: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Boolean map of pixels whose foreground the user changed (painted vs the model's)."""
    return (np.asarray(painted) > 0) != (np.asarray(model) > 0)


def _clean(mask: np.ndarray, options: LabelOptions) -> np.ndarray:
    """One (H, W) mask with holes filled and small objects dropped, as asked."""
    from scipy import ndimage as ndi

    if options.fill_holes:
        mask = ndi.binary_fill_holes(mask)
    if options.min_size:
        components, n = ndi.label(mask)
        if n:
            sizes = np.bincount(components.ravel())  # (n + 1,)
            keep = sizes >= options.min_size
            keep[0] = False
            mask = keep[components]
    return mask


# Layer metadata of a Segment result reopened from a TIFF the TM-UNet writer saved: the
# model's own foreground as the file kept it (bool, the labels' shape), with no probability.
SAVED_PREDICTION_KEY = "tmunet_prediction"


def made_by_segment(metadata: dict) -> bool:
    """Whether layer metadata are those of a Segment result, open since Segment made it
    or reopened from a TM-UNet TIFF (its prediction kept either way)."""
    return "tmunet_probability" in metadata or SAVED_PREDICTION_KEY in metadata


def kept_prediction(metadata: dict) -> np.ndarray | None:
    """The model's own foreground of a Segment result, from its layer metadata.

    Segment keeps the compact probability (``tmunet_probability``) and the options the
    labels were derived with (``label_options``); a result reopened from a TM-UNet TIFF
    keeps the foreground itself (:data:`SAVED_PREDICTION_KEY`). None for a layer Segment
    did not make.
    """
    saved = metadata.get(SAVED_PREDICTION_KEY)
    if isinstance(saved, np.ndarray):
        return saved
    probability = metadata.get("tmunet_probability")
    options = metadata.get("label_options")
    if not isinstance(probability, np.ndarray) or not isinstance(options, dict):
        return None
    return foreground(probability, LabelOptions(**options))
