"""Inference core without Qt: shapes, resize vs tile, bounded tiling, stacks, instances."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from _paths import DATASETS
from torch import nn

from napari_tmunet import registry
from napari_tmunet.checkpoint import Checkpoint
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.data.images import read_image
from napari_tmunet.data.preprocess import to_model_input
from napari_tmunet.inference import (
    predict_probability,
    resolve_device,
    run_to_completion,
    segment,
    sliding_window,
    split_instances,
)
from napari_tmunet.model import build_model

MONUSEG_TILE = DATASETS / "MoNuSeg" / "images" / "TCGA-18-5592-01Z-00-DX1.tif"


class PixelModel(nn.Module):
    """A per-pixel linear model: logits = sum of channels - 0.5 (exactly tileable)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-0.5)
        self.batches: list[tuple[int, ...]] = []

    def forward(self, x):
        self.batches.append(tuple(x.shape))
        return self.conv(x)


def make_checkpoint(model: nn.Module, size=(64, 64), in_channels=3, **input_kw) -> Checkpoint:
    config = ModelConfig.variant("t", in_channels=in_channels)
    inputs = InputConfig.for_channels(in_channels, size=size, **input_kw)
    return Checkpoint(model=model.eval(), model_config=config, input_config=inputs)


@pytest.fixture(scope="module")
def tiny_tmunet() -> Checkpoint:
    """An untrained 't' TM-UNet: for shapes only, never for quality."""
    torch.manual_seed(0)
    return make_checkpoint(build_model(ModelConfig.variant("t")), size=(128, 128))


def test_resolve_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="expected one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("mode", ["resize", "tile"])
@pytest.mark.parametrize("shape", [(67, 101), (67, 101, 3), (150, 40, 4)])
def test_probability_shape_any_size(tiny_tmunet, mode, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    prob, mapping = predict_probability(image, tiny_tmunet, mode=mode)
    assert prob.shape == shape[:2] and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert mapping.startswith("uint8 / 255")


@pytest.mark.skipif(not MONUSEG_TILE.is_file(), reason="shared MoNuSeg data not present")
def test_resize_and_tile_on_real_monuseg_tile(tiny_tmunet):
    image = read_image(MONUSEG_TILE)
    assert image.shape == (1000, 1000, 3)
    steps = []
    result = run_to_completion(
        segment(image, tiny_tmunet, threshold=0.5, mode="tile"), lambda d, t: steps.append((d, t))
    )
    resized = run_to_completion(segment(image, tiny_tmunet, threshold=0.5, mode="resize"))
    for r in (result, resized):
        assert r.labels.shape == r.probability.shape == (1000, 1000)
        assert r.labels.dtype == np.uint8 and set(np.unique(r.labels)) <= {0, 1}
    # 128-px tiles overlapping by a quarter: 11 x 11 windows, 4 per forward pass
    assert steps[-1] == (121, 121)
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_tiling_blends_exactly_and_bounds_memory():
    """Tiles of a per-pixel model reassemble the full-image answer; batches stay small."""
    model = PixelModel()
    checkpoint = make_checkpoint(model, size=(96, 96))
    image = np.random.default_rng(1).integers(0, 256, (1500, 1300, 3), dtype=np.uint8)
    tracemalloc.start()
    prob, _ = predict_probability(image, checkpoint, mode="tile", batch_size=3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    x = torch.from_numpy(
        to_model_input(image, 3, checkpoint.input_config.mean, checkpoint.input_config.std)
    )
    expected = torch.sigmoid(model.conv(x[None]))[0, 0].detach().numpy()
    np.testing.assert_allclose(prob, expected, atol=1e-5)
    tiles = model.batches
    assert all(b[0] <= 3 and b[2:] == (96, 96) for b in tiles), set(tiles)
    assert sum(b[0] for b in tiles) == 21 * 18  # windows covering 1500 x 1300
    # Image-sized accumulators only: no per-tile list of outputs, no float copy of the image.
    image_floats = 1500 * 1300 * 4
    assert peak < 3 * image_floats, f"peak {peak / 1e6:.1f} MB"


def test_sliding_window_on_a_tensor_batch():
    """The shared sliding window (also the trainer's) on a (B, C, H, W) tensor."""
    model = PixelModel()
    x = torch.randn(2, 3, 70, 90)
    expected = model.conv(x).detach()
    for weight in ("gaussian", "constant"):
        windows = sliding_window(model, x, (32, 32), overlap=0.25, batch_size=5, weight=weight)
        steps = list(windows)  # (done, total) after each forward pass
        with pytest.raises(StopIteration):
            next(windows)
        assert steps[-1] == (24, 24)  # 3 x 4 windows per image
        out = run_to_completion(sliding_window(model, x, (32, 32), 0.25, 5, weight))
        assert out.shape == (2, 1, 70, 90) and out.device.type == "cpu"
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert all(b[0] <= 5 and b[2:] == (32, 32) for b in model.batches)
    with pytest.raises(ValueError, match="weight"):
        next(sliding_window(model, x, (32, 32), weight="triangle"))
    with pytest.raises(ValueError, match="overlap"):
        next(sliding_window(model, x, (32, 32), overlap=0.95))


def test_stack_is_segmented_slice_by_slice():
    checkpoint = make_checkpoint(PixelModel(), size=(32, 32))
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    stack[1] = 0  # an all-dark frame
    steps = []
    result = run_to_completion(
        segment(stack, checkpoint, threshold=0.9, mode="tile"), lambda d, t: steps.append((d, t))
    )
    assert result.labels.shape == (3, 40, 50)
    for z in range(3):
        single = run_to_completion(segment(stack[z], checkpoint, threshold=0.9, mode="tile"))
        np.testing.assert_array_equal(result.labels[z], single.labels)
        np.testing.assert_allclose(result.probability[z], single.probability)
    assert steps[0][0] == 0 and steps[-1][0] == steps[-1][1]

    grey_stack = rng.integers(0, 256, (2, 33, 35), dtype=np.uint8)
    assert run_to_completion(segment(grey_stack, checkpoint)).labels.shape == (2, 33, 35)


def test_closing_the_generator_stops_the_work():
    model = PixelModel()
    checkpoint = make_checkpoint(model, size=(32, 32))
    image = np.zeros((320, 320), np.uint8)
    steps = segment(image, checkpoint, mode="tile", batch_size=2)
    next(steps)
    next(steps)
    steps.close()
    assert len(model.batches) == 1  # one forward pass (2 of 169 tiles), then stopped


def two_touching_discs(shape=(80, 120)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = (yy - 40) ** 2 + (xx - 40) ** 2 <= 20**2
    b = (yy - 40) ** 2 + (xx - 76) ** 2 <= 20**2  # centres 36 px apart: they overlap
    return a | b


def test_instance_split_of_touching_discs():
    mask = two_touching_discs()
    from scipy import ndimage as ndi

    assert ndi.label(mask)[1] == 1  # one connected component...
    labels = split_instances(mask)
    assert labels.max() == 2  # ...split into two objects
    assert set(np.unique(labels[mask])) == {1, 2} and not labels[~mask].any()
    assert labels[40, 40] != labels[40, 76]
    assert split_instances(np.zeros((8, 8), bool)).max() == 0
    thin = np.zeros((20, 20), bool)
    thin[5, 2:18] = True  # no distance maximum 2 px high: still one object
    assert split_instances(thin).max() == 1


def test_segment_instances_through_the_model():
    """A model that returns the discs themselves: instances=True gives 2 labels."""

    class MaskModel(nn.Module):
        def forward(self, x):
            return (x[:, :1] > 0).float() * 20 - 10  # logits +-10 from the grey input

    checkpoint = make_checkpoint(MaskModel(), size=(128, 128), in_channels=1)
    image = two_touching_discs().astype(np.uint8) * 200
    result = run_to_completion(segment(image, checkpoint, instances=True, mode="tile"))
    assert result.labels.dtype == np.int32 and result.labels.max() == 2
    stack = run_to_completion(segment(np.stack([image, image]), checkpoint, instances=True))
    assert sorted(np.unique(stack.labels)) == [0, 1, 2, 3, 4]  # ids unique across frames


@pytest.mark.parametrize(
    "shape, rgb",
    [
        ((50,), None),  # 1-D
        ((2, 3, 40, 40), False),  # T, Z, H, W
        ((2, 3, 40, 40, 3), True),  # T, Z, H, W, RGB
        ((40, 40, 7), True),  # 7 channels marked as colour
        ((2, 2), None),  # too small
        ((0, 40, 40), None),  # empty stack
    ],
)
def test_unsupported_shapes_say_what_was_expected(shape, rgb):
    checkpoint = make_checkpoint(PixelModel(), size=(32, 32))
    with pytest.raises(ValueError, match=r"expected|at least|can be segmented"):
        run_to_completion(segment(np.zeros(shape, np.uint8), checkpoint, rgb=rgb))


def test_a_small_colour_picture_read_as_a_stack_is_explained():
    """napari reads a 20 x 20 RGB picture as 20 grey frames of 20 x 3 (its sides are not
    over 30): the error says so and what to do, not only that 3 pixels are too few."""
    from napari_tmunet._sample_data import load_sample

    crop = load_sample("nuclei")[0][100:120, 100:120]  # (20, 20, 3) H&E
    checkpoint = make_checkpoint(PixelModel(), size=(32, 32))
    with pytest.raises(ValueError, match=r"20 grey frames of 20 x 3 pixels.*enlarge the picture"):
        run_to_completion(segment(crop, checkpoint, rgb=False))
    assert run_to_completion(segment(crop, checkpoint, rgb=True)).labels.shape == (20, 20)


def test_bad_options_are_refused():
    checkpoint = make_checkpoint(PixelModel(), size=(32, 32))
    image = np.zeros((40, 40), np.uint8)
    with pytest.raises(ValueError, match="mode"):
        next(segment(image, checkpoint, mode="crop"))
    with pytest.raises(ValueError, match="threshold"):
        next(segment(image, checkpoint, threshold=1.5))
    with pytest.raises(ValueError, match="dtype"):
        next(segment(np.zeros((40, 40), complex), checkpoint))
    with pytest.raises(ValueError, match="segment\\(\\) for a stack"):
        predict_probability(np.zeros((3, 40, 40, 3), np.uint8), checkpoint)


@pytest.mark.parametrize(
    "image, in_channels, words",
    [
        (
            np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 20,  # up to 38380: 16-bit
            3,
            ["uint16 / 65535", "grey replicated to 3"],
        ),
        (np.linspace(-1, 5, 40 * 48, dtype=np.float32).reshape(40, 48), 1, ["float32 perc"]),
        (np.full((40, 48, 4), 90, np.uint8), 3, ["uint8 / 255", "RGBA", "alpha dropped"]),
        (np.full((40, 48, 3), 90, np.uint8), 1, ["RGB averaged to grey"]),
    ],
)
def test_inputs_are_mapped_to_the_checkpoint_domain(image, in_channels, words):
    """Mapping as in training (preprocess.to_model_input), stated in words."""
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x[:, :1]

    checkpoint = make_checkpoint(Spy(), size=(64, 64), in_channels=in_channels)
    _, mapping = predict_probability(image, checkpoint, mode="tile")  # one tile, no resizing
    for word in words:
        assert word in mapping
    assert "normalised with mean" in mapping
    inputs = checkpoint.input_config
    expected = to_model_input(image, in_channels, inputs.mean, inputs.std)
    np.testing.assert_allclose(seen[0][0].numpy(), expected, atol=1e-6)


def test_the_package_ships_a_model_per_modality():
    shipped = {entry.modality for entry in registry.available_models()}
    assert shipped == set(registry.MODALITIES), "napari_tmunet/weights/*.pt missing"


@pytest.mark.parametrize("entry", registry.registry_entries(), ids=lambda e: e.modality)
def test_each_shipped_model_segments_its_sample(entry):
    """Issue 6's check: Dice on the model's sample (a crop from its TEST split) is at least
    the model card's mean test Dice minus 10 points."""
    from napari_tmunet._sample_data import load_sample

    assert entry.exists, f"{entry.path} is missing"
    assert entry.test_dice is not None, f"registry entry {entry.name!r} has no test_dice"
    checkpoint = registry.load_model(entry.name, "cpu")
    assert registry.load_model(entry.name, "cpu") is checkpoint  # cached
    image, mask = load_sample(entry.modality)
    result = run_to_completion(segment(image, checkpoint, mode=checkpoint.inference_mode))
    pred = result.labels > 0
    dice = 2 * (pred & (mask > 0)).sum() / (pred.sum() + (mask > 0).sum())
    assert dice >= entry.test_dice - 0.10, (dice, entry.test_dice)


@pytest.mark.parametrize("modality", ["colonoscopy", "nuclei", "ultrasound"])
def test_modality_guess_on_the_samples(modality):
    from napari_tmunet._sample_data import load_sample

    image, _ = load_sample(modality)
    assert registry.guess_modality(image) == modality
    if image.ndim == 2:  # grey stored as RGB is still grey
        assert registry.guess_modality(np.repeat(image[..., None], 3, -1)) == "ultrasound"


def test_package_registry_lists_one_model_per_modality():
    import json

    listing = json.loads((registry.PACKAGE_WEIGHTS_DIR / registry.REGISTRY_FILE).read_text())
    assert sorted(e["modality"] for e in listing["models"]) == sorted(registry.MODALITIES)
    for entry in listing["models"]:
        assert entry["provisional"] is False  # GPU-trained TM-UNet b (docs/registry.md)
        assert 0 < entry["test_dice"] <= 1 and "mode" not in entry  # the checkpoint's own
    # what each was trained on, as the Segment dock and napari-tmunet-predict say it
    trained = {e.modality: e.trained_on for e in registry.registry_entries()}
    assert trained == {
        "colonoscopy": "colonoscopy (Kvasir-SEG, CVC-ClinicDB)",
        "nuclei": "H&E nuclei (MoNuSeg, CPM-15)",
        "ultrasound": "breast ultrasound (BUSI, UDIAT)",
    }
    modes = {
        e.modality: registry.load_model(e.name, "cpu").inference_mode
        for e in registry.available_models()
    }
    assert modes == {"colonoscopy": "resize", "nuclei": "tile", "ultrasound": "resize"}


def test_registry_in_a_weights_dir(tmp_path, monkeypatch):
    """Registry mechanics with an untrained checkpoint (never shipped, file only)."""
    import json
    import os

    from napari_tmunet.checkpoint import save_checkpoint

    config = ModelConfig.variant("t")
    for name in ("a.pt", "b.pt"):
        save_checkpoint(tmp_path / name, build_model(config), config, InputConfig(size=(64, 64)))
    entries = [
        {"name": "A", "modality": "colonoscopy", "file": "a.pt", "provisional": True},
        {"name": "B", "modality": "ultrasound", "file": "b.pt", "provisional": False},
        {"name": "C", "modality": "nuclei", "file": "missing.pt", "provisional": False},
    ]
    (tmp_path / "registry.json").write_text(json.dumps({"models": entries}))
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path))
    registry.clear_cache()

    assert [e.name for e in registry.registry_entries()] == ["A", "B", "C"]
    assert [e.name for e in registry.available_models()] == ["A", "B"]  # C's file is absent
    grey = np.zeros((50, 60), np.uint8)
    assert registry.default_model_for(grey).name == "B"
    he = np.zeros((50, 60, 3), np.uint8) + np.array([200, 120, 190], np.uint8)
    assert registry.default_model_for(he).name == "A"  # no nuclei model: the first one
    choice = registry.choose_model(he)
    assert choice.entry.name == "A" and choice.fits
    assert choice.why == "no nuclei model installed: the first one"
    # a registry without trained_on (an older file) says so instead of inventing the data
    assert registry.choose_model(grey).why == (
        "chosen because this is a grey image; trained on ultrasound images (the registry "
        "does not say which) only, not meant for other grey images such as fluorescence"
    )
    described = dict(entries[0], description="TM-UNet t trained on Kvasir (CPU); test Dice 80")
    (tmp_path / "registry.json").write_text(json.dumps({"models": [described]}))
    assert registry.registry_entries()[0].trained_on == (
        "what its description says (TM-UNet t trained on Kvasir (CPU))"
    )
    (tmp_path / "registry.json").write_text(json.dumps({"models": entries}))
    first = registry.load_model("A", "cpu")
    assert registry.load_model("A", "cpu") is first
    assert registry.load_model(str(tmp_path / "a.pt"), "cpu") is first  # same file
    assert first.metadata["provisional"] is True
    os.utime(tmp_path / "a.pt", ns=(1, 1))  # a replaced file is loaded again
    assert registry.load_model("A", "cpu") is not first
    with pytest.raises(ValueError, match="neither a shipped model"):
        registry.load_model("C")
    registry.clear_cache()


def test_the_users_model_choice_is_remembered_per_modality(tmp_path, monkeypatch):
    from napari_tmunet._sample_data import load_sample

    monkeypatch.setenv(registry.SETTINGS_DIR_ENV, str(tmp_path))
    image, _ = load_sample("ultrasound")
    assert registry.default_model_for(image).modality == "ultrasound"  # shipped default
    registry.remember_model("ultrasound", "TM-UNet ultrasound")  # the user's choice
    choice = registry.choose_model(image)  # said as the user's choice, not as a shipped match
    assert (choice.why, choice.fits) == ("your earlier choice for ultrasound images", True)
    assert registry.remembered_models() == {"ultrasound": "TM-UNet ultrasound"}
    scan16 = image.astype(np.uint16) * 257  # the choice holds, but the image is still judged
    choice = registry.choose_model(scan16)
    assert choice.entry.name == "TM-UNet ultrasound" and not choice.fits
    assert choice.why.startswith("your earlier choice for ultrasound images, but trained on")
    assert "this image holds 16-bit data" in choice.why
    # one of another modality (an older version kept any pick): not used, dropped, said once
    registry.remember_model("ultrasound", "TM-UNet nuclei")
    choice = registry.choose_model(image)
    assert choice.entry.name == "TM-UNet ultrasound"
    assert choice.why.endswith(
        "(your earlier pick TM-UNet nuclei is no longer used for ultrasound images, as it was "
        "trained on nuclei images)"
    )
    assert registry.remembered_models() == {}
    assert "earlier" not in registry.choose_model(image).why
    registry.remember_model("ultrasound", "no such model")  # gone: fall back to the default
    assert registry.default_model_for(image).modality == "ultrasound"
    (tmp_path / "settings.json").write_text("{broken")
    assert registry.remembered_models() == {}


def test_8_bit_converted_by_skimage_gives_identical_labels():
    """The ultrasound sample as uint8, img_as_uint and img_as_float: the same labels."""
    from skimage import img_as_float, img_as_uint

    from napari_tmunet._sample_data import load_sample

    image, _ = load_sample("ultrasound")
    # a per-pixel model: any difference in the mapped input shows in the output
    checkpoint = make_checkpoint(PixelModel(1), size=(64, 64), in_channels=1)
    results = [
        run_to_completion(segment(variant, checkpoint, threshold=0.4, mode="tile", rgb=False))
        for variant in (image, img_as_uint(image), img_as_float(image))
    ]
    assert 0.05 < results[0].labels.mean() < 0.95
    for result in results[1:]:
        np.testing.assert_array_equal(result.probability, results[0].probability)
        np.testing.assert_array_equal(result.labels, results[0].labels)
    assert [r.mapping.split(";")[0] for r in results] == [
        "uint8 / 255",
        "uint16 / 65535",
        "float64 in [0, 1] as is",
    ]


def test_unsure_objects_are_dropped_by_the_checkpoints_own_confidence(tmp_path):
    """The ultrasound sample's lesion has a mean probability of about 0.98: a checkpoint
    whose least confidence is 0.99 hides it, unless the caller asks for less."""
    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.checkpoint import load_checkpoint, save_checkpoint

    shipped = registry.load_model("TM-UNet ultrasound", "cpu")
    image, _ = load_sample("ultrasound")
    plain = run_to_completion(segment(image, shipped, min_confidence=0.0))
    assert plain.labels.any() and plain.min_confidence == 0.0
    kept = run_to_completion(segment(image, shipped, min_confidence=0.9))
    np.testing.assert_array_equal(kept.labels, plain.labels)

    inputs = InputConfig.from_dict({**shipped.input_config.to_dict(), "min_confidence": 0.99})
    path = save_checkpoint(
        tmp_path / "strict.pt", shipped.model, shipped.model_config, inputs, shipped.metadata
    )
    strict = load_checkpoint(path)
    assert strict.input_config.min_confidence == 0.99  # saved with the weights
    hidden = run_to_completion(segment(image, strict))
    assert not hidden.labels.any() and hidden.min_confidence == 0.99
    asked = run_to_completion(segment(image, strict, min_confidence=0.5))
    np.testing.assert_array_equal(asked.labels, plain.labels)


def test_a_crop_of_a_full_range_frame_is_mapped_by_the_frames_rule():
    """A dark window of a uint32 frame that uses its range is divided by the type's
    maximum like the rest of the frame (12-bit data in a wide type is mapped by its own
    range, but that is the whole frame's decision, not a window's)."""
    from napari_tmunet.inference import FrameInput

    frame = np.zeros((64, 64), np.uint32)
    frame[:, 32:] = np.iinfo(np.uint32).max  # bright right half: full range
    frame[:32, :32] = 1000  # a dark window, far below 1/4 of the maximum
    inputs = InputConfig.for_channels(1, size=(32, 32), mean=(0.0,), std=(1.0,))
    window = FrameInput(frame, 1, inputs).crop(0, 0, 32, 32)  # (1, 32, 32)
    np.testing.assert_allclose(window, 1000 / np.iinfo(np.uint32).max, rtol=1e-5)


def test_a_grey_alpha_picture_read_by_napari_is_explained(tmp_path):
    """napari's own reader opens a grey + alpha PNG as (H, W, 2), not marked as colour, so
    Segment would see H frames of W x 2 pixels: the error names the grey + alpha image and
    napari-tmunet-predict, which reads such files as grey."""
    from napari_builtins.io import imread
    from PIL import Image

    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.data.images import read_image

    grey = load_sample("ultrasound")[0]  # (H, W) uint8
    path = tmp_path / "export.png"
    Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), "LA").save(path)
    layer_data = imread(str(path))
    assert layer_data.shape == (*grey.shape, 2)
    checkpoint = make_checkpoint(PixelModel(), size=(32, 32))
    with pytest.raises(
        ValueError, match=r"grey image with an alpha channel.*napari-tmunet-predict"
    ):
        run_to_completion(segment(layer_data, checkpoint, rgb=False))
    assert read_image(path).shape == grey.shape  # what predict reads


def test_a_cancelled_run_stops_its_forward_pass_and_no_other_threads():
    """cancel.stop_when: a set event stops this thread's forward pass at its next module;
    the same model on another thread, or outside the block, runs on."""
    import threading

    from napari_tmunet.cancel import Cancelled, stop_when, stoppable

    model = stoppable(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()))
    x = torch.zeros(1, 1, 8, 8)
    event = threading.Event()
    with stop_when(event):
        assert model(x).shape == (1, 2, 6, 6)  # not cancelled yet
        event.set()
        outputs = []
        other = threading.Thread(target=lambda: outputs.append(model(x)))
        other.start()
        other.join()
        assert len(outputs) == 1  # another thread's pass is not this run's
        with pytest.raises(Cancelled):
            model(x)
    assert model(x).shape == (1, 2, 6, 6)  # the block is over
    assert len(model[0]._forward_pre_hooks) == 1 and stoppable(model) is model  # hooked once
