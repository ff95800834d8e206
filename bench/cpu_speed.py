"""CPU inference speed of TM-UNet: seconds per 512x512 image at batch 1.

Usage: python bench/cpu_speed.py [--threads N] [--repeats 5]
Prints one line per variant (median of ``repeats`` forward passes after one warm-up),
with the mLSTM kernel each variant uses on the CPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from napari_tmunet.config import ModelConfig
from napari_tmunet.model import build_model
from napari_tmunet.model.mlstm import choose_kernel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}, 1x3x{args.size}x{args.size}"
    )
    for variant in ("b", "s", "t"):
        config = ModelConfig.variant(variant)
        model = build_model(config).eval()
        x = torch.rand(1, 3, args.size, args.size)
        kernel = choose_kernel("auto", torch.device("cpu"))
        with torch.inference_mode():
            model(x)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        print(f"TM-UNet {variant}: {statistics.median(times):.3f} s/image ({kernel})")


if __name__ == "__main__":
    main()
