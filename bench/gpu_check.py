"""CUDA path check and speed of TM-UNet: Triton mLSTM kernel vs the CPU path.

Usage (on a CUDA machine): python bench/gpu_check.py [--out results.json]

1. cell level: chunkwise--triton_xl_chunk vs chunkwise--native_custbw (the CPU kernel),
   forward and gradients, at sequence lengths 108 (padded) and 4096;
2. model level, variants b and t: same weights and inputs on CPU (native kernel) and
   CUDA (Triton kernel where the head size allows), fp32: forward logits and one
   training step (loss 2 x BCE + 1 x Dice, Adam 1e-4): gradients and updated weights;
3. speed: batch-1 latency fp32 / bf16 autocast, batch-16 inference, batch-16 training
   step, peak memory (median of CUDA-event timings after warm-up).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from napari_tmunet.config import ModelConfig
from napari_tmunet.model import build_model
from napari_tmunet.model.mlstm import NATIVE_KERNEL, TRITON_KERNEL, choose_kernel, mlstm_sequence
from napari_tmunet.training.loss import segmentation_loss as loss_fn


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def cell_check(S, DH):
    g = torch.Generator().manual_seed(S + DH)
    q, k, v = (torch.randn(2, 4, S, DH, generator=g) for _ in range(3))
    i = torch.randn(2, 4, S, generator=g)
    f = torch.randn(2, 4, S, generator=g) + 2
    up = torch.randn(2, 4, S, DH, generator=g)
    out = {}
    res = {}
    for name, dev in ((NATIVE_KERNEL, "cpu"), (TRITON_KERNEL, "cuda")):
        xs = [t.detach().clone().to(dev).requires_grad_() for t in (q, k, v, i, f)]
        h = mlstm_sequence(*xs, kernel=name)
        (h * up.to(dev)).sum().backward()
        res[name] = (h, [x.grad for x in xs])
    (h0, g0), (h1, g1) = res[NATIVE_KERNEL], res[TRITON_KERNEL]
    out["forward"] = rel(h1, h0)
    for n, a, b in zip("qkvif", g1, g0, strict=True):
        out[f"d{n}"] = rel(a, b)
    return out


def model_check(variant, size=256, batch=2):
    torch.manual_seed(0)
    cfg = ModelConfig.variant(variant)
    cpu = build_model(cfg).train()
    gpu = build_model(cfg).cuda().train()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(batch, 3, size, size)
    t = (torch.rand(batch, 1, size, size) > 0.7).float()
    kernels = {
        c: choose_kernel("auto", torch.device("cuda"))
        + ("" if c // cfg.num_heads >= 16 else " (heads padded to 16)")
        for c in cfg.channels[2:]
    }
    res = {"kernels_by_channels": kernels}
    opt_c = torch.optim.Adam(cpu.parameters(), 1e-4)
    opt_g = torch.optim.Adam(gpu.parameters(), 1e-4)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yc = cpu(x)
    yg = gpu(x.cuda())
    res["forward_fp32"] = rel(yg, yc)
    loss_fn(yc, t).backward()
    loss_fn(yg, t.cuda()).backward()
    gc = torch.cat([p.grad.flatten() for p in cpu.parameters()])
    gg = torch.cat([p.grad.flatten() for p in gpu.parameters()])
    res["grad_fp32"] = rel(gg, gc)
    opt_c.step()
    opt_g.step()
    wc = torch.cat([p.flatten() for p in cpu.parameters()])
    wg = torch.cat([p.flatten() for p in gpu.parameters()])
    res["weights_after_step"] = rel(wg, wc)
    gpu.eval()
    cpu.eval()
    with torch.no_grad():
        yc = cpu(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yb = gpu(x.cuda()).float()
    res["forward_bf16_vs_cpu_fp32"] = rel(yb, yc)
    return res


def cuda_time(fn, warmup=10, reps=50):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def speed(variant, size=512):
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = build_model(ModelConfig.variant(variant)).cuda().eval()
    x1 = torch.rand(1, 3, size, size, device="cuda")
    x16 = torch.rand(16, 3, size, size, device="cuda")
    out = {}
    with torch.inference_mode():
        out["b1_fp32_ms"] = cuda_time(lambda: model(x1))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out["b1_bf16_ms"] = cuda_time(lambda: model(x1))
            out["b16_bf16_ms"] = cuda_time(lambda: model(x16), reps=20)
        out["b16_fp32_ms"] = cuda_time(lambda: model(x16), reps=20)
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    t16 = (torch.rand(16, 1, size, size, device="cuda") > 0.7).float()

    def step(amp):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x16).float(), t16)
        loss.backward()
        opt.step()

    for amp in (False, True):
        torch.cuda.reset_peak_memory_stats()
        key = "train_b16_bf16" if amp else "train_b16_fp32"
        out[key + "_ms"] = cuda_time(lambda amp=amp: step(amp), warmup=5, reps=20)
        out[key + "_peak_GB"] = torch.cuda.max_memory_allocated() / 1e9
    out["fps_b1_fp32"] = 1000 / out["b1_fp32_ms"]
    out["fps_b1_bf16"] = 1000 / out["b1_bf16_ms"]
    return out


PARTS = {
    "cell": lambda arg: cell_check(*(int(a) for a in arg.split("x"))),
    "model": model_check,
    "speed": speed,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "parts",
        nargs="*",
        default=[
            "cell:108x32",
            "cell:4096x32",
            "cell:4096x16",
            "model:b",
            "model:t",
            "speed:b",
            "speed:s",
            "speed:t",
        ],
        help="what to run, e.g. cell:108x32 model:b speed:t",
    )
    ap.add_argument("--out", default=None, help="append one JSON line per part here")
    args = ap.parse_args()
    head = {
        "card": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    for part in args.parts:
        kind, arg = part.split(":")
        print(f"== {part}", flush=True)
        line = json.dumps({**head, "part": part, "result": PARTS[kind](arg)})
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
