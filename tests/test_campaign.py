"""The campaign supervisor runs a plan's fits and brings each run home once it ends.

Data: the bundled nuclei sample cut into 64 x 64 tiles (no shared data needed); two
tiny fits on the CPU, one of them failing on a bad flag value.
"""

import json
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch
from _paths import REPO

from napari_tmunet.checkpoint import load_checkpoint
from trainer import campaign, commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch):
    """The supervisor run in these tests looks at its runs every 0.2 s, not every 5 s:
    a run's end is seen (and the next run started) at once, not up to 5 s later."""
    monkeypatch.setattr(campaign, "POLL_S", 0.2)


FIT_ARGS = [
    "--variant", "t", "--size", "32", "--batch-size", "4", "--steps", "2", "--epochs", "2",
    "--device", "cpu", "--no-progress", "--no-efficiency", "--no-test", "--num-workers", "1",
]  # fmt: skip


def _stop_when_ended(root, names, timeout=300):
    """Touch ``root/STOP`` once every run in ``names`` has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = json.loads((root / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        if all(state.get(n, {}).get("state") in ("done", "failed") for n in names):
            break
        time.sleep(0.5)
    (root / "STOP").touch()


def test_supervise_then_collect_new_once_per_run(tmp_path):
    data = tmp_path / "data"
    commands._write_demo_tiles(data / "tiles")
    plan = {
        "common": FIT_ARGS,
        "runs": [
            {"name": "tiny", "data": "tiles", "dataset": "demo", "args": []},
            {"name": "broken", "data": "tiles", "dataset": "demo", "args": ["--zoom", "3"]},
            {"name": "waiting", "data": "not-here.npz", "dataset": "demo", "args": []},
        ],
    }
    root = tmp_path / "campaign"
    root.mkdir()
    (root / "plan.json").write_text(json.dumps(plan))
    # "waiting" never gets its data: STOP once the other two have ended
    watcher = threading.Thread(target=_stop_when_ended, args=(root, ("tiny", "broken")))
    watcher.start()
    campaign.supervise(root, data, gpus=[0], slots=2)
    watcher.join()
    state = json.loads((root / "state.json").read_text())
    assert state["tiny"]["state"] == "done" and state["broken"]["state"] == "failed"
    assert state["waiting"]["state"] == "pending"

    out = tmp_path / "out"
    campaign.main(["collect", "--new", "--root", str(root), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["broken.tar", "tiny.tar"]
    with tarfile.open(out / "tiny.tar") as tar:
        names = set(tar.getnames())
        assert {"tiny/metrics.jsonl", "tiny/config.json", "tiny/train.log"} <= names
        tar.extract("tiny/best-half.pt", tmp_path / "home", filter="data")
    half = load_checkpoint(tmp_path / "home" / "tiny" / "best-half.pt", "cpu")
    best = load_checkpoint(root / "runs" / "tiny" / "best.pt", "cpu")
    for key, value in best.model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(half.model.state_dict()[key], value, rtol=1e-2, atol=1e-3), key
    with tarfile.open(out / "broken.tar") as tar:  # no model, but the log says why
        log = tar.extractfile("broken/train.log").read().decode()
        assert "best-half.pt" not in " ".join(tar.getnames())
    assert "--zoom 3: expected from 0 to 1" in log

    again = tmp_path / "again"
    campaign.main(["collect", "--new", "--root", str(root), "--out", str(again)])
    assert list(again.iterdir()) == []  # each run comes home once


def test_plan_args_name_the_runs_and_data_folders(tmp_path):
    """{runs} and {data} in a run's args become the campaign's folders."""
    args = ["--init-checkpoint", "{data}/trunk.pt", "--x", "{runs}/b/last.pt"]
    plan = {"runs": [{"name": "a", "data": "d.npz", "dataset": "demo", "args": args}]}
    (cmd,) = [job["cmd"] for job in campaign.jobs_of(plan, tmp_path / "data", tmp_path / "root")]
    assert cmd[cmd.index("--init-checkpoint") + 1] == str(tmp_path / "data" / "trunk.pt")
    assert cmd[cmd.index("--x") + 1] == str(tmp_path / "root" / "runs" / "b" / "last.pt")


def test_a_run_after_another_starts_from_its_checkpoint_or_is_skipped(tmp_path):
    """Pre-training, then a fine-tune from its last.pt ({runs} in the args); a run after
    a failed one is skipped, and the supervisor ends without a STOP."""
    data = tmp_path / "data"
    commands._write_demo_tiles(data / "tiles")
    plan = {
        "common": FIT_ARGS,
        "runs": [
            {"name": "tuned", "data": "tiles", "dataset": "demo", "after": "pre",
             "args": ["--init-checkpoint", "{runs}/pre/last.pt"]},
            {"name": "pre", "data": "tiles", "dataset": "demo", "args": ["--pretext", "inpaint"]},
            {"name": "broken", "data": "tiles", "dataset": "demo", "args": ["--zoom", "3"]},
            {"name": "orphan", "data": "tiles", "dataset": "demo", "after": "broken", "args": []},
        ],
    }  # fmt: skip
    root = tmp_path / "campaign"
    root.mkdir()
    (root / "plan.json").write_text(json.dumps(plan))
    campaign.supervise(root, data, gpus=[0], slots=2)
    state = json.loads((root / "state.json").read_text())
    assert {n: s["state"] for n, s in state.items()} == {
        "tuned": "done", "pre": "done", "broken": "failed", "orphan": "skipped",
    }  # fmt: skip
    assert state["tuned"]["started"] >= state["pre"]["ended"]
    log = (root / "logs" / "tuned.log").read_text()
    assert f"pre-trained trunk of {root / 'runs' / 'pre' / 'last.pt'}" in log
    assert load_checkpoint(root / "runs" / "pre" / "last.pt").metadata["pretext"] == "inpaint"
    assert "pretext" not in load_checkpoint(root / "runs" / "tuned" / "best.pt").metadata

    # collect --new brings the pre-training run's last.pt home (no best.pt), in half
    # precision and without its optimiser state, as the fine-tune's best.pt
    out = tmp_path / "out"
    campaign.main(["collect", "--new", "--root", str(root), "--out", str(out)])
    for name, half in (("pre", "last-half.pt"), ("tuned", "best-half.pt")):
        with tarfile.open(out / f"{name}.tar") as tar:
            assert f"{name}/{half}" in tar.getnames()
            tar.extract(f"{name}/{half}", tmp_path / "home", filter="data")
    home = tmp_path / "home" / "pre" / "last-half.pt"
    raw = torch.load(home, map_location="cpu", weights_only=False)
    assert raw["weights_dtype"] == "float16" and not raw.get("training_state")
    assert home.stat().st_size < 0.6 * (root / "runs" / "pre" / "last.pt").stat().st_size
    assert load_checkpoint(home).metadata["pretext"] == "inpaint"

    lonely = tmp_path / "lonely.json"
    lonely.write_text(json.dumps({"runs": [plan["runs"][0]]}))
    with pytest.raises(SystemExit, match="tuned comes after pre, which is not in the plans"):
        campaign.merge_plans([lonely])


@pytest.mark.parametrize(
    "after, message",
    [
        ({"pre": "pre"}, 'run pre comes after itself: remove its "after"'),
        ({"pre": "tuned", "tuned": "pre"}, "runs pre -> tuned -> pre wait for each other"),
        (
            {"a": "c", "c": "pre", "pre": "tuned", "tuned": "a"},
            "runs pre -> tuned -> a -> c -> pre",
        ),
        ({"a": "c", "c": "tuned", "tuned": "c"}, "runs tuned -> c -> tuned wait"),
    ],
)
def test_start_refuses_runs_that_wait_for_themselves(tmp_path, monkeypatch, after, message):
    """A run after itself, or runs after each other in a ring, would never start: `start`
    exits with one line naming them, before writing anything."""

    def no_supervisor(*args, **kwargs):  # it would wait forever
        raise AssertionError("a supervisor was started")

    monkeypatch.setattr(campaign.subprocess, "Popen", no_supervisor)
    runs = [{"name": n, "data": "tiles", "dataset": "demo", "args": [], "after": after.get(n)}
            for n in ("pre", "tuned", "a", "c")]  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps({"runs": runs}))
    root = tmp_path / "campaign"
    with pytest.raises(SystemExit, match=message) as raised:
        campaign.main(["start", "--root", str(root), "--data", str(tmp_path),
                       "--plan", str(tmp_path / "plan.json")])  # fmt: skip
    assert "\n" not in str(raised.value) and not root.exists()


def test_start_with_relative_root_and_data_runs_them_from_here(tmp_path, monkeypatch):
    """`start --root camp --data data --plan plan.json` from another folder: the
    supervisor (which runs in the checkout) finds the plan and the data, and its run ends
    (failed: a bad flag value) in ./camp."""
    monkeypatch.chdir(tmp_path)
    commands._write_demo_tiles(tmp_path / "data" / "tiles")
    run = {"name": "broken", "data": "tiles", "dataset": "demo", "args": ["--zoom", "3"]}
    (tmp_path / "plan.json").write_text(json.dumps({"common": FIT_ARGS, "runs": [run]}))
    campaign.main(["start", "--root", "camp", "--data", "data", "--plan", "plan.json"])
    state_file, deadline = tmp_path / "camp" / "state.json", time.time() + 120
    while time.time() < deadline and '"failed"' not in (
        state_file.read_text() if state_file.is_file() else ""
    ):
        time.sleep(0.5)
    log = (tmp_path / "camp" / "supervisor.log").read_text()
    assert json.loads(state_file.read_text())["broken"]["state"] == "failed", log
    assert (
        "--zoom 3: expected from 0 to 1" in (tmp_path / "camp" / "logs" / "broken.log").read_text()
    )
    plan = json.loads((tmp_path / "camp" / "plan.json").read_text())
    assert [r["name"] for r in plan["runs"]] == ["broken"]


def _fake_ended_runs(root, model_kib):
    """Runs that have ended: ``{name: KiB of best.pt or None}``, in this order, each with a
    config, a log and (unless None) a best.pt of random bytes."""
    state = {}
    for name, kib in model_kib.items():
        run_dir = root / "runs" / name
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
        if kib is not None:
            (run_dir / "best.pt").write_bytes(os.urandom(kib * 1024))
        (root / "logs").mkdir(exist_ok=True)
        (root / "logs" / f"{name}.log").write_text(f"{name} trained\n")
        state[name] = {"state": "done" if kib is not None else "failed"}
    (root / "state.json").write_text(json.dumps(state))


def _collect_new(root, out, *extra):
    campaign.main(["collect", "--new", "--root", str(root), "--out", str(out), *extra])
    collected = json.loads((root / "collected.json").read_text())
    return sorted(p.stem for p in out.iterdir()), collected


@pytest.fixture
def copy_as_half(monkeypatch):
    """``_save_half`` copies the bytes (the fake models are no checkpoints)."""
    monkeypatch.setattr(campaign, "_save_half", lambda src, dst: Path(shutil.copy(src, dst)))


def test_collect_new_keeps_to_its_budget_and_leaves_the_rest_for_the_next_call(
    tmp_path, copy_as_half, capsys
):
    root = tmp_path / "campaign"
    _fake_ended_runs(root, {"a": 300, "b": 300, "c": 300, "d": 300, "e": None})
    first, collected = _collect_new(root, tmp_path / "out1", "--max-mib", "1")
    assert first == ["a", "b", "c"] == collected  # a fourth 300 KiB would pass 1 MiB
    assert sum(p.stat().st_size for p in (tmp_path / "out1").iterdir()) <= 1 << 20
    assert "next call: ['d', 'e']" in capsys.readouterr().out
    second, collected = _collect_new(root, tmp_path / "out2", "--max-mib", "1")
    assert second == ["d", "e"] and collected == ["a", "b", "c", "d", "e"]
    with tarfile.open(tmp_path / "out2" / "d.tar") as tar:
        assert set(tar.getnames()) == {"d/config.json", "d/train.log", "d/best-half.pt"}
    third, collected = _collect_new(root, tmp_path / "out3", "--max-mib", "1")
    assert third == [] and len(collected) == 5  # each run comes home once


def test_collect_new_leaves_a_model_too_large_for_one_call_on_the_machine(
    tmp_path, copy_as_half, capsys
):
    root = tmp_path / "campaign"
    _fake_ended_runs(root, {"small": 100, "unet": 2048, "mid": 700})
    out = tmp_path / "out"
    names, collected = _collect_new(root, out, "--max-mib", "1.5", "--max-file-mib", "0.5")
    assert names == ["mid", "small", "unet"] and collected == ["small", "unet", "mid"]
    printed = capsys.readouterr().out
    with tarfile.open(out / "small.tar") as tar:
        assert "small/best-half.pt" in tar.getnames()
    for name in ("unet", "mid"):  # over the budget, over the file limit: tar without model
        with tarfile.open(out / f"{name}.tar") as tar:
            assert set(tar.getnames()) == {f"{name}/config.json", f"{name}/train.log"}
        kept = root / "runs" / name / "best-half.pt"
        assert kept.read_bytes() == (root / "runs" / name / "best.pt").read_bytes()
        assert f"stays on this machine: {kept}" in printed


def test_plans_merge_in_order_with_their_own_common_args(tmp_path):
    plans = [REPO / "bench/plans/generalist-4.json", REPO / "bench/plans/table1-five-seeds.json"]
    merged = campaign.merge_plans(plans)
    originals = [json.loads(p.read_text()) for p in plans]
    names = [r["name"] for p in originals for r in p["runs"]]
    assert [r["name"] for r in merged["runs"]] == names and merged["common"] == []
    first, last = merged["runs"][0], merged["runs"][-1]
    assert first["args"] == originals[0]["common"] + originals[0]["runs"][0]["args"]
    assert last["args"] == originals[1]["common"] + originals[1]["runs"][-1]["args"]
    chosen = campaign.merge_plans(plans, only=["NUC-monuseg-*", "*-tmunet-b-seed1"])
    assert [r["name"] for r in chosen["runs"]] == [
        "NUC-monuseg-A-tmunet-b", "NUC-monuseg-B-tmunet-b", "CVCCDB-tmunet-b-seed1",
        "MoNuSeg-tmunet-b-seed1", "UDIAT-tmunet-b-seed1",
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="no run of"):
        campaign.merge_plans(plans, only=["nothing-*"])
    root = tmp_path / "campaign"
    root.mkdir()
    (tmp_path / "twice.json").write_text(json.dumps(originals[0]))
    with pytest.raises(SystemExit, match="unique"):
        twice = ["--plan", str(plans[0]), "--plan", str(tmp_path / "twice.json")]
        campaign.main(["start", "--root", str(root), "--data", str(tmp_path), *twice])
    assert not list(root.glob("supervisor.log"))  # nothing started


def test_a_wrong_plan_or_root_is_one_line_and_writes_nothing(tmp_path):
    """A mistyped --plan, a plan that is not one, or a --root without a campaign: a
    SystemExit naming the path (one line, exit 1), and no --out or STOP left behind."""
    root, out = tmp_path / "no-campaign", tmp_path / "out"
    start = ["start", "--root", str(root), "--data", str(tmp_path), "--plan"]
    with pytest.raises(SystemExit, match=f"plan file {tmp_path / 'plna.json'} does not exist"):
        campaign.main([*start, str(tmp_path / "plna.json")])
    (tmp_path / "notes.json").write_text('{"common": []}')
    with pytest.raises(SystemExit, match="notes.json: expected .*missing 'runs'"):
        campaign.main([*start, str(tmp_path / "notes.json")])
    root.mkdir()
    for args in (["collect", "--out", str(out)], ["collect", "--new", "--out", str(out)],
                 ["finish", "--wait", "1"]):  # fmt: skip
        with pytest.raises(SystemExit, match=f"{root} holds no campaign .*check --root"):
            campaign.main([args[0], "--root", str(root), *args[1:]])
    assert not out.exists() and not list(root.iterdir())


@pytest.mark.parametrize(
    "plan", sorted((REPO / "bench/plans").glob("*.json")), ids=lambda p: p.name
)
def test_every_plan_run_parses_as_a_fit_command(plan, tmp_path):
    """A typo in a plan would cost a device session: each run's command line must parse."""
    from trainer.cli import build_parser

    parser = build_parser()
    for job in campaign.jobs_of(campaign.load_plan(plan), tmp_path, tmp_path):
        if job["cmd"][3] != "fit":
            continue  # efficiency jobs
        args = parser.parse_args(job["cmd"][3:])
        assert args.command == "fit" and args.run_dir.endswith(job["name"])


def test_a_fit_stopped_by_a_signal_is_stopped_not_failed():
    """fit exits 130 (Ctrl-C) or 143 (SIGTERM) after a clean stop: last.pt kept, to resume."""
    assert [campaign.ended_state(rc) for rc in (0, 130, 143, 1, -9)] == [
        "done", "stopped", "stopped", "failed", "failed",
    ]  # fmt: skip


def test_finish_never_tests_a_validation_probe(tmp_path, capsys):
    """`finish` tests the best checkpoint of a run that a stop cut short of its own test,
    but never one whose config says --no-test (a probe chosen on validation only), and
    never one that ended by itself (it ran its own test, or was told not to)."""
    root = tmp_path / "campaign"
    runs = {
        "probe": ("stopped", False),
        "finished-probe": ("done", False),
        "cut": ("stopped", True),
    }
    for name, (_, test) in runs.items():
        run = root / "runs" / name
        run.mkdir(parents=True)
        (run / "best.pt").write_bytes(b"not a checkpoint")  # evaluate fails on it: output hidden
        (run / "config.json").write_text(json.dumps({"test": test}))
    state = {name: {"state": st, "pid": 0} for name, (st, _) in runs.items()}
    (root / "state.json").write_text(json.dumps(state))
    campaign.main(["finish", "--root", str(root), "--wait", "1"])
    printed = capsys.readouterr().out
    assert "testing the best checkpoint of stopped run cut" in printed
    assert "probe" not in printed


def test_plain_collect_brings_a_pretraining_runs_model_as_collect_new_does(tmp_path):
    """A pre-training run has last.pt and no best.pt: plain ``collect`` puts its model in
    results.tar.gz as ``runs/<run>/last-half.pt`` (half precision, no optimiser), the file
    ``collect --new`` brings; a run with best.pt brings no model unless it ships."""
    from napari_tmunet.checkpoint import save_checkpoint
    from napari_tmunet.config import InputConfig, ModelConfig
    from napari_tmunet.model import build_model

    root = tmp_path / "campaign"
    config = ModelConfig.variant("t", num_classes=3)
    for name, file, meta in (("pre", "last.pt", {"pretext": "inpaint"}), ("seg", "best.pt", {})):
        (root / "runs" / name).mkdir(parents=True)
        (root / "runs" / name / "config.json").write_text("{}")
        save_checkpoint(root / "runs" / name / file, build_model(config), config,
                        InputConfig(size=(32, 32)), metadata=meta,
                        training_state={"optimizer": {"step": torch.zeros(1000)}})  # fmt: skip
    plan = {"runs": [{"name": n, "data": "x", "args": []} for n in ("pre", "seg")]}
    (root / "plan.json").write_text(json.dumps(plan))
    (root / "state.json").write_text(json.dumps({"pre": {"state": "done"}}))
    campaign.main(["collect", "--root", str(root), "--out", str(tmp_path / "out")])
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
        models = [n for n in tar.getnames() if n.endswith(".pt")]
        assert models == ["runs/pre/last-half.pt"], models
        tar.extract("runs/pre/last-half.pt", tmp_path / "home", filter="data")
    campaign.main(["collect", "--new", "--root", str(root), "--out", str(tmp_path / "new")])
    with tarfile.open(tmp_path / "new" / "pre.tar") as tar:
        tar.extract("pre/last-half.pt", tmp_path / "new-home", filter="data")
    plain, new = tmp_path / "home" / "runs" / "pre", tmp_path / "new-home" / "pre"
    for home in (plain, new):
        raw = torch.load(home / "last-half.pt", map_location="cpu", weights_only=False)
        assert raw["weights_dtype"] == "float16" and not raw.get("training_state")
        assert load_checkpoint(home / "last-half.pt").metadata["pretext"] == "inpaint"
