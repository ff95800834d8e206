"""Where a napari layer lies on the canvas, without Qt: the placement a new layer copies
from another (scale, translate, rotate, shear, affine), and whether two layers' pixels of
the same index lie on each other (the Metrics dock's warning when they do not)."""

from __future__ import annotations

import numpy as np

# A reference pixel this far (in the prediction's pixels) or further from the prediction's
# pixel of the same index on the canvas means the layers are placed differently: below
# half a pixel each still lies over its namesake (e.g. a saved translate's float rounding).
PLACEMENT_TOLERANCE_PX = 0.5


def placement(layer, ndim: int) -> dict:
    """Keyword arguments that give a new layer of ``ndim`` axes ``layer``'s data-to-world
    placement on its leading ``ndim`` axes, as napari's Layers > New Labels copies it:
    ``scale``, ``translate``, ``rotate``, ``shear``, ``affine``, and ``units`` and
    ``axis_labels`` where this napari has them. A layer's axes exclude an RGB colour
    axis; a grey + alpha image, (..., H, W, 2), has one axis more than its mask.
    """
    from napari.utils.transforms import CompositeAffine

    axes = list(range(ndim))
    # napari's own subset of a layer's transform (as for the canvas' displayed axes): the
    # whole transform when all axes are kept
    physical = CompositeAffine(
        scale=layer.scale,
        translate=layer.translate,
        rotate=layer.rotate,
        shear=layer.shear,
        ndim=layer.ndim,
    ).set_slice(axes)
    place = {
        "scale": tuple(physical.scale),
        "translate": tuple(physical.translate),
        "rotate": physical.rotate,
        "shear": physical.shear,
        "affine": layer.affine.set_slice(axes).affine_matrix,
    }
    for key in ("units", "axis_labels"):  # napari 0.6 on
        values = getattr(layer, key, None)
        if values is not None:
            place[key] = tuple(values)[:ndim]
    return place


def place_like(target, layer) -> None:
    """Give the existing layer ``target`` ``layer``'s placement on its axes (:func:`placement`)."""
    for key, value in placement(layer, target.ndim).items():
        setattr(target, key, value)


def placement_warning(prediction, reference, size: tuple[int, int]) -> str:
    """When the two layers lie differently on the canvas beyond their scale (a translate,
    rotate, shear or affine of one that the other lacks), a sentence naming both, what
    differs and what to do; else "" (a scale difference is not judged here). ``size`` is
    the prediction's (height, width) in pixels."""
    if misplacement_px(prediction, reference, size) < PLACEMENT_TOLERANCE_PX:
        return ""
    parts = " / ".join(placement_parts(prediction, reference)) or "transform"
    return (
        f"{reference.name!r} and {prediction.name!r} are placed differently on the "
        f"canvas ({parts}): the scores compare the two arrays pixel by pixel, not the "
        "masks as you see them. To score what you see, align the layers first: give "
        "them the same translate / rotate / shear / affine (a layer moved with the "
        "Transform tool: Alt+click that tool's button to reset it)."
    )


def misplacement_px(prediction, reference, size: tuple[int, int]) -> float:
    """How far, at worst, a reference pixel lies on the canvas from the prediction's pixel
    of the same index, in the prediction's pixels (the larger of the row and column
    distances, over the corners of the yx plane of ``size``, the prediction's (height,
    width): the maps are affine), both layers taken at the prediction's scale."""
    height, width = size
    corners = np.array([[0, 0], [height - 1, 0], [0, width - 1], [height - 1, width - 1]]).T
    scale = np.diag(np.asarray(prediction.scale[-2:], float))
    pred_map, pred_origin = _yx_transform(prediction)
    ref_map, ref_origin = _yx_transform(reference)
    world = ref_map @ scale @ corners + ref_origin[:, None]
    in_prediction = np.linalg.pinv(pred_map @ scale) @ (world - pred_origin[:, None])
    return float(np.abs(in_prediction - corners).max())


def _yx_transform(layer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's data-to-world map on its last two axes, without its scale: (A, b) with
    world yx = A @ (scale * (i, j)) + b."""
    ndim = layer.ndim
    origin = np.asarray(layer.data_to_world(np.zeros(ndim)), float)[-2:]
    steps = []
    for axis in (ndim - 2, ndim - 1):
        step = np.zeros(ndim)
        step[axis] = 1
        steps.append(np.asarray(layer.data_to_world(step), float)[-2:] - origin)
    return np.column_stack(steps) / np.asarray(layer.scale[-2:], float), origin


def placement_parts(prediction, reference) -> list[str]:
    """Which of the layers' translate, rotate, shear and affine differ on the yx plane (a
    shift by less than ``PLACEMENT_TOLERANCE_PX`` of the prediction's pixels is none)."""
    pixel = np.abs(np.asarray(prediction.scale[-2:], float))

    def moved(a, b) -> bool:
        shift = np.abs(np.asarray(a, float)[-2:] - np.asarray(b, float)[-2:]) / pixel
        return bool(np.any(shift >= PLACEMENT_TOLERANCE_PX))

    def turned(a, b) -> bool:
        return not np.allclose(a, b, atol=1e-6)

    pred_affine = prediction.affine.affine_matrix[-3:-1]  # the yx rows: linear | offset
    ref_affine = reference.affine.affine_matrix[-3:-1]
    differ = {
        "translate": moved(prediction.translate, reference.translate),
        "rotate": turned(prediction.rotate[-2:, -2:], reference.rotate[-2:, -2:]),
        "shear": turned(prediction.shear[-1:], reference.shear[-1:]),
        "affine": turned(pred_affine[:, -3:-1], ref_affine[:, -3:-1])
        or moved(pred_affine[:, -1], ref_affine[:, -1]),
    }
    return [name for name, different in differ.items() if different]
