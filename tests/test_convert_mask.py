"""Layers > Layer Type > Convert to mask (TM-UNet): a mask file opened with napari's own
reader (an Image layer) becomes Labels by the mask-file rule (tester20 #1: napari's Convert
to Labels kept CVC-ClinicDB's stray values 1..127 as foreground, Dice 0.80 for 0.97)."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet._sample_data import load_sample
from napari_tmunet.data.images import NOT_A_MASK, mask_image_labels, read_image, read_mask
from napari_tmunet.metrics import dice_score

PLUGIN = "napari-tmunet"
CLINIC = DATASETS / "CVC-ClinicDB"
FRAME = "2"  # its mask holds 29 561 px > 0, of which 9 029 are stray values 1..127
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "masks" / f"{FRAME}.tif").is_file(), reason="shared CVC-ClinicDB not present"
)
COMMAND = "napari-tmunet.convert_to_mask"


@needs_clinic
def test_the_rule_is_the_mask_files():
    """On a real CVC-ClinicDB mask with stray values: read_mask's foreground as 0/1."""
    path = CLINIC / "masks" / f"{FRAME}.tif"
    values = read_image(path)
    assert np.count_nonzero((values > 0) & (values <= 127)) > 1000  # the stray values
    labels, rule = mask_image_labels(values)
    truth, file_rule = read_mask(path)
    assert rule == file_rule == ">127" and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, truth.astype(np.uint8))


def test_ids_and_0_1_masks_stay_and_a_picture_is_refused():
    """Instance ids and 0/1 masks (also as whole floats) keep their values; grey + alpha
    and equal-channel RGB masks lose their channels; a photograph is refused."""
    from scipy import ndimage as ndi

    _, mask = load_sample("nuclei")
    ids = ndi.label(mask > 0)[0]
    assert ids.max() > 10
    for kind in (np.uint16, np.uint8):  # 32 objects: 8-bit ids stay ids too
        out, rule = mask_image_labels(ids.astype(kind))
        assert rule == ">0" and out.dtype == kind
        np.testing.assert_array_equal(out, ids)
    out, _ = mask_image_labels(mask.astype(np.float32))  # 0.0 / 1.0
    np.testing.assert_array_equal(out, mask)
    grey = mask * np.uint8(255)
    alpha = np.dstack([grey, np.full_like(grey, 255)])
    np.testing.assert_array_equal(mask_image_labels(alpha)[0], mask)
    rgb = np.dstack([grey] * 3)
    np.testing.assert_array_equal(mask_image_labels(rgb, colour=True)[0], mask)
    picture, _ = load_sample("colonoscopy")
    with pytest.raises(ValueError, match="does not look like a mask"):
        mask_image_labels(picture[..., :3], colour=True)


def _run_command(viewer) -> None:
    """Run the command as its Layers menu item does (app-model, arguments injected)."""
    from napari._app_model import get_app_model

    app = get_app_model()
    (item,) = [i for i in app.menus.get_menu("napari/layers/layer_type") if i.command.id == COMMAND]
    assert item.command.title == "Convert to mask (TM-UNet)"
    app.commands.execute_command(COMMAND).result()


@pytest.mark.gui
@needs_clinic
def test_following_the_hint_gives_the_mask_files_dice(make_napari_viewer, qtbot, monkeypatch):
    """The Segment dock's hint on a CVC-ClinicDB mask opened with File > Open names the
    command; run from the Layers menu it gives exactly read_mask's mask as Labels, in the
    mask's place with its name, scale and file path, and Metrics gives the file rule's Dice
    on the Segment dock's output; a picture or a Labels layer is left as it is, saying why."""
    from napari.layers import Image, Labels

    import napari_tmunet._convert_mask as command
    import napari_tmunet._segment_widget as segment_module
    from napari_tmunet._dock_texts import CONVERT_TO_MASK

    said = {"info": [], "warning": []}
    for module in (segment_module, command):
        monkeypatch.setattr(module, "show_info", said["info"].append)
        monkeypatch.setattr(module, "show_warning", said["warning"].append)
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    (picture,) = viewer.open(str(CLINIC / "images" / f"{FRAME}.png"), plugin="napari")
    segment.segment()
    assert segment.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    prediction = segment.last_layer

    path = CLINIC / "masks" / f"{FRAME}.tif"
    (image,) = viewer.open(str(path), plugin="napari")  # File > Open, napari's reader
    assert isinstance(image, Image) and segment.image.value is picture
    assert CONVERT_TO_MASK in said["info"][-1] and "Convert to Labels" not in said["info"][-1]
    image.scale = (0.5, 0.25)
    name, index = image.name, viewer.layers.index(image)
    viewer.layers.selection = {image}
    _run_command(viewer)
    converted = viewer.layers[index]
    assert isinstance(converted, Labels) and converted.name == name and image not in viewer.layers
    truth, rule = read_mask(path)
    np.testing.assert_array_equal(np.asarray(converted.data), truth.astype(np.uint8))
    assert tuple(converted.scale) == (0.5, 0.25)
    assert converted.metadata["path"] == str(path) and converted.metadata["mask_rule"] == rule
    assert viewer.layers.selection == {converted}
    assert said["info"][-1].startswith("Converted to a mask by the mask-file rule")
    converted.scale = prediction.scale  # back over the picture

    _, metrics = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Metrics")
    metrics.prediction.value, metrics.reference.value = prediction, converted
    metrics.compute_button.native.click()
    qtbot.waitUntil(lambda: bool(metrics.results) and metrics._worker is None, timeout=30_000)
    expected = dice_score(np.asarray(prediction.data) > 0, truth)
    assert expected > 0.9  # against napari's Convert to Labels: 0.80
    assert metrics.results[-1]["dice"] == pytest.approx(expected)

    viewer.layers.selection = {picture}
    _run_command(viewer)
    assert isinstance(viewer.layers[picture.name], Image)
    assert said["warning"][-1] == (
        f"Convert to mask: {picture.name!r} was left as it is: {NOT_A_MASK}."
    )
    viewer.layers.selection = {converted}  # a Labels layer is never reinterpreted
    _run_command(viewer)
    assert "select the image layer of a mask file" in said["warning"][-1]
    np.testing.assert_array_equal(np.asarray(converted.data), truth.astype(np.uint8))


@pytest.mark.gui
def test_a_grey_alpha_mask_becomes_labels_without_its_alpha_axis(make_napari_viewer, tmp_path):
    """A 0/255 grey + alpha mask PNG (MoNuSeg's kind) opened by napari's reader is an
    (H, W, 2) Image of 3 axes; converted it is (H, W) Labels of read_mask's mask, with the
    scale of its two image axes (napari's Convert to Labels kept the alpha as an axis)."""
    from napari.layers import Labels
    from PIL import Image as Picture

    _, truth = load_sample("nuclei")
    grey = (truth > 0).astype(np.uint8) * np.uint8(255)
    path = tmp_path / "nuclei_la.png"
    Picture.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA").save(path)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari")
    assert image.ndim == 3
    image.scale = (0.25, 0.25, 1)
    viewer.layers.selection = {image}
    _run_command(viewer)
    (converted,) = viewer.layers
    assert isinstance(converted, Labels) and converted.data.shape == grey.shape
    np.testing.assert_array_equal(converted.data, read_mask(path)[0].astype(np.uint8))
    assert tuple(converted.scale) == (0.25, 0.25)


@pytest.mark.skipif(not (DATASETS / "MoNuSeg").is_dir(), reason="shared MoNuSeg not present")
def test_8bit_ids_above_127_stay_ids():
    """A MoNuSeg tile labelled 1..247 in 8 bits (an 8-bit label export): its ids are kept,
    as napari-tmunet's reader opens such a mask file, not read as a 0/255 mask."""
    from scipy import ndimage as ndi

    truth, _ = read_mask(DATASETS / "MoNuSeg" / "masks" / "TCGA-21-5786-01Z-00-DX1.png")
    ids, count = ndi.label(truth)
    assert 128 <= count <= 255
    out, rule = mask_image_labels(ids.astype(np.uint8))
    assert rule == ">0 (8-bit ids)" and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ids)
