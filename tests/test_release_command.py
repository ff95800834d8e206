"""The model card's training command (``release.fit_command``) is built from the CLI's own
parser and re-parses, through ``napari-tmunet-train fit``'s argument handling, to the
settings of the run it describes (docs/runs and made-up configs)."""

from __future__ import annotations

import json
import shlex
from dataclasses import fields
from pathlib import Path

import pytest
from _paths import REPO

from napari_tmunet.config import _TOPOLOGY, ModelConfig
from napari_tmunet.training.config import TrainConfig
from trainer import cli, commands
from trainer.release import NOT_RECIPE, dataset_of, fit_command, fit_flags
from trainer.report import canonical_dataset

RUNS = sorted(p.parent for p in (REPO / "docs" / "runs").glob("*/*/config.json"))


@pytest.fixture()
def presets(tmp_path, monkeypatch):
    """Empty preset folders: ``--preset`` re-parses without the shared datasets; the
    working directory is a temporary one, where :func:`_reparsed` makes ``--data``'s."""
    for folder, _ in commands.PRESETS.values():
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("TMUNET_DATASETS", str(tmp_path))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def _reparsed(command: str) -> TrainConfig:
    words = shlex.split(command)
    assert words[:2] == ["napari-tmunet-train", "fit"]
    if "--data" in words:  # a relative folder, made under the temporary working directory
        folder = Path(words[words.index("--data") + 1]).resolve()
        assert not folder.is_relative_to(REPO), folder
        folder.mkdir(parents=True, exist_ok=True)
    args = cli.build_parser().parse_args(words[1:])
    return commands.fit_config(args)[0]


def _model(model: ModelConfig) -> dict:
    """The model settings that matter: options of absent parts (pooling axes of a model
    without pooling) are left out, as ``topology_changes`` does."""
    values = model.to_dict()
    return {k: v for k, v in values.items() if values.get(_TOPOLOGY.get(k), True)}


def _assert_reproduces(saved: dict, model_config: dict, dataset: str) -> str:
    """The command's settings are the saved ones: TrainConfig and resolved model."""
    command = fit_command(saved, dataset, model_config)
    again = _reparsed(command)
    want = TrainConfig.from_dict(saved)
    for f in fields(TrainConfig):
        if f.name not in NOT_RECIPE and f.name != "model":
            assert getattr(again, f.name) == getattr(want, f.name), (f.name, command)
    resolved = ModelConfig.from_dict(model_config)
    assert _model(again.model_config(resolved.in_channels)) == _model(resolved), command
    if "--preset" in command:
        assert again.dataset_name == canonical_dataset(dataset)
    else:  # a folder: the run's own label
        assert again.dataset_name == saved.get("dataset_name", ""), command
    return command


@pytest.mark.parametrize("run", RUNS, ids=[f"{r.parent.name}/{r.name}" for r in RUNS])
def test_the_commands_of_saved_runs_reparse_to_their_settings(run, presets):
    saved = json.loads((run / "config.json").read_text())
    info = json.loads((run / "run_info.json").read_text())
    _assert_reproduces(saved, info["model_config"], dataset_of({"run_info": info}))


def test_every_option_kind_round_trips(presets):
    """Negated switches (--no-amp, --no-cuda-graphs, --no-sync-bn), plain switches,
    several values (--size, --mean), custom channels and model topology options."""
    saved = {
        "arch": "tmunet", "variant": "s", "split_seed": 3, "official_split": True,
        "skip_bad": True, "max_images": 7, "init_checkpoint": "/models/start.pt", "in_channels": 3,
        "num_classes": 2, "size": [256, 384], "mode": "tile", "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.2, 0.25], "hflip": 0.5, "vflip": 0.5, "rot90": True, "epochs": 12,
        "steps": 1200, "batch_size": 8, "lr": 3e-4, "gamma": 0.9, "lr_decay_every": 50,
        "weight_decay": 1e-5, "adam_eps": 1e-6, "grad_clip": 1.0, "ce_weight": 1.0,
        "dice_weight": 2.0, "seed": 5, "amp": False, "cuda_graphs": False, "sync_bn": False,
        "eval_every": 2, "overlap": 0.5, "split_file": "split.json", "channels_last": False,
    }  # fmt: skip
    model = ModelConfig.variant("s").to_dict() | {
        "in_channels": 3, "num_classes": 2, "channels": [8, 24, 48, 96, 192],
        "use_dwconv": False, "skip": "concat", "scan": "fused", "pooling": "spatial",
    }  # fmt: skip
    command = _assert_reproduces(saved, model, "MoNuSeg")
    expected = ["--no-amp", "--no-cuda-graphs", "--no-channels-last", "--no-sync-bn",
                "--skip-bad", "--rot90", "--size 256 384", "--channels 8 24 48 96 192",
                "--no-dwconv", "--scan fused"]  # fmt: skip
    assert all(f" {flag}" in command for flag in expected), command


def test_a_presence_head_run_round_trips(presets):
    """A presence-head model's command carries --presence-head (a model option that no
    topology switch covers) and its BCE weight."""
    saved = {"presence_weight": 0.3, "model": {"presence_head": True}, "lr": 1e-3}
    model = ModelConfig.variant("b", presence_head=True).to_dict()
    command = _assert_reproduces(saved, model, "CVCCDB")
    assert " --presence-head" in command and " --presence-weight 0.3" in command, command


def test_an_edge_weighted_run_round_trips(presets):
    """The card's command of a run with --edge-weight carries it."""
    saved = {"edge_weight": 5.0, "lr": 1e-3}
    command = _assert_reproduces(saved, ModelConfig.variant("b").to_dict(), "CVCCDB")
    assert " --edge-weight 5" in command, command


def test_a_setting_no_option_makes_is_refused():
    """A setting the CLI cannot make is named instead of written as a made-up flag."""
    base = ModelConfig.variant("b").to_dict()
    with pytest.raises(ValueError, match=r"split_ratios = \[0.6, 0.2, 0.2\] .* no `napari"):
        fit_command({"split_ratios": [0.6, 0.2, 0.2]}, "CVCCDB", base)
    with pytest.raises(ValueError, match="model.dwconv_order = 'before'"):
        fit_command({}, "CVCCDB", base | {"dwconv_order": "before"})


def test_every_fit_option_sets_a_known_setting():
    """The forward table (commands.FIT_FIELDS / MODEL_FIELDS) covers the parser: each
    option of `fit` names a TrainConfig field, a ModelConfig key or a run option."""
    train = {f.name for f in fields(TrainConfig)}
    model = {f.name for f in fields(ModelConfig)}
    run_options = {"preset", "data", "dataset_name", "config", "run_dir"}
    for key in fit_flags():
        assert key in train | run_options or (key.startswith("model.") and key[6:] in model), key
