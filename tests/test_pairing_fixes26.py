"""How the files given to the app are paired and recognised (tester 26, found on Kvasir-SEG
folders; checked here on CVC-ClinicDB frames, all 384 x 288): masks go with pictures by
name, never by size (D1); the Segment dock's "the Metrics dock takes it" hint and the
Metrics dock's references follow one mask rule (D3); napari's 3- or 4-frame label TIFFs
reopen as labels, not colour (D6); a JPEG is read turned as its EXIF orientation says, and
napari's own reader showing it as stored is warned about (D7)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from _paths import DATASETS
from PIL import Image as Picture

from napari_tmunet.data.images import read_image, read_mask

CLINIC = DATASETS / "CVC-ClinicDB"
# Three CVC-ClinicDB frames (all its frames are 384 x 288) whose masks, saved as RGB JPEG,
# still look like masks; the shipped colonoscopy model scores Dice 0.97 on C against C's
# own mask (measured: 0.972 through the Segment dock).
FRAMES = {"A": "137", "B": "446", "C": "493"}


@pytest.fixture
def clinic():
    if not (CLINIC / "images").is_dir():
        pytest.skip(f"no CVC-ClinicDB at {CLINIC}")
    return CLINIC


def _frame(name):
    return CLINIC / "images" / f"{name}.png"


def _mask_file(name):
    return CLINIC / "masks" / f"{name}.tif"


def _pictures(folder):
    """A.png, B.png, C.png in ``folder``: the three frames of one size, renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    return [shutil.copy(_frame(name), folder / f"{letter}.png") for letter, name in FRAMES.items()]


def _masks(folder, pattern):
    """Each frame's ClinicDB mask saved as an RGB PNG (grey in three channels, as colour
    masks come) under ``pattern`` (e.g. "{}_mask.png"), named after its letter."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for letter, name in FRAMES.items():
        path = folder / pattern.format(letter)
        Picture.open(_mask_file(name)).convert("RGB").save(path)
        paths.append(path)
    return paths


@pytest.fixture
def launch(monkeypatch, launcher_app):
    """``launch(paths, then=None)``: ``napari-tmunet PATHS`` up to the event loop, where
    ``then(viewer)`` runs; (exit status, {layer name: data} or None when napari never
    started, what ``then`` gave). In napari's test application (``mock_app_model``, the
    plugins registered in it afresh, as ``make_napari_viewer`` does): napari registers
    them once per application, and a ``make_napari_viewer`` test run between two launches
    makes it register them again."""
    import napari

    from napari_tmunet import launch as launcher

    def run(paths, then=None):
        seen = {}

        def look_and_close():
            viewer = napari.current_viewer()
            seen["layers"] = {layer.name: np.asarray(layer.data) for layer in viewer.layers}
            seen["then"] = then(viewer) if then else None
            viewer.close()

        monkeypatch.setattr(napari, "run", look_and_close)
        status = launcher.main([str(path) for path in paths])
        return status, seen.get("layers"), seen.get("then")

    return run


# ------------------------------------------------------------------------- D1 pairing
def test_masks_go_with_the_pictures_of_their_names_not_their_size(launch, tmp_path, clinic):
    """``napari-tmunet A.png B.png C.png notes/A.png notes/B.png notes/C.png`` (three
    frames of one size, their masks named as they are): each mask opens as its own
    picture's "X mask" (main put all three over C, the picture of their size before
    them); ``A_mask.png ...`` the same. Segment C (the dock's worker) and the Metrics dock
    pairs the result with C's own mask: Dice 0.972, as the model scores on C."""
    from napari_tmunet import registry
    from napari_tmunet.launch import _click_segment

    pictures = _pictures(tmp_path)
    truth = {letter: read_mask(_mask_file(name))[0] for letter, name in FRAMES.items()}

    status, layers, _ = launch([*pictures, *_masks(tmp_path / "notes", "{}.png")])
    assert status == 0
    assert sorted(layers) == ["A", "A mask", "B", "B mask", "C", "C mask"]
    for letter, mask in truth.items():
        np.testing.assert_array_equal(layers[f"{letter} mask"] > 0, mask, err_msg=letter)

    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")

    def segment_c_and_score(viewer):
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        metrics = viewer.window.dock_widgets["Metrics (TM-UNet)"]
        segment.image.value = viewer.layers["C"]
        _click_segment(segment, timeout=600)
        pair = (metrics.prediction.value.name, metrics.reference.value.name)
        return pair, segment.last_layer.name, metrics.compute()[-1]["dice"]

    named = _masks(tmp_path, "{}_mask.png")
    status, layers, (pair, output, dice) = launch([*pictures, *named], segment_c_and_score)
    assert status == 0
    for letter, mask in truth.items():
        np.testing.assert_array_equal(layers[f"{letter} mask"] > 0, mask, err_msg=letter)
    assert pair == (output, "C mask")
    assert dice > 0.95


@pytest.fixture
def refused(monkeypatch, tmp_path, clinic, capsys):
    """``refuse(paths)``: the one line ``napari-tmunet PATHS`` exits 2 with, before any
    viewer opens; and the files it may be given."""
    import napari

    from napari_tmunet import launch

    opened = []

    def refuse(paths):
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.setattr(napari, "Viewer", lambda *a, **k: opened.append(1))
            patch.setenv("QT_QPA_PLATFORM", "offscreen")  # a display: only the paths stop it
            status = launch.main([str(path) for path in paths])
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and not opened, lines
        assert len(lines) == 1, lines
        return lines[0]

    return refuse


def test_masks_that_no_picture_or_several_match_by_name_are_refused(refused, tmp_path):
    """A mask that no picture given is named like (A_outline.png among A, B and C: main
    guessed C, the picture of its size before it), one that two pictures of its name
    could take, and two masks of one picture: exit 2 before napari starts, one line
    naming the files."""
    pictures = _pictures(tmp_path)
    outlines = _masks(tmp_path, "{}_outline.png")

    for given in ([*pictures, *outlines], [*pictures, outlines[0]]):
        line = refused(given)
        assert line.startswith(f"napari-tmunet: error: {outlines[0]} holds a mask but its name ")
        assert all(str(picture) in line for picture in pictures)

    a_mask = _masks(tmp_path, "{}_mask.png")[0]
    another_a = _pictures(tmp_path / "other")[0]
    line = refused([pictures[0], another_a, a_mask])
    assert f"the mask {a_mask} could go with several pictures named A: " in line
    assert str(pictures[0]) in line and str(another_a) in line

    noted_a = _masks(tmp_path / "notes", "{}.png")[0]
    line = refused([pictures[0], a_mask, noted_a])
    assert line == (
        f"napari-tmunet: error: several masks given for the picture A: {noted_a}, {a_mask}; "
        "give one"
    )


def test_one_picture_and_a_mask_of_any_name_still_pair(launch, tmp_path, clinic):
    """``napari-tmunet PICTURE MASK``: with a single picture there is no doubt, so a mask
    of any name opens over it (fix-74 #2 kept)."""
    picture = _pictures(tmp_path)[2]
    outline = _masks(tmp_path, "{}_outline.png")[2]

    status, layers, _ = launch([picture, outline])

    assert status == 0 and sorted(layers) == ["C", "C mask"]
    np.testing.assert_array_equal(layers["C mask"] > 0, read_mask(_mask_file(FRAMES["C"]))[0])


# ------------------------------------------------------------- D3 one rule for masks
def test_a_stack_of_colour_jpeg_masks_is_offered_to_metrics_as_promised(
    clinic, make_napari_viewer, tmp_path
):
    """Three ClinicDB masks saved as RGB JPEGs, as Kvasir-SEG ships its masks (grey
    levels 0..255 at the edges), opened as a folder with napari's own reader: one lazy
    (3, H, W, 3) stack. The Segment dock says
    that the Metrics dock takes it as the reference, and the Metrics dock offers it (main:
    not, by a rule of its own that left lazy images out), in memory too (main judged a
    colour stack by its first row), and scores the masks read from the files against it:
    Dice 1 on each slice."""
    from napari.layers import Image

    folder = tmp_path / "masks"
    folder.mkdir()
    for name in FRAMES.values():
        Picture.open(_mask_file(name)).convert("RGB").save(folder / f"{name}.jpg", quality=75)
    truth = np.stack([read_mask(path)[0] for path in sorted(folder.iterdir())])  # (3, H, W)
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    _, metrics = viewer.window.add_plugin_dock_widget("napari-tmunet", "Metrics")

    (stack,) = viewer.open(str(folder), plugin="napari")
    in_memory = viewer.add_image(np.asarray(stack.data), rgb=True, name="in memory")

    assert isinstance(stack, Image) and stack.rgb and stack.data.shape == (*truth.shape, 3)
    assert not isinstance(stack.data, np.ndarray)  # napari reads a folder lazily
    for layer in (stack, in_memory):
        segment.image.value = layer
        assert "the Metrics dock takes it as the reference" in segment.model_reason.value
        assert layer in metrics.reference.choices, layer.name
    prediction = viewer.add_labels(truth.astype(np.uint8), name="prediction")
    metrics.prediction.value, metrics.reference.value = prediction, stack
    rows = metrics.compute()
    assert [row["slice"] for row in rows] == ["0", "1", "2", "mean"]
    assert all(row["dice"] == 1.0 for row in rows)


# ------------------------------------------------------- D6 napari's label TIFF stacks
@pytest.mark.parametrize("frames", [3, 4])
def test_naparis_label_tiff_of_3_or_4_frames_reopens_as_labels(tmp_path, clinic, frames):
    """A Labels stack of 3 or 4 frames saved with napari's own labels writer: napari
    stores 32-bit ids, which tifffile marks planar RGB(A); napari's image writer stores a
    colour picture interleaved, 8-bit. The TM-UNet reader opens the first as the Labels
    stack it was (main: an RGB(A) image of ids), the second in colour, and the Segment
    dock's channel-first check does not take the labels for colour."""
    import npe2
    from napari.components import ViewerModel
    from napari.layers import Image, Labels
    from napari_builtins.io._write import napari_write_image, napari_write_labels

    from napari_tmunet.data.colour_spaces import stored_channel_first_colour

    masks = [read_mask(_mask_file(name))[0] for name in FRAMES.values()]
    masks.append(masks[0][::-1])  # (H, W) bool each
    labels = np.stack([mask * np.uint8(i + 1) for i, mask in enumerate(masks[:frames])])
    saved = napari_write_labels(str(tmp_path / "labels.tif"), labels, {})
    colour = read_image(_frame(FRAMES["C"]))  # (H, W, 3) uint8
    picture = napari_write_image(str(tmp_path / "frame.tif"), colour, {"rgb": True})
    with tifffile.TiffFile(saved) as tif:
        page = tif.pages.first
        stored = (page.photometric.name, page.planarconfig.name, page.dtype, page.shape)
    assert stored == ("RGB", "SEPARATE", np.uint32, labels.shape)
    with tifffile.TiffFile(picture) as tif:
        page = tif.pages.first
        stored = (page.photometric.name, page.planarconfig.name, page.dtype, page.shape)
    assert stored == ("RGB", "CONTIG", np.uint8, colour.shape)

    npe2.PluginManager.instance().discover()  # the TM-UNet reader, as napari finds it
    viewer = ViewerModel()
    (reopened,) = viewer.open(saved, plugin="napari-tmunet")
    (shown,) = viewer.open(picture, plugin="napari-tmunet")

    assert isinstance(reopened, Labels) and reopened.data.shape == labels.shape
    np.testing.assert_array_equal(reopened.data, labels)
    assert isinstance(shown, Image) and shown.rgb
    np.testing.assert_array_equal(shown.data, colour)
    assert stored_channel_first_colour(saved, frames) is False


# ------------------------------------------------------------ D7 EXIF orientation
@pytest.fixture
def photo(tmp_path, clinic):
    """(photo.jpg, photo_mask.png, the upright frame): ClinicDB frame C stored a quarter
    turn anticlockwise with EXIF orientation 6 (turn 90 degrees clockwise to show), as a
    phone writes a photo; its mask drawn over it as shown (a PNG, no EXIF)."""
    upright = Picture.open(_frame(FRAMES["C"])).convert("RGB")
    exif = Picture.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    upright.transpose(Picture.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    mask = tmp_path / "photo_mask.png"
    Picture.open(_mask_file(FRAMES["C"])).convert("L").save(mask)
    return path, mask, np.asarray(upright)


def _same_picture(a, b) -> bool:
    """Whether two decodings of one frame agree up to JPEG noise."""
    return a.shape == b.shape and np.abs(a.astype(float) - b).mean() < 3


def test_a_jpeg_is_read_turned_as_its_exif_orientation_says(tmp_path, photo):
    """A dataset folder with the turned photo and its mask: they pair (main: a size
    mismatch, 384 x 288 against 288 x 384), the image reads upright, and its layer's
    metadata say it was turned."""
    from napari_tmunet._reader import read_dataset
    from napari_tmunet.data.datasets import scan_pairs
    from napari_tmunet.data.images import image_shape

    path, mask, upright = photo
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    shutil.copy(path, root / "images")
    shutil.copy(mask, root / "masks" / "photo.png")

    report = scan_pairs(root)

    assert [pair.name for pair in report.pairs] == ["photo"] and not report.skipped
    assert image_shape(path) == upright.shape[:2]
    assert _same_picture(read_image(path), upright)
    (image, kwargs, _), (labels, _, _) = read_dataset(str(root))
    assert _same_picture(image, upright)
    np.testing.assert_array_equal(labels, read_mask(_mask_file(FRAMES["C"]))[0])
    assert kwargs["metadata"]["orientation"] == (
        "turned 90° clockwise, as its EXIF orientation 6 says"
    )


def test_the_launcher_opens_a_turned_jpeg_under_its_mask(launch, refused, photo, tmp_path):
    """``napari-tmunet photo.jpg photo_mask.png``: the photo opens turned, under its mask
    (main refused the mask for its size); a mask of the stored orientation is refused
    in one line that says the photo is turned by its EXIF orientation."""
    path, mask, upright = photo

    status, layers, _ = launch([path, mask])

    assert status == 0 and sorted(layers) == ["photo", "photo mask"]
    assert _same_picture(layers["photo"], upright)
    np.testing.assert_array_equal(layers["photo mask"] > 0, read_mask(mask)[0])

    stored = tmp_path / "stored" / "photo_mask.png"
    stored.parent.mkdir()
    Picture.open(mask).transpose(Picture.Transpose.ROTATE_90).save(stored)
    line = refused([path, stored])
    assert f"; {path} is read turned 90° clockwise, as its EXIF orientation 6 says" in line


def test_segment_warns_when_naparis_reader_shows_a_turned_jpeg_as_stored(
    photo, make_napari_viewer, notices
):
    """File > Open of the photo (napari's own reader, which keeps the stored pixels): the
    Segment dock warns, naming it, that photo viewers show it turned and how to open it
    turned."""
    path, _, upright = photo
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari")
    assert layer.data.shape[:2] == upright.shape[1::-1]  # as stored

    viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")

    (warning,) = [text for text in notices["warning"] if "EXIF" in text]
    assert warning.startswith("'photo': a JPEG that napari's own reader shows as stored")
    assert "turned 90° clockwise, as its EXIF orientation 6 says" in warning
    assert "`napari-tmunet FILE` opens it turned" in warning
