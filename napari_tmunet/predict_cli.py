"""``napari-tmunet-predict INPUT_DIR OUTPUT_DIR``: segment every image of a folder.

Masks follow the writer's rules (``imageio.write_mask``): binary masks as PNG 0/255 named
after the image (``<stem>.png``), instance labels as TIFF (``<stem>.tif``); a stack of
frames gives one mask per frame (``<stem>_z0000.png``, ...). Nothing already in
OUTPUT_DIR is overwritten unless ``--overwrite`` is given. Files that fail are listed
with the reason at the end, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from .registry import describe_models

    parser = argparse.ArgumentParser(
        prog="napari-tmunet-predict",
        description=(
            "Segment every image in INPUT_DIR with a TM-UNet model and write the masks to "
            "OUTPUT_DIR (PNG 0/255 for binary masks, TIFF for instance labels). "
            "Research use only, not a medical device."
        ),
        epilog="shipped models (--model NAME or its modality):\n" + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input_dir", type=Path, help="folder of images (png, tif, jpg, bmp)")
    parser.add_argument("output_dir", type=Path, help="folder for the masks (created if needed)")
    parser.add_argument(
        "--model",
        default=None,
        help="a shipped model's name or modality (listed below) or a checkpoint file "
        "(default: the shipped model that suits the first image)",
    )
    parser.add_argument(
        "--mode",
        choices=("resize", "tile"),
        default="resize",
        help="resize to the model's input size (paper; default) or sliding-window tiles "
        "(large images)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold (default: the model's own)",
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument(
        "--instances",
        action="store_true",
        help="instance labels with touching objects split, written as TIFF",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace masks already in OUTPUT_DIR"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    return parser


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (hidden files skipped), in natural order."""
    from .data.datasets import natural_key
    from .data.images import IMAGE_SUFFIXES

    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def output_stems(images: list[Path]) -> dict[Path, str]:
    """Mask base name of each image: its stem, plus its suffix where stems collide."""
    counts = Counter(p.stem for p in images)
    return {
        p: p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}" for p in images
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    input_dir, output_dir = args.input_dir, args.output_dir
    if not input_dir.is_dir():
        print(f"error: INPUT_DIR {input_dir} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    if output_dir.exists() and output_dir.resolve() == input_dir.resolve():
        print(
            "error: OUTPUT_DIR must differ from INPUT_DIR (masks written there would be taken "
            "for images next time)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        print(f"error: --threshold {args.threshold} must be in (0, 1)", file=sys.stderr)
        return EXIT_USAGE
    images = list_images(input_dir)
    if not images:
        print(f"error: no images (png, tif, tiff, jpg, jpeg, bmp) in {input_dir}", file=sys.stderr)
        return EXIT_USAGE

    from tqdm import tqdm

    from . import registry
    from .checkpoint import CheckpointError
    from .data.images import ImageReadError, read_image, write_mask
    from .inference import run_to_completion, segment

    model = args.model
    if model is None:
        entries = registry.available_models()
        if not entries:
            print(
                "error: no shipped model is installed; pass --model PATH to a checkpoint "
                "made by napari-tmunet-train",
                file=sys.stderr,
            )
            return EXIT_USAGE
        model = entries[0].name
        try:  # the model that suits the data, judged on the first readable image
            entry = registry.default_model_for(read_image(images[0]))
            model = entry.name if entry is not None else model
        except ImageReadError:
            pass
    try:
        checkpoint = registry.load_model(model, args.device)
    except (ValueError, RuntimeError, CheckpointError) as err:
        print(f"error: cannot load model {model!r}: {err}", file=sys.stderr)
        return EXIT_USAGE

    suffix = ".tif" if args.instances else ".png"
    stems = output_stems(images)
    failed: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    written = 0
    print(
        f"napari-tmunet-predict: {len(images)} images, model {model!r}, mode {args.mode}, "
        f"{'instances' if args.instances else 'binary'} -> {output_dir}",
        file=sys.stderr,
    )
    bar = tqdm(images, unit="image", file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name, refresh=False)
        existing = sorted(output_dir.glob(f"{_glob_escape(stems[path])}{suffix}")) + sorted(
            output_dir.glob(f"{_glob_escape(stems[path])}_z[0-9][0-9][0-9][0-9]{suffix}")
        )
        if existing and not args.overwrite:
            skipped.append(path)
            continue
        try:
            image = read_image(path)
            result = run_to_completion(
                segment(
                    image,
                    checkpoint,
                    threshold=args.threshold,
                    mode=args.mode,
                    instances=args.instances,
                    batch_size=args.batch_size,
                )
            )
            labels = result.labels
            if labels.ndim == 2:
                write_mask(output_dir / f"{stems[path]}{suffix}", labels)
            else:  # a stack: one mask per frame
                for z, frame in enumerate(labels):
                    write_mask(output_dir / f"{stems[path]}_z{z:04d}{suffix}", frame)
            written += 1
        except (ImageReadError, ValueError, RuntimeError, MemoryError, OSError) as err:
            failed.append((path, f"{type(err).__name__}: {err}"))
    bar.close()

    print(f"{written} of {len(images)} images segmented into {output_dir}", file=sys.stderr)
    if skipped:
        print(
            f"{len(skipped)} skipped: their masks already exist in {output_dir} (pass "
            "--overwrite to replace them): "
            + ", ".join(p.name for p in skipped[:10])
            + (" ..." if len(skipped) > 10 else ""),
            file=sys.stderr,
        )
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for path, reason in failed:
            print(f"  {path.name}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


if __name__ == "__main__":
    raise SystemExit(main())
