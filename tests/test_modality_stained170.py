"""Stained brightfield microscopy is not taken for colonoscopy (tester37 #1).

8 of DSB2018's 12 stained brightfield nuclei images (purple nuclei on a pale cream
background) were guessed "colonoscopy": the mean colour decided, and the background's faint
yellow put green above blue. The colonoscopy model then found nothing (Dice 0.00-0.06, the
nuclei model 0.32-0.61) and the dock advised a lower threshold. Now the hue of the strongly
coloured pixels decides (registry.colour_shares), and a "found nothing" warning names the
model first when it was trained on another kind of image than the image looks like.
Real DSB2018, CVC-ClinicDB and Kvasir-SEG images, on the thumbnails the dock judges.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _paths import DATASETS, EXTRA, require
from _shipped import dice
from test_modality import thumbnail
from test_segment_widget import wait_done

from napari_tmunet import registry
from napari_tmunet.data.images import read_mask

DSB = EXTRA / "DSB2018-stage1test"
# the tester's image: 524 x 348, 219 nuclei; the colonoscopy model found none in it
STAINED = DSB / "images" / "b83d1d77935b6cfd44105b54600ffc4b6bd82de57dec65571bcb117fa8398ba3.png"
# the frames with the most purple/pink pixels of all 550 CVC-ClinicDB frames (at most 0.6%)
CLINIC_PINKEST = ["577", "486", "574"]
# and of all 1000 Kvasir-SEG frames (at most 6%): pink mucosa, blue about as low as green
KVASIR_PINKEST = [
    "cju5x28nzm7t907558ocq4bt7",
    "cju5f26ebcuai0818xlwh6116",
    "cju2uwz9f5yf1085506cfamfx",
]


def stained_images() -> list:
    """DSB2018's stained brightfield images (its fluorescence ones are grey stored as RGB)."""
    found = []
    for path in sorted((DSB / "images").iterdir()):
        rgb = thumbnail(path)[..., :3]
        if not (rgb == rgb[..., :1]).all():
            found.append(path)
    return found


def test_every_stained_dsb2018_image_looks_like_nuclei():
    """All 12 (before: 8 were "colonoscopy"), chosen the nuclei model with a reason that
    fits them, not only H&E tissue."""
    require(DSB)
    paths = stained_images()
    assert len(paths) == 12
    guesses = {path.name[:12]: registry.guess_modality(thumbnail(path)) for path in paths}
    assert set(guesses.values()) == {"nuclei"}, guesses
    if registry.model_for_modality("nuclei") is None:
        return
    choice = registry.choose_model(thumbnail(STAINED))
    assert choice.entry.name == "TM-UNet nuclei" and choice.fits
    assert choice.why.startswith("chosen because this looks like H&E or similarly stained"), (
        choice.why
    )


@pytest.mark.parametrize(
    "path",
    [DATASETS / "CVC-ClinicDB" / "images" / f"{name}.png" for name in CLINIC_PINKEST]
    + [EXTRA / "Kvasir-SEG" / "images" / f"{name}.jpg" for name in KVASIR_PINKEST],
    ids=lambda path: path.stem[:10],
)
def test_the_pinkest_endoscopy_frames_stay_colonoscopy(path):
    """Also cropped to their middle, without the dark border that no slide has: the rule is
    the hue of the stain, not the frame."""
    require(path)
    image = thumbnail(path)
    assert registry.colour_shares(image)[1] < registry.STAINED_SHARE / 4
    assert registry.guess_modality(image) == "colonoscopy"
    h, w = image.shape[:2]
    assert registry.guess_modality(image[h // 4 : -h // 4, w // 4 : -w // 4]) == "colonoscopy"


@pytest.mark.gui
def test_segment_runs_the_nuclei_model_on_a_stained_image(make_napari_viewer, qtbot, monkeypatch):
    """The tester's image, opened with napari's reader: Segment (threaded) chooses the
    nuclei model and finds the nuclei (before: the colonoscopy model, 0 objects, "try a
    lower threshold"); the nuclei model's Dice on it was 0.40 by napari-tmunet-predict."""
    import napari_tmunet._segment_widget as module

    require(STAINED, "TM-UNet nuclei")
    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(STAINED, plugin="napari")
    _, widget = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    widget.image.value = image
    assert widget.model.value == "TM-UNet nuclei"
    assert "looks like H&E or similarly stained tissue or cells" in widget.model_reason.value
    widget.segment_button.native.click()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert widget.status.value == "done", widget.status.value
    reference, _ = read_mask(DSB / "masks" / STAINED.name)
    assert dice(widget.last_layer.data, reference) > 0.3
    assert not any("found nothing" in text for text in warnings), warnings


@pytest.mark.gui
def test_found_nothing_names_a_model_of_another_kind_first(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """A model made active for nuclei images whose checkpoint says it was trained on
    colonoscopy (here: the shipped colonoscopy checkpoint copied) finds nothing in the
    stained image: the warning names the model as the likely cause, with the shipped model
    to choose, before any threshold advice (before: "try a lower threshold" first)."""
    import napari_tmunet._segment_widget as module
    from napari_tmunet import active_model

    require(STAINED, "TM-UNet colonoscopy")
    copy = tmp_path / "best.pt"
    shutil.copy(registry.find_model("TM-UNet colonoscopy").path, copy)
    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(STAINED, plugin="napari")
    _, widget = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    active_model.for_viewer(viewer).set(str(copy), "tuned", "nuclei")
    widget.image.value = image
    assert widget.model.value == str(copy)
    widget.segment_button.native.click()
    wait_done(qtbot, widget, 300_000)  # the file is checked first, then run
    assert widget.worker is not None  # the threaded path
    assert widget.status.value == "done", widget.status.value
    assert not np.count_nonzero(widget.last_layer.data)
    (warning,) = [text for text in warnings if "found nothing" in text]
    assert warning == (
        f"tuned found nothing in {image.name!r}: the model is the likely cause: it was trained "
        "on colonoscopy images and this image looks like nuclei; choose TM-UNet nuclei for "
        "such images; else try a lower threshold."
    )
