"""bench/parts.py: caches split into per-call folders come back whole, or not at all."""

import importlib.util
import os

import pytest
from _paths import REPO

spec = importlib.util.spec_from_file_location("parts", REPO / "bench" / "parts.py")
parts = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parts)

MIB = 1 << 20


def test_pack_bins_parts_per_call_and_join_restores_each_file(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    a.write_bytes(os.urandom(3 * MIB))
    b.write_bytes(os.urandom(2 * MIB + 5))
    originals = {a.name: a.read_bytes(), b.name: b.read_bytes()}
    folders = parts.pack([a, b], max_mib=1, call_mib=2.5, out=tmp_path / "up")
    for folder in folders:  # what one device call carries
        size = sum(f.stat().st_size for f in folder.iterdir() if f.suffix != ".sha256")
        assert size <= 2.5 * MIB
    assert {f.name for f in folders[0].iterdir()} >= {"a.npz.sha256", "b.npz.sha256"}
    assert not a.exists() or a.read_bytes() == originals["a.npz"]  # the source is kept
    remote = tmp_path / "remote"
    remote.mkdir()
    for folder in folders:
        for f in folder.iterdir():
            f.replace(remote / f.name)
    for name, data in originals.items():
        assert parts.join(remote / name).read_bytes() == data
    assert not list(remote.glob("*.part*"))  # parts removed once joined


def test_join_refuses_missing_or_altered_parts(tmp_path):
    a = tmp_path / "a.npz"
    a.write_bytes(os.urandom(2 * MIB + 1))
    split = parts.split(a, max_mib=1)
    a.unlink()
    split[1].write_bytes(b"x" + split[1].read_bytes()[1:])
    with pytest.raises(SystemExit, match="SHA-256"):
        parts.join(a)
    assert not a.exists()  # nothing half-joined is left under the file's name
    split[2].unlink()
    with pytest.raises(SystemExit, match="parts missing"):
        parts.join(a)


def test_a_new_pack_replaces_only_the_old_call_folders(tmp_path):
    """The call scripts beside the call folders (e.g. .gpu-up/cmd) survive a new pack."""
    a = tmp_path / "a.npz"
    a.write_bytes(os.urandom(3 * MIB))
    up = tmp_path / "up"
    for old in ("c1", "c7"):
        (up / old).mkdir(parents=True)
        (up / old / "stale.part0").write_bytes(b"old")
    (up / "cmd").mkdir()
    (up / "cmd" / "poll.sh").write_text("echo poll\n")
    folders = parts.pack([a], max_mib=1, call_mib=2.5, out=up)
    assert (up / "cmd" / "poll.sh").read_text() == "echo poll\n"
    assert not (up / "c7").exists() and not list(up.glob("c*/stale.part0"))
    assert sorted(f.name for f in up.iterdir()) == sorted(["cmd", *(f.name for f in folders)])
