"""The one inference forward (``fast_forward``) and tiles made on the device (``tiling``),
on the CPU: graph bookkeeping with a stand-in for CUDA graphs, the fallback when a capture
fails, the precision setting, and model inputs cut on the device equal to the host's.
The CUDA-graph numerics themselves are in tests/test_gpu.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_inference import PixelModel, make_checkpoint

from napari_tmunet import fast_forward
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.fast_forward import FastForward, _Graph, bucket_batch, eager_logits, use_bf16
from napari_tmunet.inference import FrameInput, run_to_completion, segment, sliding_window
from napari_tmunet.model import build_model
from napari_tmunet.tiling import batch_size_for, blend_window, tile_starts


class _Replay:
    """Stands in for a captured CUDA graph: a replay runs the model on the static input."""

    def __init__(self, model, static_in, static_out):
        self.model, self.static_in, self.static_out = model, static_in, static_out

    def replay(self):
        self.static_out.copy_(eager_logits(self.model, self.static_in, False))


@pytest.fixture
def fake_graphs(monkeypatch):
    """FastForward on the CPU as on CUDA, with :class:`_Replay` for the graphs."""
    captured = []

    def capture(self, model, shape, dtype, device, amp):
        captured.append(shape)
        static_in = torch.zeros(shape, dtype=dtype, device=device)
        static_out = eager_logits(model, static_in, amp)
        return _Graph(_Replay(model, static_in, static_out), static_in, static_out)

    monkeypatch.setattr(FastForward, "_graphable", lambda self, model, x: not model.training)
    monkeypatch.setattr(FastForward, "_capture", capture)
    return captured


def test_batches_are_padded_to_a_power_of_two():
    assert [bucket_batch(n) for n in (1, 2, 3, 5, 16, 17, 64, 65)] == [1, 2, 4, 8, 16, 32, 64, 65]


def test_replays_equal_eager_pad_and_copy_out(fake_graphs):
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).eval()
    fast = FastForward(model)
    x = torch.randn(3, 3, 64, 96)
    out = fast(x)
    assert fake_graphs == [(4, 3, 64, 96)]  # batch 3 runs in the graph of 4
    torch.testing.assert_close(out, eager_logits(model, x, False), rtol=1e-5, atol=1e-5)
    again = fast(torch.randn(3, 3, 64, 96))  # same graph; the first output is a copy
    assert len(fake_graphs) == 1 and not torch.equal(out, again)
    torch.testing.assert_close(out, eager_logits(model, x, False), rtol=1e-5, atol=1e-5)


def test_graphs_are_bounded_and_follow_the_weights(fake_graphs):
    model = PixelModel().eval()
    fast = FastForward(model, max_graphs=3)
    for side in (8, 16, 24, 32, 40):
        fast(torch.rand(1, 3, side, side))
    assert len(fast.graphs) == 3  # least recently used dropped
    x = torch.rand(2, 3, 8, 8)
    fast(x)
    with torch.no_grad():  # in place, as an optimiser step: the same graph sees it
        model.conv.weight.mul_(2.0)
    n = len(fake_graphs)
    torch.testing.assert_close(fast(x), eager_logits(model, x, False))
    assert len(fake_graphs) == n
    model.conv.weight.data = model.conv.weight.data.clone()  # moved (as by .to()): new graphs
    torch.testing.assert_close(fast(x), eager_logits(model, x, False))
    assert len(fake_graphs) == n + 1 and len(fast.graphs) == 1


def test_a_model_in_training_mode_runs_eagerly(fake_graphs):
    model = PixelModel().train()
    FastForward(model)(torch.rand(1, 3, 8, 8))
    assert fake_graphs == []


def test_a_failed_capture_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(FastForward, "_graphable", lambda self, m, x: not self.failed)
    monkeypatch.setattr(FastForward, "_capture", broken)
    model = PixelModel().eval()
    fast = FastForward(model)
    x = torch.rand(2, 3, 16, 16)
    with caplog.at_level(logging.WARNING, logger="napari_tmunet.fast_forward"):
        first, second = fast(x), fast(x)
    torch.testing.assert_close(first, eager_logits(model, x, False))
    torch.testing.assert_close(second, first)
    warnings = [r for r in caplog.records if "CUDA graph capture failed" in r.getMessage()]
    assert len(warnings) == 1 and fast.failed and not fast.graphs


def test_one_fast_forward_per_model_dropped_with_it():
    model = PixelModel().eval()
    assert fast_forward.fast_forward(model) is fast_forward.fast_forward(model)
    n = len(fast_forward._by_model)
    del model
    assert len(fast_forward._by_model) == n - 1


def test_precision_is_fp32_unless_asked(monkeypatch):
    monkeypatch.delenv(fast_forward.PRECISION_ENV, raising=False)
    assert not use_bf16("cuda")
    assert use_bf16("cuda", metadata={"inference_precision": "bf16"})
    assert use_bf16("cuda", "bf16") and not use_bf16("cpu", "bf16")
    monkeypatch.setenv(fast_forward.PRECISION_ENV, "bf16")
    assert use_bf16("cuda") and not use_bf16("cuda", "fp32")
    monkeypatch.setenv(fast_forward.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="NAPARI_TMUNET_PRECISION='fp16'"):
        use_bf16("cuda")


@pytest.mark.parametrize(
    "frame",
    [
        np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 65536, (70, 90), dtype=np.uint16),
        np.random.default_rng(2).integers(0, 256, (70, 90, 4), dtype=np.uint8),
        np.random.default_rng(3).random((70, 90)) > 0.5,
        np.random.default_rng(4).normal(size=(70, 90, 3)).astype(np.float32) * 300,
        np.random.default_rng(5).integers(-500, 500, (70, 90), dtype=np.int16),
        np.random.default_rng(6).integers(0, 2**20, (70, 90), dtype=np.uint32),
    ],
    ids=["uint8-rgb", "uint16-grey", "uint8-rgba", "bool", "float", "int16", "uint32"],
)
@pytest.mark.parametrize("channels", [3, 1])
def test_windows_made_on_the_device_equal_the_host_crops(frame, channels):
    inputs = InputConfig.for_channels(channels, size=(32, 48))
    frame_input = FrameInput(frame, channels, inputs)
    starts = [(0, 0), (38, 42), (10, 5)]
    made = frame_input.windows(starts, 32, 48, "cpu")
    host = np.stack([frame_input.crop(y, x, 32, 48) for y, x in starts])
    assert made.shape == (3, channels, 32, 48) and made.dtype == torch.float32
    if channels == 3 or frame.ndim == 2:  # one value per pixel: the same to the bit
        assert np.array_equal(made.numpy(), host)
    else:  # RGB averaged to grey: summation order may differ by a rounding
        np.testing.assert_allclose(made.numpy(), host, rtol=1e-6, atol=1e-6)


def _host_blend(model, frame_input, tile, overlap):
    """The blend as it was: crops on the host, sums in NumPy (the reference)."""
    H, W = frame_input.hw
    window = blend_window(*tile)
    acc, norm = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    for y in tile_starts(H, tile[0], overlap):
        for x in tile_starts(W, tile[1], overlap):
            inp = torch.from_numpy(frame_input.crop(y, x, *tile))[None]
            acc[y : y + tile[0], x : x + tile[1]] += model(inp)[0, 0].numpy() * window
            norm[y : y + tile[0], x : x + tile[1]] += window
    return acc / norm


def test_device_blend_equals_the_host_blend():
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).eval()
    frame = np.random.default_rng(0).integers(0, 256, (150, 130, 3), dtype=np.uint8)
    frame_input = FrameInput(frame, 3, InputConfig(size=(64, 64)))

    def logits(x):
        return eager_logits(model, x, False)

    blended = run_to_completion(sliding_window(logits, frame_input, (64, 64), 0.25, 3))
    reference = _host_blend(logits, frame_input, (64, 64), 0.25)
    np.testing.assert_allclose(blended[0, 0].numpy(), reference, rtol=1e-5, atol=1e-5)


def test_tiles_per_pass_by_device(monkeypatch):
    assert batch_size_for("cuda", (256, 256)) == 64
    assert batch_size_for("cuda", (512, 512)) == 16
    assert batch_size_for("cuda", (2048, 2048)) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert batch_size_for("cpu", (256, 256)) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert batch_size_for("cpu", (256, 256)) == 4


def test_segment_picks_the_batch_by_device():
    model = PixelModel().eval()
    checkpoint = make_checkpoint(model, size=(32, 32))
    image = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    run_to_completion(segment(image, checkpoint, mode="tile"))
    assert {shape[0] for shape in model.batches} == {batch_size_for("cpu", (32, 32))}


def test_a_batch_out_of_gpu_memory_is_halved():
    model = PixelModel().eval()

    def small_gpu(x):
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return model(x)

    image = torch.rand(1, 3, 100, 100)
    steps = sliding_window(small_gpu, image, (32, 32), 0.25, batch_size=8)
    out = run_to_completion(steps)
    reference = run_to_completion(sliding_window(model, image, (32, 32), 0.25, batch_size=1))
    torch.testing.assert_close(out, reference)
    assert {s[0] for s in model.batches[:-1]} <= {1, 2}


def test_the_kernel_cache_is_kept_unless_the_user_chose_one(tmp_path, monkeypatch):
    from napari_tmunet import settings

    monkeypatch.setenv(settings.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(settings.TRITON_CACHE_ENV, str(tmp_path / "mine"))
    assert settings.persist_kernel_cache() == tmp_path / "mine"  # the user's own, kept
    monkeypatch.delenv(settings.TRITON_CACHE_ENV)
    assert settings.persist_kernel_cache() == tmp_path / "cache" / "triton"
    assert settings.os.environ[settings.TRITON_CACHE_ENV] == str(tmp_path / "cache" / "triton")


def test_the_dock_says_when_gpu_kernels_compile(tmp_path, monkeypatch):
    from napari_tmunet import _segment_jobs, inference, settings

    checkpoint = make_checkpoint(PixelModel(), size=(32, 32))
    assert _segment_jobs.warm_up_note(checkpoint) == ""  # CPU: nothing to prepare
    monkeypatch.setattr(inference, "_model_device", lambda model: torch.device("cuda"))
    monkeypatch.setenv(settings.TRITON_CACHE_ENV, str(tmp_path / "triton"))
    assert "compiling GPU kernels (first run only" in _segment_jobs.warm_up_note(checkpoint)
    (tmp_path / "triton" / "abc").mkdir(parents=True)
    assert _segment_jobs.warm_up_note(checkpoint) == "preparing the model on the GPU..."


def test_out_of_memory_in_a_capture_frees_every_models_graphs(fake_graphs, monkeypatch):
    first, second = PixelModel().eval(), PixelModel().eval()
    fast_forward.fast_forward(first)(torch.rand(1, 3, 8, 8))
    assert len(fast_forward.fast_forward(first).graphs) == 1

    def no_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(FastForward, "_capture", no_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        fast_forward.fast_forward(second)(torch.rand(1, 3, 8, 8))
    assert not fast_forward.fast_forward(first).graphs  # freed for the smaller batch
    assert not fast_forward.fast_forward(second).failed  # not a failed capture


def test_replays_work_in_and_out_of_inference_mode(fake_graphs):
    model = PixelModel().eval()
    fast = FastForward(model)
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        first = fast(x)  # captured in inference mode
    torch.testing.assert_close(fast(x), first)  # replayed outside it
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), first)
