"""Data-parallel training under ``torchrun``: process context and synchronised BatchNorm.

Every BatchNorm is synchronised across ranks: ``torch.nn.SyncBatchNorm`` on GPUs and, on
the CPU where its kernels do not exist, :class:`AllReduceBatchNorm2d` (the same
arithmetic with ``torch.distributed`` collectives). So N ranks at batch B/N compute the
statistics and gradients of one process at batch B. Checkpoints keep plain BatchNorm2d
keys. Measurements of the rounding floor: docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..options import resolve_device


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


@dataclass
class DistContext:
    """Rank, world size and device of this process (world size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun); init the process group."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", local % torch.cuda.device_count())
            torch.cuda.set_device(dev)
        ctx = cls(rank=rank, world_size=world, local_rank=local, device=dev)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if dev.type == "cuda" else "gloo",
                timeout=timedelta(minutes=60),
                **({"device_id": dev} if dev.type == "cuda" else {}),
            )
            ctx.initialized_here = True
        elif world > 1:
            ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
        return ctx

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over all ranks; its gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the DDP ranks, differentiably (each rank gets the gradient of the
    sum over all ranks' uses)."""
    return _AllReduceSum.apply(x)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with batch statistics summed over all ranks (CPU / gloo DDP).

    The CPU counterpart of ``torch.nn.SyncBatchNorm`` (whose kernels are CUDA-only):
    per-rank sums of x and x^2 and the element count are summed over the ranks by
    ``torch.distributed.all_reduce`` (the backward sums the ranks' gradients of those
    statistics, as SyncBatchNorm's backward does), so forward and backward equal
    BatchNorm over the global batch. Same state-dict keys as BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        C = x.shape[1]
        xf = x.float()
        local = torch.cat(
            [xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), xf.new_tensor([xf.numel() // C])]
        )  # (2C + 1)
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:C] / count
        var = (total[C : 2 * C] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        y = (xf - mean.view(1, C, 1, 1)) * torch.rsqrt(var + self.eps).view(1, C, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        return y.to(x.dtype)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace BatchNorm layers by cross-rank synchronised ones (see module docstring)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, AllReduceBatchNorm2d):
            new = AllReduceBatchNorm2d(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            new.load_state_dict(module.state_dict())
            if module.affine:
                new.weight, new.bias = module.weight, module.bias  # keep the Parameters
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, convert(child))
        return module

    return convert(model)


def unused_parameters(model: nn.Module, channels: int) -> bool:
    """Whether some parameters get no gradient (ablations), probed on a copy."""
    probe = copy.deepcopy(model).cpu().train()
    probe(torch.randn(2, channels, 64, 64)).float().mean().backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())
