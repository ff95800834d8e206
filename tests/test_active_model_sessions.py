"""The active model across sessions (tester22 D1, D5): the model Fine-tune made active and
the one before it are saved in the settings file, and a new viewer (as after a restart)
lists it by its one name, runs it, fine-tunes from it and can revert; a checkpoint gone
not found at a start is kept for a later one, that session running the shipped model (CPU,
Xvfb, the bundled nuclei sample)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from _view import open_dock

from napari_tmunet import active_model, registry, settings
from napari_tmunet._sample_data import load_sample

PLUGIN = "napari-tmunet"
SHIPPED = "TM-UNet nuclei"


def add_nuclei(viewer, crop: int = 128, labels: bool = True):
    """The bundled nuclei sample cut to ``crop``, and its reference mask as Labels."""
    image, mask = load_sample("nuclei")
    layer = viewer.add_image(np.ascontiguousarray(image[:crop, :crop]), name="nuclei", rgb=True)
    if labels:
        viewer.add_labels(np.ascontiguousarray(mask[:crop, :crop]), name="nuclei corrected")
    return layer


def fine_tune_one_step(tune, qtbot, run_dir) -> dict:
    """One CPU step from the dock's Start button (the threaded path); the fine-tuned model
    is made active (by the verdict, or 'Use the fine-tuned model anyway')."""
    tune.steps.value, tune.batch_size.value, tune.device.value = 1, 1, "cpu"
    tune.run_folder.value = run_dir
    tune.start_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "" and tune.result["trained"] == 1, tune.status.value
    if not tune.use_anyway_button.native.isHidden():
        tune.use_anyway_button.native.click()
    return tune.result


@pytest.mark.gui
@pytest.mark.usefixtures("one_torch_thread")
def test_the_active_fine_tuned_model_is_kept_for_a_new_viewer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer)
    run_dir = tmp_path / "run"
    result = fine_tune_one_step(tune, qtbot, run_dir)
    best, name = result["best_checkpoint"], result["name"]
    # one name, to the second, recorded in the run: the dock, Metrics and the file agree
    assert re.fullmatch(r"fine-tuned on nuclei \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", name)
    assert json.loads((run_dir / "finetune.json").read_text())["name"] == name
    assert (tune.active.current.model, tune.active.current.label) == (best, name)
    assert result["rows"][-1]["model"] == f"after fine-tuning: {name}"
    assert active_model.model_label(best) == name  # a run's checkpoint chosen by file
    viewer.close()

    # a new viewer (napari restarted): Segment lists the model by name and runs it
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    layer = add_nuclei(viewer, labels=False)
    assert segment.image.value is layer
    # the Model box by its short name (the whole one is the reason line and the tooltip)
    short = f"nuclei · tuned {name[-14:-3]}"  # "nuclei · tuned 12-04 16:30"
    assert segment.model.value == best and segment.model.native.currentText() == short
    assert segment.model.tooltip.endswith(f"{name}, from {SHIPPED}\n{best}")
    assert segment.model_reason.value == f"Runs {name}: the active model for nuclei images."
    segment.segment()  # once the model's file is read
    qtbot.waitUntil(lambda: segment.worker is not None, timeout=60_000)  # the threaded path
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    made = segment.last_layer
    assert made.metadata["model"] == best and name in segment.summary.value

    # Fine-tune starts from it (the mask is its own) and Revert brings the shipped one back
    tune = open_dock(viewer, "Fine-tune")
    tune.rows[0].mask.value = made
    assert tune.start_model() == (best, name)
    assert tune.revert_button.enabled
    assert tune.revert_button.tooltip.endswith(f"Previous model: {SHIPPED}.")
    tune.model.value = "Checkpoint file..."
    tune.checkpoint.value = best
    assert tune.start_model() == (best, name)  # by its name, not "best.pt"
    tune.revert_button.native.click()
    assert tune.active.current.model == SHIPPED and segment.model.value == SHIPPED
    viewer.close()

    # and the next session still has both: the shipped one active, Revert to the fine-tuned
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    assert tune.active.current.model == SHIPPED and tune.active.previous.model == best
    assert tune.revert_button.tooltip.endswith(f"Previous model: {name}.")


def box_texts(segment) -> list[str]:
    return [segment.model.native.itemText(i) for i in range(segment.model.native.count())]


@pytest.mark.gui
@pytest.mark.usefixtures("one_torch_thread")
def test_a_model_whose_run_folder_is_missing_at_a_start_is_kept_for_later(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """tester30 #1: the active fine-tuned model's run folder missing at one start (renamed,
    a share not mounted yet): that session runs the shipped model and says so, naming
    Revert as the way out (tester31 #4), and the settings keep both; with the folder back
    the next session runs it again and Revert offers the one before it."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer)
    first = fine_tune_one_step(tune, qtbot, tmp_path / "runs" / "a")
    second = fine_tune_one_step(tune, qtbot, tmp_path / "runs" / "b")
    tune.revert_button.native.click()  # back to the first: the second is the previous
    assert tune.active.current.model == first["best_checkpoint"]
    assert tune.active.previous.model == second["best_checkpoint"]
    saved = settings.read_settings()["active_model"]
    viewer.close()

    (tmp_path / "runs" / "a").rename(tmp_path / "runs" / "a-away")
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer, labels=False)
    said = [text for text in notices["warning"] if first["best_checkpoint"] in text]
    assert said == [
        f"The model you made active, {first['name']}, is not found "
        f"({first['best_checkpoint']}): Segment uses the shipped model in this session; it "
        "is kept, and comes back at a start that finds the file (a run folder moved back, "
        f"a drive mounted). To stop using it: Revert (makes {second['name']} active), choose "
        "a shipped model for nuclei images in Segment's Model box, or make a new fine-tune "
        "active; each keeps this one as the previous model."
    ]
    assert segment.model.value == SHIPPED
    assert not any(first["name"][-8:-3] in text for text in box_texts(segment))
    tune = open_dock(viewer, "Fine-tune")
    assert tune.active.current is None and tune.active.previous.model == second["best_checkpoint"]
    # said for as long as it lasts, not only in the message that fades
    assert tune.revert_button.enabled
    assert tune.revert_button.tooltip.endswith(
        f"Previous model: {second['name']}. {first['name']}'s file is not found: "
        f"{first['best_checkpoint']}; the shipped model runs meanwhile. To stop using it: "
        f"Revert (makes {second['name']} active), choose a shipped model for nuclei images "
        "in Segment's Model box, or make a new fine-tune active; each keeps "
        f"{first['name']} as the previous model."
    )
    viewer.close()
    assert settings.read_settings()["active_model"] == saved  # the choice is not erased

    (tmp_path / "runs" / "a-away").rename(tmp_path / "runs" / "a")
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer, labels=False)
    assert len([text for text in notices["warning"] if first["best_checkpoint"] in text]) == 1
    assert segment.model.value == first["best_checkpoint"]
    assert segment.model_reason.value.startswith(f"Runs {first['name']}")
    tune = open_dock(viewer, "Fine-tune")
    assert tune.revert_button.enabled
    assert tune.revert_button.tooltip.endswith(f"Previous model: {second['name']}.")


@pytest.mark.gui
@pytest.mark.usefixtures("one_torch_thread")
def test_a_model_made_active_meanwhile_replaces_the_missing_one(
    make_napari_viewer, qtbot, notices, tmp_path
):
    """The active model's run folder missing at a start, and a model fine-tuned and made
    active in that session: it replaces the missing one as it would any active model (its
    starting model is the one Revert brings back), and the next session does not speak of
    the missing one."""
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    add_nuclei(viewer)
    first = fine_tune_one_step(tune, qtbot, tmp_path / "runs" / "a")
    viewer.close()

    (tmp_path / "runs" / "a").rename(tmp_path / "runs" / "a-away")
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    assert first["best_checkpoint"] in tune.status.value
    add_nuclei(viewer)
    second = fine_tune_one_step(tune, qtbot, tmp_path / "runs" / "b")
    assert tune.active.current.model == second["best_checkpoint"]
    assert tune.active.previous.model == SHIPPED and tune.revert_button.enabled
    saved = settings.read_settings()["active_model"]
    assert (saved["current"]["model"], saved["previous"]["model"]) == (
        second["best_checkpoint"],
        SHIPPED,
    )
    viewer.close()

    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer, labels=False)
    assert segment.model.value == second["best_checkpoint"]
    assert not [text for text in notices["warning"] if first["best_checkpoint"] in text]


def test_a_missing_previous_model_is_kept_and_revert_waits_for_it(tmp_path):
    """The previous model's file not found at a start: Revert does not offer it (nor
    anything else) while it is missing, Revert's words say so (no message at the start: it
    is not in use), and the settings keep it; with the file back, Revert brings it back. A
    model made active meanwhile replaces it as usual."""
    best = tmp_path / "run" / "train" / "best.pt"
    best.parent.mkdir(parents=True)
    shutil.copyfile(registry.find_model(SHIPPED).path, best)  # a real checkpoint
    holder = active_model.ActiveModel(persist=True)
    holder.set(str(best), "mine", "nuclei")
    holder.set(SHIPPED, SHIPPED, "nuclei")
    saved = settings.read_settings()["active_model"]
    best.parent.parent.rename(tmp_path / "away")

    holder = active_model.ActiveModel(persist=True)
    assert holder.take_note() == ""
    assert holder.missing_words() == (
        f"mine's file is not found: {best} (kept: Revert offers it when it is there)."
    )
    assert holder.current.model == SHIPPED and holder.previous is None
    assert holder.revert() is None and holder.current.model == SHIPPED
    assert settings.read_settings()["active_model"] == saved

    (tmp_path / "away").rename(best.parent.parent)
    holder = active_model.ActiveModel(persist=True)
    assert holder.note == "" and holder.revert().model == str(best)
    assert holder.previous.model == SHIPPED

    best.parent.parent.rename(tmp_path / "away")  # gone again, now the active one
    holder = active_model.ActiveModel(persist=True)
    assert holder.current is None and holder.previous.model == SHIPPED
    holder.set(SHIPPED, SHIPPED, "nuclei")  # made active meanwhile: the missing one previous
    assert holder.previous is None and holder.revert() is None
    assert settings.saved_active_models()["previous"]["model"] == str(best)
    (tmp_path / "away").rename(best.parent.parent)  # back in this session: Revert offers it
    assert holder.previous.model == str(best) and holder.revert().model == str(best)
    assert holder.missing_words() == ""


def test_a_missing_active_model_with_no_previous_names_a_new_fine_tune(tmp_path):
    """The active model's file not found and no previous model: the message and Revert's
    words name the other way out, a new fine-tune, which keeps it as the previous model."""
    best = shipped_copy(tmp_path, "run")
    active_model.ActiveModel(persist=True).set(best, "mine", "nuclei")
    (tmp_path / "run").rename(tmp_path / "gone")
    holder = active_model.ActiveModel(persist=True)
    assert holder.take_note().endswith(
        "To stop using it: choose a shipped model for nuclei images in Segment's Model box, "
        "or make a new fine-tune active; each keeps this one as the previous model."
    )
    assert holder.previous is None and holder.revert() is None
    assert holder.missing_words() == (
        f"mine's file is not found: {best}; the shipped model runs meanwhile. To stop using "
        "it: choose a shipped model for nuclei images in Segment's Model box, or make a new "
        "fine-tune active; each keeps mine as the previous model."
    )
    holder.set(SHIPPED, SHIPPED, "nuclei")
    assert settings.saved_active_models()["previous"]["model"] == best


def shipped_copy(tmp_path, name: str) -> str:
    """A copy of the shipped nuclei checkpoint as a run's RUN/train/best.pt (a real model)."""
    best = tmp_path / name / "train" / "best.pt"
    best.parent.mkdir(parents=True)
    shutil.copyfile(registry.find_model(SHIPPED).path, best)
    return str(best)


@pytest.mark.gui
def test_revert_is_the_way_out_of_an_active_model_deleted_for_good(
    make_napari_viewer, notices, tmp_path
):
    """tester31 #4: the active model's run folder deleted for good. Revert is enabled, its
    tooltip says why, and it makes the previous model active (Segment runs it); the missing
    one becomes the previous model, kept in the settings, with no message at the next start
    (it is not in use) but Revert's tooltip saying its file is not found; with the folder
    back, Revert brings it back."""
    first, second = shipped_copy(tmp_path, "a"), shipped_copy(tmp_path, "b")
    holder = active_model.ActiveModel(persist=True)
    holder.set(first, "tuned a", "nuclei")
    holder.set(second, "tuned b", "nuclei")
    (tmp_path / "b").rename(tmp_path / "b-gone")

    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer, labels=False)
    assert notices["warning"] == [
        f"The model you made active, tuned b, is not found ({second}): Segment uses the "
        "shipped model in this session; it is kept, and comes back at a start that finds the "
        "file (a run folder moved back, a drive mounted). To stop using it: Revert (makes "
        "tuned a active), choose a shipped model for nuclei images in Segment's Model box, "
        "or make a new fine-tune active; each keeps this one as the previous model."
    ]
    assert segment.model.value == SHIPPED
    tune = open_dock(viewer, "Fine-tune")
    assert tune.revert_button.enabled
    assert f"tuned b's file is not found: {second}" in tune.revert_button.tooltip
    tune.revert_button.native.click()
    assert tune.active.current.model == first and segment.model.value == first
    assert tune.status.value == "active model: tuned a"
    assert not tune.revert_button.enabled  # to the missing one: off, and says why
    gone = (
        "Make the previous model active again. tuned b's file is not found: "
        f"{second} (kept: Revert offers it when it is there)."
    )
    assert tune.revert_button.tooltip == gone
    viewer.close()
    saved = settings.saved_active_models()
    assert (saved["current"]["model"], saved["previous"]["model"]) == (first, second)

    viewer = make_napari_viewer()  # the next start: nothing to warn about
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer, labels=False)
    tune = open_dock(viewer, "Fine-tune")
    assert len(notices["warning"]) == 1 and tune.status.value == ""
    assert segment.model.value == first and not tune.revert_button.enabled
    assert tune.revert_button.tooltip == gone
    viewer.close()

    (tmp_path / "b-gone").rename(tmp_path / "b")  # the folder back: Revert brings it back
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    add_nuclei(viewer, labels=False)
    tune = open_dock(viewer, "Fine-tune")
    assert tune.revert_button.enabled
    assert tune.revert_button.tooltip.endswith("Previous model: tuned b.")
    tune.revert_button.native.click()
    assert tune.active.current.model == second and segment.model.value == second
    assert len(notices["warning"]) == 1


def test_an_unreadable_settings_file_starts_with_no_saved_model():
    """A file cut short, or with active models of the wrong kind (hand edits): no saved
    model, the note names the file, and a model made active holds for this session only:
    the file is never replaced (tests/test_settings_fixes185.py)."""
    path = settings.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    for text in ('{"active_model": {"current": ', '{"active_model": {"current": 3}}'):
        path.write_text(text, encoding="utf-8")
        holder = active_model.ActiveModel(persist=True)
        assert holder.current is None and holder.previous is None
        assert str(path) in holder.note and "until you fix it" in holder.note
        holder.set(SHIPPED, SHIPPED, "nuclei")
        assert holder.current.model == SHIPPED  # this session
        assert path.read_text(encoding="utf-8") == text
    path.write_text('{"active_model": {"current": {"model": "TM-UNet nuclei"}}}')
    assert active_model.ActiveModel(persist=True).current.model == SHIPPED


def test_a_run_made_before_runs_had_names_is_named_from_its_plan(tmp_path):
    """A Fine-tune run's checkpoint chosen by file is named from finetune.json (an older
    run's: its first image and start time); any other file by its file name."""
    train = tmp_path / "20261203-190009" / "train"
    train.mkdir(parents=True)
    (train / "best.pt").write_bytes(b"")
    plan = {"created": "2026-12-03T19:00:09", "pairs": [{"name": "01-slide1", "source": ""}]}
    (train.parent / "finetune.json").write_text(json.dumps(plan))
    assert active_model.model_label(train / "best.pt") == "fine-tuned on slide1 2026-12-03 19:00:09"
    (train.parent / "finetune.json").write_text("{ cut off")
    assert active_model.model_label(train / "best.pt") == "best.pt"
    assert active_model.model_label(tmp_path / "mine.pt") == "mine.pt"
