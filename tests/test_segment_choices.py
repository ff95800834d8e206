"""The Segment dock: which model is remembered, masks opened as images, hidden images,
the summary after the image changes, and a fine-tuned model's name (tester12C)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _paths import DATASETS
from test_segment_widget import PLUGIN, open_sample, wait_done

from napari_tmunet import active_model, registry, settings
from napari_tmunet._dock_texts import CONVERT_TO_MASK
from napari_tmunet._sample_data import load_sample

pytestmark = pytest.mark.gui

SAMPLES = registry.PACKAGE_WEIGHTS_DIR.parent / "samples"


def segment_dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    return widget


def segment(qtbot, widget) -> None:
    """Click Segment on the threaded path and wait until it is done."""
    widget.segment()
    # a checkpoint file chosen a moment ago is read first ("checking X.pt..."), then it runs
    qtbot.waitUntil(lambda: not widget.status.value.startswith("checking "), timeout=60_000)
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value


def test_a_shipped_model_of_another_modality_runs_but_is_not_remembered(
    make_napari_viewer, qtbot, notices
):
    """Picking the colonoscopy model once on an ultrasound image runs it on that image and
    says what it was trained on and how to go back; it is not kept for ultrasound images in
    a later session (tester12C #1)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "ultrasound")
    widget.image.value = image
    assert widget.model.value == "TM-UNet ultrasound"
    widget.model.value = "TM-UNet colonoscopy"  # a comparison
    assert registry.remembered_models() == {}
    reason = widget.model_reason.value
    assert reason == (
        "Runs TM-UNet colonoscopy: your pick for ultrasound images, this session only, but it "
        "was trained on colonoscopy images and this image looks like ultrasound; choose "
        "TM-UNet ultrasound to go back."
    )
    segment(qtbot, widget)
    assert widget.last_layer.metadata["model"] == "TM-UNet colonoscopy"
    assert "TM-UNet colonoscopy may not suit this image" in widget.summary.value
    said = [text for text in notices["warning"] if "trained on colonoscopy images" in text]
    assert len(said) == 1 and "choose TM-UNet ultrasound to go back" in said[0], notices

    later = make_napari_viewer()  # a later session
    fresh = segment_dock(later)
    fresh.image.value = open_sample(later, "ultrasound")
    assert fresh.model.value == "TM-UNet ultrasound"
    assert "earlier" not in fresh.model_reason.value


def test_an_older_cross_modality_setting_is_ignored_with_a_note(make_napari_viewer):
    """A settings file that an older version wrote with the colonoscopy model as the
    ultrasound one: the ultrasound model runs, the reason says once why, and the entry is
    dropped; an entry of the right modality stays."""
    written = {"ultrasound": "TM-UNet colonoscopy", "colonoscopy": "TM-UNet colonoscopy"}
    path = settings.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"models_by_modality": written}))
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    widget.image.value = open_sample(viewer, "ultrasound")
    assert widget.model.value == "TM-UNet ultrasound"
    assert (
        "(your earlier pick TM-UNet colonoscopy is no longer used for ultrasound images, as "
        "it was trained on colonoscopy images)"
    ) in widget.model_reason.value
    assert registry.remembered_models() == {"colonoscopy": "TM-UNet colonoscopy"}


def test_a_checkpoint_recording_another_modality_is_said_so(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """A checkpoint file of the user's runs on any image, but when it records another
    modality than the image looks like, the warning and the summary say so."""
    from napari_tmunet._segment_widget import CHECKPOINT_CHOICE

    own = tmp_path / "my_model.pt"
    shutil.copy(registry.find_model("TM-UNet colonoscopy").path, own)
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    widget.image.value = open_sample(viewer, "ultrasound")
    widget.model.value = CHECKPOINT_CHOICE
    widget.checkpoint.value = own
    segment(qtbot, widget)
    assert "my_model.pt may not suit this image" in widget.summary.value
    said = [text for text in notices["warning"] if "its checkpoint says so" in text]
    assert len(said) == 1, notices
    assert "my_model.pt: it was trained on colonoscopy images" in said[0]
    assert "this image looks like ultrasound; choose TM-UNet ultrasound to go back" in said[0]


def shipped_defaults(name: str) -> dict:
    """The shipped model's own threshold and confidence, from its loaded checkpoint."""
    inputs = registry.load_model(name, "cpu").input_config
    return {"threshold": inputs.threshold, "min_confidence": inputs.min_confidence}


def sliders(widget) -> dict:
    return {
        name: widget.threshold.value if name == "threshold" else widget.min_confidence.value
        for name in ("threshold", "min_confidence")
    }


def test_the_sliders_show_the_chosen_models_own_values_before_any_run(make_napari_viewer):
    """Choosing the ultrasound sample (its model chosen automatically) puts that model's own
    threshold and confidence (0.81 in its file) on the sliders before the first Segment;
    another model picked brings its own; a value the user moved stays until the model
    changes, also when an image brings another model (tester13 #2, tester14 #1)."""
    ultrasound = shipped_defaults("TM-UNet ultrasound")
    colonoscopy = shipped_defaults("TM-UNet colonoscopy")
    assert ultrasound["min_confidence"] > 0.5 and colonoscopy["min_confidence"] == 0
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "ultrasound")
    widget.image.value = image
    assert widget.model.value == "TM-UNet ultrasound"
    assert sliders(widget) == pytest.approx(ultrasound)
    widget.model.value = "TM-UNet colonoscopy"
    assert sliders(widget) == pytest.approx(colonoscopy)
    widget.model.value = "TM-UNet ultrasound"
    assert sliders(widget) == pytest.approx(ultrasound)
    widget.min_confidence.value = 0.3  # the user's value
    assert widget.min_confidence.value == pytest.approx(0.3)  # moved by the user: kept
    open_sample(viewer, "colonoscopy")  # its own model, shown with its own values
    assert widget.model.value == "TM-UNet colonoscopy"
    assert sliders(widget) == pytest.approx(colonoscopy)  # not the ultrasound's moved value
    widget.model.value = "TM-UNet nuclei"  # a model chosen: its own values again
    assert sliders(widget) == pytest.approx(shipped_defaults("TM-UNet nuclei"))


def test_a_gate_that_hides_everything_says_how_much_in_the_dock(make_napari_viewer, qtbot, notices):
    """The shipped ultrasound model on its sample with Confidence 0.99 (above the lesion's
    mean probability): no labels; the summary says how many objects and pixels the gate
    hid, counted from the run's own probability; no pop-up promises a lesion or doubts the
    model, which suits the image (tester13 #3). Lowering Confidence shows them, and the line
    follows."""
    from napari_tmunet.postprocess import LabelOptions, count_objects, derive_labels

    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    widget.image.value = open_sample(viewer, "ultrasound")
    assert widget.model.value == "TM-UNet ultrasound"
    widget.min_confidence.value = 0.99
    segment(qtbot, widget)
    labels = widget.last_layer
    assert not labels.data.any()
    ungated = derive_labels(labels.metadata["tmunet_probability"], LabelOptions(0.5))
    pixels = int(np.count_nonzero(ungated))
    objects = count_objects(ungated)
    assert pixels > 1000
    kind = "object" if objects == 1 else "objects"
    summary = widget.summary.value
    assert summary.startswith(f"{widget.image.value.name}: 0 objects shown, 0 px")
    assert f"; {objects} {kind} ({pixels} px) below confidence 0.99 hidden" in summary
    assert "may not suit" not in summary
    assert not any("found nothing" in text or "suits" in text for text in notices["warning"])

    widget.min_confidence.value = 0.5  # re-derived: the lesion is shown, nothing hidden
    qtbot.waitUntil(lambda: labels.metadata["label_options"]["min_confidence"] == 0.5)
    qtbot.waitUntil(lambda: "hidden" not in widget.summary.value)
    assert labels.data.any() and "0 objects" not in widget.summary.value


def test_segmenting_a_hidden_image_shows_it_and_its_result(make_napari_viewer, qtbot):
    """Two pictures opened as the launcher opens them (the second and its mask hidden); the
    hidden one chosen and segmented: it, its mask and its labels are shown, the first
    picture and its mask hidden (tester12C #2)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    first = open_sample(viewer, "colonoscopy")
    viewer.open_sample(PLUGIN, "nuclei")
    second = viewer.layers[-2]
    assert viewer.layers[-1].name == f"{second.name} mask"
    second.visible = viewer.layers[-1].visible = False
    widget.image.value = second
    segment(qtbot, widget)
    labels = widget.last_layer
    assert labels.metadata["image"] == second.name
    assert second.visible and labels.visible and viewer.layers[f"{second.name} mask"].visible
    assert not first.visible and not viewer.layers[f"{first.name} mask"].visible


def test_looks_like_mask_tells_masks_from_pictures():
    """Binary 0/255 and 0/1 masks and instance ids are masks; the samples' pictures, noise,
    a blank image and float data are not."""
    import imageio.v3 as iio
    from scipy import ndimage as ndi

    from napari_tmunet.data.images import looks_like_mask

    for modality in ("colonoscopy", "nuclei", "ultrasound"):
        picture = iio.imread(SAMPLES / f"{modality}_image.png")
        mask = iio.imread(SAMPLES / f"{modality}_mask.png")
        assert looks_like_mask(mask) and looks_like_mask(mask > 0), modality
        assert looks_like_mask(ndi.label(mask > 0)[0].astype(np.uint16)), modality
        assert looks_like_mask(np.stack([mask] * 3, axis=-1)), modality  # grey saved as RGB
        assert not looks_like_mask(picture), modality
        assert not looks_like_mask(mask.astype(np.float32)), modality
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    assert not looks_like_mask(noise)
    assert not looks_like_mask(np.zeros((40, 40), np.uint8))


def instance_png(tmp_path):
    """The nuclei sample's mask as a 16-bit instance-id PNG, as the dock's Save writes."""
    import imageio.v3 as iio
    from scipy import ndimage as ndi

    _, mask = load_sample("nuclei")
    path = tmp_path / "nuclei_instances.png"
    iio.imwrite(path, ndi.label(mask > 0)[0].astype(np.uint16))
    return path


def test_a_mask_opened_as_an_image_is_not_chosen_nor_warned_about(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """A 0/255 mask PNG and a 16-bit instance PNG opened with File > Open (napari's reader:
    Image layers): the dock stays on the picture, warns of no modality, and says once per
    mask how to use it as Labels; chosen by hand, its reason line says so; Segment all
    leaves them out (tester12C #6)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    picture = open_sample(viewer, "colonoscopy")
    assert widget.image.value is picture
    for path in (SAMPLES / "colonoscopy_mask.png", instance_png(tmp_path)):
        (mask,) = viewer.open(path, plugin="napari")
        assert type(mask).__name__ == "Image" and viewer.layers.selection.active is mask
        assert widget.image.value is picture
        assert f"'{mask.name}' looks like a mask" in notices["info"][-1]
        assert CONVERT_TO_MASK in notices["info"][-1]  # not napari's Convert to Labels
        widget.image.value = mask  # chosen by hand: the hint, not a modality warning
        assert widget.model_reason.value.startswith(f"'{mask.name}' looks like a mask")
        widget.image.value = picture
    assert notices["warning"] == []
    assert len(notices["info"]) == 2
    widget.segment_all()  # the picture only
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    assert widget.status.value == "done", widget.status.value
    assert notices["info"][2].startswith(
        "Not segmented, as they look like masks: 'colonoscopy_mask'"
    )
    assert [layer.name for layer in viewer.layers if layer.name.endswith(" labels")] == [
        f"{picture.name} labels"
    ]


def test_a_mask_saved_in_colour_is_hinted_without_convert_to_labels(
    make_napari_viewer, notices, tmp_path
):
    """A 0/255 mask saved as RGB (Kvasir-SEG style) opened with napari's reader: the hint
    sends it to the Metrics dock, which takes it as it is (fix-74 #3), not to Convert to
    Labels, which would make its colour channels a third axis."""
    from PIL import Image as Picture

    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    picture = open_sample(viewer, "colonoscopy")
    _, truth = load_sample("colonoscopy")
    path = tmp_path / "polyp_rgb.png"
    Picture.fromarray(np.dstack([truth * np.uint8(255)] * 3)).save(path)
    (mask,) = viewer.open(path, plugin="napari")
    assert mask.rgb and widget.image.value is picture
    assert f"'{mask.name}' looks like a mask" in notices["info"][-1]
    assert "Metrics dock takes it as the reference" in notices["info"][-1]
    assert "Convert to Labels" not in notices["info"][-1]
    assert CONVERT_TO_MASK in notices["info"][-1]  # which drops the channels


def test_a_grey_alpha_mask_is_hinted_without_convert_to_labels(
    make_napari_viewer, notices, tmp_path
):
    """A 0/255 mask saved as grey + alpha (MoNuSeg's PNGs) opened with napari's reader is an
    (H, W, 2) image: the hint sends it to the Metrics dock, which reads its grey channel,
    not to Convert to Labels, which would keep the alpha as a third axis (tester14 #3)."""
    from PIL import Image as Picture

    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    picture = open_sample(viewer, "nuclei")
    _, truth = load_sample("nuclei")
    grey = (truth > 0).astype(np.uint8) * np.uint8(255)
    path = tmp_path / "nuclei_la.png"
    Picture.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA").save(path)
    (mask,) = viewer.open(path, plugin="napari")
    assert mask.data.shape == (*grey.shape, 2) and widget.image.value is picture
    assert f"'{mask.name}' looks like a mask" in notices["info"][-1]
    assert "Metrics dock takes it as the reference" in notices["info"][-1]
    assert "Convert to Labels" not in notices["info"][-1]
    assert CONVERT_TO_MASK in notices["info"][-1]  # which drops the channels


MONUSEG = DATASETS / "MoNuSeg"


@pytest.mark.skipif(not MONUSEG.is_dir(), reason="shared MoNuSeg not present")
def test_a_mask_selected_before_the_dock_opens_is_hinted_once(make_napari_viewer, notices):
    """A MoNuSeg H&E slide, then its mask PNG opened with napari's reader (the selected
    layer), then the Segment dock: the dock says how to use the mask as one, as it does for
    a mask opened while it is open (tester30 #3), and stays on the slide; selecting the mask
    again, or a dock closed with its X and reopened, does not say it again."""
    from qtpy.QtWidgets import QPushButton

    name = "TCGA-A7-A13E-01Z-00-DX1"
    viewer = make_napari_viewer()
    (slide,) = viewer.open(MONUSEG / "images" / f"{name}.tif", plugin=PLUGIN)
    (mask,) = viewer.open(MONUSEG / "masks" / f"{name}.png", plugin="napari")
    assert type(mask).__name__ == "Image" and viewer.layers.selection.active is mask
    dock, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    said = [text for text in notices["info"] if "looks like a mask" in text]
    assert len(said) == 1 and said[0].startswith(f"'{mask.name}' looks like a mask"), said
    assert widget.image.value is slide
    viewer.layers.selection.active = slide
    viewer.layers.selection.active = mask
    (close,) = dock.findChildren(QPushButton, "QTitleBarCloseButton")
    close.click()
    viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    assert [text for text in notices["info"] if "looks like a mask" in text] == said


def test_the_mask_hint_record_goes_with_the_layer(make_napari_viewer, notices):
    """The record of the masks the "looks like a mask" hint was shown for does not outlive
    them: a mask layer closed leaves it (it kept their ids for the life of the process); a
    mask still open is still hinted only once."""
    import gc
    import weakref

    import napari_tmunet._segment_widget as module

    def hinted() -> set:  # the ids of the layers recorded (ids were kept before, now layers)
        return {getattr(entry, "unique_id", entry) for entry in module._MASK_HINTED}

    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    picture = open_sample(viewer, "colonoscopy")
    (mask,) = viewer.open(SAMPLES / "colonoscopy_mask.png", plugin="napari")
    assert f"'{mask.name}' looks like a mask" in notices["info"][-1]
    closed = mask.unique_id
    assert closed in hinted()
    viewer.layers.selection.active = picture
    viewer.layers.selection.active = mask  # still open: not said again
    assert len(notices["info"]) == 1 and widget.image.value is picture
    alive = weakref.ref(mask)
    viewer.layers.remove(mask)
    del mask
    gc.collect()
    assert isinstance(module._MASK_HINTED, weakref.WeakSet)  # it keeps no layer alive
    if alive() is None:  # else held elsewhere (late in the full suite: not by the record)
        assert closed not in hinted()


def test_the_summary_follows_the_chosen_image(make_napari_viewer, qtbot):
    """After a run the summary speaks of its image: choosing another image clears it (and
    the status), choosing the segmented one again shows it, and closing the layers clears it
    (tester12C #9)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    colon = open_sample(viewer, "colonoscopy")
    nuclei = open_sample_named(viewer, "nuclei")
    widget.image.value = colon
    segment(qtbot, widget)
    line = widget.summary.value
    assert line.startswith(f"{colon.name}: ")
    widget.image.value = nuclei
    assert widget.summary.value == "" and widget.status.value == ""
    widget.image.value = colon
    assert widget.summary.value == line
    viewer.layers.clear()
    assert widget.summary.value == ""


def open_sample_named(viewer, modality):
    """Open a sample; its image layer (the one added first)."""
    before = len(viewer.layers)
    viewer.open_sample(PLUGIN, modality)
    return viewer.layers[before]


def test_the_model_box_names_the_fine_tuned_model(make_napari_viewer, qtbot, tmp_path):
    """A model Fine-tune makes active ("Use the fine-tuned model anyway") is shown in the
    Model box by its short name, not as "Checkpoint file...", and runs; a second one of the
    same name gets a number; Revert and the shipped model made active again show those (tester12C
    #11)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    widget.image.value = open_sample(viewer, "colonoscopy")
    best = tmp_path / "best.pt"
    shutil.copy(registry.find_model("TM-UNet colonoscopy").path, best)
    label = "fine-tuned on colonoscopy_image 2026-12-03 05:00"
    holder = active_model.for_viewer(viewer)
    holder.set("TM-UNet colonoscopy", "TM-UNet colonoscopy", "colonoscopy")
    holder.set(str(best), label, "colonoscopy", ("TM-UNet colonoscopy",))
    short = "colonoscopy · tuned 12-03 05:00"  # the box's name for it, in short
    assert widget.model.current_choice == short
    assert widget.checkpoint.native.isHidden()
    segment(qtbot, widget)
    assert widget.last_layer.metadata["model"] == str(best)
    assert label in widget.summary.value
    again = tmp_path / "again.pt"  # a second fine-tuning of the same minute: same name
    shutil.copy(best, again)
    holder.set(str(again), label, "colonoscopy", (str(best), "TM-UNet colonoscopy"))
    assert widget.model.current_choice == f"{short} (2)" and widget.model.value == str(again)
    holder.revert()
    assert widget.model.current_choice == short and widget.model.value == str(best)
    holder.set("TM-UNet colonoscopy", "TM-UNet colonoscopy", "colonoscopy")
    assert widget.model.current_choice == "TM-UNet colonoscopy"
