"""``napari-tmunet``'s options (the smoke run itself is in test_segment_widget.py)."""

import numpy as np
import pytest
from _paths import EXTRA, REPO, dataset_subset

from napari_tmunet.launch import build_parser

# windows opened as the launcher does, in an application of their own (conftest.py)
pytestmark = pytest.mark.usefixtures("launcher_app")


def test_smoke_screenshot_defaults_outside_the_checkout():
    """The README's main command must not rewrite the tracked docs/screenshot.png."""
    args = build_parser().parse_args(["--smoke"])
    assert REPO not in args.screenshot.resolve().parents
    assert build_parser().parse_args(["--screenshot", "x.png"]).screenshot.name == "x.png"


def test_unknown_model_is_one_line_before_napari_starts(monkeypatch, capsys):
    """A typo in --model: exit 2 with one line naming the shipped models, and no window."""
    import napari

    from napari_tmunet import launch, registry

    opened = []
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: opened.append(1))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # a display: only the model can stop it
    assert launch.main(["--model", "colonscopy"]) == 2
    err = capsys.readouterr().err.strip()
    assert not opened and len(err.splitlines()) == 1
    assert err.startswith("napari-tmunet: error: model 'colonscopy' is neither")
    assert " nor a modality " in err and " or modality " not in err  # neither ... nor
    for entry in registry.available_models():
        assert repr(entry.name) in err
    if registry.model_for_modality("colonoscopy") is not None:  # a modality name is fine
        assert launch._model_problem("colonoscopy") is None


def test_a_missing_file_is_one_line_before_napari_starts(monkeypatch, capsys, tmp_path):
    """``napari-tmunet PATH`` with a PATH that does not exist: exit 2, one line naming it."""
    import napari

    from napari_tmunet import launch

    opened = []
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: opened.append(1))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    missing = tmp_path / "no such image.png"
    assert launch.main([str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert not opened and err == f"napari-tmunet: error: {missing} does not exist"


def run_launcher(monkeypatch, argv: list[str]):
    """``napari-tmunet ARGV`` up to the event loop; (exit status, the image layers' names
    and visibility, the Segment dock's image and model)."""
    import napari

    from napari_tmunet import launch

    seen = {}

    def look_and_close():
        viewer = napari.current_viewer()
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        seen["layers"] = [(layer.name, layer.visible) for layer in viewer.layers]
        seen["chosen"] = segment.image.value.name if segment.image.value else None
        seen["model"] = segment.model.value
        seen["active"] = getattr(viewer.layers.selection.active, "name", None)
        viewer.close()

    monkeypatch.setattr(napari, "run", look_and_close)
    return launch.main(argv), seen


def test_the_launcher_opens_the_files_it_is_given(monkeypatch, tmp_path):
    """``napari-tmunet IMAGE`` opens that image (not the sample), chosen in the Segment
    dock with its model; ``napari-tmunet DATASET`` opens a dataset folder with the TM-UNet
    reader (its first pair shown) and chooses the shown image."""
    import shutil

    import pytest
    from _paths import DATASETS

    udiat = DATASETS / "UDIAT"
    if not (udiat / "images").is_dir():
        pytest.skip("shared UDIAT data not present")
    image = tmp_path / "scan 1.png"
    shutil.copy(udiat / "images" / "000001.png", image)
    status, seen = run_launcher(monkeypatch, [str(image)])
    assert status == 0
    assert seen["layers"] == [("scan 1", True)]
    assert seen["chosen"] == "scan 1" and seen["model"] == "TM-UNet ultrasound"

    root = tmp_path / "dataset"
    dataset_subset(udiat, root, ("000001", "000002"))
    status, seen = run_launcher(monkeypatch, [str(root)])
    assert status == 0
    assert [name for name, visible in seen["layers"] if visible] == ["000001", "000001 mask"]
    assert seen["chosen"] == "000001"


def test_a_path_that_cannot_be_opened_is_one_line_before_napari_starts(
    monkeypatch, capsys, tmp_path
):
    """A file no reader takes, a damaged image, a folder without images: exit 2 with one
    line naming the path (and, where it is no image, what the launcher opens); no window."""
    import napari

    from napari_tmunet import launch

    opened = []
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: opened.append(1))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    damaged = tmp_path / "scan.png"
    damaged.write_text("not a PNG")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    expected = {
        notes: f"{notes}: not a file napari-tmunet can open; {launch.CAN_OPEN}",
        damaged: f"{damaged}: not a readable PNG, JPEG, BMP or TIFF image; export it again",
        empty: f"{empty}: the file is empty (0 bytes); export it again, or leave it out",
        folder: f"{folder}: no images in this folder; {launch.CAN_OPEN}",
    }
    for path, start in expected.items():
        assert launch.main([str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"napari-tmunet: error: {start}") and len(err.splitlines()) == 1
    assert "PNG, JPEG, BMP or TIFF images" in launch.CAN_OPEN
    assert not opened


def test_several_pictures_open_as_a_dataset_folders_do(monkeypatch, tmp_path):
    """``napari-tmunet A.png B.png C.tif`` (pictures of other sizes and kinds): only the
    first is shown, chosen in the Segment dock and active, so Segment works on what the
    user sees; a saved mask given after a picture, and the masks found beside the others
    (their datasets' masks/), are shown or hidden with their pictures."""

    import pytest
    from _paths import DATASETS

    from napari_tmunet.data.images import read_mask, write_mask

    udiat, clinic = DATASETS / "UDIAT", DATASETS / "CVC-ClinicDB"
    monuseg = DATASETS / "MoNuSeg" / "images" / "TCGA-18-5592-01Z-00-DX1.tif"
    if not (udiat.is_dir() and clinic.is_dir() and monuseg.is_file()):
        pytest.skip("shared UDIAT, CVC-ClinicDB and MoNuSeg data not present")
    scan = udiat / "images" / "000001.png"
    frame = clinic / "images" / "1.png"

    status, seen = run_launcher(monkeypatch, [str(scan), str(frame), str(monuseg)])

    assert status == 0
    assert seen["layers"] == [
        ("000001", True),
        ("1", False),
        (monuseg.stem, False),
        ("000001 mask", True),
        ("1 mask", False),
        (f"{monuseg.stem} mask", False),
    ]
    assert seen["chosen"] == seen["active"] == "000001"
    assert seen["model"] == "TM-UNet ultrasound"

    mask = write_mask(tmp_path / "000001 mask.tif", read_mask(udiat / "masks" / "000001.png")[0])
    status, seen = run_launcher(monkeypatch, [str(frame), str(scan), str(mask)])

    assert status == 0
    assert seen["layers"] == [
        ("1", True),
        ("000001", False),
        ("000001 mask", False),  # the one given, not UDIAT's masks/000001.png
        ("1 mask", True),
    ]
    assert seen["chosen"] == seen["active"] == "1"


def test_a_dataset_mask_file_opens_as_its_pictures_mask(monkeypatch):
    """``napari-tmunet masks/1.tif images/1.png`` (either order): the file in ``masks/``
    opens as the Labels "1 mask" over its picture, shown with it, never the chosen
    picture; a second picture's mask is hidden with that picture."""
    import pytest
    from _paths import DATASETS

    clinic = DATASETS / "CVC-ClinicDB"
    if not (clinic / "masks" / "1.tif").is_file():
        pytest.skip("shared CVC-ClinicDB data not present")
    frame, mask = clinic / "images" / "1.png", clinic / "masks" / "1.tif"
    frame2, mask2 = clinic / "images" / "2.png", clinic / "masks" / "2.tif"

    for argv in ([mask, frame], [frame, mask]):
        status, seen = run_launcher(monkeypatch, [str(p) for p in argv])
        assert status == 0
        assert seen["layers"] == [("1", True), ("1 mask", True)]
        assert seen["chosen"] == seen["active"] == "1"
        assert seen["model"] == "TM-UNet colonoscopy"

    status, seen = run_launcher(monkeypatch, [str(mask2), str(frame), str(mask), str(frame2)])
    assert status == 0
    assert seen["layers"] == [("1", True), ("2", False), ("2 mask", False), ("1 mask", True)]
    assert seen["chosen"] == "1"


def test_a_cmyk_jpeg_or_grey_alpha_png_opens_in_the_colours_the_model_takes(monkeypatch, tmp_path):
    """``napari-tmunet FRAME.jpg`` of a CMYK JPEG (the bundled colonoscopy frame saved as
    CMYK): the layer holds Pillow's RGB of the file, not the inks napari's reader draws as
    RGBA (dark), chosen with the colonoscopy model, and Segment (the dock's worker
    thread) labels the polyp without converting again; a grey + alpha PNG (the bundled
    ultrasound frame) opens as its grey, not as napari's (H, W, 2)."""
    import napari
    from PIL import Image as Picture

    from napari_tmunet import launch, registry
    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.metrics import dice_score

    if registry.model_for_modality("colonoscopy") is None:
        import pytest

        pytest.skip("no shipped colonoscopy model")
    colour, truth = load_sample("colonoscopy")
    frame = tmp_path / "frame.jpg"
    Picture.fromarray(colour).convert("CMYK").save(frame, quality=95)
    with Picture.open(frame) as stored:
        as_rgb = np.asarray(stored.convert("RGB"))
    grey, _ = load_sample("ultrasound")
    scan = tmp_path / "scan.png"
    Picture.fromarray(np.dstack([grey, np.full_like(grey, 200)]), "LA").save(scan)
    seen = {}

    def segment_and_close():
        viewer = napari.current_viewer()
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        seen["data"] = [np.asarray(layer.data) for layer in viewer.layers]
        seen["model"] = segment.model.value
        launch._click_segment(segment, timeout=300)
        seen["labels"] = np.asarray(segment.last_layer.data)
        seen["summary"] = segment.summary.value
        viewer.close()

    monkeypatch.setattr(napari, "run", segment_and_close)
    assert launch.main([str(frame), str(scan)]) == 0
    rgb, grey_layer = seen["data"]
    np.testing.assert_array_equal(rgb, as_rgb)
    np.testing.assert_array_equal(grey_layer, grey)
    assert seen["model"] == "TM-UNet colonoscopy"
    assert dice_score(seen["labels"] > 0, truth > 0) > 0.8
    assert "CMYK" not in seen["summary"]  # the layer is RGB: nothing left to convert


def test_a_pictures_mask_given_or_found_beside_it_opens_over_it(monkeypatch, capsys, tmp_path):
    """``napari-tmunet IMAGE [MASK]`` on the bundled colonoscopy frame: a mask named as
    masks are (NAME_mask.png, NAME-mask.tif) given after it, or found beside it (in its
    folder, or NAME.* in a ``ground_truth``/``labels`` folder in or beside its folder),
    opens as the Labels "NAME mask" over it; a given mask wins over one found. A mask of
    another size: given, exit 2 with one line naming it before napari starts; found, one
    line saying it is not opened, and the picture opens alone."""
    import napari
    from PIL import Image as Picture

    from napari_tmunet import launch
    from napari_tmunet._sample_data import load_sample

    colour, truth = load_sample("colonoscopy")
    seen = {}

    def look_and_close():
        viewer = napari.current_viewer()
        seen["layers"] = [(layer.name, layer.visible) for layer in viewer.layers]
        seen["mask"] = next(
            (np.asarray(layer.data) for layer in viewer.layers if not launch._is_image(layer)),
            None,
        )
        viewer.close()

    monkeypatch.setattr(napari, "run", look_and_close)

    def launch_with(*paths):
        seen.clear()
        return launch.main([str(path) for path in paths])

    def save(path, image):
        path.parent.mkdir(parents=True, exist_ok=True)
        Picture.fromarray(image).save(path)
        return path

    beside = save(tmp_path / "beside" / "frame.png", colour)
    save(tmp_path / "beside" / "frame_mask.png", truth * np.uint8(255))
    images = save(tmp_path / "set" / "images" / "frame.png", colour)
    save(tmp_path / "set" / "ground_truth" / "frame.png", truth * np.uint8(255))
    inside = save(tmp_path / "inside" / "frame.png", colour)
    save(tmp_path / "inside" / "labels" / "frame.png", truth)  # 0/1
    for picture in (beside, images, inside):
        assert launch_with(picture) == 0
        assert seen["layers"] == [("frame", True), ("frame mask", True)], picture
        np.testing.assert_array_equal(seen["mask"] > 0, truth > 0)

    given = tmp_path / "elsewhere" / "frame-mask.png"
    save(given, np.zeros_like(truth))
    assert launch_with(beside, given) == 0
    assert seen["layers"] == [("frame", True), ("frame mask", True)]
    assert not seen["mask"].any()  # the given one, not the one beside the picture

    small = save(tmp_path / "small" / "frame_mask.png", truth[:100] * np.uint8(255))
    capsys.readouterr()
    assert launch_with(beside, small) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"napari-tmunet: error: the mask {small} is 100 x 384 pixels but its picture "
        f"{beside} is 288 x 384: give the mask made for that picture"
    )
    assert not seen
    lone = save(tmp_path / "small" / "frame.png", colour)
    assert launch_with(lone) == 0
    assert seen["layers"] == [("frame", True)]
    err = capsys.readouterr().err.strip()
    assert err == f"napari-tmunet: not opened: the mask {small} is 100 x 384 pixels but its " + (
        f"picture {lone} is 288 x 384: give the mask made for that picture"
    )


def _launch_and_look(monkeypatch, paths):
    """``napari-tmunet PATHS`` up to the event loop: (exit status, {layer name: (layer
    type, visible, data)}, the Segment dock's image name)."""
    import napari

    from napari_tmunet import launch

    seen = {}

    def look_and_close():
        viewer = napari.current_viewer()
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        seen["layers"] = {
            layer.name: (type(layer).__name__, layer.visible, np.asarray(layer.data))
            for layer in viewer.layers
        }
        seen["chosen"] = segment.image.value.name if segment.image.value else None
        viewer.close()

    monkeypatch.setattr(napari, "run", look_and_close)
    status = launch.main([str(path) for path in paths])
    return status, seen.get("layers"), seen.get("chosen")


def test_a_mask_of_any_name_opens_as_labels_over_its_picture(monkeypatch, tmp_path):
    """``napari-tmunet IMAGE MASK`` with a mask named freely (lesion_outline.png, 0/255
    grey; outline.png, 0/255 saved as RGB): what it holds makes it a mask
    (``looks_like_mask``), so it opens as the Labels "IMAGE mask" over the picture of its
    size given before (or after) it; alone it opens as Labels too; the picture stays the
    image chosen in the Segment dock (fix-74 #2)."""
    from PIL import Image as Picture

    from napari_tmunet._sample_data import load_sample

    colour, truth = load_sample("colonoscopy")
    scan = tmp_path / "scan.png"
    Picture.fromarray(colour).save(scan)
    grey = tmp_path / "lesion_outline.png"
    Picture.fromarray(truth * np.uint8(255)).save(grey)
    rgb = tmp_path / "outline.png"
    Picture.fromarray(np.dstack([truth * np.uint8(255)] * 3)).save(rgb)

    for argv in ([scan, grey], [grey, scan], [scan, rgb]):
        status, layers, chosen = _launch_and_look(monkeypatch, argv)
        assert status == 0
        assert list(layers) == ["scan", "scan mask"], argv
        assert layers["scan"][:2] == ("Image", True) and chosen == "scan"
        kind, visible, data = layers["scan mask"]
        assert (kind, visible) == ("Labels", True), argv
        np.testing.assert_array_equal(data, truth > 0)

    status, layers, chosen = _launch_and_look(monkeypatch, [grey])
    assert status == 0 and list(layers) == ["lesion_outline mask"]
    assert layers["lesion_outline mask"][0] == "Labels" and chosen is None


def test_a_kvasir_seg_mask_of_another_name_opens_as_labels(monkeypatch, tmp_path):
    """Kvasir-SEG's frame and its RGB JPEG mask copied under free names: the mask opens
    as the Labels "frame mask", its JPEG noise (1..127) background (fix-74 #2)."""
    import shutil

    import pytest

    from napari_tmunet.data.images import read_image

    kvasir = EXTRA / "Kvasir-SEG"
    if not kvasir.is_dir():
        pytest.skip("extra-data Kvasir-SEG not present")
    name = sorted((kvasir / "masks").glob("*.jpg"))[0].name
    frame = shutil.copy(kvasir / "images" / name, tmp_path / "frame.jpg")
    outline = shutil.copy(kvasir / "masks" / name, tmp_path / "polyp outline.jpg")

    status, layers, chosen = _launch_and_look(monkeypatch, [frame, outline])

    assert status == 0 and chosen == "frame"
    assert [(n, kind) for n, (kind, _, _) in layers.items()] == [
        ("frame", "Image"),
        ("frame mask", "Labels"),
    ]
    stored = read_image(outline)[..., 0]
    np.testing.assert_array_equal(layers["frame mask"][2], stored > 127)


def test_metrics_pairs_the_segmented_picture_with_its_mask_file(monkeypatch):
    """``napari-tmunet masks/1.tif images/1.png``, then Segment (the dock's worker
    thread): the Metrics dock pairs the output with "1 mask" as the reference."""
    import napari
    import pytest
    from _paths import DATASETS

    from napari_tmunet import launch, registry

    clinic = DATASETS / "CVC-ClinicDB"
    if not (clinic / "masks" / "1.tif").is_file():
        pytest.skip("shared CVC-ClinicDB data not present")
    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    seen = {}

    def segment_and_close():
        viewer = napari.current_viewer()
        segment = viewer.window.dock_widgets["Segment (TM-UNet)"]
        metrics = viewer.window.dock_widgets["Metrics (TM-UNet)"]
        launch._click_segment(segment, timeout=300)
        seen["output"] = segment.last_layer.name
        seen["pair"] = (metrics.prediction.value.name, metrics.reference.value.name)
        viewer.close()

    monkeypatch.setattr(napari, "run", segment_and_close)
    argv = [str(clinic / "masks" / "1.tif"), str(clinic / "images" / "1.png")]
    assert launch.main(argv) == 0
    assert seen["pair"] == (seen["output"], "1 mask")


# Runs ``napari-tmunet ARGV`` (each argument list in sys.argv[1], as JSON) up to the event
# loop and prints, per launch, the window and screen sizes, the tab bar's bottom edge and
# the part of the image plane the canvas shows against the shown image's extent.
GEOMETRY_SCRIPT = """
import json, sys
import napari
from qtpy.QtWidgets import QApplication, QTabBar
from napari_tmunet import launch

def look_and_close():
    from napari_tmunet.launch import _run_events
    viewer = napari.current_viewer()
    _run_events(1.0)  # what the event loop does first: show and lay out the window
    window = viewer.window._qt_window
    area = window.screen().availableGeometry()
    canvas = viewer.window._qt_viewer.canvas.native
    zoom, (cy, cx) = viewer.camera.zoom, viewer.camera.center[-2:]
    half_w, half_h = canvas.width() / 2 / zoom, canvas.height() / 2 / zoom
    image = next(layer for layer in viewer.layers if layer.visible)
    bars = [b for b in window.findChildren(QTabBar) if b.count() and b.isVisible()]
    print("GEOMETRY " + json.dumps({
        "screen": [area.width(), area.height()],
        "window": [window.frameGeometry().width(), window.frameGeometry().height()],
        "tab_bar_bottoms": [b.mapTo(window, b.rect().bottomLeft()).y() for b in bars],
        "shown": [cy - half_h, cx - half_w, cy + half_h, cx + half_w],
        "extent": image.extent.world.tolist(),
    }), flush=True)
    viewer.close()

napari.run = look_and_close
for argv in json.loads(sys.argv[1]):
    assert launch.main(argv) == 0
"""


def test_the_window_fits_a_small_screen_and_shows_the_whole_image(tmp_path):
    """``napari-tmunet`` on a 1366 x 768 screen (Xvfb): the window fits the screen's
    available area, the docks' tab bar is on it, and the first view shows the whole image
    (fitted after the docks took their room), for the sample and a BUSI image."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        pytest.skip("needs xvfb-run")
    launches = [["--sample", "ultrasound"]]
    busi = EXTRA / "BUSI" / "images" / "benign (10).png"
    if busi.is_file():  # wider than tall: cropped at the left when fitted before the docks
        launches.append([str(busi)])
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(REPO))
    command = [xvfb_run, "-a", "-s", "-screen 0 1366x768x24", sys.executable, "-c"]
    done = subprocess.run(
        [*command, GEOMETRY_SCRIPT, json.dumps(launches)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads(line[9:]) for line in done.stdout.splitlines() if line[:9] == "GEOMETRY "]
    assert len(seen) == len(launches), done.stdout
    for look in seen:
        (width, height), (screen_w, screen_h) = look["window"], look["screen"]
        assert width <= screen_w and height <= screen_h, look
        assert look["tab_bar_bottoms"] and max(look["tab_bar_bottoms"]) < height, look
        (top, left), (bottom, right) = look["extent"]
        shown_top, shown_left, shown_bottom, shown_right = look["shown"]
        assert shown_top <= top and shown_left <= left, look  # nothing cut off
        assert bottom <= shown_bottom and right <= shown_right, look


def test_an_instance_png_the_writer_saved_keeps_its_ids(monkeypatch, tmp_path):
    """``napari-tmunet he.png he_labels.png`` with the nuclei sample's instances (the
    shipped model's real segmentation) saved as PNG by the plugin's writer (uint16, many
    ids): the Labels "he mask" holds every id as saved, as a TIFF's does; a 0/255 PNG
    still opens as 0/1 (tester16 #2)."""
    import shutil

    import napari
    import npe2
    import tifffile
    from napari.layers import Labels
    from PIL import Image as Picture

    from napari_tmunet.predict_cli import main as predict

    npe2.PluginManager.instance().discover()  # the writer, as napari finds it
    pictures = tmp_path / "in"
    pictures.mkdir()
    he = shutil.copy(REPO / "napari_tmunet" / "samples" / "nuclei_image.png", pictures / "he.png")
    argv = [str(pictures), str(tmp_path / "out"), "--instances", "--device", "cpu"]
    assert predict(argv) == 0
    instances = tifffile.imread(tmp_path / "out" / "he.tif")
    (saved,) = napari.save_layers(
        str(tmp_path / "he_labels.png"), [Labels(instances)], plugin="napari-tmunet"
    )
    stored = np.asarray(Picture.open(saved))
    assert stored.dtype == np.uint16 and len(np.unique(stored)) > 20

    status, layers, chosen = _launch_and_look(monkeypatch, [he, saved])

    assert status == 0 and chosen == "he"
    kind, visible, data = layers["he mask"]
    assert (kind, visible) == ("Labels", True)
    np.testing.assert_array_equal(data, stored)

    binary = tmp_path / "he-mask.png"
    Picture.fromarray((stored > 0).astype(np.uint8) * 255).save(binary)
    status, layers, _ = _launch_and_look(monkeypatch, [he, binary])
    assert status == 0
    np.testing.assert_array_equal(layers["he mask"][2], stored > 0)
    assert layers["he mask"][2].dtype == np.uint8
