"""Run a plan of training runs on one multi-GPU machine, several processes per GPU.

Built for a rented GPU machine whose commands are capped at a few minutes but which
stays up between them: ``start`` launches a detached supervisor (``setsid``) that
outlives the command, later commands look in with ``status`` and take results home with
``collect``. Every run is an ordinary ``napari-tmunet-train fit`` into its own folder.

    python -m trainer.campaign start --plan bench/plans/paper-benchmark.json \\
        --root /root/campaign --data /root/data --gpus 0 --slots 7 --mps
    python -m trainer.campaign start --plan A.json --plan B.json --only '*tmunet-b*' ...
    python -m trainer.campaign status --root /root/campaign
    python -m trainer.campaign finish --root /root/campaign    # stop what still runs
    python -m trainer.campaign collect --root /root/campaign --out $OUT
    python -m trainer.campaign collect --new --root /root/campaign --out $OUT  # each poll

A machine can be lost without warning, and everything on it with it: poll with
``collect --new``, which brings home each run as soon as it has ended (one ``<run>.tar``:
its small files, its log and its best model in half precision, ``best-half.pt``; a run
without ``best.pt``, such as a pre-training run, brings its ``last.pt`` model as
``last-half.pt``, without the training state). One call takes runs up to
``--max-mib`` of tars and leaves the rest for the next; a tar too large on its own
comes without its model, which stays on the machine (fetch it with ``bench/parts.py``).
Plain ``collect`` puts the small files of every run in one ``results.tar.gz``, with the
``last-half.pt`` of each run without ``best.pt`` (the same file ``--new`` brings), and
writes the models of the runs that ship.

Plan file (JSON): ``{"common": [...fit args...], "efficiency": {KEY: [...efficiency
args...]}, "runs": [{"name", "data", "dataset", "args", "efficiency": KEY,
"ship": "modality"?, "after": "RUN"?}]}``. Runs start in plan order as soon as their data
file exists in ``--data`` (files may arrive in parts while the first runs train) and a GPU
has a free slot; a run with ``after`` waits until that run is done (and is skipped when it
failed or stopped). In a run's args, ``{runs}`` is the folder of the campaign's runs (e.g.
``--init-checkpoint {runs}/PRETRAIN/last.pt``) and ``{data}`` the ``--data`` folder (e.g.
a starting checkpoint carried with the data: ``--init-checkpoint {data}/trunk.pt``).
Efficiency jobs (params, MACs, FPS) take a GPU to themselves, so their timings are
clean; ``collect`` copies each into the ``summary.json`` of the runs that name it.
``after`` must not make runs wait for each other in a ring (``start`` refuses it).
``start`` resolves ``--root`` and ``--data``, so they may be relative to the folder it is
run in.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trainer.checkout import require_checkout  # noqa: E402
from trainer.report import test_result  # noqa: E402  (a light import: no torch)

POLL_S = 5


def load_plan(path: Path) -> dict:
    """A plan file, checked (exits with one line naming the file when it is not usable)."""
    try:
        plan = json.loads(path.read_text())
        names = [r["name"] for r in plan["runs"]]
    except FileNotFoundError:
        raise SystemExit(f"plan file {path} does not exist: check the --plan path") from None
    except (OSError, ValueError) as error:  # unreadable, or not JSON
        raise SystemExit(f"plan file {path} cannot be read: {error}") from None
    except (KeyError, TypeError) as error:
        raise SystemExit(
            f"plan file {path}: expected {{'runs': [{{'name': ..., 'args': [...]}}, ...]}} "
            f"(missing {error})"
        ) from None
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: run names must be unique")
    for run in plan["runs"]:
        key = run.get("efficiency")
        if key and key not in plan.get("efficiency", {}):
            raise SystemExit(f"{path}: run {run['name']} names unknown efficiency {key!r}")
    return plan


def merge_plans(paths: list[Path], only: list[str] | None = None) -> dict:
    """One plan of the runs of ``paths``, in the order given: each run keeps its own
    plan's common arguments (folded into its ``args``). ``only``: keep the runs whose
    name matches one of these shell patterns (``fnmatch``)."""
    merged = {"common": [], "efficiency": {}, "runs": []}
    for path in paths:
        plan = load_plan(path)
        common = plan.get("common", [])
        for run in plan["runs"]:
            if only and not any(fnmatch.fnmatchcase(run["name"], p) for p in only):
                continue
            merged["runs"].append({**run, "args": [*common, *run["args"]]})
            key = run.get("efficiency")
            if key:
                merged["efficiency"][key] = plan["efficiency"][key]
    if not merged["runs"]:
        raise SystemExit(f"no run of {', '.join(map(str, paths))} matches --only {only}")
    names = [run["name"] for run in merged["runs"]]
    for run in merged["runs"]:
        if run.get("after") and run["after"] not in names:
            raise SystemExit(
                f"run {run['name']} comes after {run['after']}, which is not in the plans "
                "(or not selected by --only): start both"
            )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SystemExit(f"run names must be unique over the plans; more than once: {twice}")
    _check_after_cycles(merged["runs"])
    return merged


def _check_after_cycles(runs: list[dict]) -> None:
    """Exit with one line naming the runs when ``after`` makes a run wait for itself, or
    runs wait for each other in a ring (none of them would ever start)."""
    after = {run["name"]: run.get("after") for run in runs}
    for name in after:
        chain = [name]
        while after.get(chain[-1]) and after[chain[-1]] not in chain:
            chain.append(after[chain[-1]])
        if after.get(chain[-1]) == name:
            if len(chain) == 1:
                raise SystemExit(f'run {name} comes after itself: remove its "after"')
            ring = " -> ".join([*chain, name])
            raise SystemExit(
                f'runs {ring} wait for each other ("after"), so none would start: break the cycle'
            )


def campaign_file(root: Path, name: str) -> Path:
    """``root/name`` (plan.json, state.json) of a started campaign; exits with one line
    when ``root`` holds none, before anything is written."""
    path = root / name
    if not path.is_file():
        raise SystemExit(
            f"{root} holds no campaign (no {name}): check --root, or start one with "
            "`python -m trainer.campaign start`"
        )
    return path


def jobs_of(plan: dict, data: Path, root: Path) -> list[dict]:
    """Every process to run: efficiency jobs first (exclusive GPU), then the runs."""
    train = [sys.executable, "-m", "trainer.cli"]
    jobs = []
    for key, args in plan.get("efficiency", {}).items():
        out = root / "efficiency" / f"{key}.json"
        if out.is_file():
            continue  # measured already (e.g. copied from an earlier campaign)
        cmd = [*train, "efficiency", *args, "--device", "auto", "--out", str(out)]
        jobs.append({"name": f"efficiency-{key}", "cmd": cmd, "needs": None, "exclusive": True})
    for run in plan["runs"]:
        args = [
            arg.replace("{runs}", str(root / "runs")).replace("{data}", str(data))
            for arg in run["args"]
        ]
        cmd = [
            *train, "fit", "--data", str(data / run["data"]), "--dataset-name", run["dataset"],
            "--run-dir", str(root / "runs" / run["name"]), *plan.get("common", []), *args,
        ]  # fmt: skip
        jobs.append({"name": run["name"], "cmd": cmd, "needs": run["data"], "exclusive": False,
                     "after": run.get("after")})  # fmt: skip
    return jobs


def ended_state(returncode: int) -> str:
    """A fit's state from its exit status: done, stopped (SIGINT/SIGTERM: last.pt kept, to
    resume) or failed."""
    if returncode == 0:
        return "done"
    return "stopped" if returncode in (130, 143) else "failed"


def child_env() -> dict:
    """Environment of the runs: this checkout importable, a few CPU threads each."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="4")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    return env


def supervise(root: Path, data: Path, gpus: list[int], slots: int) -> None:
    """Place jobs on GPUs until all have ended; state in ROOT/state.json."""
    plan = load_plan(root / "plan.json")
    jobs = jobs_of(plan, data, root)
    by_name = {job["name"]: job for job in jobs}
    (root / "logs").mkdir(exist_ok=True)
    (root / "efficiency").mkdir(exist_ok=True)
    state = {j["name"]: {"state": "pending"} for j in jobs}
    running: dict[str, tuple[subprocess.Popen, int]] = {}
    env = child_env()

    def save():
        tmp = root / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(root / "state.json")

    while True:
        for name, (proc, _gpu) in list(running.items()):
            if proc.poll() is not None:
                state[name].update(state=ended_state(proc.returncode),
                                   rc=proc.returncode, ended=time.time())  # fmt: skip
                del running[name]
        stop = (root / "STOP").exists()
        for job in jobs:
            st = state[job["name"]]
            if stop or st["state"] != "pending":
                continue
            if job["needs"] and not (data / job["needs"]).exists():  # a file or a folder
                continue
            before = state[job["after"]]["state"] if job.get("after") else "done"
            if before in ("pending", "running"):
                continue
            if before != "done":  # nothing to start from
                st.update(state="skipped", reason=f"{job['after']} {before}")
                continue
            load = dict.fromkeys(gpus, 0)
            exclusive = set()
            for name, (_, gpu) in running.items():
                load[gpu] += 1
                if by_name[name]["exclusive"]:
                    exclusive.add(gpu)
            free = [g for g in gpus if g not in exclusive and load[g] < slots]
            if job["exclusive"]:
                free = [g for g in free if load[g] == 0]
            if not free:
                continue
            gpu = min(free, key=lambda g: (load[g], gpus.index(g)))
            log = open(root / "logs" / f"{job['name']}.log", "w")
            proc = subprocess.Popen(
                job["cmd"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env, CUDA_VISIBLE_DEVICES=str(gpu)),
            )  # fmt: skip
            running[job["name"]] = (proc, gpu)
            st.update(state="running", gpu=gpu, started=time.time(), pid=proc.pid)
        save()
        if not running and (stop or all(s["state"] != "pending" for s in state.values())):
            break
        time.sleep(POLL_S)


def cmd_start(args) -> None:
    from napari_tmunet.storage import write_json

    plan = merge_plans([Path(p) for p in args.plan], args.only)  # checked before anything starts
    # the supervisor runs in this checkout's folder: relative paths would point there
    root, data = Path(args.root).resolve(), Path(args.data).resolve()
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "plan.json", plan)
    if args.mps:
        start_mps()
    log = open(root / "supervisor.log", "a")
    cmd = [sys.executable, __file__, "supervise", "--root", str(root), "--data", str(data),
           "--gpus", args.gpus, "--slots", str(args.slots)]  # fmt: skip
    # A new session: the supervisor and its runs outlive the command that started them.
    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                     start_new_session=True, cwd=ROOT)  # fmt: skip
    print(f"supervisor started: {root}")


def start_mps() -> None:
    """Start NVIDIA's MPS daemon, so that the kernels of several fits on one GPU run side
    by side (about twice the steps per minute of one fit alone, docs/benchmarks.md)."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        print("no nvidia-cuda-mps-control here: the fits time-share the GPU instead")
        return
    done = subprocess.run([control, "-d"], capture_output=True, text=True)
    print("MPS daemon started" if done.returncode == 0 else f"MPS: {done.stderr.strip()}")


def _last_record(run_dir: Path) -> dict:
    """The run's latest metrics record; {} while there is none or it cannot be read.

    ``run_folder.read_metrics``'s parser (a cut-off last line left out), called on the
    file directly: importing ``napari_tmunet.training`` would load torch into the supervisor.
    """
    from napari_tmunet.storage import read_json_lines

    try:
        records = read_json_lines(run_dir / "metrics.jsonl")
    except (OSError, ValueError):
        return {}
    return records[-1] if records else {}


def cmd_status(args) -> None:
    root = Path(args.root)
    try:
        state = json.loads((root / "state.json").read_text())
    except OSError:
        print("no state.json yet")
        return
    now = time.time()
    print(f"{'job':34} {'state':8} gpu {'min':>5}  progress")
    for name, st in state.items():
        minutes = ((st.get("ended") or now) - st["started"]) / 60 if "started" in st else 0
        rec = _last_record(root / "runs" / name)
        info = ""
        if rec:
            best = rec.get("best_val_dice") or 0
            info = f"step {rec.get('step')} ep {rec.get('epoch', 0):.0f} best {best:.4f}"
        test = test_result(root / "runs" / name)
        if test:
            info += f" TEST dice {test['dice_mean']:.4f} native {test['native_dice_mean']:.4f}"
        if st["state"] == "failed":
            tail = (root / "logs" / f"{name}.log").read_text(errors="replace")[-600:]
            info += "\n    " + tail.replace("\n", "\n    ")
        print(f"{name:34} {st['state']:8} {st.get('gpu', '-')!s:3} {minutes:5.1f}  {info}")


def cmd_finish(args) -> None:
    """Stop the supervisor from starting more; SIGTERM running fits (clean stop), and test
    those that stopped before their own test, unless they are validation probes."""
    root = Path(args.root)
    state = json.loads(campaign_file(root, "state.json").read_text())
    (root / "STOP").touch()
    for st in state.values():
        if st["state"] == "running":
            try:
                os.kill(st["pid"], signal.SIGTERM)  # fit saves last.pt and keeps best.pt
            except ProcessLookupError:
                pass
    deadline = time.time() + args.wait
    while time.time() < deadline:
        state = json.loads((root / "state.json").read_text())
        if not any(s["state"] == "running" for s in state.values()):
            break
        time.sleep(2)
    for name, st in state.items():
        run = root / "runs" / name
        if st["state"] == "stopped" and _asks_for_test(run) and not test_result(run):
            print(f"testing the best checkpoint of stopped run {name}")
            subprocess.run(
                [sys.executable, "-m", "trainer.cli", "evaluate", str(run / "best.pt")],
                cwd=ROOT, env=child_env(),
                stdout=subprocess.DEVNULL,
            )  # fmt: skip


def _asks_for_test(run: Path) -> bool:
    """Whether a run has a best checkpoint and its config asks for a test at the end: a
    validation probe (``--no-test``) must never see its test part."""
    config = run / "config.json"
    if not (run / "best.pt").is_file() or not config.is_file():
        return False
    return json.loads(config.read_text()).get("test", True)


def cmd_collect(args) -> None:
    """Efficiency into summaries; small files of every run in a tarball, with the model of
    a run without best.pt (pre-training) as ``collect --new`` brings it (``_half_model``:
    ``runs/<run>/last-half.pt``); shipped models."""
    import tempfile

    root, out = Path(args.root), Path(args.out)
    plan = load_plan(campaign_file(root, "plan.json"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        halves = [_collect_run(root, out, run, Path(tmp), args.partial) for run in plan["runs"]]
        with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
            for path in _small_files(root):
                tar.add(path, arcname=str(path.relative_to(root)))
            for run, half in zip(plan["runs"], halves, strict=True):
                if half is not None:
                    tar.add(half, arcname=f"runs/{run['name']}/{half.name}")
    print(f"collected into {out}: {sorted(p.name for p in out.iterdir())}")


def _collect_run(root: Path, out: Path, run: dict, tmp: Path, partial: bool) -> Path | None:
    """One run of ``collect``: its efficiency into its summary, its shipped model into
    ``out``; the half-precision model to put in the tarball (in ``tmp``) when it has no
    best.pt (a pre-training run's last.pt), else None."""
    from napari_tmunet.storage import write_json

    run_dir = root / "runs" / run["name"]
    eff = root / "efficiency" / f"{run.get('efficiency')}.json"
    if run_dir.is_dir() and eff.is_file():
        path = run_dir / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        summary["efficiency"] = json.loads(eff.read_text())
        write_json(path, summary)
    best = run_dir / "best.pt"  # a model to ship segments: never a pre-training last.pt
    ship = out / f"{run['name']}.pt"
    tested = test_result(run_dir)
    if run.get("ship") and best.is_file() and (tested or partial) and not ship.exists():
        _save_half(best, ship)
    if best.is_file():  # best.pt stays on the machine unless shipped, as before
        return None
    return _half_model(run_dir, tmp / run["name"])


MAX_FILES_BACK = 8  # files one device call brings back
MAX_MIB_BACK = 56  # MiB of run tars per call (a call brings back 64 MiB in all)
MAX_FILE_MIB = 16  # the largest single file a device call brings back
MIB = 1 << 20


def cmd_collect_new(args) -> None:
    """One ``<run>.tar`` in ``args.out`` per run that ended since the last ``collect --new``.

    Runs are taken in order while the tars written in this call add up to at most
    ``args.max_mib`` MiB (and ``MAX_FILES_BACK`` files); the rest stay uncollected, so the
    next call takes them. A tar over ``args.max_mib`` or ``args.max_file_mib`` on its own is
    written without its model: the half-precision copy stays on this machine beside
    its checkpoint (fetch it with ``bench/parts.py``), and the run counts as collected.
    The model is ``best.pt``, or ``last.pt`` for a run without one (pre-training).
    """
    import tempfile

    from napari_tmunet.storage import write_json

    root, out = Path(args.root), Path(args.out)
    state = json.loads(campaign_file(root, "state.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    done_file = root / "collected.json"
    collected = json.loads(done_file.read_text()) if done_file.is_file() else []
    ended = [n for n, st in state.items() if st["state"] in ("done", "stopped", "failed")]
    new = [n for n in ended if n not in collected]
    budget, cap = args.max_mib * MIB, min(args.max_mib, args.max_file_mib) * MIB
    taken, used = [], 0
    with tempfile.TemporaryDirectory() as tmp:  # OUT only ever holds whole tars
        for name in new[:MAX_FILES_BACK]:
            run_dir, tar = root / "runs" / name, Path(tmp) / f"{name}.tar"
            half = _half_model(run_dir, Path(tmp))
            _archive_run(root, name, tar, half)
            kept = None
            if half and tar.stat().st_size > cap:
                kept = Path(shutil.move(half, run_dir / half.name))
                _archive_run(root, name, tar, None)
            size = tar.stat().st_size
            if used + size > budget:
                break
            shutil.move(tar, out / tar.name)
            if kept:
                print(f"{name}: tar without its model ({kept.stat().st_size / MIB:.1f} MiB), "
                      f"which stays on this machine: {kept} (bench/parts.py split)")  # fmt: skip
            used += size
            taken.append(name)
            collected.append(name)
            write_json(done_file, collected)  # after each: a lost call loses one
    later = new[len(taken) :]
    print(f"collected {taken} ({used / MIB:.1f} MiB)" + (f"; next call: {later}" if later else ""))


def _model_of(run_dir: Path) -> Path:
    """The checkpoint a run brings home: ``best.pt``, else ``last.pt`` (a pre-training
    run has no best); either may not exist."""
    best, last = run_dir / "best.pt", run_dir / "last.pt"
    return last if last.is_file() and not best.is_file() else best


def _half_model(run_dir: Path, folder: Path) -> Path | None:
    """The model a run brings home (``_model_of``: best.pt, else last.pt) written in half
    precision to ``folder`` as ``best-half.pt`` or ``last-half.pt``; None without one.
    ``collect`` and ``collect --new`` both bring a run's model this way."""
    model = _model_of(run_dir)
    if not model.is_file():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return _save_half(model, folder / f"{model.stem}-half.pt")


def _archive_run(root: Path, name: str, path: Path, model: Path | None) -> None:
    """Tar at ``path`` of a run: its small files, its training log and ``model`` (its best
    or last model in half precision, ``best-half.pt`` or ``last-half.pt``) when given."""
    run_dir = root / "runs" / name  # absent when a fit failed before making it
    with tarfile.open(path, "w") as tar:
        for file in _small_files(run_dir):
            tar.add(file, arcname=f"{name}/{file.relative_to(run_dir)}")
        log = root / "logs" / f"{name}.log"
        if log.is_file():
            tar.add(log, arcname=f"{name}/train.log")
        if model:
            tar.add(model, arcname=f"{name}/{model.name}")


def _small_files(folder: Path) -> list[Path]:
    """Files below ``folder`` worth copying home: no checkpoints, no earlier runs' folders."""
    if not folder.is_dir():
        return []
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix != ".pt" and "previous-" not in str(path)
    ]


def _save_half(checkpoint: Path, path: Path) -> Path:
    """``checkpoint`` written to ``path`` with float16 weights (half the bytes to copy) and
    without its training state (a ``last.pt``'s optimiser, for resuming)."""
    from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint, "cpu")
    save_checkpoint(path, ckpt.model, ckpt.model_config, ckpt.input_config,
                    metadata=ckpt.metadata, metrics=ckpt.metrics, half=True)  # fmt: skip
    return path


def main(argv=None) -> None:
    # its fits run from ROOT with ROOT importable: an installed wheel's site-packages is no
    # place for them (nor for the plans and tools of bench/ that its commands name)
    require_checkout("trainer.campaign", ROOT, (), "runs a plan's fits from the checkout's folder")
    parser = argparse.ArgumentParser(
        prog="python -m trainer.campaign", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "supervise"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True)
        p.add_argument("--data", required=True, help="folder the plan's data files arrive in")
        p.add_argument("--gpus", default="0", help="GPU ids to use, e.g. 0,1,2,3")
        p.add_argument("--slots", type=int, default=2, help="processes per GPU")
        if name == "start":
            p.add_argument(
                "--plan", required=True, action="append", help="plan file (repeat: in order)"
            )
            p.add_argument(
                "--only",
                action="append",
                metavar="PATTERN",
                help="run only the runs whose name matches (shell pattern; repeat: any)",
            )
            p.add_argument("--mps", action="store_true", help="start NVIDIA's MPS daemon first")
    p = sub.add_parser("status")
    p.add_argument("--root", required=True)
    p = sub.add_parser("finish")
    p.add_argument("--root", required=True)
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for clean stops")
    p = sub.add_parser("collect")
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--partial", action="store_true", help="ship models of untested runs too")
    p.add_argument(
        "--new",
        action="store_true",
        help=f"only runs ended since the last --new: one <run>.tar each (at most "
        f"{MAX_FILES_BACK} per call), best model in half precision (last.pt's when there "
        "is no best.pt)",
    )
    p.add_argument(
        "--max-mib",
        type=float,
        default=MAX_MIB_BACK,
        help="--new: MiB of tars per call (default %(default)s); the runs past it wait for "
        "the next call",
    )
    p.add_argument(
        "--max-file-mib",
        type=float,
        default=MAX_FILE_MIB,
        help="--new: a tar over this (or --max-mib) leaves its model on the machine "
        "(default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.command == "start":
        cmd_start(args)
    elif args.command == "supervise":
        supervise(
            Path(args.root), Path(args.data), [int(g) for g in args.gpus.split(",")], args.slots
        )
    elif args.command == "collect" and args.new:
        cmd_collect_new(args)
    else:
        {"status": cmd_status, "finish": cmd_finish, "collect": cmd_collect}[args.command](args)


if __name__ == "__main__":
    main()
