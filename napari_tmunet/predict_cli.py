"""``napari-tmunet-predict INPUT_DIR OUTPUT_DIR``: segment every image of a folder.

Masks follow the writer's rules (``data.images.write_mask``): binary masks as PNG 0/255
named after the image (``<stem>.png``), instance labels as TIFF (``<stem>.tif``, uint16).
Each model gives the output the Segment dock gives by default
(``_segment_jobs.model_defaults``: instances for a nuclei model, else binary) unless
``--binary`` or ``--instances`` says which for all. A stack of frames gives one mask per
frame (``<stem>_z0000.png``, ...), the first frame's written last, so that a stack cut
short (Ctrl-C, disk full) is redone on the next run. Images whose names would give one
mask name get distinct ones (``a.png``, ``a.tif`` -> ``a_png``, ``a_tif``; ``a_z0001.png``
beside a possible stack ``a.tif`` -> ``a_z0001_png``). Nothing already in OUTPUT_DIR is
overwritten unless ``--overwrite`` is given (an earlier run's mask named after an image
whose mask name is now told apart, ``a.png`` above, is kept and the end lines say so);
with it, the frame masks of an earlier, longer stack of the same name beyond the new
frame count are removed too (only masks as this tool writes them; the end lines count
them). OUTPUT_DIR is made only once the model
is checked (a refused run leaves no folder), then checked to be writable and locked
against a second run before any work. Without ``--model`` each image gets the model
for its own modality by the Segment dock's rule (``active_model.model_for_image``): the
model the user made active in napari (a fine-tune; ``active_model.saved_active``) for
images of its modality (every kind when it records none), else ``registry.choose_model``
(grey -> ultrasound...), each model loaded once, and a
header line says which and why (a warning for an image unlike its model's training data,
e.g. fluorescence or 16-bit grey with the ultrasound model); an active model whose file
is not found is said in a line, and the shipped model runs, as in Segment. ``--model`` runs one
model on every image, with the Segment dock's warning for an image unlike it (a shipped
model of another modality, or unlike the image; a checkpoint that records another
modality). Progress bars are drawn on a terminal only, never with ``--no-progress``.
Mode, threshold and the least object confidence default to the model's own, whatever an
image's size (``_segment_jobs.auto_mode``, as the dock's Mode "auto"); a ``--mode`` other
than the one a model was trained for is said once per model, as the dock says it
(``_segment_jobs.mode_mismatch``). Images over the
pixel budget (``--max-pixels``) are read and segmented in bands (tile mode, also for a
model that resizes when ``--mode`` is left out, said in a line naming the image, as the
model's header line names its own mode). Files that fail are listed with the reason at
the end, and the exit code is then 1. Ctrl-C stops with one line (exit 130); the masks
written are kept and a re-run skips them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from .errors import describe_error, exit_on_interrupt
from .options import DEVICES
from .words import plural

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOCK_TASK = "napari-tmunet-predict"
_SUFFIX = {False: ".png", True: ".tif"}  # by instances: binary masks as PNG, labels as TIFF
_FRAME_NAME = re.compile(r"(.+)_z\d{4}", re.IGNORECASE)  # a stack's frame mask: <stem>_z0001
# How a warning that --model may not suit an image says which model would (its name as
# {model}): registry.other_modality_caveat's "switch", in a command line's words.
SWITCH = "pass --model {model!r} for such images"
# How a warning that --mode is not the model's own says which to pass (its mode as {mode}):
# _segment_jobs.mode_mismatch's "choose", in a command line's words.
CHOOSE_MODE = "pass --mode {mode}, or leave --mode out"


def build_parser() -> argparse.ArgumentParser:
    from .registry import describe_models

    parser = argparse.ArgumentParser(
        prog="napari-tmunet-predict",
        description=(
            "Segment every image in INPUT_DIR with a TM-UNet model and write the masks to "
            "OUTPUT_DIR: PNG 0/255 for binary masks, TIFF (uint16) for instance labels; by "
            "default each model's own output, as in the Segment dock (instances for nuclei, "
            "binary for the others). "
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
        help="a shipped model's name or modality (listed below) or a checkpoint file, run "
        "on every image (default: each image gets the model for its own modality, as the "
        "Segment dock's 'Segment all' does: the model you made active in napari, e.g. a "
        "fine-tuned one, for images of its modality, else the shipped one)",
    )
    parser.add_argument(
        "--mode",
        choices=("resize", "tile"),
        default=None,
        help="resize to the model's input size (paper) or sliding-window tiles (slides); "
        "default: the mode the model was evaluated with, whatever the image's size (tiles "
        "for an image over the pixel budget, read in bands)",
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
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--instances",
        dest="output",
        action="store_const",
        const="instances",
        help="instance labels with touching objects split, written as TIFF, for every model "
        "(default: the model's own output, as in the Segment dock: instances for nuclei)",
    )
    output.add_argument(
        "--binary",
        dest="output",
        action="store_const",
        const="binary",
        help="binary masks, written as PNG 0/255, for every model (default: the model's own "
        "output: binary for colonoscopy and ultrasound)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace masks already in OUTPUT_DIR, and remove the extra frame masks of an "
        "earlier, longer stack of the same name",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="tiles per forward pass (default: by device, more on a GPU)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
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


def _without_masks(images: list[Path]) -> list[Path]:
    """``images`` less the masks among them, as the TM-UNet reader opens a folder of
    pictures with their masks beside them (``data.mask_names``): the files named as a
    picture's mask (``NAME_mask.png`` beside ``NAME.png``) and those named as masks whose
    picture is missing that hold a mask (``judge_orphans``: an empty one, all 0, too); a
    file named as a mask that is a picture (``x_mask.png`` beside its ``x_mask_mask.png``,
    an ultrasound picture ``liver-labels.png``) is segmented. One line says how many are
    left out and why: a mask is no picture to segment. Where no file is named as a mask,
    every image stays."""
    from .data.mask_names import judge_orphans, pair_by_mask_names

    pairing = pair_by_mask_names(images)
    if not pairing.named_masks:
        return images
    pairing = judge_orphans(pairing)
    masks = set(pairing.masks)
    if not masks:
        return images
    why = []
    example = next((item for item in pairing.items if item.masks), None)
    if example is not None:
        why.append(
            f"pictures with their masks beside them: e.g. {example.masks[0].name} beside "
            f"{example.picture.name}"
        )
    if pairing.ambiguous:
        why.append(f"named as the mask of several pictures: e.g. {pairing.ambiguous[0][0].name}")
    if pairing.lone_masks:
        alone = len(pairing.lone_masks)
        why.append(
            f"{alone} {'mask without its' if alone == 1 else 'masks without their'} picture: e.g. "
            f"{pairing.lone_masks[0].name}"
        )
    print(
        f"napari-tmunet-predict: {plural(len(masks), 'file')} named as masks not segmented "
        f"({'; '.join(why)})",
        file=sys.stderr,
    )
    return [path for path in images if path not in masks]


def output_stems(images: list[Path]) -> dict[Path, str]:
    """Distinct mask base name of each image.

    Its stem; where stems collide, stem and suffix (``a.png``, ``a.tif`` -> ``a_png``,
    ``a_tif``), and so for a frame-like stem whose base is another image's name, as that
    image may be a stack with masks of that name (``a.tif``, ``a_z0001.png`` -> ``a``,
    ``a_z0001_png``); a name still taken (``a_png.png`` is also ``a_png``) gets ``_2``,
    ``_3``... Images keeping their own stem choose first. Names differ ignoring case too,
    for case-insensitive file systems.
    """
    from .data.datasets import natural_key

    counts = Counter(p.stem for p in images)
    wanted = {
        p: p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}" for p in images
    }
    bases = {name.lower() for name in wanted.values()}
    for path, name in wanted.items():
        frame = _FRAME_NAME.fullmatch(name)
        if frame and frame.group(1).lower() in bases:  # would be that stack's frame mask
            wanted[path] = f"{name}_{path.suffix[1:].lower()}"
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
    found = list_images(args.input_dir)
    images = _without_masks(found)
    if found and not images:  # said by _without_masks' line: all are masks
        print(
            f"error: no pictures to segment in {args.input_dir}: its images are all masks; "
            "give the folder of their pictures",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not images:
        print(
            f"error: no images (png, tif, tiff, jpg, jpeg, bmp) in {args.input_dir}"
            + _dataset_hint(args.input_dir),
            file=sys.stderr,
        )
        return EXIT_USAGE
    from .storage import FolderBusyError, folder_lock

    count = plural(len(images), "image")
    models = _Models(args, f"napari-tmunet-predict: {count} -> {args.output_dir}; {{model}}")
    created = _missing_folders(args.output_dir)
    try:  # the model before OUTPUT_DIR: a refused run leaves no folder behind
        with exit_on_interrupt("stopped: no mask written"):  # importing torch, loading
            problem = models.check()
        problem = problem or _prepare_output(args.output_dir)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        with folder_lock(args.output_dir, LOCK_TASK):
            return _predict(args, images, models)
    except FolderBusyError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the first image (while loading the model)
        print("stopped: no mask written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:  # every image failed (or none was done): no empty folder left behind
        _remove_if_empty(created)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) while it is empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (masks written), or gone
            return


def _dataset_hint(folder) -> str:
    """For a dataset folder (its images in ``images/``): where to point INPUT_DIR; ""."""
    inner = Path(folder) / "images"
    if not (inner.is_dir() and list_images(inner)):
        return ""
    return f"; it looks like a dataset folder: pass {inner} as INPUT_DIR"


def _not_a_folder(input_dir: Path) -> str:
    """Why INPUT_DIR (missing, or a file) is refused, and what to give instead."""
    if not input_dir.exists():
        return (
            f"INPUT_DIR {input_dir} does not exist (absolute: {input_dir.resolve()}); give "
            "the folder that holds the images to segment"
        )
    if input_dir.is_file():
        return (
            f"INPUT_DIR {input_dir} is a file: napari-tmunet-predict segments every image "
            "in a folder; put this picture in a folder of its own and give that folder "
            f"(giving {input_dir.parent} would segment every image there), or open it in "
            f"napari with napari-tmunet {input_dir}"
        )
    return f"INPUT_DIR {input_dir} is not a folder; give the folder that holds the images"


def _check_arguments(args) -> str | None:
    """What is wrong with the arguments (a sentence), or None; creates nothing."""
    input_dir, output_dir = args.input_dir, args.output_dir
    if not input_dir.is_dir():
        return _not_a_folder(input_dir)
    if output_dir.exists() and output_dir.resolve() == input_dir.resolve():
        return (
            "OUTPUT_DIR must differ from INPUT_DIR (masks written there would be taken for "
            "images next time)"
        )
    problem = _output_not_a_folder(output_dir)
    if problem:
        return problem
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        return f"--threshold {args.threshold} must be in (0, 1)"
    if args.min_confidence is not None and not 0.0 <= args.min_confidence < 1.0:
        return f"--min-confidence {args.min_confidence} must be in [0, 1) (0 keeps all objects)"
    if args.max_pixels is not None and args.max_pixels < 1:
        return f"--max-pixels {args.max_pixels} must be a positive number of pixels"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size {args.batch_size} must be at least 1"
    return None


def _output_not_a_folder(output_dir: Path) -> str | None:
    """Why OUTPUT_DIR cannot be a folder (it, or the first of its parents that exists, is a
    file), and what to give instead; None otherwise."""
    existing = next((p for p in (output_dir, *output_dir.parents) if p.exists()), None)
    if existing is None or existing.is_dir():
        return None
    if existing == output_dir:
        return (
            f"OUTPUT_DIR {output_dir} is a file, not a folder: give the path of a folder "
            "for the masks (made if it does not exist)"
        )
    return (
        f"OUTPUT_DIR {output_dir} cannot be made: {existing} is a file, not a folder; give the "
        "path of a folder for the masks (made if it does not exist)"
    )


def _prepare_output(output_dir: Path) -> str | None:
    """Create OUTPUT_DIR and check that masks can be written there: why not (a sentence),
    or None. Before any work: an unwritable folder found after an hour of segmenting is
    cruel; after the model is checked: a refused run leaves no folder behind."""
    import tempfile

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        return f"cannot write masks to OUTPUT_DIR {output_dir}: {err.strerror or err}"
    return None


def _predict(args, images: list[Path], models: _Models) -> int:
    """Segment the images not yet done, each with its model (checked); write their masks."""
    stems = output_stems(images)
    suffixes = models.suffixes()
    todo = [
        p
        for p in images
        if args.overwrite or not any(_existing(args.output_dir, stems[p], s) for s in suffixes)
    ]
    skipped = [p for p in images if p not in set(todo)]
    failed: list[tuple[Path, str]] = []
    stale = _StaleFrames()
    written, used = 0, Counter()  # masks written; per model
    writing = None  # the image whose masks are being written
    if args.model:
        models.announce(args.model)
    bars = None  # made once the header (the first model's line) is out, so it stays whole
    try:
        for kind, index, *rest in _segment(todo, models, args):
            path = todo[index]
            if bars is None and kind != "error":
                bars = _progress_bars(len(todo), done=len(failed), shown=not args.no_progress)
            if kind == "progress":
                _show_tiles(bars[1], path, *rest)
                continue
            if bars is not None:
                bars[0].update(1)
            if kind == "error":
                failed.append((path, rest[0]))
                continue
            try:
                writing, suffix = path, models.suffix_of[path]
                labels = rest[0].labels
                _write_masks(args.output_dir, stems[path], suffix, labels)
                writing = None
                written += 1
                used[models.model_of[path]] += 1
                if args.overwrite:  # the masks of an earlier run of this image are replaced
                    stale.remove(args.output_dir, stems[path], suffix, _frame_count(labels))
            except (ValueError, OSError) as err:
                failed.append((path, describe_error(err)))
    except KeyboardInterrupt:
        _close(bars)
        partly = (
            f" ({writing.name}'s masks only partly written: it is redone)"
            if writing is not None
            and _frames_written(args.output_dir, stems[writing], models.suffix_of[writing])
            else ""
        )
        print(
            f"stopped: masks of {written} of {len(todo)} images written to {args.output_dir}"
            f"{partly}; run the same command again to continue (images with masks are skipped)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _close(bars)
    models.report_misfits()
    named = Counter({models.name(model): n for model, n in used.items()})
    code = _report(args.output_dir, len(images), written, skipped, failed, named, stale)
    _note_plain_names(args.output_dir, stems, suffixes)
    return code


def _note_plain_names(output_dir: Path, stems: dict[Path, str], suffixes) -> None:
    """Say which masks in ``output_dir`` have a plain image stem that no image's mask
    takes any more (``scan.png`` after ``scan.tif`` and ``scan.png`` became ``scan_tif`` and
    ``scan_png``): an earlier run's mask, maybe of another image than its name says. They
    are the user's files: left as they are."""
    taken = {stem.lower() for stem in stems.values()}
    renamed: dict[str, list[Path]] = {}
    for path, stem in stems.items():
        if stem != path.stem and path.stem.lower() not in taken:
            renamed.setdefault(path.stem, []).append(path)
    for plain, paths in renamed.items():
        old = [n for s in suffixes for n in (f"{plain}{s}", f"{plain}_z0000{s}")]
        old = [name for name in old if (output_dir / name).is_file()]
        if not old:
            continue
        now = ", ".join(f"{p.name} -> {stems[p]}" for p in sorted(paths))
        print(
            f"note: {', '.join(old)} in {output_dir} is left as it was: an earlier run's mask, "
            f"maybe of another image than its name says: images named {plain}.* now get "
            f"masks named apart ({now}); remove it if it is out of date",
            file=sys.stderr,
        )


class _Models:
    """The model of each image: ``--model`` for all, else the one for the image's own
    modality (:func:`active_model.model_for_image`, as the Segment dock), each loaded once.

    A line names each model as it is first used; the first such line is the run's
    ``header``, with ``{model}`` replaced by the model's description. Each model writes
    ``--binary`` or ``--instances`` output, else its own default (``model_defaults``).
    """

    def __init__(self, args, header: str):
        self.args = args
        self.header = header  # "" once printed
        self.loaded: dict[str, tuple] = {}  # model -> (Checkpoint, mode, instances)
        self.model_of: dict[Path, str] = {}  # image -> its model
        self.suffix_of: dict[Path, str] = {}  # image -> its masks' suffix
        self.misfits: list[Path] = []  # images unlike their model's training data
        self.warned: set[tuple[str, str]] = set()  # (model, modality) warned about in full
        # without --model: the model the user made active in napari (see use_active)
        self.active = None
        self.names: dict[str, str] = {}  # model -> its name in the lines (a fine-tune's run)

    def check(self) -> str | None:
        """What stops the run before any image (a sentence), or None: the --model that
        cannot be loaded, a device that is not there, or no model installed."""
        from . import registry
        from .checkpoint import CheckpointError
        from .options import resolve_device

        try:
            if self.args.model:
                self.load(self.args.model)
            else:
                resolve_device(self.args.device)
        except (ValueError, RuntimeError, CheckpointError) as err:
            model = self.args.model
            return f"cannot load model {model!r}: {err}" if model else str(err)
        problem = None if self.args.model else self.use_active()
        if problem:
            return problem
        if not self.args.model and not registry.available_models():
            return (
                "no shipped model is installed; pass --model PATH to a checkpoint made by "
                "napari-tmunet-train"
            )
        return None

    def use_active(self) -> str | None:
        """Without ``--model``: use the model the user made active in napari (Fine-tune,
        Revert) for images of its modality, as Segment and "Segment all" do; one whose file
        is not found is said in a line, and the shipped model runs (as in Segment). Why the
        run cannot go on (a sentence: that model's file does not read), or None."""
        from . import registry
        from .active_model import saved_active

        choice, missing = saved_active()
        if missing is not None:
            print(
                f"napari-tmunet-predict: the model you made active in napari, {missing.label}, "
                f"is not found ({missing.model}): the shipped model runs instead, as in "
                "Segment (it stays active for a start that finds the file)",
                file=sys.stderr,
            )
        if choice is None:
            return None
        if registry.find_model(choice.model) is None:  # a checkpoint file (a fine-tune)
            problem = registry.checkpoint_problem(choice.model)
            if problem:
                return (
                    f"cannot load the model you made active in napari, {choice.label} "
                    f"({choice.model}): {problem.rstrip('.')}; {_shipped_hint(choice.modality)}"
                )
        self.active = choice
        self.names[choice.model] = choice.label
        return None

    def name(self, model: str) -> str:
        """``model``'s name in the lines: a fine-tuned model by its run's name, a shipped
        model by its display name also when given by its modality (``--model ultrasound``),
        as the warnings name it."""
        from . import registry

        if model in self.names:
            return self.names[model]
        if Path(model).expanduser().is_file():
            return model
        entry = registry.find_model(model) or registry.model_for_modality(model)
        return entry.name if entry is not None else model

    def choose(self, thumbnail, modality: str) -> tuple[str, str, bool]:
        """(model, why, fits) for an image of ``modality`` seen in ``thumbnail``, by the
        Segment dock's rule (:func:`active_model.model_for_image`): the active model for
        images of its modality (of every kind when it records none), else the shipped one;
        a checkpoint file's line says how to run the shipped model instead."""
        from . import registry
        from .active_model import model_for_image

        who, said = "the model you made active in napari", ", as Segment uses it"
        model, why, fits = model_for_image(modality, thumbnail, self.active, who, said)
        if self.active is not None and model == self.active.model:
            if registry.find_model(model) is None:  # a checkpoint file (a fine-tune)
                why += f"; {_shipped_hint(modality)}"
        return model, why, fits  # check(): a model is installed

    def load(self, model: str) -> tuple:
        """(Checkpoint, mode, instances) of a model name or path, loaded on first use."""
        from . import registry
        from ._segment_jobs import model_defaults

        if model not in self.loaded:
            checkpoint = registry.load_model(model, self.args.device)
            mode = self.args.mode or default_mode(model, checkpoint)
            output = self.args.output
            instances = output == "instances" if output else model_defaults(checkpoint)["instances"]
            self.loaded[model] = (checkpoint, mode, instances)
        return self.loaded[model]

    def suffixes(self) -> tuple[str, ...]:
        """The suffixes an image's masks may have: one when the output kind is known before
        the images are read (``--model``, ``--binary``, ``--instances``), else both."""
        if self.args.model:
            return (_SUFFIX[self.load(self.args.model)[2]],)
        if self.args.output:
            return (_SUFFIX[self.args.output == "instances"],)
        return (".png", ".tif")

    def for_image(self, image, path: Path) -> tuple:
        """(Checkpoint, mode, instances) for one image (an array, or a lazy one for a large
        TIFF); warns (once) of an image unlike what its shipped model was trained on."""
        from . import registry

        model = self.args.model
        thumbnail = _thumbnail(image)
        modality = registry.guess_modality(thumbnail)
        if not model:
            model, why, fits = self.choose(thumbnail, modality)
            if model not in self.loaded:
                self.load(model)
                # a misfit's reason is the warning's next line: said once (tester38)
                said = why if fits else "not a fit, see the warning below"
                self.announce(model, f"images like {path.name}: {said}")
            if not fits:
                self._warn_misfit(path, model, why, modality)
        else:
            name, why = self._given_misfit(thumbnail, modality)
            if why:
                self._warn_misfit(path, name, why, modality)
        self.model_of[path] = model
        self.suffix_of[path] = _SUFFIX[self.load(model)[2]]
        return self.load(model)

    def _given_misfit(self, thumbnail, modality: str) -> tuple[str, str]:
        """(the --model's name, why it may not suit an image of ``modality`` seen in
        ``thumbnail``, or "") by the Segment dock's checks: a shipped model chosen for
        another modality, or unlike the image (``registry.users_choice``); a checkpoint
        file whose checkpoint records another modality (``registry.modality_caveat``)."""
        from . import registry
        from ._segment_jobs import trained_modality

        model = self.args.model
        entry = registry.find_model(registry.resolve_model(model)[0])
        if entry is not None:
            choice = registry.users_choice(entry, thumbnail, modality, "your --model", SWITCH)
            return entry.name, "" if choice.fits else choice.why
        trained = trained_modality(self.load(model)[0])
        caveat = registry.modality_caveat(
            trained, modality, source=" (its checkpoint says so)", switch=SWITCH
        )
        return model, f"your --model, but {caveat}" if caveat else ""

    def _warn_misfit(self, path: Path, model: str, why: str, modality: str) -> None:
        """Warn that ``model`` may not suit the image ``path`` (of ``modality``): in full
        for the first such image of each modality; :meth:`report_misfits` names them all."""
        from tqdm import tqdm

        if (model, modality) not in self.warned:
            tqdm.write(f"warning: {path.name}: {self.name(model)!r} is {why}", file=sys.stderr)
            self.warned.add((model, modality))
        self.misfits.append(path)

    def report_misfits(self) -> None:
        if self.misfits:
            count = len(self.misfits)
            images = (
                "1 image is unlike what its model was"
                if count == 1
                else f"{count} images are unlike what their models were"
            )
            how = (
                "leave out --model to give each image the model for its own modality"
                if self.args.model
                else "pass --model to choose one"
            )
            print(
                f"warning: {images} trained on (see above; {how}): {_names(self.misfits)}",
                file=sys.stderr,
            )

    def announce(self, model: str, which: str = "") -> None:
        from tqdm import tqdm

        _, mode, instances = self.load(model)
        kind = "instances as TIFF" if instances else "binary masks as PNG"
        # a fine-tune's checkpoint, named by its run: its file too
        file = f" ({model})" if model in self.names else ""
        text = f"model {self.name(model)!r}{file} (mode {mode}, {kind})"
        text += f", for {which}" if which else ""
        line = (
            self.header.replace("{model}", text)
            if self.header
            else f"napari-tmunet-predict: {text}"
        )
        self.header = ""
        tqdm.write(line, file=sys.stderr)
        self._warn_mode(model)

    def _warn_mode(self, model: str) -> None:
        """Warn, once per model (:meth:`announce`), that the ``--mode`` given is not the one
        ``model`` was trained for, as Segment's dock does (``_segment_jobs.mode_mismatch``)."""
        from tqdm import tqdm

        from ._segment_jobs import AUTO, mode_mismatch

        checkpoint, mode, _ = self.load(model)
        chosen = self.args.mode or AUTO
        mismatch = mode_mismatch(chosen, mode, checkpoint.inference_mode, CHOOSE_MODE)
        if mismatch:
            tqdm.write(
                f"warning: --mode {mode} for {self.name(model)!r}: {mismatch}", file=sys.stderr
            )


def _shipped_hint(modality: str) -> str:
    """How to run the shipped model of ``modality`` instead of the active one."""
    from .registry import model_for_modality

    shipped = model_for_modality(modality) if modality else None
    name = repr(shipped.name) if shipped is not None else "NAME"
    return f"pass --model {name} for the shipped model"


def _thumbnail(image):
    """A small view of an image's first frame, enough to guess its modality: every k-th
    pixel of an array in memory (or memory-mapped), the central 1024 x 1024 of a lazy
    (zarr) one, whose strided view would decode every tile."""
    import numpy as np

    rgb = image.ndim >= 3 and image.shape[-1] in (3, 4)
    h, w = image.shape[-3:-1] if rgb else image.shape[-2:]
    lead = (0,) * (image.ndim - (3 if rgb else 2))  # a stack: its first frame
    if isinstance(image, np.ndarray):
        step = max(1, max(h, w) // 256)
        rows = cols = slice(None, None, step)
    else:
        side = 1024
        rows = slice(max(0, (h - side) // 2), max(0, (h - side) // 2) + side)
        cols = slice(max(0, (w - side) // 2), max(0, (w - side) // 2) + side)
    return np.asarray(image[(*lead, rows, cols)])  # (h, w[, C])


def _segment(todo: list[Path], models: _Models, args):
    """``batch.segment_each``'s messages for every image of ``todo``, each segmented with
    its own model; an image that cannot be read (or its model loaded) is an error message."""
    from tqdm import tqdm

    from ._segment_jobs import auto_mode
    from .batch import RECOVERABLE, segment_each
    from .data.images import open_image_channels

    for index, path in enumerate(todo):
        try:
            image, channels = open_image_channels(path, max_pixels=args.max_pixels)
            if channels is not None:  # frames channel by channel, said: no model is for them
                image = image.reshape(-1, *image.shape[-2:])  # (C * Z, H, W)
                tqdm.write(f"{path.name}: {channels_as_frames(channels)}", file=sys.stderr)
            checkpoint, own, instances = models.for_image(image, path)
            # the model's own, as the dock's "auto": tiles if read in bands
            mode = args.mode or auto_mode(own, image, None, args.max_pixels)
        except RECOVERABLE as err:
            yield ("error", index, describe_error(err))
            continue
        if mode != own:  # the model's header line named its own mode
            tqdm.write(
                f"{path.name}: mode {mode}, read in bands (over the pixel budget)", file=sys.stderr
            )
        messages = segment_each(
            [(image, None)],
            checkpoint,
            threshold=args.threshold,
            min_confidence=args.min_confidence,
            mode=mode,
            instances=instances,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
        )
        for kind, _, *rest in messages:
            yield (kind, index, *rest)


def channels_as_frames(channels) -> str:
    """How a TIFF's separate channels (``data.images.Channels``) are segmented: as frames,
    channel by channel, in words naming which frames hold which channel by the names
    its layers have in napari ("frames 0-1: DAPI", "frame 1: ch 1": ``Channels.labels``)."""
    each = channels.frames
    spans = [
        f"frame {c * each}" if each == 1 else f"frames {c * each}-{(c + 1) * each - 1}"
        for c in range(channels.count)
    ]
    labels = channels.labels()
    named = "; ".join(f"{span}: {label}" for span, label in zip(spans, labels, strict=True))
    slices = channels.frames_words()
    return (
        f"{channels.count} separate channels{f' of {slices}' if slices else ''} (not colour), "
        f"segmented as {channels.count * each} grey frames channel by channel ({named})"
    )


def default_mode(model: str, checkpoint) -> str:
    """The inference mode a model was evaluated with (``Checkpoint.inference_mode``)."""
    return checkpoint.inference_mode


def _existing(output_dir: Path, stem: str, suffix: str) -> bool:
    """Whether an image's masks are all in ``output_dir``: its single mask, or its first
    frame's, which :func:`_write_masks` writes last."""
    return (output_dir / f"{stem}{suffix}").is_file() or (
        output_dir / f"{stem}_z0000{suffix}"
    ).is_file()


def _frames_written(output_dir: Path, stem: str, suffix: str) -> list[Path]:
    """Frame masks of this base name in ``output_dir``."""
    return sorted(output_dir.glob(f"{_glob_escape(stem)}_z[0-9][0-9][0-9][0-9]{suffix}"))


def _frame_count(labels) -> int:
    """Frame masks that :func:`_write_masks` writes for these labels (0 for one 2-D mask)."""
    return 0 if labels.ndim == 2 else len(labels)


class _StaleFrames:
    """The frame masks of earlier, longer stacks that ``--overwrite`` removes, and files
    named like them that it keeps (not masks as this tool writes them)."""

    def __init__(self):
        self.removed: list[Path] = []
        self.kept: list[Path] = []

    def remove(self, output_dir: Path, stem: str, suffix: str, n_frames: int) -> None:
        """Remove this base name's frame masks numbered ``n_frames`` and up (all of them
        after a 2-D image): they belong to a stack that the new masks replace."""
        for path in _frames_from(output_dir, stem, suffix, n_frames):
            if _is_written_mask(path):
                path.unlink()
                self.removed.append(path)
            else:
                self.kept.append(path)

    def report(self) -> None:
        if self.removed:
            print(
                f"{plural(len(self.removed), 'stale frame mask')} of an earlier, longer stack "
                f"removed (--overwrite): {_names(self.removed)}",
                file=sys.stderr,
            )
        if self.kept:
            kept = len(self.kept)
            print(
                f"{plural(kept, 'file')} named like frame masks kept, as this tool did not "
                f"write {'it' if kept == 1 else 'them'}: {_names(self.kept)}",
                file=sys.stderr,
            )


def _frames_from(output_dir: Path, stem: str, suffix: str, first: int) -> list[Path]:
    """Files in ``output_dir`` named exactly as :func:`_write_masks` names this base name's
    frame masks, ``<stem>_z0000<suffix>``..., numbered ``first`` and up."""
    frame = re.compile(re.escape(stem) + r"_z(\d{4,})" + re.escape(suffix))
    found = []
    for path in output_dir.glob(f"{_glob_escape(stem)}_z*{suffix}"):
        match = frame.fullmatch(path.name)
        if match and f"{int(match[1]):04d}" == match[1] and int(match[1]) >= first:
            found.append(path)
    return sorted(found)


def _is_written_mask(path: Path) -> bool:
    """Whether a file is a mask as ``write_mask`` writes this tool's: a marked TIFF, or a
    2-D 0/255 PNG."""
    import numpy as np

    from .data.images import read_image, saved_mask_kind

    if path.suffix.lower() != ".png":
        return saved_mask_kind(path) is not None
    try:
        mask = read_image(path, allow_stack=False)
    except ValueError:  # unreadable: not a mask this tool wrote
        return False
    return mask.ndim == 2 and mask.dtype == np.uint8 and bool(np.isin(mask, (0, 255)).all())


def _names(paths: list[Path], shown: int = 10) -> str:
    return ", ".join(p.name for p in paths[:shown]) + (" ..." if len(paths) > shown else "")


def _progress_bars(total: int, done: int, shown: bool) -> tuple:
    """The images bar and the current image's tiles bar below it: drawn when ``shown``
    (no --no-progress) and stderr is a terminal, as train's bars (tqdm's ``disable=None``):
    redirected to a log file, bars are lines of carriage returns and cursor codes."""
    from tqdm import tqdm

    off = None if shown else True
    images = tqdm(total=total, initial=done, unit="image", file=sys.stderr, disable=off)
    return images, tqdm(total=0, unit="tile", file=sys.stderr, leave=False, disable=off)


def _close(bars: tuple | None) -> None:
    for bar in reversed(bars or ()):
        bar.close()


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
    else:  # a stack: one mask per frame, the first last: it marks the stack done
        for z in reversed(range(len(labels))):
            write_mask(output_dir / f"{stem}_z{z:04d}{suffix}", labels[z])


def _report(
    output_dir: Path, n_images: int, written: int, skipped, failed, used, stale: _StaleFrames
) -> int:
    by_model = ""
    if len(used) > 1:  # a mixed folder: which model did how many
        by_model = " (" + ", ".join(f"{n} with {m!r}" for m, n in used.most_common()) + ")"
    where = f" into {output_dir}" if written or skipped else ": nothing written"
    print(f"{written} of {n_images} images segmented{where}{by_model}", file=sys.stderr)
    stale.report()
    if skipped:
        their = "its masks already exist" if len(skipped) == 1 else "their masks already exist"
        print(
            f"{len(skipped)} skipped: {their} in {output_dir} (pass "
            f"--overwrite to replace them): {_names(skipped)}",
            file=sys.stderr,
        )
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for path, reason in failed:
            # the reason without the path it may start with: the name says which file
            print(f"  {path.name}: {reason.removeprefix(f'{path}: ')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


if __name__ == "__main__":
    raise SystemExit(main())
