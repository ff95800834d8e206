"""``napari-tmunet``'s options (the smoke run itself is in test_segment_widget.py)."""

from _paths import REPO

from napari_tmunet.launch import build_parser


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
    for entry in registry.available_models():
        assert repr(entry.name) in err
    if registry.model_for_modality("colonoscopy") is not None:  # a modality name is fine
        assert launch._model_problem("colonoscopy") is None
