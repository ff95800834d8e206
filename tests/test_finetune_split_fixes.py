"""Fine-tune on several corrected tiles, as a pathologist does it (tester24 D4, D6): the
user's corrections are trained on, not all held out; the model is named after what it
trained on; a pair left out (an unedited Segment output) is said before Start and in the
final status. Real docks on the threaded path, the shipped nuclei model on the CPU, the
bundled nuclei sample and MoNuSeg crops; 1-step fine-tunes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _paths import DATASETS
from test_finetune_dock_fixes import open_dock, start_small

from napari_tmunet import registry
from napari_tmunet._finetune_pairs import NOT_CORRECTED, UNEDITED
from napari_tmunet._sample_data import load_sample
from napari_tmunet.data.images import read_image, read_mask, write_image, write_mask

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

MONUSEG = DATASETS / "MoNuSeg"
TILES = ["TCGA-69-7764-01A-01-TS1", "TCGA-2Z-A9J9-01A-01-TS1", "TCGA-44-2665-01B-06-BS6"]
LEFT_OUT = "not trained on (not edited: the model's own output): layers 'crop69' + 'crop69 labels'"


@pytest.fixture(autouse=True)
def _nuclei_model():
    if registry.find_model("TM-UNet nuclei") is None:
        pytest.skip("the shipped nuclei model is needed")


def segment(qtbot, dock, layer):
    """Segment ``layer`` with the dock (its worker); its output layer."""
    dock.image.value = layer
    dock.segment()
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    return dock.last_layer


def erase_objects(labels, count: int) -> int:
    """Erase ``count`` objects of a Segment output with the bucket (label 0), spread
    across its columns; returns the pixels changed."""
    from scipy import ndimage as ndi

    before = np.array(labels.data)
    ids = [i for i in np.unique(before) if i]
    centres = ndi.center_of_mass(before > 0, before, ids)
    found = sorted((c[1], i) for c, i in zip(centres, ids, strict=True))
    assert len(found) >= count, (len(found), count)
    for k in np.linspace(0, len(found) - 1, count).round().astype(int):
        ys, xs = np.nonzero(before == found[k][1])
        labels.fill((int(ys[0]), int(xs[0])), 0)
    return int((np.asarray(labels.data) != before).sum())


def erase_until(labels, pixels: int) -> int:
    """Erase objects of a Segment output with the bucket (label 0), the largest first,
    until at least ``pixels`` changed; returns the pixels changed."""
    before = np.array(labels.data)
    ids, sizes = np.unique(before[before > 0], return_counts=True)
    for i in ids[np.argsort(-sizes, kind="stable")]:
        if (np.asarray(labels.data) != before).sum() >= pixels:
            break
        ys, xs = np.nonzero(before == i)
        labels.fill((int(ys[0]), int(xs[0])), 0)
    changed = int((np.asarray(labels.data) != before).sum())
    assert changed >= pixels, (changed, pixels)
    return changed


def shown(widget) -> bool:
    """Whether a widget of the dock is shown (the viewer's window itself is not)."""
    return not widget.native.isHidden()


def run_to_end(qtbot, tune, run_dir) -> dict:
    """Start one step on the CPU, wait for the end; finetune.json."""
    start_small(tune, run_dir, steps=1)
    tune.start_button.native.click()
    # with a Folder, it is read again first (a worker too), then the run starts
    qtbot.waitUntil(lambda: tune.worker is not None or not tune.running, timeout=60_000)
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=600_000)
    assert tune.error == "", tune.error
    return json.loads((run_dir / "finetune.json").read_text())


def monuseg_folder(root: Path, crop) -> Path:
    """A dataset folder of two MoNuSeg tiles, cut to ``crop``, with their masks."""
    for name in TILES[1:]:
        image = read_image(MONUSEG / "images" / f"{name}.tif")[crop]
        write_image(root / "images" / f"{name}.tif", image)
        mask = read_mask(MONUSEG / "masks" / f"{name}.png")[0][crop] > 0
        write_mask(root / "masks" / f"{name}.png", mask)
    return root


@pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"no MoNuSeg at {MONUSEG}")
def test_one_corrected_image_and_a_folder_train_on_the_corrections(
    make_napari_viewer, qtbot, tmp_path
):
    """The nuclei sample segmented and corrected, a MoNuSeg crop segmented and left as it
    is, and a dataset Folder of two other tiles (tester24 s07, tester27 defect 2). Before
    Start the crop's row says it will not be trained on. A Folder tile (a reference mask,
    no corrections) is held out whole and the sample, with every correction, trains; the
    model is named after the sample and the Folder; the final status ends with the pair
    left out."""
    viewer = make_napari_viewer()
    seg = open_dock(viewer, "Segment")
    image, _ = load_sample("nuclei")
    sample = viewer.add_image(image, name="nuclei sample")
    crop69 = viewer.add_image(
        read_image(MONUSEG / "images" / f"{TILES[0]}.tif")[:256, :256], name="crop69"
    )
    sample_labels = segment(qtbot, seg, sample)
    segment(qtbot, seg, crop69)
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    first, second = tune.rows
    assert (first.image.value, second.image.value) == (sample, crop69)
    assert second.mask.value.name == "crop69 labels"
    # neither is edited yet: both say so (Start would refuse them alone, tester37 #4)
    assert first.note.value == second.note.value == NOT_CORRECTED
    assert shown(first.note) and shown(second.note)

    edited = erase_objects(sample_labels, 8)
    assert edited > 0
    assert shown(second.note) and second.note.value == UNEDITED
    assert not shown(first.note)
    folder = monuseg_folder(tmp_path / "tiles", np.s_[:256, :256])
    tune.dataset_folder.value = folder

    run = tmp_path / "run"
    plan = run_to_end(qtbot, tune, run)

    # the crop was left out; the sample and a folder tile train, the last tile is held out
    split = plan["split"]
    assert plan["left_out"] == LEFT_OUT
    assert split["valid"] == [f"folder-{TILES[2]}"] and plan["held_out_region"] is None
    assert split["train"] == ["01-nuclei_sample", f"folder-{TILES[1]}"]
    assert plan["edits"]["all_pixels"] == edited  # all of them train
    trained = read_mask(next((run / "data" / "masks").glob("01-nuclei_sample.*")))[0]
    np.testing.assert_array_equal(trained > 0, np.asarray(sample_labels.data) > 0)

    # named after what it trained on, in finetune.json, the result and the active model
    assert plan["trained_on"] == ["nuclei sample", "tiles"]
    assert plan["name"].startswith("fine-tuned on nuclei sample + tiles ")
    assert tune.result["name"] == plan["name"]
    details = tune.details.value
    if shown(tune.use_anyway_button):
        tune.use_anyway_button.native.click()
    assert tune.active.current.label == plan["name"]
    assert f"active: {plan['name']}" in tune.status.value
    # the comparison's last line names the pair left out, after either verdict
    for text in (details, tune.details.value):
        assert text.endswith(f"\n{LEFT_OUT}"), text
    assert f"your {edited} corrected pixels all train" in details


def quadrants(viewer, names):
    """The first 128 x 128 quadrants of the nuclei sample as image layers ``names``."""
    image, _ = load_sample("nuclei")
    cuts = [np.s_[:128, :128], np.s_[:128, 128:], np.s_[128:, :128]][: len(names)]
    return [
        viewer.add_image(np.ascontiguousarray(image[c]), name=n)
        for n, c in zip(names, cuts, strict=True)
    ]


def test_two_corrected_quadrants_hold_out_the_less_corrected(make_napari_viewer, qtbot, tmp_path):
    """Two corrected quadrants, one with most of the corrections (tester24 s02): the one
    with fewer is held out whole and the most corrected trains whole; the model is named
    after it."""
    viewer = make_napari_viewer()
    seg = open_dock(viewer, "Segment")
    a, b = quadrants(viewer, ["a", "b"])
    labels_a, labels_b = segment(qtbot, seg, a), segment(qtbot, seg, b)
    many, few = erase_until(labels_a, 1500), erase_until(labels_b, 300)
    assert many > few
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    assert [r.image.value for r in tune.rows] == [a, b]
    assert not any(shown(r.note) for r in tune.rows)  # both edited: both train

    run = tmp_path / "run"
    plan = run_to_end(qtbot, tune, run)
    assert plan["split"]["valid"] == ["02-b"] and plan["split"]["train"] == ["01-a"]
    assert plan["held_out"] == "whole image(s): layers 'b' + 'b labels'"
    assert plan["edits"]["pixels"] == few and plan["edits"]["all_pixels"] == many + few
    assert plan["trained_on"] == ["a"] and plan["name"].startswith("fine-tuned on a ")
    assert tune.result["name"] == plan["name"] and "\n" not in tune.details.value  # none left out


def test_an_image_held_out_whole_does_not_name_the_model(make_napari_viewer, qtbot, tmp_path):
    """Three corrected quadrants, the last two with the fewest corrections: the last is
    held out whole (the others' corrections train), and the model is named after the
    two it trained on, not after the pairs' images."""
    viewer = make_napari_viewer()
    seg = open_dock(viewer, "Segment")
    layers = quadrants(viewer, ["a", "b", "c"])
    outputs = [segment(qtbot, seg, layer) for layer in layers]
    edits = [erase_until(out, n) for out, n in zip(outputs, (1200, 800, 800), strict=True)]
    assert edits[2] == min(edits), edits  # the rule's case
    tune = open_dock(viewer, "Fine-tune")
    tune.add_pair_button.native.click()
    tune.add_pair_button.native.click()
    assert [r.image.value for r in tune.rows] == layers

    plan = run_to_end(qtbot, tune, tmp_path / "run")
    assert plan["split"]["valid"] == ["03-c"] and plan["split"]["train"] == ["01-a", "02-b"]
    assert plan["held_out"] == "whole image(s): layers 'c' + 'c labels'"
    assert plan["held_out_region"] is None
    assert plan["edits"]["pixels"] == edits[2] and plan["edits"]["all_pixels"] == sum(edits)
    assert plan["trained_on"] == ["a", "b"] and plan["name"].startswith("fine-tuned on a + b ")
    assert tune.result["name"] == plan["name"]
    if shown(tune.use_anyway_button):
        tune.use_anyway_button.native.click()
    assert tune.active.current.label == plan["name"]
