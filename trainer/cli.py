"""``napari-tmunet-train``: headless training, evaluation and the paper's tables.

Subcommands: ``fit`` (train; the paper's Section 3.1 protocol by default), ``cache``
(decode a dataset once into a file to copy to a GPU machine), ``evaluate`` (a checkpoint
on a split), ``report`` (Markdown tables like the paper's Tables 1-3 from run folders),
``efficiency`` (params, MACs, FLOPs, FPS), ``demo`` (a two-minute CPU run).
Run ``napari-tmunet-train <subcommand> --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from napari_tmunet.options import DEVICES

PRESETS = {  # name -> (folder under the datasets root, the paper's dataset name)
    "cvccdb": ("CVC-ClinicDB", "CVCCDB"),
    "monuseg": ("MoNuSeg", "MoNuSeg"),
    "colondb": ("CVC-ColonDB", "ColonDB"),
    "udiat": ("UDIAT", "UDIAT"),
}
DEFAULT_DATASETS = Path("..") / "shared" / "datasets"
DEVICE_HELP = "auto: CUDA when there is a GPU, else the CPU (default auto)"

DESCRIPTION = """\
Train and evaluate TM-UNet (and the classic U-Net) headless, reproducing the protocol
of the TM-UNet paper (Section 3.1), and print the paper's tables from run folders.

data      ROOT/images/<name>.<ext> + ROOT/masks/<name>.<ext>, paired by base name
          (png, tif/tiff, jpg/jpeg, bmp; images grey/RGB/RGBA, 8 or 16 bit; masks
          1-bit, L, LA, RGB, 0/1 or 0/255). Masks are binarised with "> 0" when their
          maximum is at most 1 or they are integer label images wider than 8 bits,
          else "> 127" (CVC-ClinicDB has stray values 1..127); the rule is logged.
          A missing mask, size mismatch or unreadable file stops with its name;
          --skip-bad leaves such pairs out with a summary. Identical images are kept
          in one split part. Presets: cvccdb, monuseg, colondb, udiat.
split     7:1:2 train/valid/test from --split-seed, written to the run folder as
          split.json {"train": [...], "valid": [...], "test": [...]}; --split-file
          takes such a file (without "valid", one is carved from train and said so).
training  Adam 1e-4, ExponentialLR 0.98 per epoch, batch 16, 200 epochs, loss
          2 x CE + 1 x Dice, horizontal flips, images resized to 512x512 (--mode crop:
          random crops at native resolution and sliding-window evaluation; --steps:
          a schedule in optimiser steps), bf16 on CUDA; best.pt by validation Dice,
          last.pt every epoch; --resume continues exactly. torchrun: several GPUs.
test      per test image at 512x512 (and at native resolution as an extra column),
          probability > 0.5: Dice and IoU without smoothing, F1 from the mean
          precision and recall (as the released code), Hausdorff distance (HD) and
          HD95 of the mask boundaries in pixels; an empty prediction on a non-empty
          mask scores HD = the image diagonal and is counted. Per-image CSV, mean and
          std. Efficiency: parameters, MACs (thop, the paper's "FLOPs"), true FLOPs,
          FPS at batch 1, throughput at batch 16.
"""

EPILOG = """\
examples:
  # the paper's protocol (512x512 resize, Adam 1e-4, gamma 0.98, batch 16, 200 epochs,
  # 2 CE + 1 Dice, horizontal flips, 7:1:2 split from --split-seed) on CVC-ClinicDB:
  napari-tmunet-train fit --preset cvccdb --split-seed 0
  # several GPUs (batch 16 is the global batch; BatchNorm synchronised):
  torchrun --nproc_per_node 2 -m trainer.cli fit --preset cvccdb
  # MoNuSeg at native resolution: random 512 crops, 4000 steps, sliding-window test:
  napari-tmunet-train fit --preset monuseg --mode crop --steps 4000 --batch-size 16
  # ablation (Table 2) and channel sizes (Table 3):
  napari-tmunet-train fit --preset monuseg --no-xlstm --no-pooling --no-dwconv
  napari-tmunet-train fit --preset monuseg --variant t
  # classic U-Net (Table 1's U-Net row):
  napari-tmunet-train fit --preset udiat --arch unet --split-seed 1
  # continue a run (e.g. after a 10-minute limit) exactly where it stopped:
  napari-tmunet-train fit --run-dir runs/CVCCDB-tmunet-b-seed0 --resume
  # decode once, copy the file to the GPU machine, train from it:
  napari-tmunet-train cache --preset monuseg monuseg.npz
  napari-tmunet-train fit --data monuseg.npz --dataset-name MoNuSeg
  napari-tmunet-train evaluate runs/CVCCDB-tmunet-b-seed0/best.pt
  napari-tmunet-train report runs/ --paper --out docs/tables.md
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-tmunet-train`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 reports
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from napari_tmunet.checkpoint import CheckpointError
    from napari_tmunet.data.datasets import DatasetError
    from napari_tmunet.training.run_folder import RunDirError

    try:
        return int(args.handler(args) or 0)
    except (DatasetError, RunDirError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"napari-tmunet-train {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------- parser


def _add_model_args(group) -> None:
    """The model options of `fit` and `efficiency` (None = the TrainConfig/ModelConfig default)."""
    group.add_argument("--arch", choices=("tmunet", "unet"), help="architecture (default tmunet)")
    group.add_argument(
        "--variant",
        choices=("t", "s", "b"),
        help="TM-UNet channels: t 8..128, s 16..256, b 32..512 (default b)",
    )
    group.add_argument(
        "--channels", type=int, nargs=5, metavar="C", help="explicit channel sizes C1..C5 (Table 3)"
    )
    group.add_argument("--no-xlstm", action="store_true", default=None, help="ablation: no xLSTM")
    group.add_argument(
        "--no-pooling", action="store_true", default=None, help="ablation: no multi-scale pooling"
    )
    group.add_argument("--no-dwconv", action="store_true", default=None, help="ablation: no DWConv")
    group.add_argument(
        "--pooling",
        choices=("token_channel", "spatial", "released"),
        help="multi-scale pooling windows over scan positions x channels, as the released "
        "code (token_channel, default; 'released' is its earlier name) or over the 2-D "
        "feature map (spatial)",
    )
    group.add_argument("--skip", choices=("add", "concat"), help="decoder skips (default add)")
    group.add_argument(
        "--scan", choices=("alternate", "fused"), help="xLSTM scan (default alternate)"
    )
    group.add_argument("--mlstm-kernel", help="mlstm_kernels kernel name (default auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-tmunet-train",
        description="Train and evaluate TM-UNet (and the classic U-Net) headless, with the "
        "TM-UNet paper's protocol, and print the paper's tables from run folders.",
        epilog="`napari-tmunet-train fit --help` describes the protocol, with examples; "
        "`napari-tmunet-train COMMAND --help` the options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="train a model (paper protocol by default)",
        description=(
            "Train a model. Defaults follow the paper: images resized to 512x512, Adam lr "
            "1e-4, ExponentialLR gamma 0.98 per epoch, batch 16, 200 epochs, loss 2 CE + 1 "
            "Dice, horizontal flips (p 0.25, as the released code), bf16 on CUDA, best "
            "checkpoint by validation Dice, test of the best checkpoint at the end. Under "
            "torchrun the same command trains on several GPUs (DDP; --batch-size is the "
            "global batch; BatchNorm synchronised across GPUs)."
        ),
        epilog=DESCRIPTION + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_args(fit)
    fit.add_argument("--config", help="start from a saved config.json (flags override it)")
    fit.add_argument("--run-dir", help="run folder (default runs/<dataset>-<model>-seed<N>)")
    fit.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue the run in --run-dir from last.pt (exactly)",
    )
    fit.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="start anew in a non-empty --run-dir (old files moved to previous-*/)",
    )
    g = fit.add_argument_group("split")
    g.add_argument("--split-file", help="JSON {train, valid, test}; no valid: carved from train")
    g.add_argument("--split-seed", type=int, help="seed of the random 7:1:2 split (default 0)")
    g.add_argument(
        "--official-split",
        action="store_true",
        default=None,
        help="use the dataset's train.txt/test.txt (MoNuSeg's official 30/14)",
    )
    g.add_argument("--max-images", type=int, help="use only the first N pairs (quick tests)")
    g = fit.add_argument_group("model")
    _add_model_args(g)
    g.add_argument("--init-checkpoint", help="start from these weights (fine-tuning)")
    g.add_argument(
        "--in-channels",
        type=int,
        choices=(1, 3),
        help="model input channels (default: 1 if every image is grey, else 3)",
    )
    g.add_argument("--num-classes", type=int, help="1 (sigmoid, default) or N (softmax)")
    g = fit.add_argument_group("input")
    g.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="N",
        help="model input H [W] (default 512): resize target or crop size",
    )
    g.add_argument(
        "--mode",
        choices=("resize", "tile", "crop"),
        help="resize whole images (paper) or tile: random crops at native resolution "
        "with sliding-window evaluation (for few large images, e.g. MoNuSeg; 'crop' is "
        "its earlier name)",
    )
    g.add_argument("--mean", type=float, nargs="+", help="normalisation mean (default ImageNet)")
    g.add_argument("--std", type=float, nargs="+", help="normalisation std (default ImageNet)")
    g.add_argument("--hflip", type=float, help="horizontal flip probability (default 0.25)")
    g.add_argument("--vflip", type=float, help="vertical flip probability (default 0)")
    g.add_argument("--rot90", action="store_true", default=None, help="random 90-degree turns")
    g = fit.add_argument_group("optimisation")
    g.add_argument(
        "--epochs", type=int, help="epochs (default 200); with --steps: number of LR/eval periods"
    )
    g.add_argument(
        "--steps",
        type=int,
        help="train for this many optimiser steps instead of epochs; the LR decays "
        "by gamma every steps/epochs steps (the paper's total decay)",
    )
    g.add_argument("--batch-size", type=int, help="global batch size (default 16)")
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    g.add_argument("--gamma", type=float, help="ExponentialLR factor per period (default 0.98)")
    g.add_argument("--lr-decay-every", type=int, help="period length in steps (default: epoch)")
    g.add_argument("--weight-decay", type=float, help="Adam weight decay (default 0)")
    g.add_argument("--adam-eps", type=float, help="Adam epsilon (default 1e-8)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm (default off)")
    g.add_argument("--ce-weight", type=float, help="lambda1 of the loss (default 2)")
    g.add_argument("--dice-weight", type=float, help="lambda2 of the loss (default 1)")
    g.add_argument("--seed", type=int, help="seed of initialisation and augmentation (default 0)")
    g.add_argument("--no-amp", action="store_true", default=None, help="no bf16 autocast on CUDA")
    g.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        default=None,
        help="run each step eagerly instead of replaying a CUDA graph (one GPU)",
    )
    g.add_argument(
        "--no-sync-bn",
        action="store_true",
        default=None,
        help="per-GPU BatchNorm under DDP (default: synchronised)",
    )
    g = fit.add_argument_group("evaluation and output")
    g.add_argument("--eval-every", type=int, help="validate every N epochs/periods (default 1)")
    g.add_argument("--eval-batch-size", type=int, help="images or windows per forward (8)")
    g.add_argument("--overlap", type=float, help="sliding-window overlap in crop mode (0.25)")
    g.add_argument(
        "--no-test",
        action="store_true",
        default=None,
        help="do not test the best checkpoint at the end",
    )
    g.add_argument(
        "--no-efficiency",
        action="store_true",
        default=None,
        help="do not measure params/MACs/FLOPs/FPS at the end",
    )
    g.add_argument("--no-progress", action="store_true", default=None, help="no progress bars")
    g.add_argument("--device", choices=DEVICES, help="default auto")
    g.add_argument("--num-workers", type=int, help="threads decoding the dataset (default 4)")
    fit.set_defaults(handler=cmd_fit)

    cache = sub.add_parser(
        "cache",
        help="decode a dataset folder into one cache file",
        description=(
            "Decode every image and mask of a dataset folder once, at native resolution, "
            "into one compressed .npz file; `fit --data FILE` trains from it (copy it to "
            "a GPU machine instead of the image folder)."
        ),
    )
    _add_data_args(cache)
    cache.add_argument(
        "--max-side",
        type=int,
        default=0,
        help="store images at most this long on their longer side (e.g. 2x the training "
        "size; default 0: native resolution)",
    )
    cache.add_argument("output", help="the .npz file to write")
    cache.set_defaults(handler=cmd_cache)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a split",
        description=(
            "Evaluate a checkpoint on the test split (by default the split.json of its run "
            "folder): per-image CSV and a summary (mean, std, F1 from mean P/R, HD, HD95, "
            "empty predictions), at the evaluation size and at native resolution."
        ),
    )
    ev.add_argument("checkpoint", help="a .pt checkpoint (best.pt of a run)")
    _add_data_args(ev)
    ev.add_argument("--split-file", help="split JSON (default: split.json beside the checkpoint)")
    ev.add_argument("--split-seed", type=int, help="random split seed when there is no split file")
    ev.add_argument(
        "--part",
        choices=("test", "valid", "train", "all"),
        default="test",
        help="part of the split to evaluate, or all images (default test)",
    )
    ev.add_argument("--mode", choices=("resize", "tile", "crop"), help="default: as trained")
    ev.add_argument("--out", help="output folder (default: the checkpoint's folder)")
    ev.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    ev.add_argument(
        "--batch-size", type=int, default=8, help="images (or tiles) per forward pass (default 8)"
    )
    ev.set_defaults(handler=cmd_evaluate)

    rep = sub.add_parser(
        "report",
        help="Markdown tables like the paper's Tables 1-3",
        description=(
            "Collect run folders (searched recursively) and print Markdown tables laid out "
            "like the paper's Table 1 (models x datasets), Table 2 (ablation) and Table 3 "
            "(channel sizes), plus native-resolution figures; several runs of a model on a "
            "dataset are shown as mean ± std."
        ),
    )
    rep.add_argument("runs", nargs="+", help="run folders or folders that contain them")
    rep.add_argument("--tables", type=int, nargs="+", choices=(1, 2, 3, 4), default=[1, 2, 3, 4])
    rep.add_argument("--paper", action="store_true", help="add the paper's rows for comparison")
    rep.add_argument("--out", help="also write the Markdown to this file")
    rep.set_defaults(handler=cmd_report)

    eff = sub.add_parser(
        "efficiency",
        help="params, MACs, FLOPs, FPS of a model",
        description=(
            "Parameters, MACs as the paper counts them (thop), true FLOPs (torch flop "
            "counter), FPS at batch 1 and throughput at batch 16, for a checkpoint or an "
            "architecture. Run it alone on the GPU for clean timings."
        ),
    )
    eff.add_argument("checkpoint", nargs="?", help="checkpoint (else --arch/--variant)")
    _add_model_args(eff)
    eff.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[512],
        metavar="PX",
        help="input size in pixels, one number for a square (default 512)",
    )
    eff.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    eff.add_argument("--amp", action="store_true", help="time under bf16 autocast (CUDA)")
    eff.add_argument(
        "--batch", type=int, default=16, help="batch size of the throughput timing (default 16)"
    )
    eff.add_argument("--write", help="run folder whose summary.json gets these numbers")
    eff.add_argument("--out", help="also write the numbers to this JSON file")
    eff.set_defaults(handler=cmd_efficiency)

    demo = sub.add_parser(
        "demo",
        help="train and evaluate a tiny model in under two minutes on a CPU",
        description=(
            "Train a tiny TM-UNet (variant t, 64x64) for a few dozen steps and evaluate it. "
            "Default data: the bundled MoNuSeg nuclei sample cut into 64x64 tiles; with "
            "--data, the first --max-images pairs of a dataset folder."
        ),
    )
    demo.add_argument("--data", help="dataset folder (default: the bundled nuclei sample)")
    demo.add_argument("--max-images", type=int, default=24)
    demo.add_argument("--steps", type=int, default=60)
    demo.add_argument("--run-dir", help="default runs/demo-<time>")
    demo.add_argument("--device", choices=DEVICES, default="cpu")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="one of the paper's datasets: cvccdb (CVC-ClinicDB), monuseg, colondb "
        "(CVC-ColonDB), udiat; folder $TMUNET_DATASETS/<name> or "
        "../shared/datasets/<name> relative to the current directory",
    )
    g.add_argument("--data", help="dataset folder (images/ + masks/) or a cache .npz file")
    g.add_argument("--dataset-name", help="dataset label in reports (default: preset or folder)")
    g.add_argument(
        "--skip-bad",
        action="store_true",
        default=None,
        help="skip unreadable or mismatched pairs (with a summary) instead of failing",
    )


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
        raise FileNotFoundError(
            f"--data {data} (absolute: {Path(data).resolve()}) does not exist: give a dataset "
            "folder with images/ and masks/, or a cache file from `napari-tmunet-train cache`"
        )
    return data, name


# ---------------------------------------------------------------------------- commands

_FIT_FIELDS = {  # argparse dest -> TrainConfig field (same name when missing)
    "no_amp": ("amp", lambda v: not v),
    "no_cuda_graphs": ("cuda_graphs", lambda v: not v),
    "no_sync_bn": ("sync_bn", lambda v: not v),
    "no_test": ("test", lambda v: not v),
    "no_efficiency": ("efficiency", lambda v: not v),
    "no_progress": ("progress", lambda v: not v),
}
_MODEL_FIELDS = {  # argparse dest -> ModelConfig override
    "channels": ("channels", list),
    "no_xlstm": ("use_xlstm", lambda v: not v),
    "no_pooling": ("use_pooling", lambda v: not v),
    "no_dwconv": ("use_dwconv", lambda v: not v),
    "pooling": ("pooling", str),
    "skip": ("skip", str),
    "scan": ("scan", str),
    "mlstm_kernel": ("mlstm_kernel", str),
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
    if name is not None:
        values["dataset_name"] = name
    fields = set(TrainConfig.__dataclass_fields__)
    model = dict(values.get("model", {}))
    for dest, value in vars(args).items():
        if value is None or dest in ("data", "dataset_name", "preset", "config", "run_dir"):
            continue
        if dest in _MODEL_FIELDS:
            key, conv = _MODEL_FIELDS[dest]
            model[key] = conv(value)
        elif dest in _FIT_FIELDS:
            key, conv = _FIT_FIELDS[dest]
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


def cmd_fit(args) -> int:
    from napari_tmunet.training.engine import fit

    config, run_dir = fit_config(args)
    with stop_on_interrupt() as stop_event:
        result = fit(config, run_dir, stop_event=stop_event)
    if int(os.environ.get("RANK", "0")) == 0:
        if config.efficiency and not result["stopped"]:
            result["efficiency"] = _add_efficiency(config, Path(result["run_dir"]))
        _print_result(result)
    return 0


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


@contextlib.contextmanager
def stop_on_interrupt():
    """A stop event set by the first Ctrl-C (or SIGTERM): the run stops cleanly, evaluates,
    saves last.pt and keeps best.pt. A second Ctrl-C interrupts at once."""
    stop_event = threading.Event()

    def handler(signum, frame):
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.set()
        print(
            "\nstopping after this step (evaluating and saving; Ctrl-C again to abort)",
            file=sys.stderr,
        )

    if threading.current_thread() is not threading.main_thread():
        yield stop_event  # signals can only be handled on the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_result(result: dict) -> None:
    print(f"run folder: {result['run_dir']}")
    state = "stopped" if result["stopped"] else "finished"
    print(
        f"{state} at step {result['step']} of {result['total_steps']}; best validation Dice "
        f"{result['best_score']:.4f} at step {result['best_step']}"
    )
    test = result.get("test")
    if test:
        print(
            f"test ({test['count']} images): Dice {100 * test['dice_mean']:.2f} IoU "
            f"{100 * test['iou_mean']:.2f} F1 {100 * test['f1']:.2f} HD {test['hd_mean']:.2f} "
            f"HD95 {test['hd95_mean']:.2f}, empty predictions {test['empty_prediction']}; "
            f"native Dice {100 * test['native_dice_mean']:.2f}"
        )
    eff = result.get("efficiency")
    if eff:
        print(_efficiency_line(eff))


def _efficiency_line(eff: dict) -> str:
    macs = f"{eff['macs'] / 1e9:.3f} G" if eff.get("macs") else "n/a (install thop)"
    return (
        f"params {eff['params'] / 1e6:.3f} M, MACs (thop) {macs}, FLOPs "
        f"{eff.get('flops', 0) / 1e9:.3f} G, {eff['fps_batch1']:.1f} FPS at batch 1, "
        f"{eff['throughput']:.1f} images/s at batch {eff['batch']} on {eff['device']} "
        f"({'x'.join(map(str, eff['size']))})"
    )


def cmd_cache(args) -> int:
    from napari_tmunet.data.datasets import build_cache

    data, _ = _data_source(args)
    if data is None:
        raise ValueError("no dataset: pass --preset NAME or --data FOLDER")
    if not Path(data).is_dir():
        raise ValueError(f"--data {data} is not a folder; `cache` decodes a dataset folder")
    start = time.time()
    from tqdm.auto import tqdm

    with tqdm(desc="decode", unit="pair") as bar:

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        cache = build_cache(
            data,
            args.output,
            skip_bad=bool(args.skip_bad),
            progress=progress,
            max_side=args.max_side,
        )
    size = Path(args.output).stat().st_size / 1e6
    print(
        f"{args.output}: {len(cache)} pairs from {data} ({size:.1f} MB, {time.time() - start:.0f}"
        f" s); mask rules {cache.rule_counts()}; skipped {len(cache.skipped)}"
    )
    return 0


def cmd_evaluate(args) -> int:

    from napari_tmunet.checkpoint import load_checkpoint
    from napari_tmunet.data.datasets import load_split, make_split
    from napari_tmunet.evaluation import evaluate
    from napari_tmunet.inference import resolve_device
    from napari_tmunet.storage import write_json
    from napari_tmunet.training.config import TrainConfig
    from napari_tmunet.training.run_data import load_dataset
    from napari_tmunet.training.run_folder import dataset_label

    ckpt_path = Path(args.checkpoint)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(ckpt_path, device)
    trained = ckpt.metadata.get("train_config") or {}
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
    cache = load_dataset(cfg)
    names = list(cache.names)
    if args.part == "all":
        chosen, source = names, "all images"
    else:
        split_file = Path(args.split_file) if args.split_file else ckpt_path.parent / "split.json"
        if split_file.is_file():
            split, _ = load_split(split_file, names, seed=cfg.split_seed)
            source = str(split_file)
        else:
            seed = cfg.split_seed if args.split_seed is None else args.split_seed
            split = make_split(names, seed, cfg.split_ratios, groups=cache.groups)
            source = f"random split, seed {seed}"
        chosen = split[args.part]
    if not chosen:
        raise ValueError(f"the {args.part} part of the split ({source}) is empty")
    index = {n: i for i, n in enumerate(names)}
    samples = [cache[index[n]] for n in chosen]
    mode = args.mode or cfg.mode
    ev = evaluate(
        ckpt.model,
        samples,
        ckpt.input_config,
        mode,
        device=device,
        batch_size=args.batch_size,
        progress=True,
    )
    out = Path(args.out) if args.out else ckpt_path.parent
    stem = f"eval-{args.part}-{ckpt_path.stem}"
    ev.to_csv(out / f"{stem}.csv")
    summary = {
        "checkpoint": str(ckpt_path),
        "dataset": dataset_label(cfg, cache),
        "part": args.part,
        "split": source,
        "mode": mode,
        "test": ev.aggregate(),
    }
    write_json(out / f"{stem}.json", summary)
    agg = summary["test"]
    print(f"{ckpt_path} on {summary['dataset']} {args.part} ({agg['count']} images, {source}):")
    print(
        "| size | Dice | IoU | F1 | HD | HD95 | empty pred. |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {label} | {100 * agg[p + 'dice_mean']:.2f} ± {100 * agg[p + 'dice_std']:.2f} | "
            f"{100 * agg[p + 'iou_mean']:.2f} | {100 * agg[p + 'f1']:.2f} | "
            f"{agg[p + 'hd_mean']:.2f} ± {agg[p + 'hd_std']:.2f} | {agg[p + 'hd95_mean']:.2f} | "
            f"{agg[p + 'empty_prediction']} |"
            for label, p in (
                ("x".join(map(str, ckpt.input_config.size)), ""),
                ("native", "native_"),
            )
        )
    )
    print(f"per-image CSV: {out / (stem + '.csv')}")
    return 0


def cmd_report(args) -> int:
    from .report import collect_runs, render_report

    runs, missing = collect_runs(args.runs)
    if not runs:
        where = ", ".join(args.runs)
        raise ValueError(
            f"no run folders with test results under {where} (a run folder has config.json and "
            "summary.json; runs still training or trained with --no-test have none: run "
            "`napari-tmunet-train evaluate RUN/best.pt`)"
        )
    text = render_report(runs, tables=args.tables, paper=args.paper, missing=missing)
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
            for dest, (key, conv) in _MODEL_FIELDS.items()
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


def cmd_demo(args) -> int:
    """Train variant t at 64x64 for a few dozen steps, evaluate, print the tables."""
    from napari_tmunet.training import TrainConfig, fit

    from .report import collect_runs, render_report

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"demo-{stamp}"
    if args.data:
        data, _ = _data_source(argparse.Namespace(data=args.data, preset=None, dataset_name=None))
        name, max_images = Path(args.data).name, args.max_images
    else:
        data = str(_write_demo_tiles(run_dir.parent / f"demo-data-{stamp}"))
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
    )
    start = time.time()
    result = fit(config, run_dir)
    _print_result(result)
    runs, _ = collect_runs([run_dir])
    print()
    print(render_report(runs, tables=(1, 4)))
    print(f"demo finished in {time.time() - start:.0f} s; everything is in {run_dir}")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
