"""Hostile image files: pixel bombs, lying headers, complex pixels, FIFOs, unreadable
files, NaN pixels, slivers; and large TIFFs read lazily and segmented in bands."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_tmunet.data.budget import DEFAULT_MAX_PIXELS, max_pixels
from napari_tmunet.data.cache import decode_folder
from napari_tmunet.data.datasets import DatasetError, find_pairs
from napari_tmunet.data.images import (
    ImageReadError,
    ImageTooLargeError,
    image_shape,
    open_image,
    read_image,
    read_pixel_size,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "napari_tmunet" / "samples"


def _blank_tiled_tiff(path: Path, height: int, width: int, tile: int = 256) -> Path:
    """A small file claiming a large image: identical compressed blank tiles."""
    n = -(-height // tile) * -(-width // tile)
    blank = np.zeros((tile, tile), np.uint8)
    tiles = itertools.repeat(blank, n)
    tifffile.imwrite(
        path, tiles, shape=(height, width), dtype=np.uint8, tile=(tile, tile), compression="zlib"
    )
    return path


def _png_with_size(source: Path, path: Path, width: int, height: int) -> Path:
    """``source`` PNG with its IHDR edited to claim ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(source.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_budget_defaults_and_setting(monkeypatch, tmp_path):
    assert max_pixels() == DEFAULT_MAX_PIXELS == 256 * 2**20
    settings = Path(os.environ["NAPARI_TMUNET_CONFIG_DIR"]) / "settings.json"
    settings.write_text('{"max_pixels": 1000}')
    assert max_pixels() == 1000
    monkeypatch.setenv("NAPARI_TMUNET_MAX_PIXELS", "5000")
    assert max_pixels() == 5000 and max_pixels(7) == 7
    with pytest.raises(ValueError, match="positive"):
        max_pixels(0)


def test_huge_tiled_tiff_is_refused_fast_and_opens_lazily(tmp_path):
    path = _blank_tiled_tiff(tmp_path / "slide.tif", 40000, 30000)
    assert path.stat().st_size < 2_000_000  # 1.2 Gpix claimed by a small file
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"40000x30000 .* over the pixel budget"):
        read_image(path)
    assert time.perf_counter() - start < 2.0
    assert image_shape(path) == (40000, 30000)
    lazy = open_image(path)
    assert not isinstance(lazy, np.ndarray) and lazy.shape == (40000, 30000)
    assert np.asarray(lazy[20000:20010, 100:120]).shape == (10, 20)
    with pytest.raises(ImageTooLargeError):
        read_image(_blank_tiled_tiff(tmp_path / "small.tif", 600, 600), max_pixels=1000)


def test_sixteen_bit_png_bomb_is_refused_before_decoding(tmp_path):
    """16-bit colour PNGs decode through imagecodecs, outside Pillow's bomb check."""
    small = tmp_path / "rgb16.png"
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(small)  # 16-bit grey as a base
    array = np.zeros((64, 64, 3), np.uint16)
    import imagecodecs

    small.write_bytes(imagecodecs.png_encode(array))
    bomb = _png_with_size(small, tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        read_image(bomb)
    with pytest.raises(ImageTooLargeError):  # a real one, with a lowered budget
        read_image(small, max_pixels=1000)
    assert read_image(small).shape == (64, 64, 3)


def test_bit_flipped_tiff_claiming_an_absurd_shape_is_refused_fast(tmp_path):
    path = tmp_path / "flipped.tif"
    tifffile.imwrite(path, np.zeros((3, 50, 50), np.uint8))
    data = bytearray(path.read_bytes())
    # ImageLength (tag 257) of each page: claim 71,303,208 rows.
    for page in tifffile.TiffFile(path).pages:
        tag = page.tags["ImageLength"]
        struct.pack_into("<I", data, tag.valueoffset, 71_303_208)
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match="flipped.tif"):
        read_image(path)
    with pytest.raises(ImageReadError, match="flipped.tif"):
        open_image(path)
    assert time.perf_counter() - start < 3.0


def test_complex_tiff_is_refused_everywhere(tmp_path, monkeypatch):
    root = _dataset(tmp_path)
    tifffile.imwrite(root / "images" / "c.tif", np.ones((32, 32), np.complex64))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "c.png")
    with pytest.raises(ImageReadError, match="complex-valued"):
        read_image(root / "images" / "c.tif")
    with pytest.raises(DatasetError, match="complex-valued"):
        find_pairs(root)
    cache = decode_folder(root, skip_bad=True)
    assert "c" not in cache.names and any("complex" in why for _, why in cache.skipped)
    from napari_tmunet import _reader

    shown: list[str] = []
    monkeypatch.setattr(_reader, "_notify_error", shown.append)
    assert _reader.read_images(str(root / "images" / "c.tif")) == [(None,)]
    assert len(shown) == 1 and "complex-valued" in shown[0]


def test_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    results: list = []
    thread = threading.Thread(target=lambda: results.append(read_pixel_size(fifo)), daemon=True)
    thread.start()
    thread.join(5)
    assert results == [None]
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(fifo)


def test_unreadable_file_in_a_dataset_is_named(tmp_path):
    """A file this user may not read (the issue's raw PermissionError traceback)."""
    root = _dataset(tmp_path)
    locked = root / "images" / "0.png"
    locked.chmod(0)
    script = (
        "from napari_tmunet.data.cache import decode_folder\n"
        "from napari_tmunet.data.datasets import DatasetError\n"
        f"cache = decode_folder({str(root)!r}, skip_bad=True)\n"
        "print(sorted(cache.names), cache.skipped)\n"
        "try:\n"
        f"    decode_folder({str(root)!r})\n"
        "except DatasetError as e:\n"
        "    print('REFUSED', e)\n"
    )
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:  # root reads everything: drop that capability (setpriv)
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop the read override")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "['1', '2']" in run.stdout and "permission denied" in run.stdout
    assert "REFUSED" in run.stdout and "0.png" in run.stdout


def test_nan_pixels_are_refused_or_reported(tmp_path, caplog):
    root = _dataset(tmp_path)
    tifffile.imwrite(root / "images" / "0.tif", np.full((64, 64), np.nan, np.float32))
    (root / "images" / "0.png").unlink()
    some = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    some[:4] = np.nan
    tifffile.imwrite(root / "images" / "1.tif", some)
    (root / "images" / "1.png").unlink()
    with pytest.raises(DatasetError, match="0.tif has no finite pixels"):
        decode_folder(root)
    with caplog.at_level(logging.WARNING):
        cache = decode_folder(root, skip_bad=True)
    assert cache.names == ["1", "2"]
    assert "1.tif: 256 NaN or infinite values" in caplog.text


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (500, 2)])
def test_slivers_are_not_trained_on(tmp_path, shape):
    root = _dataset(tmp_path)
    Image.fromarray(np.zeros(shape, np.uint8)).save(root / "images" / "0.png")
    Image.fromarray(np.zeros(shape, np.uint8)).save(root / "masks" / "0.png")
    with pytest.raises(DatasetError, match=f"{shape[0]}x{shape[1]} .*too small to train on"):
        decode_folder(root)
    assert decode_folder(root, skip_bad=True).names == ["1", "2"]


def _dataset(tmp_path: Path) -> Path:
    """Three real pairs cut from a bundled sample: 0, 1, 2."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.asarray(Image.open(SAMPLES / "nuclei_image.png"))
    mask = np.asarray(Image.open(SAMPLES / "nuclei_mask.png"))
    for i in range(3):
        crop = np.s_[i * 64 : i * 64 + 64, :64]
        Image.fromarray(image[crop]).save(root / "images" / f"{i}.png")
        Image.fromarray(mask[crop]).save(root / "masks" / f"{i}.png")
    return root


def test_lazy_reader_layer_is_multiscale(tmp_path):
    from napari_tmunet._reader import image_layer_data

    path = _blank_tiled_tiff(tmp_path / "slide.tif", 20000, 17000)
    levels, kwargs, kind = image_layer_data(path)
    assert kind == "image" and kwargs["multiscale"] and kwargs["metadata"]["lazy"]
    assert levels[0].shape == (20000, 17000) and max(levels[-1].shape) <= 2048
    assert np.asarray(levels[-1][:5, :5]).shape == (5, 5)


def test_shared_dataset_copy_with_bad_files_is_reported(tmp_path):
    """Real CVC-ClinicDB files among hostile ones (skipped when the datasets are absent)."""
    from _paths import DATASETS

    source = DATASETS / "CVC-ClinicDB"
    if not (source / "images" / "1.png").is_file():
        pytest.skip("shared datasets not present")
    root = tmp_path / "cvc"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for name in ("1", "2", "3"):
            found = next((source / sub).glob(f"{name}.*"))
            shutil.copy(found, root / sub / found.name)
    (root / "images" / "2.png").write_bytes((source / "images" / "2.png").read_bytes()[:300])
    tifffile.imwrite(root / "images" / "3.tif", np.zeros((288, 384), np.complex64))
    (root / "images" / "3.png").unlink()
    cache = decode_folder(root, skip_bad=True)
    assert cache.names == ["1"]
    assert {name for name, _ in cache.skipped} == {"2", "3"}
