"""Which samples each optimiser step uses, and where the periods end (:class:`Schedule`).

Every random choice of the data pipeline is drawn from a NumPy generator seeded by
``(seed, what, epoch or step)``, never from a global RNG state, so a batch depends only
on the seed and the step number (exact resume, any number of ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Schedule:
    """Which samples each optimiser step uses, and where the periods end.

    ``repeats`` (one count per training image, default all 1) makes a pass over the
    training set draw image i ``repeats[i]`` times; the pass is then that much longer.

    ``min_samples``: the fewest samples each rank's batch may hold (2 where the model's
    BatchNorm needs two: ``config.samples_for_batchnorm``). An epoch's last partial batch
    that would give a rank fewer is left out of that epoch, as one smaller than the
    number of ranks is; with the default 1 the batches are as they always were.
    """

    n_train: int
    batch_size: int
    world_size: int
    epochs: int
    steps: int = 0
    lr_decay_every: int = 0
    seed: int = 0
    repeats: Sequence[int] | None = None
    min_samples: int = 1

    def __post_init__(self):
        if self.n_train < self.world_size:
            raise ValueError(
                f"{self.n_train} training images for {self.world_size} ranks: need at least "
                "one image per rank"
            )
        # (n_pass,) image drawn at each position of a pass; None = each image once, so
        # the batches of runs made before repeats existed stay the same
        self.pool = None
        if self.repeats is not None and any(r != 1 for r in self.repeats):
            if len(self.repeats) != self.n_train or min(self.repeats) < 1:
                raise ValueError(f"repeats: expected {self.n_train} counts >= 1")
            self.pool = np.repeat(np.arange(self.n_train), self.repeats)
        self.n_pass = self.n_train if self.pool is None else len(self.pool)
        if self.steps:
            self.steps_per_epoch = 0
            every = self.lr_decay_every or 0
            if every:
                self.period_ends = list(range(every, self.steps, every)) + [self.steps]
            else:
                n = min(self.epochs, self.steps)
                self.period_ends = sorted({round((p + 1) * self.steps / n) for p in range(n)})
        else:
            full, rest = divmod(self.n_pass, self.batch_size)
            # a last partial batch smaller than the number of ranks cannot be sharded, and
            # one that gives a rank fewer than min_samples has no BatchNorm statistics
            self.steps_per_epoch = full + (1 if rest >= self.world_size * self.min_samples else 0)
            if self.steps_per_epoch == 0:
                raise ValueError("no complete batch: lower the batch size")
            every = self.lr_decay_every or self.steps_per_epoch
            total = self.epochs * self.steps_per_epoch
            self.period_ends = list(range(every, total, every)) + [total]

    @property
    def total_steps(self) -> int:
        return self.period_ends[-1]

    @property
    def periods(self) -> int:
        return len(self.period_ends)

    def period_of(self, step: int) -> int:
        """Index of the period that step ``step`` (0-based) belongs to."""
        for p, end in enumerate(self.period_ends):
            if step < end:
                return p
        return self.periods

    def epoch_of(self, step: int) -> float:
        """Epochs (passes over the training set) completed after ``step`` steps."""
        if self.steps_per_epoch:
            return step / self.steps_per_epoch
        return step * self.batch_size / self.n_pass

    def permutation(self, epoch: int) -> np.ndarray:
        """(n_pass,) image indices of pass ``epoch``, in drawing order."""
        order = np.random.default_rng([self.seed, 1, epoch]).permutation(self.n_pass)
        return order if self.pool is None else self.pool[order]

    def indices(self, step: int) -> list[int]:
        """Global batch (sample indices) of optimiser step ``step`` (0-based)."""
        if self.steps_per_epoch:
            epoch, b = divmod(step, self.steps_per_epoch)
            return self.permutation(epoch)[b * self.batch_size : (b + 1) * self.batch_size].tolist()
        out = []
        for pos in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, i = divmod(pos, self.n_pass)
            if i == 0 or not out:
                perm = self.permutation(epoch)
            out.append(int(perm[i]))
        return out

    def draws(self, step: int, n: int) -> np.ndarray:
        """(n, 16) augmentation uniforms of step ``step``.

        Columns 0-4 (flips, turn, crop position) come from the stream that runs made
        before zoom, rotation and colour jitter existed, so their batches stay the same;
        columns 5-13 (zoom to colour) and 14-15 (tone, blur) come from streams of their
        own, so each addition leaves the earlier runs' draws as they were.
        """
        base = np.random.default_rng([self.seed, 2, step]).random((n, 5))
        extra = np.random.default_rng([self.seed, 3, step]).random((n, 9))
        scanner = np.random.default_rng([self.seed, 4, step]).random((n, 2))
        return np.concatenate([base, extra, scanner], axis=1)
