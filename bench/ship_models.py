"""Ship trained runs as the package's bundled models, with their model cards.

For each ``RUN_DIR:NAME:MODALITY``: loads ``RUN_DIR/best.pt``, writes it in half precision
to ``napari_tmunet/weights/NAME.pt``, measures seconds per image on this machine's CPU
(the modality's bundled sample, median of 5 after a warm-up), evaluates the shipped
file on that sample, and rewrites ``napari_tmunet/weights/registry.json`` and
``docs/models.md`` from the runs' ``config.json`` / ``summary.json``.

Usage:
    python bench/ship_models.py runs/prov-CVC-ClinicDB:provisional-colonoscopy:colonoscopy ...
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from napari_tmunet import __version__
from napari_tmunet._sample_data import SAMPLES, load_sample
from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint
from napari_tmunet.inference import run_to_completion, segment
from napari_tmunet.metrics import dice_score

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "napari_tmunet" / "weights"
LICENCE = "CC BY-NC-SA 4.0 (weights trained on research datasets; non-commercial research use)"


def run_segment(image, checkpoint, mode):
    return run_to_completion(segment(image, checkpoint, mode=mode))


def ship(run_dir: Path, name: str, modality: str) -> dict:
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    best = load_checkpoint(run_dir / "best.pt")
    out = WEIGHTS / f"{name}.pt"
    metadata = dict(best.metadata, shipped_as=name, modality=modality, licence=LICENCE)
    save_checkpoint(
        out,
        best.model,
        best.model_config,
        best.input_config,
        metadata=metadata,
        metrics=summary.get("test", {}),
        half=True,
    )
    shipped = load_checkpoint(out)
    image, mask = load_sample(modality)
    mode = "tile" if config["mode"] == "crop" else "resize"
    run_segment(image, shipped, mode)  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        result = run_segment(image, shipped, mode)
        times.append(time.perf_counter() - start)
    sample_dice = dice_score(result.labels > 0, mask > 0)
    return {
        "name": name,
        "modality": modality,
        "file": out.name,
        "size_mb": out.stat().st_size / 1e6,
        "config": config,
        "summary": summary,
        "cpu_s_per_image": statistics.median(times),
        "sample": SAMPLES[modality],
        "sample_dice": sample_dice,
        "sample_shape": image.shape,
        "mode": mode,
        "params": sum(p.numel() for p in shipped.model.parameters()),
    }


def card(entry: dict) -> str:
    c, s, t = entry["config"], entry["summary"], entry["summary"]["test"]
    pm = lambda k: f"{100 * t[k + '_mean']:.2f} ± {100 * t[k + '_std']:.2f}"  # noqa: E731
    hd = f"{t['hd_mean']:.1f} ± {t['hd_std']:.1f}"
    sample = entry["sample"]
    cmd = (
        f"napari-tmunet-train fit --data ../shared/datasets/{c['dataset_name']} "
        f"--variant {c['variant']} --size {c['size'][0]} {c['size'][1]} --mode {c['mode']} "
        f"--steps {c['steps']} --batch-size {c['batch_size']} --device cpu"
    )
    origin = ""
    if c.get("init_checkpoint"):
        first = json.loads((Path(c["init_checkpoint"]).parent / "config.json").read_text())
        cmd += f" --init-checkpoint RUN0/last.pt --lr {c['lr']} --epochs {c['epochs']}"
        first_summary = json.loads((Path(c["init_checkpoint"]).parent / "summary.json").read_text())
        origin = (
            f"\n- Started from `RUN0/last.pt`: a first run of {first['steps']} steps "
            f"({first_summary['train_time_s'] / 60:.0f} min) at lr {first['lr']} on the same "
            "data and split, continued because `--steps` with the paper's 200 decays of 0.98 "
            "had left it a learning rate of 2e-6."
        )
    return f"""## {entry["name"]} ({entry["modality"]})

- Model: TM-UNet {c["variant"]}, {entry["params"] / 1e6:.2f} M parameters, input
  {c["size"][0]}x{c["size"][1]}, {c["mode"]} mode; file `{entry["file"]}`
  ({entry["size_mb"]:.1f} MB, float16 weights). **Provisional**: trained for
  {s["steps"]} steps ({s["train_time_s"] / 60:.0f} min) on 2 CPU cores, far from the
  paper's 200 epochs at 512x512 on a GPU.
- Data: {c["dataset_name"]} (`../shared/datasets`), random 7:1:2 split, split seed
  {c["split_seed"]} (`split.json` in the run folder); training seed {c["seed"]}.
- Command: `{cmd}`{origin}
- Best validation Dice {100 * s["best_val_dice"]:.2f} at step {s["best_step"]}.
- Test split ({t["count"]} images), {EVAL_MODE[c["mode"]]}, threshold 0.5:
  Dice {pm("dice")}, IoU {pm("iou")}, F1 {100 * t["f1"]:.2f}, HD {hd} px,
  HD95 {t["hd95_mean"]:.1f} px; empty predictions {t["empty_prediction"]}.
  At native resolution: Dice {100 * t["native_dice_mean"]:.2f}.
- Paper Table 1 (TM-UNet b, 512x512, 200 epochs, GPU) for comparison:
  {PAPER.get(c["dataset_name"], "n/a")}.
- Bundled sample (`{sample.name}` of {sample.dataset}, test split): Dice
  {100 * entry["sample_dice"]:.2f}; {entry["cpu_s_per_image"]:.2f} s per image on this
  machine's CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()},
  torch {torch.__version__}, {time.strftime("%Y-%m-%d")}; image
  {entry["sample_shape"][1]}x{entry["sample_shape"][0]}, {entry["mode"]} mode).
- GPU FPS: not measured for this model (no GPU time left in the session that trained it).
- Licence: {LICENCE}. Research use only; not a medical device.
"""


EVAL_MODE = {
    "resize": "each image resized to the model's input size (as the paper)",
    "crop": "sliding-window tiles at native resolution",
}

PAPER = {
    "CVC-ClinicDB": "Dice 86.57, IoU 79.89, F1 88.83, HD 35.35",
    "MoNuSeg": "Dice 85.63, IoU 74.10, F1 85.95, HD 25.66",
    "UDIAT": "Dice 77.40, IoU 66.82, F1 80.40, HD 39.74",
}


def main(argv: list[str]) -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    entries = []
    for spec in argv:
        run, name, modality = spec.split(":")
        entries.append(ship(Path(run), name, modality))
        print(f"shipped {name}: sample Dice {entries[-1]['sample_dice']:.3f}")
    registry = {
        "models": [
            {
                "name": f"TM-UNet {e['modality']}",
                "modality": e["modality"],
                "file": e["file"],
                "provisional": True,
                "description": (
                    f"TM-UNet {e['config']['variant']} trained {e['summary']['steps']} CPU steps "
                    f"on {e['config']['dataset_name']}; test Dice "
                    f"{100 * e['summary']['test']['dice_mean']:.1f}. Provisional; research use "
                    "only, not a medical device."
                ),
                "test_dice": e["summary"]["test"]["dice_mean"],
                "mode": "tile" if e["config"]["mode"] == "crop" else "resize",
            }
            for e in entries
        ]
    }
    (WEIGHTS / "registry.json").write_text(json.dumps(registry, indent=2) + "\n")
    header = f"""# Bundled models (model cards)

Written by `python bench/ship_models.py ...` (napari-tmunet {__version__}). Every number
below was measured by that script or by the training run it names. The weights are
**provisional**: the full models of the paper's protocol need GPU training (see the
open issue on shipped models and `docs/benchmarks.md`). The runs' `config.json`,
`run_info.json` (versions, git commit), `split.json`, `summary.json` and `curves.png` are
in [`runs/`](runs/).

"""
    (ROOT / "docs" / "models.md").write_text(header + "\n".join(card(e) for e in entries))


if __name__ == "__main__":
    main(sys.argv[1:])
