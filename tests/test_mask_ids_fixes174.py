"""8-bit instance masks whose top id is the largest object (tester38 #2): the one mask rule
(``data.images.binarise_mask``, used by the reader, trainer, Convert to mask and Metrics)
reads their objects of ids 1..127 as foreground, not by the 0/255 rule ``>127``; 0/255
masks with stray values stay ``>127``, and the trainer names a mask whose ``>127`` leaves
out flat regions, with the share."""

import sys

import numpy as np
import pytest
from _paths import DATASETS, EXTRA, REPO, dataset_subset
from PIL import Image

from napari_tmunet.data.cache import build_cache
from napari_tmunet.data.images import (
    ID_RULE,
    binarise_mask,
    holds_instance_labels,
    mask_image_labels,
    read_mask,
    read_mask_labels,
)

sys.path.insert(0, str(REPO / "bench"))
import check_mask_rules  # noqa: E402

DSB = EXTRA / "DSB2018-stage1test"
DSB_NAME = "0114f484a16c152baa2d82fdd43740880a762c93f436c8988ac461c5c9dbe7d5"
CVC = DATASETS / "CVC-ClinicDB"
KVASIR_GREYEST = EXTRA / "Kvasir-SEG" / "masks" / "cju8bj2ssrmlm0871gc2ug2rs.jpg"
needs_dsb = pytest.mark.skipif(not DSB.is_dir(), reason=f"no {DSB} (extra data)")
needs_cvc = pytest.mark.skipif(not CVC.is_dir(), reason=f"no {CVC} (a shared dataset)")


def _top_id_largest() -> np.ndarray:
    """DSB2018 mask 0114f484's 5 largest nuclei as 8-bit ids 50, 70, 90, 110 and 240, the
    largest nucleus 240 (25% of the foreground), as tester38 relabelled it."""
    labels, rule = read_mask_labels(DSB / "masks" / f"{DSB_NAME}.png")
    assert rule == "ids"
    ids = np.unique(labels[labels > 0])
    by_size = sorted(ids, key=lambda i: int((labels == i).sum()))
    out = np.zeros(labels.shape, np.uint8)
    for value, nucleus in zip((50, 70, 90, 110, 240), by_size[2:], strict=True):
        out[labels == nucleus] = value
    return out


def _picture_beside(folder, ids):
    """``folder`` holding the DSB picture and ``ids`` beside it as ``NAME_mask.png``."""
    folder.mkdir()
    Image.open(DSB / "images" / f"{DSB_NAME}.png").save(folder / "0114f484.png")
    Image.fromarray(ids).save(folder / "0114f484_mask.png")
    return folder


@needs_dsb
def test_8bit_ids_whose_largest_object_has_the_top_id(tmp_path):
    """Every nucleus is foreground (the 0/255 rule kept 219 of 874 pixels), for a mask file,
    the reader's labels, Convert to mask, and the Metrics dock's objects."""
    ids = _top_id_largest()
    foreground = int((ids > 0).sum())  # 874 pixels; '>127' kept 219
    assert 0.25 < (ids == 240).sum() / foreground < 0.26 and (ids > 127).sum() < 0.3 * foreground
    path = tmp_path / "ids.png"
    Image.fromarray(ids).save(path)
    mask, rule = read_mask(path)
    assert rule == ID_RULE
    np.testing.assert_array_equal(mask, ids > 0)
    labels, label_rule = read_mask_labels(path)  # the TM-UNet reader
    assert label_rule == "ids"
    np.testing.assert_array_equal(labels, ids)
    converted, converted_rule = mask_image_labels(ids)  # Convert to mask
    assert converted_rule == ID_RULE
    np.testing.assert_array_equal(converted, ids)
    assert binarise_mask(ids)[1] == ID_RULE and holds_instance_labels(ids)  # Metrics


@needs_dsb
def test_cache_of_a_picture_with_8bit_ids_beside_keeps_every_nucleus(tmp_path, caplog):
    """tester38's folder: the picture with its 8-bit id mask beside it; ``cache`` (as fit
    reads it) keeps all 874 pixels and logs the id rule, with no warning."""
    ids = _top_id_largest()
    root = _picture_beside(tmp_path / "ids8b", ids)
    with caplog.at_level("INFO"):
        cache = build_cache(root, tmp_path / "ids8b.npz")
    assert cache.rule_counts() == {ID_RULE: 1}
    assert f"mask rules {{'{ID_RULE}': 1}}" in caplog.text
    np.testing.assert_array_equal(np.squeeze(cache.masks[0]), ids > 0)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@needs_cvc
def test_cvc_stray_regions_stay_0_255_and_the_trainer_names_the_mask(tmp_path, caplog):
    """CVC-ClinicDB 2.tif: a flat region of value 11 beside the polyp (31% of the non-zero
    pixels, glued to the 255 region) stays background, and building the cache warns once,
    naming the mask and the share; 20.tif (a few stray pixels) is read without a word."""
    root = dataset_subset(CVC, tmp_path / "cvc", ["2", "20"])
    with caplog.at_level("INFO"):
        cache = build_cache(root, tmp_path / "cvc.npz")
    assert cache.rule_counts() == {">127": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert str(root / "masks" / "2.tif") in warnings[0]
    assert "leaves out 31% of its non-zero pixels" in warnings[0]
    raw = np.asarray(Image.open(CVC / "masks" / "2.tif"))
    np.testing.assert_array_equal(np.squeeze(cache.masks[cache.names.index("2")]), raw > 127)


@pytest.mark.skipif(not KVASIR_GREYEST.is_file(), reason="extra-data Kvasir-SEG not present")
def test_kvasir_jpeg_edges_are_left_out_without_a_warning(caplog):
    """The Kvasir-SEG mask whose JPEG edges '>127' leaves out most (17% of its non-zero
    pixels, none in flat regions): 0/255, no warning."""
    with caplog.at_level("WARNING"):
        mask, rule = read_mask(KVASIR_GREYEST)
    assert rule == ">127" and mask.any()
    assert not caplog.records


@needs_dsb
def test_bench_reads_masks_beside_pictures(tmp_path, capsys):
    """bench/check_mask_rules.py on tester38's layout (it stopped on 'ids8b/masks'): the
    mask's rule before and now, and the ids numbered every way read as > 0."""
    root = _picture_beside(tmp_path / "ids8b", _top_id_largest())
    assert check_mask_rules.main([str(root)]) == 1  # a changed rule is reported
    out = capsys.readouterr().out
    assert f"ids8b: 1 masks, rules before {{'>127': 1}}, now {{'{ID_RULE}': 1}}, changed 1" in out
    assert check_mask_rules.main(["--ids", str(root)]) == 0
    assert "ids8b as 8-bit ids, largest 240: 1 masks" in capsys.readouterr().out
