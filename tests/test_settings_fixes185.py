"""The settings file (tester40 #2, #3). A hand edit that breaks settings.json (a trailing
comma after "max_pixels", as the guide's Settings invites) was ignored without a word, and
the next save (a Model box choice, "Use anyway", Revert) rewrote it from nothing: the
active model, the previous one and max_pixels were lost. Now the file is named in a
warning with the JSON error's line and column and what to do, the defaults are used, and
it is never replaced. Two napari windows that each make a model active both keep theirs:
each save reads the file again, and the other's model becomes the previous one."""

from __future__ import annotations

import json
import logging

import pytest
from _checkpoints import tiny_checkpoint
from _view import open_dock
from test_active_model_sessions import add_nuclei, fine_tune_one_step
from test_segment_widget import open_sample

from napari_tmunet import active_model, registry, settings
from napari_tmunet.data.budget import DEFAULT_MAX_PIXELS, max_pixels


def run_checkpoint(tmp_path, stamp: str):
    """A Fine-tune run's checkpoint for nuclei images (a tiny untrained model)."""
    best = tmp_path / "runs" / stamp / "train" / "best.pt"
    return tiny_checkpoint(best, metadata={"modality": "nuclei"})


@pytest.fixture
def runs(tmp_path):
    """Two Fine-tune runs' checkpoints."""
    return [run_checkpoint(tmp_path, stamp) for stamp in ("20261205-220817", "20261205-222029")]


def users_settings(runs) -> dict:
    """Settings as napari-tmunet writes them: a fine-tuned model active, one before it."""
    older, newer = (str(run) for run in runs)
    return {
        "active_model": {
            "current": {"model": newer, "label": "fine-tuned on image04", "modality": "nuclei"},
            "previous": {"model": older, "label": "fine-tuned on image03", "modality": "nuclei"},
        },
        "max_pixels": 400000000,
    }


def trailing_comma(runs) -> str:
    """The users' settings with the hand edit of tester40: a comma after the last key."""
    return json.dumps(users_settings(runs), indent=2)[:-2] + ",\n}"


def all_saves(runs) -> None:
    """Every way the plugin saves settings: a Model box choice, a model made active (Use
    anyway, a verdict), Revert, and the plain save of the active models."""
    settings.remember_model("nuclei", "TM-UNet nuclei")
    settings.forget_model("colonoscopy")
    holder = active_model.ActiveModel(persist=True)
    holder.set(str(runs[0]), "fine-tuned on image05", "nuclei")
    holder.set("TM-UNet nuclei")
    holder.revert()
    settings.save_active_models({"current": {"model": "TM-UNet nuclei"}})


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        (trailing_comma, "is not valid JSON (Expecting property name enclosed in double "
                         "quotes: line 15 column 1 (char "),  # the "}" after the comma
        (lambda runs: json.dumps([users_settings(runs)]), "holds a list, not a JSON object"),
        (lambda runs: "400000000\n", "holds the number 400000000, not a JSON object"),
    ],
    ids=["trailing-comma", "a-list", "a-number"],
)  # fmt: skip
def test_a_damaged_settings_file_is_named_and_never_replaced(runs, caplog, text, wrong):
    path = settings.settings_path()
    path.write_text(text(runs))
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        holder = active_model.ActiveModel(persist=True)
        assert holder.current is None and holder.previous is None  # the defaults
        assert max_pixels() == DEFAULT_MAX_PIXELS
        assert registry.remembered_models() == {}
        all_saves(runs)
    # what the docks show at their start
    assert holder.note.startswith(f"napari-tmunet: the settings file {path} {wrong}")
    assert "fix it, or delete it to start from the defaults" in holder.note
    assert "nothing is saved to it" in holder.note
    logged = [r.getMessage() for r in caplog.records]
    assert logged and all(message == holder.note for message in logged), logged
    assert len(logged) > 5  # each refused save says so again (a choice is not saved)
    assert path.read_bytes() == before  # never replaced
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]
    path.write_text(json.dumps(users_settings(runs)))  # fixed: everything comes back
    holder = active_model.ActiveModel(persist=True)
    assert (holder.current.model, holder.previous.model) == (str(runs[1]), str(runs[0]))
    assert max_pixels() == 400000000 and holder.note == ""


def test_a_key_of_the_wrong_kind_is_named_and_kept_while_others_are_saved(runs, caplog):
    """A key that holds what napari-tmunet never writes: named with what it must be, its
    default used; a save that would replace it is refused, one of another key is made and
    keeps it as the user wrote it."""
    path = settings.settings_path()
    broken = {"active_model": ["fine-tuned on image04"], "max_pixels": "lots"}
    path.write_text(json.dumps(broken))
    with caplog.at_level(logging.WARNING):
        holder = active_model.ActiveModel(persist=True)
        assert holder.current is None and max_pixels() == DEFAULT_MAX_PIXELS
        holder.set(str(runs[1]), "fine-tuned on image04", "nuclei")  # refused
        settings.remember_model("nuclei", "TM-UNet nuclei")  # another key: saved
    assert holder.note == (
        f'napari-tmunet: "active_model" in the settings file {path} holds a list (it must be '
        'an object whose "current" and "previous" are each an object with a "model": a '
        "checkpoint file or a shipped model's name). Its default is used, and nothing is "
        "saved to it, until you fix it, or remove it (or delete the file) to start from the "
        "default."
    )
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count(holder.note) == 2  # at the start, and the refused save
    assert (
        f"napari-tmunet: \"max_pixels\" in the settings file {path} holds the text 'lots' (it "
        "must be a positive number of pixels). Its default is used until you fix it, or "
        "remove it (or delete the file) to start from the default."
    ) in logged
    assert json.loads(path.read_text()) == {
        **broken,
        "models_by_modality": {"nuclei": "TM-UNet nuclei"},
    }


def test_two_windows_each_keep_the_model_they_made_active(runs, tmp_path):
    """Two windows (two holders, each reading the file at its start) make a model active in
    turn: the second keeps the first's as its previous model, in the file (a next session)
    and in its own Revert; a Model box choice saved between them loses neither."""
    path = settings.settings_path()
    path.write_text(json.dumps(users_settings(runs)))
    first = active_model.ActiveModel(persist=True)
    second = active_model.ActiveModel(persist=True)  # started before the first saves
    a, b = run_checkpoint(tmp_path, "a"), run_checkpoint(tmp_path, "b")
    first.set(str(a), "fine-tuned on image03 A", "nuclei")  # "Use anyway" in the first
    settings.remember_model("colonoscopy", "TM-UNet colonoscopy")  # a third process
    second.set(str(b), "fine-tuned on image04 B", "nuclei")  # then in the second
    assert second.previous.model == str(a)  # Revert in the second brings back the first's
    later = active_model.ActiveModel(persist=True)  # a next session
    assert (later.current.label, later.previous.label) == (
        "fine-tuned on image04 B",
        "fine-tuned on image03 A",
    )
    saved = json.loads(path.read_text())
    assert saved["max_pixels"] == 400000000
    assert saved["models_by_modality"] == {"colonoscopy": "TM-UNet colonoscopy"}
    assert second.revert().model == str(a)  # and a revert there: the file follows
    later = active_model.ActiveModel(persist=True)
    assert (later.current.model, later.previous.model) == (str(a), str(b))


@pytest.mark.gui
def test_the_segment_dock_names_a_damaged_file_and_a_choice_leaves_it(
    make_napari_viewer, runs, notices, notifications
):
    """napari, with the hand-broken file: the Segment dock says at its start what is wrong
    and what to do, runs the shipped model, and a model chosen in the Model box for the
    image's kind (a save) is refused in a napari warning; the file is left byte for byte."""
    path = settings.settings_path()
    path.write_text(trailing_comma(runs))
    before = path.read_bytes()
    viewer = make_napari_viewer()
    widget = open_dock(viewer, "Segment")
    (said,) = [text for text in notices["warning"] if str(path) in text]
    assert "is not valid JSON (Expecting property name enclosed in double quotes: line 15" in said
    assert said.endswith("until you fix it, or delete it to start from the defaults.")
    widget.image.value = open_sample(viewer, "ultrasound")
    assert widget.model.value == "TM-UNet ultrasound"  # the default: nothing is saved
    widget.model.value = "TM-UNet colonoscopy"  # a comparison: this session only
    widget.model.value = "TM-UNet ultrasound"  # the user's choice for such images: a save
    assert "your choice for ultrasound images" in widget.model_reason.value  # this session
    shown = [message for severity, message in notifications if "warning" in severity]
    assert said in shown  # the refused save, in napari
    assert path.read_bytes() == before


@pytest.mark.gui
@pytest.mark.usefixtures("one_torch_thread")
def test_two_windows_fine_tuning_keep_both_models(make_napari_viewer, qtbot, tmp_path):
    """tester40 #3 in napari: two windows (one settings file) each fine-tune and make the
    result active. The second window's previous model, in its Revert and in the file, is
    the first window's model, which a next session's Fine-tune dock offers to revert to."""
    windows = [make_napari_viewer() for _ in range(2)]
    docks = [open_dock(viewer, "Fine-tune") for viewer in windows]  # both read the file
    results = []
    for viewer, tune, name in zip(windows, docks, "AB", strict=True):
        add_nuclei(viewer)
        results.append(fine_tune_one_step(tune, qtbot, tmp_path / name))
    first, second = (result["best_checkpoint"] for result in results)
    assert docks[0].active.current.model == first
    assert (docks[1].active.current.model, docks[1].active.previous.model) == (second, first)
    assert docks[1].revert_button.enabled
    saved = settings.saved_active_models()
    assert (saved["current"]["model"], saved["previous"]["model"]) == (second, first)
    later = open_dock(make_napari_viewer(), "Fine-tune")  # a next session
    assert (later.active.current.model, later.active.previous.model) == (second, first)
