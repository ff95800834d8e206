"""The maintainer tools (``python -m trainer.release``, ``python -m trainer.campaign``) run
from an installed wheel (tester39 #3): the folder above ``trainer/`` is site-packages, not
a checkout, and release would write its registry and model cards there. They refuse in
one line naming what they need, and write nothing; a checkout (a copy without ``.git``
too, as bench/device/start.sh makes) is taken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from _paths import REPO

from trainer import release
from trainer.checkout import checkout_problem


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _installed(tmp_path: Path) -> Path:
    """A site-packages folder holding the package as a wheel installs it (``trainer/``
    and ``napari_tmunet/`` with its weights' registry, no pyproject.toml or docs/)."""
    site = tmp_path / "site-packages"
    ignore = shutil.ignore_patterns("__pycache__", "*.pt")  # the weights: not needed, large
    shutil.copytree(REPO / "trainer", site / "trainer", ignore=ignore)
    shutil.copytree(REPO / "napari_tmunet", site / "napari_tmunet", ignore=ignore)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` with ``site`` first on the path, as an installed package runs."""
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_release_and_campaign_from_an_installed_package_refuse_and_write_nothing(tmp_path):
    """release (with a model to ship) and campaign (status, collect, start) run from the
    installed copy: exit 1, one line naming the folder, that it is no checkout (no
    pyproject.toml), what the tool does there and to run it in a clone; site-packages and
    the folder it was run in are left as they were."""
    site, here = _installed(tmp_path), tmp_path / "work"
    here.mkdir()
    before = _files(site)
    commands = [  # (module, its arguments, what it says it does)
        ("trainer.release", ["--model", "colonoscopy", "colonoscopy", "best.pt", "run"],
         "writes the checkout's napari_tmunet/weights/ (models, registry.json) and docs/models.md"),
        ("trainer.campaign", ["status", "--root", "campaign"], "runs a plan's fits"),
        ("trainer.campaign", ["collect", "--root", "campaign", "--out", "out"], "runs a plan's"),
        ("trainer.campaign", ["start", "--plan", "plan.json", "--root", "campaign", "--data",
                              "data"], "runs a plan's fits from the checkout's folder"),
    ]  # fmt: skip
    for module, args, does in commands:
        done = _run(site, here, "-m", module, *args)
        assert done.returncode == 1, (module, args, done.stderr[-3000:])
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"{module}: {site} is not a checkout of the napari-tmunet "), line
        assert "(no pyproject.toml of napari-tmunet)" in line, line
        assert f"maintainer tool that {does}" in line, line
        assert f"run `python -m {module}` in a clone of the napari-tmunet repository" in line
    assert _files(site) == before
    assert list(here.iterdir()) == []


def test_a_checkout_is_taken_and_what_it_lacks_is_named(tmp_path):
    """The repository, and a copy of its files without .git, are checkouts for release;
    a folder with another project's pyproject.toml is not; a checkout without docs/ is
    named as lacking it."""
    assert checkout_problem(REPO, release.NEEDS) is None
    copy = tmp_path / "code"
    (copy / "napari_tmunet" / "weights").mkdir(parents=True)
    (copy / "docs").mkdir()
    shutil.copy(REPO / "pyproject.toml", copy)
    assert checkout_problem(copy, release.NEEDS) is None
    shutil.rmtree(copy / "docs")
    assert checkout_problem(copy, release.NEEDS) == f"the checkout {copy} lacks docs"
    (copy / "pyproject.toml").write_text('[project]\nname = "trainer"\n')
    assert "is not a checkout" in checkout_problem(copy, release.NEEDS)
