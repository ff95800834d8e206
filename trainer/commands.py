"""The commands of ``napari-tmunet-train``: fit, cache, evaluate, report, efficiency, demo.

Each ``cmd_*`` takes the parsed arguments (``cli.build_parser``) and returns an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from shlex import quote

PRESETS = {  # name -> (folder under the datasets root, the paper's dataset name)
    "cvccdb": ("CVC-ClinicDB", "CVCCDB"),
    "monuseg": ("MoNuSeg", "MoNuSeg"),
    "colondb": ("CVC-ColonDB", "ColonDB"),
    "udiat": ("UDIAT", "UDIAT"),
}
DEFAULT_DATASETS = Path("..") / "shared" / "datasets"


def preset_root(name: str) -> Path:
    """Folder of a preset dataset: $TMUNET_DATASETS/<folder> or ../shared/datasets/<folder>."""
    folder = PRESETS[name][0]
    base = Path(os.environ.get("TMUNET_DATASETS", DEFAULT_DATASETS))
    return base / folder


def _data_source(args) -> tuple[str | None, str | None]:
    """(data path, dataset name) from --data / --preset; checks that the path exists."""
    data, name = args.data, args.dataset_name
    if args.preset:
        folder, paper_name = PRESETS[args.preset]
        name = name or paper_name
        if data is None:
            root = preset_root(args.preset)
            if not root.exists():
                raise FileNotFoundError(
                    f"--preset {args.preset}: dataset folder {root} (absolute: {root.resolve()}) "
                    f"does not exist; put {folder} there as images/ + masks/, set "
                    "TMUNET_DATASETS to the folder that holds it, or pass --data PATH"
                )
            data = str(root)
    if data is not None and not Path(data).exists():
        from napari_tmunet.data.datasets import DATASET_FOLDER

        raise FileNotFoundError(
            f"--data {data} (absolute: {Path(data).resolve()}) does not exist: give "
            f"{DATASET_FOLDER}, or a cache file from `napari-tmunet-train cache`"
        )
    # absolute: the run folder's config then finds its data from any working directory
    # (evaluate, --resume), as a fine-tuning run's does
    return (str(Path(data).resolve()) if data is not None else None), name


# ---------------------------------------------------------------------------- commands

FIT_FIELDS = {  # argparse dest -> TrainConfig field (same name when missing)
    "no_amp": ("amp", lambda v: not v),
    "no_cuda_graphs": ("cuda_graphs", lambda v: not v),
    "no_channels_last": ("channels_last", lambda v: not v),
    "no_sync_bn": ("sync_bn", lambda v: not v),
    "no_test": ("test", lambda v: not v),
    "no_efficiency": ("efficiency", lambda v: not v),
    "no_progress": ("progress", lambda v: not v),
}
MODEL_FIELDS = {  # argparse dest -> ModelConfig override
    "channels": ("channels", list),
    "no_xlstm": ("use_xlstm", lambda v: not v),
    "no_pooling": ("use_pooling", lambda v: not v),
    "no_dwconv": ("use_dwconv", lambda v: not v),
    "pooling": ("pooling", str),
    "skip": ("skip", str),
    "scan": ("scan", str),
    "mlstm_kernel": ("mlstm_kernel", str),
    "presence_head": ("presence_head", bool),
}


def fit_config(args) -> tuple[object, Path]:
    """TrainConfig and run folder from parsed ``fit`` arguments."""
    from napari_tmunet.training.config import TrainConfig

    base: dict = {}
    run_dir = Path(args.run_dir) if args.run_dir else None
    if args.config:
        base = TrainConfig.load(args.config).to_dict()
    elif args.resume and run_dir is not None and (run_dir / "config.json").is_file():
        base = TrainConfig.load(run_dir / "config.json").to_dict()
    values = dict(base)
    data, name = _data_source(args)
    if data is not None:
        values["data"] = data
    start = getattr(args, "init_checkpoint", None)
    if start:  # absolute, as data: the run folder's config holds from any working directory
        values["init_checkpoint"] = _start_checkpoint(start)
        if args.resume and run_dir is not None and (run_dir / "config.json").is_file():
            saved = TrainConfig.load(run_dir / "config.json").init_checkpoint
            values["init_checkpoint"] = _resumed_start(saved, values["init_checkpoint"], run_dir)
    if name is not None:
        values["dataset_name"] = name
    fields = set(TrainConfig.__dataclass_fields__)
    model = dict(values.get("model", {}))
    for dest, value in vars(args).items():
        if value is None or dest in (
            "data",
            "dataset_name",
            "preset",
            "config",
            "run_dir",
            "init_checkpoint",
        ):
            continue
        if dest in MODEL_FIELDS:
            key, conv = MODEL_FIELDS[dest]
            model[key] = conv(value)
        elif dest in FIT_FIELDS:
            key, conv = FIT_FIELDS[dest]
            values[key] = conv(value)
        elif dest in fields:
            values[dest] = value
    if model:
        values["model"] = model
    if "size" in values:
        size = list(values["size"])
        if len(size) == 1:
            size = size * 2
        if len(size) != 2:
            raise ValueError(f"--size takes one or two numbers (H [W]), got {size}")
        values["size"] = size
    config = TrainConfig.from_dict(values)
    if not config.data and args.resume and run_dir is not None:  # no run's config there
        from napari_tmunet.training.run_folder import why_not_resumable

        raise ValueError(f"cannot resume: {why_not_resumable(run_dir)}")
    if not config.data:
        raise ValueError("no dataset: pass --preset NAME or --data PATH (see --help)")
    if run_dir is None:
        from napari_tmunet.training.run_folder import dataset_label

        parts = [dataset_label(config), config.arch]
        if config.arch == "tmunet":
            parts.append(config.variant if "channels" not in config.model else "custom")
        for key in ("use_xlstm", "use_pooling", "use_dwconv"):
            if config.model.get(key) is False:
                parts.append("no" + key[4:])
        for key in ("pooling", "skip", "scan"):
            if key in config.model:
                parts.append(str(config.model[key]))
        if config.mode == "tile":
            parts.append("tile")
        run_dir = Path("runs") / ("-".join(parts) + f"-seed{config.split_seed}")
    return config, run_dir


def _resumed_start(saved: str, given: str, run_dir: Path) -> str:
    """The ``init_checkpoint`` to resume ``run_dir`` with when --init-checkpoint is passed
    again: the saved value when ``given`` is the same file. An older run saved it relative
    to a working directory that is not known: it matches when read from the current one
    or from the run folder's parent; another file is an error naming both paths."""
    if not saved or Path(saved).is_absolute():
        return given  # as any setting: the resume check compares it with the saved one
    places = [Path.cwd(), run_dir.resolve().parent]
    candidates = list(dict.fromkeys(str((place / saved).resolve()) for place in places))
    if given in candidates or any(_same_file(given, c) for c in candidates):
        return saved
    raise ValueError(
        f"cannot resume {run_dir}: --init-checkpoint {given} is not the checkpoint it started "
        f"from, {saved!r} (read as {' or '.join(candidates)}); leave --init-checkpoint out "
        "(--resume does not need it) or pass that file"
    )


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file (links, bind mounts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _start_variant(path: str, asked: str | None) -> dict:
    """``{"variant": V}`` of a TM-UNet start checkpoint (a fine-tune keeps its channels),
    ``{}`` for another model; a ``--variant`` other than the checkpoint's is an error
    naming both, before the run folder is made. Read by ``cmd_fit`` only: ``fit_config``
    reparses release commands whose start checkpoints are not on this machine."""
    from napari_tmunet.checkpoint import read_checkpoint
    from napari_tmunet.config import VARIANTS, ModelConfig

    payload = read_checkpoint(path)  # a missing or damaged file: refused here, before any work
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError):  # the fit's own load says what is wrong with it
        return {}
    channels = tuple(config.channels)
    variant = next((k for k, v in VARIANTS.items() if tuple(v) == channels), None)
    if config.arch != "tmunet" or variant is None:
        return {}
    if asked and asked != variant:
        raise ValueError(
            f"--variant {asked} does not match --init-checkpoint {path}, a TM-UNet {variant} "
            f"checkpoint: pass --variant {variant} or leave --variant out (a fine-tune takes "
            "its start checkpoint's variant)"
        )
    return {"variant": variant}


def cmd_fit(args) -> int:
    from napari_tmunet.checkpoint import CheckpointSaveError
    from napari_tmunet.options import resolve_device
    from napari_tmunet.training.engine import fit
    from napari_tmunet.training.finetune import recorded_validation

    if args.init_checkpoint and not args.resume:  # a fine-tune: the start's variant
        start = _start_checkpoint(args.init_checkpoint, check=True)
        args.variant = _start_variant(start, args.variant).get("variant", args.variant)
    config, run_dir = fit_config(args)
    device = resolve_device(config.device)  # no GPU for --device cuda: refused before any work
    made = _missing_top(run_dir)  # made by this call: removed again if the fit is refused
    try:
        todo = "choose another --run-dir"
        if args.resume:  # the run's own folder: another one holds nothing to resume
            todo = "make it writable, or copy the run folder to a writable place and --resume there"
        _check_output_folder(run_dir, f"cannot train in {run_dir}", todo)
        # a fine-tuning run's data: validated as that run was (its strip inside the image)
        validate = recorded_validation(config, device)
        callbacks = {"validate": validate} if validate is not None else None
        with stop_on_interrupt() as stop_event:
            # a stop saves last.pt at once, unvalidated: a batch system's grace after its
            # SIGTERM (often 30 s) is shorter than a validation on a CPU
            result = fit(
                config,
                run_dir,
                callbacks=callbacks,
                stop_event=stop_event,
                validate_on_stop=False,
            )
    except KeyboardInterrupt:  # a second Ctrl-C: say what is kept
        if made is not None and int(os.environ.get("RANK", "0")) == 0:
            _remove_unused(run_dir, made)
        raise KeyboardInterrupt(_interrupted_words(run_dir)) from None
    except CheckpointSaveError as err:  # a full disk mid-run: what is kept, how to go on
        if made is not None and int(os.environ.get("RANK", "0")) == 0:
            _remove_unused(run_dir, made)
        kept = _interrupted_words(run_dir)
        raise CheckpointSaveError(
            err.errno, f"{err.strerror}; {kept}" if kept else err.strerror
        ) from None
    except Exception:
        if made is not None and int(os.environ.get("RANK", "0")) == 0:
            _remove_unused(run_dir, made)
        raise
    if int(os.environ.get("RANK", "0")) == 0:
        if config.efficiency and not result["stopped"]:
            result["efficiency"] = _add_efficiency(config, Path(result["run_dir"]))
        _print_result(result)
    if result["stopped"]:  # not a finished run: `fit ... && evaluate ...` must not go on
        return 128 + (stop_event.signum or signal.SIGINT)  # 130 Ctrl-C, 143 SIGTERM
    return 0


def _interrupted_words(run_dir: Path) -> str:
    """What an aborted fit leaves in ``run_dir``: the step of its ``last.pt`` and the
    command that continues from it, or that it has none (``run_folder.why_not_resumable``
    then says what the folder is and what to do)."""
    from napari_tmunet.training.run_folder import checkpoint_progress, why_not_resumable

    last = run_dir / "last.pt"
    if not last.is_file():
        return f"no checkpoint kept: {why_not_resumable(run_dir)}" if run_dir.is_dir() else ""
    at = checkpoint_progress(last)[0]
    step = f" (step {at})" if at is not None else ""
    resume = f"napari-tmunet-train fit --run-dir {quote(str(run_dir))} --resume"
    return f"{last}{step} is kept; `{resume}` continues from it"


def _missing_top(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist (None: it exists)."""
    top = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        top = path
    return top


def _remove_unused(run_dir: Path, top: Path) -> None:
    """Remove ``run_dir`` (and its parents up to ``top``, all made by this fit) when it
    holds nothing but its train.log: a fit refused on its data or arguments leaves no
    folder behind. A folder with anything else in it stays."""
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {"train.log"}:
        return
    with contextlib.suppress(OSError):
        (run_dir / "train.log").unlink(missing_ok=True)
    _remove_empty(run_dir, top)


def _check_output_folder(folder: Path, what: str, todo: str) -> None:
    """Before any work: a folder that cannot take the results stops the command with
    ``what``, the reason (read-only, permission denied, ...) and ``todo``."""
    from napari_tmunet.storage import NotWritableError, check_writable_folder

    try:
        check_writable_folder(folder)
    except NotWritableError as err:
        raise NotWritableError(f"{what}: {err.reason}; {todo}", err.errno, err.reason) from None


def _add_efficiency(config, run_dir: Path) -> dict:
    """Params, MACs, FLOPs and speed of the run's best model, added to summary.json."""
    from napari_tmunet.checkpoint import load_checkpoint
    from napari_tmunet.options import resolve_device
    from napari_tmunet.storage import jsonable, write_json

    from .efficiency import measure_efficiency

    best = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else run_dir / "last.pt"
    device = resolve_device(config.device)
    eff = jsonable(measure_efficiency(load_checkpoint(best, device).model, config.size, device))
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary["efficiency"] = eff
    write_json(path, summary)
    return eff


class StopRequest(threading.Event):
    """Set to stop a run cleanly; ``signum``: the signal that asked (None: code did)."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_interrupt():
    """A stop event set by the first Ctrl-C (or SIGTERM): the run stops cleanly after its
    step and saves last.pt (``cmd_fit``: without validating). A second Ctrl-C interrupts at
    once (``cmd_fit`` then names the last.pt kept)."""
    stop_event = StopRequest()

    def handler(signum, frame):
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.signum = signum
        stop_event.set()
        print(f"\n{_stop_words(signum)}", file=sys.stderr)

    if threading.current_thread() is not threading.main_thread():
        yield stop_event  # signals can only be handled on the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_words(signum: int) -> str:
    """What the first stop signal does, and how to abort: Ctrl-C's words, or the signal's
    (a SIGTERM from a job manager or `kill`, where no Ctrl-C was pressed)."""
    if signum == signal.SIGINT:
        return "stopping after this step (saving last.pt, no validation; Ctrl-C again to abort)"
    name = signal.Signals(signum).name
    return (
        f"{name} received: stopping after this step (saving last.pt, no validation; a "
        f"second {name} or Ctrl-C aborts)"
    )


def _print_result(result: dict) -> None:
    from napari_tmunet.evaluation import scores_line

    print(f"run folder: {result['run_dir']}")
    state = "stopped" if result["stopped"] else "finished"
    print(f"{state} at step {result['step']} of {result['total_steps']}; {_outcome(result)}")
    test = result.get("test")
    if test:
        print(scores_line(test))
    eff = result.get("efficiency")
    if eff:
        print(_efficiency_line(eff))


def _outcome(result: dict) -> str:
    """What a finished fit achieved: a pre-training run's last restoration loss, a
    fine-tune's false-positive pixels where its held-out part has no foreground, else
    its best validation Dice."""
    from napari_tmunet.evaluation import percent

    if result.get("pretext"):
        loss = result.get("train_loss")
        if loss is None:
            return "no step trained (pre-training: no validation)"
        return f"final restoration loss {loss:.4f} (pre-training: no validation)"
    if not math.isfinite(result["best_score"]):
        counts = result.get("val_false_positive_px")  # a held-out part without foreground
        return _false_positive_outcome(counts, result["step"]) if counts else "no validation score"
    return f"best validation Dice {percent(result['best_score'])} at step {result['best_step']}"


def _false_positive_outcome(counts: list, step: int) -> str:
    """A fit validated by false-positive pixels (a fine-tune's held-out part without
    foreground): the engine's recorded counts, first -> last, and the note that the last
    checkpoint is the model (no Dice, so no best.pt)."""
    from napari_tmunet.training.finetune import LAST_CHECKPOINT_NOTE, NO_HELD_OUT_FOREGROUND

    (first_step, first), (last_step, last) = counts[0], counts[-1]
    scored = f"false-positive pixels {last} at step {last_step}"
    if len(counts) > 1:
        scored = f"false-positive pixels {first} at step {first_step} -> {last} at step {last_step}"
    return f"{NO_HELD_OUT_FOREGROUND}: {scored}, no Dice; {LAST_CHECKPOINT_NOTE.format(step=step)}"


def _efficiency_line(eff: dict) -> str:
    macs = f"{eff['macs'] / 1e9:.3f} G" if eff.get("macs") else "n/a (install thop)"
    return (
        f"params {eff['params'] / 1e6:.3f} M, MACs (thop) {macs}, FLOPs "
        f"{eff.get('flops', 0) / 1e9:.3f} G, {eff['fps_batch1']:.1f} FPS at batch 1, "
        f"{eff['throughput']:.1f} images/s at batch {eff['batch']} on {eff['device']} "
        f"({'x'.join(map(str, eff['size']))})"
    )


def cmd_cache(args) -> int:
    """Decode a dataset folder into one cache file; OUTPUT is checked before decoding."""
    from napari_tmunet.data.cache import build_cache

    data, _ = _data_source(args)
    if data is None:
        raise ValueError("no dataset: pass --preset NAME or --data FOLDER")
    if not Path(data).is_dir():
        raise ValueError(f"--data {data} is not a folder; `cache` decodes a dataset folder")
    if args.max_side < 0 or 0 < args.max_side < 32:  # 32: the smallest input size of fit
        raise ValueError(
            f"--max-side {args.max_side}: expected 0 (native resolution) or at least 32 pixels"
        )
    output = cache_output(args.output, data, bool(args.overwrite))
    made = _missing_top(output.parent)  # removed again when nothing is written
    try:
        _check_output_folder(output.parent, f"cannot write {output}", "choose another OUTPUT")
        start = time.time()
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is no terminal (a log file), as train's
        off = True if args.no_progress else None
        with tqdm(desc="decode", unit="pair", disable=off) as bar:

            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            # written to a temporary file renamed at the end (storage.atomic_path): a
            # failed or interrupted build leaves no partial file and keeps the old one
            cache = build_cache(
                data,
                output,
                skip_bad=bool(args.skip_bad),
                progress=progress,
                max_side=args.max_side,
            )
    except (Exception, KeyboardInterrupt):
        if made is not None:
            _remove_empty(output.parent, made)
        raise
    size = output.stat().st_size / 1e6
    print(
        f"{output}: {len(cache)} pairs from {data} ({size:.1f} MB, {time.time() - start:.0f}"
        f" s); mask rules {cache.rule_counts()}; skipped {len(cache.skipped)}"
    )
    return 0


def cache_output(output: str, data: str, overwrite: bool) -> Path:
    """The file `cache` writes for OUTPUT: OUTPUT itself, or ``OUTPUT/<dataset>.npz`` when
    OUTPUT is a folder (an existing one, or a name ending in a slash). An existing file
    there is refused unless it is a cache this command wrote and ``overwrite`` is set: a
    dataset's mask or any other file is never replaced."""
    from napari_tmunet.data.cache import is_cache_file

    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):
        path = path / f"{Path(data).name}.npz"
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the name of the .npz file to write")
    if not (path.exists() or path.is_symlink()):
        return path
    if not is_cache_file(path):
        raise ValueError(
            f"{path} exists and is not a cache file that napari-tmunet-train wrote: it is "
            "kept (also with --overwrite); give another OUTPUT, e.g. a new name.npz"
        )
    if not overwrite:
        raise ValueError(
            f"{path} exists (a cache file): it is kept; pass --overwrite to replace it, "
            "or give another OUTPUT"
        )
    return path


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` (all made by this command) while
    they are empty."""
    with contextlib.suppress(OSError):
        for path in (folder, *folder.parents):
            path.rmdir()  # an OSError (not empty) ends it
            if path == top:
                break


def cmd_evaluate(args) -> int:
    """Score a checkpoint (or a shipped model) on a part of a dataset; write
    eval-PART-NAME.csv / .json (eval-PART-NAME-DATASET.* on data it was not trained on,
    see ``_evaluation_stem``) beside it, in --out, or (a shipped model) here."""
    from napari_tmunet.checkpoint import load_checkpoint
    from napari_tmunet.evaluation import evaluate
    from napari_tmunet.inference import resolve_device
    from napari_tmunet.registry import check_segments
    from napari_tmunet.storage import write_json
    from napari_tmunet.training.run_data import load_dataset
    from napari_tmunet.training.run_folder import dataset_label

    if args.split_seed is not None and args.split_seed < 0:  # as TrainConfig, before any work
        raise ValueError(f"--split-seed {args.split_seed}: expected an integer >= 0")
    ckpt_path, shipped = checkpoint_or_model(args.checkpoint)
    if shipped is not None:
        _check_shipped_evaluation(args, shipped)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(ckpt_path, device)
    check_segments(ckpt, ckpt_path)  # a pre-training checkpoint has no masks to score
    trained = ckpt.metadata.get("train_config") or {}
    cfg = _evaluation_config(args, ckpt_path, trained)
    own_data = _same_data(cfg.data, trained.get("data"))
    # a shipped model's folder is the installed package's: its results go to the current one
    out = Path(args.out) if args.out else ckpt_path.parent if shipped is None else Path(".")
    stem = _evaluation_stem(out, f"eval-{args.part}-{ckpt_path.stem}", cfg, own_data)
    what = f"cannot write {out / stem}.csv and .json"
    _check_output_folder(out, what, "choose where the results go with --out FOLDER")
    cache = load_dataset(cfg)
    samples, source, region = _evaluation_samples(args, cfg, cache, ckpt_path, trained)
    mode = args.mode or cfg.mode
    ev = evaluate(
        ckpt.model,
        samples,
        ckpt.input_config,
        mode,
        device=device,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        region=region,
    )
    ev.to_csv(out / f"{stem}.csv")
    summary = {
        "checkpoint": str(ckpt_path),
        "dataset": dataset_label(cfg, cache),
        "data": cfg.data,
        "own_data": own_data,  # report's test_result reads only these
        "part": args.part,
        "split": source,
        "mode": mode,
        "test": ev.aggregate(),
    }
    write_json(out / f"{stem}.json", summary)
    _print_evaluation(summary)
    print(f"results: {out / (stem + '.csv')} (per image), {out / (stem + '.json')} (summary)")
    return 0


def _same_data(data: str | None, trained: str | None) -> bool:
    """Whether ``data`` is the dataset a checkpoint was trained on (``trained``, its
    config's data; False when it does not say)."""
    return bool(data and trained) and Path(data).resolve() == Path(trained).resolve()


def _evaluation_stem(out: Path, base: str, cfg, own_data: bool) -> str:
    """The name of evaluate's CSV / JSON in ``out``: ``base`` (eval-PART-CHECKPOINT) on the
    data the checkpoint was trained on, else ``base``-DATASET, so that scores on several
    datasets sit side by side; -2, -3, ... when that name holds the scores of other data
    (two folders of one name), which are never replaced. The same data's scores are."""
    from napari_tmunet.training.run_folder import dataset_label

    label = re.sub(r"[^\w.+-]+", "_", dataset_label(cfg))  # a name: no folder, no space
    stem = base if own_data else f"{base}-{label}"
    candidate, number = stem, 1
    while _holds_other_scores(out / f"{candidate}.json", cfg.data, dataset_label(cfg)):
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def _holds_other_scores(path: Path, data: str, label: str) -> bool:
    """Whether evaluate's JSON ``path`` holds scores on other data than ``data`` (by its
    "data"; an older file's by its dataset name, ``label``); one that cannot be read
    counts as other: it is kept."""
    if not path.exists():
        return False
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if "data" not in recorded:
            return recorded.get("dataset") != label
    except (OSError, ValueError, AttributeError):
        return True
    return not _same_data(data, recorded["data"])


def checkpoint_or_model(name_or_path: str):
    """The checkpoint file to evaluate or start from (--init-checkpoint) and its registry
    entry when it is a shipped model (else None): a shipped model's name or modality, or a
    checkpoint file, looked up as napari-tmunet-predict does (``registry.resolve_model``;
    a run folder is refused with its words, naming its best.pt)."""
    from napari_tmunet import registry

    try:
        name, path, _ = registry.resolve_model(name_or_path)
    except (ValueError, RuntimeError):  # not a shipped model (or no registry): a path
        if Path(name_or_path).expanduser().is_dir():
            raise
        return Path(name_or_path), None  # the loader names a missing or damaged file
    return path, registry.find_model(name)


def _start_checkpoint(name_or_path: str, check: bool = False) -> str:
    """--init-checkpoint as an absolute file path (a shipped model's name or modality: its
    file), so that the run folder's config finds it from any working directory; ``check``:
    one that is neither is an error naming the shipped models (``fit_config`` also reads
    release commands whose start files are not on this machine: no check there)."""
    if check:
        from napari_tmunet import registry

        try:
            registry.resolve_model(name_or_path)
        except ValueError as err:
            raise ValueError(f"--init-checkpoint: {err}") from None
    return str(checkpoint_or_model(name_or_path)[0].expanduser().resolve())


def _check_shipped_evaluation(args, entry) -> None:
    """A shipped model needs the data to score it on; say what it was trained on (no
    split here holds its training images out)."""
    if not (args.data or args.preset):
        raise ValueError(
            f"{entry.name} is a shipped model: pass --data PATH or --preset NAME for the "
            "images to evaluate it on"
        )
    print(
        f"note: {entry.name} was trained on {entry.trained_on}; its scores on images of "
        "that training data are not held-out scores",
        file=sys.stderr,
    )


def _evaluation_config(args, ckpt_path: Path, trained: dict):
    """The checkpoint's training config with the data and options of the command line."""
    from napari_tmunet.training.config import TrainConfig

    tcfg = TrainConfig.from_dict(trained) if trained else TrainConfig()
    data, name = _data_source(args)
    values = tcfg.to_dict()
    if data is not None:
        values.update(data=data, max_images=0)
        if Path(data).resolve() != Path(tcfg.data or ".").resolve():
            values["dataset_name"] = ""  # label results with the data evaluated, not trained
    if name is not None:
        values["dataset_name"] = name
    if args.skip_bad:
        values["skip_bad"] = True
    cfg = TrainConfig.from_dict(values)
    if not cfg.data:
        raise ValueError(
            f"{ckpt_path} does not name its dataset: pass --preset NAME or --data PATH"
        )
    return cfg


def _evaluation_samples(args, cfg, cache, ckpt_path: Path, trained: dict) -> tuple:
    """The items of the chosen part (split file beside the checkpoint, or a random split),
    where that part comes from, in words, and the region of them to score (None: all).
    The checkpoint's own split on other data (``trained``: its training config) says how
    to score that data. The valid part of a Fine-tune run that held out a strip of one
    image is that strip scored inside the whole image, as the run validated it."""
    from napari_tmunet.data.datasets import SplitNamesError, load_split, make_split
    from napari_tmunet.training.finetune import recorded_plan, recorded_strip

    strip = recorded_strip(cfg.data) if args.part == "valid" and not args.split_file else None
    if strip is not None:
        where = f"the held-out strip inside its whole image, as {recorded_plan(cfg.data)}"
        return strip[0], where + " records it", strip[1]
    names = list(cache.names)
    if args.part == "all":
        chosen, source = names, "all images"
    else:
        split_file = Path(args.split_file) if args.split_file else ckpt_path.parent / "split.json"
        if split_file.is_file():
            try:
                split, _ = load_split(split_file, names, seed=cfg.split_seed)
            except SplitNamesError as err:
                if args.split_file:  # the user's own file: its names are the matter
                    raise
                why = _split_of_other_data(split_file, ckpt_path, cfg, trained, err)
                raise ValueError(why) from None
            source = str(split_file)
        else:
            seed = cfg.split_seed if args.split_seed is None else args.split_seed
            split = make_split(names, seed, cfg.split_ratios, groups=cache.groups)
            source = f"random split, seed {seed}"
        chosen = split[args.part]
    if not chosen:
        raise ValueError(_empty_part(args.part, source, cfg.data))
    index = {n: i for i, n in enumerate(names)}
    return [cache[index[n]] for n in chosen], source, None


def _empty_part(part: str, source: str, data: str | None) -> str:
    """Why the chosen part of the split is empty, and which part to score instead."""
    from napari_tmunet.training.finetune import recorded_plan

    empty = f"the {part} part of the split ({source}) is empty"
    plan = recorded_plan(data)
    if plan is not None and part == "test":
        return (
            f"{empty}: a Fine-tune run ({plan}) holds out only a validation part and has "
            "no test part by design; score its held-out part with --part valid"
        )
    other = "valid" if part == "test" else "test"
    return f"{empty}; score --part {other} or --part all, or give a split with --split-file FILE"


def _split_of_other_data(split_file: Path, ckpt_path: Path, cfg, trained: dict, err) -> str:
    """Why the split beside a checkpoint does not fit the data to score, and what to pass."""
    from napari_tmunet.training.config import TrainConfig
    from napari_tmunet.training.run_folder import dataset_label

    label = dataset_label(cfg)
    was = dataset_label(TrainConfig.from_dict(trained)) if trained.get("data") else ""
    on = f" ({was})" if was else ""
    return (
        f"{split_file} is the split of the dataset {ckpt_path} was trained on{on}; "
        f"{len(err.unknown)} of its {err.total} images are not in {label} ({cfg.data}): to "
        f"score {label}, pass --part all (every image), or give a split of it with "
        "--split-file FILE"
    )


def _print_evaluation(summary: dict) -> None:
    """The scores of ``cmd_evaluate`` as a Markdown table: a row at the evaluation size
    (the one the scores record, as the JSON has it) and a native one; only the native row
    where the scored part was not resized (a Fine-tune run's held-out strip)."""
    agg = summary["test"]
    rows = [("native", "native_")]
    if agg.get("size"):
        rows.insert(0, ("x".join(map(str, agg["size"])), ""))
    print(
        f"{summary['checkpoint']} on {summary['dataset']} {summary['part']} "
        f"({agg['count']} images, {summary['split']}):"
    )
    print(
        "| size | Dice | IoU | F1 | HD | HD95 | empty pred. |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {label} | {100 * agg[p + 'dice_mean']:.2f} ± {100 * agg[p + 'dice_std']:.2f} | "
            f"{100 * agg[p + 'iou_mean']:.2f} | {100 * agg[p + 'f1']:.2f} | "
            f"{agg[p + 'hd_mean']:.2f} ± {agg[p + 'hd_std']:.2f} | {agg[p + 'hd95_mean']:.2f} | "
            f"{agg[p + 'empty_prediction']} |"
            for label, p in rows
        )
    )


def cmd_report(args) -> int:
    from .report import collect_runs, render_report

    runs, missing, pretraining = collect_runs(args.runs)
    if not runs:
        where = ", ".join(args.runs)
        raise ValueError(
            f"no run folders with test results under {where} (a run folder has config.json and "
            "summary.json; runs still training or trained with --no-test have none: run "
            "`napari-tmunet-train evaluate RUN/best.pt`)"
        )
    text = render_report(
        runs, tables=args.tables, paper=args.paper, missing=missing, pretraining=pretraining
    )
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


def cmd_efficiency(args) -> int:

    from napari_tmunet.checkpoint import load_checkpoint
    from napari_tmunet.inference import resolve_device
    from napari_tmunet.model import build_model
    from napari_tmunet.storage import jsonable, write_json
    from napari_tmunet.training.config import TrainConfig

    from .efficiency import measure_efficiency

    device = resolve_device(args.device)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, device).model
    else:
        overrides = {  # the same option -> ModelConfig table as `fit`
            key: conv(getattr(args, dest))
            for dest, (key, conv) in MODEL_FIELDS.items()
            if getattr(args, dest, None) not in (None, False)
        }
        chosen = {k: getattr(args, k) for k in ("arch", "variant") if getattr(args, k)}
        tc = TrainConfig(**chosen, model=overrides)
        model = build_model(tc.model_config(3)).to(device)
    size = args.size * 2 if len(args.size) == 1 else args.size
    eff = jsonable(measure_efficiency(model, size, device, batch=args.batch, amp=args.amp))
    print(_efficiency_line(eff))
    print(json.dumps(eff, indent=2))
    if args.out:
        write_json(args.out, eff)
    if args.write:
        path = Path(args.write) / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        summary["efficiency"] = eff
        write_json(path, summary)
        print(f"written to {path}")
    return 0


DEMO_DATA = "demo-data"  # the bundled sample's tiles, in the demo's run folder


def cmd_demo(args) -> int:
    """Train variant t at 64x64 for a few dozen steps, evaluate, print the tables.

    The run folder must be new or empty. Without --data the bundled sample's tiles are
    cut in a temporary folder and trained from memory; once the run has started they are
    copied into the run folder (``demo-data/``, the path its config.json names), so
    everything the demo made is in that folder and a refused demo leaves nothing."""
    import shutil
    import tempfile

    from napari_tmunet.data.cache import decode_folder
    from napari_tmunet.options import resolve_device
    from napari_tmunet.training import TrainConfig, fit

    from .report import collect_runs, render_report

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"demo-{stamp}"
    _check_demo_folder(run_dir)
    resolve_device(args.device)  # --device cuda without a GPU: refused before any work
    made = _missing_top(run_dir)
    with tempfile.TemporaryDirectory(prefix="napari-tmunet-demo-") as tmp:
        dataset, tiles = None, Path(tmp) / DEMO_DATA
        if args.data:
            source = argparse.Namespace(data=args.data, preset=None, dataset_name=None)
            data, _ = _data_source(source)
            name, max_images = Path(args.data).name, args.max_images
        else:
            data = str((run_dir / DEMO_DATA).resolve())
            dataset = decode_folder(_write_demo_tiles(tiles))
            dataset.source = data
            name, max_images = "demo-nuclei", 0
        config = TrainConfig(
            data=data,
            dataset_name=name,
            max_images=max_images,
            variant="t",
            size=(64, 64),
            steps=args.steps,
            epochs=max(1, args.steps // 10),
            batch_size=8,
            lr=2e-3,
            gamma=0.95,
            hflip=0.5,
            vflip=0.5,
            rot90=True,
            device=args.device,
            num_workers=2,
            eval_every=2,
            progress=not args.no_progress,
        )
        start = time.time()
        try:
            result = fit(config, run_dir, dataset=dataset)
        except (Exception, KeyboardInterrupt):
            if made is not None:
                _remove_unused(run_dir, made)
            raise
        finally:  # a started run (also a stopped one) gets the data its config names
            if dataset is not None and (run_dir / "config.json").is_file():
                shutil.copytree(tiles, run_dir / DEMO_DATA, dirs_exist_ok=True)
    _print_result(result)
    runs, _, _ = collect_runs([run_dir])
    print()
    print(render_report(runs, tables=(1, 4)))
    print(f"demo finished in {time.time() - start:.0f} s; everything is in {run_dir}")
    return 0


def _check_demo_folder(run_dir: Path) -> None:
    """A demo starts in a new or empty folder: it continues or replaces no run (it takes
    neither --resume nor --overwrite)."""
    from napari_tmunet.training.run_folder import SYSTEM_FILES

    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file; give a new or empty folder")
    names = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    names = [n for n in names if n not in SYSTEM_FILES]
    if names:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ValueError(
            f"run folder {run_dir} is not empty ({shown}); a demo starts in a new or empty "
            "folder: choose another --run-dir, or leave --run-dir out for a new "
            "runs/demo-<time>"
        )


def _write_demo_tiles(folder: Path, tile: int = 64) -> Path:
    """The bundled MoNuSeg sample cut into tiles, as a dataset folder (images/ + masks/)."""
    import numpy as np
    from PIL import Image

    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.data.images import write_mask

    image, mask = load_sample("nuclei")
    image = np.asarray(image)[..., :3]
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    for r in range(rows):
        for c in range(cols):
            sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
            name = f"tile_{r}_{c}"
            (folder / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(image[sl])).save(folder / "images" / f"{name}.png")
            write_mask(folder / "masks" / f"{name}.png", mask[sl] > 0)
    return folder
