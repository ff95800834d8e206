"""Hostile checkpoints: truncated, bit-flipped, wrong types, zero sizes, pickle payloads.

Every one must end in a one-line ``CheckpointError`` naming the file, before any model is
built, and no payload may run. Derandomised hypothesis runs with a fixed example count.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from napari_tmunet.checkpoint import (  # noqa: E402
    CheckpointError,
    CheckpointSaveError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from napari_tmunet.config import InputConfig, ModelConfig  # noqa: E402
from napari_tmunet.model import build_model  # noqa: E402

FUZZ = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONFIG = ModelConfig.unet(channels=(2, 2, 2, 2, 2), in_channels=1)
INPUTS = InputConfig.for_channels(1, size=(32, 32))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    """The bytes of a small valid checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    save_checkpoint(path, build_model(CONFIG), CONFIG, INPUTS, metadata={"a": 1})
    return path.read_bytes()


def _payload(good: bytes) -> dict:
    return torch.load(io.BytesIO(good), weights_only=True)


def _refused(path: Path) -> str:
    """Load ``path``; it must fail with a one-line CheckpointError naming it."""
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert "weights_only" not in message  # never PyTorch's advice to load unsafely
    return message


@FUZZ
@given(data=st.data())
def test_truncated_and_bit_flipped_files(tmp_path, good, data):
    blob = bytearray(good)
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="length")]
    else:  # bit flips in the zip structure and pickle, not in raw tensor bytes
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            at = data.draw(st.sampled_from(_structure_offsets(good)), label="offset")
            blob[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(blob))
    try:
        load_checkpoint(path)
    except CheckpointError as error:
        assert str(path) in str(error) and "\n" not in str(error)


def _structure_offsets(good: bytes) -> list[int]:
    """Byte offsets of the zip headers, directory and pickle (where flips change meaning)."""
    offsets: list[int] = []
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        for info in archive.infolist():
            start = info.header_offset
            offsets += range(start, start + 30 + len(info.filename))
            if info.filename.endswith("data.pkl"):
                body = start + 30 + len(info.filename) + len(info.extra)
                offsets += range(body, body + info.compress_size)
    offsets += range(max(0, len(good) - 400), len(good))  # central directory
    return offsets


BAD_VALUES = st.one_of(
    st.none(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(-3, 5000), max_size=7),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
)


@FUZZ
@given(
    section=st.sampled_from(["model_config", "input_config"]),
    key=st.sampled_from(
        [
            "num_classes",
            "num_heads",
            "chunk_size",
            "channels",
            "in_channels",
            "pool_sizes",
            "arch",
            "use_xlstm",
            "size",
            "mean",
            "std",
            "threshold",
        ]
    ),
    value=BAD_VALUES,
)
def test_config_values_are_checked_before_building(tmp_path, good, section, key, value):
    payload = _payload(good)
    target = payload[section]
    if key not in target:
        return
    target[key] = value
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        assert str(path) in str(error) and "\n" not in str(error)
    else:  # accepted: then it is a sound config
        assert checkpoint.model_config.num_classes <= 1024


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda p: p["model_config"].update(num_classes=10**9), "num_classes"),
        (lambda p: p["model_config"].update(num_classes=1e9), "num_classes"),
        (lambda p: p["model_config"].update(num_heads=0), "num_heads"),
        (lambda p: p["model_config"].update(chunk_size=0), "chunk_size"),
        (lambda p: p.update(state_dict=[1, 2]), "'state_dict' is a list"),
        (lambda p: p.update(metadata=[1, 2]), "'metadata' is a list"),
        (lambda p: p.update(model_config="arch=unet"), "'model_config' is a str"),
        (lambda p: p.update(format_version="1"), "invalid checkpoint format version '1'"),
        (lambda p: p["input_config"].update(std=[float("nan")]), "std"),
        (lambda p: p["state_dict"].update(extra=3), "not tensors"),
        (
            lambda p: next(v for v in p["state_dict"].values() if v.is_floating_point()).fill_(
                float("nan")
            ),
            "NaN",
        ),
    ],
)
def test_bad_payloads_get_our_messages(tmp_path, good, edit, words):
    payload = _payload(good)
    edit(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    assert words in _refused(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty (0 bytes)" in _refused(path)


def test_huge_num_classes_is_refused_before_any_memory_is_used(tmp_path, good):
    """The issue's 1e9 classes reached 19.4 GB before refusal; now nothing is built."""
    from _memory import peak_kib, reset_peak_kib

    payload = _payload(good)
    payload["model_config"]["num_classes"] = 10**9
    path = tmp_path / "huge.pt"
    torch.save(payload, path)
    before = reset_peak_kib()
    _refused(path)
    assert peak_kib() - before < 50_000  # KiB


class _Payload:
    """Pickles as a call of ``func(*args)``: what an attacker's checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> list:
    touch = f"open({str(marker)!r}, 'w').write('ran')"
    return [
        _Payload(os.system, f"touch {marker}"),
        _Payload(eval, touch),
        _Payload(exec, touch),
        _Payload(subprocess.call, ["touch", str(marker)]),
        _Payload(Path.touch, marker),
        _Payload(__import__, "os"),
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("where", ["top", "metadata", "state_dict", "training_state", "raw"])
def test_pickle_payloads_are_refused_and_never_run(tmp_path, good, index, where):
    marker = tmp_path / "ran"
    evil = _payloads(marker)[index]
    path = tmp_path / "evil.pt"
    if where == "raw":
        path.write_bytes(pickle.dumps(evil))
    else:
        payload = _payload(good)
        if where == "top":
            payload = evil
        else:
            payload[where] = {"x": evil} if where != "state_dict" else {"w": evil}
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert "weights_only" not in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()


def test_full_disk_during_save_names_the_file_and_keeps_the_old_one(tmp_path):
    """A 1 MiB tmpfs (root) stands for a full disk; elsewhere torch.save meets ENOSPC."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        small = ModelConfig.unet(channels=(1, 1, 1, 1, 1), in_channels=1)
        path = save_checkpoint(mount / "last.pt", build_model(small), small, INPUTS)
        before = path.read_bytes()
        big = ModelConfig.unet(channels=(16, 32, 64, 128, 256), in_channels=1)  # ~7 MB
        with pytest.raises(CheckpointSaveError) as error:
            save_checkpoint(path, build_model(big), big, INPUTS)
        message = str(error.value)
        assert error.value.errno == errno.ENOSPC
        assert "no space left on device" in message and str(path) in message
        assert "\n" not in message
        assert path.read_bytes() == before  # the earlier checkpoint is intact
        assert [p.name for p in mount.iterdir()] == ["last.pt"]  # no temporary file left
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)  # lazy: tracebacks hold files
