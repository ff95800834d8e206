"""The mLSTM cell on the ``mlstm_kernels`` chunkwise kernels, and the xLSTM (ViL) layer.

Kernel choice (``mlstm_kernel="auto"``):
- CUDA with Triton: ``chunkwise--triton_xl_chunk`` (TFLA). It cannot compile head
  sizes below 16 (variant t has heads of 8), so such heads are zero-padded to 16 with
  q rescaled: exactly the same result (``pad_head_dim``);
- otherwise (CPU): ``chunkwise--native_custbw``.
Both back-propagate with the normaliser and stabiliser treated as constants, so the
CPU and GPU paths train with the same gradient semantics (see shared/reference).

The chunkwise kernels only take sequence lengths divisible by the chunk size (and 16
for Triton). The mLSTM is causal, so a sequence is padded at its END with zeros and
the output cropped back; earlier outputs cannot see the padding. Reversed scans flip
first and pad after the flip, for the same reason.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from xlstm.components.conv import CausalConv1d, CausalConv1dConfig
from xlstm.components.ln import MultiHeadLayerNorm

TRITON_KERNEL = "chunkwise--triton_xl_chunk"
NATIVE_KERNEL = "chunkwise--native_custbw"
TRITON_MIN_HEAD_DIM = 16
# Triton 3.6 (H100, 2026-11-28) aborts in LLVM's SLP vectorizer when it compiles the bf16
# TFLA kernel for head sizes 64 and 128; those heads run the Triton kernel in fp32.
TRITON_BF16_MAX_HEAD_DIM = int(os.environ.get("TMUNET_TRITON_BF16_MAX_HEAD_DIM", 32))


@contextlib.contextmanager
def _compile_left_out():
    """Within: ``torch.compile(fn)`` returns ``fn`` unchanged (module-wide, so only
    around an import).

    ``mlstm_kernels.torch.chunkwise`` imports every Triton kernel, and one this project
    does not use (``triton_limit_chunk``) applies ``@torch.compile`` at import time to a
    helper of its backward pass. That call loads torch's whole compiler stack
    (``torch._dynamo``, ``_inductor``, sympy: ~1,600 modules), seconds of the first
    Segment on a GPU (docs/benchmarks.md). Left uncompiled, the helper computes the same.
    """
    compile_ = torch.compile
    torch.compile = lambda fn=None, *args, **kwargs: fn if fn is not None else (lambda f: f)
    try:
        yield
    finally:
        torch.compile = compile_


@functools.cache
def _kernel_registry() -> tuple[tuple[str, ...], Callable]:
    """The names of ``mlstm_kernels``' available kernels and its lookup by name, imported
    (once) without torch's compiler."""
    with _compile_left_out():
        from mlstm_kernels.torch import get_available_mlstm_kernels, get_mlstm_kernel

        available = tuple(get_available_mlstm_kernels())  # imports the kernel modules
    return available, get_mlstm_kernel


@functools.cache
def _kernel(name: str):
    available, get_mlstm_kernel = _kernel_registry()
    if name not in available:
        raise ValueError(
            f"mLSTM kernel {name!r} is not available here; available: "
            f"{list(available)} (Triton kernels need CUDA and triton)."
        )
    return get_mlstm_kernel(name)


@functools.cache
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return TRITON_KERNEL in _kernel_registry()[0]


def choose_kernel(requested: str, device: torch.device) -> str:
    """Name of the mlstm_kernels function to run on this device."""
    if requested != "auto":
        if "triton" in requested and device.type != "cuda":
            return NATIVE_KERNEL  # tested fallback: same forward, same gradient semantics
        return requested
    if device.type == "cuda" and _triton_available():
        return TRITON_KERNEL
    return NATIVE_KERNEL


def pad_head_dim(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-pad heads (B, NH, S, DH) to DH = ``size`` without changing the mLSTM's output.

    Zero key/value dimensions add nothing to q.k, the memory or the normaliser; the
    kernel scales q.k by size**-0.5 instead of DH**-0.5, so q is scaled by
    sqrt(size / DH) to compensate. The output's first DH dimensions are the original's.
    """
    DH = q.shape[-1]
    q = q * math.sqrt(size / DH)
    return tuple(F.pad(t, (0, size - DH)) for t in (q, k, v))


def _chunking(S: int, chunk_size: int, triton: bool) -> tuple[int, int]:
    """``(chunk, padded length)`` for a sequence of ``S`` tokens.

    The Triton kernel's parameter heuristics take only power-of-two lengths (an input of
    e.g. 96 x 96 pixels gives 144 tokens at one stage), so for it the sequence is padded
    to the next power of two (at least 16); the native kernel needs a multiple of the
    chunk. Short sequences use one chunk of the padded length.
    """
    if triton:
        padded = max(16, 1 << (S - 1).bit_length())
        return min(chunk_size, padded), padded
    chunk = min(chunk_size, 16 * math.ceil(S / 16))
    return chunk, chunk * math.ceil(S / chunk)


def mlstm_sequence(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    kernel: str = "auto",
    chunk_size: int = 64,
) -> torch.Tensor:
    """Run the mLSTM over a whole sequence with a chunkwise kernel, any length S.

    Args:
        q, k, v: (B, NH, S, DH); keys are scaled by DH**-0.5 inside the kernel.
        i, f: (B, NH, S) input and forget gate pre-activations.
    Returns:
        h: (B, NH, S, DH), in the dtype of ``v``.
    """
    B, NH, S, DH = q.shape
    name = choose_kernel(kernel, q.device)
    if "triton" in name and DH < TRITON_MIN_HEAD_DIM:  # Triton can't compile DH < 16
        q, k, v = pad_head_dim(q, k, v, TRITON_MIN_HEAD_DIM)
    chunk, padded = _chunking(S, chunk_size, triton="triton" in name)
    pad = padded - S
    if pad:  # zeros at the end of a causal scan leave positions < S untouched
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        i, f = (F.pad(t, (0, pad)) for t in (i, f))
    dtype = v.dtype
    # One dtype for all kernel inputs: bf16 for Triton under CUDA autocast (the kernel
    # accumulates in fp32), fp32 otherwise; gates come out of fp32 Linear layers.
    kernel_dtype = torch.float32
    if (
        "triton" in name
        and torch.is_autocast_enabled("cuda")
        and q.shape[-1] <= TRITON_BF16_MAX_HEAD_DIM
    ):
        kernel_dtype = torch.get_autocast_dtype("cuda")
    q, k, v, i, f = (t.to(kernel_dtype).contiguous() for t in (q, k, v, i, f))
    kwargs = {"autocast_kernel_dtype": kernel_dtype}
    h = _kernel(name)(q, k, v, i, f, chunk_size=chunk, **kwargs)  # (B, NH, S+pad, DH+)
    return h[:, :, :S, :DH].to(dtype)


class BlockDiagonalLinear(nn.Module):
    """Block-diagonal linear map (xLSTM's headwise q/k/v projection) as one dense matmul.

    ``weight`` (NB, B, B) holds NB independent B x B blocks, the parameter layout of
    xlstm's ``LinearHeadwiseExpand``, so checkpoints load unchanged; the output is the
    same. The blocks are laid on the diagonal of a dense (D, D) matrix: with 4 x 4 blocks
    the headwise einsum runs as thousands of tiny GEMMs without tensor cores, while the
    dense product multiplies zeros but is a fraction of the time (docs/benchmarks.md).
    """

    def __init__(self, dim: int, block_size: int):
        super().__init__()
        n_blocks = dim // block_size
        self.weight = nn.Parameter(torch.empty(n_blocks, block_size, block_size))
        self.register_buffer("_eye", torch.eye(n_blocks), persistent=False)
        nn.init.normal_(self.weight, std=math.sqrt(2 / (5 * block_size)))

    def dense_weight(self) -> torch.Tensor:
        """(D, D) matrix with the blocks on its diagonal."""
        nb, b, _ = self.weight.shape
        dense = self.weight[:, :, None, :] * self._eye[:, None, :, None]  # (NB, B, NB, B)
        return dense.reshape(nb * b, nb * b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return F.linear(x, self.dense_weight())


class MLSTMCell(nn.Module):
    """Multi-head mLSTM cell: gates from [q, k, v], chunkwise kernel, per-head norm."""

    def __init__(self, dim: int, num_heads: int, kernel: str = "auto", chunk_size: int = 64):
        super().__init__()
        self.num_heads = num_heads
        self.kernel = kernel
        self.chunk_size = chunk_size
        self.igate = nn.Linear(3 * dim, num_heads)
        self.fgate = nn.Linear(3 * dim, num_heads)
        self.outnorm = MultiHeadLayerNorm(ndim=dim, weight=True, bias=True)
        self.reset_parameters()

    def reset_parameters(self):
        # Forget gates start open (bias 3..6, remember) and input gates near zero,
        # the xLSTM initialisation that keeps early training stable.
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.num_heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, mean=0.0, std=0.1)
        self.outnorm.reset_parameters()

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, S, D) q, k, v -> (B, S, D) normalised hidden states."""
        B, S, D = q.shape
        qkv = torch.cat([q, k, v], dim=-1)  # (B, S, 3D)
        i = self.igate(qkv).transpose(1, 2)  # (B, NH, S)
        f = self.fgate(qkv).transpose(1, 2)  # (B, NH, S)

        def heads(t):
            return t.view(B, S, self.num_heads, -1).transpose(1, 2)  # (B, NH, S, DH)

        h = mlstm_sequence(heads(q), heads(k), heads(v), i, f, self.kernel, self.chunk_size)
        h = self.outnorm(h)  # (B, NH, S, DH)
        return h.transpose(1, 2).reshape(B, S, D)


class XLSTMLayer(nn.Module):
    """One Vision-LSTM (ViL) mLSTM layer scanning the token sequence in one direction.

    proj_up to (x, z); causal depthwise conv1d + SiLU on x; block-diagonal q/k from the
    convolved branch and v from the plain one; mLSTM cell; learnable skip; gated by
    SiLU(z); proj_down. Expansion factor 1, as in the released model.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        reverse: bool = False,
        kernel: str = "auto",
        chunk_size: int = 64,
        conv_kernel_size: int = 4,
        qk_block_size: int = 4,
    ):
        super().__init__()
        self.reverse = reverse
        self.proj_up = nn.Linear(dim, 2 * dim, bias=False)
        self.conv1d = CausalConv1d(
            CausalConv1dConfig(feature_dim=dim, kernel_size=conv_kernel_size)
        )

        self.q_proj, self.k_proj, self.v_proj = (
            BlockDiagonalLinear(dim, qk_block_size) for _ in range(3)
        )
        self.cell = MLSTMCell(dim, num_heads, kernel, chunk_size)
        self.learnable_skip = nn.Parameter(torch.ones(dim))
        self.proj_down = nn.Linear(dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        # xLSTM's initialisation: "small init" std sqrt(2 / 5d) on the input side,
        # "wang init" std 2 / sqrt(d) (one block) on the output projection
        dim = self.proj_up.in_features
        nn.init.normal_(self.proj_up.weight, std=math.sqrt(2 / (5 * dim)))
        nn.init.normal_(self.proj_down.weight, std=2 / math.sqrt(dim))
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.normal_(proj.weight, std=math.sqrt(2 / (5 * dim)))
        nn.init.ones_(self.learnable_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, D) -> (B, S, D); a reverse layer scans from the last token."""
        if self.reverse:
            x = x.flip(1)
        x_mlstm, z = self.proj_up(x).chunk(2, dim=-1)  # (B, S, D) each
        x_conv = F.silu(self.conv1d(x_mlstm))  # (B, S, D)
        q, k = self.q_proj(x_conv), self.k_proj(x_conv)
        v = self.v_proj(x_mlstm)
        h = self.cell(q, k, v) + self.learnable_skip * x_conv  # (B, S, D)
        y = self.proj_down(h * F.silu(z))
        return y.flip(1) if self.reverse else y


class FusedBidirectionalXLSTMLayer(nn.Module):
    """Eq. 4-6 of the paper read literally: one layer, both scan directions.

    x' = Linear(LN(x)); x'' = Flip(mLSTM(Flip(Linear(x)))); x <- Linear(x'' * mLSTM(x')) + x.
    """

    def __init__(self, dim: int, num_heads: int = 4, kernel: str = "auto", chunk_size: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj_forward = nn.Linear(dim, dim)
        self.proj_backward = nn.Linear(dim, dim)
        self.forward_scan = _SequenceMLSTM(dim, num_heads, kernel, chunk_size)
        self.backward_scan = _SequenceMLSTM(dim, num_heads, kernel, chunk_size)
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, D) -> (B, S, D), residual included."""
        fwd = self.forward_scan(self.proj_forward(self.norm(x)))
        bwd = self.backward_scan(self.proj_backward(x).flip(1)).flip(1)
        return self.proj_out(bwd * fwd) + x


class _SequenceMLSTM(nn.Module):
    """mLSTM over a token sequence with plain linear q/k/v (for the fused layer)."""

    def __init__(self, dim: int, num_heads: int, kernel: str, chunk_size: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.cell = MLSTMCell(dim, num_heads, kernel, chunk_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, S, D) each
        return self.cell(q, k, v)
