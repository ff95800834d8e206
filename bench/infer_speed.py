"""Inference speed of the plugin's own path (``inference.segment``, ``fast_forward``), one run.

Rows, each a JSON line appended to ``--out`` and skipped when the file already holds it,
so a run cut short by a time limit resumes where it stopped:

- ``frame``: a 384x288 colonoscopy frame (the bundled sample), call to labels with the
  shipped colonoscopy model (``inference.segment``, resize mode); median after warm-up,
  fp32 and bf16 through CUDA graphs, and ``bf16-eager``: the path before them (graphs
  off, bf16 as the plugin ran on CUDA until then);
- ``first``: the first Segment in a fresh process (a subprocess: Python start, imports,
  model load, kernels, one frame to labels), first with empty Triton kernel and bytecode
  caches (the first-ever cost), then with the caches that run filled (a machine that has
  run the plugin before), twice, each beside ``compile-at-import`` (the mLSTM kernels
  imported as before commit 0f22a97, loading torch's compiler stack);
- ``tile``: an H&E image of ``--side`` squared (the bundled nuclei sample repeated), tile
  mode with the shipped nuclei model, in memory (``tile``) and as a TIFF read lazily in
  bands (``tile-stream``), call to labels, Mpix/s (``bf16-eager``: graphs off, 4 tiles
  per pass, bf16, as before, but with tiles cut and blended on the GPU already: an
  upper bound for the path before);
- ``model``: the model alone, ``--size`` squared at batch 1 and 16 (``--batches``):
  eager fp32, eager bf16, CUDA graph fp32, CUDA graph bf16 (``fast_forward``), per
  variant. On the CPU only eager fp32 runs.

    python bench/infer_speed.py --out infer.jsonl                  # on a GPU: every row
    python bench/infer_speed.py --out cpu.jsonl --device cpu --small  # CPU-sized
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_tmunet import fast_forward, registry  # noqa: E402
from napari_tmunet.config import ModelConfig  # noqa: E402
from napari_tmunet.data.images import read_image  # noqa: E402
from napari_tmunet.inference import run_to_completion, segment  # noqa: E402
from napari_tmunet.model import build_model  # noqa: E402

SAMPLES = ROOT / "napari_tmunet" / "samples"
MODEL_MODES = ("eager-fp32", "eager-bf16", "graph-fp32", "graph-bf16")

FIRST_SEGMENT = """
import contextlib, json, sys, time
t0 = time.perf_counter()
from napari_tmunet import registry
if sys.argv[3] == "compile-at-import":  # the import before 0f22a97: see model/mlstm.py
    import napari_tmunet.model.mlstm as mlstm
    mlstm._compile_left_out = contextlib.nullcontext
from napari_tmunet.data.images import read_image
from napari_tmunet.inference import run_to_completion, segment
t1 = time.perf_counter()
checkpoint = registry.load_model("colonoscopy", sys.argv[1])
t2 = time.perf_counter()
image = read_image(sys.argv[2])
labels = run_to_completion(segment(image, checkpoint)).labels
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2,
                  "foreground": int(labels.sum()), "modules": len(sys.modules),
                  "dynamo": "torch._dynamo" in sys.modules}))
"""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


class Eager:
    """Within: no CUDA graphs (the path before them), for "-eager" modes."""

    def __init__(self, mode: str):
        self.on, self.saved = mode.endswith("-eager"), None

    def __enter__(self):
        self.saved = os.environ.get(fast_forward.GRAPHS_ENV)
        if self.on:
            os.environ[fast_forward.GRAPHS_ENV] = "0"

    def __exit__(self, *exc):
        os.environ.pop(fast_forward.GRAPHS_ENV, None)
        if self.saved is not None:
            os.environ[fast_forward.GRAPHS_ENV] = self.saved


def frame_row(device, mode: str, repeats: int) -> dict:
    checkpoint = registry.load_model("colonoscopy", str(device))
    image = read_image(SAMPLES / "colonoscopy_image.png")  # (288, 384, 3) uint8
    precision = mode.split("-")[0]

    def call():
        return run_to_completion(segment(image, checkpoint, precision=precision)).labels

    with Eager(mode):
        times = timed(call, device, repeats, warmup=3)
    return {
        "shape": list(image.shape),
        "ms": 1000 * statistics.median(times),
        "ms_min": 1000 * min(times),
    }


def first_rows(device) -> list[dict]:
    """The fresh-process Segment, first with empty kernel and bytecode caches, then with
    the caches that run filled, alternating today's import of the mLSTM kernels with the
    one before (``compile-at-import``: their ``@torch.compile`` loads torch's compiler)."""
    rows = []
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as pyc:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "TRITON_CACHE_DIR": cache, "PYTHONPATH": path}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as on a user's machine
        env["PYTHONPYCACHEPREFIX"] = pyc
        kinds = ["first-ever", *["cache-warm", "compile-at-import"] * 2]
        for kind in kinds:
            start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    FIRST_SEGMENT,
                    str(device),
                    str(SAMPLES / "colonoscopy_image.png"),
                    kind,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip().splitlines()[-1])
            inside = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"variant": kind, "process_s": wall, **inside})
    return rows


def he_image(side: int) -> np.ndarray:
    """(side, side, 3) uint8 H&E: the nuclei sample repeated (mirrored, no seams)."""
    tile = read_image(SAMPLES / "nuclei_image.png")[..., :3]
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    reps = -(-side // tile.shape[0]), -(-side // tile.shape[1])
    return np.ascontiguousarray(np.tile(tile, (*reps, 1))[:side, :side])


def tile_row(device, side: int, stream: bool, mode: str) -> dict:
    checkpoint = registry.load_model("nuclei", str(device))
    image = he_image(side)
    options = {"mode": "tile", "precision": mode.split("-")[0]}
    if mode.endswith("-eager"):
        options["batch_size"] = 4  # the batch before batches by device
    with tempfile.TemporaryDirectory() as folder, Eager(mode):
        if stream:  # a TIFF read lazily, in bands (over the pixel budget)
            import tifffile

            from napari_tmunet.data.images import open_image

            path = Path(folder) / "he.tif"
            tifffile.imwrite(path, image, tile=(256, 256))
            image = open_image(path, max_pixels=side * side // 4)
            options["max_pixels"] = side * side // 4
        warm = he_image(min(side, 2048 if device.type == "cuda" else 512))
        run_to_completion(segment(warm, checkpoint, **options))  # kernels, full-batch graph
        sync(device)
        start = time.perf_counter()
        labels = run_to_completion(segment(image, checkpoint, **options)).labels
        sync(device)
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "side": side,
        "s": seconds,
        "mpix_s": side * side / seconds / 1e6,
        "foreground": float(labels.mean()),
        "peak_gb": peak,
    }


def model_row(device, variant: str, mode: str, batch: int, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig.variant(variant)).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    how, precision = mode.split("-")
    amp = precision == "bf16"
    fast = fast_forward.FastForward(model)

    def call():
        if how == "graph":
            return fast(x, amp)
        return fast_forward.eager_logits(model, x, amp)

    times = timed(call, device, repeats, warmup=3)
    if how == "graph" and fast.failed:
        raise RuntimeError("capture failed: ran eagerly")
    return {"ms": 1000 * statistics.median(times), "ms_min": 1000 * min(times)}


def jobs(args, device) -> list[tuple]:
    """(row, variant, mode, batch) to run, in order of importance."""
    cuda = device.type == "cuda"
    precisions = ("fp32", "bf16") if cuda else ("fp32",)
    before = ("bf16-eager",) if cuda else ()  # the path before: bf16, no graphs, batch 4
    out = [("frame", "colonoscopy", p, 1) for p in (*precisions, *before)]
    out += [("first", "colonoscopy", "fp32", 1)]
    out += [("tile", "nuclei", p, 0) for p in (*precisions, *before)]
    modes = MODEL_MODES if cuda else ("eager-fp32",)
    out += [("model", v, m, b) for v in args.variants for b in args.batches for m in modes]
    out += [("tile-stream", "nuclei", precisions[0], 0)]
    return out


def run_job(args, device, row, variant, mode, batch) -> list[dict]:
    if row == "frame":
        return [frame_row(device, mode, args.repeats)]
    if row == "first":
        return first_rows(device)
    if row in ("tile", "tile-stream"):
        return [tile_row(device, args.side, row == "tile-stream", mode)]
    return [model_row(device, variant, mode, batch, args.size, args.repeats)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON lines file (appended)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="CPU sizes: tile 1024, batch 1 only")
    p.add_argument("--side", type=int, default=None, help="tile rows' image side (8192)")
    p.add_argument("--size", type=int, default=512, help="model rows' input side (512)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="model rows (1 16)")
    p.add_argument("--variants", nargs="+", default=["b", "s", "t"])
    p.add_argument("--repeats", type=int, default=None, help="timed calls (20; 3 small)")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (frame, ...)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    args.side = args.side or (1024 if args.small else 8192)
    args.batches = args.batches or ([1] if args.small else [1, 16])
    args.repeats = args.repeats or (3 if args.small else 20)
    done = set()
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["row"], r["job_variant"], r["mode"], r["batch"]))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for job in jobs(args, device):
        if job in done or (args.rows and job[0] not in args.rows):
            continue
        row, variant, mode, batch = job
        try:
            results = run_job(args, device, *job)
        except Exception as err:  # a row that fails is recorded, the others still run
            results = [{"error": f"{type(err).__name__}: {err}"[:500]}]
        for r in results:
            r = {
                "row": row,
                "variant": r.pop("variant", variant),
                "mode": mode,
                "batch": batch,
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()},
                "job_variant": variant,
                "device": name,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
            print(json.dumps(r), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)


if __name__ == "__main__":
    main()
