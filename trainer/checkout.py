"""The repository checkout that the maintainer tools (``trainer.release``,
``trainer.campaign``) work in.

They read and write the checkout's files (``docs/``, ``napari_tmunet/weights/``) and run
fits from its folder. A built wheel installs the ``trainer`` package with them, but there
the folder above it is site-packages, not a checkout: release would write its model cards
and registry into site-packages. So they refuse, in one line, where that folder holds no
``pyproject.toml`` of napari-tmunet (a copy without ``.git``, as bench/device/start.sh
makes, is a checkout).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

PROJECT = "napari-tmunet"  # pyproject.toml's [project] name


def checkout_problem(root: Path, needs: tuple[str, ...] = ()) -> str | None:
    """Why ``root`` is not a checkout of the napari-tmunet repository holding ``needs``
    (paths relative to it), in a phrase naming what is missing; None when it is one."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        name = project["project"]["name"]
    except (OSError, ValueError, KeyError, TypeError):  # none, unreadable, not TOML, no name
        name = None
    if name != PROJECT:
        return (
            f"{root} is not a checkout of the {PROJECT} repository (no pyproject.toml of {PROJECT})"
        )
    missing = [part for part in needs if not (root / part).exists()]
    if missing:
        return f"the checkout {root} lacks {', '.join(missing)}"
    return None


def require_checkout(tool: str, root: Path, needs: tuple[str, ...], does: str) -> None:
    """Exit with one line when ``root`` is not a checkout holding ``needs``: what is
    missing, what ``tool`` (``python -m`` name) ``does`` there and where to run it."""
    problem = checkout_problem(root, needs)
    if problem:
        raise SystemExit(
            f"{tool}: {problem}. It is a maintainer tool that {does}: run `python -m {tool}` "
            f"in a clone of the {PROJECT} repository, not from an installed package"
        )
