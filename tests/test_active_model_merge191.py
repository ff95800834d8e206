"""The rule by which a holder's save takes in a model another window made active
(``active_model.made_active_elsewhere``, fix-191 #5)."""

from dataclasses import asdict

from napari_tmunet import active_model, settings
from napari_tmunet.active_model import ActiveModel, ModelChoice, made_active_elsewhere

MINE = ModelChoice("/runs/a/train/best.pt", "run a")
BEFORE = ModelChoice("TM-UNet nuclei")
OTHER = ModelChoice("/runs/b/train/best.pt", "run b", "nuclei")


def saved(choice) -> dict:
    return {"current": asdict(choice), "previous": asdict(BEFORE)}


def test_another_windows_model_is_taken_in():
    assert made_active_elsewhere(saved(OTHER), MINE, BEFORE, MINE.model) == OTHER
    assert made_active_elsewhere(saved(OTHER), None, None, None) == OTHER  # a first save


def test_a_model_this_holder_knows_or_saw_is_not():
    assert made_active_elsewhere(saved(MINE), MINE, BEFORE, MINE.model) is None  # its own
    assert made_active_elsewhere(saved(BEFORE), MINE, BEFORE, None) is None  # its previous
    # the file's model as the holder last saw it (e.g. reverted away from it since)
    assert made_active_elsewhere(saved(OTHER), MINE, BEFORE, OTHER.model) is None


def test_nothing_usable_saved_is_none():
    for nothing in (None, {}, {"current": None}, {"current": {"label": "no model"}}, [1]):
        assert made_active_elsewhere(nothing, MINE, BEFORE, None) is None, nothing


def test_a_holders_save_keeps_another_windows_model_as_its_previous(tmp_path):
    """Two windows: the second makes a model active, then the first makes its own; the
    second's model is the first's previous one, and is saved so."""
    made = [tmp_path / name for name in ("a.pt", "b.pt")]
    for path in made:
        path.write_bytes(b"")
    first, second = ActiveModel(persist=True), ActiveModel(persist=True)
    second.set(str(made[1]), "run b")
    first.set(str(made[0]), "run a")
    assert first.previous is not None and first.previous.model == str(made[1])
    assert settings.saved_active_models()["previous"]["model"] == str(made[1])
    assert active_model.ActiveModel(persist=True).current.model == str(made[0])
