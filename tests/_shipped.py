"""What the tests expect of the shipped models on their bundled samples, and fine-tuning
jobs of those models on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A little below what each shipped model measures on its sample (docs/models.md, "Bundled
# sample": colonoscopy 81.5 since recipe F20k of 2026-12-05, nuclei 83.2, ultrasound 95.7).
SAMPLE_MIN_DICE = {"nuclei": 0.75, "colonoscopy": 0.78, "ultrasound": 0.85}


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def sample_job(
    run_dir: Path, modality: str, image, mask, steps: int, lr: float, predicted=None, edits=True
):
    """A CPU job (one pair a batch) fine-tuning the shipped ``modality`` model on the pair
    ``image``, ``mask`` (the bundled sample's, named "sample"). ``predicted``: the Segment
    output the mask was corrected from; None: the shipped model's own, in its mode.
    ``edits`` False: ``mask`` is a reference mask, its edits unknown (the held-out strip
    then holds part of its foreground, not the one away from the edits)."""
    from napari_tmunet import registry
    from napari_tmunet.inference import run_to_completion, segment
    from napari_tmunet.training.finetune import FinetuneJob, training_pairs

    model = f"TM-UNet {modality}"
    if predicted is None and edits:
        start = registry.load_model(model, "cpu")
        ran = segment(image, start, mode=start.inference_mode, device="cpu")
        predicted = run_to_completion(ran).labels > 0
    rgb = np.ndim(image) == 3
    if not edits:
        predicted = None
    pairs = training_pairs(image, mask, "sample", rgb, f"{modality} sample", predicted)
    return FinetuneJob(
        run_dir=run_dir,
        pairs=pairs,
        start_model=model,
        steps=steps,
        lr=lr,
        batch_size=1,
        device="cpu",
    )
