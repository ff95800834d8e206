"""Checkpoint round trip and refusal of bad files."""

import errno
import pickle

import pytest
import torch
from _readonly import read_only_view

from napari_tmunet.checkpoint import (
    CheckpointError,
    CheckpointSaveError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.model import build_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    model = build_model(config)
    # non-trivial BatchNorm statistics, so the round trip covers buffers too
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    model.eval()
    path = save_checkpoint(
        tmp_path / "model.pt",
        model,
        config,
        InputConfig(),
        metadata={"dataset": "x"},
        metrics={"dice": 0.8},
    )
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    x = torch.rand(1, 3, 80, 72)
    loaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    assert loaded.metadata == {"dataset": "x"} and loaded.metrics == {"dice": 0.8}
    assert loaded.input_config == InputConfig()
    # a stranger's file cannot run code: plain weights_only loading works
    payload = torch.load(path, weights_only=True)
    assert isinstance(payload["model_config"], dict)


def test_half_precision_is_close_and_smaller(saved, tmp_path):
    model, path = saved
    half = save_checkpoint(
        tmp_path / "half.pt", model, ModelConfig.variant("t"), InputConfig(), half=True
    )
    assert half.stat().st_size < 0.7 * path.stat().st_size
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = torch.sigmoid(model(x)), torch.sigmoid(load_checkpoint(half).model(x))
    assert (a - b).abs().max() < 2e-2


def test_truncated_file(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)


def test_a_damaged_weight_record_is_refused(saved, tmp_path):
    """A lost disk block inside a weight tensor: torch.load would read other weights
    without a word; the zip record's checksum names it."""
    import struct
    import zipfile

    _, path = saved
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename),
                     key=lambda i: i.file_size)  # fmt: skip
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", raw[record.header_offset + 26 : record.header_offset + 30]
    )
    start = record.header_offset + 30 + name_len + extra_len
    raw[start : start + 512] = bytes(512)  # zeroed, as a lost block reads
    bad = tmp_path / "damaged.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"damaged.pt: it is damaged \(its record .* fails"):
        load_checkpoint(bad)
    assert load_checkpoint(path) is not None  # the intact file still loads


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a checkpoint at all", "cannot read"),
        ({"weights": 1}, "not a napari-tmunet checkpoint"),
        ({"format": "napari-tmunet", "format_version": 99}, "version 99"),
        ({"format": "napari-tmunet", "format_version": 1}, "lacks"),
        (Evil(), "cannot read"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, content, match):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, Evil):
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_incompatible_config_and_weights(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["future_option"] = 1
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer napari-tmunet"):
        load_checkpoint(tmp_path / "future.pt")
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["channels"] = [16, 32, 64, 128, 256]
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model, ModelConfig.variant("t"), InputConfig())
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_saved_files_are_readable_by_others(saved):
    _, path = saved
    assert path.stat().st_mode & 0o044  # not mkstemp's owner-only 0600


def test_save_into_a_read_only_folder_names_the_checkpoint(saved, tmp_path):
    """A read-only run folder: one line naming the checkpoint and why; the earlier file and
    the folder are as they were (no temporary file named or left)."""
    model, path = saved
    before = sorted(p.name for p in path.parent.iterdir())
    with read_only_view(path.parent) as view, pytest.raises(CheckpointSaveError) as error:
        save_checkpoint(view / path.name, model, ModelConfig.variant("t"), InputConfig())
    message = str(error.value)
    assert error.value.errno == errno.EROFS and "\n" not in message
    assert message.endswith(
        f"could not write checkpoint {view / path.name} (an earlier file of that name is "
        f"unchanged): {view} is on a read-only file system; choose another folder"
    )
    assert sorted(p.name for p in path.parent.iterdir()) == before
