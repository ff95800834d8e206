"""Reading and writing every accepted format (synthetic files) and the real datasets' quirks."""

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from _paths import DATASETS, EXTRA
from PIL import Image

from napari_tmunet._sample_data import load_sample
from napari_tmunet.data import images
from napari_tmunet.data.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    image_shape,
    read_image,
    read_mask,
    read_pixel_size,
    write_mask,
)

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
RGBA8 = RNG.integers(0, 256, (6, 8, 4), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (6, 8), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (6, 8, 3), dtype=np.uint16)
FLOAT32 = RNG.normal(size=(6, 8)).astype(np.float32)
BITS = RNG.random((6, 8)) > 0.5

needs_data = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"no datasets at {DATASETS}")


def _pil(array, mode=None, **save):
    def write(path):
        Image.fromarray(array, mode=mode).save(path, **save)

    return write


def _palette(path, grey):
    image = Image.new("P", (8, 6))
    colours = [0, 0, 0, 200, 200, 200] if grey else [0, 0, 0, 255, 0, 0]
    image.putpalette(colours)
    image.putdata(BITS.astype(np.uint8).reshape(-1).tolist())
    image.save(path)


def _la(path):
    Image.fromarray(np.stack([GREY8, np.full_like(GREY8, 255)], -1), mode="LA").save(path)


def _png16_rgb(path):
    Path(path).write_bytes(imagecodecs.png_encode(RGB16))


def _tif(array, **kwargs):
    def write(path):
        tifffile.imwrite(path, array, **kwargs)

    return write


PALETTE_RGB = np.where(BITS[..., None], np.array([255, 0, 0], np.uint8), np.uint8(0))
PALETTE_GREY = np.where(BITS, np.uint8(200), np.uint8(0))

# (file name, writer, expected array); None = compare loosely (lossy JPEG).
FORMATS = [
    ("grey.png", _pil(GREY8), GREY8),
    ("grey16.png", _pil(GREY16), GREY16),
    ("rgb.png", _pil(RGB8), RGB8),
    ("rgba.png", _pil(RGBA8), RGBA8),
    ("la.png", _la, GREY8),
    ("bits.png", _pil(BITS), BITS),
    ("palette.png", lambda p: _palette(p, grey=False), PALETTE_RGB),
    ("palette_grey.png", lambda p: _palette(p, grey=True), PALETTE_GREY),
    ("rgb16.png", _png16_rgb, RGB16),
    ("rgb.bmp", _pil(RGB8), RGB8),
    ("grey.bmp", _pil(GREY8), GREY8),
    ("bits.bmp", _pil(BITS), BITS),
    ("grey.jpg", _pil(GREY8, quality=100), None),
    ("rgb.jpeg", _pil(RGB8, quality=100, subsampling=0), None),
    ("grey16_lzw.tif", _tif(GREY16, compression="lzw"), GREY16),
    ("float_deflate.tiff", _tif(FLOAT32, compression="zlib"), FLOAT32),
    ("rgb_packbits.tif", _tif(RGB8, compression="packbits", photometric="rgb"), RGB8),
    (
        "rgb_planar.tif",
        _tif(RGB8.transpose(2, 0, 1), photometric="rgb", planarconfig="separate"),
        RGB8,
    ),
    ("rgba.tif", _tif(RGBA8, photometric="rgb", extrasamples=["unassalpha"]), RGBA8),
    ("bits.tif", _tif(BITS), BITS),
]


@pytest.mark.parametrize(("name", "write", "expected"), FORMATS, ids=[f[0] for f in FORMATS])
def test_read_formats(tmp_path, name, write, expected):
    path = tmp_path / name
    write(path)
    image = read_image(path)
    assert image_shape(path) == (6, 8)
    if expected is None:  # JPEG: lossy, but shape, dtype and values close
        reference = GREY8 if name.startswith("grey") else RGB8
        assert image.shape == reference.shape and image.dtype == np.uint8
        assert np.abs(image.astype(int) - reference).mean() < 8
    else:
        assert image.dtype == expected.dtype, name
        np.testing.assert_array_equal(image, expected)


def test_suffixes_cover_the_layout():
    assert set(IMAGE_SUFFIXES) == {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}


def test_uppercase_suffix(tmp_path):
    Image.fromarray(GREY8).save(tmp_path / "a.PNG", format="PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "a.PNG"), GREY8)


def test_multipage_tiff(tmp_path):
    stack = RNG.integers(0, 65536, (5, 6, 8), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack", compression="lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif"), stack)
    for i in range(3):  # pages appended one by one (no shape metadata)
        tifffile.imwrite(tmp_path / "pages.tif", RGB8 + i, photometric="rgb", append=True)
    pages = read_image(tmp_path / "pages.tif")
    assert pages.shape == (3, 6, 8, 3)
    np.testing.assert_array_equal(pages[2], RGB8 + 2)
    with pytest.raises(ImageReadError, match="stack of 5 pages"):
        read_image(tmp_path / "z.tif", allow_stack=False)
    with pytest.raises(ImageReadError, match="z.tif"):
        read_mask(tmp_path / "z.tif")


def test_ome_tiff_pixel_size(tmp_path):
    path = tmp_path / "a.ome.tif"
    metadata = {"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5}
    tifffile.imwrite(path, RGB8, photometric="rgb", metadata=metadata)
    np.testing.assert_array_equal(read_image(path), RGB8)
    y, x, unit = read_pixel_size(path)
    assert (y, x, unit) == (pytest.approx(0.5), pytest.approx(0.25), "µm")
    nm = tmp_path / "nm.ome.tif"
    metadata = {"PhysicalSizeX": 250, "PhysicalSizeY": 250, "PhysicalSizeXUnit": "nm"}
    tifffile.imwrite(nm, GREY8, metadata={**metadata, "PhysicalSizeYUnit": "nm"})
    assert read_pixel_size(nm)[:2] == pytest.approx((0.25, 0.25))


def test_ome_channels_first_is_rgb(tmp_path):
    tifffile.imwrite(tmp_path / "c.ome.tif", RGB8.transpose(2, 0, 1), metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "c.ome.tif"), RGB8)


def test_imagej_and_resolution_tags(tmp_path):
    imagej = tmp_path / "ij.tif"
    tifffile.imwrite(
        imagej, GREY16, imagej=True, resolution=(1 / 0.3, 1 / 0.4), metadata={"unit": "um"}
    )
    y, x, unit = read_pixel_size(imagej)
    assert (y, x, unit) == (pytest.approx(0.4), pytest.approx(0.3), "µm")
    cm = tmp_path / "cm.tif"
    tifffile.imwrite(cm, GREY8, resolution=(1e4, 2e4), resolutionunit="CENTIMETER")
    assert read_pixel_size(cm)[:2] == pytest.approx((0.5, 1.0))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, GREY8)
    assert read_pixel_size(plain) is None


def test_pixel_size_from_dpi(tmp_path):
    Image.fromarray(GREY8).save(tmp_path / "300.png", dpi=(300, 300))
    assert read_pixel_size(tmp_path / "300.png")[:2] == pytest.approx((25400 / 300,) * 2, rel=1e-4)
    Image.fromarray(GREY8).save(tmp_path / "72.png", dpi=(72, 72))
    assert read_pixel_size(tmp_path / "72.png") is None  # editor default, not a size
    Image.fromarray(GREY8).save(tmp_path / "none.png")
    assert read_pixel_size(tmp_path / "none.png") is None


def test_pixel_size_never_raises(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    assert read_pixel_size(tmp_path / "bad.tif") is None
    assert read_pixel_size(tmp_path / "missing.png") is None


def _truncated_png(path):
    Image.fromarray(RGB8).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.png", lambda p: p.write_bytes(b""), "empty"),
        ("garbage.png", lambda p: p.write_bytes(b"not an image at all"), "not a readable PNG"),
        ("garbage.tif", lambda p: p.write_bytes(b"II*\x00\xff\xff\xff\xff"), "cannot decode"),
        ("truncated.png", _truncated_png, "cannot decode"),
        ("missing.png", lambda p: None, "no such file"),
        ("animation.gif", lambda p: p.write_bytes(b"GIF89a"), "unsupported file type"),
    ],
)
def test_read_errors_name_the_file(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageReadError, match=message) as error:
        read_image(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


# (mask values, expected foreground, expected rule)
STRAY = np.array([[0, 5, 127], [128, 255, 40]], np.uint8)
MASK_RULES = [
    (np.array([[0, 255], [255, 0]], np.uint8), [[0, 1], [1, 0]], ">127"),
    (np.array([[0, 1], [1, 0]], np.uint8), [[0, 1], [1, 0]], ">0"),
    (STRAY, [[0, 0, 0], [1, 1, 0]], ">127"),
    (np.array([[0, 1], [2, 0]], np.uint8), [[0, 1], [1, 0]], ">0"),  # 0/1 with JPEG noise
    (np.array([[0, 3], [127, 0]], np.uint8), [[0, 1], [1, 0]], ">0"),  # 8-bit labels 1..127
    (np.array([[0, 40], [128, 0]], np.uint8), [[0, 0], [1, 0]], ">127"),
    (np.array([[0, 1], [2, 300]], np.uint16), [[0, 1], [1, 1]], ">0"),
    (np.array([[0, 7], [70000, 0]], np.uint32), [[0, 1], [1, 0]], ">0"),
    (np.array([[0, 7], [2, 0]], np.int32), [[0, 1], [1, 0]], ">0"),
    (np.array([[0.0, 1.0], [1.0, 0.0]], np.float32), [[0, 1], [1, 0]], ">0"),
    (np.array([[False, True], [True, False]]), [[0, 1], [1, 0]], ">0"),
]


@pytest.mark.parametrize(("values", "expected", "rule"), MASK_RULES)
def test_mask_rules(tmp_path, values, expected, rule):
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, values)
    mask, used = read_mask(path)
    assert used == rule
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, np.array(expected, bool))


def test_colour_masks_collapse_by_max_and_drop_alpha(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0, 0] = 255  # red
    rgb[1, 2, 2] = 200  # blue
    rgb[1, 1, 1] = 60  # dark green: below 127
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    mask, rule = read_mask(tmp_path / "rgb.png")
    assert rule == ">127"
    np.testing.assert_array_equal(mask, [[1, 0, 0], [0, 0, 1]])
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha must not count as foreground
    rgba[0, 1, :3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.png")[0], [[0, 1, 0], [0, 0, 0]])


def test_explicit_and_bad_rules(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", STRAY)
    mask, rule = read_mask(tmp_path / "m.tif", rule=">0")
    assert rule == ">0" and mask.sum() == 5
    with pytest.raises(ValueError, match="unknown mask rule"):
        read_mask(tmp_path / "m.tif", rule="otsu")


def _disc(size=64, radius=20):
    """A (size, size) bool disc: a mask whose edge JPEG blurs."""
    y, x = np.mgrid[:size, :size] - size // 2
    return x**2 + y**2 < radius**2


@pytest.mark.parametrize("scale", [1, 255])
def test_jpeg_masks_keep_their_foreground(tmp_path, scale):
    """0/1 and 0/255 masks saved as JPEG: ringing adds values (0/1 -> 0/1/2, 0/255 ->
    0..255), and the rule still finds the disc, not an empty mask or the noise."""
    disc = _disc()
    path = tmp_path / "mask.jpg"
    Image.fromarray(disc.astype(np.uint8) * np.uint8(scale)).save(path, quality=90)
    raw = read_image(path)
    assert not set(np.unique(raw)) <= {0, scale}  # JPEG did add noise
    mask, rule = read_mask(path)
    assert rule == (">0" if scale == 1 else ">127")
    assert (mask != disc).mean() < 0.02


def test_8bit_label_masks_are_foreground(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[1:3, 1:3], labels[5:7, 4:8] = 1, 100  # labels 1..100 in a uint8 PNG
    Image.fromarray(labels).save(tmp_path / "labels.png")
    mask, rule = read_mask(tmp_path / "labels.png")
    assert rule == ">0"
    np.testing.assert_array_equal(mask, labels > 0)


def test_a_rule_that_empties_a_mask_warns_with_the_file(tmp_path, caplog):
    path = tmp_path / "ones.png"
    Image.fromarray(_disc().astype(np.uint8)).save(path)
    mask, _ = read_mask(path, rule=">127")
    assert not mask.any()
    assert str(path) in caplog.text and "'>0'" in caplog.text
    caplog.clear()
    read_mask(path)
    assert "empty" not in caplog.text


def test_write_binary_png(tmp_path):
    path = write_mask(tmp_path / "sub" / "m.png", BITS)
    with Image.open(path) as image:
        assert image.mode == "L"
        stored = np.asarray(image)
    assert set(np.unique(stored)) == {0, 255}
    np.testing.assert_array_equal(stored == 255, BITS)
    np.testing.assert_array_equal(read_mask(path)[0], BITS)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.png"]  # no temp file left


@pytest.mark.parametrize(("top", "dtype"), [(300, np.uint16), (70000, np.uint32)])
def test_write_instance_labels_tiff(tmp_path, top, dtype):
    labels = np.zeros((6, 8), np.int64)
    labels[1:3, 1:4] = 2
    labels[4, 5] = top
    path = write_mask(tmp_path / "labels.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        stored = tif.asarray()
    assert stored.dtype == dtype
    np.testing.assert_array_equal(stored, labels)
    assert read_mask(path)[1] == ">0"


def test_write_instance_labels_png_is_16_bit(tmp_path):
    """Instance ids in a PNG: 16 bits even when they fit in 8, so that ``read_mask`` reads
    every id as foreground (an 8-bit 0..255 PNG would be read as a 0/255 mask, '>127')."""
    labels = np.zeros((6, 8), np.int64)
    labels[1:3, 1:4] = 2
    labels[4, 5] = 200
    path = write_mask(tmp_path / "labels.png", labels)
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
    stored = read_image(path)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, labels)
    assert read_mask(path)[1] == ">0"
    np.testing.assert_array_equal(read_mask(path)[0], labels > 0)


def test_write_a_stack_of_labels_as_one_tiff(tmp_path):
    labels = np.zeros((3, 6, 8), np.int32)  # (Z, H, W)
    labels[0, 1:3, 1:4] = 2
    labels[2, 4, 5] = 300
    path = write_mask(tmp_path / "stack.tif", labels)
    assert images.saved_mask_kind(path) == "instances"
    assert images.saved_mask_shape(path) == (3, 6, 8)
    np.testing.assert_array_equal(read_image(path), labels)


def test_write_refusals(tmp_path):
    labels = np.array([[0, 1], [2, 70000]])
    with pytest.raises(ValueError, match=r"65535.*m\.tif"):
        write_mask(tmp_path / "m.png", labels)
    with pytest.raises(ValueError, match=r"stack in a \.tif"):
        write_mask(tmp_path / "m.png", np.zeros((2, 6, 8), np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        write_mask(tmp_path / "m.png", np.array([[0.2, 0.9]]))
    with pytest.raises(ValueError, match="jpg"):
        write_mask(tmp_path / "m.jpg", labels > 0)
    with pytest.raises(ValueError, match="2-D"):
        write_mask(tmp_path / "m.png", np.zeros((2, 2, 3), bool))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = write_mask(tmp_path / "m.tif", BITS)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_mask(path, ~BITS)
    assert path.read_bytes() == before  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]  # temp file removed


def test_core_imports_no_gui():
    assert "qtpy" not in images.__dict__ and "napari" not in images.__dict__


@needs_data
def test_clinicdb_stray_values_are_background():
    path = DATASETS / "CVC-ClinicDB" / "masks" / "2.tif"
    raw = read_image(path)
    assert raw.dtype == np.uint8 and raw.shape == (288, 384)
    stray = int(((raw > 0) & (raw <= 127)).sum())
    assert stray > 8000  # the README's "about 9k"
    mask, rule = read_mask(path)
    assert rule == ">127"
    assert mask.sum() == (raw > 127).sum() == 20532
    assert read_mask(path, rule=">0")[0].sum() == 20532 + stray


def _relabelled_monuseg(name: str, keep: int | None = None) -> np.ndarray:
    """MoNuSeg mask ``name``'s nuclei as 8-bit instance ids 1..N (``scipy.ndimage``
    objects; the first ``keep`` kept), as an 8-bit label export writes them."""
    from scipy import ndimage

    labels, _ = ndimage.label(read_mask(DATASETS / "MoNuSeg" / "masks" / f"{name}.png")[0])
    if keep is not None:
        labels[labels > keep] = 0
    return labels.astype(np.uint8)


@needs_data
@pytest.mark.parametrize("keep", [None, 128, 200])
def test_8bit_instance_ids_above_127_are_foreground(tmp_path, keep):
    """A MoNuSeg tile labelled 1..N with N of 128..255 in an 8-bit PNG: every nucleus is
    foreground, not only ids 128..N (the 0/255 rule kept 41% of this tile's pixels), the
    log names the id rule, and the reader gives the ids as stored."""
    from napari_tmunet.data.images import ID_RULE, binarise_mask, read_mask_labels

    ids = _relabelled_monuseg("TCGA-21-5786-01Z-00-DX1", keep)
    assert ids.max() == (keep or 247)
    path = tmp_path / "ids.png"
    Image.fromarray(ids).save(path)
    mask, rule = read_mask(path)
    assert rule == ID_RULE == ">0 (8-bit ids)"
    np.testing.assert_array_equal(mask, ids > 0)
    labels, label_rule = read_mask_labels(path)  # napari-tmunet's reader (GUI)
    assert label_rule == "ids"
    np.testing.assert_array_equal(labels, ids)
    layer_mask, layer_rule = binarise_mask(ids)  # the Metrics dock's Image layer
    assert layer_rule == ID_RULE
    np.testing.assert_array_equal(layer_mask, ids > 0)


@needs_data
def test_8bit_ids_below_128_and_binary_masks_keep_their_rules():
    ids = _relabelled_monuseg("TCGA-21-5786-01Z-00-DX1", 3)
    mask, rule = images.binarise_mask(ids)
    assert ids.max() == 3 and rule == ">0"
    np.testing.assert_array_equal(mask, ids > 0)
    # CVC-ClinicDB 2.tif: stray values 1..127 hold 31% of the non-zero pixels, 46 values
    raw = read_image(DATASETS / "CVC-ClinicDB" / "masks" / "2.tif")
    assert len(np.unique(raw)) > 40 and (raw == 255).sum() < 0.7 * (raw > 0).sum()
    assert read_mask(DATASETS / "CVC-ClinicDB" / "masks" / "2.tif")[1] == ">127"
    assert not images.holds_instance_ids(raw)


@pytest.mark.skipif(not (EXTRA / "Kvasir-SEG").is_dir(), reason="extra-data Kvasir-SEG not present")
def test_kvasir_jpeg_mask_with_the_most_grey_is_0_255():
    """The Kvasir-SEG mask whose top value 255 holds the least of its foreground (67%):
    its JPEG grey levels are edges, read with the 0/255 rule."""
    path = EXTRA / "Kvasir-SEG" / "masks" / "cju31t8xd17bk0835rnb893jk.jpg"
    values = images.mask_grey(read_image(path), colour=True)
    assert 0.6 < (values == 255).sum() / (values > 0).sum() < 0.7
    mask, rule = read_mask(path)
    assert rule == ">127"
    np.testing.assert_array_equal(mask, values > 127)


def test_a_blurred_0_255_mask_is_not_ids():
    """A blurred (or resized) 0/255 mask whose 255 plateau is small: its objects ramp, so it
    is no id mask and stays ">127"."""
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(_disc(64, 12).astype(float), 6)
    values = np.round(255 * blurred / blurred.max()).astype(np.uint8)
    assert (values == 255).sum() < 0.05 * (values > 0).sum()
    mask, rule = images.binarise_mask(values)
    assert rule == ">127"
    np.testing.assert_array_equal(mask, values > 127)


@needs_data
def test_clinicdb_image_is_rgb():
    image = read_image(DATASETS / "CVC-ClinicDB" / "images" / "2.png")
    assert image.shape == (288, 384, 3) and image.dtype == np.uint8


@needs_data
def test_monuseg_la_mask_and_tiff_tiles():
    name = "TCGA-18-5592-01Z-00-DX1"
    raw = read_image(DATASETS / "MoNuSeg" / "masks" / f"{name}.png")
    assert raw.shape == (1000, 1000) and raw.dtype == np.uint8  # LA -> grey, alpha dropped
    assert set(np.unique(raw)) == {0, 255}
    mask, rule = read_mask(DATASETS / "MoNuSeg" / "masks" / f"{name}.png")
    assert rule == ">127" and 0.2 < mask.mean() < 0.6
    tile = DATASETS / "MoNuSeg" / "images" / f"{name}.tif"
    with tifffile.TiffFile(tile) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.LZW
    image = read_image(tile)
    assert image.shape == (1000, 1000, 3) and image.dtype == np.uint8
    assert image.std() > 10


@needs_data
def test_monuseg_packbits_tile():
    test_names = (DATASETS / "MoNuSeg" / "test.txt").read_text().split()
    path = DATASETS / "MoNuSeg" / "images" / f"{test_names[0]}.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.PACKBITS
    assert read_image(path).shape == (1000, 1000, 3)


@needs_data
def test_udiat_one_bit_and_8bit_masks():
    modes = {}
    for path in sorted((DATASETS / "UDIAT" / "masks").iterdir())[:30]:
        with Image.open(path) as image:
            modes.setdefault(image.mode, path)
    one_bit, eight_bit = modes["1"], modes["L"]
    assert read_image(one_bit).dtype == bool
    mask, rule = read_mask(one_bit)
    assert rule == ">0" and mask.any() and not mask.all()
    mask8, rule8 = read_mask(eight_bit)
    assert rule8 == ">127" and mask8.any()
    image = read_image(DATASETS / "UDIAT" / "images" / one_bit.name)
    assert image.ndim == 2 and image.dtype == np.uint8 and image.shape == mask.shape


def test_cmyk_files_are_told_from_their_header(tmp_path):
    """CMYK JPEGs and TIFFs are told from their headers; RGB(A), grey + alpha, missing and
    unreadable files are not CMYK (never an exception)."""
    from napari_tmunet.data.colour_spaces import CMYK, stored_colour_space

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "ink.jpg")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "ink.tif")
    tifffile.imwrite(tmp_path / "rgba.tif", np.dstack([rgb, rgb[..., :1]]))
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg")
    Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA").save(tmp_path / "la.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert stored_colour_space(tmp_path / "ink.jpg") == CMYK
    assert stored_colour_space(tmp_path / "ink.tif") == CMYK
    for name in ("rgba.tif", "rgb.jpg", "la.png", "broken.jpg", "missing.jpg"):
        assert stored_colour_space(tmp_path / name) is None, name
    assert stored_colour_space(None) is None


def test_cmyk_converts_to_rgb_as_pillow_does():
    """Every 8-bit ink combination on a grid gives Pillow's RGB exactly; 16-bit inks by
    their own maximum."""
    from napari_tmunet.data.colour_spaces import CMYK, convert_colours

    levels = np.arange(0, 256, 15, dtype=np.uint8)
    inks = np.stack(np.meshgrid(levels, levels, levels, levels), -1).reshape(-1, 4)[None]
    expected = np.asarray(Image.fromarray(inks, "CMYK").convert("RGB"))
    np.testing.assert_array_equal(convert_colours(inks, CMYK), expected)
    wide = np.array([[[0, 65535, 32768, 0], [0, 0, 0, 65535]]], np.uint16)
    np.testing.assert_array_equal(convert_colours(wide, CMYK), [[[65535, 0, 32767], [0, 0, 0]]])


def test_cmyk_tiffs_are_read_as_rgb_like_cmyk_jpegs(tmp_path):
    """read_image gives a CMYK TIFF of 8-bit inks as Pillow's RGB (predict, training and
    dataset folders then see colours, not inks); float inks come as stored."""
    colour, _ = load_sample("colonoscopy")
    Image.fromarray(colour).convert("CMYK").save(tmp_path / "ink.tif")
    with Image.open(tmp_path / "ink.tif") as stored:
        expected = np.asarray(stored.convert("RGB"))
    image = read_image(tmp_path / "ink.tif")
    assert image.shape == (*colour.shape[:2], 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)
    inks = np.random.default_rng(0).random((40, 50, 4), np.float32)
    tifffile.imwrite(tmp_path / "float.tif", inks, photometric="separated")
    np.testing.assert_array_equal(read_image(tmp_path / "float.tif"), inks)


@pytest.mark.parametrize(
    ("shape", "rgb", "stored", "expected"),
    [
        ((40, 50, 4), True, "cmyk", "cmyk"),  # napari's RGBA of a CMYK file
        ((40, 50, 4), True, None, ""),  # RGBA
        ((40, 50, 3), True, "cmyk", ""),  # already converted (this plugin's dataset reader)
        ((40, 50, 2), False, None, "grey+alpha"),  # napari's H frames of W x 2
        ((3, 50, 2), False, None, ""),  # too small to be one image
        ((40, 50), False, None, ""),
        ((5, 40, 50), False, None, ""),  # a stack
    ],
)
def test_which_images_need_their_colours_converted(shape, rgb, stored, expected):
    from napari_tmunet.data.colour_spaces import colour_conversion

    assert colour_conversion(shape, rgb, stored) == expected


def test_conversions_that_are_not_safe_say_what_to_do(tmp_path):
    """A lazy image (over the pixel budget, e.g. a memory-mapped TIFF) is not converted
    whole, nor float CMYK; each says what to save instead."""
    from napari_tmunet.data.colour_spaces import CMYK, GREY_ALPHA, conversion_problem

    inks = np.zeros((8, 8, 4), np.uint8)
    assert conversion_problem(inks, CMYK) == ""
    assert conversion_problem(inks, "") == ""
    assert "save it as RGB" in conversion_problem(inks.astype(np.float32), CMYK)
    mapped_inks = np.memmap(tmp_path / "inks", np.uint8, "w+", shape=(8, 8, 4))
    assert "save it as RGB" in conversion_problem(mapped_inks, CMYK)
    mapped_grey = np.memmap(tmp_path / "grey", np.uint8, "w+", shape=(8, 8, 2))
    assert "save it as grey" in conversion_problem(mapped_grey, GREY_ALPHA)


def test_looks_like_mask_tells_masks_from_pictures():
    """Binary 0/v and instance-id masks (2-D, a stack, or grey saved as RGB) are masks;
    photographs (grey or colour), colour arrays, floats, noise and an all-zero array are not."""
    from scipy import ndimage

    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.data.images import looks_like_mask

    for modality in ("colonoscopy", "nuclei", "ultrasound"):
        image, mask = load_sample(modality)
        ids = ndimage.label(mask > 0)[0]
        assert looks_like_mask(mask) and looks_like_mask(mask > 0), modality  # 0/255, bool
        assert looks_like_mask(ids.astype(np.uint16)) and looks_like_mask(np.stack([ids] * 2))
        grey = image if image.ndim == 2 else image[..., 1]
        assert not looks_like_mask(image) and not looks_like_mask(grey), modality
        assert not looks_like_mask(mask.astype(np.float32) / 255)
    rng = np.random.default_rng(0)
    assert not looks_like_mask(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    assert not looks_like_mask(np.zeros((64, 64), np.uint8))
    assert looks_like_mask(np.dstack([mask] * 3))  # saved as RGB, as Kvasir-SEG's masks are
    coloured = np.dstack([mask, mask // 2, mask])  # channels that differ: a picture
    assert not looks_like_mask(coloured)


def test_a_grey_alpha_array_is_judged_and_binarised_by_its_grey_channel():
    """(H, W, 2) is grey + alpha (napari's own reader of an LA PNG, as MoNuSeg's masks):
    looks_like_mask and binarise_mask use its grey channel, as read_mask reads the file;
    an opaque alpha is never foreground, and a grey picture with alpha is no mask."""
    from napari_tmunet.data.images import binarise_mask, is_grey_alpha, looks_like_mask

    image, mask = load_sample("ultrasound")
    mask = (mask > 0).astype(np.uint8) * 255  # 0/255, as MoNuSeg's
    opaque = np.full_like(mask, 255)
    assert is_grey_alpha(np.dstack([mask, opaque]).shape) and not is_grey_alpha(mask.shape)
    assert not is_grey_alpha((2, 64, 64)) and not is_grey_alpha((64, 64, 3))
    assert looks_like_mask(np.dstack([mask, opaque])) and looks_like_mask(np.dstack([mask, mask]))
    assert not looks_like_mask(np.dstack([image, opaque]))
    foreground, rule = binarise_mask(np.dstack([mask, opaque]))
    assert rule == ">127" and np.array_equal(foreground, mask > 127)


@pytest.mark.skipif(not (EXTRA / "CPM15").is_dir(), reason="extra-data CPM15 not present")
def test_looks_like_mask_on_cpm15_masks_and_images():
    """CPM15's instance-id PNG masks (uint16) look like masks; its H&E images do not."""
    from napari_tmunet.data.images import looks_like_mask

    for name in ("image01.png", "image02.png"):
        assert looks_like_mask(read_image(EXTRA / "CPM15" / "masks" / name)), name
        assert not looks_like_mask(read_image(EXTRA / "CPM15" / "images" / name)), name
