"""The Segment dock (tester23 D1), on the threaded path in a real viewer with the shipped
models and the bundled samples: an output and its probability map take the image's whole
data-to-world placement (rotate, shear, affine too), so the mask lies over the polyp on
the canvas."""

from __future__ import annotations

import numpy as np
import pytest
from test_segment_choices import segment, segment_dock

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample

pytestmark = pytest.mark.gui

COLON, ULTRASOUND = "TM-UNet colonoscopy", "TM-UNet ultrasound"
TURN = np.deg2rad(30)
# a rotation of the (y, x) plane of a (Z, Y, X) stack, its slices kept apart
STACK_TURN = [[1, 0, 0], [0, np.cos(TURN), -np.sin(TURN)], [0, np.sin(TURN), np.cos(TURN)]]


@pytest.fixture(autouse=True)
def _shipped_models():
    if any(registry.find_model(name) is None for name in (COLON, ULTRASOUND)):
        pytest.skip("the colonoscopy and ultrasound models are needed")


def world_matrix(layer) -> np.ndarray:
    """``layer``'s data-to-world transform as an affine matrix, from where napari puts the
    data origin and the unit steps along each axis."""
    origin = np.asarray(layer.data_to_world([0] * layer.ndim), dtype=float)
    matrix = np.eye(layer.ndim + 1)
    for axis in range(layer.ndim):
        step = np.asarray(layer.data_to_world(np.eye(layer.ndim)[axis]), dtype=float)
        matrix[:-1, axis] = step - origin
    matrix[:-1, -1] = origin
    return matrix


@pytest.mark.parametrize(
    "place",
    [
        {"rotate": 30, "scale": (0.5, 0.5), "translate": (10, -20)},
        {"affine": [[1, 0.3, 5], [0, 1, 0], [0, 0, 1]], "shear": [0.2]},
    ],
    ids=["rotated", "affine"],
)
def test_a_placed_images_output_lies_over_its_polyp(make_napari_viewer, qtbot, place):
    """The colonoscopy sample (RGB: its colour axis is no layer axis) rotated or under an
    affine and a shear: its labels and probability map have its data-to-world transform,
    and the polyp of the sample's mask, taken to the world through the image and back into
    the labels, falls on the labels' foreground as it does pixel for pixel; a second run
    that replaces the labels in place follows the image moved since."""
    picture, mask = load_sample("colonoscopy")
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = viewer.add_image(picture, name="polyp", rgb=True, **place)
    widget.image.value = image
    widget.add_probability.value = True
    segment(qtbot, widget)
    labels, probability = viewer.layers["polyp labels"], viewer.layers["polyp probability"]
    expected = world_matrix(image)
    assert not np.allclose(expected[:2, :2], np.diag(np.diag(expected[:2, :2])))  # turned
    np.testing.assert_allclose(world_matrix(labels), expected, atol=1e-9)
    np.testing.assert_allclose(world_matrix(probability), expected, atol=1e-9)

    found = labels.data > 0
    recall = found[mask > 0].mean()  # the model finds most of the polyp
    assert recall > 0.8
    rng = np.random.default_rng(0)
    polyp = np.argwhere(mask > 0)[rng.choice(int(mask.sum()), 300, replace=False)]
    over = [
        found[tuple(np.round(labels.world_to_data(image.data_to_world(p))).astype(int))]
        for p in polyp
    ]
    assert np.mean(over) == pytest.approx(found[tuple(polyp.T)].mean())
    assert np.mean(over) > 0.8

    image.rotate = 45  # moved by the user (or a registration plugin) since
    segment(qtbot, widget)
    assert widget.last_layer is labels  # replaced in place, unedited
    np.testing.assert_allclose(world_matrix(labels), world_matrix(image), atol=1e-9)
    np.testing.assert_allclose(world_matrix(probability), world_matrix(image), atol=1e-9)


def test_a_turned_stacks_output_lines_up_slice_by_slice(make_napari_viewer, qtbot):
    """A grey stack of two ultrasound frames, its (y, x) plane rotated, its slices scaled
    and shifted: the (2, H, W) output has the stack's data-to-world transform, and the
    lesion of the sample's mask in the second slice lands on the output's lesion."""
    picture, mask = load_sample("ultrasound")
    grey = picture if picture.ndim == 2 else picture[..., 0]
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    stack = viewer.add_image(
        np.stack([grey, grey]),
        name="scans",
        rotate=STACK_TURN,
        scale=(3, 0.5, 0.5),
        translate=(1, 2, 3),
    )
    widget.image.value = stack
    segment(qtbot, widget)
    labels = widget.last_layer
    assert labels.data.shape == stack.data.shape
    np.testing.assert_allclose(world_matrix(labels), world_matrix(stack), atol=1e-9)
    found = labels.data[1] > 0
    assert found[mask > 0].mean() > 0.8
    lesion = np.argwhere(mask > 0)[::50]
    over = [
        labels.data[tuple(np.round(labels.world_to_data(stack.data_to_world((1, *p)))).astype(int))]
        > 0
        for p in lesion
    ]
    assert np.mean(over) == pytest.approx(found[tuple(lesion.T)].mean())
