"""Multichannel TIFFs (tester35 #2): the TM-UNet reader keeps a file's channel axis apart
from its Z/T frames. Fluorescence channels (2 or 4 of them, 16-bit, ImageJ or OME) open
as one grey layer per channel, "NAME [ch N]", each with its slices, said in one info
line; they are neither frames nor RGBA, and Segment does not call one a colour endoscopy
image. Colour TIFFs (photometric RGB, planar RGB, an 8-bit 3-channel ImageJ composite)
and grey stacks read as before. The files are built from channels of a real MoNuSeg
tile."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from _paths import DATASETS
from test_segment_choices import segment, segment_dock

from napari_tmunet import _reader
from napari_tmunet.data.images import ImageReadError, read_image, read_mask

pytestmark = pytest.mark.gui

TILE = DATASETS / "MoNuSeg" / "images" / "TCGA-2Z-A9J9-01A-01-TS1.tif"
SIDE = 256
COLON = "TM-UNet colonoscopy"


@pytest.fixture(scope="module")
def channels() -> np.ndarray:
    """Four 16-bit channels (4, SIDE, SIDE) of a real H&E tile, bright on dark as
    fluorescence looks: its red, green and blue inverted (nuclei bright in the first, as
    in a DAPI channel), and the inverted red shifted by 9 rows."""
    if not TILE.is_file():
        pytest.skip("shared MoNuSeg not present")
    dark = 255 - read_image(TILE)[:SIDE, :SIDE].astype(np.uint16)  # (H, W, 3)
    return np.stack([*dark.transpose(2, 0, 1), np.roll(dark[..., 0], 9, axis=0)]) * 257


def z_stack(channels: np.ndarray) -> np.ndarray:
    """(Z=5, C=2, H, W): the first two channels, each slice shifted a little."""
    return np.stack([np.roll(channels[:2], 7 * z, axis=-1) for z in range(5)])


@pytest.fixture
def info(monkeypatch) -> list[str]:
    """The reader's info notifications."""
    seen: list[str] = []
    monkeypatch.setattr(_reader, "_notify_info", seen.append)
    return seen


def open_tmunet(viewer, path):
    return viewer.open(str(path), plugin="napari-tmunet")


def test_imagej_and_ome_channels_open_as_one_grey_layer_each(
    make_napari_viewer, channels, info, tmp_path
):
    """An ImageJ ZCYX hyperstack (5 slices x 2 channels) opens as 2 layers of 5 slices,
    not 10 interleaved frames; CYX files of 2 and 4 uint16 channels as 2 and 4 grey
    layers (not frames, not RGBA); an OME ZCYX file as the ImageJ one; each said once."""
    stack = z_stack(channels)
    files = {
        "fluo_zstack": (stack, {"imagej": True, "metadata": {"axes": "ZCYX"}}),
        "fluo2": (channels[:2], {"imagej": True, "metadata": {"axes": "CYX"}}),
        "fluo4": (channels, {"imagej": True, "metadata": {"axes": "CYX"}}),
        "fluo.ome": (stack, {"metadata": {"axes": "ZCYX"}}),
    }
    viewer = make_napari_viewer()
    for name, (data, options) in files.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", data, **options)
        layers = open_tmunet(viewer, tmp_path / f"{name}.tif")
        planes = data.swapaxes(0, 1) if data.ndim == 4 else data  # (C, [Z,] H, W)
        assert [layer.name for layer in layers] == [f"{name} [ch {c}]" for c in range(len(planes))]
        for layer, plane in zip(layers, planes, strict=True):
            assert type(layer).__name__ == "Image" and not layer.rgb
            np.testing.assert_array_equal(layer.data, plane)
        assert layers[0].blending != "additive" and layers[1].blending == "additive"
        slices = ", 5 slices each" if data.ndim == 4 else ""
        assert info.pop() == (
            f"{name}: {len(planes)} channels opened as {len(planes)} layers{slices} "
            "(grey images: the file marks no RGB colour)"
        )
    assert not info


def test_colour_and_grey_tiffs_open_as_before(make_napari_viewer, channels, info, tmp_path):
    """An 8-bit 3-channel ImageJ composite, photometric RGB (interleaved and planar) stay
    one RGB layer; an ImageJ stack of 3 grey uint16 slices one layer of 3 frames; no note."""
    rgb8 = (channels[:3] // 257).astype(np.uint8)  # (3, H, W)
    tifffile.imwrite(tmp_path / "comp.tif", rgb8, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "rgb.tif", rgb8.transpose(1, 2, 0), photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", rgb8, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "z.tif", channels[:3], imagej=True, metadata={"axes": "ZYX"})
    viewer = make_napari_viewer()
    for name in ("comp", "rgb", "planar"):
        (layer,) = open_tmunet(viewer, tmp_path / f"{name}.tif")
        assert layer.rgb and layer.data.shape == (SIDE, SIDE, 3), name
        np.testing.assert_array_equal(layer.data, rgb8.transpose(1, 2, 0))
    (stack,) = open_tmunet(viewer, tmp_path / "z.tif")
    assert not stack.rgb and stack.data.shape == (3, SIDE, SIDE)
    assert not info


def test_separate_channels_are_no_single_image_for_training(channels, tmp_path):
    """Where one 2-D image is expected (training pairs, masks), a file of channels is
    refused naming the file and the channels; read as a stack, its frames go channel by
    channel (each channel's slices together)."""
    path = tmp_path / "fluo2.tif"
    tifffile.imwrite(path, channels[:2], imagej=True, metadata={"axes": "CYX"})
    for read in (lambda: read_image(path, allow_stack=False), lambda: read_mask(path)):
        with pytest.raises(ImageReadError, match="fluo2.tif: 2 separate channels"):
            read()
    stack = z_stack(channels)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    frames = read_image(tmp_path / "z.tif")
    np.testing.assert_array_equal(frames, stack.swapaxes(0, 1).reshape(10, SIDE, SIDE))


def test_segment_on_a_fluorescence_channel(make_napari_viewer, qtbot, channels, info, tmp_path):
    """Segment on a channel of a 4-channel uint16 file: not called a colour endoscopy
    image, not the colonoscopy model, one (H, W) labels layer; on a channel of the
    z-stack, labels of its 5 slices (main read them as RGBA, ran the colonoscopy model,
    "alpha channel ignored"; and 10 frames); a channel of a 3-channel 16-bit file is not
    "one channel of a colour image split into layers"; the 4-channel file opened with
    napari's own reader (4 frames) is not called a colour TIFF read channel-first."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    tifffile.imwrite(tmp_path / "fluo4.tif", channels, imagej=True, metadata={"axes": "CYX"})
    layers = open_tmunet(viewer, tmp_path / "fluo4.tif")
    widget.image.value = layers[0]
    reason = widget.model_reason.value
    assert not layers[0].rgb and widget.model.value != COLON, reason
    assert "colour endoscopy" not in reason and "H&E" not in reason, reason
    assert "no shipped model is meant for it" in reason, reason  # 16-bit: said as before
    segment(qtbot, widget)
    assert viewer.layers["fluo4 [ch 0] labels"].data.shape == (SIDE, SIDE)
    assert "alpha" not in widget.summary.value, widget.summary.value

    path = tmp_path / "fluo_zstack.tif"
    tifffile.imwrite(path, z_stack(channels), imagej=True, metadata={"axes": "ZCYX"})
    first, _ = open_tmunet(viewer, path)
    widget.image.value = first
    segment(qtbot, widget)
    assert viewer.layers["fluo_zstack [ch 0] labels"].data.shape == (5, SIDE, SIDE)

    tifffile.imwrite(tmp_path / "fluo3.tif", channels[:3], imagej=True, metadata={"axes": "CYX"})
    three = open_tmunet(viewer, tmp_path / "fluo3.tif")
    widget.image.value = three[1]
    assert "split into layers" not in widget.model_reason.value, widget.model_reason.value
    (frames,) = viewer.open(str(tmp_path / "fluo4.tif"), plugin="napari")  # 4 grey frames
    widget.image.value = frames
    assert "channel-first colour TIFF" not in widget.model_reason.value  # no colour to open


def test_a_channel_file_in_a_folder_opens_its_channels_under_its_mask(channels, info, tmp_path):
    """In a folder of pictures with their masks beside them and in a dataset folder, a
    file of 2 channels opens as its 2 grey layers, both shown (the first picture), with
    its real mask over them as Labels named after the first channel (Metrics pairs the
    channel's labels with it)."""
    from PIL import Image

    mask_path = DATASETS / "MoNuSeg" / "masks" / f"{TILE.stem}.png"
    mask, _ = read_mask(mask_path)
    mask = mask[:SIDE, :SIDE]
    beside, dataset = tmp_path / "beside", tmp_path / "dataset"
    for folder, mask_file in ((beside, "fluo2_mask.png"), (dataset / "masks", "fluo2.png")):
        folder.mkdir(parents=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / mask_file)
    (dataset / "images").mkdir()
    for folder in (beside, dataset / "images"):
        tifffile.imwrite(folder / "fluo2.tif", channels[:2], imagej=True, metadata={"axes": "CYX"})
    for read, folder in ((_reader.read_paired_folder, beside), (_reader.read_dataset, dataset)):
        layers = read(str(folder))
        assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
            ("fluo2 [ch 0]", "image"),
            ("fluo2 [ch 1]", "image"),
            ("fluo2 [ch 0] mask", "labels"),
        ]
        assert all(kwargs["visible"] for _, kwargs, _ in layers)
        np.testing.assert_array_equal(layers[1][0], channels[1])
        np.testing.assert_array_equal(layers[2][0] > 0, mask > 0)
        assert info.pop().startswith("fluo2: 2 channels opened as 2 layers")


def test_predict_says_how_it_segments_a_file_of_channels(channels, tmp_path, capsys):
    """``napari-tmunet-predict`` on an ImageJ file of 2 slices x 2 channels: one stderr
    line says it segments 4 grey frames channel by channel and which frames hold which
    channel, by its layers' names ("ch 0": the file names none); the 4 frame masks are
    written (main: nothing said, channels interleaved)."""
    from napari_tmunet.predict_cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    stack = z_stack(channels)[:2]  # (Z=2, C=2, H, W)
    tifffile.imwrite(folder / "fluo.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    argv = [str(folder), str(tmp_path / "out"), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        "fluo.tif: 2 separate channels of 2 slices (not colour), segmented as 4 grey frames "
        "channel by channel (frames 0-1: ch 0; frames 2-3: ch 1)"
    ) in err, err
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == [f"fluo_z{z:04d}.png" for z in range(4)], written
