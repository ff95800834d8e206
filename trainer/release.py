"""Ship trained runs as the package's bundled models, with their model cards.

For each ``--model NAME MODALITY CHECKPOINT RUN [RUN ...]``: writes CHECKPOINT (the best
checkpoint of the first RUN) in half precision to ``napari_tmunet/weights/NAME.pt``,
measures seconds per image on this machine's CPU (the modality's bundled sample, median
of 5 after a warm-up), evaluates the shipped file on that sample, and writes its entry of
``napari_tmunet/weights/registry.json`` and its card of ``docs/models.md`` from the runs'
``config.json`` / ``run_info.json`` / ``summary.json``. The other RUNs are the same recipe
on other split seeds: the card reports the mean +- std over all of them.

Only the models named by ``--model`` are rewritten: the other models' files, registry
entries and cards stay byte for byte as they are (read from the current registry.json and
models.md, in their order); a NAME not yet in the registry is appended (a model is dropped
by hand: its file, entry and card). ``--notes`` also rewrites the cards' header from its
``"_header"`` (without it the header is kept). Giving every model (the earlier full form)
writes what that form always wrote. Nothing is replaced until every model is shipped and
every card written: an error (a damaged checkpoint, a missing summary) leaves weights/,
registry.json and models.md as they were.

A run trained with ``--no-test`` (a generalist, whose test parts are several datasets) is
scored with ``bench/cross_eval.py`` instead: ``--test-score MODALITY LABEL SUMMARY`` names
the model's own test parts (their image-weighted mean Dice is the registry's
``test_dice``), ``--other-score MODALITY LABEL SUMMARY [SUMMARY ...]`` adds rows for
comparison (the previous model, cross-dataset proxies); SUMMARY is cross_eval's
``summary.json``. Several SUMMARYs (one recipe trained with several seeds) make one row:
the mean in bold, then each summary's value, e.g. ``**70.97** (73.57 / 68.37) / 82.81,
74.05`` for Dice mean (per seed) / median (per seed).

Usage:
    python -m trainer.release \\
        --model colonoscopy colonoscopy best.pt docs/runs/gpu-2026-11-28/CVCCDB-tmunet-b-seed0 \\
        --notes bench/model_notes.json
    python -m trainer.release \\
        --model tmunet-b-colonoscopy colonoscopy best.pt docs/runs/.../COLON-generalist \\
        --test-score colonoscopy "Kvasir-SEG test-100" scores/kvasir/summary.json ... \\
        --other-score colonoscopy "proxy, two seeds" s0/summary.json s1/summary.json \\
        --trained-on colonoscopy "colonoscopy (Kvasir-SEG, CVC-ClinicDB)"

``--trained-on MODALITY TEXT`` is the registry's ``trained_on``: the training data in the
words the Segment dock and napari-tmunet-predict show beside the model (default: the
modality and the runs' dataset names); TEXT also names the data in the registry's
``description`` and a generalist card's "Data" line (default: the runs' dataset names).
``--into FOLDER`` writes FOLDER's ``napari_tmunet/weights/`` and ``docs/models.md``
instead of the checkout's (a copy, to compare before shipping).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import statistics
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import torch

from napari_tmunet import __version__
from napari_tmunet._sample_data import SAMPLES, load_sample
from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint
from napari_tmunet.config import ModelConfig, topology_changes
from napari_tmunet.inference import run_to_completion, segment
from napari_tmunet.metrics import dice_score
from napari_tmunet.storage import atomic_path, write_json
from napari_tmunet.training.config import TrainConfig
from napari_tmunet.training.run_folder import read_metrics
from trainer.checkout import require_checkout
from trainer.cli import PRESETS
from trainer.report import PAPER_TABLE1, canonical_dataset, test_result

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "napari_tmunet" / "weights"
CARDS = ROOT / "docs" / "models.md"
NEEDS = ("docs", "napari_tmunet/weights")  # of the checkout (trainer.checkout)
WRITES = "napari_tmunet/weights/ (models, registry.json) and docs/models.md"
LICENCE = "CC BY-NC-SA 4.0 (weights trained on research datasets; non-commercial research use)"
PAPER = PAPER_TABLE1["TM-UNet (paper)"]  # Dice, IoU, F1, HD by the paper's dataset names
POOLING = {  # by ModelConfig's names ("released" in older run records reads as token_channel)
    "token_channel": "multi-scale pooling over the token and channel axes (released code)",
    "spatial": "multi-scale pooling over the 2-D feature map",
}
PRESETS_FOLDER = {paper: folder for folder, paper in PRESETS.values()}
CARD_HEADING = re.compile(r"^## (\S+) \(", re.MULTILINE)  # "## NAME (MODALITY)" opens a card
# TrainConfig fields that say where or how verbosely a run ran, not what it trained.
NOT_RECIPE = {"data", "dataset_name", "device", "num_workers", "progress", "efficiency",
              "test", "resume", "overwrite", "eval_batch_size",
              "modality"}  # fmt: skip  # modality: what the model is for, not how it trains


def read_run(run_dir: Path) -> dict:
    """config, run_info, summary and test aggregate of a run folder."""
    missing = [n for n in ("config.json", "run_info.json") if not (run_dir / n).is_file()]
    if missing:
        raise ValueError(f"{run_dir} is not a training run's folder (no {missing[0]}): give "
                         "the run's folder, e.g. docs/runs/gpu-.../NAME")  # fmt: skip
    run = {"dir": run_dir}
    for name in ("config", "run_info", "summary"):
        path = run_dir / f"{name}.json"
        run[name] = json.loads(path.read_text()) if path.is_file() else {}
    run["test"] = test_result(run_dir)  # also a run stopped early, tested by `evaluate`
    run["records"] = read_metrics(run_dir)
    return run


def fit_command(config: dict, dataset: str, model_config: dict, data: str | None = None) -> str:
    """The ``napari-tmunet-train fit`` command line that trains this config and model.

    The flags are read from the CLI's own parser (:func:`fit_flags`), so each setting
    maps to the option that sets it. Model options come from the run's resolved
    ``model_config`` (run_info.json), compared with today's defaults, so a run made under
    other defaults gets the flags it needs.

    Raises:
        ValueError: a setting that differs from today's default but that no ``fit``
            option sets (the command would not reproduce the run).
    """
    default = TrainConfig()
    flags = fit_flags()
    parts = ["napari-tmunet-train fit"]
    preset = [k for k, (_, paper) in PRESETS.items() if paper == canonical_dataset(dataset)]
    if preset and not data:
        parts.append(f"--preset {preset[0]}")
    else:  # a folder names its dataset when read; the run's label is kept
        parts.append(f"--data {data or f'../shared/datasets/{dataset}'}")
        if config.get("dataset_name"):
            parts.append(f"--dataset-name {shlex.quote(config['dataset_name'])}")
    for f in fields(TrainConfig):
        value = config.get(f.name, getattr(default, f.name))
        if f.name in NOT_RECIPE or f.name == "model" or _same(value, getattr(default, f.name)):
            continue  # "model": below, from the resolved model config
        parts.append(_words(flags, f.name, value))
    model = ModelConfig.from_dict(model_config)
    changed = {
        k: False for k in ("use_xlstm", "use_pooling", "use_dwconv") if not getattr(model, k)
    }
    changed.update(topology_changes(model))
    if model.presence_head:
        changed["presence_head"] = True
    if config.get("arch", default.arch) == "tmunet":  # custom channel sizes (Table 3)
        variant = ModelConfig.variant(config.get("variant", default.variant))
        if list(model.channels) != list(variant.channels):
            changed["channels"] = list(model.channels)
    unknown = [k for k in changed if f"model.{k}" not in flags]
    if unknown:
        raise _no_option(f"model.{unknown[0]}", changed[unknown[0]])
    for key in flags:  # the parser's order
        if key.startswith("model.") and key[6:] in changed:
            parts.append(_words(flags, key, changed[key[6:]]))
    return " ".join(parts)


def fit_flags() -> dict[str, tuple[argparse.Action, Callable]]:
    """The options of ``napari-tmunet-train fit`` by the setting they make.

    Keys are TrainConfig fields, or ``model.KEY`` for ModelConfig overrides; values are
    the parser's action and the conversion ``commands.fit_config`` applies to what the
    action stores (``--no-amp`` stores True, which sets ``amp`` to False).
    """
    from trainer.cli import build_parser
    from trainer.commands import FIT_FIELDS, MODEL_FIELDS

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {}
    for action in commands.choices["fit"]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        if action.dest in MODEL_FIELDS:
            key, convert = MODEL_FIELDS[action.dest]
            key = "model." + key
        else:
            key, convert = FIT_FIELDS.get(action.dest, (action.dest, _unchanged))
        flags[key] = (action, convert)
    return flags


def _words(flags: dict, key: str, value) -> str:
    """The option (and its values) of ``fit`` that sets ``key`` to ``value``."""
    if key not in flags:
        raise _no_option(key, value)
    action, convert = flags[key]
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:  # store_true / store_false: the flag alone
        if convert(action.const) != value:
            raise ValueError(f"{key} = {value!r}: {flag} sets {convert(action.const)!r}")
        return flag
    values = value if isinstance(value, list | tuple) else [value]
    return " ".join([flag, *map(str, values)])


def _no_option(key: str, value) -> ValueError:
    return ValueError(
        f"{key} = {value!r} differs from the default, but no `napari-tmunet-train fit` "
        "option sets it: the command cannot reproduce this run"
    )


def _same(value, default) -> bool:
    if isinstance(default, tuple | list) and isinstance(value, tuple | list):
        return list(value) == list(default)
    return value == default


def _unchanged(value):
    return value


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    vals = [v * scale for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def dataset_of(run: dict) -> str:
    """The paper's name of the dataset a run trained on, from its source folder (a run's
    report label may carry an experiment's name, e.g. "CVCCDB-released-pooling")."""
    dataset = run["run_info"]["dataset"]
    return canonical_dataset(Path(dataset.get("source") or dataset["name"]).name)


def model_bullet(entry: dict, config: dict, run_info: dict) -> str:
    """A card's first line: variant, size, input, mode, pooling and file."""
    pooling = POOLING[ModelConfig.from_dict(run_info["model_config"]).pooling]
    return f"""- Model: TM-UNet {config["variant"]}, {entry["params"] / 1e6:.2f} M parameters, input
  {config["size"][0]}x{config["size"][1]}, {config["mode"]} mode, {pooling};
  file `{entry["file"]}` ({entry["size_mb"]:.1f} MB, float16 weights)."""


def trained_on(run: dict, data_words: str | None = None) -> str:
    """The data a run trained on as the cards and the registry's description name it:
    ``data_words`` (``--trained-on``) where given, else a benchmark's paper name, or the
    run's dataset name, the sets of a combined folder ("Kvasir + CVCCDB")."""
    if data_words:  # the run's --dataset-name may be a bare word ("colonoscopy")
        return data_words
    name = dataset_of(run)
    combined = run["run_info"]["dataset"]["name"].replace("+", " + ")
    return name if name in PRESETS_FOLDER else combined


def registry_record(entry: dict, data_words: str | None = None) -> dict:
    """A shipped model's entry of ``registry.json``. ``trained_on`` (the training data in
    the words the app shows beside the model) is ``data_words``, else the modality and the
    data of its first run ("ultrasound (BUSI + UDIAT)"); its ``description`` names the
    data by ``data_words`` too where given (:func:`trained_on`)."""
    run = entry["runs"][0]
    data = trained_on(run, data_words)
    return {
        "name": f"TM-UNet {entry['modality']}",
        "modality": entry["modality"],
        "file": entry["file"],
        "provisional": False,
        "description": (
            f"TM-UNet {run['config']['variant']} trained on {data} (GPU); test "
            f"Dice {100 * entry['test_dice']:.1f}. Research use only, not a medical device."
        ),
        "trained_on": data_words or f"{entry['modality']} ({trained_on(run)})",
        "test_dice": entry["test_dice"],
    }


def read_scores(own: list[list[str]], other: list[list[str]]) -> dict[str, list[tuple]]:
    """``{modality: [(label, summary, own), ...]}`` from the ``--*-score`` options: rows
    ``[MODALITY, LABEL, SUMMARY, ...]``. ``summary`` is the summary's dict, or a list of
    them where a row names several (one recipe's seeds, averaged in one table row)."""
    scores: dict[str, list[tuple]] = {}
    for rows, is_own in ((own, True), (other, False)):
        for modality, label, *paths in rows:
            summaries = [read_summary(path) for path in paths]
            summary = summaries[0] if len(summaries) == 1 else summaries
            scores.setdefault(modality, []).append((label, summary, is_own))
    return scores


def read_summary(path: str) -> dict:
    """A ``bench/cross_eval.py`` summary.json.

    Raises:
        SystemExit: naming ``path`` when it is missing, unreadable, not JSON or another
            kind of file.
    """
    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise SystemExit(f"{path}: cannot be read ({err.strerror or err}); give the "
                         "summary.json that bench/cross_eval.py --out wrote") from None  # fmt: skip
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise SystemExit(f"{path}: damaged, not JSON ({err})") from None
    if not isinstance(summary, dict) or "dice_mean" not in summary:
        raise SystemExit(f"{path}: not a bench/cross_eval.py summary (no dice_mean)")
    return summary


def ship(
    name: str,
    modality: str,
    checkpoint: Path,
    runs: list[Path],
    scores=(),
    min_confidence=None,
    out: Path | None = None,
) -> dict:
    """Write the shipped file, time it on the CPU, score it on the bundled sample.

    ``scores``: ``(label, summary, own)`` rows of ``bench/cross_eval.py`` summaries;
    ``own`` marks the model's own test parts (used when its runs have no test result).
    ``min_confidence``: the least object confidence the shipped file carries as its
    default (None: the checkpoint's own). ``out``: where the file is written (default
    ``weights/NAME.pt``; :func:`main` gives a temporary file that replaces it at the end).
    """
    entry = {"name": name, "modality": modality, "runs": [read_run(r) for r in runs]}
    entry["scores"] = list(scores)
    first = entry["runs"][0]
    if not first["test"]:
        own = {label: summary for label, summary, is_own in scores if is_own}
        if not own:
            raise SystemExit(f"{runs[0]}: no test result; give its test parts' --test-score")
        first["test"] = own
    best = load_checkpoint(checkpoint)
    out = Path(out) if out else WEIGHTS / f"{name}.pt"
    metadata = dict(best.metadata, shipped_as=name, modality=modality, licence=LICENCE)
    inputs = best.input_config
    if min_confidence is not None:
        inputs = replace(inputs, min_confidence=min_confidence)
    save_checkpoint(out, best.model, best.model_config, inputs,
                    metadata=metadata, metrics=first["test"], half=True)  # fmt: skip
    shipped = load_checkpoint(out)
    image, mask = load_sample(modality)
    mode = shipped.inference_mode
    run_to_completion(segment(image, shipped, mode=mode))  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        result = run_to_completion(segment(image, shipped, mode=mode))
        times.append(time.perf_counter() - start)
    entry.update(
        file=f"{name}.pt",
        size_mb=out.stat().st_size / 1e6,
        mode=mode,
        min_confidence=shipped.input_config.min_confidence,
        params=sum(p.numel() for p in shipped.model.parameters()),
        cpu_s_per_image=statistics.median(times),
        sample=SAMPLES[modality],
        sample_dice=dice_score(result.labels > 0, mask > 0),
        sample_shape=image.shape,
        test_dice=own_test_dice(entry),
    )
    return entry


def gate_text(entry: dict) -> str:
    """How the card's scores drop unsure objects, where the shipped file does."""
    if not entry.get("min_confidence"):
        return ""
    return (
        f", objects of mean probability below {entry['min_confidence']:.2f} dropped (the "
        "file's least object confidence, chosen on the validation part with `bench/gate_probe.py`)"
    )


def own_test_dice(entry: dict) -> float:
    """Mean test Dice: over the split seeds' runs, or over the images of a generalist's own
    test parts (their summaries weighted by their images with a lesion)."""
    own = [summary for _, summary, is_own in entry["scores"] if is_own]
    if not own:
        return statistics.mean(r["test"]["dice_mean"] for r in entry["runs"])
    images = sum(s["lesion_images"] for s in own)
    return sum(s["dice_mean"] * s["lesion_images"] for s in own) / images


def card(entry: dict, note: str, data_words: str | None = None) -> str:
    """A shipped model's card of ``docs/models.md``: a generalist's (scored with
    ``--test-score``; its data named by ``data_words`` where given), else a benchmark
    model's (its data: the benchmark's folder)."""
    if entry["scores"]:
        return generalist_card(entry, note, data_words)
    runs, first = entry["runs"], entry["runs"][0]
    c, info, summary = first["config"], first["run_info"], first["summary"]
    dataset = dataset_of(first)
    tests = [r["test"] for r in runs]
    seeds = ", ".join(str(r["config"]["split_seed"]) for r in runs)
    best = max((r for r in first["records"] if r.get("val_dice") is not None),
               key=lambda r: r["val_dice"])  # fmt: skip
    last = first["records"][-1]
    schedule = (
        f"{c['steps']} optimiser steps ({c['epochs']} learning-rate periods)"
        if c["steps"]
        else f"{c['epochs']} epochs ({info['schedule']['total_steps']} steps)"
    )
    stopped = ""
    if last["step"] < info["schedule"]["total_steps"]:
        stopped = (
            f" **Stopped at step {last['step']} of {info['schedule']['total_steps']}** "
            f"(epoch {last['epoch']:.0f}) when the session's device time ran out; the best "
            "checkpoint had not improved for the last "
            f"{(last['step'] - best['step']) / max(last['step'], 1) * 100:.0f}% of the run."
        )
    eff = summary.get("efficiency") or {}
    gpu = (
        f"{eff['fps_batch1']:.1f} FPS at batch 1 and {eff['throughput']:.0f} images/s at batch "
        f"{eff['batch']} ({eff['size'][0]}x{eff['size'][1]}, fp32, {eff['device']}, torch "
        f"{eff['torch']}; measured while other runs shared the host, see docs/benchmarks.md)"
        if eff
        else "not measured"
    )
    paper = PAPER.get(canonical_dataset(dataset))
    dice = statistics.mean(t["dice_mean"] for t in tests) * 100
    versus = (
        f"Paper Table 1 (TM-UNet b): Dice {paper[0]:.2f}, IoU {paper[1]:.2f}, F1 {paper[2]:.2f}, "
        f"HD {paper[3]:.2f}: this model is **{abs(paper[0] - dice):.1f} Dice points "
        f"{'below' if dice < paper[0] else 'above'}** it."
        if paper
        else "No paper figure for this dataset."
    )
    per_seed = "; ".join(
        f"seed {r['config']['split_seed']}: {100 * r['test']['dice_mean']:.2f}" for r in runs
    )
    part = info["dataset"]
    folder = PRESETS_FOLDER.get(canonical_dataset(dataset), dataset)
    records = first["dir"].relative_to(ROOT / "docs")
    height, width = entry["sample_shape"][:2]
    return f"""## {entry["name"]} ({entry["modality"]})

{model_bullet(entry, c, info)}
- Data: {folder} (`../shared/datasets`), random 7:1:2 split ({part["train"]} train /
  {part["valid"]} valid / {part["test"]} test images); split seeds {seeds}; the shipped
  weights are those of split seed {c["split_seed"]}, whose test part holds the bundled sample.
- Trained on {info.get("device_name", "?")} ({info["started"][:10]}, torch
  {info["versions"]["torch"]}) by the project's trainer: {schedule}, batch {c["batch_size"]},
  Adam lr {c["lr"]}, decay {c["gamma"]} per period, loss {loss_text(c)};
  best validation Dice {100 * best["val_dice"]:.2f} at step {best["step"]}.{stopped} Run records:
  [`{first["dir"].name}`]({records}).
- Command: `{fit_command(c, dataset, info["model_config"])} --split-seed {c["split_seed"]}`
- Test, per image at 512x512, probability > 0.5, mean ± std over the split seeds:
  Dice {mean_std([t["dice_mean"] for t in tests])} ({per_seed}),
  IoU {mean_std([t["iou_mean"] for t in tests])}, F1 {mean_std([t["f1"] for t in tests])},
  HD {mean_std([t["hd_mean"] for t in tests], 1.0, 1)} px,
  HD95 {mean_std([t["hd95_mean"] for t in tests], 1.0, 1)} px; empty predictions
  {sum(t["empty_prediction"] for t in tests)} of {sum(t["count"] for t in tests)}.
- {versus} {note}
- GPU: {gpu}.
- CPU: {entry["cpu_s_per_image"]:.2f} s per image ({width}x{height} sample, {entry["mode"]} mode)
  on this project's machine ({os.cpu_count()} cores,
  {platform.processor() or platform.machine()}, torch {torch.__version__},
  {time.strftime("%Y-%m-%d")}).
- Bundled sample (`{entry["sample"].name}` of {entry["sample"].dataset}, from the test part of
  split seed {c["split_seed"]}): Dice {100 * entry["sample_dice"]:.2f}.
- Licence: {LICENCE}. Research use only; not a medical device.
"""


def loss_text(config: dict) -> str:
    """The run's loss and sampling in words, e.g. ``2 x CE + 1 x Dice (over the batch)``."""
    text = f"{config['ce_weight']:g} x CE + {config['dice_weight']:g} x Dice"
    if config.get("dice_over", "image") == "batch":
        text += " (over the batch)"
    if config.get("model", {}).get("presence_head"):
        weight = config.get("presence_weight", 0) or 1
        text += f" on images with foreground + {weight:g} x BCE of the presence head"
    elif config.get("presence_weight", 0):
        text += f" + {config['presence_weight']:g} x image-level presence"
    if config.get("edge_weight", 0):
        text += f", pixels beside the mask's edges weighed up to x{1 + config['edge_weight']:g}"
    if config.get("empty_repeat", 1) > 1:
        text += f", images with an empty mask drawn x{config['empty_repeat']}"
    return text


def score_table(scores: list[tuple]) -> str:
    """Markdown rows of cross_eval summaries: Dice/IoU at native resolution per image, and
    PQ/AJI where a summary scored instances (``--instances``)."""
    seeds = [summaries(s) for _, s, _ in scores]
    instances = any("pq_mean" in s for row in seeds for s in row)
    extra = (" PQ / AJI |", "---|") if instances else ("", "")
    rows = [
        "| scored | images | Dice mean / median | IoU mean | below 0.5 | empty predictions "
        f"| false masks on lesion-free images |{extra[0]}",
        f"|---|---|---|---|---|---|---|{extra[1]}",
    ]
    for (label, _, own), row in zip(scores, seeds, strict=True):
        cells = score_cells(row)
        if not instances:
            cells = cells[:-1]  # no PQ / AJI column
        rows.append(f"| {'**' + label + '**' if own else label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def summaries(summary: dict | list[dict]) -> list[dict]:
    """A score row's summaries: one, or one per seed of a recipe (see :func:`read_scores`)."""
    return summary if isinstance(summary, list) else [summary]


def score_cells(row: list[dict]) -> list[str]:
    """A score row's cells after its label: images, Dice mean / median, IoU mean, below
    0.5, empty predictions, false masks, PQ / AJI. Of several summaries (one recipe's
    seeds): the mean Dice in bold with each seed's in brackets and each seed's median,
    the mean IoU, PQ and AJI, and each seed's counts ("14, 12")."""

    def each(key: str, percent: bool = False, sep: str = ", ") -> str:  # every summary's
        return sep.join(f"{100 * s[key]:.2f}" if percent else str(s[key]) for s in row)

    def mean(key: str, scale: float = 100.0) -> float:
        return statistics.mean(s[key] for s in row) * scale

    images = {s["lesion_images"] for s in row}
    dice = f"{mean('dice_mean'):.2f}"
    if len(row) > 1:
        dice = f"**{dice}** ({each('dice_mean', True, ' / ')})"
    false = "-"
    if any(s["empty_mask_images"] for s in row):
        false = ", ".join(
            f"{s['empty_mask_with_prediction']} of {s['empty_mask_images']}"
            if s["empty_mask_images"] else "-"
            for s in row
        )  # fmt: skip
    pq = "-"
    if all("pq_mean" in s for s in row):
        pq = f"{mean('pq_mean', 1.0):.3f} / {mean('aji_mean', 1.0):.3f}"
    return [
        str(images.pop()) if len(images) == 1 else each("lesion_images"),
        f"{dice} / {each('dice_median', True)}",
        f"{mean('iou_mean'):.2f}",
        each("below_half"),
        each("empty_predictions"),
        false,
        pq,
    ]


def generalist_card(entry: dict, note: str, data_words: str | None = None) -> str:
    """The card of a model trained on several sets' training parts and scored on their
    test parts (and others) with ``bench/cross_eval.py``; its data named by ``data_words``
    (``--trained-on``) where given (:func:`trained_on`)."""
    first = entry["runs"][0]
    data = trained_on(first, data_words)
    c, info = first["config"], first["run_info"]
    part = info["dataset"]
    best = max((r for r in first["records"] if r.get("val_dice") is not None),
               key=lambda r: r["val_dice"])  # fmt: skip
    augment = ", ".join(
        text for key, text in (("hflip", "flips"), ("rot90", "quarter turns"),
                               ("zoom", f"zoom up to x{1 + c.get('zoom', 0):g}"),
                               ("rotate", f"rotation up to {c.get('rotate', 0):g} degrees"),
                               ("colour", f"colour jitter {c.get('colour', 0):g}"),
                               ("tone", f"gamma up to x{1 + c.get('tone', 0):g} either way"),
                               ("blur", f"blur up to {c.get('blur', 0):g} px"))
        if c.get(key)
    )  # fmt: skip
    source = Path(part["source"]).name
    command = fit_command(c, part["name"], info["model_config"], data=f"../extra-data/{source}")
    records = first["dir"].relative_to(ROOT / "docs")
    height, width = entry["sample_shape"][:2]
    return f"""## {entry["name"]} ({entry["modality"]})

{model_bullet(entry, c, info)}
- Data: the training parts of {data} ({part["train"]} train / {part["valid"]}
  valid / {part["test"]} test images, split file `{c["split_file"]}`; no test image in
  training or in the choice of recipe or checkpoint).
- Trained on {info.get("device_name", "?")} ({info["started"][:10]}, torch
  {info["versions"]["torch"]}) by the project's trainer: {c["steps"]} optimiser steps
  ({c["epochs"]} learning-rate periods), batch {c["batch_size"]}, Adam lr {c["lr"]}, decay
  {c["gamma"]} per period, loss {loss_text(c)}, augmentation: {augment};
  best validation Dice {100 * best["val_dice"]:.2f} at step {best["step"]} (the shipped
  checkpoint). Run records: [`{first["dir"].name}`]({records}).
- Command: `{command}`
- Scored once with `bench/cross_eval.py` ({entry["mode"]} mode, probability > the checkpoint's
  threshold{gate_text(entry)}, per image at native resolution; own test parts in bold):

{score_table(entry["scores"])}

- {note}
- CPU: {entry["cpu_s_per_image"]:.2f} s per image ({width}x{height} sample, {entry["mode"]} mode)
  on this project's machine ({os.cpu_count()} cores, torch {torch.__version__},
  {time.strftime("%Y-%m-%d")}); GPU: see docs/benchmarks.md (inference rows).
- Bundled sample (`{entry["sample"].name}` of {entry["sample"].dataset}, from a test part):
  Dice {100 * entry["sample_dice"]:.2f}.
- Licence: {LICENCE}. Research use only; not a medical device.
"""


def cards_header(notes: dict) -> str:
    """The text of ``docs/models.md`` above the cards, with the notes' ``"_header"``."""
    return f"""# Bundled models (model cards)

Written by `python -m trainer.release ...` (napari-tmunet {__version__}). Every number
below was measured by that script or by the training runs it names; the runs'
`config.json`, `run_info.json` (versions, git commit), `split.json`, `metrics.jsonl`,
`summary.json` and `curves.png` are in [`runs/`](runs/). Each card compares the model with
the paper's Table 1; `docs/benchmarks.md` says what was tried.

{notes.get("_header", "")}

"""


def split_cards(text: str, path: Path = CARDS) -> tuple[str, dict[str, str]]:
    """``models.md`` (read from ``path``) as its header and its cards by model name, each
    card verbatim from its ``## NAME (MODALITY)`` line to the next card's, in order.

    Raises:
        ValueError: two cards of one name (a card would be lost).
    """
    found = list(CARD_HEADING.finditer(text))
    header = text[: found[0].start()] if found else text
    cards: dict[str, str] = {}
    for match, after in zip(found, [*found[1:], None], strict=True):
        name = match.group(1)
        if name in cards:
            raise ValueError(f"{path} has two cards of {name}: keep one, then release again")
        cards[name] = text[match.start() : after.start() if after else len(text)]
    return header, cards


def merged_cards(header: str, old: dict[str, str], new: dict[str, str]) -> str:
    """``models.md``: ``header``, the ``old`` cards in their order with ``new`` ones in place
    of those of their names, then the new names' cards; one blank line after each card but
    the last, as the full release writes them."""
    cards = [new.get(name, text) for name, text in old.items()]
    cards += [text for name, text in new.items() if name not in old]
    for i, text in enumerate(cards[:-1]):
        if not text.endswith("\n\n"):  # a card that was the last is followed by one now
            cards[i] = text.rstrip("\n") + "\n\n"
    return header + "".join(cards)


def merged_registry(old: dict, records: list[dict]) -> dict:
    """``registry.json``'s content: ``old``'s entries in their order with ``records`` in
    place of those of their files, then the records of new files; other keys kept."""
    models = list(old.get("models", []))
    for record in records:
        files = [entry.get("file") for entry in models]
        if record["file"] in files:
            models[files.index(record["file"])] = record
        else:
            models.append(record)
    return {**old, "models": models}


def model_specs(parser: argparse.ArgumentParser, given: list[list[str]]) -> list[tuple]:
    """``(name, modality, checkpoint, runs)`` of each ``--model``; a usage error for one
    too short or a name given twice."""
    specs = []
    for spec in given:
        if len(spec) < 4:
            parser.error(f"--model {' '.join(spec)}: expected NAME MODALITY CHECKPOINT RUN...")
        name, modality, checkpoint, *runs = spec
        if name in [s[0] for s in specs]:
            parser.error(f"--model {name} is given twice: give each model once")
        specs.append((name, modality, Path(checkpoint), [Path(r).resolve() for r in runs]))
    return specs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", nargs="+", action="append", required=True, help="NAME MODALITY CHECKPOINT RUN..."
    )
    parser.add_argument(
        "--test-score",
        nargs=3,
        action="append",
        default=[],
        metavar=("MODALITY", "LABEL", "SUMMARY"),
        help="bench/cross_eval.py summary.json of the model's own test part",
    )
    parser.add_argument(
        "--other-score",
        nargs="+",
        action="append",
        default=[],
        metavar=("MODALITY LABEL SUMMARY", "SUMMARY"),
        help="bench/cross_eval.py summary.json of a row for comparison; several (one "
        "recipe's seeds) make one row of their mean",
    )
    parser.add_argument("--notes", help="JSON {modality: text} added to each card")
    parser.add_argument(
        "--trained-on",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODALITY", "TEXT"),
        help="the training data in the words the app shows beside the model, e.g. "
        "ultrasound 'breast ultrasound (BUSI, UDIAT)' (default: MODALITY (the runs' datasets))",
    )
    parser.add_argument(
        "--min-confidence",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODALITY", "VALUE"),
        help="the least object confidence a shipped file carries (default: its checkpoint's)",
    )
    parser.add_argument(
        "--into",
        metavar="FOLDER",
        help="write FOLDER/napari_tmunet/weights/ and FOLDER/docs/models.md instead of the "
        "checkout's (a copy, to compare before shipping)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    # an installed wheel's copy would write into site-packages (ROOT): refuse there
    require_checkout("trainer.release", ROOT, NEEDS, "writes the checkout's " + WRITES)
    parser = build_parser()
    args = parser.parse_args(argv)
    for row in args.other_score:
        if len(row) < 3:
            parser.error(f"--other-score {' '.join(row)}: expected MODALITY LABEL SUMMARY...")
    specs = model_specs(parser, args.model)
    into = Path(args.into).resolve() if args.into else ROOT
    weights, cards_path = into / "napari_tmunet" / "weights", into / "docs" / "models.md"
    scores = read_scores(args.test_score, args.other_score)
    notes = json.loads(Path(args.notes).read_text()) if args.notes else {}
    confidences = {modality: float(value) for modality, value in args.min_confidence}
    data_words = dict(args.trained_on)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # the cards' CPU times: all of this machine
    try:
        write_release(specs, weights, cards_path, scores, notes, confidences, data_words)
    except (ValueError, OSError) as err:  # CheckpointError, NotWritableError, a bad record
        raise SystemExit(
            f"trainer.release: {err}\nNothing was written: {weights} and {cards_path} are as "
            "they were."
        ) from None
    finally:  # a caller's own setting (a test worker's share of the cores) comes back
        torch.set_num_threads(threads)


def write_release(specs, weights, cards_path, scores, notes, confidences, data_words) -> None:
    """Ship each model of ``specs`` and write ``registry.json`` and ``models.md`` with their
    entries and cards in place of those of their names, the others' kept byte for byte.

    Every file is written to a temporary one beside it; they replace the old files only
    when all are written, so an error (a damaged checkpoint, a run without records)
    leaves ``weights`` and ``cards_path`` as they were.
    """
    registry_path = weights / "registry.json"
    old_registry = {}
    if registry_path.is_file():
        try:
            old_registry = json.loads(registry_path.read_text(encoding="utf-8"))
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{registry_path} is damaged (not JSON: {err}); restore it "
                             "(git checkout) and release again") from None  # fmt: skip
    header, old_cards = "", {}
    if cards_path.is_file():
        header, old_cards = split_cards(cards_path.read_text(encoding="utf-8"), cards_path)
    # leaving without an error, each temporary file replaces its file; on one, all are removed
    with contextlib.ExitStack() as written:
        entries = []
        for name, modality, checkpoint, runs in specs:
            out = Path(written.enter_context(atomic_path(weights / f"{name}.pt")))
            gate = confidences.get(modality)
            entry = ship(name, modality, checkpoint, runs, scores.get(modality, []), gate, out)
            entries.append(entry)
            print(f"shipped {name}: sample Dice {entry['sample_dice']:.3f}")
        records = [registry_record(e, data_words.get(e["modality"])) for e in entries]
        cards = {
            e["name"]: card(e, notes.get(e["modality"], ""), data_words.get(e["modality"]))
            for e in entries
        }
        if notes or not header:  # the notes' header; else the one there is kept
            header = cards_header(notes)
        write_json(written.enter_context(atomic_path(registry_path)),
                   merged_registry(old_registry, records))  # fmt: skip
        text = merged_cards(header, old_cards, cards)
        Path(written.enter_context(atomic_path(cards_path))).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
