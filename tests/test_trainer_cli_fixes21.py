"""napari-tmunet-train on the command line (tester21): `cache` never replaces a user's
file and takes a folder as OUTPUT, `--device cuda` without a GPU is one line (exit 2)
in fit, evaluate and demo, and Ctrl-C while torch is imported ends with one line and
exit 130.

Data: the bundled nuclei sample cut into 16 tiles of 64 x 64 (no shared data needed).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _paths import REPO

from napari_tmunet.data.cache import load_cache
from trainer import cli, commands


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    return commands._write_demo_tiles(tmp_path_factory.mktemp("data") / "tiles")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cache_keeps_a_users_file_and_takes_a_folder(tiles, tmp_path, capsys):
    """OUTPUT that is a dataset's own mask: refused before decoding, also with
    --overwrite, the mask untouched byte for byte; a folder (existing, or named with a
    trailing slash) gets <dataset>.npz; an existing cache is kept unless --overwrite."""
    mask = tiles / "masks" / "tile_0_0.png"
    before = _md5(mask)
    for extra in ([], ["--overwrite"]):
        assert cli.main(["cache", "--data", str(tiles), str(mask), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{mask} exists and is not a cache file that napari-tmunet-train wrote" in err
        assert "decode" not in err and "Traceback" not in err, err  # refused before decoding
        assert _md5(mask) == before

    folder = tmp_path / "existing"
    folder.mkdir()
    assert cli.main(["cache", "--data", str(tiles), str(folder)]) == 0
    written = folder / "tiles.npz"
    assert f"{written}: 16 pairs" in capsys.readouterr().out
    assert len(load_cache(written)) == 16 and sorted(os.listdir(folder)) == ["tiles.npz"]

    old = _md5(written)
    assert cli.main(["cache", "--data", str(tiles), str(written), "--max-side", "32"]) == 2
    err = capsys.readouterr().err
    assert f"{written} exists (a cache file): it is kept; pass --overwrite" in err, err
    assert _md5(written) == old
    args = ["cache", "--data", str(tiles), str(folder), "--max-side", "32", "--overwrite"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert load_cache(written).images[0].shape[:2] == (32, 32)  # the new build replaced it

    slash = str(tmp_path / "caches") + os.sep
    assert cli.main(["cache", "--data", str(tiles), slash]) == 0
    capsys.readouterr()
    assert (tmp_path / "caches").is_dir() and len(load_cache(Path(slash) / "tiles.npz")) == 16


def test_a_failed_cache_build_keeps_the_old_cache_and_leaves_nothing(tiles, tmp_path, capsys):
    """A build that fails on a damaged image (after decoding began) keeps the existing
    cache byte for byte, and leaves no temporary file and no new folder."""
    broken = tmp_path / "broken"
    for part in ("images", "masks"):
        (broken / part).mkdir(parents=True)
        for path in (tiles / part).iterdir():
            (broken / part / path.name).write_bytes(path.read_bytes())
    png = broken / "images" / "tile_1_1.png"
    png.write_bytes(png.read_bytes()[:200])  # cut short
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["cache", "--data", str(tiles), str(out / "c.npz")]) == 0
    old = _md5(out / "c.npz")
    assert cli.main(["cache", "--data", str(broken), str(out / "c.npz"), "--overwrite"]) == 2
    assert "tile_1_1.png" in capsys.readouterr().err
    assert _md5(out / "c.npz") == old and os.listdir(out) == ["c.npz"]
    assert cli.main(["cache", "--data", str(broken), str(tmp_path / "new" / "c.npz")]) == 2
    assert not (tmp_path / "new").exists()
    assert cli.main(["cache", "--data", str(tiles), str(tmp_path / "x.npz"), "--max-side", "-1"])
    assert "--max-side -1: expected 0" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line(tiles, tmp_path, capsys, monkeypatch):
    """fit, evaluate and demo with --device cuda on a CPU-only machine: one line naming
    the value and what to choose, exit 2, as napari-tmunet-predict; nothing written."""
    monkeypatch.chdir(tmp_path)
    said = "device='cuda' but CUDA is not available (no GPU, or a CPU-only torch build); "
    said += "choose 'auto' or 'cpu'."
    commands_ = {
        "fit": ["fit", "--data", str(tiles), "--steps", "1", "--run-dir", "run"],
        "evaluate": ["evaluate", "colonoscopy", "--data", str(tiles)],
        "demo": ["demo", "--run-dir", "rdemo"],
    }
    for name, argv in commands_.items():
        assert cli.main([*argv, "--device", "cuda"]) == 2, name
        err = capsys.readouterr().err
        assert err.splitlines()[-1] == f"napari-tmunet-train {name}: error: {said}", err
        assert "Traceback" not in err
    assert os.listdir(tmp_path) == []  # no run folder, no demo data, no results


# The console script, with a Ctrl-C of its own the moment torch starts to import: an
# import hook sends SIGINT to the process, so the signal lands inside that import whatever
# the machine's load (a signal sent from outside can arrive after the command has ended).
CTRL_C_AT_TORCH = """
import os, signal, sys

class CtrlCAtTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCAtTorch())
from trainer.cli import main
sys.exit(main())
"""


def test_ctrl_c_while_torch_is_imported_is_one_line(tmp_path):
    """SIGINT while main() imports torch: exit 130 and "interrupted", no traceback, no run
    folder. The command would end with exit 2 (no such data) if the signal were missed, and
    with a traceback if torch were imported before main() handles Ctrl-C."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", CTRL_C_AT_TORCH, "fit", "--data", str(tmp_path / "none"),
           "--device", "cpu", "--run-dir", str(run)]  # fmt: skip
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == ["interrupted"], proc.stderr[-3000:]
    assert not run.exists() and proc.stdout == ""


class _Terminal(io.StringIO):
    """stderr as a terminal, where progress bars are drawn."""

    def isatty(self) -> bool:
        return True


def test_cache_draws_its_bar_only_on_a_terminal(tiles, tmp_path, monkeypatch, capsys):
    """A build logged to a file holds no bar (it held every redraw, "decode: 1%|..."),
    as train's and predict's bars; on a terminal the bar is drawn."""
    assert cli.main(["cache", "--data", str(tiles), str(tmp_path / "log.npz")]) == 0
    err = capsys.readouterr().err
    assert "pair/s" not in err and "decode" not in err, err
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["cache", "--data", str(tiles), str(tmp_path / "tty.npz")]) == 0
    assert "pair/s" in terminal.getvalue()
