"""Find which mLSTM kernel call crashes Triton compilation (diagnostic, prints shapes)."""

import sys

import torch

import napari_tmunet.model.mlstm as mm
from napari_tmunet.config import ModelConfig
from napari_tmunet.model import build_model

orig = mm._kernel


def traced(name):
    fn = orig(name)

    def wrapper(q, k, v, i, f, **kw):
        print(
            "call",
            name,
            tuple(q.shape),
            q.dtype,
            q.is_contiguous(),
            kw,
            torch.is_grad_enabled(),
            flush=True,
        )
        out = fn(q, k, v, i, f, **kw)
        torch.cuda.synchronize()
        print("  ok", flush=True)
        return out

    return wrapper


mm._kernel = traced
variant, size, batch, grad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "grad"
model = build_model(ModelConfig.variant(variant)).cuda()
x = torch.rand(batch, 3, size, size, device="cuda")
if sys.argv[4] == "bf16":
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(x)
elif grad:
    model(x).mean().backward()
else:
    with torch.no_grad():
        model(x)
torch.cuda.synchronize()
print("done", flush=True)
