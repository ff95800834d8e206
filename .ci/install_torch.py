"""Install PyTorch for ``.ci/setup.sh``: the CPU build, without pulling a CUDA build.

On Linux, plain ``pip install torch`` resolves to the CUDA build (several GB). PyTorch's
CPU wheel index serves the CPU build, so it is preferred when it answers; when it does not
(no network, a mirror-only machine) plain pip is used, which on such machines resolves to
whatever build the mirror carries. An environment that already has torch (e.g. a CUDA
build installed by the user, see README "GPU") is left alone.

Usage: ``python .ci/install_torch.py`` (run with the virtual environment's python).
Environment (for tests and unusual set-ups):

- ``TMUNET_PIP``: the pip command to run (default: this python's ``-m pip``);
- ``TMUNET_TORCH_INDEX``: the CPU wheel index (default: PyTorch's);
- ``TMUNET_TORCH_INDEX_TIMEOUT``: seconds to wait for the index (default 5).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import urllib.request

TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def index_reachable(index: str, timeout: float) -> bool:
    """True when the index's torch page answers within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/torch/", timeout=timeout) as reply:
            return 200 <= reply.status < 300
    except (OSError, ValueError):  # URLError, timeouts and refused connections are OSErrors
        return False


def main() -> int:
    pip = shlex.split(os.environ.get("TMUNET_PIP") or f"{shlex.quote(sys.executable)} -m pip")
    index = os.environ.get("TMUNET_TORCH_INDEX", CPU_INDEX)
    timeout = float(os.environ.get("TMUNET_TORCH_INDEX_TIMEOUT", "5"))
    if subprocess.run([*pip, "show", "torch"], capture_output=True).returncode == 0:
        print("install_torch: torch is already installed; keeping it")
        return 0
    if index_reachable(index, timeout):
        print(f"install_torch: {TORCH} (CPU build) from {index}")
        if subprocess.run([*pip, "install", "-q", TORCH, "--index-url", index]).returncode == 0:
            return 0
        print("install_torch: the CPU index failed; trying plain pip", file=sys.stderr)
    else:
        print(f"install_torch: {index} not reachable; installing {TORCH} with plain pip")
    return subprocess.run([*pip, "install", "-q", TORCH]).returncode


if __name__ == "__main__":
    sys.exit(main())
