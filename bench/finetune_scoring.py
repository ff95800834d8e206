"""Time a Fine-tune run's scoring of the held-out part after its last step (not a test).

Tester 35's case (finding 4): two MoNuSeg H&E tiles segmented by the shipped nuclei model
and corrected (up to 10 missed nuclei painted back, 10 false ones erased, as with a brush
of 9 px every 5th pixel), 6 steps, batch size 2, CPU. Runs :func:`run_finetune` (the
Fine-tune dock's job, without the dock) and reports when each phase began, how many
held-out scorings (``evaluate`` calls) ran and how long the run took after its last
training step.

    python bench/finetune_scoring.py [--out /tmp/ft-bench] [--steps 6] [--resume-after N]

``--resume-after N``: the run is stopped after step N, then resumed (the dock's Resume,
``FinetuneJob(resume=True)``); the report is the resumed session's: its scorings and how
long it took to its first training step (since fix-163 the starting model's scores are
those the first session saved). The Segment outputs are cached in ``--out`` (a second
run skips them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MONUSEG = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "MoNuSeg"
TILES = ["TCGA-21-5784-01Z-00-DX1", "TCGA-21-5786-01Z-00-DX1"]
BRUSH = 9  # px, the tester's brush size


def predicted_labels(image: np.ndarray, cache: Path) -> np.ndarray:
    """(H, W) labels of the shipped nuclei model on ``image`` (cached in ``cache``)."""
    if cache.is_file():
        return np.load(cache)
    from napari_tmunet import registry
    from napari_tmunet.inference import run_to_completion, segment

    start = registry.load_model("TM-UNet nuclei", "cpu")
    labels = run_to_completion(segment(image, start, mode=start.inference_mode, device="cpu"))
    np.save(cache, labels.labels)
    return labels.labels


def corrected(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``labels`` corrected as tester 35 did: 10 missed reference nuclei painted, 10 false
    ones erased, a brush of :data:`BRUSH` px at every 5th of their pixels."""
    from scipy import ndimage as ndi

    out = labels.copy()
    disk = np.hypot(*np.mgrid[-4:5, -4:5]) <= BRUSH / 2
    found = np.unique(labels)[1:]
    false = [i for i in found if not (reference & (labels == i)).any()][:10]
    ref_labels, n = ndi.label(reference)
    missed = [i for i in range(1, n + 1) if not ((labels > 0) & (ref_labels == i)).any()][:10]

    def brushed(pixels: np.ndarray) -> np.ndarray:
        dots = np.zeros(labels.shape, bool)
        dots[tuple(np.argwhere(pixels)[::5].T)] = True
        return ndi.binary_dilation(dots, disk)

    for i in missed:
        out[brushed(ref_labels == i)] = out.max() + 1
    for i in false:
        out[brushed(labels == i)] = 0
    return out


def pairs(out: Path):
    """The two corrected tiles as training pairs, with the model's own labels."""
    from napari_tmunet.data.images import read_image, read_mask
    from napari_tmunet.training.finetune import training_pairs

    made = []
    for name in TILES:
        image = read_image(MONUSEG / "images" / f"{name}.tif")
        reference = read_mask(MONUSEG / "masks" / f"{name}.png")[0] > 0
        labels = predicted_labels(image, out / f"{name}-predicted.npy")
        made += training_pairs(image, corrected(labels, reference), name, True, name, labels)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/ft-bench"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--resume-after", type=int, default=0, help="stop after this step, resume")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import threading

    import napari_tmunet.evaluation as evaluation
    import napari_tmunet.training.validation as validation
    from napari_tmunet.training.finetune import FinetuneJob, run_finetune

    calls = []
    for module in (evaluation, validation):  # every held-out scoring goes through one
        original = module.evaluate

        def counted(*a, _original=original, **k):
            began = time.perf_counter()
            result = _original(*a, **k)
            calls.append(round(time.perf_counter() - began, 1))
            return result

        module.evaluate = counted

    run_dir = args.out / f"run-{time.strftime('%H%M%S')}"
    job = FinetuneJob(
        run_dir=run_dir, pairs=pairs(args.out), start_model="TM-UNet nuclei",
        steps=args.steps, batch_size=2, device="cpu",
    )  # fmt: skip
    if args.resume_after:  # a first session stopped after that step, not timed
        stop = threading.Event()
        run_finetune(
            job, stop, {"on_step": lambda step, *_: step >= args.resume_after and stop.set()}
        )
        job = FinetuneJob(run_dir=run_dir, resume=True, device="cpu")
        calls.clear()
    t0 = time.perf_counter()
    events = []

    def note(kind):
        return lambda *a: events.append((round(time.perf_counter() - t0, 1), kind, a[:2]))

    callbacks = {"on_phase": note("phase"), "on_step": note("step"), "on_eval": note("eval")}
    result = run_finetune(job, callbacks=callbacks)
    total = time.perf_counter() - t0
    last_step = max(t for t, kind, _ in events if kind == "step")
    for t, kind, what in events:
        print(f"{t:7.1f} s  {kind}: {what[0] if kind == 'phase' else what}")
    first_step = min(t for t, kind, _ in events if kind == "step")
    report = {
        "resumed": bool(args.resume_after),
        "to_first_step_s": first_step,
        "scorings": len(calls),
        "scoring_s": calls,
        "total_s": round(total, 1),
        "after_last_step_s": round(total - last_step, 1),
        "old_dice": result["old"]["dice"],
        "new_dice": result["new"]["dice"],
        "new": result["new"],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
