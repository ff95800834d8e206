"""Pairing, checks, content groups, splits, the native cache and preprocessing."""

import io
import json
import os

import numpy as np
import pytest
import tifffile
from _paths import DATASETS, REPO
from PIL import Image

from napari_tmunet.data.cache import build_cache, load_cache
from napari_tmunet.data.datasets import (
    DatasetError,
    Pair,
    check_pair,
    content_groups,
    find_pairs,
    load_split,
    make_split,
    natural_key,
    resolve_split,
    save_split,
    scan_pairs,
    split_from_lists,
)
from napari_tmunet.data.images import ImageReadError, read_image, read_mask
from napari_tmunet.data.preprocess import (
    describe_mapping,
    normalize,
    to_channels,
    to_model_input,
    to_unit_float,
)

needs_data = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"no datasets at {DATASETS}")
SAMPLES = REPO / "napari_tmunet" / "samples"
RNG = np.random.default_rng(1)


def _dataset(root, n=6, size=(12, 16)):
    """n RGB PNG images with 8-bit TIFF masks (0/255 plus stray low values)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        mask = np.where(RNG.random(size) > 0.5, 255, 0).astype(np.uint8)
        mask[0, 0] = 60  # stray value -> background under ">127"
        tifffile.imwrite(root / "masks" / f"{i}.tif", mask)
    return root


@pytest.fixture(scope="module")
def udiat_pairs():
    return find_pairs(DATASETS / "UDIAT")


@pytest.fixture(scope="module")
def udiat_groups(udiat_pairs):
    return content_groups(udiat_pairs)


@needs_data
@pytest.mark.parametrize(
    ("name", "count"), [("CVC-ClinicDB", 550), ("MoNuSeg", 44), ("UDIAT", 163)]
)
def test_find_pairs_real(name, count):
    pairs = find_pairs(DATASETS / name)
    assert len(pairs) == count
    assert all(p.image_path.stem == p.mask_path.stem == p.name for p in pairs)
    assert [p.name for p in pairs] == sorted((p.name for p in pairs), key=natural_key)
    if name == "CVC-ClinicDB":  # png images with tif masks: extensions differ
        assert pairs[0].image_path.suffix == ".png" and pairs[0].mask_path.suffix == ".tif"
        assert pairs[1].name == "2"  # natural order, not "10" after "1"


def test_find_pairs_tmp_and_check_pair(tmp_path):
    root = _dataset(tmp_path / "d", n=3)
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["0", "1", "2"]
    image, mask, rule = check_pair(pairs[0])
    assert image.shape == (12, 16, 3) and mask.shape == (12, 16) and mask.dtype == bool
    assert rule == ">127" and not mask[0, 0]


def test_mixed_extensions_pair(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(np.ones((4, 5), bool)).save(tmp_path / "masks" / "a.bmp")
    (tmp_path / "images" / "notes.txt").write_text("ignored")
    (tmp_path / "masks" / ".DS_Store").write_bytes(b"\0")
    (pair,) = find_pairs(tmp_path)
    assert pair == Pair("a", tmp_path / "images" / "a.jpg", tmp_path / "masks" / "a.bmp")
    assert check_pair(pair)[1].all()


def test_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        find_pairs(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="no masks/ folder"):
        find_pairs(tmp_path)


def test_bad_items_raise_or_are_skipped(tmp_path):
    root = _dataset(tmp_path / "d", n=5)
    (root / "masks" / "1.tif").unlink()  # image without mask
    (root / "images" / "2.png").write_bytes(b"garbage, not a png")  # corrupt image
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(root / "masks" / "3.png")  # 3.tif + 3.png
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "images" / "4.png")  # size mismatch
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "orphan.png")

    with pytest.raises(DatasetError) as error:
        find_pairs(root)
    message = str(error.value)
    assert str(root / "images" / "1.png") in message and "no mask" in message
    assert str(root / "images" / "2.png") in message and "not a readable PNG" in message
    assert "3.png, 3.tif" in message
    assert str(root / "images" / "4.png") in message and "5x5" in message and "12x16" in message
    assert "orphan.png" in message and "no image" in message
    assert "skip_bad" in message

    pairs = find_pairs(root, skip_bad=True)
    assert [p.name for p in pairs] == ["0"]
    report = scan_pairs(root)
    assert len(report.skipped) == 5
    assert "5 skipped" in report.summary()


def test_check_pair_size_mismatch(tmp_path):
    root = _dataset(tmp_path / "d", n=1)
    tifffile.imwrite(root / "masks" / "0.tif", np.zeros((3, 4), np.uint8))
    (pair,) = find_pairs(root, check_sizes=False)
    with pytest.raises(DatasetError, match="size mismatch") as error:
        check_pair(pair)
    assert "0.png" in str(error.value) and "0.tif" in str(error.value)
    assert "12x16" in str(error.value) and "3x4" in str(error.value)


def test_content_groups_across_formats(tmp_path):
    root = _dataset(tmp_path / "d", n=3)
    same = read_image(root / "images" / "0.png")
    tifffile.imwrite(root / "images" / "copy.tif", same, photometric="rgb", compression="lzw")
    tifffile.imwrite(root / "masks" / "copy.tif", np.zeros((12, 16), np.uint8))
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["0", "1", "2", "copy"]
    assert content_groups(pairs) == [0, 1, 2, 0]


@needs_data
def test_udiat_duplicates(udiat_pairs, udiat_groups):
    names = [p.name for p in udiat_pairs]
    group_of = dict(zip(names, udiat_groups, strict=True))
    assert group_of["000032"] == group_of["000040"]
    duplicates = {}
    for name, group in group_of.items():
        duplicates.setdefault(group, []).append(name)
    shared = sorted(v for v in duplicates.values() if len(v) > 1)
    # The README names 000032/000040; decoding finds three more identical pairs.
    assert shared == [
        ["000032", "000040"],
        ["000033", "000042"],
        ["000053", "000309"],
        ["000054", "000310"],
    ]


@needs_data
def test_udiat_split_keeps_duplicates_together(udiat_pairs, udiat_groups):
    for seed in range(8):
        split = make_split(udiat_pairs, seed, groups=udiat_groups)
        assert [len(split[p]) for p in ("train", "valid", "test")] == [114, 16, 33]
        part_of = {name: part for part, names in split.items() for name in names}
        assert len(part_of) == 163
        for a, b in [("000032", "000040"), ("000033", "000042"), ("000053", "000309")]:
            assert part_of[a] == part_of[b], (seed, a, b)


@pytest.mark.parametrize(
    ("n", "sizes"),
    [
        (550, [385, 55, 110]),
        (44, [31, 4, 9]),
        (163, [114, 16, 33]),
        (3, [1, 1, 1]),
        (10, [7, 1, 2]),
    ],
)
def test_split_sizes(n, sizes):
    names = [f"im{i}" for i in range(n)]
    split = make_split(names, seed=0, groups=list(range(n)))
    assert [len(split[p]) for p in ("train", "valid", "test")] == sizes
    assert sorted(sum(split.values(), []), key=natural_key) == names


def test_split_is_deterministic_and_order_independent():
    names = [str(i) for i in range(40)]
    groups = [i // 2 for i in range(40)]  # pairs of duplicates
    a = make_split(names, seed=3, groups=groups)
    b = make_split(names[::-1], seed=3, groups=groups[::-1])
    assert a == b
    assert make_split(names, seed=4, groups=groups) != a
    part_of = {name: part for part, part_names in a.items() for name in part_names}
    assert all(part_of[str(2 * g)] == part_of[str(2 * g + 1)] for g in range(20))
    assert [len(a[p]) for p in ("train", "valid", "test")] == [28, 4, 8]


def test_split_arguments():
    with pytest.raises(ValueError, match="ratios"):
        make_split(["a", "b", "c"], 0, ratios=(0.5, 0.1, 0.1), groups=[0, 1, 2])
    with pytest.raises(ValueError, match="groups="):
        make_split(["a", "b", "c"], 0)
    with pytest.raises(DatasetError, match="at least 3"):
        make_split(["a", "b"], 0, groups=[0, 1])


def test_split_from_pairs_decodes_groups(tmp_path):
    root = _dataset(tmp_path / "d", n=10)
    pairs = find_pairs(root)
    split = make_split(pairs, seed=0)
    assert split == make_split(pairs, seed=0, groups=list(range(10)))


def test_split_json_round_trip(tmp_path):
    names = [str(i) for i in range(20)]
    split = make_split(names, seed=1, groups=list(range(20)))
    path = save_split(tmp_path / "data_split.json", split)
    assert json.loads(path.read_text()) == split
    assert list(json.loads(path.read_text())) == ["train", "valid", "test"]
    loaded, notes = load_split(path, names, seed=1)
    assert loaded == split and notes == []


def test_load_split_carves_valid_and_accepts_suffixes(tmp_path):
    names = [str(i) for i in range(20)]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [f"{i}.png" for i in range(15)], "test": names[15:]}))
    split, notes = load_split(path, names, seed=5)
    assert len(split["valid"]) == 2 and len(split["train"]) == 13
    assert set(split["valid"]) | set(split["train"]) == set(names[:15])
    assert any("carved 2 validation" in note for note in notes)
    assert load_split(path, names, seed=5)[0] == split
    assert load_split(path, names, seed=6)[0] != split


def test_load_split_errors(tmp_path):
    names = ["a", "b", "c"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["a", "zz", "yy"], "test": ["b"]}))
    with pytest.raises(DatasetError, match="2 names are not in the dataset: yy, zz"):
        load_split(path, names)
    path.write_text(json.dumps({"train": ["a", "b"], "test": ["b"]}))
    with pytest.raises(DatasetError, match="twice: b"):
        load_split(path, names)
    path.write_text(json.dumps({"training": ["a"]}))
    with pytest.raises(DatasetError, match="unknown parts"):
        load_split(path, names)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_split(path, names)
    with pytest.raises(DatasetError, match="does not exist"):
        load_split(tmp_path / "missing.json", names)


@needs_data
def test_monuseg_official_lists():
    root = DATASETS / "MoNuSeg"
    pairs = find_pairs(root)
    raw = split_from_lists(root / "train.txt", root / "test.txt")
    assert (len(raw["train"]), len(raw["test"])) == (30, 14) and "valid" not in raw
    split, notes = resolve_split(raw, pairs, seed=0)
    assert [len(split[p]) for p in ("train", "valid", "test")] == [27, 3, 14]
    assert set(split["valid"]) < set(raw["train"])
    assert sorted(split["test"]) == sorted(raw["test"])
    assert any("carved 3" in note for note in notes)
    assert resolve_split(raw, pairs, seed=0)[0] == split


def test_split_from_lists_skips_blanks_and_comments(tmp_path):
    (tmp_path / "train.txt").write_text("# official\na\n\nb\n")
    (tmp_path / "test.txt").write_text("c\n")
    assert split_from_lists(tmp_path / "train.txt", tmp_path / "test.txt") == {
        "train": ["a", "b"],
        "test": ["c"],
    }


def test_cache_round_trip_exact(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    grey = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    grey16 = RNG.integers(0, 65536, (10, 7), dtype=np.uint16)
    rgba = RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(grey).save(root / "images" / "grey.png")
    tifffile.imwrite(root / "images" / "grey16.tif", grey16, compression="lzw")
    Image.fromarray(rgba).save(root / "images" / "rgba.png")
    Image.fromarray(rgb).save(root / "images" / "rgb.bmp")
    Image.fromarray(rgb).save(root / "images" / "twin.png")  # same content as rgb.bmp
    masks = {
        "grey": RNG.random((9, 11)) > 0.5,
        "grey16": RNG.random((10, 7)) > 0.5,
        "rgba": RNG.random((5, 6)) > 0.5,
        "rgb": RNG.random((8, 8)) > 0.5,
        "twin": RNG.random((8, 8)) > 0.5,
    }
    Image.fromarray(masks["grey"]).save(root / "masks" / "grey.png")  # 1-bit
    tifffile.imwrite(root / "masks" / "grey16.tif", masks["grey16"].astype(np.uint16) * 7)
    la = np.stack([masks["rgba"] * np.uint8(255), np.full((5, 6), 255, np.uint8)], -1)
    Image.fromarray(la, mode="LA").save(root / "masks" / "rgba.png")
    Image.fromarray(masks["rgb"].astype(np.uint8)).save(root / "masks" / "rgb.png")  # 0/1
    Image.fromarray(masks["twin"].astype(np.uint8) * 255).save(root / "masks" / "twin.png")

    seen = []
    built = build_cache(
        root, tmp_path / "out" / "cache.npz", progress=lambda i, n: seen.append((i, n))
    )
    assert seen[-1] == (5, 5)
    cache = load_cache(tmp_path / "out" / "cache.npz")
    assert len(cache) == len(built) == 5
    assert cache.names == ["grey", "grey16", "rgb", "rgba", "twin"]
    expected = {
        "grey": grey[..., None],
        "grey16": grey16[..., None],
        "rgba": rgba[..., :3],
        "rgb": rgb,
        "twin": rgb,
    }
    for name, image, mask in cache:
        assert image.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(image, expected[name])
        np.testing.assert_array_equal(mask, masks[name])
        assert mask.dtype == bool
    assert cache.groups == [0, 1, 2, 3, 2]
    assert cache.rules == [">0", ">0", ">0", ">127", ">127"]
    assert cache.rule_counts() == {">0": 3, ">127": 2}
    assert cache.source == str(root)
    assert [os.path.basename(p) for p in (tmp_path / "out").iterdir()] == ["cache.npz"]
    split = make_split(cache.names, seed=0, groups=cache.groups)
    part_of = {n: part for part, names in split.items() for n in names}
    assert part_of["rgb"] == part_of["twin"]


def test_cache_stores_compact_forms_and_reads_versions_1_and_2(tmp_path):
    from napari_tmunet.data.cache import CACHE_FORMAT, NativeCache

    images = [
        RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8),  # lossless WebP
        RNG.integers(0, 65536, (4, 3, 3), dtype=np.uint16),  # 16-bit RGB: raw array
        RNG.integers(0, 65536, (4, 3, 1), dtype=np.uint16),  # 16-bit grey: PNG
        RNG.integers(0, 256, (7, 2, 1), dtype=np.uint8),  # grey: WebP (decoded as RGB)
    ]
    masks = [RNG.random(image.shape[:2]) > 0.5 for image in images]
    cache = NativeCache(list("abcd"), images, masks, [">0"] * 4, [0, 1, 2, 3])
    cache.save(tmp_path / "v3.npz")
    with np.load(tmp_path / "v3.npz") as npz:
        stored = sorted(k for k in npz.files if not k.startswith(("meta", "mask")))
    assert stored == ["image_000001", "png_000002", "webp_000000", "webp_000003"]
    for image, loaded in zip(images, load_cache(tmp_path / "v3.npz").images, strict=True):
        assert loaded.dtype == image.dtype
        np.testing.assert_array_equal(loaded, image)
    # version 1 (raw arrays) and version 2 (PNG bytes, no channel list) still load
    meta = {"format": CACHE_FORMAT, "names": ["a"], "rules": [">0"], "groups": [0]}
    meta["mask_shapes"] = [[6, 5]]
    png = io.BytesIO()
    Image.fromarray(images[0]).save(png, format="PNG")
    for version, entry in ((1, {"image_000000": images[0]}), (2, {"png_000000": png})):
        entry = {
            k: np.frombuffer(v.getvalue(), np.uint8) if k.startswith("png") else v
            for k, v in entry.items()
        }
        np.savez(
            tmp_path / f"v{version}.npz",
            meta=np.array(json.dumps({**meta, "version": version})),
            mask_000000=np.packbits(masks[0].reshape(-1)),
            **entry,
        )
        old = load_cache(tmp_path / f"v{version}.npz")
        np.testing.assert_array_equal(old.images[0], images[0])
        np.testing.assert_array_equal(old.masks[0], masks[0])


def test_cache_keeps_jpeg_bytes_and_grey_as_one_channel(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 4, y * 5, np.full_like(x, 90)], -1).astype(np.uint8)  # colour
    Image.fromarray(smooth).save(root / "images" / "frame.jpg", quality=80)
    grey = RNG.integers(0, 256, (30, 20), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(root / "images" / "greyrgb.png")
    for name, shape in (("frame", (48, 64)), ("greyrgb", (30, 20))):
        Image.fromarray((RNG.random(shape) > 0.5).astype(np.uint8) * 255).save(
            root / "masks" / f"{name}.png"
        )
    built = build_cache(root, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as npz:
        assert npz["jpg_000000"].tobytes() == (root / "images" / "frame.jpg").read_bytes()
        assert "webp_000001" in npz.files
    cache = load_cache(tmp_path / "c.npz")
    assert cache.images[0].shape == (48, 64, 3)
    np.testing.assert_array_equal(cache.images[0], read_image(root / "images" / "frame.jpg"))
    assert cache.images[1].shape == (30, 20, 1)  # grey stored as RGB -> one channel
    np.testing.assert_array_equal(cache.images[1][..., 0], grey)
    for ours, theirs in zip(cache, built, strict=True):
        np.testing.assert_array_equal(ours.image, theirs.image)
        np.testing.assert_array_equal(ours.mask, theirs.mask)


def test_a_14_bit_image_shrunk_for_the_cache_stays_14_bit(tmp_path):
    """A 14-bit grey image (uint16, max 16320) shrunk by a cache's max_side: Lanczos rings
    above its maximum, which must not push it past 16383, where training would divide it
    by 65535 while inference maps the original by its range (the same rule both ways)."""
    from napari_tmunet.data.preprocess import has_nominal_range

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    bars = np.zeros((64, 64), np.uint16)
    bars[:, 32:] = 255 * 64  # a sharp edge at the 14-bit top: Lanczos overshoots it
    tifffile.imwrite(root / "images" / "bars.tif", bars)
    Image.fromarray((bars > 0).astype(np.uint8) * 255).save(root / "masks" / "bars.png")
    build_cache(root, tmp_path / "c.npz", max_side=22)
    (stored,) = load_cache(tmp_path / "c.npz").images
    assert stored.dtype == np.uint16 and stored.max() <= bars.max()
    assert not has_nominal_range(stored) and not has_nominal_range(bars)


def test_cache_max_side_shrinks_large_images_only(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.float32)[:, None], (1, 20))  # (40, 20)
    big = np.stack([ramp, 255 - ramp, ramp], -1).astype(np.uint8)
    Image.fromarray(big).save(root / "images" / "big.jpg", quality=95)
    Image.fromarray(big).save(root / "images" / "bigpng.png")
    small = RNG.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    Image.fromarray(small).save(root / "images" / "small.png")
    half = np.zeros((40, 20), np.uint8)
    half[:20] = 255  # top half foreground
    for name in ("big", "bigpng"):
        Image.fromarray(half).save(root / "masks" / f"{name}.png")
    Image.fromarray(np.zeros((8, 6), np.uint8)).save(root / "masks" / "small.png")
    build_cache(root, tmp_path / "c.npz", max_side=10)
    with np.load(tmp_path / "c.npz") as npz:
        kinds = sorted(k.split("_")[0] for k in npz.files if not k.startswith(("meta", "mask")))
        assert json.loads(str(npz["meta"]))["max_side"] == 10
    assert kinds == ["jpg", "webp", "webp"]  # the shrunk JPEG is JPEG again
    cache = load_cache(tmp_path / "c.npz")
    assert [image.shape for image in cache.images] == [(10, 5, 3), (10, 5, 3), (8, 6, 3)]
    expected = np.zeros((10, 5), bool)
    expected[:5] = True
    np.testing.assert_array_equal(cache.masks[0], expected)
    np.testing.assert_array_equal(cache.masks[1], expected)
    np.testing.assert_array_equal(cache.images[2], small)
    # Lanczos keeps a smooth ramp: each shrunk row is close to the mean of its 4 rows
    rows = big[..., 0].reshape(10, 4, 20).mean(axis=(1, 2))
    assert np.abs(cache.images[1][..., 0].mean(axis=1) - rows).max() < 4


def test_cache_skip_bad(tmp_path):
    root = _dataset(tmp_path / "d", n=4)
    image = root / "images" / "1.png"
    image.write_bytes(image.read_bytes()[:60])  # header readable, pixels truncated
    with pytest.raises(ImageReadError, match="1.png"):
        build_cache(root, tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()
    cache = build_cache(root, tmp_path / "c.npz", skip_bad=True)
    assert cache.names == ["0", "2", "3"]
    assert [name for name, _ in load_cache(tmp_path / "c.npz").skipped] == ["1"]


def test_load_cache_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_cache(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match="not a napari-tmunet cache"):
        load_cache(tmp_path / "other.npz")


@needs_data
def test_cache_of_8bit_instance_ids_keeps_every_object(tmp_path, caplog):
    """MoNuSeg tiles labelled 1..N (N = 171 and 247) as 8-bit PNGs, as an 8-bit label export
    writes them: the cache holds every nucleus (the 0/255 rule kept a third of the
    pixels) and the log's "mask rules" names the id rule."""
    from scipy import ndimage

    names = ["TCGA-21-5786-01Z-00-DX1", "TCGA-CH-5767-01Z-00-DX1"]
    root = tmp_path / "inst"
    for part in ("images", "masks"):
        (root / part).mkdir(parents=True)
    for name in names:
        (root / "images" / f"{name}.tif").symlink_to(
            DATASETS / "MoNuSeg" / "images" / f"{name}.tif"
        )
        labels, count = ndimage.label(read_mask(DATASETS / "MoNuSeg" / "masks" / f"{name}.png")[0])
        assert 128 <= count <= 255
        Image.fromarray(labels.astype(np.uint8)).save(root / "masks" / f"{name}.png")
    with caplog.at_level("INFO"):
        cache = build_cache(root, tmp_path / "inst.npz")
    assert (
        cache.rule_counts()
        == load_cache(tmp_path / "inst.npz").rule_counts()
        == {">0 (8-bit ids)": 2}
    )
    assert "mask rules {'>0 (8-bit ids)': 2}" in caplog.text
    for name, mask in zip(cache.names, cache.masks, strict=True):
        truth = read_mask(DATASETS / "MoNuSeg" / "masks" / f"{name}.png")[0]
        np.testing.assert_array_equal(np.squeeze(mask), truth)


@needs_data
def test_udiat_cache(tmp_path, udiat_pairs, udiat_groups):
    path = tmp_path / "udiat.npz"
    build_cache(DATASETS / "UDIAT", path)
    cache = load_cache(path)
    assert len(cache) == 163
    raw_bytes = sum(image.nbytes for image in cache.images)
    assert 30e6 < raw_bytes < 60e6  # 163 grey uint8 images of ~500x500
    assert path.stat().st_size < 0.8 * raw_bytes
    assert cache.rule_counts() == {">0": 140, ">127": 23}
    assert cache.groups == udiat_groups
    assert all(image.ndim == 3 and image.shape[2] == 1 for image in cache.images)
    for index in (0, 31, 162):
        pair = udiat_pairs[index]
        assert cache.names[index] == pair.name
        np.testing.assert_array_equal(cache.images[index][..., 0], read_image(pair.image_path))
        np.testing.assert_array_equal(cache.masks[index], read_mask(pair.mask_path)[0])


# Preprocessing: raw image -> model input (shared by trainer and inference).


def test_unit_float_by_dtype():
    u8 = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_array_equal(to_unit_float(u8), np.array([[0, 0.2, 1]], np.float32))
    assert describe_mapping(u8) == "uint8 / 255"
    np.testing.assert_array_equal(to_unit_float(np.array([True, False])), [1.0, 0.0])
    assert to_unit_float(u8).dtype == np.float32

    u16 = np.array([[0, 13107, 65535]], np.uint16)
    np.testing.assert_array_equal(to_unit_float(u16), np.array([[0, 0.2, 1]], np.float32))
    assert describe_mapping(u16) == "uint16 / 65535"
    unit = np.array([[0.0, 0.25, 1.0]], np.float32)
    np.testing.assert_array_equal(to_unit_float(unit), unit)
    assert describe_mapping(unit) == "float32 in [0, 1] as is"

    i16 = (np.arange(1000, dtype=np.int16).reshape(20, 50) * 4 - 100).astype(np.int16)
    low, high = np.percentile(i16, [1, 99.8])
    out = to_unit_float(i16)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert out.flat[500] == pytest.approx((i16.flat[500] - low) / (high - low), rel=1e-5)
    assert describe_mapping(i16) == f"int16 percentiles 1-99.8 ({low:.6g}-{high:.6g}) -> [0,1]"
    wide = np.array([[-3.0, 0.0, 100.0]], np.float32)  # floats outside [0, 1]: robust range
    assert "percentiles" in describe_mapping(wide) and to_unit_float(wide).max() == 1.0

    floats = np.array([[np.nan, 0.0, 0.5, 1.0, np.inf]], np.float32)
    assert np.isfinite(to_unit_float(floats)).all()
    constant = np.full((4, 4), 7, np.int32)
    np.testing.assert_array_equal(to_unit_float(constant), 0.0)
    assert "constant" in describe_mapping(constant)


def test_unit_float_is_the_same_for_8_bit_converted_by_skimage():
    """One rule: img_as_uint / img_as_float of a uint8 image map to the very same values."""
    from skimage import img_as_float, img_as_float32, img_as_uint

    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = to_unit_float(u8)
    np.testing.assert_array_equal(to_unit_float(img_as_uint(u8)), expected)
    np.testing.assert_array_equal(to_unit_float(img_as_float(u8)), expected)
    # float32 arithmetic rounds k/255 its own way: at most one unit in the last place
    np.testing.assert_array_max_ulp(to_unit_float(img_as_float32(u8)), expected, maxulp=1)


def test_12_bit_data_in_uint16_is_mapped_by_its_range():
    """Values up to 4095 in uint16 (12-bit data): by the robust range, not / 65535 (nearly
    black); full-range 16-bit keeps / 65535. One rule: the trainer's and inference's input
    path (FrameInput) follows it too."""
    from skimage import img_as_uint

    from napari_tmunet.config import InputConfig
    from napari_tmunet.data.preprocess import has_nominal_range
    from napari_tmunet.inference import FrameInput

    u8 = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    twelve = u8.astype(np.uint16) * 16  # 0..4080
    assert not has_nominal_range(twelve) and "percentiles" in describe_mapping(twelve)
    np.testing.assert_array_equal(to_unit_float(twelve), to_unit_float(twelve.astype(np.int32)))
    np.testing.assert_allclose(to_unit_float(twelve), to_unit_float(u8), atol=0.02)
    full = img_as_uint(u8)
    assert has_nominal_range(full) and describe_mapping(full) == "uint16 / 65535"
    np.testing.assert_array_equal(to_unit_float(full), to_unit_float(u8))
    # a band of a larger image follows the whole image's range
    assert describe_mapping(twelve, (0.0, 40000.0)) == "uint16 / 65535"

    config = InputConfig(size=(32, 32), mean=(0.5,), std=(0.25,))
    model_input = FrameInput(twelve, 1, config).resized()
    np.testing.assert_allclose(model_input, FrameInput(u8, 1, config).resized(), atol=0.1)


def test_14_bit_data_in_uint16_is_mapped_by_its_range():
    """Values up to 16383 in uint16 (14-bit data, tester18 #3): by the robust range, as
    napari shows it, not / 65535 (at most 25% bright: an empty ultrasound mask); one more
    value and the type's range is used. Full-range 16-bit keeps / 65535, and the
    trainer's and inference's input path (FrameInput) follows the same rule."""
    from skimage import img_as_uint

    from napari_tmunet.config import InputConfig
    from napari_tmunet.data.preprocess import has_nominal_range
    from napari_tmunet.inference import FrameInput

    u8 = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    fourteen = u8.astype(np.uint16) * 64  # 0..16320
    assert not has_nominal_range(fourteen)
    assert describe_mapping(fourteen).startswith("uint16 of 14-bit data (max 16320) percentiles")
    np.testing.assert_allclose(to_unit_float(fourteen), to_unit_float(u8), atol=0.02)
    top = fourteen.copy()
    top[0, 0] = 16383  # the largest 14-bit value: still by its range
    assert not has_nominal_range(top) and to_unit_float(top).max() == 1.0
    top[top > 0] = np.maximum(top[top > 0], 16384)  # most pixels use a 15th bit: type's range
    assert has_nominal_range(top) and describe_mapping(top) == "uint16 / 65535"
    np.testing.assert_array_equal(to_unit_float(top), top / np.float32(65535))
    full = img_as_uint(u8)
    assert has_nominal_range(full) and describe_mapping(full) == "uint16 / 65535"
    np.testing.assert_array_equal(to_unit_float(full), to_unit_float(u8))
    rgb = np.stack([fourteen, fourteen[::-1], fourteen.T], axis=-1)  # colour: the same rule
    assert not has_nominal_range(rgb)
    np.testing.assert_allclose(to_unit_float(rgb)[..., 0], to_unit_float(u8), atol=0.02)

    config = InputConfig(size=(32, 32), mean=(0.5,), std=(0.25,))
    model_input = FrameInput(fourteen, 1, config).resized()
    np.testing.assert_allclose(model_input, FrameInput(u8, 1, config).resized(), atol=0.1)


@pytest.mark.parametrize("hot", [16384, 65535])
def test_a_hot_pixel_does_not_change_the_14_bit_rule(hot):
    """14-bit data in uint16 with one hot or saturated pixel (tester19 A): mapped like the
    clean image but for that pixel (clipped to 1), not / 65535 as by the maximum; the
    mapping says so. A band judged by its image's range follows the same rule."""
    from skimage import img_as_uint

    from napari_tmunet.config import InputConfig
    from napari_tmunet.data.preprocess import has_nominal_range, robust_range
    from napari_tmunet.inference import FrameInput

    u8 = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    fourteen = u8.astype(np.uint16) * 64  # 0..16320
    hot_image = fourteen.copy()
    hot_image[5, 5] = hot
    assert not has_nominal_range(hot_image)
    clean, mapped = to_unit_float(fourteen), to_unit_float(hot_image)
    assert mapped[5, 5] == 1.0
    mapped[5, 5] = clean[5, 5]
    np.testing.assert_array_equal(mapped, clean)
    words = describe_mapping(hot_image)
    assert words.startswith(
        "uint16 of 14-bit data (max 16320; 1 pixel above 16383, clipped) percentiles 1-99.8 ("
    ), words
    rgb = np.stack([hot_image, fourteen[::-1], fourteen.T], axis=-1)
    assert not has_nominal_range(rgb)
    np.testing.assert_allclose(to_unit_float(rgb)[..., 1], to_unit_float(fourteen[::-1]))
    band = hot_image[:8]  # a band of the image: by the image's range, hot pixel or not
    assert not has_nominal_range(band, robust_range(hot_image))
    config = InputConfig(size=(32, 64), mean=(0.5,), std=(0.25,))
    np.testing.assert_allclose(
        FrameInput(band, 1, config, robust_range(hot_image)).crop(0, 0, 8, 64)[0, 6:],
        FrameInput(fourteen[:8], 1, config, robust_range(fourteen)).crop(0, 0, 8, 64)[0, 6:],
    )
    # full-range 16-bit data (most pixels above 16383) is still / 65535, hot pixel or not
    full = img_as_uint(u8)
    full[5, 5] = 65535
    assert has_nominal_range(full) and describe_mapping(full) == "uint16 / 65535"
    np.testing.assert_array_equal(to_unit_float(full), full / np.float32(65535))


def test_a_hot_pixel_does_not_make_a_14_bit_h_and_e_grey():
    """The H&E sample as 14-bit RGB with one saturated pixel (tester19 A): still "nuclei"
    (by min to max, the pixel shrank every colour difference: "ultrasound")."""
    from napari_tmunet.registry import guess_modality

    he = read_image(SAMPLES / "nuclei_image.png")[..., :3].astype(np.uint16) * 64
    assert guess_modality(he) == "nuclei"
    he[5, 5] = 65535
    assert guess_modality(he) == "nuclei"


def test_a_14_bit_image_with_a_hot_pixel_shrunk_for_the_cache_keeps_its_rule(tmp_path):
    """A 14-bit image with one pixel at 65535, shrunk by a cache's max_side: the hot
    pixel's Lanczos spread is clipped at 16383, so the stored image keeps the rule of the
    original (by its range), as inference applies it."""
    from napari_tmunet.data.preprocess import has_nominal_range

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    bars = np.zeros((64, 64), np.uint16)
    bars[:, 32:] = 255 * 64
    bars[10:12, 40:42] = 65535  # a small saturated spot
    tifffile.imwrite(root / "images" / "bars.tif", bars)
    Image.fromarray((bars > 0).astype(np.uint8) * 255).save(root / "masks" / "bars.png")
    build_cache(root, tmp_path / "c.npz", max_side=22)
    (stored,) = load_cache(tmp_path / "c.npz").images
    assert stored.dtype == np.uint16 and stored.max() <= 16383
    assert not has_nominal_range(stored) and not has_nominal_range(bars)


@needs_data
def test_a_12_bit_tiff_is_segmented_like_its_8_bit_picture(tmp_path):
    """A UDIAT image saved as 12-bit data in a uint16 TIFF, through the reader and the
    shipped ultrasound model: the lesion of the 8-bit picture (before: nothing found)."""
    from napari_tmunet import registry
    from napari_tmunet.inference import run_to_completion, segment

    entry = registry.model_for_modality("ultrasound")
    if entry is None:
        pytest.skip("no shipped ultrasound model")
    checkpoint = registry.load_model(entry.name, "cpu")
    picture = read_image(DATASETS / "UDIAT" / "images" / "000001.png")
    path = tmp_path / "12bit.tif"
    tifffile.imwrite(path, picture.astype(np.uint16) * 16)
    labels = []
    for image in (picture, read_image(path)):
        result = run_to_completion(segment(image, checkpoint, mode=checkpoint.inference_mode))
        labels.append(result.labels > 0)
    assert labels[0].sum() > 1000
    dice = 2 * (labels[0] & labels[1]).sum() / (labels[0].sum() + labels[1].sum())
    assert dice > 0.9, dice


def test_unit_float_ignores_alpha_for_percentiles():
    rgb = RNG.integers(0, 1000, (10, 10, 3), dtype=np.int16)
    rgba = np.concatenate([rgb, np.full((10, 10, 1), 32767, np.int16)], axis=-1)
    np.testing.assert_allclose(to_unit_float(rgba)[..., :3], to_unit_float(rgb))


@pytest.mark.parametrize(
    ("shape", "channels", "out_shape"),
    [
        ((5, 6), 1, (1, 5, 6)),
        ((5, 6), 3, (3, 5, 6)),
        ((5, 6, 1), 3, (3, 5, 6)),
        ((5, 6, 2), 1, (1, 5, 6)),
        ((5, 6, 3), 3, (3, 5, 6)),
        ((5, 6, 4), 3, (3, 5, 6)),
        ((5, 6, 3), 1, (1, 5, 6)),
    ],
)
def test_to_channels_shapes(shape, channels, out_shape):
    image = RNG.random(shape).astype(np.float32)
    out = to_channels(image, channels)
    assert out.shape == out_shape and out.dtype == np.float32
    colour = image if image.ndim == 2 else image[..., : 3 if shape[-1] >= 3 else 1]
    if channels == 1 and colour.ndim == 3:
        np.testing.assert_allclose(out[0], colour.mean(-1), rtol=1e-6)
    elif colour.ndim == 2 or colour.shape[-1] == 1:
        grey = colour.reshape(shape[:2])
        assert all(np.array_equal(out[c], grey) for c in range(channels))
    else:
        np.testing.assert_array_equal(out, colour.transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("shape", "channels", "message"),
    [
        ((2, 5, 6, 3), 3, r"shape \(2, 5, 6, 3\); expected \(H, W\)"),
        ((0, 6), 3, "empty image"),
        ((5, 6, 7), 3, "expected"),
        ((5, 6, 3), 2, "channels=1 or channels=3"),
        ((5, 6), 0, "channels must be >= 1"),
    ],
)
def test_to_channels_errors(shape, channels, message):
    with pytest.raises(ValueError, match=message):
        to_channels(np.zeros(shape, np.float32), channels)


def test_normalize_and_model_input():
    chw = np.stack([np.full((2, 2), v, np.float32) for v in (0.5, 0.25, 1.0)])
    out = normalize(chw, mean=(0.5, 0.0, 0.5), std=(1.0, 0.25, 0.5))
    np.testing.assert_allclose(out[:, 0, 0], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(chw, mean=(0.5,), std=(1.0,))
    with pytest.raises(ValueError, match="std must be > 0"):
        normalize(chw, mean=(0, 0, 0), std=(1, 0, 1))
    rgb = np.full((4, 4, 3), 255, np.uint8)
    np.testing.assert_allclose(to_model_input(rgb, 3, (0.5,) * 3, (0.5,) * 3), 1.0)
    assert to_model_input(rgb[..., 0], 3, (0,) * 3, (1,) * 3).shape == (3, 4, 4)
