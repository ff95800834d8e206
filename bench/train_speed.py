"""Training-step speed of TM-UNet and U-Net on one GPU, side by side in one run.

For each model and each mode (eager fp32, eager bf16 autocast, CUDA graph of the whole step
fp32/bf16) it times the Adam step at batch 16, 512 x 512, and records peak
memory. ``--profile`` adds the 25 kernels that take the most GPU time in an eager step.
Each (model, mode) result is appended to ``--out`` as a JSON line and skipped when the
file already holds it, so a run cut short by a time limit resumes where it stopped.

    python bench/train_speed.py --out speed.jsonl --models b s t unet --profile

A model name ending in ``-cl`` runs in channels-last memory format (weights and input);
``b-presence`` is b with the presence head (``ModelConfig.presence_head``); ``wN`` is b's layout
with C1 = N (channels N, 2N, 4N, 8N, 16N: ``fit --channels``); ``-ema`` (last)
adds the weight average of ``fit --ema 0.998`` (``training.ema``), updated after each step
as the engine does, inside the timed span; ``-edgeK`` (last) trains with ``fit --edge-weight K``
(``loss.edge_weights``, e.g. ``b-edge5``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_tmunet.config import ModelConfig  # noqa: E402
from napari_tmunet.model import build_model  # noqa: E402
from napari_tmunet.training.ema import WeightAverage  # noqa: E402
from napari_tmunet.training.loss import segmentation_loss  # noqa: E402
from napari_tmunet.training.step import TrainStep, make_optimizer  # noqa: E402

MODES = ("eager-fp32", "eager-bf16", "graph-fp32", "graph-bf16")


def edge_weight(name: str) -> float:
    """K of a name ending in ``-edgeK`` (0.0 otherwise)."""
    tail = name.rsplit("-", 1)[-1]
    return float(tail[4:]) if tail.startswith("edge") else 0.0


def model_config(name: str) -> ModelConfig:
    name = name.split("-edge")[0].removesuffix("-ema").removesuffix("-cl")
    if name.endswith("-presence"):
        return ModelConfig.variant(name.split("-")[0], presence_head=True)
    if name == "unet":
        return ModelConfig.unet()
    if name[0] == "w" and name[1:].isdigit():  # a wider (or narrower) b: C1 = N, doubling
        return ModelConfig.variant("b", channels=tuple(int(name[1:]) << k for k in range(5)))
    if name.endswith("-parallel"):  # the authors' cost model: quadratic parallel mLSTM
        return ModelConfig.variant(name.split("-")[0], mlstm_kernel="parallel--native_autograd")
    return ModelConfig.variant(name)


def time_mode(name: str, mode: str, batch: int, size: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build_model(model_config(name)).cuda().train()
    x = torch.randn(batch, 3, size, size, device="cuda")
    y = (torch.rand(batch, 1, size, size, device="cuda") > 0.7).float()
    # NHWC: cuDNN's layout for bf16 convolutions
    if name.split("-edge")[0].removesuffix("-ema").endswith("-cl"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    how, precision = mode.split("-")
    graph = how == "graph"
    optimizer = make_optimizer(model, 1e-4, graph=graph)
    train_step = TrainStep(
        model, optimizer, amp=precision == "bf16", graph=graph, edge_weight=edge_weight(name)
    )
    # built before the first step (the graph's capture), as the engine does
    average = WeightAverage(model, 0.998) if name.split("-edge")[0].endswith("-ema") else None

    def step(x, y):
        train_step(x, y)
        if average is not None:  # after the step, outside its CUDA graph
            average.update()

    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(3):  # warm-up: kernel compilation, autotuning, graph capture
        step(x, y)
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - started
    times = []
    for _ in range(steps):
        t0 = torch.cuda.Event(enable_timing=True)
        t1 = torch.cuda.Event(enable_timing=True)
        t0.record()
        step(x, y)
        t1.record()
        t1.synchronize()
        times.append(t0.elapsed_time(t1))
    return {
        "model": name,
        "mode": mode,
        "batch": batch,
        "size": size,
        "step_ms": round(statistics.median(times), 2),
        "step_ms_min": round(min(times), 2),
        "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "warmup_s": round(warmup_s, 1),
        "loss": float(train_step.last_loss()),
    }


def profile(name: str, batch: int, size: int, amp: bool) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = build_model(model_config(name)).cuda().train()
    x = torch.randn(batch, 3, size, size, device="cuda")
    y = (torch.rand(batch, 1, size, size, device="cuda") > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def one():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = segmentation_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        one()
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        one()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    kernels = sorted(
        (e for e in events if e.device_time_total > 0 and e.device_type.name == "CUDA"),
        key=lambda e: -e.device_time_total,
    )
    gpu_ms = sum(e.device_time_total for e in kernels) / 1000
    top = [
        {"name": e.key[:90], "ms": round(e.device_time_total / 1000, 3), "calls": e.count}
        for e in kernels[:25]
    ]
    launches = sum(e.count for e in kernels)
    return {
        "model": name,
        "mode": "profile-" + ("bf16" if amp else "fp32"),
        "wall_ms": round(wall * 1000, 1),
        "kernel_ms": round(gpu_ms, 1),
        "kernel_launches": launches,
        "top": top,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON lines file (appended)")
    p.add_argument("--models", nargs="+", default=["b", "s", "t", "unet"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--size", type=int, default=512, help="input height = width (default 512)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per mode (default 20)")
    p.add_argument("--profile", action="store_true", help="kernel table of an eager step")
    p.add_argument("--repeat", action="store_true", help="time the first model twice (noise)")
    args = p.parse_args(argv)
    torch.backends.cudnn.benchmark = True  # as the training engine runs (engine.py)
    done = set()
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["model"], r["mode"], r.get("run", 0)))
    jobs = [(m, mode, 0) for m in args.models for mode in args.modes]
    if args.repeat:
        jobs += [(args.models[0], mode, 1) for mode in args.modes]
    if args.profile:
        jobs = [(m, p, 0) for m in args.models[:1] for p in ("profile-fp32", "profile-bf16")] + jobs
    for name, mode, run in jobs:
        if (name, mode, run) in done:
            continue
        try:
            if mode.startswith("profile"):
                r = profile(name, args.batch, args.size, amp=mode.endswith("bf16"))
            else:
                r = time_mode(name, mode, args.batch, args.size, args.steps)
        except Exception as err:  # a mode that fails is recorded, the others still run
            r = {"model": name, "mode": mode, "error": f"{type(err).__name__}: {err}"[:500]}
        r["run"] = run
        r["device"] = torch.cuda.get_device_name()
        print(json.dumps(r), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
