"""The instance split with 4- or 8-connected markers (conn_mk), flood (conn_ws) and markerless
objects (conn_or); 1-2 px instances (tiny)."""

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed


def split(mask, conn_ws=1, conn_mk=1, depth=2.0, conn_or=1):
    mask = np.asarray(mask, bool)
    distance = ndi.distance_transform_edt(mask).astype(np.float32)
    objects, _ = ndi.label(mask, structure=np.ones((3, 3), bool))
    peaks = np.zeros(mask.shape, bool)
    H, W = mask.shape
    for i, box in enumerate(ndi.find_objects(objects), start=1):
        ys = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, H))
        xs = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, W))
        own = objects[ys, xs] == i
        crop = np.where(own, distance[ys, xs], 0)
        if crop.max() >= depth:
            peaks[ys, xs] |= h_maxima(crop, depth).astype(bool) & own
    st = np.ones((3, 3), bool) if conn_mk == 2 else None
    markers, n = ndi.label(peaks, structure=st)
    labels = watershed(-distance, markers, mask=mask, connectivity=conn_ws).astype(np.int32)
    orph, no = ndi.label(
        mask & (labels == 0), structure=np.ones((3, 3), bool) if conn_or == 2 else None
    )
    if no:
        labels[orph > 0] = orph[orph > 0] + n
    return labels


def tiny(labels, k=2):
    s = np.bincount(labels.ravel())[1:]
    return int(((s > 0) & (s <= k)).sum()), int((s > 0).sum())
