"""``napari-tmunet --smoke`` once a fine-tuned model is active (tester 33, failure 2): the
smoke check runs the shipped sample model and leaves the user's settings as they are; a
checkpoint file given with ``--model`` is read first (the dock's "checking X.pt..."),
then run; Python never aborts at its exit (a worker alive under it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_tmunet import registry

REPO = Path(__file__).resolve().parents[1]
SAMPLE = "colonoscopy"
CRASH_WORDS = ("Aborted", "has been deleted", "Traceback")


@pytest.fixture
def fine_tuned(tmp_path) -> Path:
    """A Fine-tune run's checkpoint (a copy of the shipped model: a real checkpoint file)."""
    shipped = registry.model_for_modality(SAMPLE)
    assert shipped is not None  # shipped in the package
    best = tmp_path / "runs" / "20261205-052007" / "train" / "best.pt"
    best.parent.mkdir(parents=True)
    shutil.copyfile(shipped.path, best)
    return best


def smoke(tmp_path, settings: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m napari_tmunet --smoke`` on X (xcb) with the settings folder ``settings``;
    (the finished process, its JSON report)."""
    report = tmp_path / "report.json"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", NAPARI_TMUNET_CONFIG_DIR=str(settings))
    command = [sys.executable, "-m", "napari_tmunet", "--smoke", "--sample", SAMPLE]
    command += ["--device", "cpu", "--screenshot", str(tmp_path / "shot.png")]
    command += ["--report", str(report), *extra]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert not any(word in done.stderr for word in CRASH_WORDS), done.stderr[-4000:]
    return done, json.loads(report.read_text())


def test_smoke_runs_the_shipped_model_whatever_model_is_active(tmp_path, fine_tuned):
    """A user's fine-tuned model made active: the smoke check (of the installation) runs
    the shipped model, says so, passes, and the settings file is left byte for byte."""
    settings = tmp_path / "settings"
    settings.mkdir()
    saved = {
        "active_model": {
            "current": {
                "model": str(fine_tuned),
                "label": "fine-tuned on 20 2026-12-05 05:20:13",
                "modality": SAMPLE,
                "lineage": ["TM-UNet colonoscopy"],
            },
            "previous": {"model": "TM-UNet colonoscopy", "modality": SAMPLE},
        }
    }
    (settings / "settings.json").write_text(json.dumps(saved, indent=2))
    before = (settings / "settings.json").read_bytes()
    done, report = smoke(tmp_path, settings)
    assert report["model"] == registry.model_for_modality(SAMPLE).name
    assert "Runs TM-UNet colonoscopy" in done.stdout
    assert "a model you made active is not used" in done.stdout
    assert report["dice"] > 0.5
    assert (settings / "settings.json").read_bytes() == before
    assert sorted(p.name for p in settings.iterdir()) == ["settings.json"]


def test_smoke_with_a_checkpoint_file_waits_for_it_to_be_read(tmp_path, fine_tuned):
    """``--model PATH``: the dock reads the file first ("checking best.pt..."), then runs
    it; the smoke check waits for that run, not only for the click."""
    settings = tmp_path / "settings"
    settings.mkdir()
    _, report = smoke(tmp_path, settings, "--model", str(fine_tuned))
    assert report["model"] == str(fine_tuned)
    assert report["foreground_pixels"] > 0 and report["dice"] > 0.5
    assert not list(settings.iterdir())  # its own settings: nothing of the user's written


EXIT_DURING_READ = """
import time
from qtpy.QtWidgets import QApplication
app = QApplication([])
from napari_tmunet._widget_common import LatestRead
reads = LatestRead(lambda key: time.sleep(1.5) or key, failed=lambda key, err: None)
reads.start("a checkpoint file")  # as a dock reads a file chosen a moment ago
print("exiting")
"""


def test_python_ends_cleanly_while_a_file_is_being_read(tmp_path):
    """A script (or the smoke check, failing) that ends while a dock reads a checkpoint
    file: Python waits for the read; on main it aborted (exit 134, "WorkerBaseSignals has
    been deleted")."""
    script = tmp_path / "exit_during_read.py"
    script.write_text(EXIT_DURING_READ)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "exiting", done.stderr[-3000:]
    assert not any(word in done.stderr for word in CRASH_WORDS), done.stderr[-3000:]
