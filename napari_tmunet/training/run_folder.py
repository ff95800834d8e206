"""The run folder: its checks, log, metrics file, curves and provenance.

Files (only rank 0 writes)::

    config.json        TrainConfig as a plain dict (``TrainConfig.load`` reads it)
    run_info.json      resolved model/input config, dataset summary, versions, world size
    split.json         {"train": [...], "valid": [...], "test": [...]}
    metrics.jsonl      one JSON line per period: step, epoch, train_loss, lr, time, val_*;
                       a stop adds one (``stopped``) with the loss since the last period's
                       end, or that period's loss when the stop came right at its end
    curves.png         training loss and validation Dice per period
    best.pt, last.pt   best validation Dice so far; the latest state for exact resume
    test_metrics.csv   per test image; summary.json: test aggregate, best validation score
    train.log          the log of every session of this run
    .napari-tmunet.lock  held while a process trains here (``storage.folder_lock``)

A start removes the ``.NAME.XXXXXXXX.tmp`` files that a killed write left behind.

:func:`read_metrics` is the one reader of ``metrics.jsonl`` (the engine's resume, the
release tool and the Fine-tune dock use it; the campaign supervisor, which must not import
torch, calls its parser ``storage.read_json_lines`` on the same file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from shlex import quote

import numpy as np
import torch

from ..checkpoint_header import read_header
from ..storage import atomic_path, jsonable, read_json_lines
from .config import RESUMABLE_CHANGES, TrainConfig

logger = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".napari-tmunet.lock"  # storage.folder_lock's; held while a run trains
# What a start writes before its first checkpoint: without a checkpoint beside them they
# are not a run yet, so a new start may replace them (a kill in the first period).
START_FILES = {"config.json", "split.json", "metrics.jsonl", "run_info.json", "train.log"}
# Everything a run writes in its folder (``evaluate`` adds eval-*.csv/json beside a
# checkpoint, overwrite adds previous-*/): overwrite moves only these, so that nothing
# else in the folder (a dataset, notes) is ever taken for an earlier run.
RUN_FILES = START_FILES | {"curves.png", "best.pt", "last.pt", "test_metrics.csv", "summary.json"}
RUN_FILE_PATTERNS = re.compile(r"eval-.+\.(csv|json)|previous-.+")
# storage.atomic_path's temporaries: "." + name + "." + mkstemp's 8 random characters
STALE_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
# Files that the system, not the user, leaves in any folder; neither a run's nor a user's.
SYSTEM_FILES = {LOCK_FILE, ".DS_Store", "Thumbs.db", "desktop.ini"}


class RunDirError(RuntimeError):
    """A run folder that cannot be used as asked (not empty, nothing to resume, ...)."""


class RunFinishedError(RunDirError):
    """A resumption of a run that has trained all its steps: nothing to do, its files kept."""


def prepare_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    """Check that ``run_dir`` can take the run ``cfg`` asks for; make it (rank 0 only).

    A new run needs an empty (or missing) folder, or one that holds only what a start
    writes before its first checkpoint (a run killed that early starts again), unless
    ``overwrite``, which moves the earlier run's files to ``previous-<time>/``; a
    resumption needs ``last.pt`` and the same settings (except ``RESUMABLE_CHANGES``).
    A folder that holds files no run writes (``RUN_FILES``) is no place for a new run,
    with or without overwrite: those files are named and left where they are.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run folder {run_dir} exists and is not a folder")
    names = _folder_names(run_dir)
    if cfg.resume:
        _check_resume(cfg, run_dir, names)
        return
    others = [n for n in names if not _written_by_run(n)]
    if others:
        raise RunDirError(_not_for_a_new_run(run_dir, names, others))
    earlier = [n for n in names if n != "train.log" and not n.startswith("previous-")]
    if not cfg.overwrite and not set(earlier) <= START_FILES:
        raise RunDirError(_holds_a_run(run_dir, names))
    if earlier:
        backup = _new_backup_folder(run_dir)
        for name in earlier:
            shutil.move(str(run_dir / name), str(backup / name))
        logger.warning("moved the earlier run in %s to %s", run_dir, backup)
    run_dir.mkdir(parents=True, exist_ok=True)


def _check_resume(cfg: TrainConfig, run_dir: Path, names: list[str]) -> None:
    """Refuse to resume without ``last.pt`` (saying what the folder is), with new settings,
    or with a ``last.pt`` that another run saved (:func:`_check_last_is_the_runs`)."""
    if not (run_dir / "last.pt").is_file():
        raise RunDirError(f"cannot resume: {_no_checkpoint(run_dir, names)}")
    saved_path = run_dir / "config.json"
    if saved_path.is_file():
        saved = TrainConfig.load(saved_path).to_dict()
        changed = _changed_settings(saved, cfg.to_dict())
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in changed.items())
            raise RunDirError(
                f"cannot resume {run_dir} with a different configuration ({detail}); "
                "resume with the saved settings or start a new run folder"
            )
    _check_last_is_the_runs(run_dir)


def _changed_settings(saved: dict, now: dict) -> dict:
    """The settings of ``now`` that differ from ``saved`` and that a resumption may not
    change (all but ``RESUMABLE_CHANGES``), by name: the one rule for config.json against
    the flags and for last.pt's record against config.json."""
    keys = sorted(k for k in now if k not in RESUMABLE_CHANGES and k in saved)
    return {k: now[k] for k in keys if now[k] != saved[k] and not _same_start(k, now, saved)}


def _same_start(key: str, a: dict, b: dict) -> bool:
    """Whether ``init_checkpoint`` names one file in ``a`` and ``b``, where older versions
    saved it relative to a working directory ("seg/last.pt") and newer ones absolute: the
    relative path is the end of the absolute one."""
    if key != "init_checkpoint" or not a[key] or not b[key]:
        return False
    paths = sorted((Path(a[key]), Path(b[key])), key=lambda p: p.is_absolute())
    relative, other = paths
    n = len(relative.parts)
    return not relative.is_absolute() and other.parts[-n:] == relative.parts


def checkpoint_progress(path: str | os.PathLike) -> tuple[int | None, int]:
    """(step, total steps) of a run's checkpoint (``last.pt``: the trainer's in its run
    folder, a fine-tuning run's in ``train/``), read from its header, no weights loaded.
    The step is ``metadata.step`` (else ``training_state.step``: both are written), None
    where it is not recorded or the file cannot be read; the total is ``train_config``'s
    ``steps``, 0 where the run counted epochs or it is not recorded."""
    header = read_header(path) or {}
    metadata = _dict(header.get("metadata"))
    step = metadata.get("step", _dict(header.get("training_state")).get("step"))
    total = _dict(metadata.get("train_config")).get("steps")
    return (
        step if isinstance(step, int) else None,
        total if isinstance(total, int) and total > 0 else 0,
    )


def _dict(value) -> dict:
    """``value`` where it is a dict (a header's part), else an empty one."""
    return value if isinstance(value, dict) else {}


def _check_last_is_the_runs(run_dir: Path) -> None:
    """Refuse, before anything is written, a ``last.pt`` that is not this run's (one copied
    in from another run folder): resuming it would train that run's weights, optimiser and
    schedule on this run's data and mix the two runs' records.

    last.pt records the settings it was trained with (``metadata.train_config``), its
    step and the training time at that step (``training_state``); the run saved it right
    after writing that step's line in metrics.jsonl (``time`` the same). Its settings
    must be config.json's (but ``RESUMABLE_CHANGES``), and metrics.jsonl must hold a line
    of its step with its time. Checks whose record is missing (an older run) are left out.
    """
    last = run_dir / "last.pt"
    payload = read_header(last)
    if payload is None:  # not readable without torch: the full read
        from ..checkpoint import CheckpointError, read_checkpoint

        try:
            payload = read_checkpoint(last)
        except CheckpointError:  # damaged: the engine's read of it says so
            return
    metadata = payload.get("metadata") or {}
    state = payload.get("training_state") or {}
    problems = [_other_settings(metadata.get("train_config"), run_dir / "config.json")]
    problems.append(_step_not_reached(state, run_dir / METRICS_FILE))
    problems = [p for p in problems if p]
    if not problems:
        return
    origin = str(metadata.get("split", "")).split("/")[0]
    came = f" (it names the run folder {origin!r})" if origin and origin != run_dir.name else ""
    raise RunDirError(
        f"cannot resume {run_dir}: {last} is not this run's checkpoint{came}: "
        f"{'; '.join(problems)}. Resuming it would train another run's model on this run's "
        "data and mix the two runs' records; nothing was changed. Put this run's own last.pt "
        "back (or resume the other run in its own folder), or start a new run folder"
    )


def _other_settings(trained: dict | None, config_path: Path) -> str:
    """How the settings ``trained`` (last.pt's ``train_config``) differ from the run's
    ``config_path`` ("" when they agree or either is missing)."""
    if not isinstance(trained, dict) or not config_path.is_file():
        return ""
    with contextlib.suppress(TypeError, ValueError):  # an older or newer version's keys
        trained = TrainConfig.from_dict(trained).to_dict()
    saved = TrainConfig.load(config_path).to_dict()
    changed = _changed_settings(saved, trained)
    if not changed:
        return ""
    detail = ", ".join(f"{k} {v!r} (config.json: {saved[k]!r})" for k, v in changed.items())
    return f"it was trained with other settings than {config_path}: {detail}"


def _step_not_reached(state: dict, metrics_path: Path) -> str:
    """Why last.pt's ``training_state`` is no state this run's ``metrics_path`` recorded
    ("" when a line has its step and time, or there is no metrics file or step)."""
    step = state.get("step")
    if not isinstance(step, int) or not metrics_path.is_file():
        return ""
    records = read_metrics(metrics_path.parent)
    at_step = [r for r in records if r.get("step") == step]
    steps = sorted({r["step"] for r in records if isinstance(r.get("step"), int)})
    reached = f"its records are of steps {_few(steps)}" if steps else "it holds no record"
    if not at_step:
        return f"it holds step {step}, a step this run never reached ({metrics_path}: {reached})"
    elapsed = state.get("elapsed")
    if not isinstance(elapsed, float | int):
        return ""
    times = [r.get("time") for r in at_step]
    if any(isinstance(t, float | int) and math.isclose(t, elapsed, abs_tol=1e-3) for t in times):
        return ""
    return (
        f"it was saved at step {step} after {elapsed:.1f} s of training, while this run "
        f"reached step {step} after {', '.join(f'{t:.1f}' for t in times if t is not None)} s "
        f"({metrics_path})"
    )


def _few(values: list, shown: int = 6) -> str:
    """``2, 4, 6, ..., 40``: the first values of a list and its last."""
    if len(values) <= shown:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[: shown - 1])) + f", ..., {values[-1]}"


def why_not_resumable(run_dir: Path) -> str:
    """Why ``fit --resume`` finds nothing to continue in ``run_dir`` (no run's config)."""
    return _no_checkpoint(run_dir, _folder_names(run_dir))


def _no_checkpoint(run_dir: Path, names: list[str]) -> str:
    """What a folder without ``last.pt`` is, and what to do instead of resuming."""
    last = run_dir / "last.pt"
    others = [n for n in names if not _written_by_run(n)]
    if others:
        return _not_for_a_new_run(run_dir, names, others)
    if not names:
        return f"{last} does not exist: there is no run in {run_dir}; start one without --resume"
    if all(n in START_FILES or n.startswith("previous-") for n in names):
        stopped = f"{last} does not exist, the run stopped before its first checkpoint"
        return f"{stopped}; {_restart(run_dir)}"
    return _holds_a_run(run_dir, names)


def _restart(run_dir: Path) -> str:
    """How to start a run that stopped before its first checkpoint again, in its folder:
    from the configuration it saved (``fit`` without --resume needs its dataset again)."""
    config = run_dir / "config.json"
    if not config.is_file():
        return "start it again without --resume (same folder, same settings)"
    return (
        "start it again from its saved settings: napari-tmunet-train fit "
        f"--config {quote(str(config))} --run-dir {quote(str(run_dir))}"
    )


def _not_for_a_new_run(run_dir: Path, names: list[str], others: list[str]) -> str:
    """Why a folder with files that no run wrote takes no new run, naming them."""
    if len(others) == len(names):
        what = f"{run_dir} is not a run folder: it holds {_listing(run_dir, others)}"
    else:
        what = f"{run_dir} holds files that no run wrote ({_listing(run_dir, others)})"
        if "last.pt" in names:
            what += " beside a run that --resume can continue"
    return (
        f"{what}; choose an empty or new --run-dir for a new run (--overwrite sets aside "
        "only what a run wrote, never these)"
    )


def _holds_a_run(run_dir: Path, names: list[str]) -> str:
    """Why a folder with an earlier run takes no new run without overwrite."""
    if "last.pt" in names:
        resume = "continue it with resume (--resume), "
    else:
        resume = "it cannot be resumed (--resume needs last.pt); "
    return (
        f"run folder {run_dir} is not empty ({_listing(run_dir, names)}); {resume}start "
        "over with overwrite (--overwrite: the run's files are moved to previous-<time>/), "
        "or choose another folder"
    )


def _folder_names(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` (none when it is missing), system files left out."""
    names = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    return [n for n in names if n not in SYSTEM_FILES]


def _written_by_run(name: str) -> bool:
    """Whether a file or folder of this name in a run folder is one a run writes."""
    return name in RUN_FILES or RUN_FILE_PATTERNS.fullmatch(name) is not None


def _listing(run_dir: Path, names: list[str], shown: int = 6) -> str:
    """``images/, notes.txt, ...``: the first names in a folder (folders with a /)."""
    marked = [n + "/" if (run_dir / n).is_dir() else n for n in names[:shown]]
    return ", ".join(marked) + (", ..." if len(names) > shown else "")


def _new_backup_folder(run_dir: Path) -> Path:
    """A new ``previous-<time>`` folder; two overwrites in one second get ``-2``, ``-3``..."""
    stem = run_dir / f"previous-{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        backup = stem if n == 1 else stem.with_name(f"{stem.name}-{n}")
        try:
            backup.mkdir()
            return backup
        except FileExistsError:
            continue
    raise RunDirError(f"{run_dir}: too many previous-* folders for {stem.name}")


def remove_stale_temporaries(run_dir: Path, of: set[str] | None = None) -> dict[str, int]:
    """Delete the ``.NAME.XXXXXXXX.tmp`` files that a killed write left in ``run_dir``
    (only those of the files named in ``of``, when given).

    ``storage.atomic_path`` creates them before writing and renames them when done, so
    one that exists while this process holds the folder lock was left by a process that
    died (no other process writes here meanwhile). Returns the names removed and their
    sizes in bytes.
    """
    removed = {}
    for path in run_dir.iterdir() if run_dir.is_dir() else ():
        if not STALE_TEMPORARY.fullmatch(path.name) or not path.is_file():
            continue
        if of is not None and path.name[1:].rsplit(".", 2)[0] not in of:
            continue
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            removed[path.name] = size
    if removed:
        logger.info("removed %d temporary file(s) of a killed run: %s", len(removed), removed)
    return removed


class RunLog:
    """Copies the ``napari_tmunet`` and ``trainer`` loggers' INFO lines to ``train.log``."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "train.log"
        self.start = self.path.stat().st_size if self.path.is_file() else None
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
        self.handler.setFormatter(logging.Formatter(fmt))
        self.handler.setLevel(logging.INFO)
        self.levels = {}
        for name in ("trainer", "napari_tmunet"):
            lg = logging.getLogger(name)
            lg.addHandler(self.handler)
            self.levels[name] = lg.level
            if lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)

    def close(self) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).removeHandler(self.handler)
            logging.getLogger(name).setLevel(level)
        self.handler.close()

    def discard(self) -> None:
        """Close, and take this session's lines out of ``train.log`` again (a session that
        did nothing: the file as it was; one made by it: removed)."""
        self.close()
        if self.start is None:
            self.path.unlink(missing_ok=True)
        else:
            with open(self.path, "r+b") as f:
                f.truncate(self.start)


def summary_steps(run_dir: Path) -> float | None:
    """The step at which ``run_dir/summary.json`` was written (its ``steps``: the run's
    end when it was tested); None when there is no summary.

    An extension (``--resume --steps N``) replaces the summary only at its own end, so
    one killed before that leaves the summary of the earlier end, at a lower step. A
    summary that cannot be read or has no ``steps`` counts as written at the end
    (``math.inf``): the run is taken for finished and its files are left alone.
    """
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps")
    except (OSError, ValueError, AttributeError):
        return math.inf
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else math.inf


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl`` in order; [] when there is none.

    A last line cut short by a crash (or still being written) is left out with a warning
    (``storage.read_json_lines``): the run resumes from ``last.pt``, whose step says which
    records count.
    """
    return read_json_lines(Path(run_dir) / METRICS_FILE)


def append_metrics(run_dir: Path, record: dict) -> None:
    """Add one record to ``metrics.jsonl`` (flushed before the next checkpoint)."""
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as file:
        file.write(json.dumps(jsonable(record)) + "\n")
        file.flush()
        os.fsync(file.fileno())


def write_metrics(run_dir: Path, records: Sequence[dict]) -> None:
    """Replace ``metrics.jsonl`` with ``records`` (atomically)."""
    with atomic_path(run_dir / METRICS_FILE) as tmp:
        Path(tmp).write_text(
            "".join(json.dumps(jsonable(r)) + "\n" for r in records), encoding="utf-8"
        )


def dataset_label(config: TrainConfig, cache=None) -> str:
    """Name of the dataset in reports: ``dataset_name`` or the folder / file stem."""
    if config.dataset_name:
        return config.dataset_name
    source = config.data or (cache.source if cache is not None else "")
    path = Path(source)
    return path.stem if path.suffix == ".npz" else path.name or "dataset"


def plot_curves(records: Sequence[dict], path: str | os.PathLike) -> None:
    """Training loss and validation Dice per period, as a PNG (matplotlib Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    pts = [(r["epoch"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    if pts:
        ax1.plot(*zip(*pts, strict=True), color="tab:blue")
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss (2 CE + 1 Dice)")
    val = [(r["epoch"], r["val_dice"]) for r in records if r.get("val_dice") is not None]
    # a fine-tune's held-out part without foreground: its false positives, no Dice
    false = [
        (r["epoch"], r["val_false_positive_px"])
        for r in records
        if r.get("val_false_positive_px") is not None
    ]
    if val:
        ax2.plot(*zip(*val, strict=True), marker=".", color="tab:green")
        best = max(val, key=lambda p: p[1])
        ax2.axhline(best[1], color="grey", lw=0.8, ls="--")
        ax2.set_title(f"validation Dice (best {best[1]:.4f})")
    elif false:
        ax2.plot(*zip(*false, strict=True), marker=".", color="tab:red")
        ax2.set_title("held-out false-positive pixels (no foreground)")
    else:
        ax2.set_title("validation Dice")
    ax2.set(xlabel="epoch", ylabel="pixels" if false and not val else "Dice")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def git_commit() -> str:
    """The source checkout's commit (with "+dirty" for local changes), "" if unknown."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if commit and dirty else "")


def get_rng_state() -> dict:
    """torch, CUDA, NumPy and Python RNG states as tensors and builtins (``weights_only`` safe)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only for as many GPUs)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(
            (
                "MT19937",
                s["keys"].numpy().astype(np.uint32),
                s["pos"],
                s["has_gauss"],
                s["cached_gaussian"],
            )
        )
    if "python" in state:
        version, values, gauss = state["python"]
        random.setstate((version, tuple(values), gauss))
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
