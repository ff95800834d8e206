"""What a new user reads first: the commands' --help, model names, result labels."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest

from napari_tmunet import predict_cli, registry
from napari_tmunet.options import MODE_ALIASES, MODES
from trainer import cli, commands


def _help(main, argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_predict_help_lists_the_shipped_models(capsys):
    text = _help(predict_cli.main, [], capsys)
    entries = registry.available_models()
    assert entries
    for entry in entries:
        assert entry.name in text and f"(or {entry.modality})" in text


def test_modality_names_resolve_to_the_shipped_model():
    for entry in registry.available_models():
        name, path, _ = registry.resolve_model(entry.modality)
        assert (name, path) == (entry.name, entry.path)
        assert registry.resolve_model(entry.modality.upper())[0] == entry.name
    with pytest.raises(ValueError, match="colonoscopy"):  # the message lists the choices
        registry.resolve_model("dermoscopy")


@pytest.mark.slow
def test_predict_accepts_a_modality_name(tmp_path, capsys):
    """``--model colonoscopy`` on the bundled colonoscopy sample writes its mask."""
    from napari_tmunet._sample_data import SAMPLES_DIR

    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(SAMPLES_DIR / "colonoscopy_image.png", images / "frame.png")
    args = [str(images), str(tmp_path / "out"), "--model", "colonoscopy", "--device", "cpu"]
    assert predict_cli.main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "frame.png").is_file()


def test_train_help_is_short_and_fit_help_has_the_protocol(capsys):
    top = _help(cli.main, [], capsys)
    assert len(top.splitlines()) < 25 and "fit --help" in top
    fit = _help(cli.main, ["fit"], capsys)
    assert "7:1:2" in fit and "ExponentialLR" in fit and "examples:" in fit


def test_every_fit_help_example_parses_with_current_names(capsys):
    """Each command in `fit --help`'s examples parses with the real parser, and every
    --mode the help names is a current one (not an earlier name such as 'crop')."""
    text = _help(cli.main, ["fit"], capsys)
    parser = cli.build_parser()
    lines = [line.strip() for line in text.split("examples:")[1].splitlines()]
    examples = [line for line in lines if line and not line.startswith("#")]
    assert len(examples) >= 10, examples
    for line in examples:
        words = shlex.split(line)
        assert words[0] in ("napari-tmunet-train", "torchrun"), line
        argv = words[words.index("trainer.cli") + 1 :] if words[0] == "torchrun" else words[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the example does not parse: {line}\n{capsys.readouterr().err}")
        assert getattr(args, "mode", None) not in MODE_ALIASES, line
    modes = re.findall(r"--mode (\w+)", text)
    assert modes and set(modes) <= set(MODES), modes


@pytest.mark.parametrize(
    "command, options",
    [("evaluate", ("--part", "--batch-size")), ("efficiency", ("--size", "--batch"))],
)
def test_every_option_has_help(command, options):
    """No option of the subcommands is left without a help text."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    undocumented = [a.option_strings[0] for a in sub._actions if a.option_strings and not a.help]
    assert not undocumented, undocumented
    assert set(options) <= {s for a in sub._actions for s in a.option_strings}


@pytest.mark.slow
def test_evaluate_other_data_is_labelled_with_its_name(tmp_path, capsys, one_torch_thread):
    """A model trained on one folder and evaluated on another: results carry the other's
    name (bundled nuclei sample cut into tiles; no shared data needed)."""
    tiles = commands._write_demo_tiles(tmp_path / "nuclei-tiles")
    other = shutil.copytree(tiles, tmp_path / "other-tiles")
    run = tmp_path / "run"
    fit = [
        "fit", "--data", str(tiles), "--variant", "t", "--size", "32", "--steps", "2",
        "--batch-size", "4", "--device", "cpu", "--no-progress", "--no-efficiency",
        "--num-workers", "0", "--run-dir", str(run),
    ]  # fmt: skip
    assert cli.main(fit) == 0
    assert json.loads((run / "summary.json").read_text())["dataset"] == "nuclei-tiles"
    evaluate = ["evaluate", str(run / "best.pt"), "--device", "cpu", "--part", "all"]
    assert cli.main([*evaluate, "--data", str(other), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "eval-all-best-other-tiles.json").read_text())
    assert summary["dataset"] == "other-tiles"
    assert "other-tiles" in capsys.readouterr().out
    assert cli.main([*evaluate, "--out", str(run)]) == 0  # its own data keeps its name
    assert json.loads((run / "eval-all-best.json").read_text())["dataset"] == "nuclei-tiles"
