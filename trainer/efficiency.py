"""Parameters, MACs, FLOPs and forward speed of a model (Table 1's efficiency columns)."""

from __future__ import annotations

import copy
import logging
import platform
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)


def measure_efficiency(
    model: nn.Module,
    size: Sequence[int] = (512, 512),
    device: torch.device | str = "cpu",
    *,
    batch: int = 16,
    warmup: int | None = None,
    repeats: int | None = None,
    amp: bool = False,
    count_macs: bool = True,
    count_flops: bool = True,
) -> dict:
    """Parameters, MACs as the paper counts them, true FLOPs, FPS and throughput.

    - ``macs``: ``thop.profile`` multiply-accumulates at batch 1 (what the paper's
      "FLOPs" column reports: 6.55 G for TM-UNet b; thop counts module layers only, not
      the mLSTM's matrix products); None when thop is not installed.
    - ``flops``: ``torch.utils.flop_counter`` floating-point operations of one forward at
      batch 1 (2 per multiply-accumulate), counted on a CPU copy so that the chunkwise
      mLSTM's matrix products are included (a Triton kernel would be invisible).
    - ``fps_batch1``: 1 / median forward time at batch 1 (CUDA-synchronised, after
      warm-up), ``ms_batch1`` the median; ``throughput``: images/s at ``batch``.
    """
    net = getattr(model, "module", model)
    device = torch.device(device)
    size = tuple(int(s) for s in size)
    channels = getattr(getattr(net, "config", None), "in_channels", 3)
    cuda = device.type == "cuda"
    warmup = (10 if cuda else 2) if warmup is None else warmup
    repeats = (50 if cuda else 5) if repeats is None else repeats
    result: dict = {
        "params": int(sum(p.numel() for p in net.parameters())),
        "size": list(size),
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "amp": bool(amp and cuda),
        "batch": batch,
        "torch": torch.__version__,
    }
    if count_macs or count_flops:
        cpu_copy = copy.deepcopy(net).cpu().eval()
        x_cpu = torch.zeros(1, channels, *size)
        if count_macs:
            result["macs"] = _thop_macs(cpu_copy, x_cpu)
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                cpu_copy(x_cpu)
            result["flops"] = int(counter.get_total_flops())
        del cpu_copy
    was_training = net.training
    original_device = next(net.parameters()).device
    net.to(device).eval()
    try:
        ms1 = _median_ms(net, torch.randn(1, channels, *size, device=device), warmup, repeats, amp)
        msb = _median_ms(
            net,
            torch.randn(batch, channels, *size, device=device),
            max(1, warmup // 3),
            max(3, repeats // 5),
            amp,
        )
    finally:
        net.to(original_device).train(was_training)
    result.update(
        ms_batch1=ms1,
        fps_batch1=1000.0 / ms1,
        ms_batch=msb,
        throughput=batch * 1000.0 / msb,
    )
    return result


def _thop_macs(model: nn.Module, x: torch.Tensor) -> int | None:
    try:
        import thop
    except ImportError:
        logger.info("thop is not installed: MACs as the paper counts them are not reported")
        return None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        macs, _ = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)
    return int(macs)


@torch.no_grad()
def _median_ms(net: nn.Module, x: torch.Tensor, warmup: int, repeats: int, amp: bool) -> float:
    cuda = x.device.type == "cuda"

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and cuda):
            net(x)

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize(x.device)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))
