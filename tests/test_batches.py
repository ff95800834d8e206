"""The training engine's parts without a fit, on real images (CPU): the loss, the
schedule of samples and random draws, and the batches made and augmented on the device.
"""

import math

import numpy as np
import pytest
import torch
from _paths import DATASETS, REPO
from torch import nn

from napari_tmunet.config import InputConfig
from napari_tmunet.inference import FrameInput
from napari_tmunet.training import TrainConfig
from napari_tmunet.training.batches import Augment, TrainingImages
from napari_tmunet.training.loss import (
    edge_weights,
    presence_head_loss,
    presence_loss,
    segmentation_loss,
)
from napari_tmunet.training.schedule import Schedule

needs_data = pytest.mark.skipif(
    not (DATASETS / "CVC-ClinicDB").is_dir(), reason=f"no datasets at {DATASETS}"
)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------ loss


def test_loss_hand_cases():
    t = torch.zeros(1, 1, 4, 4)
    t[..., :2, :] = 1  # half foreground
    # logits 0: BCE = ln 2; p = 0.5 everywhere -> Dice = 2 * 4 / (8 + 8) = 0.5
    loss = segmentation_loss(torch.zeros(1, 1, 4, 4), t)
    assert loss.item() == pytest.approx(2 * math.log(2) + 0.5, abs=1e-5)
    # confident and right: ~0; confident and wrong: 2 * 20 + 1
    right = 20 * (2 * t - 1)
    assert segmentation_loss(right, t).item() == pytest.approx(0.0, abs=1e-6)
    assert segmentation_loss(-right, t).item() == pytest.approx(41.0, abs=1e-4)
    # empty mask predicted empty: no loss (Dice of two empty sets is 1)
    empty = torch.zeros(1, 1, 4, 4)
    assert segmentation_loss(torch.full((1, 1, 4, 4), -30.0), empty).item() < 1e-5
    # weights: 1 x CE only, 1 x Dice only
    assert segmentation_loss(torch.zeros(1, 1, 4, 4), t, 1, 0).item() == pytest.approx(math.log(2))
    assert segmentation_loss(torch.zeros(1, 1, 4, 4), t, 0, 1).item() == pytest.approx(0.5, 1e-5)
    # the batch loss is the mean of per-sample losses (what exact DDP sharding needs)
    logits = torch.cat([torch.zeros(1, 1, 4, 4), -right])
    target = torch.cat([t, t])
    per = segmentation_loss(logits, target, reduction="none")
    assert per.shape == (2,)
    assert per[0].item() == pytest.approx(2 * math.log(2) + 0.5, abs=1e-5)
    assert segmentation_loss(logits, target).item() == pytest.approx(per.mean().item())
    # (B, H, W) targets are accepted for one class
    assert segmentation_loss(right, t[:, 0]).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_multiclass_and_against_monai():
    monai_losses = pytest.importorskip("monai.losses")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 1, 8, 8, generator=g)
    t = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    # 2-class softmax CE with logits [0, z] equals the BCE of z
    two = torch.cat([torch.zeros_like(z), z], dim=1)
    assert segmentation_loss(two, t.long(), 1, 0).item() == pytest.approx(
        segmentation_loss(z, t, 1, 0).item(), rel=1e-5
    )
    # soft Dice against MONAI's DiceLoss (independent implementation)
    ref = monai_losses.DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)(z, t)
    assert segmentation_loss(z, t, 0, 1).item() == pytest.approx(ref.item(), rel=1e-5)
    logits3 = torch.randn(3, 3, 8, 8, generator=g)
    labels = torch.randint(0, 3, (3, 1, 8, 8), generator=g)
    ref3 = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5)(
        logits3, labels
    )
    assert segmentation_loss(logits3, labels, 0, 1).item() == pytest.approx(ref3.item(), rel=1e-5)
    ce = nn.functional.cross_entropy(logits3, labels[:, 0])
    assert segmentation_loss(logits3, labels, 1, 0).item() == pytest.approx(ce.item(), rel=1e-5)


# ------------------------------------------------------------------- schedule, data


def test_schedule_epochs_steps_and_sharding():
    s = Schedule(n_train=11, batch_size=4, world_size=1, epochs=3, seed=5)
    assert s.steps_per_epoch == 3 and s.period_ends == [3, 6, 9]
    epoch1 = sum((s.indices(k) for k in range(3, 6)), [])
    assert sorted(epoch1) == list(range(11))  # every image once per epoch
    assert s.indices(0) != s.indices(3)  # reshuffled each epoch
    assert s.indices(4) == Schedule(11, 4, 1, 3, seed=5).indices(4)  # a function of the step
    # a last partial batch smaller than the number of ranks is dropped (cannot be sharded)
    assert Schedule(9, 4, world_size=2, epochs=1).steps_per_epoch == 2
    # step mode: an endless stream of shuffled passes; the LR decays `epochs` times
    st = Schedule(n_train=5, batch_size=4, world_size=1, epochs=4, steps=10, seed=1)
    assert st.period_ends[-1] == 10 and len(st.period_ends) == 4
    stream = sum((st.indices(k) for k in range(5)), [])  # 20 draws = 4 passes
    for p in range(4):
        assert sorted(stream[5 * p : 5 * p + 5]) == list(range(5))
    # DDP shards of a global batch partition it (as DistributedSampler)
    batch = st.indices(3)
    shards = [batch[r::2] for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(batch) and len(shards[0]) == 2


def test_schedule_repeats_draw_images_more_often():
    from collections import Counter

    repeats = [1, 3, 1, 1, 2]
    s = Schedule(n_train=5, batch_size=4, world_size=1, epochs=2, seed=5, repeats=repeats)
    assert s.n_pass == 8 and s.steps_per_epoch == 2
    for epoch in range(2):  # each pass draws image i repeats[i] times
        drawn = sum((s.indices(k) for k in range(2 * epoch, 2 * epoch + 2)), [])
        assert Counter(drawn) == dict(enumerate(repeats))
    st = Schedule(n_train=5, batch_size=4, world_size=1, epochs=2, steps=6, repeats=repeats)
    stream = sum((st.indices(k) for k in range(6)), [])  # 24 draws = 3 passes of 8
    assert all(Counter(stream[8 * p : 8 * p + 8]) == dict(enumerate(repeats)) for p in range(3))
    # all ones is no repeat: the batches of earlier runs are unchanged
    plain = Schedule(n_train=5, batch_size=4, world_size=1, epochs=2, seed=5)
    ones = Schedule(n_train=5, batch_size=4, world_size=1, epochs=2, seed=5, repeats=[1] * 5)
    assert [plain.indices(k) for k in range(3)] == [ones.indices(k) for k in range(3)]
    with pytest.raises(ValueError, match="5 counts >= 1"):
        Schedule(n_train=5, batch_size=4, world_size=1, epochs=1, repeats=[2, 0, 1, 1, 1])


@needs_data
def test_device_batches_resize_and_tile(clinic_cache):
    from napari_tmunet.data.cache import load_cache

    cache = load_cache(clinic_cache)
    items = cache[:3]
    inp = InputConfig(size=(64, 64))
    data = TrainingImages(items, 3, inp, "resize", torch.device("cpu"))
    none = np.full((3, 5), 0.99)  # no flip, no rotation
    x, y = data.batch([0, 1, 2], none, Augment(hflip=0.5))
    assert x.shape == (3, 3, 64, 64) and y.shape == (3, 1, 64, 64)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0} and y.sum() > 0
    # normalised with ImageNet statistics: roughly zero-centred, not in [0, 1]
    assert x.min() < -0.5 and x.max() > 1.0
    flip = none.copy()
    flip[:, 0] = 0.0
    xf, yf = data.batch([0, 1, 2], flip, Augment(hflip=0.5))
    assert torch.equal(xf, x.flip(-1)) and torch.equal(yf, y.flip(-1))
    # quarter turns of a square batch: 0.3 -> one turn
    turn = none.copy()
    turn[:, 2] = 0.3
    xr, _ = data.batch([0, 1, 2], turn, Augment(rot90=True))
    assert torch.equal(xr, torch.rot90(x, 1, (-2, -1)))
    # the model input is the plugin's: FrameInput.resized, stored as float16
    expected = FrameInput(items[1].image, 3, inp).resized()[0]
    assert torch.allclose(x[1], expected, atol=4e-3)
    # tile mode: a native-resolution window at the drawn position
    data = TrainingImages(items, 3, inp, "tile", torch.device("cpu"))
    draws = np.array([[0.99, 0.99, 0.99, 0.0, 1.0 - 1e-7]])
    xc, yc = data.batch([0], draws, Augment())
    H, W = items[0].mask.shape
    mean = torch.tensor(inp.mean).view(3, 1, 1)
    std = torch.tensor(inp.std).view(3, 1, 1)
    expected = (torch.from_numpy(items[0].image[:64, W - 64 :]).permute(2, 0, 1) / 255 - mean) / std
    assert torch.allclose(xc[0], expected, atol=4e-3)  # float16 storage
    assert torch.equal(yc[0, 0].bool(), torch.from_numpy(items[0].mask[:64, W - 64 :]))


def _sample_batch(zoom=0.0, rotate=0.0, colour=0.0, tone=0.0, blur=0.0):
    """TrainingImages of the bundled colonoscopy frame and its mask, 128 x 128."""
    from types import SimpleNamespace

    from skimage.io import imread

    samples = REPO / "napari_tmunet" / "samples"
    item = SimpleNamespace(
        image=imread(samples / "colonoscopy_image.png")[..., :3],
        mask=imread(samples / "colonoscopy_mask.png") > 0,
    )
    inp = InputConfig(size=(128, 128))
    data = TrainingImages([item], 3, inp, "resize", torch.device("cpu"))
    return data, Augment(zoom=zoom, rotate=rotate, colour=colour, tone=tone, blur=blur), inp


def _draws(**columns) -> np.ndarray:
    """(1, 16) uniforms: no flip or turn, neutral zoom, angle, shift, colour and tone, no blur."""
    draws = np.full((1, 16), 0.5)
    draws[0, :3] = 0.99
    draws[0, 15] = 0.0
    names = ["zoom", "angle", "shift_x", "shift_y", "contrast", "brightness", "g0", "g1", "g2"]
    names += ["tone", "blur"]
    for name, value in columns.items():
        draws[0, 5 + names.index(name)] = value
    return draws


def test_zoom_rotation_and_colour_augmentation():
    """Each draw does what Augment says, on the bundled frame: neutral draws change
    nothing, a 90-degree draw is a quarter turn, the largest zoom is the centre at 2x,
    and colour jitter scales and shifts intensities within an image's range."""
    data, plain, inp = _sample_batch()
    x, y = data.batch([0], _draws(), plain)
    # neutral draws: the same batch as without these augmentations
    data2, augment, _ = _sample_batch(zoom=0.5, rotate=30, colour=0.3, tone=0.5, blur=2.0)
    xn, yn = data2.batch([0], _draws(), augment)
    assert torch.allclose(xn, x, atol=1e-5) and torch.equal(yn, y)
    # angle draw 1 with rotate=90: a quarter turn, image and mask alike
    _, quarter, _ = _sample_batch(rotate=90)
    xr, yr = data.batch([0], _draws(angle=1.0), quarter)
    assert torch.allclose(xr, torch.rot90(x, 1, (-2, -1)), atol=1e-4)
    assert torch.equal(yr, torch.rot90(y, 1, (-2, -1)))
    # zoom draw 1 with zoom=1: the centre half, twice as large (shift 0.5 = centred)
    _, twice, _ = _sample_batch(zoom=1.0)
    xz, yz = data.batch([0], _draws(zoom=1.0), twice)
    centre = torch.nn.functional.interpolate(x[..., 32:96, 32:96], scale_factor=2, mode="bilinear")
    assert torch.allclose(xz[..., 2:-2, 2:-2], centre[..., 2:-2, 2:-2], atol=1e-4)
    assert 0.9 < yz.sum() / (4 * y[..., 32:96, 32:96].sum()) < 1.1
    # a zoomed-out view: mean colour (0) and background around the shrunken frame
    xo, yo = data.batch([0], _draws(zoom=0.0), twice)
    assert torch.all(xo[..., :30, :] == 0) and torch.all(yo[..., :30, :] == 0)
    # colour: the largest contrast and brightness, clipped to a real image's range
    _, jitter, _ = _sample_batch(colour=0.4)
    xc, yc = data.batch([0], _draws(contrast=1.0, brightness=1.0), jitter)
    mean = torch.tensor(inp.mean).view(1, 3, 1, 1)
    std = torch.tensor(inp.std).view(1, 3, 1, 1)
    expected = (x * 1.4 + 0.2 / std).clamp(-mean / std, (1 - mean) / std)
    assert torch.allclose(xc, expected, atol=1e-5) and torch.equal(yc, y)
    lo, hi = (-mean / std), ((1 - mean) / std)
    assert torch.all(xc >= lo - 1e-6) and torch.all(xc <= hi + 1e-6)
    assert (xc == hi).float().mean() > (x == hi).float().mean()  # brighter: more clipped


def test_tone_and_blur_augmentation():
    """The largest tone draw raises [0, 1] intensities to the power 1 + tone (darker mid
    tones, black and white kept); a blur draw is a Gaussian of sigma u * blur pixels
    (scipy's, borders reflected), the mask untouched; each stays within a real image's
    range."""
    from scipy.ndimage import gaussian_filter

    data, plain, inp = _sample_batch()
    x, y = data.batch([0], _draws(), plain)
    mean = torch.tensor(inp.mean).view(1, 3, 1, 1)
    std = torch.tensor(inp.std).view(1, 3, 1, 1)
    unit = (x * std + mean).clamp(0, 1)
    _, toned, _ = _sample_batch(tone=0.5)
    xt, yt = data.batch([0], _draws(tone=1.0), toned)
    assert torch.allclose(xt, (unit**1.5 - mean) / std, atol=1e-5) and torch.equal(yt, y)
    assert xt.mean() < x.mean()  # a gamma above 1 darkens
    xl, _ = data.batch([0], _draws(tone=0.0), toned)
    assert torch.allclose(xl, (unit ** (1 / 1.5) - mean) / std, atol=1e-5)

    _, blurred, _ = _sample_batch(blur=2.0)
    xb, yb = data.batch([0], _draws(blur=0.75), blurred)  # sigma 1.5 px
    expected = gaussian_filter(x[0].numpy(), sigma=(0, 1.5, 1.5), mode="mirror", truncate=4)
    inner = (slice(None), slice(8, -8), slice(8, -8))  # scipy's kernel is longer than 3 sigma
    np.testing.assert_allclose(xb[0].numpy()[inner], expected[inner], atol=1e-4)
    assert torch.equal(yb, y) and xb.std() < x.std()
    assert xb.min() >= x.min() - 1e-5 and xb.max() <= x.max() + 1e-5
    with pytest.raises(ValueError, match="--tone 2: expected from 0 to 1"):
        TrainConfig(tone=2)


def test_augmentation_draws_keep_old_columns():
    """Runs made before zoom/rotation/colour existed keep their flips, turns and crops."""
    schedule = Schedule(n_train=40, batch_size=8, world_size=1, epochs=2, seed=3)
    draws = schedule.draws(5, 8)
    assert draws.shape == (8, 16)
    old = np.random.default_rng([3, 2, 5]).random((8, 5))
    assert np.array_equal(draws[:, :5], old)
    colour = np.random.default_rng([3, 3, 5]).random((8, 9))  # runs before tone and blur
    assert np.array_equal(draws[:, 5:14], colour)
    assert not np.allclose(draws[:, 5:10], draws[:, :5])
    with pytest.raises(ValueError, match="--zoom 2: expected from 0 to 1"):
        TrainConfig(zoom=2)


def _batch_dice_case():
    """Logits and masks of 4 images, two of them with an empty mask."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 1, 16, 16, generator=g)
    target = torch.zeros(4, 1, 16, 16)
    target[0, 0, 2:9, 3:12] = 1
    target[2, 0, 8:15, 1:6] = 1
    return logits, target


def test_batch_dice_sees_false_regions_on_empty_masks():
    logits, target = _batch_dice_case()
    logits.requires_grad_()
    per_image = segmentation_loss(logits, target, 0, 1, reduction="none")
    batch = segmentation_loss(logits, target, 0, 1, reduction="none", dice_over="batch")
    p = torch.sigmoid(logits)
    expected = 1 - (2 * (p * target).sum() + 1e-5) / (p.sum() + target.sum() + 1e-5)
    assert torch.allclose(batch, expected.expand(4))
    # a batch of one is the paper's per-image Dice
    one = segmentation_loss(logits[:1], target[:1], dice_over="batch")
    assert one.item() == pytest.approx(segmentation_loss(logits[:1], target[:1]).item())
    # the empty-mask image's logits: no Dice gradient per image, a real one over the batch
    empty = target.flatten(1).sum(1) == 0
    g_image = torch.autograd.grad(per_image.mean(), logits)[0][empty].abs().sum().item()
    g_batch = torch.autograd.grad(batch.mean(), logits)[0][empty].abs().sum().item()
    assert g_image < 1e-6 and g_batch > 1e-2, (g_image, g_batch)
    # softmax classes: Dice of each class over the batch, averaged over classes
    two = torch.cat([-logits, logits], 1).detach()
    labels = target[:, 0].long()
    q = torch.softmax(two, 1)
    onehot = torch.stack([1 - target[:, 0], target[:, 0]], 1)
    inter, size = (q * onehot).sum((0, 2, 3)), q.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    ref = (1 - (2 * inter + 1e-5) / (size + 1e-5)).mean()
    got = segmentation_loss(two, labels, 0, 1, dice_over="batch")
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError, match="dice_over='pixel'"):
        segmentation_loss(logits, target, dice_over="pixel")


def test_presence_term_charges_a_confident_false_region_as_a_wrong_image():
    """On a 64 x 64 image the presence logit is the mean of its 4 most confident pixels:
    a 16-pixel confident region costs the pixel-mean CE its area, the presence term a
    whole wrong image if the mask is empty, and nearly nothing if it is the lesion."""
    logits = torch.full((2, 1, 64, 64), -8.0)
    logits[:, 0, 10:14, 20:24] = 4.0  # the same confident region on both images
    target = torch.zeros(2, 1, 64, 64)
    target[1, 0, 10:14, 20:24] = 1  # image 1: it is the lesion; image 0: lesion-free
    logits.requires_grad_()
    ce_only = segmentation_loss(logits, target, 1, 0, reduction="none")
    term = presence_loss(logits, target)
    expected_ce = (16 * math.log1p(math.exp(4)) + 4080 * math.log1p(math.exp(-8))) / 4096
    assert ce_only[0].item() == pytest.approx(expected_ce, rel=1e-4)  # ~0.016
    assert term[0].item() == pytest.approx(math.log1p(math.exp(4)), rel=1e-4)  # ~4.02
    assert term[1].item() == pytest.approx(math.log1p(math.exp(-4)), rel=1e-4)  # ~0.018
    both = segmentation_loss(logits, target, 1, 0, reduction="none", presence_weight=0.5)
    assert torch.allclose(both, ce_only + 0.5 * term)
    # the gradient reaches the 4 pixels the presence logit averages, no other
    grad = torch.autograd.grad(term[0], logits)[0][0, 0]
    assert int((grad != 0).sum()) == 4 and grad.max() > 0
    with pytest.raises(ValueError, match="presence_weight needs one output class"):
        segmentation_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8), presence_weight=1)
    with pytest.raises(
        ValueError, match="--presence-weight 1 with --num-classes 2: .*num_classes 1"
    ):
        TrainConfig(presence_weight=1.0, num_classes=2)


def test_edge_weights_raise_the_cost_of_a_polyp_outline():
    """--edge-weight K on the colonoscopy sample's polyp: weights are 1 inside the polyp
    and far out in the background, about 1 + K/2 on its outline (up to 1 + K at
    corners); a prediction that misses
    a 3-pixel ring along the outline costs more with K = 5 than without, while a miss of
    the same area in the polyp's middle costs about the same."""
    from skimage import io, morphology

    mask = io.imread(REPO / "napari_tmunet" / "samples" / "colonoscopy_mask.png") > 127
    t = torch.from_numpy(mask).float()[None, None]  # (1, 1, H, W)
    w = edge_weights(t, 5.0)[0, 0].numpy()
    assert w.min() == 1.0 and 3.0 < w.max() <= 6.0
    inner = morphology.isotropic_erosion(mask, 22)  # the 31-square's corner is 21.2 away
    far = ~morphology.isotropic_dilation(mask, 22)
    ring = mask & ~morphology.isotropic_erosion(mask, 3)
    assert np.all(w[inner] == 1) and np.all(w[far] == 1) and w[ring].mean() > 2.5
    # a middle miss of the ring's area: the pixels nearest the polyp's centre of mass
    ys, xs = np.nonzero(inner)
    order = np.argsort((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)[: int(ring.sum())]
    middle = np.zeros_like(mask)
    middle[ys[order], xs[order]] = True
    for missed, grows in ((ring, True), (middle, False)):
        logits = torch.from_numpy(np.where(mask & ~missed, 6.0, -6.0)).float()[None, None]
        plain = segmentation_loss(logits, t).item()
        weighted = segmentation_loss(logits, t, edge_weight=5.0).item()
        assert (weighted > 1.5 * plain) if grows else (weighted < 1.1 * plain), (plain, weighted)
    assert segmentation_loss(logits, t, edge_weight=0.0).item() == pytest.approx(plain)
    with pytest.raises(ValueError, match="edge_weight needs one output class"):
        segmentation_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8), edge_weight=1)


def test_presence_head_loss_trains_the_mask_on_lesion_images_only():
    """With a presence head, a lesion-free image's loss is the head's BCE alone: its pixel
    logits get no gradient; a lesion image pays the mask loss plus the BCE."""
    z = torch.full((2, 1, 32, 32), -3.0)
    z[:, 0, 8:16, 8:16] = 3.0
    z.requires_grad_()
    q = torch.tensor([[2.0], [2.0]], requires_grad=True)
    target = torch.zeros(2, 1, 32, 32)
    target[1, 0, 8:16, 8:16] = 1  # image 0 lesion-free, image 1 with a lesion
    loss = presence_head_loss(z, q, target, presence_weight=0.5)
    mask_loss = segmentation_loss(z, target, reduction="none")
    assert loss[0].item() == pytest.approx(0.5 * math.log1p(math.exp(2)), rel=1e-5)
    assert loss[1].item() == pytest.approx(
        mask_loss[1].item() + 0.5 * math.log1p(math.exp(-2)), rel=1e-5
    )
    gz, gq = torch.autograd.grad(loss.sum(), (z, q))
    assert not gz[0].any() and gz[1].abs().sum() > 0  # no mask gradient on image 0
    assert gq[0, 0] > 0 and gq[1, 0] < 0  # q pushed down where lesion-free, up where not
    with pytest.raises(ValueError, match="presence head"):
        TrainConfig(model={"presence_head": True}, dice_over="batch")


def _rank_batch_dice(rank: int, world: int, port: int, out: str) -> None:
    """One gloo rank: its half of the batch, loss scaled as TrainStep scales it."""
    import torch.distributed as dist

    from napari_tmunet.training.distributed import global_sum

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    logits, target = _batch_dice_case()
    mine = slice(rank, None, world)
    x = logits[mine].clone().requires_grad_()
    per = segmentation_loss(x, target[mine], reduction="none", dice_over="batch",
                            sum_ranks=global_sum)  # fmt: skip
    (per.sum() * world / len(logits)).backward()
    torch.save({"loss": per.detach(), "grad": x.grad}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_batch_dice_over_ddp_ranks_is_the_global_batch_dice(tmp_path):
    """Two gloo ranks holding half a batch each: the loss is the whole batch's, and each
    rank's gradient, averaged as DDP averages, is the one-process gradient."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_batch_dice, args=(2, port, str(tmp_path)), nprocs=2)
    logits, target = _batch_dice_case()
    logits.requires_grad_()
    loss = segmentation_loss(logits, target, dice_over="batch")
    loss.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        mine = slice(rank, None, 2)
        per_one = segmentation_loss(logits.detach(), target, reduction="none", dice_over="batch")
        assert torch.allclose(got["loss"], per_one[mine], atol=1e-6)
        assert torch.allclose(got["grad"] / 2, logits.grad[mine], atol=1e-7, rtol=1e-5)


def test_errors_are_told_plainly_when_they_are_about_the_input(caplog):
    """errors.describe_error: a ValueError or this package's error: its message alone;
    anything else: "Type: message", its traceback logged."""
    from napari_tmunet.data.datasets import DatasetError
    from napari_tmunet.errors import describe_error
    from napari_tmunet.training.run_folder import RunDirError

    assert describe_error(DatasetError("every mask is empty")) == "every mask is empty"
    assert describe_error(RunDirError("run folder /x is busy")) == "run folder /x is busy"
    assert describe_error(ValueError("image of shape (3,)")) == "image of shape (3,)"
    assert describe_error(ValueError()) == "ValueError"
    try:
        raise KeyError("tile")
    except KeyError as err:
        with caplog.at_level("WARNING", logger="napari_tmunet"):
            assert describe_error(err) == "KeyError: 'tile'"
    assert caplog.records and caplog.records[-1].exc_info
