"""The trainer takes a folder of pictures with their masks beside them as it is (BUSI's
Kaggle layout ``benign (2).png``, ``benign (2)_mask.png``, a second lesion's
``benign (2)_mask_1.png``; other sets' ``NAME-mask``, ``NAME_gt``, ``NAME_labels``), by the
reader's naming rule (``data.mask_names``): each picture trains on the union of its one
family's mask files, masks of two families for one picture are refused naming them.
``napari-tmunet-train cache`` and ``fit``, the Fine-tune dock's Folder. Built from real
UDIAT pictures and their own masks; UDIAT 000032 and 000040 are one picture with two
different real masks (their union is larger than either)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet.data.cache import load_cache
from napari_tmunet.data.datasets import DatasetError, find_pairs, make_split
from napari_tmunet.data.images import read_mask, write_mask
from trainer import cli

UDIAT = DATASETS / "UDIAT"
# picture name -> (UDIAT picture, [(mask suffix, UDIAT mask)]); all 440 x 501
FOLDER = {
    "benign (1)": ("000003", [("_mask", "000003")]),
    "benign (2)": ("000032", [("_mask", "000032"), ("_mask_1", "000040")]),
    "case-4": ("000004", [("-mask", "000004")]),
    "5": ("000005", [("_gt", "000005")]),
    "us 6": ("000006", [("_labels", "000006")]),
    "benign (8)": ("000008", [("_mask", "000008")]),
}
FIT = ["--variant", "t", "--size", "64", "--steps", "2", "--epochs", "1", "--batch-size", "2",
       "--device", "cpu", "--no-progress", "--no-efficiency", "--no-test"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def udiat():
    if not (UDIAT / "images").is_dir():
        pytest.skip(f"no UDIAT at {UDIAT}")
    return UDIAT


def _folder(folder, normal: bool = True) -> dict[str, np.ndarray]:
    """:data:`FOLDER` written side by side in ``folder``, and (``normal``) a lesion-free
    picture with an all-zero ``_mask`` as BUSI's "normal" ones have. Returns the
    expected training mask per picture name."""
    folder.mkdir(parents=True)
    truth = {}
    for name, (picture, masks) in FOLDER.items():
        shutil.copy(UDIAT / "images" / f"{picture}.png", folder / f"{name}.png")
        for suffix, mask in masks:
            shutil.copy(UDIAT / "masks" / f"{mask}.png", folder / f"{name}{suffix}.png")
        parts = [read_mask(UDIAT / "masks" / f"{mask}.png")[0] for _, mask in masks]
        truth[name] = np.logical_or.reduce(parts)
    if normal:
        shutil.copy(UDIAT / "images" / "000007.png", folder / "normal (1).png")
        empty = np.zeros((412, 528), np.uint8)
        write_mask(folder / "normal (1)_mask.png", empty)
        truth["normal (1)"] = empty.astype(bool)
    return truth


def test_cache_of_a_side_by_side_folder_holds_each_pictures_union(udiat, tmp_path, capsys):
    """`cache --data FOLDER` of pictures with masks beside them: one item per picture,
    named as it is, its mask the union of its ``_mask`` and ``_mask_1`` files (larger than
    either: both reach the training target), an all-zero mask an empty one (main refused
    the folder: no images/)."""
    truth = _folder(tmp_path / "busi")
    out = tmp_path / "busi.npz"
    assert cli.main(["cache", "--data", str(tmp_path / "busi"), str(out)]) == 0, capsys.readouterr()
    cache = load_cache(out)
    assert sorted(cache.names) == sorted(truth)
    for name, mask in zip(cache.names, cache.masks, strict=True):
        assert np.array_equal(mask, truth[name]), name
    union = cache.masks[cache.names.index("benign (2)")]
    first, second = (read_mask(UDIAT / "masks" / f"{m}.png")[0] for m in ("000032", "000040"))
    assert union.sum() > max(first.sum(), second.sum())
    assert not cache.masks[cache.names.index("normal (1)")].any()


def test_fit_on_a_side_by_side_folder_splits_by_picture_name(udiat, tmp_path, capsys):
    """A tiny fit on such a folder: the 7:1:2 split by seed (as of an images/ + masks/
    folder of those names) and a split file name the pictures, with or without their
    suffix."""
    data = tmp_path / "busi"
    truth = _folder(data)
    run = tmp_path / "run"
    assert cli.main(["fit", "--data", str(data), *FIT, "--run-dir", str(run)]) == 0, (
        capsys.readouterr().err
    )
    split = json.loads((run / "split.json").read_text())
    assert split == make_split(list(truth), 0, groups=list(range(len(truth))))
    assert [len(split[p]) for p in ("train", "valid", "test")] == [5, 1, 1]
    assert (run / "best.pt").is_file()

    chosen = {"train": ["benign (2).png", "benign (1)", "5", "us 6"], "test": ["case-4"]}
    (tmp_path / "split.json").write_text(json.dumps(chosen))
    again = tmp_path / "again"
    args = ["fit", "--data", str(data), *FIT, "--split-file", str(tmp_path / "split.json")]
    assert cli.main([*args, "--run-dir", str(again)]) == 0, capsys.readouterr().err
    split = json.loads((again / "split.json").read_text())
    assert split["test"] == ["case-4"] and "benign (2)" in split["train"] + split["valid"]


def test_two_mask_families_of_one_picture_are_refused_naming_them(udiat, tmp_path, capsys):
    """A correction saved by napari-tmunet ("benign (2) mask.tif") beside BUSI's
    ``benign (2)_mask.png`` + ``_mask_1.png``: which one trains is not guessed; cache and
    fit stop naming the files and what to do, nothing written; --skip-bad leaves the
    picture out, naming it, and trains on the others."""
    data = tmp_path / "busi"
    truth = _folder(data, normal=False)
    saved = data / "benign (2) mask.tif"
    write_mask(saved, read_mask(UDIAT / "masks" / "000032.png")[0])
    out = tmp_path / "c.npz"
    assert cli.main(["cache", "--data", str(data), str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{data / 'benign (2).png'}: masks of 2 different kinds, never merged: benign (2) "
        "mask.tif (saved by napari-tmunet); benign (2)_mask.png + benign (2)_mask_1.png; "
        "which one trains is yours to say: keep one kind beside the picture and move the "
        f"others out of {data}"
    ) in err, err
    assert "or skip them (--skip-bad)" in err and not out.exists()
    assert cli.main(["fit", "--data", str(data), *FIT, "--run-dir", str(tmp_path / "r")]) == 2
    assert "masks of 2 different kinds" in capsys.readouterr().err
    assert not (tmp_path / "r" / "best.pt").exists()

    assert cli.main(["cache", "--data", str(data), str(out), "--skip-bad"]) == 0
    cache = load_cache(out)
    assert sorted(cache.names) == sorted(set(truth) - {"benign (2)"})
    assert cache.skipped[0][0] == str(data / "benign (2).png")

    saved.unlink()  # one kind left: it trains
    assert [p.name for p in find_pairs(data)] == ["5", "benign (1)", "benign (2)", "benign (8)",
                                                  "case-4", "us 6"]  # fmt: skip


def test_side_by_side_problems_are_reported_as_in_images_and_masks(udiat, tmp_path):
    """A picture without a mask, a mask whose picture is missing, a mask of another size:
    each a problem naming the file (refused unless skipped), as for images/ + masks/."""
    data = tmp_path / "busi"
    _folder(data, normal=False)
    shutil.copy(UDIAT / "images" / "000002.png", data / "benign (3).png")  # 360 x 528
    shutil.copy(UDIAT / "masks" / "000003.png", data / "benign (3)_mask.png")  # 440 x 501
    shutil.copy(UDIAT / "images" / "000040.png", data / "benign (4).png")
    shutil.copy(UDIAT / "masks" / "000005.png", data / "benign (9)_mask.png")
    with pytest.raises(DatasetError) as raised:
        find_pairs(data)
    text = str(raised.value)
    assert text.startswith(f"{data}: 6 pairs, 3 problems\n")
    assert f"  benign (3): size mismatch: image {data / 'benign (3).png'} is 360x528" in text
    assert (
        f"  {data / 'benign (4).png'}: no mask named benign (4)_mask.* (or benign (4)-mask.*, "
        f"benign (4)_gt.*...) beside it in {data}"
    ) in text
    assert (
        f"  {data / 'benign (9)_mask.png'}: named as the mask of benign (9).*, but no picture "
        f"of that name is beside it in {data}"
    ) in text
    assert len(find_pairs(data, skip_bad=True)) == 6


def test_a_folder_of_such_folders_names_them(udiat, tmp_path):
    """BUSI's download holds benign/, malignant/, normal/: given their parent, the
    refusal names them and what to give; a folder of pictures without masks says so."""
    _folder(tmp_path / "busi" / "benign", normal=False)
    _folder(tmp_path / "busi" / "malignant", normal=False)
    with pytest.raises(DatasetError) as raised:
        find_pairs(tmp_path / "busi")
    assert str(raised.value).endswith(
        "; its subfolders benign, malignant hold pictures with their masks beside them: "
        "give one of them, or put their files in one folder"
    )
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    shutil.copy(UDIAT / "images" / "000003.png", pictures / "a.png")
    with pytest.raises(DatasetError, match=r"none of its 1 pictures has a mask beside it"):
        find_pairs(pictures)


def test_fine_tune_folder_takes_a_side_by_side_folder(udiat, tmp_path):
    """The Fine-tune dock's Folder: read as a dataset (its modality, no problems), and
    the run's data folder gets each picture with its union mask."""
    from napari_tmunet._finetune_folder import read_folder
    from napari_tmunet.training.finetune import write_dataset

    data = tmp_path / "busi"
    truth = _folder(data)
    assert read_folder(str(data)) == ("ultrasound", "")
    info = write_dataset([], tmp_path / "run", folder=data)
    assert len(info["names"]) == len(truth) and "folder-benign_2" in info["names"]
    written = read_mask(tmp_path / "run" / "masks" / "folder-benign_2.png")[0]
    assert np.array_equal(written, truth["benign (2)"])
