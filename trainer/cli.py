"""``napari-tmunet-train``: headless training, evaluation and the paper's tables.

Subcommands: ``fit`` (train; the paper's Section 3.1 protocol by default), ``cache``
(decode a dataset once into a file to copy to a GPU machine), ``evaluate`` (a checkpoint
on a split), ``report`` (Markdown tables like the paper's Tables 1-3 from run folders),
``efficiency`` (params, MACs, FLOPs, FPS), ``demo`` (a two-minute CPU run).
Run ``napari-tmunet-train <subcommand> --help`` for the options.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from napari_tmunet.options import DEVICES, DICE_OVER, MODALITIES, PRETEXTS

from .commands import (  # noqa: F401  (PRESETS: the release tool reads the presets here)
    PRESETS,
    cmd_cache,
    cmd_demo,
    cmd_efficiency,
    cmd_evaluate,
    cmd_fit,
    cmd_report,
)

DEVICE_HELP = "auto: CUDA when there is a GPU, else the CPU (default auto)"

DESCRIPTION = """\
Train and evaluate TM-UNet (and the classic U-Net) headless, reproducing the protocol
of the TM-UNet paper (Section 3.1), and print the paper's tables from run folders.

data      ROOT/images/<name>.<ext> + ROOT/masks/<name>.<ext>, paired by base name;
          or pictures with their masks beside them: NAME.png + NAME_mask.png (also
          NAME-mask, NAME_gt, NAME_labels; BUSI's NAME_mask_1.png... merged with
          NAME_mask.png by OR), names in splits the pictures' base names; masks of two
          kinds for one picture (NAME_mask + a saved NAME mask.tif) stop with their
          names: keep one kind
          (png, tif/tiff, jpg/jpeg, bmp; images grey/RGB/RGBA, 8 or 16 bit; masks
          1-bit, L, LA, RGB, 0/1, 0/255 or instance ids). Masks are binarised with
          "> 127" when their maximum is 128..255 (0/255 masks: CVC-ClinicDB's stray
          values 1..127 at the edges of the 255 regions and JPEG noise are
          background), else "> 0" (0/1 masks, also as JPEG, 8-bit labels 1..127,
          labels wider than 8 bits); 8-bit ids up to 128..255, flat objects one value
          each whose top value holds under a quarter of the non-zero pixels or whose
          values 1..127 form objects of their own, are read "> 0" and logged as
          ">0 (8-bit ids)". The rules are logged; a mask whose "> 127" leaves out flat
          regions (5% of its non-zero pixels or more) is named with the share.
          A missing mask, size mismatch or unreadable file stops with its name;
          --skip-bad leaves such pairs out with a summary. Identical images are kept
          in one split part. Presets: cvccdb, monuseg, colondb, udiat.
split     7:1:2 train/valid/test from --split-seed, written to the run folder as
          split.json {"train": [...], "valid": [...], "test": [...]}; --split-file
          takes such a file (without "valid", one is carved from train and said so).
training  Adam 1e-4, ExponentialLR 0.98 per epoch, batch 16, 200 epochs, loss
          2 x CE + 1 x Dice, horizontal flips, images resized to 512x512 (--mode tile:
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
  napari-tmunet-train fit --preset monuseg --mode tile --steps 4000 --batch-size 16
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
    """Entry point of the ``napari-tmunet-train`` console script. Ctrl-C at any moment,
    also in the first seconds while torch is imported, ends with one line and exit 130,
    as in napari-tmunet-predict (start-up under ``errors.exit_on_interrupt``)."""
    try:
        return _run(argv)
    except KeyboardInterrupt as interrupt:  # fit's says which last.pt is kept
        print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    """Parse ``argv``, run its command; expected errors are one line and exit 2."""
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
    from napari_tmunet.errors import exit_on_interrupt

    with exit_on_interrupt("interrupted"):  # torch, scipy, ...: the seconds of start-up
        from napari_tmunet.checkpoint import CheckpointError, CheckpointSaveError
        from napari_tmunet.data.datasets import DatasetError
        from napari_tmunet.options import DeviceError
        from napari_tmunet.storage import FolderBusyError, NotWritableError
        from napari_tmunet.training.run_folder import RunDirError

    expected = (DatasetError, RunDirError, CheckpointError, FileNotFoundError, ValueError)
    write_errors = (FolderBusyError, NotWritableError, CheckpointSaveError)
    try:
        return int(args.handler(args) or 0)
    except (*expected, *write_errors, DeviceError, FloatingPointError) as err:
        print(f"napari-tmunet-train {args.command}: error: {_message(err, args)}", file=sys.stderr)
        return 2


def _message(err: BaseException, args: argparse.Namespace) -> str:
    """``err``'s message in this command's words: problem pairs name --skip-bad (where the
    command has it) instead of the Python API's ``skip_bad=True``."""
    from napari_tmunet.data.datasets import skip_message

    option = "--skip-bad" if hasattr(args, "skip_bad") else None
    return skip_message(err, option) or str(err)


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
    group.add_argument(
        "--presence-head",
        action="store_true",
        default=None,
        help="an image-level 'lesion present' output beside the mask (TM-UNet, one class); "
        "the mask then trains on images with foreground only and the output is "
        "P(present) x P(pixel | present); --presence-weight weighs its BCE (default 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-tmunet-train",
        description="Train and evaluate TM-UNet (and the classic U-Net) headless, with the "
        "TM-UNet paper's protocol, and print the paper's tables from run folders.",
        epilog="`napari-tmunet-train fit --help` describes the protocol, with examples; "
        "`napari-tmunet-train COMMAND --help` the options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_fit, _add_cache, _add_evaluate, _add_report, _add_efficiency, _add_demo):
        add(sub)
    return parser


def _add_fit(sub) -> None:
    """`fit`: one option per TrainConfig setting, in groups."""
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
    _add_split_args(fit)
    _add_fit_model_args(fit)
    _add_input_args(fit)
    _add_optimisation_args(fit)
    _add_output_args(fit)
    fit.set_defaults(handler=cmd_fit)


def _add_split_args(fit) -> None:
    """The split options of `fit`."""
    g = fit.add_argument_group("split")
    g.add_argument("--split-file", help="JSON {train, valid, test}; no valid: carved from train")
    g.add_argument("--split-seed", type=int, help="seed of the random 7:1:2 split (default 0)")
    g.add_argument(
        "--official-split",
        action="store_true",
        default=None,
        help="use the dataset's train.txt/test.txt (MoNuSeg's official 30/14)",
    )
    g.add_argument(
        "--max-images", type=int, help="use only the first N pairs (quick tests; 0 = all)"
    )


def _add_fit_model_args(fit) -> None:
    """The model options of `fit`."""
    g = fit.add_argument_group("model")
    _add_model_args(g)
    g.add_argument(
        "--init-checkpoint",
        help="start from these weights (fine-tuning): a checkpoint file, or a shipped "
        "model's name or modality (as evaluate and napari-tmunet-predict --model take); "
        "from a --pretext run's last.pt, its "
        "trunk with a new output layer. The TM-UNet variant, input channels and "
        "normalisation come from the checkpoint (--variant/--in-channels/--mean/--std that "
        "differ are an error; images are converted to its channels); --resume does not "
        "need this file any more",
    )
    g.add_argument(
        "--modality",
        choices=MODALITIES,
        help="the kind of image the model is for, recorded in its checkpoints: the Segment "
        "dock and napari-tmunet-predict run it on such images (nuclei: instance output); "
        "default: the --init-checkpoint's, else none recorded",
    )
    g.add_argument(
        "--pretext",
        choices=PRETEXTS[1:],
        help="self-supervised pre-training: restore hidden 32-pixel squares of the images "
        "of the training part of the split (--data still needs the masks: they "
        "are read but unused; no validation or test); then fit --init-checkpoint RUN/last.pt",
    )
    g.add_argument(
        "--in-channels",
        type=int,
        choices=(1, 3),
        help="model input channels (default: 1 if every image is grey, else 3)",
    )
    g.add_argument("--num-classes", type=int, help="1 (sigmoid, default) or N (softmax)")


def _add_input_args(fit) -> None:
    """Input size, normalisation and augmentation options of `fit`."""
    g = fit.add_argument_group("input")
    g.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="N",
        help="model input H [W] (default 512, at least 32): resize target or crop size; "
        "TM-UNet at 32 x 32 needs --batch-size 2 or more (its deepest BatchNorm then sees "
        "1 x 1 maps; an epoch's last batch of one is left out)",
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
    g.add_argument(
        "--per-image-norm",
        action="store_true",
        default=None,
        help="standardise each image by its own per-channel mean and std instead "
        "(nnU-Net's rule for non-CT images; saved with the weights, used by inference)",
    )
    g.add_argument("--hflip", type=float, help="horizontal flip probability (default 0.25)")
    g.add_argument("--vflip", type=float, help="vertical flip probability (default 0)")
    g.add_argument("--rot90", action="store_true", default=None, help="random 90-degree turns")
    g.add_argument(
        "--zoom", type=float, help="random zoom up to a factor 1 + ZOOM either way (default 0)"
    )
    g.add_argument("--rotate", type=float, help="random rotation up to +- DEGREES (default 0)")
    g.add_argument(
        "--colour",
        type=float,
        help="colour jitter strength: contrast x(1 +- S), brightness +- S/2, channel gains "
        "x(1 +- S/2) (default 0)",
    )
    g.add_argument(
        "--tone",
        type=float,
        help="random gamma curve on intensities, exponent up to 1 + TONE either way (default 0)",
    )
    g.add_argument(
        "--blur", type=float, help="random Gaussian blur, sigma up to BLUR pixels (default 0)"
    )
    g.add_argument(
        "--empty-repeat",
        type=int,
        metavar="K",
        help="draw each training image whose mask is empty (e.g. lesion-free) K times per "
        "pass, so false regions on such images weigh more (default 1)",
    )


def _add_optimisation_args(fit) -> None:
    """The optimisation options of `fit`."""
    g = fit.add_argument_group("optimisation")
    g.add_argument(
        "--epochs", type=int, help="epochs (default 200); with --steps: number of LR/eval periods"
    )
    g.add_argument(
        "--steps",
        type=int,
        help="train for this many optimiser steps instead of epochs; the LR decays "
        "by gamma every steps/epochs steps (the paper's total decay); with --resume, "
        "a --steps run keeps that period length",
    )
    g.add_argument("--batch-size", type=int, help="global batch size (default 16)")
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    g.add_argument("--gamma", type=float, help="ExponentialLR factor per period (default 0.98)")
    g.add_argument("--lr-decay-every", type=int, help="period length in steps (default: epoch)")
    g.add_argument("--weight-decay", type=float, help="Adam weight decay (default 0)")
    g.add_argument("--adam-eps", type=float, help="Adam epsilon (default 1e-8)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm (default off)")
    g.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="keep an exponential moving average of the weights (e.g. 0.999), updated after "
        "every step; validation scores it and best.pt holds it, last.pt keeps both "
        "(default 0: off)",
    )
    g.add_argument("--ce-weight", type=float, help="lambda1 of the loss (default 2)")
    g.add_argument("--dice-weight", type=float, help="lambda2 of the loss (default 1)")
    g.add_argument(
        "--dice-over",
        choices=DICE_OVER,
        help="soft Dice per image (paper, default) or over the whole batch (informative on "
        "images with an empty mask)",
    )
    g.add_argument(
        "--presence-weight",
        type=float,
        metavar="W",
        help="add W x an image-level term: the BCE of each image's most confident pixels "
        "against whether its mask has foreground, so a confident false region on an image "
        "with an empty mask costs like a wrong image (default 0: the paper's loss); with "
        "--presence-head, the weight of the head's BCE (default 1)",
    )
    g.add_argument(
        "--edge-weight",
        type=float,
        metavar="K",
        help="weigh the pixels beside each mask's edges up to 1 + K in the CE and the Dice "
        "(as PraNet's structure loss; default 0: the paper's loss; one output class)",
    )
    g.add_argument("--seed", type=int, help="seed of initialisation and augmentation (default 0)")
    g.add_argument("--no-amp", action="store_true", default=None, help="no bf16 autocast on CUDA")
    g.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        default=None,
        help="run each step eagerly instead of replaying a CUDA graph (one GPU)",
    )
    g.add_argument(
        "--no-channels-last",
        action="store_true",
        default=None,
        help="keep the model in PyTorch's default NCHW memory on CUDA (default: "
        "channels-last, about 2x faster for U-Net and 1.3x for TM-UNet b on an H200)",
    )
    g.add_argument(
        "--no-sync-bn",
        action="store_true",
        default=None,
        help="per-GPU BatchNorm under DDP (default: synchronised)",
    )


def _add_output_args(fit) -> None:
    """The evaluation and output options of `fit`."""
    g = fit.add_argument_group("evaluation and output")
    g.add_argument("--eval-every", type=int, help="validate every N epochs/periods (default 1)")
    g.add_argument("--eval-batch-size", type=int, help="images or windows per forward (8)")
    g.add_argument("--overlap", type=float, help="sliding-window overlap in tile mode (0.25)")
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
    _add_no_progress(g, default=None)  # None: the config's (or a resumed run's) setting
    g.add_argument("--device", choices=DEVICES, help="default auto")
    g.add_argument("--num-workers", type=int, help="threads decoding the dataset (default 4)")


def _add_no_progress(parser, default: bool | None = False) -> None:
    """``--no-progress``: one option for every command that draws progress bars (fit,
    cache, evaluate, demo; bars are drawn on a terminal only in any case)."""
    parser.add_argument(
        "--no-progress", action="store_true", default=default, help="no progress bars"
    )


def _add_cache(sub) -> None:
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
    cache.add_argument(
        "output",
        help="the .npz file to write; a folder (an existing one, or a name ending in /) "
        "gets <dataset folder name>.npz; an existing file is kept unless it is a cache "
        "file and --overwrite is given",
    )
    cache.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing cache file OUTPUT (never a file of another kind); the "
        "old file stays until the new one is complete",
    )
    _add_no_progress(cache)
    cache.set_defaults(handler=cmd_cache)


def _add_evaluate(sub) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a split",
        description=(
            "Evaluate a checkpoint on the test split (by default the split.json of its run "
            "folder): per-image CSV and a summary (mean, std, F1 from mean P/R, HD, HD95, "
            "empty predictions), at the evaluation size and at native resolution, as "
            "eval-PART-CHECKPOINT.csv/.json; on data the checkpoint was not trained on "
            "eval-PART-CHECKPOINT-DATASET.csv/.json, so that scores on several datasets sit "
            "side by side (another data's scores are never replaced: -2, -3...). The split "
            "beside a checkpoint is its training data's: to score another dataset pass "
            "--part all, or --split-file with a split of it."
        ),
    )
    ev.add_argument(
        "checkpoint",
        help="a .pt checkpoint (best.pt of a run), or a shipped model's name or modality "
        "(as napari-tmunet-predict --model takes)",
    )
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
    ev.add_argument(
        "--out",
        help="output folder (default: the checkpoint's folder; the current folder for a "
        "shipped model)",
    )
    ev.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    ev.add_argument(
        "--batch-size", type=int, default=8, help="images (or tiles) per forward pass (default 8)"
    )
    _add_no_progress(ev)
    ev.set_defaults(handler=cmd_evaluate)


def _add_report(sub) -> None:
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


def _add_efficiency(sub) -> None:
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


def _add_demo(sub) -> None:
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
    demo.add_argument(
        "--run-dir",
        help="a new or empty folder (default runs/demo-<time>); the run and, without "
        "--data, the sample's tiles (demo-data/) go there",
    )
    demo.add_argument("--device", choices=DEVICES, default="cpu")
    _add_no_progress(demo)
    demo.set_defaults(handler=cmd_demo)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="one of the paper's datasets: cvccdb (CVC-ClinicDB), monuseg, colondb "
        "(CVC-ColonDB), udiat; folder $TMUNET_DATASETS/<name> or "
        "../shared/datasets/<name> relative to the current directory",
    )
    g.add_argument(
        "--data",
        help="dataset folder (images/ + masks/, or pictures with their masks beside them: "
        "NAME.png + NAME_mask.png) or a cache .npz file",
    )
    g.add_argument("--dataset-name", help="dataset label in reports (default: preset or folder)")
    g.add_argument(
        "--skip-bad",
        action="store_true",
        default=None,
        help="skip unreadable or mismatched pairs (with a summary) instead of failing",
    )


if __name__ == "__main__":  # python -m trainer.cli (torchrun)
    sys.exit(main())
