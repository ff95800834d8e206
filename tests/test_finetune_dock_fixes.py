"""The Fine-tune dock: Stop during setup, the run folder's state, the verdict where the
user's corrections are, error texts and its layout (CPU, Xvfb, the bundled samples)."""

from __future__ import annotations

import time
from unittest.mock import ANY

import numpy as np
import pytest
from _paths import DATASETS
from _view import column_keys, open_dock

from napari_tmunet._sample_data import load_sample
from napari_tmunet.training.finetune import (
    EDIT_MARGIN,
    NOTHING_FOUND_DICE,
    OWN_OUTPUT_DICE,
    compare_models,
    edit_zone_scores,
    edits_caveat,
    run_folder_state,
)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

PLUGIN = "napari-tmunet"


def add_nuclei(viewer, repeat: int = 1, crop: int = 256):
    """The bundled nuclei sample (tiled ``repeat`` x ``repeat``, cut to ``crop``) and its
    reference mask as the corrected Labels layer."""
    image, mask = load_sample("nuclei")
    image = np.ascontiguousarray(np.tile(image, (repeat, repeat, 1))[:crop, :crop])
    mask = np.ascontiguousarray(np.tile(mask, (repeat, repeat))[:crop, :crop])
    layer = viewer.add_image(image, name="nuclei", rgb=True)
    return layer, viewer.add_labels(mask, name="nuclei corrected")


def start_small(tune, run_dir, steps=2):
    tune.steps.value = steps
    tune.batch_size.value = 1
    tune.learning_rate.value = 1e-3
    tune.device.value = "cpu"
    tune.run_folder.value = run_dir


def test_stop_while_scoring_the_start_model_ends_the_run_at_once(
    make_napari_viewer, qtbot, tmp_path
):
    """Threaded path, shipped nuclei model: Stop while the starting model is scored ends
    the job between two forward passes: no training (no train/ folder), no second
    scoring; the folder keeps the data and plan ("not started"), Resume stays off and a
    second Start in that folder goes to a folder beside it."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer, repeat=4, crop=1024)  # scoring it takes many forward passes
    run_dir = tmp_path / "typed run"
    start_small(tune, run_dir)
    phases = []
    tune._relay.phase.connect(phases.append)
    tune.start_button.native.click()
    assert tune.worker is not None
    qtbot.waitUntil(lambda: any(p.startswith("scoring") for p in phases), timeout=120_000)
    tune.stop_button.native.click()
    assert tune.status.value == "stopping..."
    asked = time.monotonic()
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    waited = time.monotonic() - asked
    assert tune.error == "", tune.error
    assert waited < 20, waited  # one forward pass, not the rest of the scoring and a fit
    assert not any(p == "training..." or "fine-tuned" in p for p in phases), phases
    assert not (run_dir / "train").exists()
    assert tune.result["trained"] == 0 and tune.result["new"] is None
    assert (run_dir / "data" / "masks").is_dir() and run_folder_state(run_dir) == "not started"
    assert tune.status.value == "stopped before any training step; TM-UNet nuclei stays active"
    assert not tune.resume_button.enabled and tune.active.current is None

    tune.stop_button.native.click()  # nothing running: no effect
    tune.start_button.native.click()  # the typed folder holds a run: one beside it
    assert tune.running and tune.run_folder.value == tmp_path / "typed run-2"
    tune.stop_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    assert tune.result["trained"] == 0 and run_folder_state(run_dir) == "not started"


def stand_in(job, finished: bool):
    """A stand-in ``run_finetune``: one step; the engine's files of a finished (summary
    .json) or stopped (last.pt) run; both models scored alike (the fine-tuned one is used)."""
    train = job.run_dir / "train"
    train.mkdir(parents=True)
    (job.run_dir / "finetune.json").write_text("{}")
    (train / ("summary.json" if finished else "last.pt")).write_text("{}")
    return {
        "best_checkpoint": str(train / "best.pt"),
        "start_model": job.start_model,
        "old_label": job.start_label,
        "stopped": not finished,
        "step": 1,
        "total_steps": 1 if finished else 5,
        "trained": 1,
        "old": {"dice": 0.5, "hd": 1.0},
        "new": {"dice": 0.5, "hd": 1.0},
        "edits": {},
        "rows": [],
    }


def test_a_typed_folder_after_a_finished_or_stopped_run(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """Threaded path with a stand-in job. A finished run in a folder the user typed: a
    second Start goes to NAME-2 (said in a message), never refused with a disabled
    Resume. A stopped run there: Start is refused with "Resume it", and Resume is on."""
    import napari_tmunet._finetune_widget as finetune_module

    infos, errors = [], []
    monkeypatch.setattr(finetune_module, "show_info", infos.append)
    monkeypatch.setattr(finetune_module, "show_error", errors.append)
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer, crop=64)
    picked = tmp_path / "ftrun10"
    tune.run_folder.value = picked
    finished = [True]
    monkeypatch.setattr(
        finetune_module, "run_finetune", lambda job, stop, callbacks: stand_in(job, finished[0])
    )
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    assert run_folder_state(picked) == "finished" and not tune.resume_button.enabled

    finished[0] = False
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    beside = tmp_path / "ftrun10-2"
    assert errors == [] and tune.run_folder.value == beside
    assert infos == [f"{picked} holds a finished run: this run is saved in {beside}."]
    assert run_folder_state(beside) == "resumable" and tune.resume_button.enabled

    tune.start_button.native.click()
    assert not tune.running and tune.run_folder.value == beside
    assert errors == [
        f"The run folder {beside} holds a stopped run: Resume it, or choose another folder."
    ]
    assert tune.resume_button.enabled  # the action the text names is there


def scores(accuracy, dice, pixels=900, zone=2000, edited_right=0):
    right = None if accuracy is None else round(accuracy * zone)
    return {"dice": dice, "hd": 2.0, "edited_pixels": pixels, "zone_pixels": zone,
            "zone_accuracy": accuracy, "edited_correct": edited_right,
            "zone_correct": right}  # fmt: skip


ENOUGH = {"known": True, "pixels": 900, "objects": 5, "enough": True}


def test_the_verdict_rests_on_the_corrections_with_a_guard_on_the_rest():
    """The rule of compare_models, and the zone scores it rests on."""
    # a prediction that misses the user's painted square, and one that has it
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    edited = mask.copy()  # the user painted the whole square
    old = edit_zone_scores([("a", np.zeros_like(mask), mask)], [edited])
    new = edit_zone_scores([("a", mask.copy(), mask)], [edited])
    side = 10 + 2 * EDIT_MARGIN  # the square and 3 px around it, corners cut (1 + 2 + 3 px)
    zone = side**2 - 4 * 6
    assert old["edited_pixels"] == 100 and old["zone_pixels"] == zone
    assert old["zone_accuracy"] == pytest.approx((zone - 100) / zone) and new["zone_accuracy"] == 1
    assert old["edited_correct"] == 0 and new["edited_correct"] == 100  # by construction
    assert old["zone_correct"] == zone - 100 and new["zone_correct"] == zone

    # the corrections are learnt, the rest (mostly the old model's own output) kept: used
    kept = {"old": scores(0.4, 0.96), "new": scores(0.8, 0.96), "edits": ENOUGH}
    assert compare_models(kept) == {"use_new": True, "compared": ANY, "why": "", "short": ""}
    # learnt, but the held-out Dice falls, however little: the user decides (tester33 #8)
    new = scores(0.8, 0.93, edited_right=820)
    result = {"old": scores(0.4, 0.96), "new": new, "edits": ENOUGH}
    verdict = compare_models(result)
    assert verdict["use_new"] is None
    assert verdict["compared"] == (
        "of your 900 corrected pixels in the held-out part: start model 0, fine-tuned 820 "
        "right (in 5 regions); with the 3 px around them (2000 px): 800 -> 1600 right; "
        "held-out Dice 0.9600 -> 0.9300"
    )
    assert verdict["why"] == (
        "the fine-tuned model learnt your corrections, but its held-out Dice fell "
        "(0.9600 -> 0.9300): try it on an image before you choose"
    )
    tiny = compare_models({**result, "new": scores(0.8, 0.95996)})  # 0.9600 as shown
    assert tiny["use_new"] is True
    # how many of all the corrections were kept back for scoring, not trained on
    strip = {**result, "edits": {**ENOUGH, "all_pixels": 1500}, "held_out": "columns 0-9 of 40"}
    assert compare_models(strip)["compared"].startswith(
        "900 of your 1500 corrected pixels are in the held-out strip, used to score, not to "
        "train; of these 900: start model 0, fine-tuned 820 right (in 5 regions); "
    )
    images = {**strip, "held_out": "whole image(s): 08-b"}
    assert "are in the held-out images, used" in compare_models(images)["compared"]
    # too few edits: the caveat is next to the edited pixels, not after the Dice
    few = {"known": True, "pixels": 274, "objects": 2, "enough": False, "all_pixels": 493}
    few = compare_models({**strip, "edits": few})
    assert few["use_new"] is None and few["compared"].endswith("held-out Dice 0.9600 -> 0.9300")
    assert (
        "fine-tuned 820 right (in 2 regions - fewer than 300 edited pixels and fewer than 3 "
        "edited regions: too few for a meaningful comparison); with the 3 px" in few["compared"]
    )
    # learnt, but the rest changed more: the user decides; ruined: not used
    changed = compare_models({**result, "new": scores(0.8, 0.89)})
    assert changed["use_new"] is None and "held-out Dice fell" in changed["why"]
    ruined = compare_models({**result, "new": scores(0.8, 0.70)})
    assert ruined["use_new"] is False and "ruins the rest" in ruined["why"]
    worse = compare_models({**result, "new": scores(0.3, 0.96)})
    assert worse["use_new"] is False and "fewer of your corrected pixels and" in worse["why"]
    # 82.6% -> 83.0% of 4500 px (a real run, CPM-15 image02): within noise, you choose
    alike = {"old": scores(0.826, 0.96, 778, 4500), "new": scores(0.830, 0.94, 778, 4500)}
    alike = compare_models({**alike, "edits": ENOUGH})
    assert alike["use_new"] is None and alike["why"] == (
        "the two models get about as many of your corrected pixels and the 3 px around them right"
    )
    none = compare_models({**result, "old": scores(None, 0.9, 0), "new": scores(None, 0.9, 0)})
    assert none["use_new"] is None and "none of your edits" in none["why"]
    # reference masks (edits unknown): held-out Dice as before
    plain = {"old": {"dice": 0.8, "hd": 1.0}, "new": {"dice": 0.7, "hd": 1.0}, "edits": {}}
    assert compare_models(plain)["use_new"] is False


def test_a_tie_where_neither_model_finds_anything_decides_nothing():
    """Reference masks: both held-out Dice near 0 (a held-out image the starting model
    cannot segment, e.g. of another modality) is no evidence: the user chooses. A
    fine-tuned model that finds the objects there is still used; one that scores lower is
    not (tester20 #3)."""
    reference = {"edits": {"known": False}, "held_out_foreground": 25781}
    zero = {"dice": 0.0, "hd": 337.8}
    tie = compare_models({**reference, "old": zero, "new": {"dice": 0.0, "hd": 309.0}})
    assert tie["use_new"] is None
    assert tie["compared"].startswith("held-out Dice 0.0000 -> 0.0000 (edits unknown")
    assert tie["why"].startswith("neither model finds the objects in the held-out part")
    below = {"dice": NOTHING_FOUND_DICE / 2, "hd": 200.0}
    assert compare_models({**reference, "old": zero, "new": below})["use_new"] is None
    found = compare_models({**reference, "old": zero, "new": {"dice": 0.6, "hd": 20.0}})
    assert found["use_new"] is True and found["why"] == ""
    same = {"dice": 0.8, "hd": 9.0}
    assert compare_models({**reference, "old": same, "new": same})["use_new"] is True
    lower = compare_models({**reference, "old": same, "new": {"dice": 0.03, "hd": 90.0}})
    assert lower["use_new"] is False


def test_pairs_of_other_modalities_are_named_and_a_tie_at_zero_activates_nothing(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """Threaded path, the three bundled samples (File > Open Sample) and their masks as
    pre-filled pairs, from the colonoscopy model the colonoscopy image gets: before Start
    the dock names the nuclei and ultrasound images and the model (a warning, not a
    refusal). The held-out ultrasound image, which neither model segments (0.0000 ->
    0.0000), makes nothing active: the user chooses (tester20 #3)."""
    import napari_tmunet._finetune_widget as module

    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    for sample in ("colonoscopy", "nuclei", "ultrasound"):
        viewer.open_sample(PLUGIN, sample)
    tune = open_dock(viewer, "Fine-tune")
    assert tune.start_model()[0] == "TM-UNet colonoscopy"
    assert tune.modality_note.value == "" and tune.modality_note.native.isHidden()  # one pair
    tune.add_pair()
    tune.add_pair()
    nuclei, ultrasound = (row.image.value.name for row in tune.rows[1:])
    assert tune.rows[2].mask.value.name == f"{ultrasound} mask"
    note = (
        f"Images {nuclei!r} (nuclei) and {ultrasound!r} (ultrasound) do not look like the "
        "colonoscopy images TM-UNet colonoscopy is for: fine-tuning it on them may make it "
        "worse on colonoscopy images; remove those pairs unless that is what you want."
    )
    assert not tune.modality_note.native.isHidden() and tune.modality_note.value == note
    start_small(tune, tmp_path / "run", steps=1)
    tune.learning_rate.value = 1e-4
    tune.start_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    result = tune.result
    assert tune.error == "" and result["trained"] == 1, tune.status.value
    assert warnings[0] == f"Fine-tuning: {note}"
    assert "UDIAT" in result["held_out"] and result["held_out_foreground"] > 1000
    assert max(result["old"]["dice"], result["new"]["dice"]) < NOTHING_FOUND_DICE
    assert tune.active.current is None and not tune.use_anyway_button.native.isHidden()
    assert "held-out Dice 0.0000\u00a0\u2192\u00a00.0000" in tune.details.value
    assert "neither model finds the objects in the held-out part" in tune.details.value
    assert "(neither model finds the held-out objects)" in tune.status.value  # the headline
    assert tune.status.value.endswith("TM-UNet colonoscopy stays active")
    tune.use_anyway_button.native.click()  # the user may still want it
    assert tune.active.current.model == result["best_checkpoint"]


@pytest.mark.skipif(not (DATASETS / "UDIAT").is_dir(), reason="shared UDIAT not present")
def test_a_dataset_folder_of_another_modality_is_named(make_napari_viewer, qtbot, tmp_path):
    """The colonoscopy sample and its mask as the pair, the colonoscopy model: choosing
    UDIAT (grey ultrasound scans) as the dataset Folder names that folder and the model
    in the dock before Start, once the Folder is read (in a worker thread); CVC-ClinicDB
    (colonoscopy) and a folder that is not a dataset say nothing."""

    def choose(folder):
        tune.dataset_folder.value = folder
        qtbot.waitUntil(lambda: not tune.reading_folder, timeout=60_000)

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "colonoscopy")
    tune = open_dock(viewer, "Fine-tune")
    assert tune.start_model()[0] == "TM-UNet colonoscopy"
    choose(DATASETS / "UDIAT")
    assert not tune.modality_note.native.isHidden()
    assert tune.modality_note.value == (
        "The images of folder 'UDIAT' (ultrasound) do not look like the colonoscopy images "
        "TM-UNet colonoscopy is for: fine-tuning it on them may make it worse on "
        "colonoscopy images; clear Folder unless that is what you want."
    )
    if (DATASETS / "CVC-ClinicDB").is_dir():
        choose(DATASETS / "CVC-ClinicDB")
        assert tune.modality_note.value == "" and tune.modality_note.native.isHidden()
    choose(tmp_path)  # no images/ and masks/: the run will say so
    assert tune.modality_note.value == "" and tune.modality_note.native.isHidden()


def test_a_run_checkpoint_chosen_by_file_is_named_once_as_layers_change(
    make_napari_viewer, monkeypatch, tmp_path
):
    """Two Fine-tune runs' checkpoints (copies of the shipped nuclei model, each run named
    in its finetune.json) chosen by file: the dock names the chosen one in its modality
    note by its run's name as layers are opened and closed, and reads that name once for
    each file chosen, not again on each layer event (each one redraws the note)."""
    import json
    import shutil

    from napari_tmunet import active_model, registry

    checkpoints = {}
    for run in ("first", "second"):
        train = tmp_path / run / "train"
        train.mkdir(parents=True)
        shutil.copy(registry.find_model("TM-UNet nuclei").path, train / "best.pt")
        name = f"fine-tuned on {run} 2026-12-03 19:00:09"
        (train.parent / "finetune.json").write_text(json.dumps({"name": name}))
        checkpoints[str(train / "best.pt")] = name
    reads = []
    real_label = active_model.model_label

    def counted_label(path):
        reads.append(str(path))
        return real_label(path)

    monkeypatch.setattr(active_model, "model_label", counted_label)
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    viewer.open_sample(PLUGIN, "ultrasound")  # the pair's image
    image = tune.rows[0].image.value.name
    colon, _ = load_sample("colonoscopy")
    tune.model.value = "Checkpoint file..."
    for number, (path, name) in enumerate(checkpoints.items(), 1):
        tune.checkpoint.value = path
        for _ in range(2):  # layer events, each redrawing the note
            viewer.layers.remove(viewer.add_image(colon, name="colon"))
        assert tune.start_model() == (path, name)
        assert tune.modality_note.value.startswith(
            f"Image {image!r} (ultrasound) does not look like the nuclei images {name} is for"
        )
        assert [read for read in reads if read in checkpoints] == list(checkpoints)[:number]


def fine_tune(tune, qtbot, run_dir, steps):
    """Start a small CPU run from the dock's Start button (the threaded path), wait for
    it and return its result, checking that every step trained."""
    start_small(tune, run_dir, steps=steps)
    tune.start_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "" and tune.result["trained"] == steps, tune.status.value
    return tune.result


def segment_correct_and_reopen(viewer, qtbot, path, write):
    """The bundled nuclei tile (256 x 256) segmented on the threaded path, its largest
    nucleus erased, the labels written to ``path`` by ``write(layer, path)`` and reopened
    with the TM-UNet reader; returns the image layer, the reopened Labels layer and the
    erased pixels (bool)."""
    segment = open_dock(viewer, "Segment")
    image, _ = add_nuclei(viewer)
    viewer.layers.remove("nuclei corrected")
    segment.image.value = image
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    (output,) = [layer for layer in viewer.layers if layer.name == "nuclei labels"]
    labels = np.asarray(output.data)
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    erased = labels == ids[np.argmax(sizes)]
    output.data = np.where(erased, 0, labels)
    write(output, path)
    viewer.layers.remove(output)
    (reopened,) = viewer.open(str(path), plugin=PLUGIN)
    assert np.array_equal(reopened.data > 0, (labels > 0) & ~erased)
    return image, reopened, erased


def test_a_reopened_mask_that_lost_its_edits_leaves_the_choice_to_the_user(
    make_napari_viewer, qtbot, tmp_path
):
    """Threaded path, the bundled nuclei tile: Segment, one nucleus erased, the labels
    saved with napari's own labels writer (the Save dialog's preselected type) and
    reopened (tester22 D2). That file does not keep which pixels were edited, so the
    reopened mask is a reference on which the starting model scores about as on its own
    output: a lower held-out Dice of the fine-tuned model is no verdict against it; the
    user chooses, told why."""
    from napari_builtins.io._write import napari_write_labels

    viewer = make_napari_viewer()
    path = tmp_path / "corrected.tif"
    image, reopened, _ = segment_correct_and_reopen(
        viewer, qtbot, path, lambda layer, p: napari_write_labels(str(p), layer.data, {})
    )
    tune = open_dock(viewer, "Fine-tune")
    tune.rows[0].image.value, tune.rows[0].mask.value = image, reopened
    result = fine_tune(tune, qtbot, tmp_path / "run", steps=2)
    assert not result["edits"]["known"]
    old, new = result["old"]["dice"], result["new"]["dice"]
    assert old >= OWN_OUTPUT_DICE and new < old, (old, new)
    assert f"the starting model scores {old:.4f} on the held-out mask" in tune.details.value
    assert "so you choose" in tune.details.value
    assert "(the held-out mask looks like the starting model's own output)" in tune.status.value
    assert tune.active.current is None and not tune.use_anyway_button.native.isHidden()


def test_a_segment_result_saved_as_tiff_keeps_the_users_edits(make_napari_viewer, qtbot, tmp_path):
    """Threaded path, the bundled nuclei tile: Segment, one nucleus erased, the labels
    saved with the TM-UNet writer (.tif) and reopened with its reader (tester22 D2): the
    file kept the model and its own foreground, so Fine-tune starts from the model that
    made the mask and counts exactly the erased pixels as the user's edits."""
    viewer = make_napari_viewer()
    path = tmp_path / "corrected.tif"
    image, reopened, erased = segment_correct_and_reopen(
        viewer, qtbot, path, lambda layer, p: layer.save(str(p), plugin=PLUGIN)
    )
    assert reopened.metadata["model"] == "TM-UNet nuclei"
    assert reopened.metadata["image"] == image.name
    tune = open_dock(viewer, "Fine-tune")
    assert (tune.rows[0].image.value, tune.rows[0].mask.value) == (image, reopened)
    assert tune.start_model()[0] == "TM-UNet nuclei"
    assert tune.active_label.value == "the mask's model: TM-UNet nuclei"
    result = fine_tune(tune, qtbot, tmp_path / "run", steps=1)
    assert result["edits"]["known"] and result["edits"]["all_pixels"] == int(erased.sum())
    assert "edits unknown" not in tune.status.value + tune.details.value


def test_cuda_chosen_without_a_gpu_is_said_at_once(make_napari_viewer, monkeypatch):
    """Device "cuda" on a machine without one: the status says so as soon as it is chosen,
    naming 'auto' and 'cpu' (CUDA stays offered); CPU clears it."""
    import torch

    import napari_tmunet._finetune_widget as module

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    warnings = []
    monkeypatch.setattr(module, "show_warning", warnings.append)
    tune = open_dock(make_napari_viewer(), "Fine-tune")
    choices = list(tune.device.choices)
    tune.device.value = "cuda"
    said = (
        "device='cuda' but CUDA is not available (no GPU, or a CPU-only torch build); "
        "choose 'auto' or 'cpu'."
    )
    assert tune.status.value == said and warnings == [f"Fine-tuning: {said}"]
    assert list(tune.device.choices) == choices and "cuda" in choices
    tune.device.value = "cpu"
    assert tune.status.value == ""


def test_a_light_correction_is_compared_where_it_is(make_napari_viewer, qtbot, tmp_path):
    """Threaded path, shipped nuclei model, the bundled sample: Segment, paint one
    missed nucleus-sized blobs, Fine-tune 2 steps. The strip is held out away from them
    (they train) and the verdict names the correction zone and both models' numbers
    there (not the held-out Dice against the model's own output alone)."""
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    tune = open_dock(viewer, "Fine-tune")
    image, _ = load_sample("nuclei")
    layer = viewer.add_image(np.ascontiguousarray(image[:128, :192]), name="crop", rgb=True)
    segment.image.value = layer
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    labels = segment.last_layer
    painted = np.array(labels.data)
    for y, x in ((30, 160), (80, 170), (110, 150), (60, 140)):  # in the right-most quarter
        painted[y - 6 : y + 6, x - 6 : x + 6] = painted.max() + 1
    labels.data = painted
    start_small(tune, tmp_path / "run", steps=2)
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "" and tune.result["trained"] == 2, tune.status.value
    old, new = tune.result["old"], tune.result["new"]
    assert old["edited_pixels"] == 0 and old["trained_edited_pixels"] > 0
    edited, total = old["trained_edited_pixels"], tune.result["edits"]["all_pixels"]
    assert total == edited and old["trained_edited_correct"] == 0  # the model that made it
    caveat = edits_caveat(tune.result["edits"])  # as the Metrics dock's note says
    assert (
        f"{edited} of your {total} corrected pixels trained (0 in the held-out strip - "
        f"{caveat}); of these {edited}: start model 0, fine-tuned "
        f"{new['trained_edited_correct']} "
        "right;" in tune.details.value
    ), tune.details.value
    verdict = compare_models(tune.result)
    assert (tune.active.current is not None) == bool(verdict["use_new"])


def test_an_empty_mask_is_refused_in_plain_words(make_napari_viewer, qtbot, tmp_path):
    """Threaded path: an empty Labels layer fails with the reason, no class name, and
    "1 mask"."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    image, _ = load_sample("nuclei")
    viewer.add_image(image[:64, :64], name="slide", rgb=True)
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="slide labels")
    start_small(tune, tmp_path / "run")
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=60_000)
    assert tune.status.value.startswith("failed: the mask of the Labels layers is empty: paint"), (
        tune.status.value
    )
    assert "Error" not in tune.status.value


def window_of(make_napari_viewer, qtbot, width: int, height: int):
    """A ``width`` x ``height`` napari window with Segment and Fine-tune (a 64 x 64 crop
    and its mask)."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(width, height)
    open_dock(viewer, "Segment")
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer, crop=64)
    qtbot.waitUntil(lambda: window.width() == width and tune.native.isVisible())
    qtbot.wait(100)
    return viewer, tune


def small_window(make_napari_viewer, qtbot):
    """Plain napari's 1089 x 633 window with Segment and Fine-tune."""
    return window_of(make_napari_viewer, qtbot, 1089, 633)


def test_every_label_of_the_dock_shows_whole(make_napari_viewer, qtbot):
    """In plain napari's window, no label of the Fine-tune dock is cut ("Augmentatio")."""
    _, tune = small_window(make_napari_viewer, qtbot)
    for widget in tune.body:
        labeled = widget._labeled_widget()
        if labeled is not None and widget.visible:
            label = labeled._label_widget.native
            need = label.fontMetrics().horizontalAdvance(label.text())
            assert need <= label.contentsRect().width(), (label.text(), need)


# held-out strip and edits of a real light correction (tester13: CPM15 image01, 4 brush
# edits, 10 steps): too few edits, so the user decides and 'Use ... anyway' shows
HELD_OUT = "columns 280-440 of 643 (where the edits are) of image01"
FEW_EDITS = {"known": True, "pixels": 274, "objects": 2, "enough": False, "all_pixels": 493}


def light_correction_result(job) -> dict:
    """What ``run_finetune`` returns for such a run (its rows and note from the real
    functions), with the engine's files of a finished run."""
    from napari_tmunet.training.finetune import comparison_rows, describe_edits

    base = stand_in(job, True)
    old = {"dice": 0.9824, "iou": 0.9654, "precision": 0.98, "recall": 0.985, "hd": 6.0,
           "hd95": 1.0, **scores(264 / 538, 0.9824, 274, 538, 0)}  # fmt: skip
    new = {**old, "dice": 0.8755, "iou": 0.7785, "hd": 21.4, "hd95": 8.06,
           **scores(0.4907, 0.8755, 274, 538, 131)}  # fmt: skip
    note = f"{HELD_OUT}; {describe_edits(FEW_EDITS)}"
    label = f"fine-tuned: {job.run_dir.name}"
    return {
        **base,
        "run_dir": str(job.run_dir),
        "held_out": HELD_OUT,
        "edits": FEW_EDITS,
        "modality": "nuclei",
        "step": 10,
        "total_steps": 10,
        "trained": 10,
        "held_out_foreground": 9000,
        "old": old,
        "new": new,
        "rows": comparison_rows(old, new, job.start_label, label, note),
    }


def in_view(widget, rect=None) -> bool:
    """Whether ``rect`` (in ``widget``'s coordinates; its whole area by default) is all in
    view on the screen (not clipped by a scroll area nor hidden in a tab)."""
    from qtpy.QtGui import QRegion

    wanted = QRegion(rect if rect is not None else widget.rect())
    return wanted.subtracted(widget.visibleRegion()).isEmpty()


def test_the_metrics_dock_a_run_opens_is_tabbed(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """Threaded path with a stand-in job that returns what a real light-correction run
    returns (rows with their note), plain napari's window (1089 x 633): the Metrics dock a
    run opens is not stacked as a third dock (each had 185 px): Fine-tune, tabbed with
    Segment (the column holds one of them: tester37 #7), stays in front, and Metrics
    shares the column with it. Both rows' Dice and HD95 are in view (a note in a
    cell made the first row 324 px tall: it is a line under the table), the verdict's
    first line is in view, and the Reference is not the Prediction's layer."""
    from qtpy.QtCore import QRect
    from qtpy.QtWidgets import QDockWidget

    import napari_tmunet._finetune_widget as finetune_module
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    monkeypatch.setattr(
        finetune_module, "run_finetune", lambda job, stop, cb: light_correction_result(job)
    )
    viewer, tune = small_window(make_napari_viewer, qtbot)
    tune.run_folder.value = tmp_path / "run"
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    qtbot.wait(700)  # the docks scroll while Qt lays out the new texts (half a second)
    window = viewer.window._qt_window
    docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}
    dock = docks["Metrics (TM-UNet)"]
    segment, fine_tune = docks["Segment (napari-tmunet)"], docks["Fine-tune (napari-tmunet)"]
    assert window.tabifiedDockWidgets(fine_tune) == [segment]  # two groups, not three
    assert window.tabifiedDockWidgets(dock) == []
    assert not dock.visibleRegion().isEmpty() and not fine_tune.visibleRegion().isEmpty()
    assert fine_tune.height() > 250 and dock.height() > 250  # about half the column each
    metrics = next(w for n, w in viewer.window.dock_widgets.items() if "Metrics" in n)
    metrics = getattr(metrics, "__wrapped__", metrics)

    table = metrics.comparison_table.native
    headers = column_keys(table)
    assert "note" not in headers and table.rowCount() == 2, headers
    for row in range(2):
        for column in (headers.index("dice"), headers.index("hd95_px")):
            cell = table.visualItemRect(table.item(row, column))
            assert in_view(table.viewport(), cell), (row, headers[column], cell)
    assert metrics.comparison_note.value.startswith(HELD_OUT)
    assert "too few for a meaningful comparison" in metrics.comparison_note.value
    assert not metrics.comparison_note.native.isHidden()
    # one Labels layer (the mask): not offered as its own reference without a word
    only = CHOOSE_PREDICTION.format(name=repr(metrics.prediction.value.name))
    assert metrics.pair_note.value == only and not metrics.pair_note.native.isHidden()

    status = tune.status.native
    assert tune.status.value.startswith("finished at step 10/10: the fine-tuned model was not")
    assert tune.details.value.startswith("274 of your 493 corrected")
    first_line = QRect(0, 0, status.width(), status.fontMetrics().height() + 4)
    assert in_view(status, first_line), status.visibleRegion().boundingRect()


def test_resume_then_stop_at_once_scores_nothing_again(make_napari_viewer, qtbot, tmp_path):
    """Threaded path, shipped nuclei model: a run stopped after a step, then Resume and
    Stop at once: the job ends without training or scoring a fine-tuned model, the run
    stays resumable at its step."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer, crop=128)
    run_dir = tmp_path / "run"
    start_small(tune, run_dir, steps=50)
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: tune.step >= 1, timeout=120_000)
    tune.stop_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    step = tune.result["step"]
    assert tune.error == "" and 1 <= step < 50 and tune.resume_button.enabled

    phases = []
    tune._relay.phase.connect(phases.append)
    tune.resume_button.native.click()
    assert tune.running
    tune.stop_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    assert tune.error == "" and tune.result["trained"] == 0 and tune.result["step"] == step
    assert not any(p == "training..." or "fine-tuned" in p for p in phases), phases
    assert tune.status.value.startswith("stopped before any training step")
    assert run_folder_state(run_dir) == "resumable" and tune.resume_button.enabled


def window_1366(make_napari_viewer, qtbot):
    """A 1366 x 768 window with Segment and Fine-tune."""
    return window_of(make_napari_viewer, qtbot, 1366, 768)


def run_light_correction(viewer, tune, qtbot, monkeypatch, run_dir):
    """Start (threaded path) a stand-in run that returns a real light correction's result;
    return the Metrics dock it opens, once the docks have scrolled."""
    import napari_tmunet._finetune_widget as finetune_module

    monkeypatch.setattr(
        finetune_module, "run_finetune", lambda job, stop, cb: light_correction_result(job)
    )
    tune.run_folder.value = run_dir
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=30_000)
    qtbot.wait(700)  # the docks scroll while Qt lays out the new texts (half a second)
    metrics = next(w for n, w in viewer.window.dock_widgets.items() if "Metrics" in n)
    return getattr(metrics, "__wrapped__", metrics)


def test_metrics_compute_after_a_fine_tune_shows_its_result(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """1366 x 768, the Metrics tab a run opened beside Segment (its view ~260 px high, on
    the before/after comparison): the user scrolls up to Compute and clicks it; the
    status line with the scores and the table's first row are then in view without
    scrolling (tester14 #4: they sat below the comparison, out of view)."""
    viewer, tune = window_1366(make_napari_viewer, qtbot)
    metrics = run_light_correction(viewer, tune, qtbot, monkeypatch, tmp_path / "run")
    area = metrics.body.scroll_area
    assert area.viewport().height() < 300  # a short dock: the result could fall out of view
    _, mask = load_sample("nuclei")
    reference = viewer.add_labels(np.ascontiguousarray(mask[:64, :64]), name="nuclei mask")
    metrics.prediction.value = viewer.layers["nuclei corrected"]
    metrics.reference.value = reference
    area.ensureWidgetVisible(metrics.compute_button.native)  # the user scrolls to it
    qtbot.wait(100)

    metrics.compute_button.native.click()
    qtbot.waitUntil(lambda: bool(metrics.results) and metrics._worker is None, timeout=20_000)
    qtbot.wait(700)

    assert metrics.status.value.startswith("nuclei corrected vs nuclei mask: Dice")
    assert in_view(metrics.status.native), metrics.status.native.visibleRegion().boundingRect()
    table = metrics.table.native
    first_row = table.visualItemRect(table.item(0, 0)).united(
        table.visualItemRect(table.item(0, 1))
    )
    assert in_view(table.viewport(), first_row), (first_row, table.visibleRegion().boundingRect())


def test_the_verdict_uses_the_full_width_and_keeps_its_arrows_whole(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """1366 x 768, threaded path with a real light correction's result: the verdict starts
    at the dock's left edge and is as wide as its buttons (it sat beside an empty label
    column, ~110 px in, wrapped to 12-14 lines), and its "a -> b" are "a → b" between
    no-break spaces, so no line ends in "0.9982 -" (tester14 #5)."""
    viewer, tune = window_1366(make_napari_viewer, qtbot)
    run_light_correction(viewer, tune, qtbot, monkeypatch, tmp_path / "run")
    body = tune.body.native
    status, button = tune.status.native, tune.use_anyway_button.native
    assert not button.isHidden()
    left = status.mapTo(body, status.rect().topLeft()).x()
    assert abs(left - button.mapTo(body, button.rect().topLeft()).x()) <= 2, left
    assert status.width() >= button.width() - 2, (status.width(), button.width())
    assert tune.eta.native.width() == status.width()  # the run's texts share the column
    details = tune.details.native
    assert abs(left - details.mapTo(body, details.rect().topLeft()).x()) <= 2
    assert details.width() >= button.width() - 20  # beside its box's scroll bar
    text = tune.details.value  # the comparison, under the headline and the button
    assert text.startswith("274 of your 493 corrected"), text
    assert "->" not in text
    assert text.count("\u00a0\u2192\u00a0") == 2, text  # the zone's pixels right and Dice


def test_the_status_says_the_held_out_part_is_scored_after_the_last_step(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Threaded path, shipped nuclei model, 3 steps: after the last step the status says
    the held-out part is scored (it said "training..." through a validation that takes
    seconds on a CPU, tester 30 #8) and how far; best.pt, written at that step, takes
    that scoring's scores: it is not scored a second time (tester 35 #4: 40 s more with
    the bar at 100%). Every held-out scoring (``evaluate``) is counted."""
    import napari_tmunet.evaluation as evaluation

    calls = []
    scoring = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: calls.append(1) or scoring(*a, **k))
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer)
    start_small(tune, tmp_path / "run", steps=3)
    phases, statuses = [], []
    tune._relay.phase.connect(phases.append)
    # after the dock's own slot (connected first): what the status line shows then
    tune._relay.phase.connect(lambda _text: statuses.append(tune.status.value))
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=240_000)
    assert tune.error == "", tune.error
    scored = "step 3/3: scoring the held-out part..."
    assert scored in phases and scored in statuses, phases
    assert phases.index("training...") < phases.index(scored)
    done = "step 3/3: scoring the held-out part (1 image): 100%..."
    assert phases.index(scored) < phases.index(done) and done in statuses
    reused = "the fine-tuned model (best.pt of step 3) was scored at step 3: its scores are used"
    assert phases[phases.index(done) + 1 :] == [reused], phases
    assert len(calls) == 2  # the starting model, step 3's validation


def test_a_refusal_in_the_status_goes_when_a_pair_is_added(make_napari_viewer, qtbot, tmp_path):
    """Start with nothing to train on says so in the status line; the words go once an
    image and its Labels are added (they stayed beside a filled pair, tester 30 #8)."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    start_small(tune, tmp_path / "run")
    tune.start_button.native.click()
    refusal = "Add an (image, Labels) pair or choose a dataset folder to train on."
    assert tune.status.value == refusal
    add_nuclei(viewer, crop=128)
    assert tune.rows and tune.rows[0].mask.value is not None
    assert tune.status.value == ""
    assert not (tmp_path / "run").exists()
