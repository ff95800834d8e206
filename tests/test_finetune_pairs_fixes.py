"""The Fine-tune dock's pairs and its first steps, as a first-time user meets them (Xvfb,
CPU, real widgets on the threaded path): a closed layer empties its pair, Start refuses
incomplete or doubled pairs, one corrected image with a small lesion trains, new pairs
start with the edited images, and the bar starts at 0."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from _paths import EXTRA
from test_finetune_dock_fixes import open_dock, stand_in, start_small

import napari_tmunet
from napari_tmunet._finetune_pairs import CLOSED, NO_FIT
from napari_tmunet._sample_data import load_sample
from napari_tmunet._widget_common import shown_text
from napari_tmunet.data.images import read_image, read_mask

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

BUSI = EXTRA / "BUSI"
M12 = "malignant (12).png"
SAMPLES = Path(napari_tmunet.__file__).parent / "samples"


def nuclei_pairs(viewer, names=("a", "b")):
    """Two same-sized crops of the nuclei sample, each with its reference mask."""
    image, mask = load_sample("nuclei")
    layers = []
    for k, name in enumerate(names):
        crop = np.s_[:, 64 * k : 64 * k + 128]
        layers.append(viewer.add_image(np.ascontiguousarray(image[:128][crop]), name=name))
        layers.append(
            viewer.add_labels(np.ascontiguousarray(mask[:128][crop]), name=f"{name} mask")
        )
    return layers


def refuse_sayings(monkeypatch):
    import napari_tmunet._finetune_widget as finetune_module

    errors = []
    monkeypatch.setattr(finetune_module, "show_error", errors.append)
    return errors


def pairs_of(tune):
    return [(row.image.value, row.mask.value) for row in tune.rows]


def test_a_closed_layer_empties_its_pair_and_start_names_it(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """Two pairs; the user closes the second image, then its mask: the row says so (it
    never becomes a copy of the first pair), Start refuses naming pair 2; after the row is
    removed, Start trains on the first pair alone. Two rows of one image are refused."""
    import napari_tmunet._finetune_widget as finetune_module

    errors = refuse_sayings(monkeypatch)
    jobs = []
    monkeypatch.setattr(
        finetune_module,
        "run_finetune",
        lambda job, stop, cb: jobs.append(job) or stand_in(job, True),
    )
    viewer = make_napari_viewer()
    a, mask_a, b, mask_b = nuclei_pairs(viewer)
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    assert pairs_of(tune) == [(a, mask_a), (b, mask_b)]
    second = tune.rows[1]

    viewer.layers.remove(b)
    assert pairs_of(tune) == [(a, mask_a), (None, mask_b)]
    assert second.image.current_choice == CLOSED["image"]
    assert second.image.tooltip.startswith("'b' was closed")
    viewer.layers.remove(mask_b)
    assert pairs_of(tune) == [(a, mask_a), (None, None)]
    assert second.mask.current_choice == CLOSED["mask"]

    start_small(tune, tmp_path / "run")
    tune.start_button.native.click()
    said = "Pair 2: its image 'b' was closed: choose one, or remove the pair (✕)."
    assert not tune.running and tune.status.value == said and errors == [said]
    assert jobs == []

    second.image.value = a  # the same image twice: refused, in words
    assert second.image.current_choice == "a"
    tune.start_button.native.click()
    said = "Pairs 1 and 2 have the same image 'a': remove pair 2 (✕) or choose another image in it."
    assert not tune.running and tune.status.value == said and jobs == []

    second.remove_button.native.click()
    tune.start_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    assert [p.name for p in jobs[0].pairs] == ["a"], jobs[0].pairs


def test_a_closed_labels_layer_is_not_replaced_by_another_images(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """Closing a pair's Labels layer leaves its chooser empty even when another image's
    mask has the shape; Start says which pair lacks its Labels layer; the same Labels layer
    in two pairs is refused."""
    errors = refuse_sayings(monkeypatch)
    viewer = make_napari_viewer()
    a, mask_a, b, mask_b = nuclei_pairs(viewer)
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    viewer.layers.remove(mask_b)
    assert pairs_of(tune) == [(a, mask_a), (b, None)]
    start_small(tune, tmp_path / "run")
    tune.start_button.native.click()
    said = "Pair 2: its Labels layer 'b mask' was closed: choose one, or remove the pair (✕)."
    assert not tune.running and errors == [said]
    tune.rows[1].mask.value = mask_a
    tune.start_button.native.click()
    assert not tune.running and errors[-1] == (
        "Pairs 1 and 2 have the same Labels layer 'a mask': remove pair 2 (✕) or choose "
        "another Labels layer in it."
    )


def test_new_pairs_start_with_the_edited_images(make_napari_viewer, qtbot):
    """Two images opened first and left as they are, two segmented and corrected: Add
    pair offers the two corrected ones with their edited outputs; the empty entry's
    words show whole in a 1366 x 768 window."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    image, _ = load_sample("nuclei")
    crops = [np.ascontiguousarray(image[:96, 48 * k : 48 * k + 96]) for k in range(4)]
    first, second, edited_1, edited_2 = (
        viewer.add_image(crop, name=name, rgb=True)
        for crop, name in zip(crops, ("plain 1", "plain 2", "fixed 1", "fixed 2"), strict=True)
    )
    segment = open_dock(viewer, "Segment")
    outputs = []
    for layer in (edited_1, edited_2):
        segment.image.value = layer
        segment.segment_button.native.click()
        qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
        outputs.append(segment.last_layer)
        segment.last_layer.brush_size = 10
        segment.last_layer.paint((30, 30), 0, refresh=True)  # the user's corrections
        segment.last_layer.paint((60, 60), 1, refresh=True)
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    assert pairs_of(tune) == [(edited_1, outputs[0]), (edited_2, outputs[1])]
    assert first not in (r.image.value for r in tune.rows)

    tune.add_pair_button.native.click()  # then the others, in their order
    assert tune.rows[2].image.value is first and second in tune.rows[2].image.choices
    viewer.add_image(np.zeros((50, 70), np.uint8), name="other shape")
    tune.rows[2].image.value = viewer.layers["other shape"]
    qtbot.waitUntil(lambda: tune.native.isVisible())
    qtbot.wait(100)
    combo = tune.rows[2].mask.native
    assert tune.rows[2].mask.current_choice == NO_FIT
    assert shown_text(combo) == NO_FIT, (shown_text(combo), combo.width())
    viewer.layers.remove(viewer.layers["other shape"])
    viewer.layers.remove(outputs[0])
    qtbot.wait(100)
    for chooser, text in ((tune.rows[2].image, "image"), (tune.rows[0].mask, "mask")):
        assert chooser.current_choice == CLOSED[text]
        assert shown_text(chooser.native) == CLOSED[text], chooser.native.width()


def test_progress_starts_at_zero(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """After a finished run at 100%, the next Start shows 0% until its first step."""
    import napari_tmunet._finetune_widget as finetune_module

    release = threading.Event()

    def job(job, stop_event, callbacks):
        if job.run_dir.name == "second":
            release.wait(30)  # loading and scoring: no step yet
        callbacks["on_step"](3, 3, 0.5)
        return stand_in(job, True)

    monkeypatch.setattr(finetune_module, "run_finetune", job)
    viewer = make_napari_viewer()
    nuclei_pairs(viewer, names=("a",))
    tune = open_dock(viewer, "Fine-tune")
    start_small(tune, tmp_path / "first")
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    assert tune.progress_bar.value == tune.progress_bar.max == 3
    tune.run_folder.value = tmp_path / "second"
    tune.start_button.native.click()
    assert tune.running and tune.progress_bar.value == 0
    release.set()
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    assert tune.progress_bar.value == 3


@pytest.mark.skipif(not (BUSI / "images" / M12).is_file(), reason=f"no BUSI at {BUSI}")
def test_one_corrected_image_with_a_small_lesion_trains(make_napari_viewer, qtbot, tmp_path):
    """BUSI malignant (12): the lesion fits in one held-out strip. Segment (TM-UNet
    ultrasound), five brush dabs where the true lesion was missed, Fine-tune 2 steps:
    the strip held out is away from the edits (they train) and the training part keeps
    foreground; the run trains and the verdict counts the corrected pixels trained."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(read_image(BUSI / "images" / M12), name="busi m12", rgb=True)
    truth = read_mask(BUSI / "masks" / M12)[0] > 0
    segment = open_dock(viewer, "Segment")
    segment.image.value = layer
    segment.segment_button.native.click()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    labels = segment.last_layer
    labels.brush_size = 12
    missed = np.argwhere(truth & ~(np.asarray(labels.data) > 0))
    rng = np.random.default_rng(0)
    for y, x in missed[rng.integers(len(missed), size=5)]:
        labels.paint((int(y), int(x)), 1, refresh=True)
    tune = open_dock(viewer, "Fine-tune")
    assert pairs_of(tune) == [(layer, labels)]
    run_dir = tmp_path / "run"
    start_small(tune, run_dir)
    tune.start_button.native.click()
    assert tune.worker is not None
    qtbot.waitUntil(lambda: not tune.running, timeout=600_000)
    assert tune.error == "" and tune.result["trained"] == 2, tune.status.value

    data = run_dir / "data"
    split = json.loads((data / "split.json").read_text())
    masks = {p.stem: read_mask(p)[0] > 0 for p in (data / "masks").iterdir()}
    assert any(masks[name].any() for name in split["train"])
    edited = read_mask(next((data / "whole-image").glob("*-edited.png")))[0] > 0
    region = json.loads((run_dir / "finetune.json").read_text())["held_out_region"]
    cut = [slice(None), slice(None)]
    cut[region["axis"]] = slice(region["start"], region["stop"])
    held, total = int(edited[tuple(cut)].sum()), int(edited.sum())
    assert held == 0 == tune.result["edits"]["pixels"]
    # the headline says the verdict, the details box how many corrections trained (fix-156)
    assert f"{total} of your {total} corrected pixels trained (0 in the held-out strip - " in (
        tune.details.value
    )


def test_an_empty_mask_and_a_reference_hold_out_a_strip(make_napari_viewer, qtbot, tmp_path):
    """Two pairs, the first mask empty, the second (a reference mask) the one to hold out:
    held out whole it would leave no foreground to train on, so a strip of it is held out
    and the rest of it trains with the empty mask (before: the run failed)."""
    viewer = make_napari_viewer()
    a, mask_a, _, _ = nuclei_pairs(viewer)
    mask_a.data = np.zeros_like(mask_a.data)
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    run_dir = tmp_path / "run"
    start_small(tune, run_dir)
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    assert tune.error == "" and tune.result["trained"] > 0, tune.status.value
    split = json.loads((run_dir / "data" / "split.json").read_text())
    assert split["valid"] == ["02-b-valid"] and split["train"][0] == "01-a"
    assert all(name.startswith("02-b-train") for name in split["train"][1:])


def test_a_mask_picture_is_no_pair_image(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """The nuclei sample, its mask PNG opened as a picture (File > Open: an Image layer) and
    its mask as Labels: the pair Image boxes do not offer the mask picture (Segment all
    skips it as a mask) and a new row is not pre-filled with it; an image whose data
    becomes a mask is refused at Start, by name."""
    from napari_tmunet._image_layers import is_mask_image

    errors = refuse_sayings(monkeypatch)
    viewer = make_napari_viewer()
    image, labels = load_sample("nuclei")
    picture = viewer.add_image(image, name="nuclei", rgb=True)
    [mask_picture] = viewer.open(str(SAMPLES / "nuclei_mask.png"), plugin="napari")
    assert type(mask_picture).__name__ == "Image" and is_mask_image(mask_picture)
    reference = viewer.add_labels(labels, name="nuclei mask")
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    assert [row.image.value for row in tune.rows] == [picture, picture]
    for row in tune.rows:
        offered = [layer for layer in row.image.choices if layer is not None]
        assert len(offered) == 1 and offered[0] is picture, offered
    assert tune.rows[0].mask.value is reference
    assert not tune.modality_note.visible  # no "(ultrasound)" for a mask picture

    tune.rows[1].remove_button.native.click()
    picture.data = np.repeat(read_image(SAMPLES / "nuclei_mask.png")[..., None], 3, -1)
    start_small(tune, tmp_path / "run")
    tune.start_button.native.click()
    said = (
        "Pair 1: image 'nuclei' looks like a mask, not a picture: choose the image it belongs to."
    )
    assert not tune.running and errors == [said]
