"""TM-UNet and U-Net: complexity, shapes, gradients, options and input errors."""

import pytest
import torch

from napari_tmunet.config import ModelConfig
from napari_tmunet.model import build_model
from trainer.report import PAPER_TABLE3

# Table 3's "FLOPs" column (thop's MACs, in G) by channel sizes
PAPER_GMACS = {channels: float(flops.rstrip("G")) for channels, flops, *_ in PAPER_TABLE3}


def thop_macs(model, size=512, channels=3):
    thop = pytest.importorskip("thop")
    macs, _ = thop.profile(
        model.eval(), inputs=(torch.randn(1, channels, size, size),), verbose=False
    )
    return macs


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "variant, released_mparams",
    [("b", 5.75), ("s", 1.48), ("t", 0.39)],  # reference README
)
def test_complexity_matches_the_paper(variant, released_mparams):
    config = ModelConfig.variant(variant)
    model = build_model(config)
    assert thop_macs(model) / 1e9 == pytest.approx(PAPER_GMACS[tuple(config.channels)], rel=0.02)
    # the released model also holds an unused DWConv per block (~0.2%)
    assert n_params(model) / 1e6 == pytest.approx(released_mparams, rel=0.02)


def test_true_flops_include_the_mlstm_products():
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(ModelConfig.variant("b")).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 512, 512))
    true_macs = counter.get_total_flops() / 2
    # the einsum q/k/v projections and the chunkwise mLSTM products come on top of
    # what thop counts (modules only)
    assert true_macs > 1.05 * PAPER_GMACS[tuple(ModelConfig.variant("b").channels)] * 1e9


@pytest.mark.parametrize("variant", ["b", "t"])
@pytest.mark.parametrize("shape", [(1, 3, 291, 389), (2, 3, 64, 96), (1, 3, 33, 517)])
def test_any_size_keeps_shape_and_is_finite(variant, shape):
    model = build_model(ModelConfig.variant(variant)).eval()
    with torch.no_grad():
        y = model(torch.rand(shape))
    assert y.shape == (shape[0], 1, *shape[2:])
    assert torch.isfinite(y).all()


def test_grey_input_and_multiclass():
    model = build_model(ModelConfig.variant("t", in_channels=1, num_classes=3)).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, 100, 37))
    assert y.shape == (1, 3, 100, 37)


@pytest.mark.parametrize("variant", ["b", "t"])
def test_every_parameter_gets_a_gradient(variant):
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant(variant)).train()
    x = torch.rand(2, 3, 96, 64)
    target = (torch.rand(2, 1, 96, 64) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "overrides",
    [
        dict(use_xlstm=False, use_pooling=False, use_dwconv=False),  # Table 2 row 1
        dict(use_pooling=False, use_dwconv=False),  # row 2
        dict(use_dwconv=False),  # row 3
        dict(pooling="spatial"),
        dict(skip="concat"),
        dict(scan="fused"),
        dict(dwconv_order="before"),
    ],
)
def test_options_build_and_run(overrides):
    model = build_model(ModelConfig.variant("t", **overrides))
    y = model(torch.rand(2, 3, 64, 64))
    y.mean().backward()
    assert y.shape == (2, 1, 64, 64) and torch.isfinite(y).all()


def test_ablation_changes_complexity():
    full = thop_macs(build_model(ModelConfig.variant("b")))
    base = thop_macs(
        build_model(ModelConfig.variant("b", use_xlstm=False, use_pooling=False, use_dwconv=False))
    )
    assert base < full - 1e9  # the xLSTM layers are ~1.6 G of the 6.55 G


def test_unet_forward_odd_size():
    model = build_model(ModelConfig.unet(channels=(8, 16, 32, 64, 128))).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 70, 45))
    assert y.shape == (1, 1, 70, 45)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(1, 2, 3, 64, 64), ValueError, "4-D input"),
        (torch.rand(3, 64, 64), ValueError, "4-D input"),
        (torch.rand(1, 4, 64, 64), ValueError, "3 input channel"),
        (torch.rand(1, 3, 0, 64), ValueError, "zero size"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point"),
    ],
)
def test_bad_inputs_say_what_was_expected(x, error, match):
    model = build_model(ModelConfig.variant("t"))
    with pytest.raises(error, match=match):
        model(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_channels=4), "in_channels"),
        (dict(skip="sum"), "skip"),
        (dict(channels=(8, 16, 32)), "channels"),
        (dict(num_classes=0), "num_classes"),
        (dict(presence_head=True, num_classes=2), "presence head needs"),
        (dict(presence_head=True, arch="unet", channels=(8, 16, 32, 64, 128)), "presence head"),
    ],
)
def test_bad_configs_fail_in_the_constructor(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_presence_head_output_is_present_times_inside(tmp_path):
    """A presence head's model gives one logit map whose probability is
    sigmoid(q) * sigmoid(z); it survives a checkpoint, and a config without the key (every
    checkpoint written before the head) builds the plain model."""
    from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint
    from napari_tmunet.config import InputConfig
    from napari_tmunet.model.tmunet import present_and_inside

    torch.manual_seed(0)
    config = ModelConfig.variant("t", in_channels=1, presence_head=True)
    model = build_model(config).eval()
    x = torch.rand(3, 1, 70, 90)
    with torch.no_grad():
        z, q = model(x, parts=True)  # (3, 1, 70, 90), (3, 1)
        p = torch.sigmoid(model(x))
    assert z.shape == (3, 1, 70, 90) and q.shape == (3, 1)
    torch.testing.assert_close(p, torch.sigmoid(q)[:, :, None, None] * torch.sigmoid(z))
    # saturated parts stay finite and on the right side of any threshold
    saturated = torch.tensor([-40.0, 40.0]).reshape(1, 1, 1, 2)
    edge = present_and_inside(saturated, torch.full((1, 1), 40.0))
    assert torch.isfinite(edge).all() and edge.flatten()[0] < -30 and edge.flatten()[1] > 15

    save_checkpoint(tmp_path / "head.pt", model, config, InputConfig.for_channels(1))
    loaded = load_checkpoint(tmp_path / "head.pt").model
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(loaded(x)), p)
    old = config.to_dict()
    del old["presence_head"]
    assert build_model(ModelConfig.from_dict(old)).presence is None
