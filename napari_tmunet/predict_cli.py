"""``napari-tmunet-predict INPUT_DIR OUTPUT_DIR``: segment every image of a folder.

Masks follow the writer's rules (``data.images.write_mask``): binary masks as PNG 0/255
named after the image (``<stem>.png``), instance labels as TIFF (``<stem>.tif``); a stack
of frames gives one mask per frame (``<stem>_z0000.png``, ...). Images whose names would
give one mask name get distinct ones (``a.png``, ``a.tif`` -> ``a_png``, ``a_tif``).
Nothing already in OUTPUT_DIR is overwritten unless ``--overwrite`` is given; OUTPUT_DIR
is checked to be writable and locked against a second run before any work. Mode,
threshold and the least object confidence default to the model's own. Images over the
pixel budget (``--max-pixels``) are read and segmented in bands (tile mode). Files that
fail are listed with the reason at the end, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from .options import DEVICES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOCK_TASK = "napari-tmunet-predict"


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
        default=None,
        help="resize to the model's input size (paper) or sliding-window tiles (large "
        "images); default: the mode the model was evaluated with",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold (default: the model's own)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="drop objects whose mean probability is below this, 0 keeps all (default: the "
        "model's own)",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument(
        "--instances",
        action="store_true",
        help="instance labels with touching objects split, written as TIFF",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace masks already in OUTPUT_DIR"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="tiles per forward pass (default: by device, more on a GPU)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="pixel budget: larger TIFFs are read and segmented in bands (tile mode), other "
        "larger files refused (default: the 'max_pixels' setting, else 268435456 = 256 Mpix)",
    )
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
    """Distinct mask base name of each image.

    Its stem; where stems collide, stem and suffix (``a.png``, ``a.tif`` -> ``a_png``,
    ``a_tif``); a name still taken (``a_png.png`` is also ``a_png``) gets ``_2``, ``_3``...
    Images keeping their own stem choose first. Names differ ignoring case too, for
    case-insensitive file systems.
    """
    from .data.datasets import natural_key

    counts = Counter(p.stem for p in images)
    wanted = {
        p: p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}" for p in images
    }
    used: set[str] = set()
    names: dict[Path, str] = {}
    for path in sorted(images, key=lambda p: (wanted[p] != p.stem, natural_key(p.name))):
        name, k = wanted[path], 2
        while name.lower() in used:
            name, k = f"{wanted[path]}_{k}", k + 1
        used.add(name.lower())
        names[path] = name
    return {p: names[p] for p in images}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _check_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    images = list_images(args.input_dir)
    if not images:
        print(
            f"error: no images (png, tif, tiff, jpg, jpeg, bmp) in {args.input_dir}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from .storage import FolderBusyError, folder_lock

    try:
        with folder_lock(args.output_dir, LOCK_TASK):
            return _predict(args, images)
    except FolderBusyError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _check_arguments(args) -> str | None:
    """What is wrong with the arguments (a sentence), or None; creates OUTPUT_DIR."""
    import tempfile

    input_dir, output_dir = args.input_dir, args.output_dir
    if not input_dir.is_dir():
        return f"INPUT_DIR {input_dir} is not a folder"
    if output_dir.exists() and output_dir.resolve() == input_dir.resolve():
        return (
            "OUTPUT_DIR must differ from INPUT_DIR (masks written there would be taken for "
            "images next time)"
        )
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        return f"--threshold {args.threshold} must be in (0, 1)"
    if args.min_confidence is not None and not 0.0 <= args.min_confidence < 1.0:
        return f"--min-confidence {args.min_confidence} must be in [0, 1) (0 keeps all objects)"
    if args.max_pixels is not None and args.max_pixels < 1:
        return f"--max-pixels {args.max_pixels} must be a positive number of pixels"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size {args.batch_size} must be at least 1"
    try:  # before any work: an unwritable folder found after an hour of segmenting is cruel
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        return f"cannot write masks to OUTPUT_DIR {output_dir}: {err.strerror or err}"
    return None


def _predict(args, images: list[Path]) -> int:
    """Load the model, segment the images not yet done, write their masks."""
    from tqdm import tqdm

    from . import registry
    from .batch import segment_each
    from .checkpoint import CheckpointError
    from .data.images import ImageReadError, open_image, read_image

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
    mode = args.mode or default_mode(model, checkpoint)

    suffix = ".tif" if args.instances else ".png"
    stems = output_stems(images)
    todo = [p for p in images if args.overwrite or not _existing(args.output_dir, stems[p], suffix)]
    skipped = [p for p in images if p not in set(todo)]
    failed: list[tuple[Path, str]] = []
    written = 0
    print(
        f"napari-tmunet-predict: {len(images)} images, model {model!r}, mode {mode}, "
        f"{'instances' if args.instances else 'binary'} -> {args.output_dir}",
        file=sys.stderr,
    )
    jobs = [(lambda p=p: open_image(p, max_pixels=args.max_pixels), None) for p in todo]
    messages = segment_each(
        jobs,
        checkpoint,
        threshold=args.threshold,
        min_confidence=args.min_confidence,
        mode=mode,
        instances=args.instances,
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
    )
    images_bar = tqdm(total=len(todo), unit="image", file=sys.stderr)
    tiles_bar = tqdm(total=0, unit="tile", file=sys.stderr, leave=False)
    for kind, index, *rest in messages:
        path = todo[index]
        if kind == "progress":
            _show_tiles(tiles_bar, path, *rest)
            continue
        images_bar.update(1)
        if kind == "error":
            failed.append((path, rest[0]))
            continue
        try:
            _write_masks(args.output_dir, stems[path], suffix, rest[0].labels)
            written += 1
        except (ValueError, OSError) as err:
            failed.append((path, f"{type(err).__name__}: {err}"))
    tiles_bar.close()
    images_bar.close()
    return _report(args.output_dir, len(images), written, skipped, failed)


def default_mode(model: str, checkpoint) -> str:
    """The inference mode a model was evaluated with (``Checkpoint.inference_mode``)."""
    return checkpoint.inference_mode


def _existing(output_dir: Path, stem: str, suffix: str) -> list[Path]:
    """Masks of this base name already in ``output_dir`` (single or per frame)."""
    return sorted(output_dir.glob(f"{_glob_escape(stem)}{suffix}")) + sorted(
        output_dir.glob(f"{_glob_escape(stem)}_z[0-9][0-9][0-9][0-9]{suffix}")
    )


def _show_tiles(bar, path: Path, done: int, total: int) -> None:
    """Per-tile progress of the current image (a big slide takes minutes)."""
    if bar.total != total or bar.n > done:
        bar.reset(total=total)
        bar.set_description_str(path.name)  # shown at once: the image and its tile count
    bar.update(done - bar.n)


def _write_masks(output_dir: Path, stem: str, suffix: str, labels) -> None:
    from .data.images import write_mask

    if labels.ndim == 2:
        write_mask(output_dir / f"{stem}{suffix}", labels)
    else:  # a stack: one mask per frame
        for z, frame in enumerate(labels):
            write_mask(output_dir / f"{stem}_z{z:04d}{suffix}", frame)


def _report(output_dir: Path, n_images: int, written: int, skipped, failed) -> int:
    print(f"{written} of {n_images} images segmented into {output_dir}", file=sys.stderr)
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
