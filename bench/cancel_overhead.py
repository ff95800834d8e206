"""What the per-module cancel check (``napari_tmunet.cancel.stoppable``) costs a Segment, one run.

The same shipped model is loaded twice, once as Segment loads it (``registry.load_model``:
every module checks a per-thread cancel event before it runs) and once without the check
(``checkpoint.load_checkpoint``), and the bundled sample of its modality is segmented with
each in turn, ``--repeats`` times after a warm-up, inside ``cancel.stop_when`` with an
event that is never set (the dock's case). CUDA graphs replay without Python, so on a GPU
the check costs only when graphs are off (``NAPARI_TMUNET_CUDA_GRAPHS=0``: run both).

    python bench/cancel_overhead.py colonoscopy --repeats 50
    NAPARI_TMUNET_CUDA_GRAPHS=0 python bench/cancel_overhead.py colonoscopy
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import torch

from napari_tmunet import registry
from napari_tmunet._sample_data import load_sample
from napari_tmunet.cancel import stop_when
from napari_tmunet.checkpoint import load_checkpoint
from napari_tmunet.fast_forward import graphs_enabled
from napari_tmunet.inference import resolve_device, run_to_completion, segment


def seconds_per_call(checkpoint, image, mode: str, device, repeats: int) -> float:
    """Median seconds of one ``segment`` call (labels on the host), after two warm-ups."""
    never = threading.Event()
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        with stop_when(never):
            run_to_completion(segment(image, checkpoint, mode=mode, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modality", help="a shipped model's modality, e.g. colonoscopy")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    hooked = registry.load_model(args.modality, str(device))
    plain = load_checkpoint(registry.resolve_model(args.modality)[1], device)
    image, _mask = load_sample(args.modality)
    mode = hooked.inference_mode
    rows = {
        label: seconds_per_call(checkpoint, image, mode, device, args.repeats)
        for label, checkpoint in (("without check", plain), ("with check", hooked))
    }
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else None
    print(
        json.dumps(
            {
                "device": str(device),
                "gpu": gpu,
                "graphs": graphs_enabled(),
                "modality": args.modality,
                "mode": mode,
                "repeats": args.repeats,
                "seconds_per_call": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
