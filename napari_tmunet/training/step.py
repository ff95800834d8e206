"""One optimiser step that never waits for the GPU.

:class:`TrainStep` runs forward, loss, backward and the optimiser update and keeps the
period's loss and a non-finite flag in device tensors, so the host queues steps ahead of
the GPU and reads the numbers once per period (:meth:`TrainStep.take_period`).

CUDA graphs (``graph=True``, one GPU): the whole step (forward, backward, Adam) is
captured once per batch shape and replayed, which removes the host's launch time from
the step (about 1,400 kernels). It needs an optimiser built with ``capturable=True`` and
a tensor learning rate (:func:`make_optimizer`). Off on the CPU and under DDP, where
the step runs eagerly. (``torch.compile`` was tried and fails inside the Triton mLSTM
kernel: docs/benchmarks.md.)
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import global_sum
from .loss import inpainting_loss, presence_head_loss, segmentation_loss


def make_optimizer(
    model: nn.Module, lr: float, *, eps: float = 1e-8, weight_decay: float = 0.0, graph: bool
) -> torch.optim.Adam:
    """Adam; for CUDA graphs its step count and learning rate live on the device.

    A tensor learning rate lets the scheduler change it in place, which a captured graph
    then reads (a float would be baked into the graph).
    """
    if not graph:
        return torch.optim.Adam(model.parameters(), lr=lr, eps=eps, weight_decay=weight_decay)
    device = next(model.parameters()).device
    return torch.optim.Adam(
        model.parameters(),
        lr=torch.tensor(lr, device=device),
        eps=eps,
        weight_decay=weight_decay,
        capturable=True,
    )


class TrainStep:
    """Forward, ``ce * CE + dice * Dice`` loss, backward and update, without host syncs.

    Args:
        model: the model (a DDP wrapper is fine in eager mode).
        optimizer: its optimiser (:func:`make_optimizer`).
        amp: bf16 autocast on CUDA.
        graph: replay the step from CUDA graphs (one per batch shape).
        grad_clip: clip the gradient norm to this (0 = off).
        pretext: "inpaint": ``y`` is a patch mask and the loss ``inpainting_loss``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        amp: bool = False,
        graph: bool = False,
        ce_weight: float = 2.0,
        dice_weight: float = 1.0,
        grad_clip: float = 0.0,
        dice_over: str = "image",
        presence_weight: float = 0.0,
        edge_weight: float = 0.0,
        pretext: str = "",
    ):
        self.model = model
        self.optimizer = optimizer
        self.device = next(model.parameters()).device
        cuda = self.device.type == "cuda"
        self.amp = amp and cuda
        self.graph = graph and cuda
        self.weights = (ce_weight, dice_weight)
        self.dice_over = dice_over
        self.presence_weight = presence_weight
        self.edge_weight = edge_weight
        self.pretext = pretext
        # a presence head trains on its own loss; its BCE is its only signal, so 0 means 1
        self.head = getattr(getattr(model, "module", model), "presence", None) is not None
        if self.head and dice_over != "image":
            raise ValueError(
                f"dice_over={dice_over!r}: a model with a presence head trains its mask on "
                "images with a lesion only, with the per-image Dice ('image')"
            )
        self.grad_clip = grad_clip
        # period accumulators: sum of batch-mean losses, steps, any non-finite loss
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.steps = 0
        self._last = torch.zeros((), device=self.device)
        self._graphs: dict[tuple, tuple] = {}
        self._pool = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, global_batch: int | None = None) -> None:
        """One step on this process's part ``x`` (n, C, h, w), ``y`` (n, 1, h, w).

        ``global_batch`` is the batch size over all DDP ranks (default ``n``): the loss is
        the sum of this part's per-sample losses times ``world_size / global_batch``, so
        the averaged DDP gradient is the gradient of the global batch mean.
        """
        n = x.shape[0]
        global_batch = global_batch or n
        world = _world_size()
        if self.graph:
            self._replay(x, y, world / global_batch, 1.0 / global_batch)
        else:
            self._eager(x, y, world / global_batch, 1.0 / global_batch)
        self.steps += 1

    def _loss(self, x, y, scale, inv_batch) -> torch.Tensor:
        """Scaled loss to back-propagate; updates the accumulators (all on the device)."""
        if self.pretext:
            return self._accumulate(inpainting_loss(self.model, x, y, self.amp), scale, inv_batch)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(x, parts=True) if self.head else self.model(x)
        if self.head:
            weight = self.presence_weight or 1.0
            per_sample = presence_head_loss(*out, y, *self.weights, presence_weight=weight)
        else:
            ranks = global_sum if _world_size() > 1 else None  # batch Dice of the global batch
            per_sample = segmentation_loss(
                out,
                y,
                *self.weights,
                reduction="none",
                dice_over=self.dice_over,
                sum_ranks=ranks,
                presence_weight=self.presence_weight,
                edge_weight=self.edge_weight,
            )  # (n,)
        return self._accumulate(per_sample, scale, inv_batch)

    def _accumulate(self, per_sample: torch.Tensor, scale, inv_batch) -> torch.Tensor:
        total = per_sample.sum()
        batch_part = total.detach().double() * inv_batch  # this rank's share of the batch mean
        self.loss_sum += batch_part
        self.nonfinite |= ~torch.isfinite(batch_part)
        self._last.copy_(batch_part)
        return total * scale

    def _update(self, loss: torch.Tensor) -> None:
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip, foreach=True)
        self.optimizer.step()

    def _eager(self, x, y, scale: float, inv_batch: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._update(self._loss(x, y, scale, inv_batch))

    def _replay(self, x, y, scale: float, inv_batch: float) -> None:
        key = (tuple(x.shape), tuple(y.shape), x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, y)
        graph, static_x, static_y, static_scale, static_inv = self._graphs[key]
        static_x.copy_(x)
        static_y.copy_(y)
        static_scale.fill_(scale)
        static_inv.fill_(inv_batch)
        graph.replay()

    def _capture(self, x, y) -> tuple:
        """Capture one step for inputs shaped like ``x``, ``y``.

        The warm-up steps that CUDA graphs need run on copies of the state, so a capture
        changes neither the weights nor the optimiser's moments.
        """
        one = torch.ones((), device=x.device)
        static = (x.clone(), y.clone(), one.clone(), one.clone())  # x, y, scale, 1 / batch
        saved = _snapshot(self.model, self.optimizer)
        accumulators = (self.loss_sum.clone(), self.nonfinite.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: Triton compilation, cuDNN choices, lazy state
                self.optimizer.zero_grad(set_to_none=True)
                self._update(self._loss(*static))
        torch.cuda.current_stream().wait_stream(side)
        self._pool = self._pool or torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, pool=self._pool):
            self._update(self._loss(*static))
        _restore(self.model, self.optimizer, saved)
        self.loss_sum.copy_(accumulators[0])
        self.nonfinite.copy_(accumulators[1])
        return (graph, *static)

    def take_period(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(sum of batch-mean losses, any non-finite flag, steps) since the last call.

        Device tensors (this rank's share; sum them over ranks); resets the accumulators.
        """
        out = (self.loss_sum.clone(), self.nonfinite.clone(), self.steps)
        self.loss_sum.zero_()
        self.nonfinite.zero_()
        self.steps = 0
        return out

    def restore_period(self, loss_sum: float, steps: int) -> None:
        """Continue a period that a stop interrupted (values from ``last.pt``)."""
        self.loss_sum.fill_(loss_sum)
        self.steps = steps

    def last_loss(self) -> float:
        """The last step's batch-mean loss (this rank's share); waits for the GPU."""
        return float(self._last)


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple:
    """Copies of the weights, buffers and optimiser state (restored after a capture)."""
    tensors = [t.detach().clone() for t in (*model.parameters(), *model.buffers())]
    state = {
        p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
        for p, s in optimizer.state.items()
    }
    return tensors, state


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved: tuple) -> None:
    """Put back what :func:`_snapshot` copied, in place (the graphs hold these tensors)."""
    tensors, state = saved
    with torch.no_grad():
        for t, copy in zip((*model.parameters(), *model.buffers()), tensors, strict=True):
            t.copy_(copy)
        for p, s in optimizer.state.items():
            if p not in state:  # state created by the warm-up: reset to a fresh start
                for v in s.values():
                    if torch.is_tensor(v):
                        v.zero_()
                continue
            for k, v in s.items():
                if torch.is_tensor(v):
                    v.copy_(state[p][k])
