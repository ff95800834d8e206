"""Exponential moving average (EMA) of a model's weights: ``fit --ema DECAY``.

After every optimiser step each parameter and buffer ``a`` of the average moves toward
the model's ``w``: ``a = decay * a + (1 - decay) * w``; the average starts as a copy of
the model. Validation scores the average and ``best.pt`` holds it; ``last.pt`` keeps the
raw weights and, in its training state, the average (:meth:`WeightAverage.state_dict`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .distributed import unwrap


class WeightAverage:
    """The EMA of ``model``'s parameters and buffers (of the module inside a DDP wrapper).

    Build it once the model sits on its device in its final layout (after BatchNorm
    synchronisation and channels-last), before a CUDA graph is captured: it keeps the
    model's tensors, which the graph updates in place.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay {decay}: expected 0 < decay < 1")
        source = unwrap(model)
        self.decay = decay
        self.averaged = AveragedModel(
            source, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.averaged.requires_grad_(False).eval()
        self.averaged.update_parameters(source)  # the first update copies: the start
        # AveragedModel.update_parameters reads its step count on the host
        # (bool(n_averaged == 0)) and copies it to the device at every call: a host
        # synchronisation per step on CUDA. The per-step update therefore calls the same
        # PyTorch EMA function (torch._foreach_lerp_ for floating tensors) on lists built
        # here once, grouped by dtype as that function needs; it runs on the current
        # stream after the step (eagerly or replayed from a CUDA graph), never inside it.
        pairs = zip(_tensors(self.averaged.module), _tensors(source), strict=True)
        self.groups: dict[torch.dtype, tuple[list, list]] = {}
        for mine, theirs in pairs:
            group = self.groups.setdefault(mine.dtype, ([], []))
            group[0].append(mine)
            group[1].append(theirs)

    @property
    def module(self) -> nn.Module:
        """The averaged model (eval mode): what validation scores and best.pt holds."""
        return self.averaged.module

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step toward the model's current weights (no host synchronisation)."""
        for mine, theirs in self.groups.values():
            self.averaged.multi_avg_fn(mine, theirs, None)
        self.averaged.n_averaged += 1  # a CPU tensor: no device work

    def state_dict(self) -> dict:
        """The decay and the averaged weights on the CPU (for ``last.pt``)."""
        weights = {k: v.detach().cpu() for k, v in self.averaged.state_dict().items()}
        return {"decay": self.decay, "state_dict": weights}

    def load_state_dict(self, state: dict) -> None:
        """Continue the average saved by :meth:`state_dict`, in place."""
        self.averaged.load_state_dict(state["state_dict"])


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters then buffers, detached, in the order AveragedModel pairs them."""
    return [t.detach() for t in (*model.parameters(), *model.buffers())]
