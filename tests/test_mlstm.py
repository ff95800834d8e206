"""The mLSTM cell through mlstm_kernels against a float64 step-by-step reference."""

import pytest
import torch
import torch.nn.functional as F

from napari_tmunet.model.mlstm import (
    NATIVE_KERNEL,
    XLSTMLayer,
    choose_kernel,
    mlstm_sequence,
    pad_head_dim,
)


def recurrent_mlstm(q, k, v, i, f, eps=1e-6):
    """The stabilised mLSTM recurrence (xLSTM paper, eq. 19-27), one token at a time.

    q, k, v: (B, NH, S, DH); i, f: (B, NH, S) gate pre-activations. Keys scaled by DH^-0.5,
    normaliser max(|n.q|, exp(-m)), sigmoid forget gate in log space, m_0 = 0.
    """
    B, NH, S, DH = q.shape
    C = q.new_zeros(B, NH, DH, DH)
    n = q.new_zeros(B, NH, DH)
    m = q.new_zeros(B, NH)
    out = []
    for t in range(S):
        log_f = F.logsigmoid(f[:, :, t])
        m_new = torch.maximum(log_f + m, i[:, :, t])
        f_act = torch.exp(log_f + m - m_new)  # (B, NH)
        i_act = torch.exp(i[:, :, t] - m_new)
        k_t = k[:, :, t] * DH**-0.5  # (B, NH, DH)
        C = f_act[..., None, None] * C + i_act[..., None, None] * (
            k_t[..., :, None] * v[:, :, t, None, :]
        )
        n = f_act[..., None] * n + i_act[..., None] * k_t
        num = (q[:, :, t, None, :] @ C).squeeze(2)  # (B, NH, DH)
        den = torch.maximum((q[:, :, t] * n).sum(-1).abs(), torch.exp(-m_new)) + eps
        out.append(num / den[..., None])
        m = m_new
    return torch.stack(out, dim=2)  # (B, NH, S, DH)


def random_inputs(B, NH, S, DH, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, NH, S, DH, generator=g, dtype=torch.float64) for _ in range(3))
    i = torch.randn(B, NH, S, generator=g, dtype=torch.float64)
    f = torch.randn(B, NH, S, generator=g, dtype=torch.float64) + 2.0
    return q, k, v, i, f


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# 108 tokens: the deepest stage of a 384x288 frame (12 x 9), not divisible by 16;
# 4096: the 64x64 decoder stage at 512x512.
@pytest.mark.parametrize("S, DH", [(108, 8), (108, 32), (4096, 16)])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_matches_recurrent_reference(S, DH, reverse):
    seed = int(torch.randint(0, 2**31 - 1, (1,)))  # fresh inputs every run
    q, k, v, i, f = random_inputs(2 if S < 1000 else 1, 2, S, DH, seed)
    flip = (lambda t: t.flip(2)) if reverse else (lambda t: t)
    ref = flip(recurrent_mlstm(*(flip(t) for t in (q, k, v, i, f))))
    out = flip(mlstm_sequence(*(flip(t).float() for t in (q, k, v, i, f)), kernel="auto"))
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    assert rel(out, ref) < 1e-4, f"seed {seed}"


@pytest.mark.parametrize("S", [108, 256])
def test_gradients(S):
    """native_autograd is exact; custbw (the CPU twin of Triton) is exact in dv only."""
    seed = int(torch.randint(0, 2**31 - 1, (1,)))
    inputs = random_inputs(1, 2, S, 16, seed)
    upstream = torch.randn(1, 2, S, 16, dtype=torch.float64)

    ref_in = [t.clone().requires_grad_() for t in inputs]
    (recurrent_mlstm(*ref_in) * upstream).sum().backward()

    def grads(kernel):
        xs = [t.float().requires_grad_() for t in inputs]
        (mlstm_sequence(*xs, kernel=kernel) * upstream.float()).sum().backward()
        return [x.grad for x in xs]

    exact = grads("chunkwise--native_autograd")
    for name, g, r in zip("qkvif", exact, ref_in, strict=True):
        assert rel(g, r.grad) < 1e-4, f"native_autograd d{name}, seed {seed}"
    custbw = grads(NATIVE_KERNEL)
    assert rel(custbw[2], ref_in[2].grad) < 1e-4, f"custbw dv, seed {seed}"
    # dq, dk, di, df treat the normaliser as a constant (like the Triton kernel): they
    # differ from exact autograd but must stay finite and of the same order.
    for g in custbw:
        assert torch.isfinite(g).all()


def test_padding_goes_after_the_flip():
    """A reverse layer must equal a forward layer run on the flipped sequence."""
    torch.manual_seed(0)
    fwd = XLSTMLayer(32, num_heads=4, reverse=False)
    rev = XLSTMLayer(32, num_heads=4, reverse=True)
    rev.load_state_dict(fwd.state_dict())
    x = torch.randn(2, 108, 32)
    assert torch.allclose(rev(x), fwd(x.flip(1)).flip(1), atol=1e-6)
    # and the first output of a reverse scan sees the whole sequence
    y = rev(x)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(rev(x2)[:, 0], y[:, 0])


def test_padded_heads_give_the_same_mlstm(native=NATIVE_KERNEL):
    # Triton cannot compile head size 8 (variant t), so CUDA pads heads to 16: the
    # padded run must equal the plain one, forward and backward.
    q, k, v, i, f = random_inputs(2, 4, 100, 8, 3)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, i, f)]
    plain = mlstm_sequence(*leaves, kernel=native)
    padded_leaves = [t.clone().requires_grad_() for t in (q, k, v, i, f)]
    qp, kp, vp = pad_head_dim(*padded_leaves[:3], 16)
    assert qp.shape[-1] == 16
    padded = mlstm_sequence(qp, kp, vp, *padded_leaves[3:], kernel=native)
    assert rel(padded[..., :8], plain) < 1e-5  # the kernel computes in fp32
    assert padded[..., 8:].abs().max() == 0
    grad = torch.randn_like(plain)
    plain.backward(grad)
    padded[..., :8].backward(grad)
    for a, b in zip(leaves, padded_leaves, strict=True):
        assert rel(b.grad, a.grad) < 1e-5


def test_kernel_choice():
    cpu = torch.device("cpu")
    assert choose_kernel("auto", cpu) == NATIVE_KERNEL
    assert choose_kernel("chunkwise--triton_xl_chunk", cpu) == NATIVE_KERNEL
    with pytest.raises(ValueError, match="not available"):
        mlstm_sequence(*random_inputs(1, 1, 16, 4, 0), kernel="chunkwise--no_such_kernel")


@pytest.mark.parametrize("S", [48, 108, 144, 400])
def test_triton_gets_power_of_two_lengths(S, monkeypatch):
    """On CUDA the Triton kernel accepts only power-of-two sequence lengths (it asserts
    so); the wrapper pads for it, and the padded scan equals the plain one. A stand-in
    for the Triton kernel checks its input rule and runs the native kernel."""
    from napari_tmunet.model import mlstm

    native = mlstm._kernel(NATIVE_KERNEL)
    seen = []

    def triton_like(q, k, v, i, f, chunk_size, **kwargs):
        length = q.shape[2]
        assert length & (length - 1) == 0 and chunk_size & (chunk_size - 1) == 0
        assert length % chunk_size == 0 and q.shape[-1] >= mlstm.TRITON_MIN_HEAD_DIM
        seen.append((length, chunk_size))
        return native(q, k, v, i, f, chunk_size=chunk_size, **kwargs)

    monkeypatch.setattr(mlstm, "choose_kernel", lambda kernel, device: mlstm.TRITON_KERNEL)
    monkeypatch.setattr(mlstm, "_kernel", lambda name: triton_like)
    q, k, v, i, f = random_inputs(1, 2, S, 16, 5)
    out = mlstm_sequence(q, k, v, i, f, kernel="auto")
    monkeypatch.undo()
    plain = mlstm_sequence(q, k, v, i, f, kernel=NATIVE_KERNEL)
    assert out.shape == plain.shape and rel(out, plain) < 1e-5
    assert seen and seen[0][0] >= S


def test_torch_compile_is_left_out_only_within_the_kernel_import():
    """mlstm_kernels applies @torch.compile at import to a helper this project never runs;
    within the import it returns the function as it is, and torch.compile is itself again
    after (also when the import fails)."""
    from napari_tmunet.model.mlstm import _compile_left_out

    def helper(x):
        return x + 1

    compile_ = torch.compile
    with _compile_left_out():
        assert torch.compile(helper) is helper  # decorator without arguments
        assert torch.compile(mode="max-autotune")(helper) is helper  # with arguments
    assert torch.compile is compile_
    with pytest.raises(ImportError), _compile_left_out():
        raise ImportError("a kernel module that fails to import")
    assert torch.compile is compile_
