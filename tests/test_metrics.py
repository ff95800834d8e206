"""Metrics: hand-computed tables, edge cases, agreement with MONAI and MedPy."""

import csv
import math

import numpy as np
import pytest
import torch
from _paths import DATASETS
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy import ndimage

from napari_tmunet.data.images import read_mask
from napari_tmunet.metrics import (
    EMPTY_PREDICTION,
    PER_IMAGE_KEYS,
    SegmentationMetrics,
    dice_score,
    f1_from_means,
    hausdorff_distance,
    hd95,
    image_diagonal,
    iou_score,
    precision_recall,
)

needs_data = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"no datasets at {DATASETS}")


def m(rows):
    """Mask from a list of strings: '#' foreground, '.' background."""
    return np.array([[c == "#" for c in row] for row in rows])


EMPTY = m(["....", "....", "...."])
FULL = m(["####", "####", "####"])
A = m(["##..", "##..", "...."])  # 4 px
B = m([".##.", ".##.", "...."])  # 4 px, overlap 2 with A
C = m(["....", "....", "..##"])  # 2 px, disjoint from A

# (pred, ref, dice, iou, precision, recall)
OVERLAP_CASES = [
    (A, A, 1.0, 1.0, 1.0, 1.0),
    (A, B, 0.5, 2 / 6, 0.5, 0.5),
    (A, C, 0.0, 0.0, 0.0, 0.0),
    (A, FULL, 8 / 16, 4 / 12, 1.0, 4 / 12),
    (FULL, A, 8 / 16, 4 / 12, 4 / 12, 1.0),
    (EMPTY, EMPTY, 1.0, 1.0, 1.0, 1.0),
    (EMPTY, A, 0.0, 0.0, 0.0, 0.0),
    (A, EMPTY, 0.0, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize(("pred", "ref", "dice", "iou", "precision", "recall"), OVERLAP_CASES)
def test_overlap_table(pred, ref, dice, iou, precision, recall):
    assert dice_score(pred, ref) == pytest.approx(dice)
    assert iou_score(pred, ref) == pytest.approx(iou)
    assert precision_recall(pred, ref) == pytest.approx((precision, recall))


# (pred, ref, hd, hd95, spacing); boundaries = mask ^ erosion(mask).
HD_CASES = [
    (A, A, 0.0, 0.0, None),
    (A, B, 1.0, 1.0, None),  # every boundary pixel of A is 0 or 1 from B's
    # A->C: sqrt(8), sqrt(5), sqrt(5), sqrt(2); C->A: sqrt(2), sqrt(5). Linear percentiles.
    (A, C, math.sqrt(8), math.sqrt(5) + 0.85 * (math.sqrt(8) - math.sqrt(5)), None),
    (m(["#...."]), m(["....#"]), 4.0, 4.0, None),
    (m(["#...."]), m(["....#"]), 8.0, 8.0, (3.0, 2.0)),  # x spacing 2
    (m(["#", ".", "#"]), m(["#", ".", "."]), 2.0, 1.9, None),  # pred->ref [0, 2]; ref->pred [0]
    (m(["#", ".", "#"]), m(["#", ".", "."]), 1.0, 0.95, (0.5, 1.0)),
    (EMPTY, EMPTY, 0.0, 0.0, None),
    (EMPTY, A, 5.0, 5.0, None),  # one empty -> diagonal sqrt(3^2 + 4^2)
    (A, EMPTY, 5.0, 5.0, None),
    (A, EMPTY, math.hypot(3 * 2.0, 4 * 0.5), math.hypot(6.0, 2.0), (2.0, 0.5)),
]


@pytest.mark.parametrize(("pred", "ref", "hd", "hd_95", "spacing"), HD_CASES)
def test_hausdorff_table(pred, ref, hd, hd_95, spacing):
    assert hausdorff_distance(pred, ref, spacing=spacing) == pytest.approx(hd)
    assert hd95(pred, ref, spacing=spacing) == pytest.approx(hd_95)


def test_a_to_c_by_hand():
    # A's boundary {(0,0),(0,1),(1,0),(1,1)}, C's {(2,2),(2,3)}: farthest pair of nearest
    # neighbours: (0,0)->(2,2) = sqrt(8) from A; (2,3)->(1,1) = sqrt(5) from C.
    assert hausdorff_distance(A, C) == pytest.approx(math.sqrt(8))


def test_hd95_is_max_of_directed_percentiles():
    ref = np.zeros((1, 101), bool)
    ref[0, 0] = True
    pred = ref.copy()
    pred[0, 1:21] = True
    # One-row masks erode to nothing, so every pixel is boundary: pred->ref distances are
    # 0..20 (95th percentile 19), ref->pred is 0. MONAI takes the max: 19, not a pooled one.
    assert hd95(pred, ref) == pytest.approx(19.0)
    assert hd95(pred, ref) == pytest.approx(_monai(pred, ref, 95), rel=1e-6)
    assert hausdorff_distance(pred, ref, percentile=50) == pytest.approx(10.0)


def test_boundary_not_area():
    # A filled square inside a larger one: HD measures boundary to boundary.
    outer = np.zeros((20, 20), bool)
    outer[2:18, 2:18] = True
    inner = np.zeros((20, 20), bool)
    inner[8:12, 8:12] = True
    assert hausdorff_distance(inner, outer) == pytest.approx(math.hypot(6, 6))


def test_image_border_counts_as_background():
    full = np.ones((5, 5), bool)
    corner = np.zeros((5, 5), bool)
    corner[0, 0] = True
    # full's boundary is the image frame; farthest frame pixel from (0,0) is (4,4).
    assert hausdorff_distance(corner, full) == pytest.approx(math.hypot(4, 4))


def test_input_checks():
    with pytest.raises(ValueError, match="same shape"):
        dice_score(A, A[:2])
    with pytest.raises(ValueError, match="threshold it first"):
        dice_score(np.full((3, 4), 0.7), A)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(A, B, spacing=(1.0,))
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_distance(A, B, percentile=101)
    assert dice_score(A.astype(np.uint8), B.astype(np.float32)) == 0.5  # 0/1 arrays accepted


def test_diagonal_and_f1():
    assert image_diagonal((3, 4)) == 5.0
    assert image_diagonal((3, 4), (2.0, 1.5)) == pytest.approx(math.hypot(6, 6))
    assert f1_from_means(0.8, 0.6) == pytest.approx(2 * 0.48 / 1.4)
    assert f1_from_means(0.0, 0.0) == 0.0


def _monai(pred, ref, percentile=None, spacing=None):
    p = torch.from_numpy(pred)[None, None]
    r = torch.from_numpy(ref)[None, None]
    kwargs = {"spacing": list(spacing)} if spacing is not None else {}
    return compute_hausdorff_distance(p, r, percentile=percentile, **kwargs).item()


@pytest.mark.parametrize("seed", range(6))
def test_random_blobs_match_monai_and_medpy(seed):
    rng = np.random.default_rng(seed)
    pred = ndimage.gaussian_filter(rng.random((96, 128)), 4) > 0.5
    ref = ndimage.gaussian_filter(rng.random((96, 128)), 4) > 0.5
    assert pred.any() and ref.any()
    spacing = (0.5 + rng.random(), 0.5 + rng.random())
    assert hausdorff_distance(pred, ref) == pytest.approx(_monai(pred, ref), rel=1e-5)
    assert hausdorff_distance(pred, ref) == pytest.approx(medpy_binary.hd(pred, ref), rel=1e-9)
    assert hd95(pred, ref) == pytest.approx(_monai(pred, ref, 95), rel=1e-5)
    assert hausdorff_distance(pred, ref, spacing=spacing) == pytest.approx(
        _monai(pred, ref, spacing=spacing), rel=1e-5
    )
    assert hausdorff_distance(pred, ref, spacing=spacing) == pytest.approx(
        medpy_binary.hd(pred, ref, voxelspacing=spacing), rel=1e-9
    )
    monai_dice = compute_dice(
        torch.from_numpy(pred)[None, None].float(), torch.from_numpy(ref)[None, None].float()
    )
    assert dice_score(pred, ref) == pytest.approx(monai_dice.item(), rel=1e-6)
    assert dice_score(pred, ref) == pytest.approx(medpy_binary.dc(pred, ref))
    assert precision_recall(pred, ref) == pytest.approx(
        (medpy_binary.precision(pred, ref), medpy_binary.recall(pred, ref))
    )


@pytest.fixture(scope="module")
def clinicdb_mask():
    return read_mask(DATASETS / "CVC-ClinicDB" / "masks" / "2.tif")[0]


@needs_data
@pytest.mark.parametrize("change", ["erode", "shift", "dilate_shift"])
def test_real_mask_matches_monai(clinicdb_mask, change):
    ref = clinicdb_mask
    if change == "erode":
        pred = ndimage.binary_erosion(ref, iterations=5)
    elif change == "shift":
        pred = np.roll(ref, (7, -12), axis=(0, 1))
    else:
        pred = np.roll(ndimage.binary_dilation(ref, iterations=3), 20, axis=1)
    assert hausdorff_distance(pred, ref) == pytest.approx(_monai(pred, ref), rel=1e-5)
    assert hausdorff_distance(pred, ref) == pytest.approx(medpy_binary.hd(pred, ref))
    assert hd95(pred, ref) == pytest.approx(_monai(pred, ref, 95), rel=1e-5)
    assert hd95(pred, ref, spacing=(0.3, 0.2)) == pytest.approx(
        _monai(pred, ref, 95, spacing=(0.3, 0.2)), rel=1e-5
    )
    assert dice_score(pred, ref) == pytest.approx(medpy_binary.dc(pred, ref))
    if change == "erode":  # 5 erosions with the cross: boundaries 5 px apart at most
        assert hausdorff_distance(pred, ref) >= 5.0
    if change == "shift":
        assert hausdorff_distance(pred, ref) <= math.hypot(7, 12) + 1e-9


def test_accumulator():
    metrics = SegmentationMetrics()
    row = metrics.update(A, B, name="ab")
    assert set(row) == set(PER_IMAGE_KEYS)
    assert row["name"] == "ab" and row["dice"] == 0.5 and row["hd"] == 1.0
    metrics.update(A, A)
    metrics.update(EMPTY, A, name="missed")
    metrics.update(EMPTY, EMPTY, name="both empty")
    rows = metrics.per_image()
    assert [r["name"] for r in rows] == ["ab", "1", "missed", "both empty"]
    assert [r[EMPTY_PREDICTION] for r in rows] == [False, False, True, False]
    assert rows[2]["hd"] == 5.0 and rows[3]["hd"] == 0.0

    summary = metrics.aggregate()
    assert summary["count"] == 4
    assert summary["dice_mean"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert summary["dice_std"] == pytest.approx(np.std([0.5, 1, 0, 1]))
    assert summary["precision_mean"] == pytest.approx(0.625)
    assert summary["recall_mean"] == pytest.approx(0.625)
    assert summary["f1"] == pytest.approx(0.625)
    assert summary["hd_mean"] == pytest.approx((1 + 0 + 5 + 0) / 4)
    assert summary["hd_mean_nonempty"] == pytest.approx(1 / 3)
    assert summary[EMPTY_PREDICTION] == 1 and summary["empty_reference"] == 0

    rows[0]["dice"] = -1  # per_image returns copies
    assert metrics.per_image()[0]["dice"] == 0.5


def test_accumulator_spacing_and_empty():
    metrics = SegmentationMetrics()
    assert math.isnan(metrics.aggregate()["dice_mean"]) and metrics.aggregate()["count"] == 0
    metrics.update(m(["#...."]), m(["....#"]), spacing=(1.0, 0.5))
    assert metrics.aggregate()["hd_mean"] == pytest.approx(2.0)
    metrics.reset()
    assert len(metrics) == 0


def test_to_csv(tmp_path):
    metrics = SegmentationMetrics()
    metrics.update(A, B, name="ab")
    metrics.update(EMPTY, A, name="missed")
    path = metrics.to_csv(tmp_path / "out" / "metrics.csv")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(PER_IMAGE_KEYS)
    assert [r["name"] for r in rows] == ["ab", "missed"]
    assert float(rows[0]["dice"]) == 0.5 and rows[1][EMPTY_PREDICTION] == "True"


# ------------------------------------------------------------------------ instance scores


def test_instance_scores_by_hand():
    """Two reference objects: one found exactly, one split in two halves; one extra."""
    from napari_tmunet.metrics import instance_scores

    ref = np.zeros((10, 20), int)
    ref[1:5, 1:5] = 1  # 16 px, found exactly
    ref[1:5, 10:18] = 2  # 32 px, predicted as two halves of 16
    pred = np.zeros_like(ref)
    pred[1:5, 1:5] = 7
    pred[1:5, 10:14], pred[1:5, 14:18] = 3, 4
    pred[7:9, 1:3] = 9  # 4 px where no reference object is
    s = instance_scores(pred, ref)
    # pairs at IoU > 0.5: only object 1 (IoU 1); halves have IoU 0.5 (not > 0.5)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 3, 1)
    assert s["dq"] == pytest.approx(1 / (1 + 1.5 + 0.5)) and s["sq"] == 1.0
    assert s["pq"] == pytest.approx(s["dq"])
    # AJI: object 1 -> 16/16; object 2 -> a half (16 / 32); unjoined: the other half
    # (16 px) and the extra (4 px)
    assert s["aji"] == pytest.approx((16 + 16) / (16 + 32 + 16 + 4))
    assert math.isnan(instance_scores(np.zeros((4, 4), int), np.zeros((4, 4), int))["pq"])
    none = instance_scores(np.zeros_like(ref), ref)
    assert none["pq"] == none["aji"] == 0.0 and none["fn"] == 2
    with pytest.raises(ValueError, match="integer label image"):
        instance_scores(pred.astype(float), ref)


def _aji_by_definition(pred, ref):
    """Kumar et al.'s AJI written out object by object (slow, obviously right)."""
    used, inter_sum, union_sum = set(), 0, 0
    for g in (g for g in np.unique(ref) if g):
        gmask = ref == g
        best, best_iou = None, 0.0
        for s in (s for s in np.unique(pred[gmask]) if s):
            smask = pred == s
            iou = (gmask & smask).sum() / (gmask | smask).sum()
            if iou > best_iou:
                best, best_iou = s, iou
        if best is None:
            union_sum += gmask.sum()
            continue
        smask = pred == best
        inter_sum += (gmask & smask).sum()
        union_sum += (gmask | smask).sum()
        used.add(best)
    union_sum += sum((pred == s).sum() for s in np.unique(pred) if s and s not in used)
    return inter_sum / union_sum


def test_instance_scores_on_the_nuclei_sample_match_monai():
    """Reference: the bundled H&E sample's nuclei split into instances; prediction: every
    object grown by 2 px, every 7th dropped, and two neighbours merged."""
    from monai.metrics import compute_panoptic_quality
    from skimage.segmentation import expand_labels

    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.metrics import instance_scores
    from napari_tmunet.postprocess import split_instances

    _, mask = load_sample("nuclei")
    ref = split_instances(np.asarray(mask) > 0)[:300, :300]
    pred = expand_labels(ref, 2)
    pred[np.isin(pred, np.unique(ref)[1::7])] = 0
    ids = np.unique(pred)[1:]
    pred[pred == ids[1]] = ids[0]
    s = instance_scores(pred, ref)
    assert s["ref_objects"] == len(np.unique(ref)) - 1 > 20
    tp, fp, fn, iou_sum = compute_panoptic_quality(
        torch.from_numpy(pred), torch.from_numpy(ref), output_confusion_matrix=True
    ).tolist()
    assert (s["tp"], s["fp"], s["fn"]) == (tp, fp, fn)
    assert s["sq"] == pytest.approx(iou_sum / tp, rel=1e-5)
    monai_pq = compute_panoptic_quality(torch.from_numpy(pred), torch.from_numpy(ref)).item()
    assert s["pq"] == pytest.approx(monai_pq, rel=1e-4)
    assert s["aji"] == pytest.approx(_aji_by_definition(pred, ref), rel=1e-9)
    assert 0.3 < s["aji"] < s["dq"] < 1.0  # grown, dropped and merged objects cost
