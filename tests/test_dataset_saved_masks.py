"""A correction saved into a dataset's ``masks/`` follows the rule of masks beside their
picture (``data.mask_names``): a pathologist opens ``ROOT/images`` + ``ROOT/masks`` with
the TM-UNet reader, corrects "1 mask" and saves it with napari's Save Selected Layer(s)
(the plugin's writer names the file after the layer: ``masks/1 mask.tif``). Reopened, it
opens beside ``masks/1.tif`` as a separate Labels layer, shown, nothing merged; the
trainer, its cache and the Fine-tune dock's Folder refuse picture 1 naming both files and
the one napari-tmunet saved (``--skip-bad`` leaves it out), not as "a mask without an
image". Built from real CVC-ClinicDB pictures and masks (all 288 x 384)."""

from __future__ import annotations

import numpy as np
import pytest
from _clinic_frames import besides_mask_rules
from _paths import DATASETS, dataset_subset

from napari_tmunet._reader import read_dataset
from napari_tmunet.data.cache import load_cache
from napari_tmunet.data.datasets import DatasetError, find_pairs, scan_pairs
from napari_tmunet.data.images import read_mask
from trainer import cli

CLINIC = DATASETS / "CVC-ClinicDB"


@pytest.fixture
def clinic(tmp_path):
    """A dataset folder of CVC-ClinicDB pairs 1, 2 and 3 (masks/NAME.tif)."""
    if not (CLINIC / "images").is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    return dataset_subset(CLINIC, tmp_path / "clinic", ["1", "2", "3"])


@pytest.fixture
def notes(monkeypatch):
    """The reader's info and warning notifications, as lists of their texts."""
    import napari_tmunet._reader as reader

    seen = {"info": [], "warning": []}
    monkeypatch.setattr(reader, "_notify_info", seen["info"].append)
    monkeypatch.setattr(reader, "_notify_warning", seen["warning"].append)
    return seen


def _corrected(viewer) -> np.ndarray:
    """Paint a band of picture 1's mask layer as a correction; return the labels."""
    layer = viewer.layers["1 mask"]
    edited = np.asarray(layer.data).copy()
    edited[:20] = 1  # the top rows, background in CVC 1's mask
    layer.data = edited
    return edited


def _save_correction(root, plugin_manager) -> np.ndarray:
    """Open ``root`` with the reader, correct "1 mask" and save it with napari's Save
    Selected Layer(s), named as napari's dialog proposes (the layer's name) into masks/.
    Returns the corrected labels."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.open(str(root), plugin="napari-tmunet")
    edited = _corrected(viewer)
    viewer.layers.selection = {viewer.layers["1 mask"]}
    saved = viewer.layers.save(
        str(root / "masks" / "1 mask.tif"), selected=True, plugin="napari-tmunet"
    )
    assert saved == [str(root / "masks" / "1 mask.tif")]
    return edited


def test_a_saved_correction_reopens_beside_the_dataset_mask(clinic, plugin_manager, notes):
    """Reopened, the folder shows picture 1 with its saved correction ("1 mask", shown,
    as painted) and the dataset's own mask ("1 mask (1.tif)", hidden, as in the file), one
    info note naming both; the other pairs as before (main: no layer for the correction,
    and a warning that it has no image)."""
    from napari.components import ViewerModel

    edited = _save_correction(clinic, plugin_manager)
    notes["info"].clear()
    viewer = ViewerModel()
    viewer.open(str(clinic), plugin="napari-tmunet")
    names = [layer.name for layer in viewer.layers]
    assert names == ["1", "1 mask", "1 mask (1.tif)", "2", "2 mask", "3", "3 mask"]
    saved, own = viewer.layers["1 mask"], viewer.layers["1 mask (1.tif)"]
    np.testing.assert_array_equal(np.asarray(saved.data) > 0, edited > 0)
    np.testing.assert_array_equal(
        np.asarray(own.data) > 0, read_mask(CLINIC / "masks" / "1.tif")[0]
    )
    assert saved.visible and not own.visible
    assert notes["info"] == [
        f"{clinic / 'masks'}: masks of a picture named differently opened as separate layers, "
        'not merged (the first shown):\n  1.png: "1 mask" (1 mask.tif); "1 mask (1.tif)" '
        "(1.tif)"
    ]
    assert besides_mask_rules(notes["warning"]) == []  # CVC masks 1-3's rule: their own


def test_the_launcher_opens_a_picture_with_its_saved_correction(clinic, plugin_manager):
    """``napari-tmunet ROOT/images/1.png`` finds the picture's masks in ``masks/`` by the
    same rule as the reader: the saved correction ("1 mask", shown, as painted) and the
    dataset's own mask ("1 mask (1.tif)", hidden); before, only ``masks/1.*``."""
    from napari.components import ViewerModel

    from napari_tmunet import launch

    edited = _save_correction(clinic, plugin_manager)
    viewer = ViewerModel()
    launch._open_paths(viewer, [str(clinic / "images" / "1.png")])
    assert [layer.name for layer in viewer.layers] == ["1", "1 mask", "1 mask (1.tif)"]
    saved, own = viewer.layers["1 mask"], viewer.layers["1 mask (1.tif)"]
    np.testing.assert_array_equal(np.asarray(saved.data) > 0, edited > 0)
    np.testing.assert_array_equal(
        np.asarray(own.data) > 0, read_mask(CLINIC / "masks" / "1.tif")[0]
    )
    assert saved.visible and not own.visible


def test_the_trainer_refuses_a_picture_with_its_mask_and_a_saved_correction(
    clinic, plugin_manager, tmp_path, capsys
):
    """scan_pairs, find_pairs, ``cache`` and the Fine-tune dock's Folder say which two
    files picture 1 has, which one napari-tmunet saved and what to do, as beside their
    picture; ``--skip-bad`` leaves it out and caches the others (main: "1 mask.tif: no
    image named 1 mask.* in images")."""
    from napari_tmunet._finetune_folder import read_folder

    edited = _save_correction(clinic, plugin_manager)
    masks = clinic / "masks"
    reason = (
        "masks of 2 different kinds, never merged: 1 mask.tif (saved by napari-tmunet); "
        "1.tif; which one trains is yours to say: keep one kind in masks/ and move the "
        f"others out of {masks}"
    )
    report = scan_pairs(clinic)
    assert report.skipped == [(str(clinic / "images" / "1.png"), reason)]
    assert [pair.name for pair in report.pairs] == ["2", "3"]
    with pytest.raises(DatasetError, match="1 mask.tif") as refused:
        find_pairs(clinic)
    assert reason in str(refused.value) and "no image named" not in str(refused.value)
    assert reason in read_folder(str(clinic))[1]

    out = tmp_path / "c.npz"
    assert cli.main(["cache", "--data", str(clinic), str(out)]) == 2
    err = capsys.readouterr().err
    assert reason in err and "or skip them (--skip-bad)" in err and not out.exists()
    assert cli.main(["cache", "--data", str(clinic), str(out), "--skip-bad"]) == 0
    assert load_cache(out).names == ["2", "3"]

    (masks / "1.tif").unlink()  # the correction alone: it is picture 1's mask, and trains
    pairs = find_pairs(clinic)
    assert [(p.name, p.mask_path.name) for p in pairs] == [("1", "1 mask.tif"), ("2", "2.tif"),
                                                           ("3", "3.tif")]  # fmt: skip
    assert np.array_equal(read_mask(masks / "1 mask.tif")[0], edited > 0)  # what trains
    layers = read_dataset(str(clinic))  # and it opens as picture 1's one mask, as saved
    assert [kwargs["name"] for _, kwargs, _ in layers[:3]] == ["1", "1 mask", "2"]
    np.testing.assert_array_equal(layers[1][0], edited)


def test_masks_named_by_the_rule_in_masks_pair_and_merge_one_family(clinic, notes):
    """In masks/, ``1_mask.tif`` + ``1_mask_1.tif`` (no ``1.tif``) are picture 1's mask,
    their union, in training and in the reader (one layer, the merge said); a mask named
    for a picture that is not there is still "no image named" (main: both orphans)."""
    masks = clinic / "masks"
    (masks / "1.tif").rename(masks / "1_mask.tif")
    (masks / "1_mask_1.tif").write_bytes((CLINIC / "masks" / "4.tif").read_bytes())
    (masks / "7 mask.tif").write_bytes((CLINIC / "masks" / "7.tif").read_bytes())
    report = scan_pairs(clinic)
    first = report.pairs[0]
    assert (first.name, [p.name for p in first.mask_paths]) == ("1", ["1_mask.tif", "1_mask_1.tif"])
    assert report.skipped == [
        (str(masks / "7 mask.tif"), f"no image named 7 mask.* in {clinic / 'images'}")
    ]
    union = read_mask(CLINIC / "masks" / "1.tif")[0] | read_mask(CLINIC / "masks" / "4.tif")[0]
    layers = read_dataset(str(clinic))
    assert [kwargs["name"] for _, kwargs, _ in layers] == [
        "1",
        "1 mask",
        "2",
        "2 mask",
        "3",
        "3 mask",
    ]
    np.testing.assert_array_equal(layers[1][0] > 0, union)
    assert notes["info"] == [
        f"{masks}: the masks of a picture opened as one (their union):\n"
        "  1.png: 1_mask.tif, 1_mask_1.tif"
    ]
