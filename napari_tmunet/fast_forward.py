"""The one inference forward pass: eager on the CPU, CUDA-graph replays on CUDA (no Qt).

Every caller that runs a model for its output (the Segment dock and
``napari-tmunet-predict`` through ``inference.segment``, fine-tuning's and the trainer's
evaluation through ``inference.forward_logits``) goes through :func:`logits`.

On CUDA a model in eval mode is replayed from a CUDA graph per input bucket
(batch rounded up to a power of two, channels, height, width, dtype, precision): at
batch 1 the model is hundreds of small kernels whose launches cost more than their
work, and a replay launches them all at once. The ideas are those of the training
step's graphs (``training.step``): static input, warm-up on a side stream (Triton
compiles there), capture, replay. A :class:`FastForward` per model keeps at most
:data:`MAX_GRAPHS` graphs (least recently used dropped) in one memory pool.

Correct by construction:
- weights are read by address, so in-place changes (fine-tuning's optimiser,
  ``load_state_dict``) are seen by the next replay; a model whose tensors moved
  (``.to()``, reassigned parameters) gets new graphs, checked before every replay;
- a replay's output is copied out of the graph's static tensor before it is returned;
- a model in training mode, a CPU tensor, ``NAPARI_TMUNET_CUDA_GRAPHS=0`` or a capture
  that fails (one logged warning) run the same forward eagerly.
``torch.compile`` is not used: it fails inside the Triton mLSTM kernel (docs/benchmarks.md).

Precision (:func:`use_bf16`): fp32 unless bf16 autocast is asked for, by the caller
(the trainer evaluates in its training precision), by ``NAPARI_TMUNET_PRECISION=bf16``
or by the checkpoint's ``inference_precision`` metadata.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .options import PRECISIONS

log = logging.getLogger(__name__)

GRAPHS_ENV = "NAPARI_TMUNET_CUDA_GRAPHS"  # "0": never capture (eager on CUDA too)
PRECISION_ENV = "NAPARI_TMUNET_PRECISION"  # "fp32" or "bf16": the plugin's CUDA precision
MAX_GRAPHS = 6  # graphs kept per model; each holds its input, output and a pool share
MAX_PADDED_BATCH = 64  # batches up to this are padded to a power of two (fewer graphs)

_by_model: weakref.WeakKeyDictionary[nn.Module, FastForward] = weakref.WeakKeyDictionary()
_by_model_lock = threading.Lock()


def logits(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, amp: bool = False):
    """(B, K, H, W) float32 logits of ``model`` for (B, C, H, W) ``x``, without autograd.

    bf16 autocast when ``amp`` and ``x`` is on CUDA. An ``nn.Module`` in eval mode on
    CUDA is replayed from a CUDA graph (:class:`FastForward`); anything else runs eagerly.
    """
    amp = bool(amp) and x.device.type == "cuda"
    if isinstance(model, nn.Module) and x.device.type == "cuda":
        return fast_forward(model)(x, amp)
    return eager_logits(model, x, amp)


def eager_logits(model: Callable, x: torch.Tensor, amp: bool) -> torch.Tensor:
    """The reference forward: ``model(x)`` in float32, without autograd.

    The autocast weight cache is off, so that a captured graph casts the weights it reads
    at every replay instead of baking in copies cast before the capture.
    """
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp, cache_enabled=False)
    with torch.no_grad(), autocast:
        return model(x).float()


def fast_forward(model: nn.Module) -> FastForward:
    """The :class:`FastForward` of ``model`` (one per model object, dropped with it)."""
    with _by_model_lock:
        fast = _by_model.get(model)
        if fast is None:
            fast = _by_model[model] = FastForward(model)
        return fast


def clear_all() -> None:
    """Drop every model's graphs and return their memory to the GPU (e.g. after an OOM)."""
    with _by_model_lock:
        fasts = list(_by_model.values())
    for fast in fasts:
        fast.clear()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def use_bf16(device: torch.device | str, precision: str | None = None, metadata=None) -> bool:
    """Whether the plugin runs a model in bf16 autocast on ``device``.

    ``precision`` ("fp32"/"bf16") wins; else ``NAPARI_TMUNET_PRECISION``; else the
    checkpoint's ``inference_precision`` metadata; else fp32 (bf16 changes b's logits by
    about 3e-2 relative, docs/benchmarks.md, so it is opted into, never assumed).
    Never on the CPU.

    Raises:
        ValueError: an unknown precision, naming where it came from.
    """
    source, value = "precision", precision
    if value is None and os.environ.get(PRECISION_ENV):
        source, value = PRECISION_ENV, os.environ[PRECISION_ENV]
    if value is None and isinstance(metadata, dict) and metadata.get("inference_precision"):
        source, value = "the checkpoint's inference_precision", metadata["inference_precision"]
    value = (value or "fp32").lower()
    if value not in PRECISIONS:
        raise ValueError(f"{source}={value!r}: expected one of {PRECISIONS}.")
    return value == "bf16" and torch.device(device).type == "cuda"


def graphs_enabled() -> bool:
    """False when ``NAPARI_TMUNET_CUDA_GRAPHS`` is 0/false/no/off."""
    return os.environ.get(GRAPHS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def bucket_batch(n: int) -> int:
    """The batch a graph is captured for: ``n`` rounded up to a power of two (up to 64)."""
    if n > MAX_PADDED_BATCH:
        return n
    return 1 << (n - 1).bit_length()


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    static_in: torch.Tensor  # (bucket, C, H, W)
    static_out: torch.Tensor  # (bucket, K, H, W) float32


class FastForward:
    """Inference forward of one model: CUDA-graph replays per input bucket, else eager.

    Args:
        model: the model; held weakly (the graphs do not keep it alive).
        max_graphs: graphs kept (least recently used dropped).
    """

    def __init__(self, model: nn.Module, max_graphs: int = MAX_GRAPHS):
        self._model = weakref.ref(model)
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self.failed = False  # a capture failed: eager from then on
        self._pool = None
        self._slots: list[tuple[dict, str]] = []  # (module._parameters|_buffers, name)
        self._addresses: list[tuple[torch.device, int]] = []
        self._lock = threading.Lock()  # one replay at a time (static tensors)

    def __call__(self, x: torch.Tensor, amp: bool = False) -> torch.Tensor:
        """(B, K, H, W) float32 logits for (B, C, H, W) ``x``."""
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this FastForward no longer exists")
        amp = bool(amp) and x.device.type == "cuda"
        if not self._graphable(model, x):
            return eager_logits(model, x, amp)
        # static tensors are ordinary tensors, whether or not the caller is in inference mode
        with self._lock, torch.inference_mode(False):
            try:
                entry = self._entry(model, x, amp)
            except torch.cuda.OutOfMemoryError:
                clear_all()  # other models' graphs too; the caller may take smaller batches
                raise
            except Exception as err:  # noqa: BLE001 - any capture failure: eager instead
                self._give_up(err)
                return eager_logits(model, x, amp)
            n = x.shape[0]
            entry.static_in[:n].copy_(x)
            if n < entry.static_in.shape[0]:
                entry.static_in[n:].zero_()  # padding rows: finite, discarded
            entry.graph.replay()
            return entry.static_out[:n].clone()

    def _graphable(self, model: nn.Module, x: torch.Tensor) -> bool:
        """Whether ``model(x)`` is replayed from a graph (else it runs eagerly)."""
        return (
            x.device.type == "cuda" and not model.training and not self.failed and graphs_enabled()
        )

    def _entry(self, model: nn.Module, x: torch.Tensor, amp: bool) -> _Graph:
        """The graph for ``x``'s bucket, captured on first use (LRU of ``max_graphs``)."""
        if not self._same_tensors(model):
            self.clear()
            self._remember_tensors(model)
        key = (bucket_batch(x.shape[0]), *x.shape[1:], x.dtype, x.device, amp)
        entry = self.graphs.get(key)
        if entry is not None:
            self.graphs.move_to_end(key)
            return entry
        while len(self.graphs) >= self.max_graphs:
            self.graphs.popitem(last=False)
        shape = (key[0], *x.shape[1:])
        entry = self.graphs[key] = self._capture(model, shape, x.dtype, x.device, amp)
        return entry

    def _capture(self, model, shape, dtype, device, amp) -> _Graph:
        static_in = torch.zeros(shape, dtype=dtype, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):  # Triton compilation, cuBLAS/cuDNN choices, lazy state
                eager_logits(model, static_in, amp)
        torch.cuda.current_stream(device).wait_stream(side)
        self._pool = self._pool or torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with (
            torch.no_grad(),
            torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"),
        ):
            static_out = eager_logits(model, static_in, amp)
        return _Graph(graph, static_in, static_out)

    def _give_up(self, err: Exception) -> None:
        """After a failed capture: drop the graphs and run eagerly from now on."""
        self.failed = True
        self.clear()
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - the eager pass will report a broken device
            pass
        log.warning(
            "napari-tmunet: CUDA graph capture failed (%s: %s); running the model eagerly "
            "(same results, slower)",
            type(err).__name__,
            str(err).splitlines()[0] if str(err) else "",
        )

    def clear(self) -> None:
        """Drop every graph (their memory returns to PyTorch's cache)."""
        self.graphs.clear()
        self._pool = None

    def _remember_tensors(self, model: nn.Module) -> None:
        self._slots = [
            (registry, name)
            for module in model.modules()
            for registry in (module._parameters, module._buffers)
            for name, tensor in registry.items()
            if tensor is not None
        ]
        self._addresses = self._current_addresses()

    def _current_addresses(self) -> list[tuple[torch.device, int]]:
        out = []
        for registry, name in self._slots:
            tensor = registry.get(name)
            out.append((None, 0) if tensor is None else (tensor.device, tensor.data_ptr()))
        return out

    def _same_tensors(self, model: nn.Module) -> bool:
        """Whether the weights and buffers are where the graphs read them (~50 us)."""
        return bool(self._slots) and self._current_addresses() == self._addresses
