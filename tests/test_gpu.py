"""CUDA numerics: Triton mLSTM vs the CPU kernel, CUDA-graph steps vs eager, validation on
the device vs the plugin's evaluation. Run on a GPU machine with ``pytest -m gpu``;
skipped where CUDA is missing (CI)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import DATASETS

import napari_tmunet
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


def _steps(graph: bool, amp: bool, n: int = 4, dice_over: str = "image") -> dict:
    """n steps of variant t; the gradients of the first and the mean loss."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).cuda().train()
    optimizer = make_optimizer(model, 1e-3, graph=graph)
    lr = optimizer.param_groups[0]["lr"]
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    step = TrainStep(model, optimizer, amp=amp, graph=graph, dice_over=dice_over)
    g = torch.Generator().manual_seed(1)
    for k in range(n):
        x = torch.randn(4, 3, 128, 128, generator=g).cuda()
        y = (torch.rand(4, 1, 128, 128, generator=g) > 0.6).float().cuda()
        y[1] = 0  # an image with an empty mask (a lesion-free one)
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


def test_batch_dice_steps_replay_like_eager():
    """``--dice-over batch`` in a captured step: the eager step's gradients."""
    eager, graph = _steps(False, False, dice_over="batch"), _steps(True, False, dice_over="batch")
    flat = [torch.cat([t.flatten() for t in run["grads"]]) for run in (graph, eager)]
    assert _rel(*flat) < 5e-3
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


# --- the one inference forward (fast_forward): CUDA graphs vs eager fp32 -----------------

SAMPLES_DIR = Path(napari_tmunet.__file__).parent / "samples"


def _fast_vs_eager(model, x, amp):
    from napari_tmunet.fast_forward import FastForward, eager_logits

    fast = FastForward(model)
    out = fast(x, amp)
    assert not fast.failed and len(fast.graphs) == 1  # replayed, not a silent fallback
    return out, eager_logits(model, x, False)


@pytest.mark.parametrize("batch, shape", [(1, (512, 512)), (4, (512, 512)), (3, (256, 384))])
def test_graph_replay_equals_eager_fp32(batch, shape):
    """b in a CUDA graph: fp32 equals the eager pass; bf16 within bf16's tolerance.

    Batch 3 runs in the graph of 4 (padded); 256 x 384 is a non-square bucket.
    """
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("b")).cuda().eval()
    x = torch.randn(batch, 3, *shape, device="cuda")
    out, ref = _fast_vs_eager(model, x, amp=False)
    assert out.shape == ref.shape == (batch, 1, *shape)
    # same kernels at the same batch; a padded batch may take other (TF32) cuDNN algorithms
    assert _rel(out, ref) < (1e-4 if batch in (1, 4) else 3e-3)
    out16, _ = _fast_vs_eager(model, x, amp=True)
    assert out16.dtype == torch.float32 and _rel(out16, ref) < 5e-2  # docs: 2.8e-2


def test_graphs_follow_weight_changes_and_moves_and_stay_bounded():
    from napari_tmunet.fast_forward import FastForward, eager_logits

    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).cuda().eval()
    fast = FastForward(model, max_graphs=3)
    x = torch.randn(2, 3, 128, 128, device="cuda")
    assert _rel(fast(x), eager_logits(model, x, False)) < 1e-4
    with torch.no_grad():  # fine-tuning's optimiser: in place, same graph
        for p in model.parameters():
            p.mul_(0.9)
    assert _rel(fast(x), eager_logits(model, x, False)) < 1e-4
    model.cpu()
    model.cuda()  # new addresses: new graphs, never stale ones
    assert _rel(fast(x), eager_logits(model, x, False)) < 1e-4
    for side in (64, 96, 160, 192):
        y = torch.randn(1, 3, side, side, device="cuda")
        assert _rel(fast(y), eager_logits(model, y, False)) < 1e-4
    assert len(fast.graphs) == 3 and not fast.failed


def test_a_failing_capture_runs_eagerly(monkeypatch):
    from napari_tmunet.fast_forward import FastForward, eager_logits

    def broken(*args, **kwargs):
        raise RuntimeError("capture refused")

    monkeypatch.setattr(torch.cuda, "graph", broken)
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).cuda().eval()
    fast = FastForward(model)
    x = torch.randn(2, 3, 128, 128, device="cuda")
    out = fast(x)
    assert fast.failed and _rel(out, eager_logits(model, x, False)) < 1e-6


@pytest.mark.parametrize("modality", ["colonoscopy", "nuclei", "ultrasound"])
def test_shipped_models_label_their_samples_alike_on_cuda(modality, monkeypatch):
    """segment() on CUDA through graphs = eager on CUDA = the CPU's labels (>= 99.9%)."""
    from napari_tmunet import fast_forward, registry
    from napari_tmunet._sample_data import SAMPLES  # noqa: F401  (the samples' table)
    from napari_tmunet.data.images import read_image
    from napari_tmunet.inference import run_to_completion, segment

    path = registry.Path(registry.__file__).parent / "samples" / f"{modality}_image.png"
    image = read_image(path)
    checkpoint = registry.load_model(modality, "cpu")
    labels = {}
    for name, device, graphs in (
        ("cpu", "cpu", "1"),
        ("eager", "cuda", "0"),
        ("graph", "cuda", "1"),
    ):
        monkeypatch.setenv(fast_forward.GRAPHS_ENV, graphs)
        for mode in ("resize", "tile"):
            steps = segment(image, checkpoint, mode=mode, device=device, precision="fp32")
            labels[name, mode] = run_to_completion(steps).labels
    checkpoint.model.cpu()
    for mode in ("resize", "tile"):
        assert np.mean(labels["graph", mode] == labels["eager", mode]) >= 0.9999
        assert np.mean(labels["graph", mode] == labels["cpu", mode]) >= 0.999


def test_tiles_on_the_gpu_match_the_cpu_and_stream_in_bands(tmp_path):
    """A 1024 x 1024 H&E in memory and as a lazy TIFF in bands: the same mask as the CPU."""
    import tifffile

    from napari_tmunet import registry
    from napari_tmunet.data.images import open_image, read_image
    from napari_tmunet.inference import run_to_completion, segment

    sample = read_image(SAMPLES_DIR / "nuclei_image.png")
    image = np.ascontiguousarray(np.tile(sample[..., :3], (4, 4, 1)))  # (1024, 1024, 3)
    tifffile.imwrite(tmp_path / "he.tif", image)
    lazy = open_image(tmp_path / "he.tif", max_pixels=300_000)
    checkpoint = registry.load_model("nuclei", "cpu")
    cpu = run_to_completion(segment(image, checkpoint, mode="tile", device="cpu")).labels
    gpu = run_to_completion(segment(image, checkpoint, mode="tile", device="cuda")).labels
    bands = run_to_completion(
        segment(lazy, checkpoint, mode="tile", device="cuda", max_pixels=300_000)
    ).labels
    checkpoint.model.cpu()
    assert np.mean(gpu == cpu) >= 0.999
    assert np.mean(bands == gpu) >= 0.999  # other batches: other TF32 cuDNN algorithms


def test_first_cuda_segment_leaves_torch_compiler_unloaded():
    """The mLSTM kernels' import applies ``@torch.compile`` to a helper the project does
    not use; loading torch's compiler for it cost seconds of the first Segment."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from napari_tmunet import fast_forward\n"
        "from napari_tmunet.config import ModelConfig\n"
        "from napari_tmunet.model import build_model\n"
        "model = build_model(ModelConfig()).cuda().eval()\n"
        "with torch.no_grad():\n"
        "    fast_forward.logits(model, torch.randn(1, 3, 256, 256, device='cuda'))\n"
        "print(sorted(m for m in ('torch._dynamo', 'torch._inductor') if m in sys.modules))\n"
    )
    root = Path(napari_tmunet.__file__).parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=root, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not (DATASETS / "CVC-ClinicDB").is_dir(), reason="needs ../shared")
def test_channels_last_fit_trains_like_nchw_and_saves_plain_checkpoints(tmp_path):
    """fit on CUDA in channels-last memory (the default) gives the NCHW run's losses, and
    its checkpoint loads on the CPU with the same outputs as on the GPU."""
    import json

    from napari_tmunet.checkpoint import load_checkpoint
    from napari_tmunet.training import TrainConfig, fit

    losses = {}
    for nhwc in (True, False):
        cfg = TrainConfig(data=str(DATASETS / "CVC-ClinicDB"), max_images=16, variant="t",
                          size=(64, 64), batch_size=4, steps=6, epochs=2, device="cuda",
                          amp=False, channels_last=nhwc, test=False, efficiency=False,
                          progress=False, num_workers=2)  # fmt: skip
        fit(cfg, tmp_path / str(nhwc))
        records = (tmp_path / str(nhwc) / "metrics.jsonl").read_text().splitlines()
        losses[nhwc] = [json.loads(r)["train_loss"] for r in records]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
    x = torch.rand(2, 3, 64, 64)
    cpu = load_checkpoint(tmp_path / "True" / "best.pt", "cpu").model
    gpu = load_checkpoint(tmp_path / "True" / "best.pt", "cuda").model
    with torch.no_grad():
        assert _rel(gpu(x.cuda()), cpu(x)) < 1e-2


@pytest.mark.skipif(not (DATASETS / "CVC-ClinicDB").is_dir(), reason="needs ../shared")
def test_pretext_fit_replays_from_cuda_graphs_like_eager_steps(tmp_path):
    """fit --pretext inpaint on CUDA: a new patch mask goes into the captured step each
    time, so the graph run's losses are the eager run's."""
    import json

    from napari_tmunet.training import TrainConfig, fit

    losses = {}
    for graphs in (True, False):
        torch.manual_seed(0)
        cfg = TrainConfig(data=str(DATASETS / "CVC-ClinicDB"), max_images=16, variant="t",
                          size=(64, 64), batch_size=4, steps=6, epochs=2, device="cuda",
                          amp=False, cuda_graphs=graphs, pretext="inpaint", test=False,
                          efficiency=False, progress=False, num_workers=2)  # fmt: skip
        fit(cfg, tmp_path / str(graphs))
        records = (tmp_path / str(graphs) / "metrics.jsonl").read_text().splitlines()
        losses[graphs] = [json.loads(r)["train_loss"] for r in records]
    assert all(np.isfinite(losses[True]))
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_ema_follows_graph_steps_without_host_sync():
    """--ema on CUDA: the average's update after a replayed step neither synchronises with
    the host nor misses the step (d * before + (1 - d) * after for every tensor)."""
    from napari_tmunet.training.ema import WeightAverage

    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).cuda()
    step = TrainStep(model, make_optimizer(model, 1e-3, graph=True), amp=True, graph=True)
    average = WeightAverage(model, 0.9)
    x = torch.randn(2, 3, 64, 64, device="cuda")
    y = (torch.rand(2, 1, 64, 64, device="cuda") > 0.5).float()
    step(x, y)  # captures the graph (which may synchronise), then replays it
    average.update()
    before = {k: v.clone() for k, v in average.module.state_dict().items()}
    step(x, y)
    torch.cuda.set_sync_debug_mode("error")
    try:
        average.update()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    after = model.state_dict()
    for key, value in average.module.state_dict().items():
        expected = 0.9 * before[key] + 0.1 * after[key]
        if value.is_floating_point():
            torch.testing.assert_close(value, expected, msg=key)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_ema_fit_replays_from_cuda_graphs_like_eager_steps(tmp_path):
    """fit --ema on CUDA: with CUDA graphs the losses and the average are the eager run's."""
    import json

    from test_trainer import _tiny_cache

    from napari_tmunet.checkpoint import read_checkpoint
    from napari_tmunet.training import TrainConfig, fit

    losses, averages = {}, {}
    for graphs in (True, False):
        cfg = TrainConfig(variant="t", size=(32, 32), batch_size=2, steps=6, epochs=2,
                          device="cuda", amp=False, cuda_graphs=graphs, ema=0.8, test=False,
                          efficiency=False, progress=False, num_workers=2)  # fmt: skip
        fit(cfg, tmp_path / str(graphs), dataset=_tiny_cache())
        records = (tmp_path / str(graphs) / "metrics.jsonl").read_text().splitlines()
        losses[graphs] = [json.loads(r)["train_loss"] for r in records]
        last = read_checkpoint(tmp_path / str(graphs) / "last.pt")["training_state"]
        averages[graphs] = last["ema"]["state_dict"]["module.head.weight"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
    assert _rel(averages[True], averages[False]) < 1e-3
