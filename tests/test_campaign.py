"""The campaign supervisor runs a plan's fits and brings each run home once it ends.

Data: the bundled nuclei sample cut into 64 x 64 tiles (no shared data needed); two
tiny fits on the CPU, one of them failing on a bad flag value.
"""

import json
import tarfile
import threading
import time

import pytest
import torch

from napari_tmunet.checkpoint import load_checkpoint
from trainer import campaign, commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")

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
    assert "zoom=3" in log

    again = tmp_path / "again"
    campaign.main(["collect", "--new", "--root", str(root), "--out", str(again)])
    assert list(again.iterdir()) == []  # each run comes home once


def test_plans_merge_in_order_with_their_own_common_args(tmp_path):
    from _paths import REPO

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
