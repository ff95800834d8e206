"""Labels from a kept probability: the same as inference's, and fast enough to be live."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet import inference
from napari_tmunet.config import InputConfig
from napari_tmunet.data.images import read_mask
from napari_tmunet.postprocess import (
    LabelOptions,
    compact,
    count_objects,
    derive_labels,
    drop_unsure,
    edited_pixels,
    expand,
    gated_out,
    mask_labels,
    split_instances,
)

MONUSEG_MASK = DATASETS / "MoNuSeg" / "masks" / "TCGA-18-5592-01Z-00-DX1.png"
MONUSEG_2Z = DATASETS / "MoNuSeg" / "masks" / "TCGA-2Z-A9J9-01A-01-TS1.png"


def whole_image_split(mask: np.ndarray, split_depth: float = 2.0) -> np.ndarray:
    """Reference: the watershed with h-maxima of the whole distance map (the definition)."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    eight = np.ones((3, 3), bool)
    distance = ndi.distance_transform_edt(mask).astype(np.float32)
    markers, n_markers = ndi.label(h_maxima(distance, split_depth) & mask, structure=eight)
    labels = watershed(-distance, markers, mask=mask, connectivity=2).astype(np.int32)
    orphans, n_orphans = ndi.label(mask & (labels == 0), structure=eight)
    if n_orphans:
        labels[orphans > 0] = orphans[orphans > 0] + n_markers
    return labels


def discs(shape=(120, 160)):
    """Touching discs, a thin line and a dot: splits, orphans and single pixels."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx, r in ((30, 30, 12), (30, 52, 12), (80, 100, 20), (80, 130, 15)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    mask[100:102, 5:60] = True  # thinner than the split depth: no marker
    mask[5, 150] = True
    return mask


def test_split_equals_inference():
    mask = discs()
    np.testing.assert_array_equal(split_instances(mask), whole_image_split(mask))
    assert inference.split_instances is split_instances  # one implementation
    assert count_objects(split_instances(mask)) == 6


@pytest.mark.skipif(not MONUSEG_MASK.is_file(), reason="shared MoNuSeg data not present")
def test_split_equals_inference_on_a_real_nuclei_mask():
    mask = read_mask(MONUSEG_MASK)[0] > 0
    np.testing.assert_array_equal(split_instances(mask), whole_image_split(mask))


def tiny_pieces(labels: np.ndarray, mask: np.ndarray) -> int:
    """Instances of 1-2 px that the split cut off (not whole 1-2 px objects of the mask)."""
    from scipy import ndimage as ndi

    objects, _ = ndi.label(mask, structure=np.ones((3, 3), bool))
    object_sizes = np.bincount(objects.ravel())  # (objects + 1,)
    sizes = np.bincount(labels.ravel())  # (N + 1,)
    tiny = [i for i in range(1, sizes.size) if 0 < sizes[i] <= 2]
    return sum(object_sizes[objects[labels == i][0]] != sizes[i] for i in tiny)


def test_pixels_touching_an_instance_at_a_corner_join_it():
    """A pixel joined to a nucleus only at a corner is part of it, not an instance."""
    yy, xx = np.mgrid[:40, :40]
    mask = (yy - 20) ** 2 + (xx - 20) ** 2 <= 100
    mask[9, 21] = True  # touches the disc's top pixel (10, 20) only at a corner
    labels = split_instances(mask)
    assert labels.max() == 1 and np.array_equal(labels > 0, mask)


@pytest.mark.skipif(not MONUSEG_2Z.is_file(), reason="shared MoNuSeg data not present")
def test_the_split_cuts_no_one_or_two_pixel_pieces_off_real_nuclei():
    """MoNuSeg TCGA-2Z-A9J9 at Min. size 0: a 4-connected flood left pixels that touch a
    nucleus only at a corner as 1-2 px instances (4 on the reference mask, 10 on the
    nuclei model's mask); an 8-connected split leaves none, and every pixel is kept."""
    mask = read_mask(MONUSEG_2Z)[0] > 0
    labels = derive_labels(compact(mask * 0.9), LabelOptions(0.5, instances=True))
    np.testing.assert_array_equal(labels > 0, mask)
    assert tiny_pieces(labels, mask) == 0


@pytest.mark.skipif(not MONUSEG_2Z.is_file(), reason="shared MoNuSeg data not present")
def test_segment_instances_of_the_nuclei_model_has_no_cut_off_pixels():
    """Segment with instances, the shipped nuclei model, at Min. size 0, on the top right
    quarter of MoNuSeg TCGA-2Z-A9J9 (the whole slide: 19 instances of 1-2 px with a
    4-connected split, 10 of them cut off a nucleus at a corner; this quarter: 2 of 225
    instances). Now 1-2 px instances are only specks the model itself finds."""
    from napari_tmunet.data.images import read_image
    from napari_tmunet.inference import run_to_completion, segment
    from napari_tmunet.registry import load_model

    image = read_image(MONUSEG_2Z.parents[1] / "images" / "TCGA-2Z-A9J9-01A-01-TS1.tif")
    model = load_model("TM-UNet nuclei", "cpu")
    ran = segment(image[:500, 500:], model, instances=True, mode="tile", device="cpu")
    labels = run_to_completion(ran).labels
    assert labels.max() > 100  # the quarter's nuclei
    assert tiny_pieces(labels, labels > 0) == 0


@pytest.mark.skipif(not MONUSEG_MASK.is_file(), reason="shared MoNuSeg data not present")
def test_min_size_holds_for_the_instances_the_split_makes():
    """Min. size with instances: the watershed cuts slivers off touching nuclei (26 of
    this slide's instances were under 100 px at Min. size 100); each joins the nucleus it
    borders, so none is shown under the size asked and no foreground pixel is lost."""
    mask = read_mask(MONUSEG_MASK)[0] > 0
    kept = compact(mask.astype(np.float32) * 0.9)
    options = LabelOptions(0.5, instances=True, min_size=100)
    labels = derive_labels(kept, options)
    sizes = np.bincount(labels.ravel())[1:]  # (N,)
    assert sizes.min() >= 100 and labels.max() == sizes.size  # ids 1..N, none empty
    binary = derive_labels(kept, LabelOptions(0.5, min_size=100))
    np.testing.assert_array_equal(labels > 0, binary > 0)
    plain = np.bincount(split_instances(binary > 0).ravel())[1:]
    assert (plain < 100).sum() > 10  # the slivers are there to merge
    assert sizes.size >= (plain >= 100).sum()  # no nucleus of the size asked is lost


def test_derive_labels_threshold_holes_size_and_stacks():
    probability = np.zeros((2, 60, 60), np.float32)
    probability[:, 10:40, 10:40] = 0.8
    probability[:, 20:25, 20:25] = 0.1  # a hole
    probability[0, 50:52, 50:52] = 0.9  # a 4-pixel speck
    kept = compact(probability)
    assert kept.dtype == np.uint8 and np.abs(expand(kept) - probability).max() <= 0.5 / 255 + 1e-6
    plain = derive_labels(kept, LabelOptions(0.5))
    np.testing.assert_array_equal(plain, probability > 0.5)
    cleaned = derive_labels(kept, LabelOptions(0.5, fill_holes=True, min_size=10))
    assert cleaned[0, 22, 22] == 1 and cleaned[0, 50, 50] == 0
    instances = derive_labels(kept, LabelOptions(0.5, instances=True))
    assert instances.dtype == np.int32 and set(np.unique(instances[1])) == {0, 3}  # unique ids
    assert derive_labels(kept, LabelOptions(0.85)).sum() == 4  # only the speck (0.9)
    with pytest.raises(ValueError, match="threshold"):
        LabelOptions(1.0)


def test_a_mask_without_probability_gets_the_same_holes_size_and_instances():
    """An image segmented in bands keeps only its thresholded mask: its labels are those
    the probability would give at that threshold, for every label setting but the gate."""
    probability = discs().astype(np.float32) * 0.8  # touching discs, a line, a dot
    probability[50:75, 5:30] = 0.8
    probability[60:65, 15:20] = 0.1  # a hole
    probability[110:112, 150:152] = 0.9  # a 4-pixel speck
    mask = (probability > 0.5).astype(np.uint8)
    for options in (
        LabelOptions(0.5),
        LabelOptions(0.5, fill_holes=True, min_size=10),
        LabelOptions(0.5, instances=True, min_size=5),
    ):
        expected = derive_labels(compact(probability), options)
        labels = mask_labels(mask, options)
        assert labels.dtype == expected.dtype
        np.testing.assert_array_equal(labels, expected)
    assert mask.sum() == (probability > 0.5).sum()  # the caller's mask is left as it was


def test_edited_pixels():
    model = np.zeros((4, 4), np.uint8)
    painted = model.copy()
    painted[0, :2] = 3
    assert edited_pixels(painted, model).sum() == 2


def sure_and_faint() -> np.ndarray:
    """(64, 64) probability: a sure object (0.95, 15 x 15) and a faint one (0.6, 20 x 20)."""
    probability = np.zeros((64, 64), np.float32)
    probability[5:20, 5:20] = 0.95
    probability[30:50, 30:50] = 0.6
    return probability


def test_unsure_objects_are_dropped_from_float_and_compact_probabilities():
    probability = sure_and_faint()
    np.testing.assert_array_equal(
        drop_unsure(probability > 0.5, probability, 0.79), probability > 0.9
    )
    np.testing.assert_array_equal(
        drop_unsure(probability > 0.5, probability, 0.0), probability > 0.5
    )
    kept = compact(np.stack([probability, probability]))  # a stack: slice by slice
    labels = derive_labels(kept, LabelOptions(min_confidence=0.79, instances=True))
    assert count_objects(labels) == 2 and labels[1, 10, 10] > 0 and not labels[:, 40, 40].any()
    assert derive_labels(kept, LabelOptions(min_confidence=0.55)).sum() == 2 * (15 * 15 + 20 * 20)
    # what the gate hides, the ungated options show
    gated = LabelOptions(min_confidence=0.79, min_size=10)
    assert gated.ungated() == LabelOptions(min_size=10)


def test_the_gate_weighs_an_object_by_its_mean_not_its_peak():
    probability = sure_and_faint()
    probability[40, 40] = 1.0  # one sure pixel does not make the faint object sure
    probability[5:20, 5] = 0.55  # a faint edge does not make the sure object unsure
    kept = drop_unsure(probability > 0.5, probability, 0.79)
    assert not kept[40, 40] and kept[10, 5] and kept[10, 10]


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.5"])
def test_a_bad_confidence_is_refused(bad):
    with pytest.raises(ValueError, match="min_confidence"):
        LabelOptions(min_confidence=bad)
    with pytest.raises(ValueError, match="min_confidence"):
        InputConfig(min_confidence=bad)


def test_gated_out_counts_what_the_confidence_gate_hides():
    """The faint object (20 x 20 at 0.6) is what a gate of 0.79 hides; none without a gate."""
    kept = compact(sure_and_faint())
    assert gated_out(kept, LabelOptions(min_confidence=0.79)) == (1, 20 * 20)
    assert gated_out(kept, LabelOptions(min_confidence=0.97)) == (2, 15 * 15 + 20 * 20)
    assert gated_out(kept, LabelOptions()) == (0, 0)
