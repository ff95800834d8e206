"""Markdown tables laid out like the paper's Tables 1-3, from run folders.

A run folder is what ``fit`` writes: ``config.json`` (TrainConfig), ``run_info.json``
(resolved model config) and ``summary.json`` (test aggregate and efficiency); a folder
without ``summary.json`` but with ``eval-test-*.json`` files (from ``napari-tmunet-train
evaluate``) uses the newest of those. Several runs of one model on one dataset (split
seeds) are shown as mean +- std over the runs, with the run count. Runs of one model on
one dataset that share a split (its seed, or one split file with one training seed) are
not independent replicates: each gets a row of its own, named by its folder, and a note
says why (``separate_shared_splits``).

- Table 1: rows = models; columns FLOPs (MACs as the paper counts them, thop), FPS at
  batch 1, then Dice / IoU / F1 / HD per dataset, in percent (HD in pixels at the
  evaluation size).
- Table 2: the ablation (xLSTM / Pooling / DWConv switches) of TM-UNet b, per dataset;
  pooling over other axes than the default is named in the Pooling column.
- Table 3: TM-UNet channel sizes C1..C5, per dataset (and pooling axes, when not default).
- Table 4 (not in the paper): the same runs at native resolution, HD95, and the number
  of test images with an empty prediction on a non-empty mask (HD = image diagonal).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from napari_tmunet.config import VARIANTS, ModelConfig

logger = logging.getLogger(__name__)

# Paper order of the datasets; others follow alphabetically.
DATASET_ORDER = ("CVCCDB", "MoNuSeg", "ColonDB", "UDIAT")
_ALIASES = {
    "cvc-clinicdb": "CVCCDB",
    "cvccdb": "CVCCDB",
    "monuseg": "MoNuSeg",
    "cvc-colondb": "ColonDB",
    "colondb": "ColonDB",
    "udiat": "UDIAT",
}

# The paper's numbers (Tables 1-3), the one copy in the code (release.py's model cards and
# the tests import them), for --paper rows: Dice, IoU, F1, HD per dataset.
PAPER_TABLE1 = {
    "U-Net (paper)": {
        "flops": "124.48G",
        "fps": 27.72,
        "CVCCDB": (80.73, 73.88, 83.65, 79.06),
        "MoNuSeg": (77.57, 63.78, 78.95, 38.33),
        "ColonDB": (76.47, 68.45, 77.82, 99.76),
        "UDIAT": (71.74, 62.36, 74.23, 51.17),
    },
    "TM-UNet (paper)": {
        "flops": "6.55G",
        "fps": 87.55,
        "CVCCDB": (86.57, 79.89, 88.83, 35.35),
        "MoNuSeg": (85.63, 74.10, 85.95, 25.66),
        "ColonDB": (80.62, 74.43, 82.13, 72.70),
        "UDIAT": (77.40, 66.82, 80.40, 39.74),
    },
}
PAPER_TABLE2 = [  # (xLSTM, Pooling, DWConv, FLOPs, FPS, Dice, IoU, F1, HD), MoNuSeg
    (False, False, False, "5.82G", 89.15, 82.47, 70.31, 81.68, 29.87),
    (True, False, False, "6.14G", 90.23, 83.98, 72.21, 83.78, 26.87),
    (True, True, False, "6.14G", 88.92, 84.82, 73.45, 84.36, 26.33),
    (True, True, True, "6.55G", 87.55, 85.63, 74.10, 84.95, 25.66),
]
PAPER_TABLE3 = [  # (channels, FLOPs, FPS, Dice, IoU, F1, HD), MoNuSeg
    ((8, 16, 32, 64, 128), "0.49G", 104.23, 82.95, 70.89, 83.24, 29.62),
    ((16, 32, 64, 128, 256), "1.74G", 93.81, 84.12, 72.45, 84.44, 27.10),
    ((32, 64, 128, 256, 512), "6.55G", 87.55, 85.63, 74.10, 85.95, 25.66),
]


@dataclass
class RunResult:
    """Test results of one run folder."""

    path: Path
    dataset: str
    model: ModelConfig
    test: dict
    efficiency: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    apart: str = ""  # the folder shown when the run is not pooled with the others

    @property
    def label(self) -> str:
        from napari_tmunet.config import model_label

        return model_label(self.model) + (f" [{self.apart}]" if self.apart else "")


def canonical_dataset(name: str) -> str:
    """The paper's name for a dataset folder name ("CVC-ClinicDB" -> "CVCCDB")."""
    return _ALIASES.get(name.lower(), name)


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run folders (with config.json) at or below the given paths, sorted."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"run folder {p} does not exist")
        if (p / "config.json").is_file():
            found.add(p)
            continue
        for cfg in p.rglob("config.json"):
            if not any(part.startswith("previous-") for part in cfg.parent.parts):
                found.add(cfg.parent)
    return sorted(found)


def test_result(run_dir: str | os.PathLike) -> dict:
    """A run's test aggregate: ``summary.json``, else its newest ``eval-test-*.json``
    on its own data (a run stopped early and tested with ``evaluate``); {} when it has
    none."""
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file():
        test = _read_json(summary).get("test")
        if test:
            return test
    evals = sorted(run_dir.glob("eval-test-*.json"), key=lambda p: p.stat().st_mtime)
    # scores on other data (``evaluate --data``: own_data false) are not the run's test
    for path in reversed(evals):
        result = _read_json(path)
        if result.get("own_data", True):
            return result.get("test") or {}
    return {}


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; ValueError naming the file when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is damaged (not JSON: {err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged (a JSON {type(data).__name__}, not an object)")
    return data


def load_run(run_dir: str | os.PathLike) -> RunResult | None:
    """Read a run folder; None when it has no test results yet."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    summary_path = run_dir / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    test = test_result(run_dir)
    if not test:
        return None
    from napari_tmunet.training.config import TrainConfig
    from napari_tmunet.training.run_folder import dataset_label

    info_path = run_dir / "run_info.json"
    if info_path.is_file():
        mc = _read_json(info_path)["model_config"]
        model = ModelConfig.from_dict(mc)
    else:
        model = TrainConfig.from_dict(config).model_config(3)
    dataset = summary.get("dataset") or dataset_label(TrainConfig.from_dict(config))
    return RunResult(
        path=run_dir,
        dataset=canonical_dataset(dataset),
        model=model,
        test=test,
        efficiency=summary.get("efficiency") or {},
        config=config,
    )


def is_pretraining(run_dir: Path) -> bool:
    """Whether a run folder is a self-supervised pre-training run (``fit --pretext``): it
    restores images, so it has no segmentation results to report."""
    return bool(_read_json(run_dir / "config.json").get("pretext"))


def collect_runs(
    paths: Iterable[str | os.PathLike],
) -> tuple[list[RunResult], list[Path], list[Path]]:
    """Runs with test results, the run folders without any, and the pre-training run
    folders (left out of both). A run whose files are damaged is left out with a warning
    naming the file; the others are still reported."""
    runs, missing, pretraining = [], [], []
    for run_dir in find_run_dirs(paths):
        try:
            if is_pretraining(run_dir):
                pretraining.append(run_dir)
                continue
            run = load_run(run_dir)
        except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged or odd file
            detail = str(err) if isinstance(err, OSError | ValueError) else repr(err)
            logger.warning("left out run %s: %s", run_dir, detail)
            continue
        if run is None:
            missing.append(run_dir)
        else:
            runs.append(run)
    return runs, missing, pretraining


def split_of(run: RunResult) -> str:
    """What makes a run a replicate: its random split's seed, or (for a fixed split,
    where only training varies) the split and the training seed."""
    config = run.config
    if config.get("split_file") or config.get("official_split"):
        split = config.get("split_file") or "the official split"
        return f"{split} with training seed {config.get('seed', 0)}"
    return f"split seed {config.get('split_seed', 0)}"


def separate_shared_splits(runs: Sequence[RunResult]) -> tuple[list[RunResult], list[str]]:
    """The runs with those that share a split with another run of their model and dataset
    set apart (``apart`` = their folder), and one note per such set.

    Their mean +- std would pass for a spread over split seeds while it only measures,
    say, a smoke test against the real run; shown apart, nothing is hidden or dropped.
    """
    out, notes = list(runs), []
    by_model = _group(range(len(out)), lambda i: (out[i].dataset, out[i].label))
    for (dataset, label), indices in by_model.items():
        for split, shared in _group(indices, lambda i: split_of(out[i])).items():
            if len(shared) < 2:
                continue
            names = _folder_names([out[i].path for i in shared])
            for i, name in zip(shared, names, strict=True):
                out[i] = replace(out[i], apart=name)
            flag = "--split-seed" if split.startswith("split seed") else "--seed"
            notes.append(
                f"{label} on {dataset}: {', '.join(str(out[i].path) for i in shared)} share "
                f"{split}, so they are shown apart, not averaged as replicates; to pool "
                f"replicates, give each run its own {flag} (and leave smoke tests out)."
            )
    return out, notes


def _folder_names(paths: Sequence[Path]) -> list[str]:
    """The shortest distinct trailing parts of the paths ("r1", "a/run" vs "b/run")."""
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


# ------------------------------------------------------------------------ formatting


def _mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    vals = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _flops(runs: Sequence[RunResult]) -> str:
    macs = [r.efficiency.get("macs") for r in runs if r.efficiency.get("macs")]
    return f"{macs[0] / 1e9:.2f}G" if macs else "-"


def _fps(runs: Sequence[RunResult]) -> str:
    fps = [r.efficiency["fps_batch1"] for r in runs if r.efficiency.get("fps_batch1")]
    return f"{sum(fps) / len(fps):.2f}" if fps else "-"


def _scores(runs: Sequence[RunResult], prefix: str = "", hd95: bool = False) -> list[str]:
    """Dice, IoU, F1 (percent) and HD (and HD95) over runs (mean +- sample std)."""
    keys = ["dice_mean", "iou_mean", "f1", "hd_mean"] + (["hd95_mean"] if hd95 else [])
    return [
        _mean_std([r.test.get(prefix + key) for r in runs], 1 if key.startswith("hd") else 100)
        for key in keys
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _datasets(runs: Sequence[RunResult]) -> list[str]:
    present = {r.dataset for r in runs}
    return [d for d in DATASET_ORDER if d in present] + sorted(present - set(DATASET_ORDER))


def _group(runs: Iterable[RunResult], key) -> dict:
    groups: dict = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return groups


def _is_default_tmunet(mc: ModelConfig, channels: bool = True, switches: bool = True) -> bool:
    """A TM-UNet with the default topology up to its pooling axes (shown in the tables),
    optionally with any channels / any switches."""
    from napari_tmunet.config import topology_changes

    if mc.arch != "tmunet":
        return False
    same = set(topology_changes(mc)) <= {"pooling"}
    if channels:
        same &= tuple(mc.channels) == VARIANTS["b"]
    if switches:
        same &= mc.use_xlstm and mc.use_pooling and mc.use_dwconv
    return same


def _count(runs: Sequence[RunResult]) -> str:
    return str(len(runs))


def table1(runs: Sequence[RunResult], paper: bool = False) -> str:
    """Models x datasets: FLOPs, FPS, Dice / IoU / F1 / HD / HD95 (the paper gives no HD95)."""
    datasets = _datasets(runs)
    if paper:
        datasets += [d for d in DATASET_ORDER if d not in datasets]
    header = ["Method", "FLOPs", "FPS"]
    for d in datasets:
        header += [f"{d} Dice", "IoU", "F1", "HD", "HD95", "n"]
    by_model = _group(runs, lambda r: r.label)
    order = sorted(by_model, key=lambda k: (not k.startswith("U-Net"), k))
    rows = []
    if paper:
        for name, ref in PAPER_TABLE1.items():
            row = [name, ref["flops"], f"{ref['fps']:.2f}"]
            for d in datasets:
                row += [f"{v:.2f}" for v in ref[d]] + ["-", "-"] if d in ref else ["-"] * 6
            rows.append(row)
    for label in order:
        group = by_model[label]
        row = [label, _flops(group), _fps(group)]
        for d in datasets:
            sel = [r for r in group if r.dataset == d]
            row += [*_scores(sel, hd95=True), _count(sel)] if sel else ["-"] * 6
        rows.append(row)
    return _table(header, rows)


def table2(runs: Sequence[RunResult], paper: bool = False) -> str:
    """Ablation of TM-UNet b: one block per dataset."""
    chosen = [r for r in runs if _is_default_tmunet(r.model, channels=True, switches=False)]
    header = ["Dataset", "xLSTM", "Pooling", "DWConv", "FLOPs", "FPS", "Dice", "IoU", "F1", "HD"]
    header.append("n")
    rows = []
    if paper:
        for x, p, d, flops, fps, *scores in PAPER_TABLE2:
            rows.append(
                ["MoNuSeg (paper)", _tick(x), _tick(p), _tick(d), flops, f"{fps:.2f}"]
                + [f"{v:.2f}" for v in scores]
                + ["-"]
            )
    for dataset in _datasets(chosen):
        groups = _group(
            [r for r in chosen if r.dataset == dataset],
            lambda r: (r.model.use_xlstm, _pooling_mark(r.model), r.model.use_dwconv, r.apart),
        )
        for key in sorted(groups, key=lambda k: (sum(map(bool, k[:3])), k)):
            g = groups[key]
            x, pooling, dw, apart = key
            name = f"{dataset} [{apart}]" if apart else dataset
            rows.append(
                [name, _tick(x), pooling, _tick(dw), _flops(g), _fps(g), *_scores(g), _count(g)]
            )
    return _table(header, rows)


def table3(runs: Sequence[RunResult], paper: bool = False) -> str:
    """TM-UNet channel sizes: one block per dataset."""
    chosen = [r for r in runs if _is_default_tmunet(r.model, channels=False, switches=True)]
    header = ["Dataset", "C1", "C2", "C3", "C4", "C5", "FLOPs", "FPS", "Dice", "IoU", "F1", "HD"]
    header.append("n")
    rows = []
    if paper:
        for channels, flops, fps, *scores in PAPER_TABLE3:
            rows.append(
                ["MoNuSeg (paper)", *map(str, channels), flops, f"{fps:.2f}"]
                + [f"{v:.2f}" for v in scores]
                + ["-"]
            )
    for dataset in _datasets(chosen):
        groups = _group(
            [r for r in chosen if r.dataset == dataset],
            lambda r: (r.model.pooling, r.model.channels, r.apart),
        )
        for pooling, channels, apart in sorted(groups):
            g = groups[pooling, channels, apart]
            name = dataset if pooling == ModelConfig().pooling else f"{dataset} ({pooling} pooling)"
            name += f" [{apart}]" if apart else ""
            rows.append([name, *map(str, channels), _flops(g), _fps(g), *_scores(g), _count(g)])
    return _table(header, rows)


def table_native(runs: Sequence[RunResult]) -> str:
    """Evaluation size vs native resolution, HD95 and empty predictions, per model/dataset."""
    header = [
        "Dataset",
        "Method",
        "Dice",
        "HD",
        "HD95",
        "empty pred.",
        "native Dice",
        "native IoU",
        "native HD",
        "native HD95",
        "n",
    ]
    rows = []
    for dataset in _datasets(runs):
        groups = _group([r for r in runs if r.dataset == dataset], lambda r: r.label)
        for label in sorted(groups, key=lambda k: (not k.startswith("U-Net"), k)):
            g = groups[label]
            rows.append(
                [
                    dataset,
                    label,
                    _mean_std([r.test.get("dice_mean") for r in g], 100),
                    _mean_std([r.test.get("hd_mean") for r in g]),
                    _mean_std([r.test.get("hd95_mean") for r in g]),
                    str(sum(int(r.test.get("empty_prediction", 0) or 0) for r in g)),
                    _mean_std([r.test.get("native_dice_mean") for r in g], 100),
                    _mean_std([r.test.get("native_iou_mean") for r in g], 100),
                    _mean_std([r.test.get("native_hd_mean") for r in g]),
                    _mean_std([r.test.get("native_hd95_mean") for r in g]),
                    _count(g),
                ]
            )
    return _table(header, rows)


def _tick(flag: bool) -> str:
    return "✓" if flag else ""


def _pooling_mark(mc: ModelConfig) -> str:
    """Table 2's pooling cell: ✓ for the default axes, else the axes named."""
    if not mc.use_pooling:
        return ""
    return "✓" if mc.pooling == ModelConfig().pooling else f"✓ ({mc.pooling})"


def render_report(
    runs: Sequence[RunResult],
    tables: Sequence[int] = (1, 2, 3, 4),
    paper: bool = False,
    missing: Sequence[Path] = (),
    pretraining: Sequence[Path] = (),
) -> str:
    """The Markdown report: the chosen tables with a short legend (runs that share a
    split are shown apart, see :func:`separate_shared_splits`), the runs without test
    results and a note on the pre-training runs left out."""
    runs, notes = separate_shared_splits(runs)
    parts = []
    devices = sorted({r.efficiency.get("device", "") for r in runs if r.efficiency} - {""})
    legend = (
        "Dice, IoU, F1 in %, per test image at the evaluation size (512x512 in the paper's "
        "protocol), probability > 0.5; F1 from the mean precision and recall; HD = Hausdorff "
        "distance of the mask boundaries in pixels, an empty prediction counting as the image "
        "diagonal. FLOPs = multiply-accumulates counted by thop at batch 1 (the paper's "
        "convention). FPS = 1 / median forward time at batch 1"
        + (f" on {', '.join(devices)}" if devices else "")
        + ". Several runs: mean ± sample std over n runs (split seeds)."
    )
    if 1 in tables:
        parts += ["### Table 1: comparison", "", table1(runs, paper), ""]
    if 2 in tables:
        parts += ["### Table 2: ablation of the MSTM block (TM-UNet b)", "", table2(runs, paper)]
        parts.append("")
    if 3 in tables:
        parts += ["### Table 3: channel sizes", "", table3(runs, paper), ""]
    if 4 in tables:
        parts += ["### Native resolution, HD95, empty predictions", "", table_native(runs), ""]
    parts.append(legend)
    parts += [f"\nNot pooled: {note}" for note in notes]
    if missing:
        parts += ["", "Runs without test results: " + ", ".join(str(m) for m in missing)]
    if pretraining:
        parts += [
            "",
            f"Left out: {len(pretraining)} self-supervised pre-training run(s), which do not "
            "segment: " + ", ".join(str(p) for p in pretraining),
        ]
    return "\n".join(parts) + "\n"
