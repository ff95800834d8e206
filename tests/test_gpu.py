"""CUDA numerics: Triton mLSTM vs the CPU kernel, CUDA-graph steps vs eager, validation on
the device vs the plugin's evaluation. Run on a GPU machine with ``pytest -m gpu``;
skipped where CUDA is missing (CI)."""

import numpy as np
import pytest
import torch
from _paths import DATASETS

from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.model import build_model
from napari_tmunet.model.mlstm import NATIVE_KERNEL, TRITON_KERNEL, mlstm_sequence
from napari_tmunet.training.step import TrainStep, make_optimizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("seq, head", [(108, 8), (4096, 32), (256, 128)])
def test_triton_mlstm_matches_the_cpu_kernel(seq, head):
    g = torch.Generator().manual_seed(seq + head)
    q, k, v = (torch.randn(2, 4, seq, head, generator=g) for _ in range(3))
    i, f = torch.randn(2, 4, seq, generator=g), torch.randn(2, 4, seq, generator=g) + 2
    upstream = torch.randn(2, 4, seq, head, generator=g)
    out = {}
    for kernel, device in ((NATIVE_KERNEL, "cpu"), (TRITON_KERNEL, "cuda")):
        xs = [t.clone().to(device).requires_grad_() for t in (q, k, v, i, f)]
        h = mlstm_sequence(*xs, kernel=kernel)
        (h * upstream.to(device)).sum().backward()
        out[kernel] = (h, [x.grad for x in xs])
    (h0, g0), (h1, g1) = out[NATIVE_KERNEL], out[TRITON_KERNEL]
    # Triton's dot products run in TF32 (10-bit mantissa): about 1.5e-3 relative error,
    # more on the forget-gate gradient, which sums over the whole sequence (H100/H200)
    assert _rel(h1, h0) < 3e-3
    for name, a, b in zip("qkvif", g1, g0, strict=True):
        assert _rel(a, b) < (5e-2 if name == "f" else 5e-3), name


def _steps(graph: bool, amp: bool, n: int = 4) -> dict:
    """n steps of variant t; the gradients of the first and the mean loss."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).cuda().train()
    optimizer = make_optimizer(model, 1e-3, graph=graph)
    lr = optimizer.param_groups[0]["lr"]
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    step = TrainStep(model, optimizer, amp=amp, graph=graph)
    g = torch.Generator().manual_seed(1)
    for k in range(n):
        x = torch.randn(4, 3, 128, 128, generator=g).cuda()
        y = (torch.rand(4, 1, 128, 128, generator=g) > 0.6).float().cuda()
        step(x, y)
        if k == 0:
            grads = [p.grad.detach().clone() for p in model.parameters()]
        if k == 1:
            scheduler.step()
    if graph:  # the scheduler changed the tensor the captured Adam reads, in place
        assert optimizer.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(5e-4)
    loss_sum, nonfinite, steps = step.take_period()
    assert steps == n and not bool(nonfinite)
    return {"grads": grads, "loss": float(loss_sum) / n}


@pytest.mark.parametrize("amp", [False, True])
def test_cuda_graph_steps_equal_eager_steps(amp):
    """A replayed step computes the eager step's gradients, and training goes on alike.

    Weights after a few Adam steps are no yardstick: Adam's first steps move every weight
    by about lr, so rounding (atomics in cuDNN and Triton backward kernels, the capturable
    Adam's device-side bias correction) flips the moves of near-zero gradients.
    """
    eager, graph = _steps(False, amp), _steps(True, amp)
    # over all gradients: a conv bias before BatchNorm has a true gradient of 0, so its
    # own relative error measures noise only
    flat = [torch.cat([t.flatten() for t in run["grads"]]) for run in (graph, eager)]
    assert _rel(*flat) < (5e-2 if amp else 5e-3)
    assert graph["loss"] == pytest.approx(eager["loss"], rel=1e-2)


def test_model_b_forward_matches_cpu():
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("b")).eval()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    assert _rel(out, ref) < 1e-3


@pytest.mark.skipif(not (DATASETS / "CVC-ClinicDB").is_dir(), reason="no CVC-ClinicDB")
def test_device_validation_matches_evaluate():
    from napari_tmunet.data.cache import decode_folder
    from napari_tmunet.evaluation import evaluate
    from napari_tmunet.training.validation import ResidentValidation

    items = list(decode_folder(DATASETS / "CVC-ClinicDB", max_images=12))
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).cuda().eval()
    inp = InputConfig(size=(256, 256))
    agg = evaluate(model, items, inp, "resize", device="cuda", amp=False).aggregate()
    val = ResidentValidation(items, 3, inp, torch.device("cuda")).score(model, amp=False)
    assert val["val_dice"] == pytest.approx(agg["dice_mean"], abs=1e-6)
    assert val["val_hd"] == pytest.approx(agg["hd_mean"], rel=1e-6)
    assert val["val_hd95"] == pytest.approx(agg["hd95_mean"], rel=1e-6)
    assert val["val_dice_native"] == pytest.approx(agg["native_dice_mean"], abs=1e-6)
    assert np.isfinite(val["val_iou"])
