"""``.ci/install_torch.py``: which pip command the set-up script issues for PyTorch.

pip is replaced by a stub that records its arguments; the CPU wheel index is a local HTTP
server (reachable) or a closed local port (unreachable), so the real choice is exercised
without network.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _paths import REPO

SCRIPT = REPO / ".ci" / "install_torch.py"
TORCH = "torch==2.13.0"

# Records each call as one JSON line; `show` succeeds when torch is "installed", `install`
# fails when asked to (to exercise the fallback).
FAKE_PIP = """
import json, os, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "show":
    sys.exit(0 if os.environ.get("FAKE_TORCH_INSTALLED") else 1)
if "--index-url" in sys.argv and os.environ.get("FAKE_INDEX_INSTALL_FAILS"):
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def cpu_index(tmp_path_factory):
    """A local stand-in for https://download.pytorch.org/whl/cpu (serves ``torch/``)."""
    root = tmp_path_factory.mktemp("index")
    (root / "whl" / "cpu" / "torch").mkdir(parents=True)
    page = root / "whl" / "cpu" / "torch" / "index.html"
    page.write_text("<a href='torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl'>torch</a>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def _run(tmp_path: Path, index: str, **flags: str) -> tuple[int, list[list[str]], float]:
    fake = tmp_path / "fake_pip.py"
    fake.write_text(FAKE_PIP)
    log = tmp_path / "pip.log"
    env = {
        **os.environ,
        "TMUNET_PIP": f"{sys.executable} {fake}",
        "TMUNET_TORCH_INDEX": index,
        "TMUNET_TORCH_INDEX_TIMEOUT": "2",
        "FAKE_PIP_LOG": str(log),
        **flags,
    }
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, calls, seconds


def test_reachable_index_installs_the_cpu_build(tmp_path, cpu_index):
    code, calls, _ = _run(tmp_path, cpu_index)
    assert code == 0
    assert calls == [["show", "torch"], ["install", "-q", TORCH, "--index-url", cpu_index]]


def test_unreachable_index_falls_back_to_plain_pip_quickly(tmp_path):
    code, calls, seconds = _run(tmp_path, _closed_port_url())
    assert code == 0
    assert calls == [["show", "torch"], ["install", "-q", TORCH]]
    assert seconds < 10


def test_unresolvable_host_falls_back(tmp_path):
    """As on this project's machines: download.pytorch.org cannot be resolved."""
    code, calls, _ = _run(tmp_path, "https://no-such-host.invalid/whl/cpu")
    assert code == 0 and calls[-1] == ["install", "-q", TORCH]


def test_failed_index_install_falls_back(tmp_path, cpu_index):
    code, calls, _ = _run(tmp_path, cpu_index, FAKE_INDEX_INSTALL_FAILS="1")
    assert code == 0
    assert calls[1:] == [
        ["install", "-q", TORCH, "--index-url", cpu_index],
        ["install", "-q", TORCH],
    ]


def test_installed_torch_is_kept(tmp_path, cpu_index):
    code, calls, _ = _run(tmp_path, cpu_index, FAKE_TORCH_INSTALLED="1")
    assert code == 0 and calls == [["show", "torch"]]


def test_setup_script_options():
    """An unknown option is refused before any work (``--test`` is the only one)."""
    setup = REPO / ".ci" / "setup.sh"
    proc = subprocess.run(["bash", str(setup), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--test" in proc.stderr
