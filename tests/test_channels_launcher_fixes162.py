"""Files of separate channels (fix-162). ``napari-tmunet NAME.tif`` with ``NAME_mask.png``
beside it (or given, or ``masks/NAME.png``) opens the mask over the file's first channel,
as a folder opens it: one rule (``_reader.layer_picture``) maps a channel layer back to
its file. The layers are named by the file's own channel names (OME Channel Name, ImageJ
slice labels), unique and readable whatever the names hold, else "[ch N]"; predict's
line says which frames hold which channel by the same names. The files are channels of
a real MoNuSeg tile with its real mask (test_reader_channels_fixes160's fixture)."""

from __future__ import annotations

import numpy as np
import pytest
import test_reader_channels_fixes160 as fixes160
import tifffile
from PIL import Image as Picture

from napari_tmunet import _reader
from napari_tmunet.data.images import read_mask

pytestmark = pytest.mark.gui

SIDE, TILE, z_stack = fixes160.SIDE, fixes160.TILE, fixes160.z_stack
MASK = TILE.parent.parent / "masks" / f"{TILE.stem}.png"
channels = fixes160.channels  # the fixture: 4 uint16 channels of the tile


@pytest.fixture
def truth() -> np.ndarray:
    """The tile's real mask, cut as its channels are: (SIDE, SIDE) bool."""
    if not MASK.is_file():
        pytest.skip("shared MoNuSeg not present")
    return read_mask(MASK)[0][:SIDE, :SIDE] > 0


def save_mask(path, truth):
    path.parent.mkdir(parents=True, exist_ok=True)
    Picture.fromarray(truth.astype(np.uint8) * 255).save(path)
    return path


def save_channels(path, data, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, **options)
    return path


def launch_and_look(monkeypatch, paths, then=None):
    """``napari-tmunet PATHS`` up to the event loop: (exit status, [(name, type, visible)],
    the Labels layers' {name: (data, metadata)}, the Segment dock's image name, what
    ``then(viewer)`` returns)."""
    import napari

    from napari_tmunet import launch

    seen = {}

    def look_and_close():
        viewer = napari.current_viewer()
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        seen["layers"] = [(la.name, type(la).__name__, la.visible) for la in viewer.layers]
        seen["labels"] = {
            la.name: (np.asarray(la.data), dict(la.metadata))
            for la in viewer.layers
            if type(la).__name__ == "Labels"
        }
        seen["chosen"] = segment.image.value.name if segment.image.value else None
        seen["then"] = then(viewer) if then else None
        viewer.close()

    monkeypatch.setattr(napari, "run", look_and_close)
    status = launch.main([str(path) for path in paths])
    return status, seen["layers"], seen["labels"], seen["chosen"], seen["then"]


def segment_then_pickers(viewer):
    """Segment on the chosen channel (the dock's worker thread), then what the Metrics
    dock pairs and what the Fine-tune dock's first pair row offers."""
    from napari_tmunet import launch
    from napari_tmunet._docks import open_dock

    segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
    metrics = viewer.window.dock_widgets["Metrics (TM-UNet)"]
    launch._click_segment(segment, timeout=300)
    output = segment.last_layer.name
    _, tune = open_dock(viewer, "Fine-tune")
    row = tune.rows[0]
    return {
        "output": output,
        "metrics": (metrics.prediction.value.name, metrics.reference.value.name),
        "fine-tune": (row.image.value.name, row.mask.value.name),
    }


def test_the_launcher_opens_a_channel_files_mask_over_its_channels(
    launcher_app, monkeypatch, channels, truth, tmp_path
):
    """``napari-tmunet fluo2.tif`` (2 uint16 channels, CYX) with its real mask beside it,
    given after it, or in a dataset's masks/: its 2 grey layers, then "fluo2 [ch 0] mask"
    over them, shown, the first channel's (as the folder opens it), the first channel
    chosen in Segment. Segment on it: the Metrics dock pairs the output with that mask and
    the Fine-tune dock's pair row offers the channel with its mask (main: "fluo2 mask",
    of no picture open; Metrics took the output as its own reference, Fine-tune offered
    the unedited output)."""
    image = channels[:2]
    beside = save_channels(tmp_path / "beside" / "fluo2.tif", image, imagej=True)
    save_mask(tmp_path / "beside" / "fluo2_mask.png", truth)
    given = save_mask(tmp_path / "elsewhere" / "fluo2-mask.png", truth)
    dataset = save_channels(tmp_path / "set" / "images" / "fluo2.tif", image, imagej=True)
    save_mask(tmp_path / "set" / "masks" / "fluo2.png", truth)
    expected = [
        ("fluo2 [ch 0]", "Image", True),
        ("fluo2 [ch 1]", "Image", True),
        ("fluo2 [ch 0] mask", "Labels", True),
    ]
    for paths in ([dataset], [beside, given]):
        status, layers, labels, chosen, _ = launch_and_look(monkeypatch, paths)
        assert status == 0 and layers == expected, paths
        assert chosen == "fluo2 [ch 0]"
        data, metadata = labels["fluo2 [ch 0] mask"]
        np.testing.assert_array_equal(data > 0, truth)
        assert metadata["image"] == "fluo2 [ch 0]"

    status, layers, _, _, seen = launch_and_look(monkeypatch, [beside], segment_then_pickers)
    assert status == 0 and layers[:3] == expected
    assert seen["output"] == "fluo2 [ch 0] labels"
    assert seen["metrics"] == ("fluo2 [ch 0] labels", "fluo2 [ch 0] mask")
    assert seen["fine-tune"] == ("fluo2 [ch 0]", "fluo2 [ch 0] mask")


def test_channel_layers_are_named_by_the_files_channel_names(
    make_napari_viewer, channels, truth, tmp_path
):
    """Channel names as tifffile writes them: ImageJ's slice labels (CYX; ZCYX, one per
    plane) and OME's Channel Name name the layers "NAME [DAPI]"; names two channels
    share, numbers (napari would count "[405]" up for a repeated name), blanks, brackets,
    line breaks and overlong names still give unique, readable names; a file that names
    none keeps "[ch N]". The folder pairs the mask with the first named channel."""
    long = "Alexa Fluor 488 phalloidin, 1:200 in PBS overnight"
    files = {
        "ij": (
            channels[:2],
            {"imagej": True, "metadata": {"axes": "CYX", "Labels": ["DAPI", "GFP"]}},
        ),
        "ij_z": (
            z_stack(channels),
            {"imagej": True, "metadata": {"axes": "ZCYX", "Labels": ["DAPI", "GFP"] * 5}},
        ),
        "odd.ome": (
            channels,
            {"metadata": {"axes": "CYX", "Channel": {"Name": ["GFP", " gfp ", "405", "a [b]\tc"]}}},
        ),
        "blank.ome": (
            channels,
            {"metadata": {"axes": "CYX", "Channel": {"Name": ["", long, "ch 0", "DAPI"]}}},
        ),
        "none": (channels[:2], {"imagej": True, "metadata": {"axes": "CYX"}}),
    }
    expected = {
        "ij": ["DAPI", "GFP"],
        "ij_z": ["DAPI", "GFP"],
        "odd.ome": ["ch 0 GFP", "ch 1 gfp", "ch 2 405", "a (b) c"],
        # "ch 0" named by the file would read as the unnamed first channel: all by index
        "blank.ome": ["ch 0", "ch 1 Alexa Fluor 488 phalloidin, 1:2…", "ch 2 ch 0", "ch 3 DAPI"],
        "none": ["ch 0", "ch 1"],
    }
    viewer = make_napari_viewer()
    for name, (data, options) in files.items():
        path = save_channels(tmp_path / f"{name}.tif", data, **options)
        layers = viewer.open(str(path), plugin="napari-tmunet")
        stem = path.stem
        assert [layer.name for layer in layers] == [f"{stem} [{tag}]" for tag in expected[name]]
        assert all(_reader.layer_picture(layer) == stem for layer in layers)
    (again,) = viewer.open(str(tmp_path / "odd.ome.tif"), plugin="napari-tmunet")[2:3]
    assert again.name == "odd.ome [ch 2 405] [1]"  # napari's suffix, the name kept

    folder = tmp_path / "folder"
    data, options = files["ij"]
    save_channels(folder / "fluo.tif", data, **options)
    save_mask(folder / "fluo_mask.png", truth)
    opened = _reader.read_paired_folder(str(folder))
    assert [kwargs["name"] for _, kwargs, _ in opened] == [
        "fluo [DAPI]",
        "fluo [GFP]",
        "fluo [DAPI] mask",
    ]


def test_predict_names_the_channels_of_its_frames(channels, tmp_path, capsys):
    """``napari-tmunet-predict`` on an OME file of 2 slices x 2 named channels: its line
    names which frames hold which channel as the layers are named (main: "channel 0")."""
    from napari_tmunet.predict_cli import main

    folder = tmp_path / "in"
    names = {"Channel": {"Name": ["DAPI", "GFP"]}}
    save_channels(
        folder / "fluo.ome.tif", z_stack(channels)[:2], metadata={"axes": "ZCYX", **names}
    )
    argv = [str(folder), str(tmp_path / "out"), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        "fluo.ome.tif: 2 separate channels of 2 slices (not colour), segmented as 4 grey "
        "frames channel by channel (frames 0-1: DAPI; frames 2-3: GFP)"
    ) in err, err
