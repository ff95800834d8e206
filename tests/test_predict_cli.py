"""``napari-tmunet-predict`` on a folder of real images with one corrupt file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
import torch
from _paths import DATASETS, DSB_GREY, REPO
from _shipped import SAMPLE_MIN_DICE, dice

from napari_tmunet.checkpoint import save_checkpoint
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.data.images import read_image
from napari_tmunet.model import build_model
from napari_tmunet.predict_cli import main

SOURCES = [
    DATASETS / "CVC-ClinicDB" / "images" / "1.png",
    DATASETS / "CVC-ClinicDB" / "images" / "2.png",
    DATASETS / "UDIAT" / "images" / "000002.png",
]
needs_datasets = pytest.mark.skipif(
    not all(p.is_file() for p in SOURCES), reason="shared datasets not present"
)
SAMPLES = REPO / "napari_tmunet" / "samples"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny model: this test is about files, not about mask quality."""
    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    inputs = InputConfig(size=(128, 128), threshold=0.5)
    return save_checkpoint(path, build_model(config), config, inputs)


@pytest.fixture
def folders(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for source in SOURCES:
        shutil.copy(source, images / f"{source.parent.parent.name}_{source.name}")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (images / "notes.txt").write_text("not an image, ignored")
    return images, tmp_path / "masks"


@needs_datasets
def test_predict_folder_reports_the_corrupt_file(folders, checkpoint, capsys):
    images, masks = folders
    argv = [str(images), str(masks), "--model", str(checkpoint), "--device", "cpu"]
    assert main(argv) == 1  # one file failed
    err = capsys.readouterr().err
    assert f"4 images -> {masks}; model {str(checkpoint)!r} (mode resize, binary masks" in err
    assert "3 of 4 images segmented" in err and "1 failed" in err
    assert "broken.png" in err and "cannot decode" in err
    written = sorted(p.name for p in masks.iterdir())
    assert written == ["CVC-ClinicDB_1.png", "CVC-ClinicDB_2.png", "UDIAT_000002.png"]
    for name in written:
        source = images / name
        mask = read_image(masks / name)
        assert mask.shape == read_image(source).shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}

    # Nothing already there is overwritten without --overwrite...
    kept = masks / "CVC-ClinicDB_1.png"
    kept.write_bytes(b"user's corrected mask")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "3 skipped" in err and "--overwrite" in err
    assert kept.read_bytes() == b"user's corrected mask"
    # ...and is with it.
    (images / "broken.png").unlink()
    assert main([*argv, "--overwrite"]) == 0
    assert read_image(kept).shape == (288, 384)


@needs_datasets
def test_instances_are_written_as_tiff(folders, checkpoint):
    images, masks = folders
    (images / "broken.png").unlink()
    argv = [str(images), str(masks), "--model", str(checkpoint), "--instances", "--mode", "tile"]
    assert main(argv) == 0
    assert sorted(p.suffix for p in masks.iterdir()) == [".tif"] * 3


@needs_datasets
def test_usage_errors(folders, checkpoint, tmp_path, capsys):
    images, _ = folders
    model = ["--model", str(checkpoint)]
    assert main([str(images), str(images), *model]) == 2  # masks would mix with images
    assert main([str(tmp_path / "missing"), str(tmp_path / "out"), *model]) == 2
    assert main([str(images), str(tmp_path / "out"), "--model", str(tmp_path / "no.pt")]) == 2
    err = capsys.readouterr().err
    assert "neither a shipped model nor a modality" in err and " or modality" not in err
    assert main([str(images), str(tmp_path / "out"), *model, "--min-confidence", "1"]) == 2
    assert "--min-confidence 1.0 must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


@needs_datasets
def test_a_run_folder_as_model_is_pointed_to_its_best_pt(folders, checkpoint, tmp_path, capsys):
    """--model RUN (the folder fit wrote) instead of RUN/best.pt: exit 2, one line naming
    the file to pass, no output folder."""
    images, _ = folders
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(checkpoint, run / "best.pt")
    assert main([str(images), str(tmp_path / "out"), "--model", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"is a folder, not a checkpoint file: pass {run / 'best.pt'}" in err, err
    assert not (tmp_path / "out").exists()


@needs_datasets
def test_an_earlier_mask_named_after_an_image_is_kept_with_a_note(tmp_path, checkpoint, capsys):
    """scan.tif gives scan.png; once scan.png joins it, their masks are scan_png.png and
    scan_tif.png, and the earlier scan.png (scan.tif's mask, not scan.png's) is kept as it
    was, with a note saying so."""
    inputs, masks = tmp_path / "in", tmp_path / "masks"
    inputs.mkdir()
    tifffile.imwrite(inputs / "scan.tif", read_image(DATASETS / "UDIAT" / "images" / "000002.png"))
    argv = [str(inputs), str(masks), "--model", str(checkpoint), "--device", "cpu"]
    assert main(argv) == 0
    assert "note:" not in capsys.readouterr().err
    earlier = (masks / "scan.png").read_bytes()
    shutil.copy(DATASETS / "CVC-ClinicDB" / "images" / "1.png", inputs / "scan.png")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 of 2 images segmented" in err
    assert f"note: scan.png in {masks} is left as it was: an earlier run's mask" in err, err
    assert "(scan.png -> scan_png, scan.tif -> scan_tif)" in err
    assert sorted(p.name for p in masks.iterdir()) == ["scan.png", "scan_png.png", "scan_tif.png"]
    assert (masks / "scan.png").read_bytes() == earlier
    assert read_image(masks / "scan_png.png").shape == (288, 384)


@needs_datasets
def test_a_dataset_folder_is_pointed_to_its_images(folders, checkpoint, tmp_path, capsys):
    """INPUT_DIR a dataset folder (images in images/, as fit takes it): the error says to
    pass its images/ folder."""
    images, _ = folders
    model = ["--model", str(checkpoint)]
    assert main([str(tmp_path), str(tmp_path / "out"), *model]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: no images (png, tif, tiff, jpg, jpeg, bmp) in {tmp_path}; it looks like a "
        f"dataset folder: pass {images} as INPUT_DIR"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), str(tmp_path / "out"), *model]) == 2
    assert "dataset folder" not in capsys.readouterr().err


@needs_datasets
def test_min_confidence_hides_what_the_model_is_unsure_of(tmp_path):
    """The shipped ultrasound model on a UDIAT image: a gate above the lesion's mean
    probability leaves its mask empty; the model's own default keeps it."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SOURCES[2], images / "lesion.png")
    model = ["--model", "TM-UNet ultrasound", "--device", "cpu"]
    assert main([str(images), str(tmp_path / "own"), *model]) == 0
    assert main([str(images), str(tmp_path / "strict"), *model, "--min-confidence", "0.999"]) == 0
    own = read_image(tmp_path / "own" / "lesion.png")
    assert own.any() and not read_image(tmp_path / "strict" / "lesion.png").any()


@needs_datasets
def test_each_image_gets_the_model_for_its_modality(tmp_path, monkeypatch, capsys):
    """Without --model, as the dock's "Segment all": an unreadable first file does not
    decide anything, a mixed folder gets each image's own model (each loaded once), and
    the header and summary name them."""
    from napari_tmunet import registry

    samples = REPO / "napari_tmunet" / "samples"
    images = tmp_path / "clinic"
    images.mkdir()
    scan = (samples / "ultrasound_image.png").read_bytes()
    (images / "0_export.png").write_bytes(scan[:3000])  # cut short; sorts first
    shutil.copy(samples / "ultrasound_image.png", images / "a_scan.png")
    shutil.copy(samples / "colonoscopy_image.png", images / "b_polyp.png")
    shutil.copy(samples / "ultrasound_image.png", images / "c_scan.png")
    loads = []
    monkeypatch.setattr(
        registry, "load_model", lambda m, d, load=registry.load_model: loads.append(m) or load(m, d)
    )
    assert main([str(images), str(tmp_path / "masks"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    header = (
        "4 images -> {}; model 'TM-UNet ultrasound' (mode resize, binary masks as PNG), for "
        "images like a_scan.png: chosen because this is a grey image; trained on breast "
        "ultrasound (BUSI, UDIAT) only, not meant for other grey images such as fluorescence"
    ).format(tmp_path / "masks")
    assert header in err and "for images like b_polyp.png: chosen because" in err
    assert "warning" not in err  # 8-bit grey scans fit the ultrasound model
    assert "(2 with 'TM-UNet ultrasound', 1 with 'TM-UNet colonoscopy')" in err
    assert "0_export.png" in err and sorted(loads) == ["TM-UNet colonoscopy", "TM-UNet ultrasound"]
    for name, modality in (("a_scan", "ultrasound"), ("b_polyp", "colonoscopy")):
        truth = read_image(samples / f"{modality}_mask.png")
        assert (
            dice(read_image(tmp_path / "masks" / f"{name}.png"), truth) > SAMPLE_MIN_DICE[modality]
        )


@needs_datasets
def test_ctrl_c_stops_with_one_line_and_a_rerun_continues(folders, checkpoint, monkeypatch, capsys):
    """Ctrl-C on the second image: exit 130 and one line saying how many masks were written
    and that running again continues; the written mask is kept and the folder unlocked."""
    from napari_tmunet import batch

    images, masks = folders
    (images / "broken.png").unlink()
    calls = []

    def segment(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = batch.segment
    monkeypatch.setattr(batch, "segment", segment)
    argv = [str(images), str(masks), "--model", str(checkpoint), "--device", "cpu"]
    try:
        assert main(argv) == 130
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C ended napari-tmunet-predict with a traceback")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"stopped: masks of 1 of 3 images written to {masks}; run the same command again" in err
    assert [p.name for p in masks.iterdir()] == ["CVC-ClinicDB_1.png"]
    assert main(argv) == 0  # not locked; the written mask is skipped
    assert "1 skipped" in capsys.readouterr().err and len(list(masks.iterdir())) == 3


def _sample_stack(path, frames=4, side=96):
    """A real grey stack: ``frames`` crops of the bundled ultrasound sample, (Z, Y, X)."""
    grey = read_image(SAMPLES / "ultrasound_image.png")
    grey = grey if grey.ndim == 2 else grey[..., 0]
    stack = np.stack([grey[40 * z : 40 * z + side, 60 : 60 + side] for z in range(frames)])
    tifffile.imwrite(path, stack.astype(np.uint8), photometric="minisblack")
    return path


def test_a_stack_cut_short_is_redone(tmp_path, checkpoint, monkeypatch, capsys):
    """Ctrl-C between a stack's frame masks: the line says the stack is only partly written,
    and the re-run writes all its frames instead of skipping it as done."""
    from napari_tmunet.data import images as image_io

    inputs = tmp_path / "in"
    inputs.mkdir()
    _sample_stack(inputs / "scan.tif")
    masks = tmp_path / "masks"
    real, calls = image_io.write_mask, []

    def write_mask(path, labels):
        calls.append(path)
        if len(calls) == 3:  # Ctrl-C while the third frame mask is written
            raise KeyboardInterrupt
        return real(path, labels)

    monkeypatch.setattr(image_io, "write_mask", write_mask)
    argv = [str(inputs), str(masks), "--model", str(checkpoint), "--device", "cpu"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "masks of 0 of 1 images written" in err
    assert "scan.tif's masks only partly written: it is redone" in err
    assert len(list(masks.glob("scan_z*.png"))) == 2
    monkeypatch.setattr(image_io, "write_mask", real)
    assert main(argv) == 0
    assert "1 of 1 images segmented" in capsys.readouterr().err
    frames = sorted(p.name for p in masks.glob("*.png"))
    assert frames == [f"scan_z{z:04d}.png" for z in range(4)]
    assert all(read_image(masks / name).shape == (96, 96) for name in frames)


def test_an_image_named_like_a_stack_frame_keeps_its_own_mask(tmp_path, checkpoint):
    """``a.tif`` (a stack) and ``a_z0001.png`` would both write ``a_z0001.png``."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    _sample_stack(inputs / "a.tif")
    shutil.copy(SAMPLES / "colonoscopy_image.png", inputs / "a_z0001.png")
    masks = tmp_path / "masks"
    assert main([str(inputs), str(masks), "--model", str(checkpoint), "--device", "cpu"]) == 0
    names = sorted(p.name for p in masks.iterdir())
    assert names == ["a_z0000.png", "a_z0001.png", "a_z0001_png.png", "a_z0002.png", "a_z0003.png"]
    assert read_image(masks / "a_z0001.png").shape == (96, 96)  # the stack's frame
    image = read_image(inputs / "a_z0001.png")
    assert read_image(masks / "a_z0001_png.png").shape == image.shape[:2]


@pytest.mark.parametrize(("options", "suffix"), [([], ".png"), (["--instances"], ".tif")])
def test_overwrite_removes_the_extra_frames_of_an_earlier_longer_stack(
    tmp_path, checkpoint, capsys, options, suffix
):
    """--overwrite onto the masks of a 5-frame stack, now 2 frames: frames 2-4 of the old
    stack are removed and counted, so the folder holds one run; files named like frames
    that are not this tool's masks (a photo, unmarked) stay. Without --overwrite the stack
    is skipped, as before, and nothing is removed."""
    inputs, masks = tmp_path / "in", tmp_path / "masks"
    inputs.mkdir()
    _sample_stack(inputs / "scan.tif", frames=5)
    argv = [str(inputs), str(masks), "--model", str(checkpoint), "--device", "cpu", *options]
    assert main(argv) == 0
    old_frames = [f"scan_z{z:04d}{suffix}" for z in range(5)]
    assert sorted(p.name for p in masks.iterdir()) == old_frames
    photo = masks / f"scan_z0007{suffix}"  # a user's picture, named like a frame mask
    if suffix == ".tif":
        tifffile.imwrite(photo, read_image(SAMPLES / "colonoscopy_image.png"))
    else:
        shutil.copy(SAMPLES / "colonoscopy_image.png", photo)
    (masks / "scan_z0008.txt").write_text("a user's notes")
    user_files = [f"scan_z0007{suffix}", "scan_z0008.txt"]
    _sample_stack(inputs / "scan.tif", frames=2)
    capsys.readouterr()

    assert main(argv) == 0
    assert "1 skipped" in capsys.readouterr().err
    assert sorted(p.name for p in masks.iterdir()) == old_frames + user_files

    assert main([*argv, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "3 stale frame masks of an earlier, longer stack removed" in err
    assert f"scan_z0002{suffix}" in err and f"scan_z0007{suffix}" in err  # removed; kept
    assert sorted(p.name for p in masks.iterdir()) == old_frames[:2] + user_files
    assert all(read_image(masks / name).shape == (96, 96) for name in old_frames[:2])


@pytest.mark.skipif(not DSB_GREY.is_file(), reason="no DSB2018 stage-1 test images")
def test_each_model_writes_the_docks_default_output_unless_told(tmp_path, capsys):
    """Without --binary/--instances, as the Segment dock: the H&E sample gets the nuclei
    model's instances (uint16 TIFF, touching nuclei split), the colonoscopy sample a 0/255
    PNG; a 16-bit fluorescence TIFF still gets the grey (ultrasound) model, with a warning
    that it looks like fluorescence, for which no shipped model is trained. --binary makes
    every mask a PNG."""
    from scipy import ndimage as ndi

    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(SAMPLES / "nuclei_image.png", images / "he.png")
    shutil.copy(SAMPLES / "colonoscopy_image.png", images / "polyp.png")
    fluorescence = read_image(DSB_GREY)[..., 0].astype(np.uint16) * 257
    tifffile.imwrite(images / "cells.tif", fluorescence)
    assert main([str(images), str(tmp_path / "own"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "model 'TM-UNet nuclei' (mode tile, instances as TIFF)" in err
    assert "model 'TM-UNet colonoscopy' (mode resize, binary masks as PNG)" in err
    assert "warning: cells.tif: 'TM-UNet ultrasound' is the only shipped model for grey" in err
    assert "looks like fluorescence microscopy (" in err and "and holds 16-bit data" in err
    assert "no shipped model is trained for fluorescence" in err and "fine-tune" in err
    assert (
        "1 image is unlike" in err
        and "warning: 1 images" not in err
        and "predict: 3 images ->" in err
    )
    own = tmp_path / "own"
    assert sorted(p.name for p in own.iterdir()) == ["cells.png", "he.tif", "polyp.png"]
    nuclei = tifffile.imread(own / "he.tif")
    assert nuclei.dtype == np.uint16 and nuclei.max() > ndi.label(nuclei > 0)[1]  # split
    assert set(np.unique(read_image(own / "polyp.png"))) == {0, 255}

    assert main([str(images), str(tmp_path / "binary"), "--binary", "--device", "cpu"]) == 0
    binary = sorted(p.name for p in (tmp_path / "binary").iterdir())
    assert binary == ["cells.png", "he.png", "polyp.png"]
    assert set(np.unique(read_image(tmp_path / "binary" / "he.png"))) == {0, 255}
    # a second run skips the masks of either kind
    assert main([str(images), str(tmp_path / "own"), "--device", "cpu"]) == 0
    assert "3 skipped" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(images), str(tmp_path / "x"), "--binary", "--instances"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(not DSB_GREY.is_file(), reason="no DSB2018 stage-1 test images")
def test_an_8_bit_fluorescence_image_is_not_called_a_fit(tmp_path, capsys):
    """8-bit grey, as an ultrasound export, yet fluorescent nuclei on a black background:
    the grey model runs (the only one), with the warning that says why it is no fit and
    what to do."""
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(DSB_GREY, images / "cells.png")
    assert main([str(images), str(tmp_path / "out"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: cells.png: 'TM-UNet ultrasound' is the only shipped model for grey" in err
    assert "trained on breast ultrasound (BUSI, UDIAT) only" in err
    assert "looks like fluorescence microscopy (" in err and "16-bit" not in err
    assert "no shipped model is trained for fluorescence; check the result, or fine-tune" in err
    assert err.count("looks like fluorescence microscopy (") == 1  # the header did not say it too
    assert "for images like cells.png: not a fit, see the warning below" in err
    assert (
        "1 image is unlike" in err
        and "warning: 1 images" not in err
        and "predict: 1 image ->" in err
        and (tmp_path / "out" / "cells.png").is_file()
    )


@pytest.fixture(scope="module")
def pretext_checkpoint(tmp_path_factory):
    """last.pt of a two-step ``napari-tmunet-train fit --pretext inpaint`` on the bundled
    nuclei sample cut into tiles."""
    from trainer import commands
    from trainer.cli import main as train

    tmp = tmp_path_factory.mktemp("pretext")
    tiles = commands._write_demo_tiles(tmp / "tiles")
    args = ["fit", "--data", str(tiles), "--pretext", "inpaint", "--variant", "t", "--size",
            "32", "--batch-size", "4", "--steps", "2", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--no-efficiency", "--num-workers", "0",
            "--run-dir", str(tmp / "run")]  # fmt: skip
    assert train(args) == 0
    return tmp / "run" / "last.pt"


def test_a_refused_pretraining_checkpoint_leaves_no_output_folder(
    pretext_checkpoint, tmp_path, capsys
):
    """The model is checked before OUTPUT_DIR is made: a refused run creates no folder and
    leaves a folder the user already had as it was (no lock file, no write test)."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "nuclei_image.png", images / "nuclei.png")
    model = ["--model", str(pretext_checkpoint), "--device", "cpu"]
    masks = tmp_path / "new" / "masks"
    assert main([str(images), str(masks), *model]) == 2
    assert "does not segment" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main([str(images), str(mine), *model]) == 2
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_files_that_are_no_images_fail_in_plain_words_and_leave_no_folder(tmp_path, capsys):
    """A text file named .png, an empty file and a 1-pixel picture: each failure is one
    plain line naming the file once and what to do (no decoder's exception, no list of
    shapes for a size problem); when every image fails, OUTPUT_DIR (and the parent it
    created) is not left behind empty (tester16 #9)."""
    from PIL import Image

    images = tmp_path / "in"
    images.mkdir()
    (images / "notes.png").write_text("meeting notes, not a picture")
    (images / "zero.png").write_bytes(b"")
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(images / "onepx.png")
    output = tmp_path / "new" / "masks"

    assert main([str(images), str(output), "--device", "cpu"]) == 1

    err = capsys.readouterr().err
    lines = {line.split(":")[0].strip(): line for line in err.splitlines() if line[:2] == "  "}
    assert lines["notes.png"] == (
        "  notes.png: not a readable PNG, JPEG, BMP or TIFF image; export it again, or leave it out"
    )
    assert lines["zero.png"] == (
        "  zero.png: the file is empty (0 bytes); export it again, or leave it out"
    )
    assert lines["onepx.png"] == (
        "  onepx.png: the image is 1 x 1 pixels, too small: height and width must be at "
        "least 4 pixels."
    )
    assert "0 of 3 images segmented: nothing written" in err
    assert str(images) not in err.split("3 failed:")[1]  # each file named once, by its name
    assert not (tmp_path / "new").exists()


def test_a_float_colour_tiff_with_a_nan_pixel_gets_the_colonoscopy_model(tmp_path, capsys):
    """tester20 #2: the colonoscopy sample as a float32 / 255 RGB TIFF with one NaN channel
    value was guessed grey (every percentile NaN); through napari-tmunet-predict it gets the
    colonoscopy model, as its 8-bit picture, and the same mask."""
    from napari_tmunet import registry

    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(SAMPLES / "colonoscopy_image.png", images / "eight.png")
    unit = read_image(SAMPLES / "colonoscopy_image.png")[..., :3].astype(np.float32) / 255
    unit[0, 0, 0] = np.nan
    tifffile.imwrite(images / "warped.tif", unit, photometric="rgb")
    masks = tmp_path / "masks"
    assert main([str(images), str(masks), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "model 'TM-UNet colonoscopy'" in err, err
    summary = [line for line in err.splitlines() if "segmented" in line]
    assert summary and "2 of 2 images segmented" in summary[-1], summary
    assert " with '" not in summary[-1], summary  # one model for both
    eight, warped = (read_image(masks / f"{name}.png") > 0 for name in ("eight", "warped"))
    assert eight.sum() > 1000
    assert dice(warped, eight) >= 0.98, dice(warped, eight)


UDIAT_1 = DATASETS / "UDIAT" / "images" / "000001.png"


@pytest.mark.parametrize(
    ("source", "min_dice"),
    [
        # divided by 65535: empty (Dice 0)
        pytest.param(
            UDIAT_1,
            0.95,
            marks=pytest.mark.skipif(not UDIAT_1.is_file(), reason="shared UDIAT not present"),
        ),
        (SAMPLES / "ultrasound_image.png", 0.98),  # divided by 65535: Dice 0.95
    ],
    ids=["udiat-000001", "sample"],
)
def test_a_14_bit_scan_is_segmented_like_its_8_bit_picture(source, min_dice, tmp_path, capsys):
    """An ultrasound frame as 14-bit data in a uint16 TIFF (x 64, max <= 16383), through
    napari-tmunet-predict and the shipped model: the mask of the 8-bit picture (tester18
    #3: divided by 65535 it was at most 25% bright, and UDIAT 000001's mask came back
    empty)."""
    from napari_tmunet import registry

    if registry.model_for_modality("ultrasound") is None:
        pytest.skip("no shipped ultrasound model")
    images = tmp_path / "in"
    images.mkdir()
    picture = read_image(source)
    grey = picture if picture.ndim == 2 else picture[..., 0]
    shutil.copy(source, images / "scan8.png")
    fourteen = grey.astype(np.uint16) * 64
    assert 255 * 16 < fourteen.max() <= 16383
    tifffile.imwrite(images / "scan14.tif", fourteen)
    masks = tmp_path / "masks"
    assert main([str(images), str(masks), "--device", "cpu"]) == 0
    capsys.readouterr()
    eight, wide = (read_image(masks / f"{name}.png") > 0 for name in ("scan8", "scan14"))
    assert eight.sum() > 1000
    assert dice(wide, eight) >= min_dice, dice(wide, eight)


@pytest.mark.parametrize(
    ("sample", "modality", "min_dice"),
    [
        ("ultrasound_image.png", "ultrasound", 0.98),  # divided by 65535: Dice 0.95
        ("nuclei_image.png", "nuclei", 0.95),  # the ultrasound model: Dice 0.06
    ],
    ids=["ultrasound", "nuclei"],
)
def test_a_14_bit_image_with_a_hot_pixel_is_segmented_like_its_8_bit_picture(
    sample, modality, min_dice, tmp_path, capsys
):
    """A bundled sample as 14-bit data (x 64) with one pixel at 65535, a hot or saturated
    camera pixel (tester19 A), through napari-tmunet-predict: the model and the mask of
    the 8-bit picture. By the maximum the image was / 65535: an empty ultrasound mask, and
    the H&E slide was called grey and got the ultrasound model (Dice 0.06)."""
    from napari_tmunet import registry

    if registry.model_for_modality(modality) is None:
        pytest.skip(f"no shipped {modality} model")
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(SAMPLES / sample, images / "eight.png")
    picture = read_image(SAMPLES / sample)
    if picture.ndim == 3:  # ultrasound: grey; H&E: RGB
        picture = picture[..., 0] if modality == "ultrasound" else picture[..., :3]
    hot = picture.astype(np.uint16) * 64
    assert 255 * 16 < hot.max() <= 16383
    hot[5, 5] = 65535
    tifffile.imwrite(images / "hot.tif", hot, photometric="rgb" if hot.ndim == 3 else None)
    masks = tmp_path / "masks"
    assert main([str(images), str(masks), "--device", "cpu"]) == 0
    summary = [line for line in capsys.readouterr().err.splitlines() if "segmented" in line]
    # one model for both: a mixed folder's summary names each model ("1 with 'x'")
    assert summary and "2 of 2 images segmented" in summary[-1], summary
    assert " with '" not in summary[-1], summary
    suffix = ".tif" if modality == "nuclei" else ".png"  # instance labels: TIFF
    eight, wide = (read_image(masks / f"{name}{suffix}") > 0 for name in ("eight", "hot"))
    assert eight.sum() > 1000
    assert dice(wide, eight) >= min_dice, dice(wide, eight)
