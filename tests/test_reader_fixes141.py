"""A large folder opened with the TM-UNet reader: napari adds each layer more slowly the
more it holds (bench/folder_open_speed.py: 100 pairs froze the window for 30-80 s), so a
folder opens its first :data:`MAX_FOLDER_PAIRS` pairs (masks alone count too) or
:data:`MAX_FOLDER_LAYERS` images, each opened file read once and the others not read; the
warning says how to open the others, and the launcher command it gives opens them with
their masks. Built from real CVC-ClinicDB frames and masks."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from _clinic_frames import besides_mask_rules, clinic_stems, numbered_dataset, paired_folder
from _launcher import launcher_words, open_as_launcher
from _paths import DATASETS

from napari_tmunet._reader import MAX_FOLDER_LAYERS, MAX_FOLDER_PAIRS, napari_get_reader
from napari_tmunet.data import images

CLINIC = DATASETS / "CVC-ClinicDB"
UDIAT = DATASETS / "UDIAT"
needs_datasets = pytest.mark.skipif(
    not (CLINIC / "images").is_dir() or not (UDIAT / "images").is_dir(),
    reason=f"no datasets at {DATASETS}",
)


@pytest.fixture
def decoded(monkeypatch):
    """How many times each file's pixels are decoded (``data.images._decode``, which
    ``read_image`` and ``read_image_channels`` call unless the pixels are kept)."""
    counts: Counter = Counter()
    real = images._decode

    def counting(path, *args, **kwargs):
        counts[Path(path).name] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "_decode", counting)
    return counts


def _read(folder: Path) -> list:
    layers = napari_get_reader(str(folder))(str(folder))
    return [layer for layer in layers if len(layer) == 3]


@needs_datasets
def test_a_large_paired_folder_opens_its_first_pairs_each_file_read_once(
    tmp_path, notifications, decoded
):
    """30 pictures with their masks and 5 masks alone: the first 25 pairs open, each
    picture and mask decoded once; the pictures and masks after them are not read (the
    masks alone not even judged); one warning says how many, why, and how to open the
    others."""
    folder = paired_folder(tmp_path / "polyps folder", pairs=30, lone=5)
    layers = _read(folder)
    assert MAX_FOLDER_PAIRS == 25
    names = [kwargs["name"] for _, kwargs, _ in layers]
    expected = [name for k in range(1, 26) for name in (f"{k}", f"{k} mask")]
    assert names == expected
    opened = [f"{k}.png" for k in range(1, 26)] + [f"{k}_mask.tif" for k in range(1, 26)]
    assert decoded == Counter({name: 1 for name in opened})
    warnings = [message for severity, message in notifications if severity == "warning"]
    warnings = besides_mask_rules(warnings)
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"{folder}: opened the first 25 of 35 pictures and their masks: napari slows down"
    )
    assert launcher_words(warnings[0]) == [str(folder), "--from", "26"]
    assert "open single files" not in warnings[0]


@needs_datasets
def test_masks_alone_count_toward_the_cap(tmp_path, decoded):
    """A folder of 30 masks whose pictures are missing opens 25 Labels layers, as many
    as a folder of pairs opens pictures, and the other 5 files are not read."""
    folder = paired_folder(tmp_path / "masks only", pairs=0, lone=30)
    layers = _read(folder)
    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
        (f"{k} mask", "labels") for k in range(1, 26)
    ]
    assert {f"{k}_mask.tif" for k in range(26, 31)}.isdisjoint(decoded)


@needs_datasets
def test_the_launcher_command_of_a_dataset_folders_warning_opens_the_others(
    tmp_path, notifications, decoded, make_napari_viewer
):
    """A dataset folder of 27 pairs opens its first 25, each file decoded once; the
    launcher command the warning gives opens pictures 26 and 27 with their masks over
    them."""
    root = numbered_dataset(tmp_path / "dataset", 27)
    layers = _read(root)
    assert len(layers) == 50
    assert decoded == Counter(
        {f"{k}{suffix}": 1 for k in range(1, 26) for suffix in (".png", ".tif")}
    )
    warnings = [message for severity, message in notifications if severity == "warning"]
    (warning,) = besides_mask_rules(warnings)
    assert warning.startswith(f"{root}: opened the first 25 of 27 images: ")
    viewer = make_napari_viewer()
    open_as_launcher(viewer, launcher_words(warning))
    assert [(layer.name, layer._type_string) for layer in viewer.layers] == [
        ("26", "image"),
        ("26 mask", "labels"),
        ("27", "image"),
        ("27 mask", "labels"),
    ]


@needs_datasets
def test_a_large_folder_of_images_of_different_sizes_opens_its_first_50(tmp_path, notifications):
    """51 images of two sizes (no masks): the first 50 open as layers; the warning says
    to choose the others in File > Open File(s)..."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    stems = clinic_stems(51)
    for k in range(1, 52):
        source = (
            CLINIC / "images" / f"{stems[k - 1]}.png" if k % 2 else UDIAT / "images" / "000001.png"
        )
        shutil.copy(source, folder / f"{k:03d}.png")
    layers = _read(folder)
    assert MAX_FOLDER_LAYERS == 50
    assert [kwargs["name"] for _, kwargs, _ in layers] == [f"{k:03d}" for k in range(1, 51)]
    (warning,) = [message for severity, message in notifications if severity == "warning"]
    assert warning.startswith(f"{folder}: opened the first 50 of 51 images: ")
    assert "choose them in File > Open File(s)... (from 051.png on)" in warning
