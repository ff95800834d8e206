"""The README's test command (pytest -n auto, one process per core): each worker's torch
uses its share of the cores (conftest's _share_the_cores), not one thread per core."""

import os

import pytest

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


@pytest.mark.skipif(WORKERS < 2, reason="not under pytest-xdist with several workers")
def test_each_worker_uses_its_share_of_the_cores():
    import subprocess
    import sys

    import torch

    share = max(1, (os.cpu_count() or 1) // WORKERS)
    assert torch.get_num_threads() == share
    # a process a test starts (napari-tmunet-predict, the launcher) gets the same share
    code = "import torch; print(torch.get_num_threads())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == str(share), done.stderr
