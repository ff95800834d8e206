"""Pictures and their masks side by side in one folder (BUSI's Kaggle layout:
``benign (2).png``, ``benign (2)_mask.png``, a second lesion's ``benign (2)_mask_1.png``;
other sets ``NAME-mask``, ``NAME_gt``, ``NAME mask``, ``NAME_labels``): the TM-UNet reader
opens each picture with its mask as Labels over it (several masks as their union, said
in a notification), never a mask as a picture; ``napari-tmunet PICTURE`` merges a
picture's numbered masks too; the Fine-tune dock's Folder and the trainer take such a
folder, naming its problem files. Built from real UDIAT and CVC-ClinicDB pictures and
their own masks; UDIAT 000032 and 000040 are one picture with two different real masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet._reader import napari_get_reader
from napari_tmunet.data.images import read_mask

UDIAT = DATASETS / "UDIAT"
CLINIC = DATASETS / "CVC-ClinicDB"
# BUSI-style name -> (UDIAT picture, UDIAT mask(s)); 000001 is 360 x 528, the others 440 x 501
BUSI = {
    "benign (1)": ("000001", ["000001"]),
    "benign (2)": ("000032", ["000032", "000040"]),  # one picture, two real masks
    "benign (3)": ("000003", ["000003"]),
}


@pytest.fixture
def udiat():
    if not (UDIAT / "images").is_dir():
        pytest.skip(f"no UDIAT at {UDIAT}")
    return UDIAT


@pytest.fixture
def clinic():
    if not (CLINIC / "images").is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    return CLINIC


def _busi_folder(folder):
    """The BUSI Kaggle layout from UDIAT files: each picture, its ``_mask.png``, a second
    mask ``benign (2)_mask_1.png``; ``benign (4).png`` without a mask; a mask whose
    picture is missing (``benign (9)_mask.png``); ``benign (5).png`` (360 x 528) with the
    mask of a 440 x 501 picture. Returns the expected labels per picture."""
    folder.mkdir(parents=True)
    truth = {}
    for name, (picture, masks) in BUSI.items():
        shutil.copy(UDIAT / "images" / f"{picture}.png", folder / f"{name}.png")
        for index, mask in enumerate(masks):
            suffix = "_mask" if index == 0 else f"_mask_{index}"
            shutil.copy(UDIAT / "masks" / f"{mask}.png", folder / f"{name}{suffix}.png")
        truth[name] = np.logical_or.reduce([_truth(UDIAT / "masks" / f"{m}.png") for m in masks])
    shutil.copy(UDIAT / "images" / "000004.png", folder / "benign (4).png")
    shutil.copy(UDIAT / "masks" / "000005.png", folder / "benign (9)_mask.png")
    shutil.copy(UDIAT / "images" / "000002.png", folder / "benign (5).png")
    shutil.copy(UDIAT / "masks" / "000004.png", folder / "benign (5)_mask.png")
    return truth


def _truth(path):
    return read_mask(path)[0]


def _read(folder):
    reader = napari_get_reader(str(folder))
    assert reader is not None, f"no reader for {folder}"
    return reader(str(folder))


def test_a_busi_folder_opens_each_picture_with_its_masks_as_labels(tmp_path, udiat, notifications):
    """Pictures as images, each one's mask as "NAME mask" Labels over it (paired for the
    Metrics dock by metadata "image"); benign (2)'s two masks as their union, named in one
    info notification; the mask without a picture opens alone as Labels "benign (9) mask",
    said in an info notification; the mask of another size is not opened, nor a damaged
    second mask: named in a warning with what to do (benign (3) keeps its first mask).
    main opened all 11 files as images."""
    folder = tmp_path / "benign"
    truth = _busi_folder(folder)
    (folder / "benign (3)_mask_1.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")

    layers = _read(folder)

    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
        ("benign (1)", "image"),
        ("benign (1) mask", "labels"),
        ("benign (2)", "image"),
        ("benign (2) mask", "labels"),
        ("benign (3)", "image"),
        ("benign (3) mask", "labels"),
        ("benign (4)", "image"),
        ("benign (5)", "image"),
        ("benign (9) mask", "labels"),
    ]
    assert [kwargs["visible"] for _, kwargs, _ in layers] == [True, True] + [False] * 7
    labels = {kwargs["name"]: (data, kwargs) for data, kwargs, kind in layers if kind == "labels"}
    truth["benign (9)"] = _truth(UDIAT / "masks" / "000005.png")
    for name, expected in truth.items():
        data, kwargs = labels[f"{name} mask"]
        assert data.dtype == np.uint8 and set(np.unique(data)) == {0, 1}
        np.testing.assert_array_equal(data > 0, expected, err_msg=name)
        assert kwargs["metadata"].get("image", name) == name
    assert "image" not in labels["benign (9) mask"][1]["metadata"]  # no picture layer
    one, other = (_truth(UDIAT / "masks" / f"{m}.png") for m in ("000032", "000040"))
    assert (one != other).sum() > 500  # the union differs from either mask
    assert labels["benign (2) mask"][1]["metadata"]["paths"] == [
        str(folder / "benign (2)_mask.png"),
        str(folder / "benign (2)_mask_1.png"),
    ]

    infos = [message for severity, message in notifications if severity == "info"]
    assert infos == [
        f"{folder}: masks without their picture beside them (open it to pair them):\n"
        '  benign (9)_mask.png: opened alone as Labels "benign (9) mask"',
        f"{folder}: the masks of a picture opened as one (their union):\n"
        "  benign (2).png: benign (2)_mask.png, benign (2)_mask_1.png",
    ]
    (warning,) = [message for severity, message in notifications if severity == "warning"]
    assert warning.startswith(f"{folder}: masks not opened:\n")
    assert "benign (9)" not in warning
    broken = next(line for line in warning.splitlines() if "benign (3)_mask_1.png:" in line)
    assert str(folder / "benign (3)_mask_1.png") in broken  # its read error, naming it
    assert (
        f"benign (5)_mask.png: the mask {folder / 'benign (5)_mask.png'} is 440 x 501 pixels but "
        f"its picture {folder / 'benign (5).png'} is 360 x 528: give the mask made for that "
        "picture" in warning
    )


def test_other_mask_names_in_a_folder_of_one_picture_size(tmp_path, clinic, plugin_manager):
    """CVC-ClinicDB frames (all 384 x 288) with their TIFF masks named NAME-mask, NAME_gt,
    "NAME mask", NAME_labels: main left the folder to napari's reader (one stack of 8
    slices, masks among the pictures); now 4 pictures with their masks, through the
    viewer as napari opens a folder. A folder of the pictures alone is still napari's."""
    from napari.components import ViewerModel

    folder = tmp_path / "clinic"
    folder.mkdir()
    names = {"1": "1-mask", "2": "2_gt", "3": "3 mask", "10": "10_labels"}
    for frame, mask in names.items():
        shutil.copy(CLINIC / "images" / f"{frame}.png", folder / f"{frame}.png")
        shutil.copy(CLINIC / "masks" / f"{frame}.tif", folder / f"{mask}.tif")

    viewer = ViewerModel()
    viewer.open(str(folder), plugin="napari-tmunet")

    assert [(layer.name, layer._type_string) for layer in viewer.layers] == [
        (name, kind)
        for frame in names
        for name, kind in ((frame, "image"), (f"{frame} mask", "labels"))
    ]
    for frame in names:
        expected = _truth(CLINIC / "masks" / f"{frame}.tif")  # >127: stray values left out
        np.testing.assert_array_equal(viewer.layers[f"{frame} mask"].data > 0, expected)
        assert viewer.layers[frame].data.shape == (288, 384, 3)

    pictures_only = tmp_path / "pictures"
    pictures_only.mkdir()
    for frame in names:
        shutil.copy(CLINIC / "images" / f"{frame}.png", pictures_only / f"{frame}.png")
    assert napari_get_reader(str(pictures_only)) is None


@pytest.fixture
def launch(monkeypatch, launcher_app):
    """``launch(paths, then=None)``: ``napari-tmunet PATHS`` up to the event loop, where
    ``then(viewer)`` runs; (exit status, {layer name: (data, type)}, what ``then`` gave)."""
    import napari

    from napari_tmunet import launch as launcher

    def run(paths, then=None):
        seen = {}

        def look_and_close():
            viewer = napari.current_viewer()
            seen["layers"] = {
                layer.name: (np.asarray(layer.data), layer._type_string) for layer in viewer.layers
            }
            seen["then"] = then(viewer) if then else None
            viewer.close()

        monkeypatch.setattr(napari, "run", look_and_close)
        monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
        status = launcher.main([str(path) for path in paths])
        return status, seen.get("layers"), seen.get("then")

    return run


def test_the_launcher_merges_a_pictures_numbered_masks(tmp_path, udiat, launch, notifications):
    """``napari-tmunet "benign (2).png"``: both masks beside it open as one Labels layer,
    their union, said in an info notification (main opened benign (2)_mask.png alone and
    dropped the second lesion); given with both masks, the same; the folder opens as the
    reader opens it (the mask without its picture alone, as Labels)."""
    folder = tmp_path / "benign"
    truth = _busi_folder(folder)
    picture = folder / "benign (2).png"
    masks = [folder / "benign (2)_mask.png", folder / "benign (2)_mask_1.png"]
    note = (
        f"{folder}: the masks of a picture opened as one (their union):\n"
        "  benign (2).png: benign (2)_mask.png, benign (2)_mask_1.png"
    )

    for given in ([picture], [picture, *masks]):
        notifications.clear()
        status, layers, _ = launch(given)
        assert status == 0
        assert sorted(layers) == ["benign (2)", "benign (2) mask"], given
        data, kind = layers["benign (2) mask"]
        assert kind == "labels"
        np.testing.assert_array_equal(data > 0, truth["benign (2)"])
        assert note in [message for severity, message in notifications if severity == "info"]

    status, layers, _ = launch([folder])
    assert status == 0
    assert sorted(layers) == sorted(
        [
            "benign (4)",
            "benign (5)",
            "benign (9) mask",  # a mask without its picture: alone, as Labels
            *(f"{n}{m}" for n in truth for m in ("", " mask")),
        ]
    )


def test_metrics_scores_a_segmented_picture_against_its_merged_masks(tmp_path, udiat, launch):
    """``napari-tmunet FOLDER`` (the BUSI layout), Segment "benign (2)" with the shipped
    ultrasound model in the Segment dock (its worker thread): the Metrics dock pairs the
    result with "benign (2) mask", the union of its two masks, and its Dice is the one
    computed here against that union."""
    from napari_tmunet import registry
    from napari_tmunet.launch import _click_segment
    from napari_tmunet.metrics import dice_score

    if registry.model_for_modality("ultrasound") is None:
        pytest.skip("no shipped ultrasound model")
    folder = tmp_path / "benign"
    truth = _busi_folder(folder)

    def segment_and_score(viewer):
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        metrics = viewer.window.dock_widgets["Metrics (TM-UNet)"]
        segment.image.value = viewer.layers["benign (2)"]
        segment.model.value = registry.model_for_modality("ultrasound").name
        _click_segment(segment, timeout=600)
        pair = (metrics.prediction.value.name, metrics.reference.value.name)
        labels = np.asarray(segment.last_layer.data) > 0
        return pair, segment.last_layer.name, metrics.compute()[-1]["dice"], labels

    status, _, (pair, output, dice, labels) = launch([folder], segment_and_score)
    assert status == 0
    assert pair == (output, "benign (2) mask")
    assert dice == pytest.approx(dice_score(labels, truth["benign (2)"]), abs=1e-4)
    assert dice > 0.9  # measured 0.962 (shipped ultrasound model, CPU)


def test_training_on_a_mixed_folder_names_its_problem_files(tmp_path, udiat):
    """The Fine-tune dock's Folder and the trainer take a folder of pictures with masks
    beside them as it is (main refused it for want of images/): its modality is read, and
    its problem files are named as an images/ + masks/ folder's are: a picture without a
    mask, a mask without its picture, a mask of another size (tests/
    test_side_by_side_training.py trains on such folders)."""
    from napari_tmunet._finetune_folder import read_folder
    from napari_tmunet.data.datasets import DatasetError, find_pairs

    folder = tmp_path / "benign"
    _busi_folder(folder)

    modality, problem = read_folder(str(folder))
    assert modality == "ultrasound"
    assert problem.startswith(f"{folder}: 3 pairs, 3 problems\n")
    assert problem.endswith("3 pairs can be used; fix or move the others before Start")
    for named in ("benign (4).png: no mask named", "benign (9)_mask.png: named as the mask"):
        assert f"  {folder / named}" in problem
    assert f"  benign (5): size mismatch: image {folder / 'benign (5).png'}" in problem
    with pytest.raises(DatasetError) as raised:
        find_pairs(folder)
    assert str(raised.value).startswith(f"{folder}: 3 pairs, 3 problems\n")
    assert [pair.name for pair in find_pairs(folder, skip_bad=True)] == [
        "benign (1)", "benign (2)", "benign (3)"
    ]  # fmt: skip


def test_a_saved_correction_beside_its_picture_keeps_its_ids(tmp_path, udiat):
    """A Segment result saved by this plugin's writer as "NAME mask.tif" (instance ids:
    the real lesion's left and right halves 1 and 2) beside its picture, in a folder of
    pictures of two sizes: it reopens over its picture as the Labels it was written (ids
    kept, its kind in the metadata), paired by metadata "image" for the Metrics dock."""
    from napari_tmunet.data.images import write_mask

    folder = tmp_path / "clinic"
    folder.mkdir()
    for name in ("000001", "000003"):
        shutil.copy(UDIAT / "images" / f"{name}.png", folder / f"{name}.png")
    mask = _truth(UDIAT / "masks" / "000003.png")
    ids = mask.astype(np.uint16)
    columns = np.nonzero(mask.any(axis=0))[0]
    ids[:, (columns.min() + columns.max()) // 2 :] *= 2
    assert set(np.unique(ids)) == {0, 1, 2}
    write_mask(folder / "000003 mask.tif", ids)

    layers = _read(folder)

    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
        ("000001", "image"),
        ("000003", "image"),
        ("000003 mask", "labels"),
    ]
    data, kwargs, _ = layers[2]
    np.testing.assert_array_equal(data, ids)
    assert kwargs["metadata"]["output"] == "instances"
    assert kwargs["metadata"]["image"] == "000003"
    assert kwargs["visible"] is False  # hidden with its picture, the second


def test_predict_segments_the_pictures_not_their_masks(tmp_path, udiat, capsys):
    """``napari-tmunet-predict FOLDER OUT`` on the BUSI layout with the shipped ultrasound
    model: one mask per picture, none for the 6 files named as masks, said in one line
    (main segmented the masks too: 11 outputs, "benign (1)_mask.png" among them)."""
    from napari_tmunet import registry
    from napari_tmunet.metrics import dice_score
    from napari_tmunet.predict_cli import main

    if registry.model_for_modality("ultrasound") is None:
        pytest.skip("no shipped ultrasound model")
    folder, out = tmp_path / "benign", tmp_path / "out"
    truth = _busi_folder(folder)

    assert main([str(folder), str(out), "--model", "ultrasound", "--device", "cpu"]) == 0

    err = capsys.readouterr().err
    assert (
        "napari-tmunet-predict: 6 files named as masks not segmented (pictures with their "
        "masks beside them: e.g. benign (1)_mask.png beside benign (1).png; 1 mask without "
        "its picture: e.g. benign (9)_mask.png)"
    ) in err
    assert "5 images ->" in err
    assert sorted(p.name for p in out.iterdir()) == [f"benign ({i}).png" for i in range(1, 6)]
    merged = read_mask(out / "benign (2).png")[0]
    assert dice_score(merged, truth["benign (2)"]) > 0.9


def test_a_correction_saved_beside_busi_masks_reopens_as_saved(
    tmp_path, udiat, launch, notifications
):
    """A pathologist opens the BUSI folder, removes benign (2)'s false second lesion from
    "benign (2) mask" (the union of its two PNGs) and saves it with this plugin's writer
    into the folder as "benign (2) mask.tif". Reopened (the folder, or ``napari-tmunet
    "benign (2).png"``), the correction is its own layer "benign (2) mask" exactly as
    saved, shown; the PNGs' union is another, "benign (2)_mask", hidden; a notification
    names both. The branch before merged all three into one layer: the removed pixels
    came back."""
    from napari_tmunet._writer import write_labels

    folder = tmp_path / "benign"
    truth = _busi_folder(folder)
    opened = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in _read(folder)}
    union, kwargs = opened["benign (2) mask"]
    correction = union.copy()
    correction[~_truth(UDIAT / "masks" / "000032.png")] = 0  # the false lesion removed
    assert (correction != union).sum() > 100  # 171 pixels of 000040 outside 000032
    saved = folder / "benign (2) mask.tif"
    assert write_labels(str(saved), correction, kwargs) == [str(saved)]
    notifications.clear()

    layers = {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in _read(folder)}

    names = [name for name in layers if name.startswith("benign (2)")]
    assert names == ["benign (2)", "benign (2) mask", "benign (2)_mask"]
    data, kwargs, kind = layers["benign (2) mask"]
    assert kind == "labels" and data.dtype == correction.dtype
    np.testing.assert_array_equal(data, correction)
    assert kwargs["metadata"]["path"] == str(saved)
    data, kwargs, kind = layers["benign (2)_mask"]
    assert kind == "labels"
    np.testing.assert_array_equal(data > 0, truth["benign (2)"])
    assert kwargs["metadata"]["paths"] == [
        str(folder / "benign (2)_mask.png"),
        str(folder / "benign (2)_mask_1.png"),
    ]
    assert {layers[n][1]["metadata"]["image"] for n in names[1:]} == {"benign (2)"}
    infos = [message for severity, message in notifications if severity == "info"]
    assert (
        f"{folder}: masks of a picture named differently opened as separate layers, not "
        "merged (the first shown):\n"
        '  benign (2).png: "benign (2) mask" (benign (2) mask.tif); "benign (2)_mask" '
        "(benign (2)_mask.png, benign (2)_mask_1.png)"
    ) in infos

    def visibility(viewer):
        return {layer.name: layer.visible for layer in viewer.layers}

    status, layers, visible = launch([folder / "benign (2).png"], visibility)
    assert status == 0
    assert visible == {"benign (2)": True, "benign (2) mask": True, "benign (2)_mask": False}
    np.testing.assert_array_equal(layers["benign (2) mask"][0], correction)
    np.testing.assert_array_equal(layers["benign (2)_mask"][0] > 0, truth["benign (2)"])


def test_a_reference_and_another_mask_of_a_picture_open_apart(tmp_path, udiat, notifications):
    """``X.png`` with ``X_gt.png`` (its reference, UDIAT 000032's mask) and ``X_mask.png``
    (another mask, 000040's): two Labels layers "X_gt" (shown) and "X_mask" (hidden),
    each its own file's, both paired with "X" for the Metrics dock; the branch before
    opened their union as one layer "X mask"."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(UDIAT / "images" / "000032.png", folder / "X.png")
    shutil.copy(UDIAT / "masks" / "000032.png", folder / "X_gt.png")
    shutil.copy(UDIAT / "masks" / "000040.png", folder / "X_mask.png")

    layers = _read(folder)

    assert [(kwargs["name"], kind, kwargs["visible"]) for _, kwargs, kind in layers] == [
        ("X", "image", True),
        ("X_gt", "labels", True),
        ("X_mask", "labels", False),
    ]
    for (data, kwargs, _), mask in zip(layers[1:], ("000032", "000040"), strict=True):
        np.testing.assert_array_equal(data > 0, _truth(UDIAT / "masks" / f"{mask}.png"))
        assert kwargs["metadata"]["image"] == "X"
    assert [message for severity, message in notifications if severity == "info"] == [
        f"{folder}: masks of a picture named differently opened as separate layers, not "
        'merged (the first shown):\n  X.png: "X_gt" (X_gt.png); "X_mask" (X_mask.png)'
    ]


def _named_as_masks_folder(folder):
    """Pictures whose names look like masks' beside a real pair: ``x_mask.png`` (UDIAT
    000003) with its mask ``x_mask_mask.png``, ``liver-labels.png`` (UDIAT 000004, an
    ultrasound picture, alone), ``benign (1).png`` with ``benign (1)_mask.png``. Returns
    x_mask's expected labels."""
    folder.mkdir(parents=True)
    shutil.copy(UDIAT / "images" / "000003.png", folder / "x_mask.png")
    shutil.copy(UDIAT / "masks" / "000003.png", folder / "x_mask_mask.png")
    shutil.copy(UDIAT / "images" / "000004.png", folder / "liver-labels.png")
    shutil.copy(UDIAT / "images" / "000001.png", folder / "benign (1).png")
    shutil.copy(UDIAT / "masks" / "000001.png", folder / "benign (1)_mask.png")
    return _truth(UDIAT / "masks" / "000003.png")


def _masks_only_folder(folder):
    """Four real UDIAT masks named ``img1_mask.png``..., their pictures elsewhere."""
    folder.mkdir(parents=True)
    for index, mask in enumerate(("000001", "000002", "000003", "000004"), start=1):
        shutil.copy(UDIAT / "masks" / f"{mask}.png", folder / f"img{index}_mask.png")


def test_pictures_named_as_masks_open_as_pictures(tmp_path, udiat, notifications):
    """A picture ``x_mask.png`` whose mask ``x_mask_mask.png`` is beside it opens as a
    picture with that mask over it; a lone ultrasound picture ``liver-labels.png`` opens
    as an image; no warning calls them masks (main opened neither and warned "x_mask.png:
    no picture named x.*", "liver-labels.png: no picture named liver.*")."""
    folder = tmp_path / "named"
    expected = _named_as_masks_folder(folder)

    layers = _read(folder)

    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
        ("benign (1)", "image"),
        ("benign (1) mask", "labels"),
        ("liver-labels", "image"),
        ("x_mask", "image"),
        ("x_mask mask", "labels"),
    ]
    named = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in layers}
    np.testing.assert_array_equal(named["x_mask mask"][0] > 0, expected)
    assert named["x_mask mask"][1]["metadata"]["image"] == "x_mask"
    assert named["liver-labels"][0].shape[:2] == (440, 501)
    assert [severity for severity, _ in notifications if severity != "info"] == []


def test_a_folder_of_masks_only_opens_them_as_labels(tmp_path, udiat, notifications):
    """A folder holding only masks (``img1_mask.png``...) opens each as Labels "imgN
    mask" (as ``napari-tmunet MASK`` opens a mask without its picture), the first shown,
    said in one info notification; main left it to napari's reader, which opened them as
    images with no note."""
    folder = tmp_path / "allmasks"
    _masks_only_folder(folder)

    layers = _read(folder)

    assert [(kwargs["name"], kind, kwargs["visible"]) for _, kwargs, kind in layers] == [
        (f"img{index} mask", "labels", index == 1) for index in range(1, 5)
    ]
    for (data, _, _), mask in zip(layers, ("000001", "000002", "000003", "000004"), strict=True):
        np.testing.assert_array_equal(data > 0, _truth(UDIAT / "masks" / f"{mask}.png"))
    (note,) = [message for _, message in notifications]
    assert note == (
        f"{folder}: masks without their picture beside them (open it to pair them):\n"
        + "\n".join(f'  img{i}_mask.png: opened alone as Labels "img{i} mask"' for i in range(1, 5))
    )


def test_predict_segments_pictures_named_as_masks_and_skips_masks(tmp_path, udiat, capsys):
    """``napari-tmunet-predict`` segments ``x_mask.png`` and ``liver-labels.png`` (pictures)
    and skips the real masks, said in one line (main skipped all four files named as
    masks); on a folder of masks only it segments none, saying they are masks (main
    segmented the four masks as pictures)."""
    from napari_tmunet import registry
    from napari_tmunet.metrics import dice_score
    from napari_tmunet.predict_cli import EXIT_USAGE, main

    if registry.model_for_modality("ultrasound") is None:
        pytest.skip("no shipped ultrasound model")
    folder, out = tmp_path / "named", tmp_path / "out"
    expected = _named_as_masks_folder(folder)

    assert main([str(folder), str(out), "--model", "ultrasound", "--device", "cpu"]) == 0

    err = capsys.readouterr().err
    assert (
        "napari-tmunet-predict: 2 files named as masks not segmented (pictures with their "
        "masks beside them: e.g. benign (1)_mask.png beside benign (1).png)"
    ) in err
    assert sorted(p.name for p in out.iterdir()) == [
        "benign (1).png",
        "liver-labels.png",
        "x_mask.png",
    ]
    assert dice_score(read_mask(out / "x_mask.png")[0], expected) > 0.8

    masks, out2 = tmp_path / "allmasks", tmp_path / "out2"
    _masks_only_folder(masks)
    code = main([str(masks), str(out2), "--model", "ultrasound", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert (
        "napari-tmunet-predict: 4 files named as masks not segmented (4 masks without their "
        "picture: e.g. img1_mask.png)"
    ) in err
    assert (
        f"error: no pictures to segment in {masks}: its images are all masks; give the "
        "folder of their pictures"
    ) in err
    assert not out2.exists() or not any(out2.iterdir())


def test_the_launcher_opens_a_picture_named_as_a_mask_as_a_picture(tmp_path, clinic, launch):
    """``napari-tmunet x_mask.png`` on a CVC-ClinicDB colonoscopy frame, and ``napari-tmunet
    liver-labels.png`` (another frame): the file whose picture is not given is told by
    its pixels, as the TM-UNet reader tells it in a folder, so it opens as the picture it
    is, chosen in the Segment dock, with its own mask found beside it
    (``x_mask_mask.png``) or given with it; given with another picture it no longer stops
    the launch as a mask of no picture given. A real mask alone (``y_mask.png``,
    ``masks/y.png``) still opens as Labels. main opened both frames as 0/1 Labels
    "x mask", "liver mask", with nothing to segment."""
    from PIL import Image as Picture

    from napari_tmunet.data.images import read_image

    def save_mask(name, path):  # a CVC-ClinicDB mask as a 0/255 PNG
        truth = _truth(clinic / "masks" / f"{name}.tif")
        Picture.fromarray(truth.astype(np.uint8) * np.uint8(255)).save(path)
        return path

    def chosen(viewer):
        image = viewer.window.dock_widgets["Segment (TM-UNet)"].image.value
        return image.name if image is not None else None

    alone, paired = tmp_path / "alone", tmp_path / "paired"
    alone.mkdir()
    photo = shutil.copy(clinic / "images" / "137.png", alone / "x_mask.png")
    liver = shutil.copy(clinic / "images" / "446.png", alone / "liver-labels.png")
    other = shutil.copy(clinic / "images" / "493.png", alone / "a.png")
    truth = _truth(clinic / "masks" / "137.tif")
    paired.mkdir()
    picture = shutil.copy(photo, paired / "x_mask.png")
    mask = save_mask("137", paired / "x_mask_mask.png")
    lone_mask = save_mask("493", alone / "y_mask.png")

    for path, name in ((photo, "x_mask"), (liver, "liver-labels")):
        status, layers, picked = launch([path], chosen)
        assert status == 0 and picked == name
        assert [(n, kind) for n, (_, kind) in layers.items()] == [(name, "image")], path
        np.testing.assert_array_equal(layers[name][0], read_image(path))

    for given in ([picture], [picture, mask]):
        status, layers, picked = launch(given, chosen)
        assert status == 0 and picked == "x_mask"
        assert [(n, kind) for n, (_, kind) in layers.items()] == [
            ("x_mask", "image"),
            ("x_mask mask", "labels"),
        ], given
        np.testing.assert_array_equal(layers["x_mask mask"][0] > 0, truth)

    status, layers, picked = launch([other, liver], chosen)
    assert status == 0 and picked == "a"
    assert [(n, kind) for n, (_, kind) in layers.items()] == [
        ("a", "image"),
        ("liver-labels", "image"),
    ]

    (tmp_path / "set" / "masks").mkdir(parents=True)
    in_masks = save_mask("493", tmp_path / "set" / "masks" / "y.png")
    for path in (lone_mask, in_masks):
        status, layers, picked = launch([path], chosen)
        assert status == 0 and picked is None
        assert [(n, kind) for n, (_, kind) in layers.items()] == [("y mask", "labels")], path


SAMPLES = Path(__file__).resolve().parents[1] / "napari_tmunet" / "samples"


def _one_value_png(path, value, shape=(465, 554)):
    """A mask file all of one value (0: BUSI's empty mask of a lesion-free "normal"
    picture, 465 x 554 as ``normal (3)_mask.png``; 255: all foreground)."""
    from PIL import Image as Picture

    path.parent.mkdir(parents=True, exist_ok=True)
    Picture.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def test_a_mask_all_of_one_value_is_a_mask_by_its_name(tmp_path):
    """Pixels all one value cannot tell an empty mask from a black picture, so a file
    named as a mask whose picture is missing is a mask by its name
    (``orphan_holds_mask``): all 0 (BUSI's ``normal (3)_mask.png``) and all 255 alike; a
    real picture named as a mask is still told by its pixels, and an all-0 file of any
    other name is no mask by its pixels (main called the constant masks pictures)."""
    from napari_tmunet.data.images import file_looks_like_mask, holds_one_value
    from napari_tmunet.data.mask_names import judge_orphans, orphan_holds_mask, pair_by_mask_names

    empty = _one_value_png(tmp_path / "normal (3)_mask.png", 0)
    full = _one_value_png(tmp_path / "full_mask.png", 255)
    picture = shutil.copy(SAMPLES / "ultrasound_image.png", tmp_path / "liver-labels.png")
    black = _one_value_png(tmp_path / "black.png", 0)

    assert orphan_holds_mask(empty) and orphan_holds_mask(full)
    assert not orphan_holds_mask(picture)
    assert not file_looks_like_mask(black) and holds_one_value(np.zeros((4, 4), np.uint8))
    assert not holds_one_value(np.zeros((4, 4), np.float32))
    pairing = judge_orphans(pair_by_mask_names([empty, full, picture]))
    assert pairing.lone_masks == [full, empty]
    assert [item.picture for item in pairing.items] == [picture]


def test_an_empty_mask_without_its_picture_opens_as_empty_labels(tmp_path, notifications):
    """The TM-UNet reader opens a folder holding only BUSI's empty ``normal (3)_mask.png``
    as the empty Labels "normal (3) mask", and a picture ``a.png`` beside a lone empty
    ``b_mask.png`` and an all-255 ``c_mask.png`` as the image "a" with the Labels "b mask"
    (all 0) and "c mask" (all foreground); main opened the masks as black and white
    pictures."""
    only, pair = tmp_path / "only", tmp_path / "pair"
    _one_value_png(only / "normal (3)_mask.png", 0)
    pair.mkdir()
    shutil.copy(SAMPLES / "ultrasound_image.png", pair / "a.png")
    _one_value_png(pair / "b_mask.png", 0)
    _one_value_png(pair / "c_mask.png", 255)

    layers = _read(only)
    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [("normal (3) mask", "labels")]
    assert layers[0][0].shape == (465, 554) and not layers[0][0].any()

    layers = _read(pair)
    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
        ("a", "image"),
        ("b mask", "labels"),
        ("c mask", "labels"),
    ]
    assert not layers[1][0].any() and (layers[2][0] == 1).all()
    assert [severity for severity, _ in notifications] == ["info", "info"]


def test_predict_skips_empty_masks(tmp_path, capsys):
    """``napari-tmunet-predict`` leaves a lone empty ``b_mask.png`` beside ``a.png`` out,
    said in its line, and on a folder of BUSI's empty masks only segments none, before
    any model is loaded (main segmented the empty masks as black pictures)."""
    from napari_tmunet.predict_cli import EXIT_USAGE, _without_masks, main

    folder = tmp_path / "pair"
    folder.mkdir()
    picture = shutil.copy(SAMPLES / "ultrasound_image.png", folder / "a.png")
    empty = _one_value_png(folder / "b_mask.png", 0)
    assert _without_masks([picture, empty]) == [picture]
    assert (
        "napari-tmunet-predict: 1 file named as masks not segmented (1 mask without its "
        "picture: e.g. b_mask.png)"
    ) in capsys.readouterr().err

    masks, out = tmp_path / "normal", tmp_path / "out"
    for index in (3, 4):
        _one_value_png(masks / f"normal ({index})_mask.png", 0)
    assert main([str(masks), str(out), "--model", "ultrasound", "--device", "cpu"]) == EXIT_USAGE
    assert (
        f"error: no pictures to segment in {masks}: its images are all masks; give the "
        "folder of their pictures"
    ) in capsys.readouterr().err
    assert not out.exists()


def test_the_launcher_opens_an_empty_mask_alone_as_labels(tmp_path, launch):
    """``napari-tmunet "normal (3)_mask.png"`` (BUSI's empty mask) and ``napari-tmunet
    masks/normal (3).png`` open the empty Labels "normal (3) mask", as the reader opens
    it in a folder (main opened a black picture "normal (3)_mask" to segment)."""
    for path in (
        _one_value_png(tmp_path / "normal (3)_mask.png", 0),
        _one_value_png(tmp_path / "set" / "masks" / "normal (3).png", 0),
    ):
        status, layers, _ = launch([path])
        assert status == 0
        assert [(n, kind) for n, (_, kind) in layers.items()] == [("normal (3) mask", "labels")]
        assert not layers["normal (3) mask"][0].any()
