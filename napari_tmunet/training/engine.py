"""Training: one code path for ``napari-tmunet-train fit`` and the Fine-tune dock.

``fit(config, run_dir, callbacks, stop_event)`` trains a model as a :class:`TrainConfig`
says and writes the run folder (``run_folder``). :class:`Trainer` reads as the loop's
skeleton; each hook does one thing:

    on_train_start     data, split, model, optimiser, resume, run folder
    train_period       the steps of one period (an epoch, or a block of steps)
    train_step         one optimiser step (``step.TrainStep``: no host synchronisation)
    on_period_end      loss, validation, metrics line, best.pt, last.pt, callbacks
    on_train_end       test of the best checkpoint, summary.json

Protocol (paper, Section 3.1): Adam (lr 1e-4), ExponentialLR (0.98 per period), batch 16,
200 epochs, loss ``2 CE + 1 Dice``, horizontal flips (p = 0.25, the released code),
512 x 512 inputs, best checkpoint by validation Dice, bf16 autocast on CUDA.

Speed: the images live on the GPU (``batches``), each step is replayed from a CUDA graph
on one GPU (``step``), losses stay on the device until the period ends, and validation
is scored on the device (``validation``). ``last.pt`` is written at most once a minute
(and at every stop and at the end), since a checkpoint costs more than a short period;
the environment variable ``NAPARI_TMUNET_CHECKPOINT_INTERVAL_S`` sets another interval
(seconds; 0 writes it every period: the SIGKILL tests use it to land a kill mid-run).
Under ``torchrun`` the batch is sharded over the ranks (``distributed``); ``batch_size``
is the global batch. On the CPU a resumed run is bit-for-bit the uninterrupted run.
With ``ema`` > 0 an exponential moving average of the weights (``ema``) follows every
step; validation scores it and ``best.pt`` holds it, ``last.pt`` keeps both.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ..config import InputConfig, ModelConfig, model_label, samples_for_batchnorm
from ..data.cache import NativeCache
from ..data.datasets import DatasetError, save_split
from ..evaluation import evaluate, percent, scores_line
from ..model import build_model
from ..storage import folder_lock, jsonable, write_json
from .batches import Augment, TrainingImages
from .config import TrainConfig
from .distributed import DistContext, synchronise_batchnorm, unused_parameters, unwrap
from .ema import WeightAverage
from .loss import patch_mask
from .run_data import check_foreground, load_dataset, resolve_run_split
from .run_folder import (
    RunDirError,
    RunFinishedError,
    RunLog,
    append_metrics,
    dataset_label,
    get_rng_state,
    git_commit,
    plot_curves,
    prepare_run_dir,
    read_metrics,
    remove_stale_temporaries,
    set_rng_state,
    summary_steps,
    write_metrics,
)
from .schedule import Schedule
from .step import TrainStep, make_optimizer
from .validation import ResidentValidation, tile_validation_scores

logger = logging.getLogger(__name__)


def _seconds(variable: str, default: float) -> float:
    """A number of seconds from the environment; ``default`` (with a warning) if unreadable."""
    try:
        return float(os.environ.get(variable, default))
    except ValueError:
        logger.warning(
            "%s=%r is not a number of seconds; using %g", variable, os.environ[variable], default
        )
        return default


# last.pt at most this often (and at stops and the end)
CHECKPOINT_INTERVAL_S = _seconds("NAPARI_TMUNET_CHECKPOINT_INTERVAL_S", 60.0)
PLOT_INTERVAL_S = 30.0  # curves.png likewise
# Metadata that says what a model is, for which no setting of the run stands: a model
# trained from a checkpoint (``init_checkpoint``) keeps the starting checkpoint's values.
# (The threshold travels in the input config and the inference mode is the run's own
# ``train_config.mode``.) Segment reads ``modality`` to pick instance output for nuclei.
INHERITED_METADATA = ("modality",)


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    callbacks=None,
    stop_event: threading.Event | None = None,
    dataset: NativeCache | None = None,
    validate_on_stop: bool = True,
) -> dict:
    """Train a model as ``config`` says; write everything into ``run_dir``.

    Args:
        config: the run's configuration (``config.resume`` continues ``run_dir``).
        run_dir: the run folder (see ``run_folder``).
        callbacks: an object or dict with optional ``on_step(step, total, loss)``, called
            after every step (rank 0; asking for the loss waits for the GPU, so it is
            read only when this callback is given), and ``on_eval(record)``, called with
            every ``metrics.jsonl`` record that holds validation scores;
            ``on_validate(step, total)``, called (rank 0) as a validation begins, which
            takes a while on a CPU; and ``validate(model, input_config)``, which
            returns the record's ``val_*`` entries in place of scoring the valid split
            (fine-tuning scores a held-out strip inside its whole image, and a held-out
            part without foreground by ``val_false_positive_px`` alone: no
            ``val_dice``, so no ``best.pt``: ``training.finetune``).
        stop_event: checked before every step; when set, the model is evaluated (unless
            ``validate_on_stop`` is False), ``last.pt`` saved (resumable), ``best.pt`` kept
            or improved, and ``fit`` returns with ``stopped=True``.
        dataset: an in-memory dataset to use instead of ``config.data``.
        validate_on_stop: False saves ``last.pt`` at a stop without the validation (which
            takes a minute on a CPU, past a batch system's grace after SIGTERM): the stop's
            record has no scores and ``best.pt`` stays as it was (the command line's
            stops); True validates first, as a Fine-tune dock's Stop wants its score.

    Returns:
        run_dir, stopped, step, total_steps, epoch, best_score, best_step,
        best_checkpoint, last_checkpoint, test (aggregate or None); and where validation
        counted false-positive pixels (no Dice, no ``best.pt``), val_false_positive_px:
        the recorded ``[step, count]`` pairs, first to last.
    """
    ctx = DistContext.from_env(config.device)
    try:
        trainer = Trainer(
            config, Path(run_dir), ctx, callbacks, stop_event, dataset, validate_on_stop
        )
        return trainer.run()
    finally:
        ctx.close()


class Trainer:
    """One training session (a fresh run or a resumption); see :func:`fit`."""

    def __init__(
        self,
        config,
        run_dir,
        ctx,
        callbacks=None,
        stop_event=None,
        dataset=None,
        validate_on_stop=True,
    ):
        self.config, self.run_dir, self.ctx = config, run_dir, ctx
        self.on_step = _callback(callbacks, "on_step")
        self.on_eval = _callback(callbacks, "on_eval")
        self.on_validate = _callback(callbacks, "on_validate")
        self.custom_validation = _callback(callbacks, "validate")
        self.stop_event = stop_event
        self.validate_on_stop = validate_on_stop  # False: a stop saves last.pt at once
        self.dataset = dataset
        self.step = 0
        self.inherited: dict = {}  # metadata carried over from init_checkpoint
        self.resume_payload: dict = {}  # last.pt of the run being resumed
        self.best_score, self.best_step = -math.inf, -1
        self.records: list[dict] = []
        self.bar = None
        self.channels_last = False  # set by move_to_device (CUDA only)
        self.ema: WeightAverage | None = None  # set by move_to_device when config.ema > 0

    # -- skeleton ------------------------------------------------------------------

    def run(self) -> dict:
        with contextlib.ExitStack() as stack:
            if self.ctx.is_main:  # one process trains in a folder at a time
                self.run_dir.mkdir(parents=True, exist_ok=True)
                stack.enter_context(folder_lock(self.run_dir, "napari-tmunet-train fit"))
                remove_stale_temporaries(self.run_dir)  # a killed writer's; no other now
                prepare_run_dir(self.config, self.run_dir)
            self.ctx.barrier()
            return self.run_locked()

    def run_locked(self) -> dict:
        log = RunLog(self.run_dir) if self.ctx.is_main else None
        try:
            self.on_train_start()
            stopped = False
            while self.step < self.schedule.total_steps and not stopped:
                stopped = self.train_period()
            self.close_bar()
            return self.on_train_end(stopped)
        except RunFinishedError:
            if log is not None:  # the run's files as they were, train.log too
                log.discard()
                log = None
            raise
        finally:
            self.close_bar()
            if log is not None:
                log.close()

    def train_period(self) -> bool:
        """Steps up to the end of the current period; True when a stop was asked for."""
        period = self.schedule.period_of(self.step)
        end = self.schedule.period_ends[period]
        ctx = self.ctx
        for x, y, global_batch in self.data.batches(
            self.schedule, self.step, end, ctx.rank, ctx.world_size, self.augment
        ):
            if self.stop_requested():  # report() logs the stop once it is saved
                self.on_period_end(period, stopped=True)
                return True
            self.train_step(x, y, global_batch)
        self.scheduler.step()
        self.on_period_end(period)
        return False

    def train_step(self, x: torch.Tensor, y: torch.Tensor, global_batch: int) -> None:
        self.model.train()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.config.pretext:  # the target is the image; y says which squares to hide
            y = patch_mask(x.shape, x.device)
        self.step_fn(x, y, global_batch)
        if self.ema is not None:  # after the step, outside its CUDA graph
            self.ema.update()
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.on_step is not None and self.ctx.is_main:
            self.on_step(self.step, self.schedule.total_steps, self.step_fn.last_loss())

    def stop_requested(self) -> bool:
        asked = self.stop_event is not None and self.stop_event.is_set()
        return self.ctx.any(asked) if self.ctx.distributed else asked

    # -- start -----------------------------------------------------------------------

    def on_train_start(self) -> None:
        cfg, ctx = self.config, self.ctx
        self.started = time.time()
        logger.info(
            "%s run in %s on %s (world size %d)",
            "resuming" if cfg.resume else "new",
            self.run_dir,
            ctx.device,
            ctx.world_size,
        )
        self.load_data()
        self.build_model()
        self.check_batch_size()
        self.schedule = self.make_schedule(cfg.steps, cfg.epochs)
        self.log_short_batch()
        self.elapsed_before = 0.0
        if cfg.resume:
            self.resume()
        elif ctx.is_main:  # without the one-off switches, so the run can be resumed
            saved = replace(cfg, resume=False, overwrite=False)
            write_json(self.run_dir / "config.json", saved.to_dict())
            save_split(self.run_dir / "split.json", self.split)
            write_metrics(self.run_dir, [])
        if ctx.is_main:
            write_json(self.run_dir / "run_info.json", self.run_info())
        self.move_to_device()
        self.session = (time.time(), self.step)  # this session's start, for times and ETA
        self.last_save = self.last_plot = time.time()
        if ctx.is_main and cfg.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(  # disable=None: none when stderr is no terminal (a log file)
                total=self.schedule.total_steps,
                initial=self.step,
                desc="train",
                unit="step",
                disable=None,
            )

    def make_schedule(self, steps: int, epochs: int) -> Schedule:
        """The schedule of this run's training part for ``steps`` and ``epochs``."""
        cfg = self.config
        return Schedule(
            n_train=len(self.parts["train"]),
            batch_size=cfg.batch_size,
            world_size=self.ctx.world_size,
            epochs=epochs,
            steps=steps,
            lr_decay_every=cfg.lr_decay_every,
            seed=cfg.seed,
            repeats=empty_repeats(self.parts["train"], cfg.empty_repeat),
            min_samples=self.samples_per_rank(),
        )

    def samples_per_rank(self) -> int:
        """The fewest samples a rank's batch may hold: what the model's BatchNorm needs at
        this size (``samples_for_batchnorm``), 1 where it is synchronised over the ranks
        (its statistics then span every rank's samples, at least one each)."""
        if self.ctx.distributed and self.config.sync_bn:
            return 1
        return samples_for_batchnorm(self.model_config.arch, self.config.size)

    def log_short_batch(self) -> None:
        """Say that each epoch leaves its last batch out where BatchNorm needs more samples
        than it holds (``Schedule.min_samples``)."""
        schedule = self.schedule
        seen = schedule.steps_per_epoch * schedule.batch_size
        if schedule.min_samples == 1 or not schedule.steps_per_epoch or seen >= schedule.n_pass:
            return
        h, w = self.config.size
        logger.info(
            "each epoch trains on %d of the %d samples of a pass over the training images: "
            "its last batch of %d is left out (at --size %d %d BatchNorm needs %d images per "
            "batch%s; the order is drawn anew every epoch)",
            seen,
            schedule.n_pass,
            schedule.n_pass - seen,
            h,
            w,
            schedule.min_samples,
            " on each rank" if self.ctx.distributed else "",
        )

    def check_batch_size(self) -> None:
        """Refuse, before anything is trained, a run none or all of whose batches give a
        rank fewer samples than its BatchNorm needs (TM-UNet at 32 x 32 with batch 1): it
        would stop at its first such step. A short last batch of an epoch is left out
        instead (``Schedule.min_samples``)."""
        cfg, world = self.config, self.ctx.world_size
        need = self.samples_per_rank()
        if need == 1:
            return
        n_pass = sum(draw_counts(self.parts["train"], cfg.empty_repeat))
        if cfg.batch_size // world >= need and (cfg.steps or n_pass >= world * need):
            return
        h, w = cfg.size
        ranks = f" over {world} ranks ({cfg.batch_size // world} per rank)" if world > 1 else ""
        why = (
            f"at --size {h} {w} the deepest BatchNorm of {model_label(self.model_config)} "
            f"normalises a 1 x 1 map, so it needs at least {need} images per batch"
            f"{' on each rank' if world > 1 else ''} (one image gives one value per channel: "
            "no batch statistics)"
        )
        bigger = (
            f"or a --size above {max(h, w)} on either side (e.g. {2 * max(h, w)}; inputs are "
            "padded to multiples of 32 anyway)"
        )
        if cfg.batch_size // world < need:
            sync = ", synchronise BatchNorm (leave out --no-sync-bn)" if world > 1 else ""
            raise ValueError(
                f"--batch-size {cfg.batch_size}{ranks}: {why}; use --batch-size "
                f"{need * world} or more{sync}, {bigger}"
            )
        raise ValueError(
            f"{n_pass} training image{'s' * (n_pass != 1)} with --epochs: {why}, and an "
            f"epoch holds fewer; add training images, train by --steps (a batch then draws "
            f"images again), {bigger}"
        )

    def load_data(self) -> None:
        cfg = self.config
        self.cache = self.dataset if self.dataset is not None else load_dataset(cfg)
        existing = self.run_dir / "split.json" if cfg.resume else None
        self.split, self.split_notes = resolve_run_split(cfg, self.cache, existing)
        for note in self.split_notes:
            logger.info("split: %s", note)
        index = {name: i for i, name in enumerate(self.cache.names)}
        self.parts = {k: [self.cache[index[n]] for n in v] for k, v in self.split.items()}
        if not self.parts["train"]:
            raise DatasetError("the split has no training images")
        where = self.cache.source or cfg.data or "the dataset"
        fix = "nothing to learn from; check that masks/ marks the foreground non-zero (white)"
        if not cfg.pretext:  # pre-training does not read the masks
            check_foreground(
                {k: [item.mask for item in v] for k, v in self.parts.items()}, where, fix
            )
        logger.info(
            "dataset %s: %d train, %d valid, %d test; mask rules %s",
            self.cache.source or cfg.data,
            *(len(self.parts[k]) for k in ("train", "valid", "test")),
            self.cache.rule_counts(),
        )

    def build_model(self) -> None:
        """The model, its ModelConfig and InputConfig: a resumed run's from its own
        ``last.pt`` (``init_checkpoint`` is not read again), else from ``init_checkpoint``
        or from the config and the data."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        if cfg.resume:
            self.rebuild_from_last()
            return
        start = load_checkpoint(cfg.init_checkpoint, "cpu") if cfg.init_checkpoint else None
        if start is not None:
            check_start_input(cfg, start, cfg.init_checkpoint)
            self.log_start_channels(start)
        trunk_only = cfg.pretext or (start is not None and start.metadata.get("pretext"))
        if start is not None and not trunk_only:
            self.model_config = start.model_config
            self.input_config = replace(start.input_config, size=cfg.size)
            self.model = start.model.train()
            self.inherited = inherited_metadata(start.metadata)
            logger.info("starting from %s", cfg.init_checkpoint)
            return
        if start is None:
            channels = cfg.in_channels or (1 if self.grey_data() else 3)
            self.input_config = cfg.input_config(channels)
        else:  # a pre-trained trunk keeps the normalisation it learnt with
            channels = start.model_config.in_channels
            self.input_config = replace(start.input_config, size=cfg.size)
        self.model_config = cfg.model_config(channels)
        self.model = build_model(self.model_config)
        if start is not None:
            load_trunk(self.model, start, cfg.init_checkpoint)
            logger.info("starting from the pre-trained trunk of %s", cfg.init_checkpoint)

    def grey_data(self) -> bool:
        """Whether every image of the dataset has one channel."""
        return all(item.image.shape[-1] == 1 or item.image.ndim == 2 for item in self.cache)

    def rebuild_from_last(self) -> None:
        """Model and configs of the run being resumed, from its ``last.pt`` (which holds
        every weight, also those a fine-tuning run started from); :meth:`resume` then
        loads its weights and state."""
        path = self.run_dir / "last.pt"
        self.resume_payload = read_checkpoint(path)
        try:
            self.model_config = ModelConfig.from_dict(self.resume_payload["model_config"])
            input_config = InputConfig.from_dict(self.resume_payload["input_config"])
        except (TypeError, ValueError) as error:
            raise RunDirError(f"{path} has an invalid config ({error}); cannot resume") from None
        self.input_config = replace(input_config, size=self.config.size)
        self.inherited = inherited_metadata(self.resume_payload.get("metadata"))
        self.model = build_model(self.model_config)

    def log_start_channels(self, start) -> None:
        """Say which input the start checkpoint fixes when the data have other channels."""
        channels = start.model_config.in_channels
        if channels == (1 if self.grey_data() else 3):
            return
        logger.info(
            "%s takes %d input channel(s) (mean %s, std %s); the %s images are converted "
            "to it (%s)",
            self.config.init_checkpoint,
            channels,
            _values(start.input_config.mean),
            _values(start.input_config.std),
            "grey" if channels == 3 else "colour",
            "grey replicated" if channels == 3 else "RGB averaged to grey",
        )

    def resume(self) -> None:
        """Model, optimiser state, step, best score, RNG and records from ``last.pt``."""
        payload = self.resume_payload
        state = payload.get("training_state") or {}
        if "optimizer" not in state:
            raise RunDirError(f"{self.run_dir / 'last.pt'} holds no training state to resume")
        unwrap(self.model).load_state_dict(payload["state_dict"])
        check_resumed_ema(self.config.ema, state, self.run_dir / "last.pt")
        self.resumed_state = state
        self.step = int(state["step"])
        new_plan = self.check_resumed_length()
        self.check_not_finished()  # before anything is written, config.json too
        if new_plan:
            self.keep_plan(new_plan)
        self.best_score = float(state.get("best_score", -math.inf))
        self.best_step = int(state.get("best_step", -1))
        self.elapsed_before = float(state.get("elapsed", 0.0))
        set_rng_state(state.get("rng", {}))
        self.records = [r for r in read_metrics(self.run_dir) if r["step"] <= self.step]
        if self.ctx.is_main:  # drop records written after the checkpoint (a crash between)
            write_metrics(self.run_dir, self.records)
        logger.info("resumed at step %d of %d", self.step, self.schedule.total_steps)

    def check_not_finished(self) -> None:
        """Refuse (before anything is written) to resume a run that trained all its steps
        and wrote its summary at that step. One stopped between its last step and its
        summary (killed while testing) goes on to test and write it; so does an extension
        killed so, whose summary.json is still the earlier end's (written at a lower step)."""
        if self.step < self.schedule.total_steps:
            return
        written = summary_steps(self.run_dir)
        if written is not None and written >= self.step:
            raise RunFinishedError(self.finished())
        if written is not None:
            logger.info(
                "summary.json is from the run's earlier end at step %d; the run reached step "
                "%d but stopped before its test: testing it now (a new summary.json replaces it)",
                written,
                self.step,
            )

    def check_resumed_length(self) -> str:
        """Check a resumption whose --steps / --epochs differ from the run's; return what
        an accepted new plan changes, in words for the log ("" when the plan is the run's):
        :meth:`keep_plan` then records it.

        Refused: a plan that ends at or before the step reached (it would train nothing
        and test an unfinished run), and one that moves LR-decay / validation periods the
        run has already passed (e.g. --epochs on a --steps run: it sets the periods), since
        the run would then be neither its old plan nor the new one. Accepted: a longer or
        shorter run with the same past periods. --steps N alone on a --steps run (the
        documented extension) keeps the run's period length: its epochs (periods) become
        N / that length, and an N that is not a whole number of periods is refused."""
        cfg, saved = self.config, self.saved_plan()
        if saved is None or (cfg.steps, cfg.epochs) == saved:
            return ""
        old = self.make_schedule(*saved)
        before, total = old.total_steps, self.schedule.total_steps
        if total != before and self.step >= total:
            raise RunDirError(self.too_short(before, saved))
        kept = ""
        if saved[0] and cfg.steps and cfg.epochs == saved[1] and not cfg.lr_decay_every:
            kept = self.keep_period_length(saved)
        passed = [end for end in old.period_ends if end <= self.step]
        if passed != [e for e in self.schedule.period_ends if e <= self.step]:
            raise RunDirError(self.moved_periods(old, saved))
        cfg = self.config
        if total != before:
            return f"the run now ends at step {total} (it was to end at step {before}){kept}"
        return f"the run's plan is now {_plan(cfg.steps, cfg.epochs)} (it was {_plan(*saved)})"

    def keep_plan(self, words: str) -> None:
        """Log the accepted new plan (``words``) and keep it in config.json: a later plain
        --resume goes on with it."""
        cfg = self.config
        logger.info("%s", words)
        if self.ctx.is_main and (self.run_dir / "config.json").is_file():
            plan = TrainConfig.load(self.run_dir / "config.json").to_dict()
            plan.update(steps=cfg.steps, epochs=cfg.epochs)
            write_json(self.run_dir / "config.json", plan)

    def keep_period_length(self, saved: tuple[int, int]) -> str:
        """--steps N on a --steps run planned as ``saved``: set this run's epochs (periods)
        to N / the old period length, so the periods passed and those to come have one
        length (the LR decays and validates as one plan, which config.json then records
        and a rerun reproduces); every rank computes the same. Returns the log's words,
        e.g. ", in 8 periods of 5 steps as before"; refuses an N that is no whole number
        of periods, naming the nearest --steps that are."""
        steps, periods = saved[0], min(saved)  # as Schedule: at most one period a step
        new = self.config.steps
        if (new * periods) % steps:
            raise RunDirError(self.not_whole_periods(saved))
        epochs = new * periods // steps
        self.config = replace(self.config, epochs=epochs)
        self.schedule = self.make_schedule(new, epochs)
        return f", in {epochs} periods of {_length(steps, periods)} as before"

    def not_whole_periods(self, saved: tuple[int, int]) -> str:
        """Why --steps N that is no whole number of the run's periods is refused."""
        steps, periods = saved[0], min(saved)
        unit, new = _whole(*saved), self.config.steps
        lower = new // unit * unit  # lower + unit > new > the step reached
        near = [v for v in (lower, lower + unit) if v > self.step]
        options = " or ".join(f"--steps {v}" for v in near)
        return (
            f"cannot resume {self.run_dir} with --steps {new}: the run was planned as "
            f"{_plan(*saved)}, in periods of {_length(steps, periods)} (LR decay and "
            f"validation), and {new} steps are not a whole number of them, so the run would "
            f"follow neither plan; give {options} (the run keeps its period length), or "
            "start a new run folder"
        )

    def flag_words(self, flags: list[str]) -> str:
        """``flags`` ("--steps 80", "--epochs 2") as a refusal names them: those whose value
        is the run's config.json's, which a resumption takes when the flag is not given,
        said so ("--steps 80 (and --epochs 2 from RUN/config.json)"), since the user may
        not have typed them."""
        path = self.run_dir / "config.json"
        saved = TrainConfig.load(path).to_dict() if path.is_file() else {}
        typed, kept = [], []
        for words in flags:
            flag, value = words.split()
            same = str(saved.get(flag[2:])) == value
            (kept if same else typed).append(words)
        if not kept:
            return " ".join(typed)
        from_file = f"{' '.join(kept)} from {path}"
        return f"{' '.join(typed)} (and {from_file})" if typed else from_file

    def moved_periods(self, old: Schedule, saved: tuple[int, int]) -> str:
        """Why a resumption that moves periods the run has passed is refused."""
        cfg = self.config
        now = (cfg.steps, cfg.epochs)
        pairs = zip(("--steps", "--epochs"), now, saved, strict=True)
        flags = [f"{flag} {value}" for flag, value, was in pairs if value != was]
        given = self.flag_words(flags)
        old_ends = {e for e in old.period_ends if e <= self.step}
        new_ends = {e for e in self.schedule.period_ends if e <= self.step}
        moved = min(old_ends ^ new_ends)
        where = (
            f"the run ended a period at step {moved}, the new plan does not"
            if moved in old_ends
            else f"the new plan ends a period at step {moved}, the run did not"
        )
        extend = ""  # with --lr-decay-every, a moved end is a short last period: no N helps
        if not cfg.lr_decay_every:
            extend = "--steps N alone" if saved[0] else "--epochs N alone"
            if saved[0]:  # N a whole number of periods
                extend += f", N a multiple of {_whole(*saved)},"
            extend = f" ({extend} lengthens this run)"
        return (
            f"cannot resume {self.run_dir} with {given}: the run was planned as "
            f"{_plan(*saved)}, with its LR-decay and validation periods ending at steps "
            f"{_ends(old)}; {_plan(cfg.steps, cfg.epochs)} ends them at steps "
            f"{_ends(self.schedule)}, which moves periods of the {self.step} steps already "
            f"trained ({where}), so the run would follow neither plan; resume without "
            f"{' and '.join(f.split()[0] for f in flags)}{extend}, or start a new run folder"
        )

    def saved_plan(self) -> tuple[int, int] | None:
        """(steps, epochs) the run was last trained with: from the config that saved
        ``last.pt``, else from config.json; None when neither says."""
        metadata = self.resume_payload.get("metadata") or {}
        saved = metadata.get("train_config")
        if not isinstance(saved, dict) and (self.run_dir / "config.json").is_file():
            saved = TrainConfig.load(self.run_dir / "config.json").to_dict()
        if not isinstance(saved, dict) or "steps" not in saved or "epochs" not in saved:
            return None
        return int(saved["steps"]), int(saved["epochs"])

    def finished(self) -> str:
        """Why a resumption of a run that trained all its steps and wrote its summary
        does nothing, and how to train it longer (the flag its plan was given with, as
        ``check_resumed_length`` accepts it)."""
        cfg, total = self.config, self.schedule.total_steps
        if cfg.steps:
            unit = _whole(cfg.steps, cfg.epochs) if not cfg.lr_decay_every else 1
            longer = f"--steps N (N > {total}" + (f", a multiple of {unit})" if unit > 1 else ")")
        else:
            longer = f"--epochs N (N > {cfg.epochs})"
        summary = self.run_dir / "summary.json"
        return (
            f"the run in {self.run_dir} is finished (step {total} of {total}; its results "
            f"are in {summary}): "
            f"nothing to resume, its files are left as they are; to train it longer, resume "
            f"with {longer}"
        )

    def too_short(self, before: int, saved: tuple[int, int]) -> str:
        """Why a resumption with a plan that ends at or before ``self.step`` is refused."""
        cfg = self.config
        flag = "--steps" if cfg.steps != saved[0] else "--epochs"
        value = cfg.steps if flag == "--steps" else cfg.epochs
        ends = f" (that ends at step {self.schedule.total_steps})"
        if flag == "--steps" and value:
            ends = ""
        done = "stopped" if self.step < before else "finished"
        go_on = f"resume without {flag} to go on to step {before}, " if done == "stopped" else ""
        return (
            f"cannot resume {self.run_dir} with {self.flag_words([f'{flag} {value}'])}{ends}: "
            f"the run {done} at step "
            f"{self.step} of the {before} it was planned for; {go_on}give a {flag} that ends "
            f"after step {self.step} to extend it, or start a new run folder"
        )

    def move_to_device(self) -> None:
        """Model, optimiser, step function, training images and validation on the device."""
        cfg, ctx = self.config, self.ctx
        device = ctx.device
        channels = self.model_config.in_channels
        find_unused = ctx.distributed and unused_parameters(self.model, channels)
        if ctx.distributed and cfg.sync_bn:
            self.model = synchronise_batchnorm(self.model, device)
        self.model.to(device)
        # NHWC: cuDNN's bf16 convolutions run without layout transposes (U-Net 2x faster)
        self.channels_last = cfg.channels_last and device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        graphs = cfg.cuda_graphs and device.type == "cuda" and not ctx.distributed
        self.optimizer = make_optimizer(
            self.model, cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, graph=graphs
        )
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=cfg.gamma)
        if cfg.resume:
            self.optimizer.load_state_dict(self.resumed_state["optimizer"])
            self.scheduler.load_state_dict(self.resumed_state["scheduler"])
        if ctx.distributed:
            # depth-wise conv weights (C, 1, 3, 3) get gradients with other strides on the
            # size-1 axis: same memory layout, so DDP's performance warning does not apply
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            self.model = nn.parallel.DistributedDataParallel(
                self.model, find_unused_parameters=find_unused, **kwargs
            )
        self.start_average()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.amp = cfg.amp and device.type == "cuda"
        self.step_fn = TrainStep(
            self.model,
            self.optimizer,
            amp=self.amp,
            graph=graphs,
            ce_weight=cfg.ce_weight,
            dice_weight=cfg.dice_weight,
            grad_clip=cfg.grad_clip,
            dice_over=cfg.dice_over,
            presence_weight=cfg.presence_weight,
            edge_weight=cfg.edge_weight,
            pretext=cfg.pretext,
        )
        if cfg.resume:  # a period that a stop interrupted goes on with its losses
            partial = self.resumed_state.get("period_loss")
            if partial is None:  # older runs kept every step's loss
                old = self.resumed_state.get("period_losses", [])
                partial = {"sum": sum(old), "steps": len(old)}
            self.step_fn.restore_period(float(partial["sum"]), int(partial["steps"]))
        self.augment = Augment.of(cfg)
        self.data = self.place(TrainingImages, self.parts["train"], cfg.mode)
        self.validation = None
        if cfg.mode == "resize" and self.parts["valid"] and ctx.is_main and not cfg.pretext:
            self.validation = self.place(ResidentValidation, self.parts["valid"], "resize")

    def start_average(self) -> None:
        """The EMA of the weights (``config.ema`` > 0): the model's copy, or the resumed
        run's average. Every DDP rank keeps the same one (same weights, same updates)."""
        if not self.config.ema:
            return
        self.ema = WeightAverage(self.model, self.config.ema)
        if self.config.resume:
            self.ema.load_state_dict(self.resumed_state["ema"])

    def scored_model(self) -> nn.Module:
        """The model that validation scores and best.pt holds: the EMA when on."""
        return self.ema.module if self.ema is not None else self.model

    def place(self, cls, items, mode):
        """Build ``cls`` on the GPU when its images fit a quarter of free memory."""
        device, store = self.ctx.device, self.ctx.device
        args = (items, self.model_config.in_channels, self.input_config)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if TrainingImages.nbytes(*args, mode) > 0.25 * free:
                store = torch.device("cpu")
                logger.info("%d images stay in host memory (too large for the GPU)", len(items))
        if cls is ResidentValidation:
            return cls(*args, store, self.config.eval_batch_size)
        return cls(*args, mode, device, store)

    def run_info(self) -> dict:
        cfg, ctx, device = self.config, self.ctx, self.ctx.device
        return {
            "model_config": self.model_config.to_dict(),
            "input_config": self.input_config.to_dict(),
            "dataset": {
                "source": self.cache.source or cfg.data,
                "name": dataset_label(cfg, self.cache),
                "images": len(self.cache),
                **{k: len(v) for k, v in self.parts.items()},
                "mask_rules": self.cache.rule_counts(),
                "skipped": [list(s) for s in self.cache.skipped],
                "split_notes": self.split_notes,
            },
            "schedule": {
                "total_steps": self.schedule.total_steps,
                "periods": self.schedule.periods,
                "steps_per_epoch": self.schedule.steps_per_epoch,
            },
            "world_size": ctx.world_size,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
            "versions": {"napari_tmunet": __version__, "torch": torch.__version__},
            "git_commit": git_commit(),
            "host": platform.node(),
            "started": datetime.now().isoformat(timespec="seconds"),
        }

    # -- end of a period -------------------------------------------------------------

    def on_period_end(self, period: int, stopped: bool = False) -> None:
        """Loss, validation, metrics line, best.pt, last.pt, callbacks (rank 0 writes)."""
        loss_sum, nonfinite, steps = self.step_fn.take_period()
        totals = self.ctx.sum(torch.stack([loss_sum, nonfinite.double()]))  # one sync
        loss_sum, nonfinite = float(totals[0]), bool(totals[1] > 0)
        if nonfinite:
            self.fail_nonfinite(period)
        if not self.ctx.is_main:
            return
        # a stop right at a period's end trains no step of the next: its record carries the
        # last period's loss (a mean over no steps would be NaN)
        train_loss = loss_sum / steps if steps else self.last_period_loss()
        record = self.period_record(period, train_loss, stopped)
        if self.validates(period, stopped):
            if self.on_validate is not None:
                self.on_validate(self.step, self.schedule.total_steps)
            record.update(self.validate())
        improved = "val_dice" in record and record["val_dice"] > self.best_score
        if improved:
            self.best_score, self.best_step = record["val_dice"], self.step
        record["best"] = improved
        record["best_val_dice"] = self.best_score if math.isfinite(self.best_score) else None
        self.records.append(record)
        append_metrics(self.run_dir, record)  # before the checkpoints: see run_folder
        if improved:
            self.save("best.pt", record, with_state=False)
        now = time.time()
        final = stopped or self.step == self.schedule.total_steps
        if final or now - self.last_save >= CHECKPOINT_INTERVAL_S or period == 0:
            partial = (loss_sum, steps) if stopped else (0.0, 0)
            self.save("last.pt", record, with_state=True, period_loss=partial)
            self.last_save = now
        if final or now - self.last_plot >= PLOT_INTERVAL_S:
            plot_curves(self.records, self.run_dir / "curves.png")
            self.last_plot = now
        self.report(record)

    def validates(self, period: int, stopped: bool) -> bool:
        """Whether the end of ``period`` (or a stop in it) is validated: every
        ``eval_every``-th period, the last, and a stop unless ``validate_on_stop`` is off
        (then last.pt is saved at once)."""
        if stopped:
            return self.validate_on_stop
        last = self.step == self.schedule.total_steps
        return last or (period + 1) % self.config.eval_every == 0

    def period_record(self, period: int, train_loss: float | None, stopped: bool) -> dict:
        began = self.session[0]
        record = {
            "step": self.step,
            "epoch": round(self.schedule.epoch_of(self.step), 4),
            "period": period + (0 if stopped else 1),
            "train_loss": train_loss,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "time": round(self.elapsed_before + time.time() - began, 3),
        }
        if stopped:
            record["stopped"] = True
        return record

    def last_period_loss(self) -> float | None:
        """The training loss of the latest record that has one (None before any step)."""
        losses = (r.get("train_loss") for r in reversed(self.records))
        return next((loss for loss in losses if loss is not None), None)

    def validate(self) -> dict:
        cfg = self.config
        model = self.scored_model()
        if self.custom_validation is not None:
            return self.custom_validation(model, self.input_config)
        if not self.parts["valid"] or cfg.pretext:  # a restored image has no Dice
            return {}
        if self.validation is not None:
            return self.validation.score(model, self.amp)
        return tile_validation_scores(
            model,
            self.parts["valid"],
            self.input_config,
            self.ctx.device,
            self.amp,
            cfg.eval_batch_size,
            cfg.overlap,
        )

    def fail_nonfinite(self, period: int) -> None:
        last = self.run_dir / "last.pt"
        where = (
            f"{last} holds the run at step {read_checkpoint(last)['training_state']['step']}"
            if last.is_file()
            else "no checkpoint was written yet"
        )
        raise FloatingPointError(
            f"the training loss became NaN or infinite in period {period + 1} (steps up to "
            f"{self.step}); {where}. The model diverged: start a new run with a lower "
            f"learning rate (now {self.config.lr:g}) or check the images and the "
            "normalisation (mean/std)."
        )

    def save(self, name: str, record: dict, with_state: bool, period_loss=(0.0, 0)) -> None:
        """Write ``name`` (best.pt / last.pt): the model, the run's metadata (with what it
        inherited from ``init_checkpoint``), the record's scores, optionally the state to
        resume from. With an EMA, best.pt holds the averaged weights as the model's and
        last.pt the raw weights with the average in its state."""
        cfg = self.config
        metadata = {
            **self.inherited,
            "train_config": cfg.to_dict(),
            "step": self.step,
            "epoch": record["epoch"],
            "dataset": dataset_label(cfg, self.cache),
            "split": self.run_dir.name + "/split.json",
            "saved": datetime.now().isoformat(timespec="seconds"),
        }
        # what the model is for: the run's setting (fit --modality), else its start's
        # (inherited above)
        if cfg.modality:
            metadata["modality"] = cfg.modality
        if cfg.pretext:  # marks a model that restores images and does not segment
            metadata["pretext"] = cfg.pretext
        metrics = {k: v for k, v in record.items() if k.startswith("val_") or k == "train_loss"}
        state = None
        if with_state:
            state = {
                "step": self.step,
                "epoch": float(self.schedule.epoch_of(self.step)),
                "period": self.schedule.period_of(self.step),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best_score": self.best_score,
                "best_step": self.best_step,
                "elapsed": float(record["time"]),
                "period_loss": {"sum": float(period_loss[0]), "steps": int(period_loss[1])},
                "world_size": self.ctx.world_size,
                "rng": get_rng_state(),
            }
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
        save_checkpoint(
            self.run_dir / name,
            unwrap(self.model if with_state else self.scored_model()),
            self.model_config,
            self.input_config,
            metadata=jsonable(metadata),
            metrics=jsonable(metrics),
            training_state=state,
        )

    def report(self, record: dict) -> None:
        """Progress bar, log line with an ETA (a stop's line says it stopped, without
        one), and the ``on_eval`` callback."""
        loss = record["train_loss"]
        loss_text = "no step trained yet" if loss is None else f"loss {loss:.4f}"
        if record.get("stopped"):
            self.report_stop(record, loss_text)
        elif self.config.pretext and loss is not None:
            logger.info("step %d: restoration loss %.4f", self.step, loss)
        if "val_false_positive_px" in record:  # no foreground held out: no Dice
            self.report_false_positives(record, loss_text)
            return
        if "val_dice" not in record:
            return
        if self.bar is not None:
            self.bar.set_postfix(
                loss="-" if loss is None else f"{loss:.4f}",
                val_dice=percent(record["val_dice"]),
                best=percent(self.best_score),
                refresh=False,
            )
        if not record.get("stopped"):
            began, first = self.session
            per_step = (time.time() - began) / max(self.step - first, 1)
            eta = timedelta(seconds=round(per_step * (self.schedule.total_steps - self.step)))
            logger.info(
                "step %d/%d epoch %.2f: %s, val Dice %s (best %s at step %d), ETA %s",
                self.step,
                self.schedule.total_steps,
                record["epoch"],
                loss_text,
                percent(record["val_dice"]),
                percent(self.best_score),
                self.best_step,
                eta,
            )
        if self.on_eval is not None:
            self.on_eval(dict(record))

    def report_false_positives(self, record: dict, loss_text: str) -> None:
        """Log line and ``on_eval`` for a validation that counts false-positive pixels (a
        fine-tune's held-out part without foreground, ``training.finetune``)."""
        if not record.get("stopped"):
            logger.info(
                "step %d/%d: %s, held-out false-positive pixels %d (no foreground held out)",
                self.step,
                self.schedule.total_steps,
                loss_text,
                record["val_false_positive_px"],
            )
        if self.on_eval is not None:
            self.on_eval(dict(record))

    def report_stop(self, record: dict, loss_text: str) -> None:
        """One line for a stop, once last.pt is saved: the step, loss and scores (or that
        the stop was not validated, with the best score so far)."""
        scores = ""
        if not self.validate_on_stop:
            scores = ", not validated (a stop saves last.pt at once)"
            if self.best_step >= 0:
                scores += f"; best val Dice {percent(self.best_score)} at step {self.best_step}"
        elif "val_dice" in record:
            best = f"best {percent(self.best_score)} at step {self.best_step}"
            scores = f", val Dice {percent(record['val_dice'])} ({best})"
        elif "val_false_positive_px" in record:
            scores = f", held-out false-positive pixels {record['val_false_positive_px']}"
        logger.info(
            "stopped at step %d/%d epoch %.2f: %s%s; saved %s",
            self.step,
            self.schedule.total_steps,
            record["epoch"],
            loss_text,
            scores,
            self.run_dir / "last.pt",
        )

    # -- end -------------------------------------------------------------------------

    def on_train_end(self, stopped: bool) -> dict:
        result = {
            "run_dir": str(self.run_dir),
            "stopped": stopped,
            "step": self.step,
            "total_steps": self.schedule.total_steps,
            "epoch": self.schedule.epoch_of(self.step),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best_checkpoint": str(self.run_dir / "best.pt"),
            "last_checkpoint": str(self.run_dir / "last.pt"),
            "test": None,
            "pretext": self.config.pretext,
            "train_loss": next(
                (
                    r.get("train_loss")
                    for r in reversed(self.records)
                    if r.get("train_loss") is not None
                ),
                None,
            ),
        }
        counts = [
            [r["step"], r["val_false_positive_px"]]
            for r in self.records
            if r.get("val_false_positive_px") is not None
        ]
        if counts:  # validated by false-positive pixels (no foreground held out)
            result["val_false_positive_px"] = counts
        if not stopped and self.ctx.is_main:
            result["test"] = self.test(time.time() - self.started + self.elapsed_before)
        self.ctx.barrier()
        return result

    def test(self, elapsed: float) -> dict | None:
        """Score the best checkpoint on the test part; write summary.json."""
        cfg, run_dir, device = self.config, self.run_dir, self.ctx.device
        best_path = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else run_dir / "last.pt"
        best = load_checkpoint(best_path, device)
        summary = {
            "dataset": dataset_label(cfg, self.cache),
            "model": model_label(best.model_config),
            "checkpoint": best_path.name,
            "best_val_dice": self.best_score if math.isfinite(self.best_score) else None,
            "best_step": self.best_step,
            "steps": self.schedule.total_steps,
            "train_time_s": round(elapsed, 1),
            "world_size": self.ctx.world_size,
            "mode": cfg.mode,
            "size": list(cfg.size),
        }
        if cfg.test and self.parts["test"] and not cfg.pretext:
            ev = evaluate(
                best.model,
                self.parts["test"],
                best.input_config,
                cfg.mode,
                device=device,
                amp=cfg.amp,
                batch_size=cfg.eval_batch_size,
                overlap=cfg.overlap,
                progress=cfg.progress,
            )
            ev.to_csv(run_dir / "test_metrics.csv")
            summary["test"] = ev.aggregate()
            t = summary["test"]
            # debug only: the trainer prints this line once, with the run's outcome
            logger.debug("%s", scores_line(t))
        write_json(run_dir / "summary.json", summary)
        return summary.get("test")

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _plan(steps: int, epochs: int) -> str:
    """A run's length as the fit options that set it: "--steps 200 --epochs 200"."""
    return f"--steps {steps} --epochs {epochs}" if steps else f"--epochs {epochs}"


def _whole(steps: int, epochs: int) -> int:
    """The fewest steps that make whole periods of a run planned as ``--steps steps
    --epochs epochs`` (a multiple of it keeps the period length)."""
    return steps // math.gcd(steps, min(steps, epochs))


def _length(steps: int, periods: int) -> str:
    """The length of one of ``periods`` periods over ``steps`` steps: "5 steps"."""
    if steps % periods == 0:
        return f"{steps // periods} step" + ("s" if steps // periods > 1 else "")
    return f"{steps / periods:.3g} steps on average"


def _ends(schedule: Schedule, shown: int = 3) -> str:
    """The first period ends of ``schedule``: "40, 80, 120, ..."."""
    ends = schedule.period_ends
    return ", ".join(map(str, ends[:shown])) + (", ..." if len(ends) > shown else "")


def check_resumed_ema(decay: float, state: dict, path: Path) -> None:
    """Refuse to resume with another ``--ema`` than the run in ``path`` was trained with
    (its training state holds the average and its decay only when it had one)."""
    saved = float((state.get("ema") or {}).get("decay", 0.0))
    if saved != decay:
        raise RunDirError(
            f"cannot resume {path} with --ema {decay:g}: the run was trained with --ema "
            f"{saved:g}; resume with --ema {saved:g} or start a new run folder"
        )


def load_trunk(model: nn.Module, start, path: str) -> None:
    """Every weight of the pre-trained checkpoint ``start`` (read from ``path``) but its
    output layer into ``model``, which must have the same architecture."""
    trunk = {k: v for k, v in start.model.state_dict().items() if not k.startswith("head.")}
    fix = (
        f"{path} was pre-trained as {model_label(start.model_config)}: fine-tune it with "
        "the same --arch, --variant and model flags"
    )
    try:
        missing, unexpected = model.load_state_dict(trunk, strict=False)
    except RuntimeError as error:  # a weight of another shape
        own = model.state_dict()
        wrong = [k for k, v in trunk.items() if k in own and own[k].shape != v.shape]
        raise ValueError(f"{fix} (weights of another shape: {wrong[:3]})") from error
    missing = [k for k in missing if not k.startswith(("head.", "presence."))]
    if missing or unexpected:
        raise ValueError(f"{fix} (weights that do not match: {(missing + unexpected)[:3]})")


def check_start_input(cfg: TrainConfig, start, path: str) -> None:
    """Refuse --in-channels, --mean or --std that differ from the start checkpoint's: its
    input channels and normalisation are kept (the trunk learnt with them)."""
    have = start.input_config
    wrong = []
    if cfg.in_channels and cfg.in_channels != start.model_config.in_channels:
        wrong.append(f"--in-channels {cfg.in_channels}")
    if cfg.mean and not _same(cfg.mean, have.mean):
        wrong.append(f"--mean {_values(cfg.mean)}")
    if cfg.std and not _same(cfg.std, have.std):
        wrong.append(f"--std {_values(cfg.std)}")
    if cfg.per_image_norm and not have.per_image_norm:
        wrong.append("--per-image-norm")
    if wrong:
        raise ValueError(
            f"{' and '.join(wrong)} {'differs' if len(wrong) == 1 else 'differ'} from the "
            f"start checkpoint {path}, whose input "
            f"is {start.model_config.in_channels} channel(s) with "
            f"{'its own ' * have.per_image_norm}mean {_values(have.mean)} and "
            f"std {_values(have.std)}: a run from --init-checkpoint keeps these, so leave "
            "those flags out or start from a checkpoint with the input you want"
        )


def _values(values) -> str:
    """Normalisation values as the CLI takes them: ``0.449 0.226``."""
    return " ".join(f"{v:.4g}" for v in values)


def _same(a, b) -> bool:
    """Whether two normalisation vectors are equal (up to float rounding)."""
    return len(a) == len(b) and all(
        math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def inherited_metadata(metadata: dict | None) -> dict:
    """The entries of a starting checkpoint's metadata that a model trained from it keeps
    (:data:`INHERITED_METADATA`, those present)."""
    metadata = metadata or {}
    return {key: metadata[key] for key in INHERITED_METADATA if key in metadata}


def empty_repeats(items, repeat: int) -> list[int] | None:
    """Draws per pass of each training item: ``repeat`` where its mask is empty, else 1
    (None when ``repeat`` is 1: every item once)."""
    if repeat == 1:
        return None
    counts = draw_counts(items, repeat)
    empty = sum(c > 1 for c in counts)
    logger.info("%d of %d training masks are empty: drawn x%d", empty, len(items), repeat)
    return counts


def draw_counts(items, repeat: int) -> list[int]:
    """Draws per pass of each training item: ``repeat`` where its mask is empty, else 1."""
    if repeat == 1:
        return [1] * len(items)
    return [1 if np.asarray(item.mask).any() else repeat for item in items]


def _callback(callbacks, name: str) -> Callable | None:
    if callbacks is None:
        return None
    if isinstance(callbacks, dict):
        return callbacks.get(name)
    return getattr(callbacks, name, None)
