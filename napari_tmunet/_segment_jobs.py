"""The Segment dock's work, off the GUI thread: load a model, segment images (no Qt).

:func:`segment_jobs` is the body of the dock's worker. It yields progress, one result
per image (the compact probability and the labels derived from it; for an image over
the pixel budget, segmented in bands, the labels of its mask alone) and a message per
image that failed (the others go on). Each image comes with its own options, hence its
own model (images of different kinds in one run). Options left to the model ("auto")
are resolved from that image's checkpoint: its threshold, the inference mode it was
trained for, and instances for a nuclei model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import registry
from .checkpoint_header import read_header
from .config import InputConfig
from .data.budget import in_bands
from .options import inference_mode
from .postprocess import (
    LabelOptions,
    compact,
    count_objects,
    derive_labels,
    gated_out,
    mask_labels,
)
from .tile_grid import resize_window, tile_count
from .words import plural

log = logging.getLogger(__name__)
AUTO = "auto"
# pixels: a frame from an endoscope, scanner or video is smaller (4K video: 3840); a larger
# image may be a camera's photo or a slide. "auto" runs it in its model's own mode all the
# same (:func:`auto_mode`); the dock says before the run how, and which Mode a slide needs.
LARGE_IMAGE = 4096
# Resize mode enlarging an image more than this many times is said before the run: a model
# trained on whole frames resized to its input learnt its objects at about that scale
# (CVC-ClinicDB's 384 x 288 frames to 512 x 512: 1.3-1.8x); a 64 x 64 crop enlarged 8x by
# the colonoscopy model gave 3 false objects on light reflections and no word of why.
MAX_QUIET_ENLARGEMENT = 2.0
INSTANCE_MODALITIES = ("nuclei",)  # models whose default output is instances
# what a model of each inference mode (Checkpoint.inference_mode) was trained on
TRAINED_ON = {"tile": "tiles at full resolution", "resize": "whole images resized to its input"}
# how mode_mismatch names the mode to choose, in the dock's words
CHOOSE_MODE = "choose Mode {mode} (or auto)"


@dataclass
class SegmentOptions:
    """A snapshot of the dock's settings, taken when Segment is clicked.

    ``threshold`` and ``min_confidence`` None, ``mode`` and ``output`` "auto": the
    model's defaults.
    """

    model: str  # registry name or checkpoint path
    model_label: str
    provisional: bool
    device: str
    threshold: float | None
    mode: str  # "auto", "resize" or "tile"
    output: str  # "auto", "binary" or "instances"
    fill_holes: bool = False
    min_size: int = 0
    batch_size: int | None = None  # tiles per forward pass; None: by device
    min_confidence: float | None = None


@dataclass
class SegmentOutcome:
    """One image's result: what the Segment dock turns into layers."""

    labels: np.ndarray  # (..., H, W) uint8 0/1 or int32 instance ids
    # (..., H, W) uint8, round(p * 255) (postprocess.compact); None for an image over the
    # pixel budget, segmented in bands (its labels cannot be re-derived)
    probability: np.ndarray | None
    label_options: LabelOptions
    mapping: str
    mode: str
    # from the run's start (the first image of a model: its loading too) to the result;
    # None: not known (an output an older version made)
    seconds: float | None
    objects: int
    model_label: str = ""  # the model that made it, as the dock names it
    conversion: str = ""  # how the image was made the model's input, when it had to be
    # (objects, pixels) the confidence gate hid (postprocess.gated_out); None: not known
    hidden: tuple[int, int] | None = None
    windows: int = 1  # windows per frame (SegmentationResult.windows); 1: not known
    mode_mismatch: str = ""  # why the chosen mode may not suit the model (mode_mismatch)
    # of ``seconds``, those spent loading and preparing the model (the first image a run
    # segments with it: reading the weights, the warm-up); 0.0: none, or not known
    loading: float = 0.0


def model_defaults(checkpoint) -> dict[str, Any]:
    """A checkpoint's own threshold, least object confidence, inference mode, output kind.

    The mode is the one its training run evaluated with (crops at native resolution ->
    "tile", else "resize"); instances for a nuclei model.
    """
    meta = checkpoint.metadata or {}
    modality = str(meta.get("modality", ""))
    return {
        "threshold": float(checkpoint.input_config.threshold),
        "min_confidence": float(checkpoint.input_config.min_confidence),
        "mode": checkpoint.inference_mode,
        "instances": modality in INSTANCE_MODALITIES,
    }


@dataclass
class CheckpointHeader:
    """What :func:`model_defaults` reads of a checkpoint, from its header alone
    (:func:`checkpoint_header.read_header`: no torch, no weights)."""

    input_config: InputConfig
    metadata: dict

    @property
    def inference_mode(self) -> str:
        return inference_mode(self.metadata)


def header_defaults(model: str) -> dict[str, Any] | None:
    """:func:`model_defaults` of ``model`` (registry name or checkpoint path) read from its
    file's header, before the model is loaded; None when the header cannot be read (the
    run's load then gives them)."""
    header = checkpoint_header(model)
    return None if header is None else model_defaults(header)


def checkpoint_header(model: str) -> CheckpointHeader | None:
    """The settings of ``model`` (registry name or checkpoint path) read from its file's
    header (``checkpoint_header.read_header``: cached per file version, no torch); None
    when the header cannot be read."""
    try:
        _, path, _ = registry.resolve_model(model)
    except (ValueError, RuntimeError):
        return None
    payload = read_header(path)
    if payload is None or not isinstance(payload.get("input_config"), dict):
        return None
    try:
        inputs = InputConfig.from_dict(payload["input_config"])
    except (TypeError, ValueError):
        return None
    metadata = payload.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    modality = registry.checkpoint_modality(path, metadata)  # an old fine-tune: its lineage's
    return CheckpointHeader(inputs, {**metadata, "modality": modality} if modality else metadata)


def trained_modality(checkpoint) -> str:
    """The modality a checkpoint records it was trained for ("" when it records none)."""
    return str((checkpoint.metadata or {}).get("modality") or "")


def auto_mode(trained: str, image, rgb: bool | None = None, max_pixels: int | None = None) -> str:
    """The mode "auto" segments ``image`` in: ``trained``, its model's own
    (``Checkpoint.inference_mode``), whatever the image's size; "tile" only for a 2-D image
    segmented in bands (:func:`data.budget.in_bands`: read lazily and over the pixel
    budget), which only tile mode can do. ``rgb``: whether the last axis holds colours
    (None: guessed from the shape, as ``inference.split_frames``). Reads no pixel.
    """
    # No size bound for resize mode: tiles at full resolution show a model trained on whole
    # frames resized its objects at a scale it never learnt. A CVC-ClinicDB frame upscaled
    # to 4976 x 4232 (bench/large_frames.py, 2 CPU cores): tiled (auto before) 143 tiles,
    # 567 s, 135 objects, Dice 0.10; resized 8.5 s, 2 objects, Dice 0.96. Nor for memory:
    # an image in memory is within the pixel budget, and resized at the budget's 16384 x
    # 16384 it took 2.3 GiB over the image (tile mode holds more: float sums of the same
    # size). An image too large for memory is read in bands, which needs tiles.
    if len(_spatial(np.shape(image), rgb)) == 2 and in_bands(image, max_pixels):
        return "tile"
    return trained


def _spatial(shape: tuple[int, ...], rgb: bool | None) -> tuple[int, ...]:
    """The spatial (..., H, W) of an image of ``shape``: one frame (H, W), or a stack; its
    colour axis left out (``rgb`` None: guessed from the shape, as ``inference.split_frames``)."""
    if rgb is None:
        rgb = len(shape) in (3, 4) and shape[-1] in (3, 4)
    return tuple(int(n) for n in (shape[:-1] if rgb else shape))


def resolve(
    options: SegmentOptions, checkpoint, image, rgb: bool | None = None
) -> tuple[str, LabelOptions]:
    """(mode, LabelOptions) for one image: the user's choices, else the model's defaults.

    The mode "auto" is :func:`auto_mode`'s: the model's own, "tile" for an image read in
    bands.
    """
    defaults = model_defaults(checkpoint)
    mode = options.mode
    if mode == AUTO:
        mode = auto_mode(defaults["mode"], image, rgb)
    return mode, label_options(
        defaults,
        output=options.output,
        threshold=options.threshold,
        min_confidence=options.min_confidence,
        fill_holes=options.fill_holes,
        min_size=options.min_size,
    )


def mode_mismatch(chosen: str, runs: str, trained: str, choose: str = CHOOSE_MODE) -> str:
    """Why mode ``runs``, chosen by the user (``chosen`` not "auto"), may not suit a model
    trained in mode ``trained`` (``Checkpoint.inference_mode``), and the mode to choose
    (``choose``, naming it as {mode}: the dock's words, or a command line's); "" when it
    runs as trained, or as "auto" chose (tile for an image read in bands, the only way to
    run it). Segment's dock and ``napari-tmunet-predict`` say it."""
    if chosen == AUTO or runs == trained or trained not in TRAINED_ON:
        return ""
    # the nuclei model (tiles) resized a 1000 x 1000 MoNuSeg tile to 256 x 256: nuclei 3.9x
    # smaller than it learnt, Dice 0.52 for 0.82 tiled (tester35 #1)
    return f"the model was trained on {TRAINED_ON[trained]}: {choose.format(mode=trained)}"


def mode_note(model: str, mode: str, image, rgb: bool | None) -> str:
    """How Segment runs ``image`` with ``model`` in ``mode`` ("auto", "resize", "tile"), in
    a line for the dock before the run. A mode chosen other than the model's own
    (:func:`mode_mismatch`): how it runs, and the mode to choose (except tiles for a large
    image, as a slide needs). A large image (a side over :data:`LARGE_IMAGE`): resized to
    the model's input as it was trained, or in how many tiles. A small one:
    :func:`_small_note`. "" otherwise, or for a model whose header cannot be read
    (:func:`checkpoint_header`)."""
    spatial = _spatial(np.shape(image), rgb)
    H, W = spatial[-2:]
    header = checkpoint_header(model)
    if header is None:
        return ""
    trained = header.inference_mode
    runs = auto_mode(trained, image, rgb) if mode == AUTO else mode
    h, w = header.input_config.size
    what = f"{W} x {H} image"
    text = f"{what}: {_how_runs((H, W), (h, w), runs)}"
    mismatch = mode_mismatch(mode, runs, trained)
    if max(H, W) <= LARGE_IMAGE:
        small = _small_note(what, (H, W), (h, w), runs)
        if small and mismatch:
            return f"{small}; {mismatch}"
        return f"{text}, though {mismatch}" if mismatch else small
    if runs == "resize":
        if mismatch:
            return f"{text}, though {mismatch}"
        return f"{text} as it was trained; choose Mode tile for a slide"
    # tiles chosen for a large image: a slide needs them, whatever the model was trained on
    if len(spatial) == 2 and in_bands(image):
        text += ", read in bands (over the pixel budget)"
    if trained == "resize":
        text += "; the model was trained on whole frames resized"
    return text


def _how_runs(hw: tuple[int, int], size: tuple[int, int], runs: str) -> str:
    """How an image of ``hw`` (h, w) pixels runs in mode ``runs`` on a model of input
    ``size`` (h, w): "resized to the model's 256 x 256 input" (an elongated image: in
    windows, each resized), or "16 tiles of 256 x 256"."""
    h, w = size
    if runs != "resize":
        return f"{plural(tile_count(hw, size), 'tile')} of {w} x {h}"
    windows = resize_window(hw, size)
    parts = "" if windows is None else f"{tile_count(hw, windows)} windows, each "
    return f"{parts}resized to the model's {w} x {h} input"


def _small_note(what: str, hw: tuple[int, int], size: tuple[int, int], runs: str) -> str:
    """The note for an image of ``hw`` (h, w) pixels much smaller than the model's input
    ``size`` (h, w) in mode ``runs``: enlarged more than :data:`MAX_QUIET_ENLARGEMENT`
    times in resize mode, or smaller than one tile in tile mode; else ""."""
    (H, W), (h, w) = hw, size
    if runs == "tile":
        # tiling.sliding_window clips its tile to the image: one tile of the image's own
        # size at full resolution, neither padded nor resized
        if H < h and W < w:
            return f"{what}: smaller than one {w} x {h} tile; run whole at its own size"
        return ""
    windows = resize_window(hw, size)
    wh, ww = windows or hw
    scale = min(h / wh, w / ww)
    if scale <= MAX_QUIET_ENLARGEMENT:
        return ""
    parts = "" if windows is None else f"{tile_count(hw, windows)} windows, each "
    return (
        f"{what}: {parts}enlarged {scale:.0f}x to the model's {w} x {h} input; a crop this "
        "small may give false or missed objects"
    )


def label_options(
    defaults: dict,
    output: str,
    threshold: float | None,
    min_confidence: float | None,
    fill_holes: bool,
    min_size: int,
) -> LabelOptions:
    """The user's label settings, the model's ``defaults`` (:func:`model_defaults`) for
    those left to it: output "auto", threshold or confidence None."""
    return LabelOptions(
        threshold=float(defaults["threshold"] if threshold is None else threshold),
        instances=defaults["instances"] if output == AUTO else output == "instances",
        fill_holes=bool(fill_holes),
        min_size=int(min_size),
        min_confidence=float(
            defaults["min_confidence"] if min_confidence is None else min_confidence
        ),
    )


def warm_up_note(checkpoint) -> str:
    """What the dock shows while :func:`warm_up` runs; "" on the CPU (nothing to prepare)."""
    from .inference import _model_device
    from .settings import persist_kernel_cache

    if _model_device(checkpoint.model).type != "cuda":
        return ""
    cache = persist_kernel_cache()
    if cache.is_dir() and any(cache.iterdir()):
        return "preparing the model on the GPU..."
    return "compiling GPU kernels (first run only)..."


def warm_up(checkpoint) -> None:
    """One forward pass on zeros at the model's input size, as the dock's runs make them.

    On a GPU it compiles the mLSTM's Triton kernels (loaded from the kernel cache after the
    first session) and captures the CUDA graph of a one-image pass (``fast_forward``), so
    the dock can say what is happening before its progress starts; on the CPU it sets up
    the convolutions' kernels for that input size.
    """
    import torch

    from .inference import forward_logits, prepared_model

    model, device, amp = prepared_model(checkpoint, None)
    shape = (1, checkpoint.model_config.in_channels, *checkpoint.input_config.size)
    forward_logits(model, torch.zeros(shape, device=device), amp)


# One preparation at a time: a run waits for the dock's early warm-up of its model instead
# of loading it, or capturing its CUDA graphs, alongside it.
_preparing = threading.Lock()


def prepare_early(model: str, device: str) -> threading.Thread:
    """Load ``model`` and warm it up on a background thread, so the first Segment starts
    with torch imported, the weights loaded, the kernels compiled and the graphs captured.

    The thread touches no widget. A failure is left for the run to report, with the dock's
    message.
    """

    def body() -> None:
        with _preparing:
            try:
                warm_up(registry.load_model(model, device))
            except Exception as err:  # noqa: BLE001 - the run reports it
                log.info("early warm-up of %s failed: %s", model, err)

    # Not a daemon: Python finishes the warm-up before it exits. A daemon thread still in
    # torch at exit aborted the process ("terminate called without an active exception").
    thread = threading.Thread(target=body, name="tmunet-prepare")
    thread.start()
    return thread


Job = tuple[Any, bool, SegmentOptions]  # (data, rgb, options): an image and how to segment it


def segment_jobs(jobs: list[Job]) -> Generator[tuple, None, None]:
    """Worker body: load the jobs' models, then segment each ``(data, rgb, options)`` image
    with its own.

    Yields per image ``("loaded", index, defaults, modality)`` (its model's,
    :func:`model_defaults`, :func:`trained_modality`),
    on a GPU ``("status", text)`` while a model is prepared the first time
    (:func:`warm_up`), ``("progress", index, done, total)``, then
    ``("result", index, SegmentOutcome)`` or ``("error", index, text)`` for an image that
    could not be segmented. A model that cannot be loaded raises before any image is
    segmented (one error for the whole run).
    """
    keys = list(dict.fromkeys((options.model, options.device) for _, _, options in jobs))
    began = time.perf_counter()
    with _preparing:  # the dock's early warm-up, if still running, ends first
        checkpoints = {key: registry.load_model(*key) for key in keys}
    # the wait the first image's time counts as loading: the user waited on it (tester41:
    # "in 7.6 s" said of a first click that took 18.5 s)
    loading = time.perf_counter() - began
    warmed: set[tuple[str, str]] = set()
    for index, (data, rgb, options) in enumerate(jobs):
        key = (options.model, options.device)
        checkpoint = checkpoints[key]
        yield ("loaded", index, model_defaults(checkpoint), trained_modality(checkpoint))
        if key not in warmed:
            warmed.add(key)
            note = warm_up_note(checkpoint)
            if note:
                yield ("status", note)
                warming = time.perf_counter()
                with _preparing:
                    warm_up(checkpoint)
                loading += time.perf_counter() - warming
        yield from _segment_one(index, data, rgb, checkpoint, options, loading)
        loading = 0.0  # the next images' times are their own


def until_cancelled(
    messages: Generator[tuple, None, None], cancel: threading.Event
) -> Generator[tuple, None, None]:
    """Run ``messages`` (e.g. :func:`segment_jobs`) on this thread; once ``cancel`` is set,
    the forward pass under way stops part way (``cancel.stop_when``) and the last message
    is ``("cancelled",)``."""
    from .cancel import Cancelled, stop_when

    try:
        with stop_when(cancel):
            yield from messages
    except Cancelled:
        yield ("cancelled",)


def _segment_one(
    index: int, data, rgb: bool, checkpoint, options: SegmentOptions, loading: float = 0.0
) -> Generator[tuple, None, None]:
    """Segment one image with ``checkpoint``: :func:`segment_jobs`' messages for job ``index``;
    ``loading``: the seconds spent loading the model before it, counted in its time."""
    # torch and the model code load here, on the worker thread, not at plugin import.
    from .batch import segment_each
    from .cancel import stop_if_cancelled

    chosen: list[tuple[str, LabelOptions, float]] = []  # mode, labels, start

    def options_for(image, rgb) -> dict:
        mode, label_options = resolve(options, checkpoint, image, rgb)
        chosen.append((mode, label_options, time.perf_counter()))
        # instances and unsure objects are derived below from the kept probability
        return {
            "threshold": label_options.threshold,
            "mode": mode,
            "instances": False,
            "min_confidence": 0.0,
        }

    steps = segment_each(
        [(data, rgb)], checkpoint, options_for=options_for, batch_size=options.batch_size
    )
    for kind, _, *rest in steps:  # the index is 0 there: the only job of that call
        if kind != "result":
            yield (kind, index, *rest)
            continue
        stop_if_cancelled()  # e.g. napari closed: the labelling below takes seconds
        result = rest[0]
        mode, label_options, began = chosen[-1]
        if result.probability is None:  # over the pixel budget, segmented in bands
            # only the thresholded mask came back: keep it, without the confidence gate
            label_options = label_options.ungated()
            probability = None
            labels, hidden = mask_labels(result.labels, label_options), (0, 0)
        else:
            probability = compact(result.probability)
            del result.probability
            labels = derive_labels(probability, label_options)
            hidden = gated_out(probability, label_options)
        yield (
            "result",
            index,
            SegmentOutcome(
                labels=labels,
                probability=probability,
                label_options=label_options,
                mapping=result.mapping,
                mode=mode,
                seconds=time.perf_counter() - began + loading,
                objects=count_objects(labels),
                model_label=options.model_label,
                hidden=hidden,
                windows=result.windows,
                mode_mismatch=mode_mismatch(options.mode, mode, checkpoint.inference_mode),
                loading=loading,
            ),
        )
