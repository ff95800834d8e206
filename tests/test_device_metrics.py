"""The torch metrics and the device-side validation give the numpy metrics' numbers."""

import numpy as np
import pytest
import torch
from _paths import DATASETS

from napari_tmunet import device_metrics, metrics
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.data.images import read_mask
from napari_tmunet.model import build_model

CLINIC = DATASETS / "CVC-ClinicDB"


def _pairs():
    """Hand-made edge cases plus real masks and shifted copies of them."""
    z = np.zeros((9, 11), bool)
    a = z.copy()
    a[2:6, 3:8] = True
    b = z.copy()
    b[4:8, 1:4] = True
    edge = z.copy()
    edge[0, :] = True  # touches the border: outside counts as background
    cases = [(z, z), (a, z), (z, a), (a, a), (a, b), (edge, a), (a[:, ::-1].copy(), a)]
    if CLINIC.is_dir():
        for name in ("1", "101", "301"):
            m = read_mask(CLINIC / "masks" / f"{name}.tif")[0]
            cases.append((np.roll(m, (7, -5), (0, 1)), m))
            cases.append((m & (np.arange(m.shape[1]) < 200), m))
    return cases


@pytest.mark.parametrize("pred, ref", _pairs())
def test_torch_metrics_equal_numpy_metrics(pred, ref):
    dice, iou = device_metrics.overlap_scores(
        torch.from_numpy(pred)[None], torch.from_numpy(ref)[None]
    )
    assert float(dice[0]) == pytest.approx(metrics.dice_score(pred, ref), abs=1e-12)
    assert float(iou[0]) == pytest.approx(metrics.iou_score(pred, ref), abs=1e-12)
    hd, hd95 = device_metrics.hausdorff(torch.from_numpy(pred), torch.from_numpy(ref))
    assert hd == pytest.approx(metrics.hausdorff_distance(pred, ref), rel=1e-9, abs=1e-9)
    assert hd95 == pytest.approx(metrics.hd95(pred, ref), rel=1e-9, abs=1e-9)


@pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no CVC-ClinicDB at {CLINIC}")
def test_resident_validation_equals_evaluate(one_torch_thread):
    """The trainer's per-period validation scores what the plugin's evaluation scores."""
    from napari_tmunet.data.cache import decode_folder
    from napari_tmunet.evaluation import evaluate
    from napari_tmunet.training.validation import ResidentValidation

    items = list(decode_folder(CLINIC, max_images=6))
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant("t")).eval()
    with torch.no_grad():  # an output bias that gives masks neither empty nor full
        model.head.bias.fill_(0.3)
    inp = InputConfig(size=(96, 96))
    agg = evaluate(model, items, inp, "resize", device="cpu").aggregate()
    val = ResidentValidation(items, 3, inp, torch.device("cpu"), batch_size=4).score(model, False)
    assert val["val_dice"] == pytest.approx(agg["dice_mean"], abs=1e-9)
    assert val["val_iou"] == pytest.approx(agg["iou_mean"], abs=1e-9)
    assert val["val_hd"] == pytest.approx(agg["hd_mean"], rel=1e-9)
    assert val["val_hd95"] == pytest.approx(agg["hd95_mean"], rel=1e-9)
    assert val["val_dice_native"] == pytest.approx(agg["native_dice_mean"], abs=1e-9)
    assert val["val_empty"] == agg["empty_prediction"]
