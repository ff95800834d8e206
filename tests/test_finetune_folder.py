"""The Fine-tune dock with a dataset Folder of H&E tiles and no pairs (a pathologist's
folder of reference masks): the model it starts from, what it says about the Folder's
files before and after Start, and the names of the held-out images (tester24 D3, D5, D7).
Real MoNuSeg crops, the shipped models, the threaded path (CPU, Xvfb)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet import _docks as docks
from napari_tmunet.data.images import read_image, read_mask, write_image, write_mask

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

MONUSEG = DATASETS / "MoNuSeg"
TILES = ("TCGA-18-5592-01Z-00-DX1", "TCGA-21-5784-01Z-00-DX1", "TCGA-21-5786-01Z-00-DX1")
CROP = np.s_[:192, :192]

needs_monuseg = pytest.mark.skipif(
    not all((MONUSEG / "images" / f"{t}.tif").is_file() for t in TILES),
    reason=f"no MoNuSeg at {MONUSEG}",
)


def open_dock(viewer, name):
    """The dock ``name`` as Plugins > TM-UNet opens it: the one open (e.g. the Metrics
    dock a fine-tune opened for its scores), else a new one."""
    _, widget = docks.open_dock(viewer, name)
    return getattr(widget, "__wrapped__", widget)


def tile_folder(root, names):
    """A dataset folder at ``root``: one 192 x 192 MoNuSeg crop per name (the tiles in
    turn) as images/NAME.tif and its reference mask as masks/NAME.png."""
    for index, name in enumerate(names):
        tile = TILES[index % len(TILES)]
        image = read_image(MONUSEG / "images" / f"{tile}.tif")[CROP]
        mask = read_mask(MONUSEG / "masks" / f"{tile}.png")[0][CROP]
        write_image(root / "images" / f"{name}.tif", np.ascontiguousarray(image))
        write_mask(root / "masks" / f"{name}.png", np.ascontiguousarray(mask))
    return root


def start_one_step(tune, qtbot, run_dir):
    """Start the dock (one step, CPU) by its button and wait for the worker to end."""
    tune.steps.value = 1
    tune.batch_size.value = 1
    tune.learning_rate.value = 1e-5
    tune.device.value = "cpu"
    tune.run_folder.value = run_dir
    tune.start_button.native.click()
    # the Folder is read again first (a worker too), then the run starts
    qtbot.waitUntil(lambda: tune.worker is not None or not tune.running, timeout=60_000)
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)


def shown(widget) -> bool:
    return not widget.native.isHidden()


def list_calls(monkeypatch) -> list:
    """The folders the dataset code lists from now on, in order."""
    from napari_tmunet.data import datasets

    listed, real = [], datasets._image_files

    def counted(folder):
        listed.append(folder)
        return real(folder)

    monkeypatch.setattr(datasets, "_image_files", counted)
    return listed


def choose(tune, qtbot, folder) -> None:
    """Choose Folder ``folder`` in the dock ``tune`` and wait until it has been read (in
    a worker thread: the note says "reading folder..." meanwhile)."""
    tune.dataset_folder.value = folder
    if folder is not None:
        assert tune.reading_folder and tune.folder_note.value == "reading folder..."
    qtbot.waitUntil(lambda: not tune.reading_folder, timeout=60_000)


def choose_folder(make_napari_viewer, qtbot, folder, counted: str):
    """A Fine-tune dock with Folder ``folder`` chosen, its note shown and starting with
    ``FOLDER: counted``; the dock and its note."""
    tune = open_dock(make_napari_viewer(), "Fine-tune")
    choose(tune, qtbot, folder)
    note = tune.folder_note.value
    assert shown(tune.folder_note), note
    assert note.startswith(f"{folder}: {counted}\n"), note
    return tune, note


@needs_monuseg
def test_a_folder_alone_fine_tunes_the_model_for_its_images(make_napari_viewer, qtbot, tmp_path):
    """No layer open, only a Folder of H&E crops with odd file names, Start from left at
    "Model that made the mask": the dock says, and the run fine-tunes, TM-UNet nuclei
    (it took the first registry model, colonoscopy, and advised to clear the Folder),
    also when a colonoscopy model is the active one. Chosen by hand, the colonoscopy
    model is named with the advice to choose the nuclei model, not to clear the Folder.
    The held-out image is named as its file is, in finetune.json and the Metrics note
    (it read "folder-_n_c_d_-kern"); the run folder's copies keep file-safe names."""
    names = ("tile 1 (copy)", "TCGA#4%", "a.b.c", "Ünïcødé-kern")  # the last is held out
    folder = tile_folder(tmp_path / "H&E tiles", names)
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    assert tune.model.value == "Model that made the mask" and tune.rows[0].image.value is None
    choose(tune, qtbot, folder)
    nuclei = "shipped model: TM-UNet nuclei (the Folder's images look like nuclei)"
    assert tune.active_label.value == nuclei
    assert not shown(tune.modality_note) and not shown(tune.folder_note)

    tune.model.value = "TM-UNet colonoscopy"
    assert shown(tune.modality_note)
    assert tune.modality_note.value == (
        "The images of folder 'H&E tiles' (nuclei) do not look like the colonoscopy images "
        "TM-UNet colonoscopy is for: fine-tuning it on them may make it worse on "
        "colonoscopy images; choose Start from: TM-UNet nuclei unless that is what you want."
    )
    tune.model.value = "Model that made the mask"
    assert not shown(tune.modality_note)
    # e.g. a fine-tuning of the colonoscopy model made active (Use anyway, or Revert)
    tune.active.set("TM-UNet colonoscopy", "TM-UNet colonoscopy", "colonoscopy")
    assert tune.start_model() == ("TM-UNet nuclei", "TM-UNet nuclei")
    assert tune.active_label.value == nuclei and not shown(tune.modality_note)

    run_dir = tmp_path / "run"
    start_one_step(tune, qtbot, run_dir)
    assert tune.error == "" and tune.result["step"] == 1, tune.status.value
    plan = json.loads((run_dir / "finetune.json").read_text(encoding="utf-8"))
    assert (plan["start_model"], plan["modality"]) == ("TM-UNet nuclei", "nuclei")
    assert tune.result["old_label"] == "TM-UNet nuclei"
    assert plan["held_out"] == "whole image(s): Ünïcødé-kern.tif"
    assert tune.result["held_out"] == plan["held_out"]
    metrics = open_dock(viewer, "Metrics")
    names, note = metrics.comparison_note.value.split("\n", 1)  # the models, then the part
    assert names.startswith("before: TM-UNet nuclei; after: ")
    assert note.startswith("whole image(s): Ünïcødé-kern.tif; ")
    assert "folder-" not in metrics.comparison_note.value
    valid = plan["split"]["valid"]
    assert valid == ["folder-_n_c_d_-kern"]  # the copy's name in the run folder: file-safe
    assert (run_dir / "data" / "images" / f"{valid[0]}.tif").is_file()


@needs_monuseg
def test_a_folders_problems_are_named_when_it_is_chosen_and_at_start(
    make_napari_viewer, qtbot, tmp_path
):
    """A Folder of five crops, one image without a mask, one mask saved both as .png and
    .tif, one mask cut to another size: choosing it names all three under it, with how
    many pairs can be used; Start then names them again, never the Python API's
    skip_bad=True, which the dock has no control for, and writes no run folder. Moved
    out of the Folder, the bad files are no longer named at the next Start, which trains
    on the other pairs."""
    folder = tile_folder(tmp_path / "slides", ("a", "b", "c", "d", "e"))
    (folder / "masks" / "b.png").unlink()  # an image without a mask
    mask_c = read_mask(folder / "masks" / "c.png")[0]
    write_mask(folder / "masks" / "c.tif", mask_c)  # saved again as TIFF to go on correcting
    write_mask(folder / "masks" / "d.png", mask_c[:150])  # another size than image d
    tune, note = choose_folder(make_napari_viewer, qtbot, folder, "2 pairs, 3 problems")
    assert f"{folder / 'images' / 'b.tif'}: no mask named b.* in {folder / 'masks'}" in note
    assert "several files with one base name: c.png, c.tif" in note
    assert "size mismatch: image" in note and "d.png is 150x192" in note
    assert note.endswith("\n2 pairs can be used; fix or move the others before Start")
    assert "skip" not in note
    # the Folder's images are still read for the model: H&E, the nuclei model
    assert tune.start_model() == ("TM-UNet nuclei", "TM-UNet nuclei")

    run_dir = tmp_path / "run"
    start_one_step(tune, qtbot, run_dir)
    assert tune.result is None
    status = tune.status.value
    assert status.startswith(f"failed: {folder}: 2 pairs, 3 problems\n"), status
    assert "size mismatch: image" in status and "d.png is 150x192" in status
    assert "no mask named b.*" in status and "c.png, c.tif" in status
    assert status.endswith("\n2 pairs can be used; fix or move the others, then Start again")
    assert "skip" not in status and "skip" not in tune.error
    assert not run_dir.exists()

    moved = tmp_path / "moved out"
    for name in ("images/b.tif", "masks/c.tif", "images/d.tif", "masks/d.png"):
        (moved / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder / name, moved / name)
    start_one_step(tune, qtbot, tmp_path / "run 2")
    assert not shown(tune.folder_note) and tune.folder_note.value == ""
    assert tune.error == "" and tune.result["step"] == 1, tune.status.value
    plan = json.loads((tmp_path / "run 2" / "finetune.json").read_text(encoding="utf-8"))
    assert sorted(plan["split"]["train"] + plan["split"]["valid"]) == [
        "folder-a",
        "folder-c",
        "folder-e",
    ]
    assert plan["held_out"] == "whole image(s): e.tif"


@needs_monuseg
def test_a_mask_of_another_size_is_named_when_the_folder_is_chosen(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """A Folder of three crops whose mask c.png was cut to 150 x 192 (its image is
    192 x 192): choosing the Folder names the size mismatch under it, with the two pairs
    that can be used, not only at Start. The mask saved again at its image's size, in
    place (its folder's time unchanged), and the Folder chosen again: the note is gone.
    Choosing it lists the Folder once (before: twice, without and with the sizes)."""
    folder = tile_folder(tmp_path / "slides", ("a", "b", "c"))
    mask_c = folder / "masks" / "c.png"
    whole = read_mask(mask_c)[0]
    write_mask(mask_c, whole[:150])
    listed = list_calls(monkeypatch)
    tune, note = choose_folder(make_napari_viewer, qtbot, folder, "2 pairs, 1 problem")
    assert listed == [folder / "images", folder / "masks"]  # once, the headers read with it
    assert "size mismatch: image" in note and "c.png is 150x192" in note
    assert note.endswith("\n2 pairs can be used; fix or move the others before Start")
    assert tune.start_model() == ("TM-UNet nuclei", "TM-UNet nuclei")  # still read: H&E

    fixed = tmp_path / "fixed.png"
    write_mask(fixed, whole)
    shutil.copyfile(fixed, mask_c)  # in place: masks/ keeps its time
    choose(tune, qtbot, None)
    choose(tune, qtbot, folder)
    assert not shown(tune.folder_note) and tune.folder_note.value == ""
