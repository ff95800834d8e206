"""The Fine-tune dock's live plot: training loss and held-out Dice (or, where the held-out
part has no foreground, its false-positive pixels), in napari's theme.

A mixin of :class:`~napari_tmunet._finetune_widget.FinetuneWidget`; it draws the dock's
``history`` into a compact matplotlib canvas placed in ``plot_box``; :func:`read_history`
rebuilds that history from a run folder when a run resumes.
"""

from __future__ import annotations

import time
from pathlib import Path

from ._widget_common import theme_colours

# the validation entry of a fine-tune whose held-out part has no foreground (no Dice)
FALSE_POSITIVES = "val_false_positive_px"


class LivePlot:
    """The plot part of the Fine-tune dock (see the module docstring)."""

    _last_draw = 0.0

    def _make_plot(self):
        """Training loss (left axis) and held-out Dice (right axis) against the step."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(3.2, 1.8), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.setMinimumHeight(140)  # compact: the dock must fit a 768-px screen
        self.canvas.setMinimumWidth(180)
        self._ax_loss = figure.subplots()
        self._ax_dice = self._ax_loss.twinx()
        (self._loss_line,) = self._ax_loss.plot([], [], lw=0.8, color="tab:blue")
        (self._dice_line,) = self._ax_dice.plot([], [], marker=".", color="tab:green")
        self._ax_loss.set_xlabel("step", fontsize=7)
        self._ax_loss.set_ylabel("training loss", color="tab:blue", fontsize=7)
        self._ax_dice.set_ylabel("held-out Dice", color="tab:green", fontsize=7)
        self._ax_dice.set_ylim(0, 1)
        for ax in (self._ax_loss, self._ax_dice):
            ax.tick_params(labelsize=7)
        self.plot_box.native.layout().addWidget(self.canvas)
        self._ax_loss.set_ylim(0, 1)  # until there is a loss
        self.apply_theme()
        self._redraw(force=True)
        theme_event = getattr(getattr(self.viewer, "events", None), "theme", None)
        if theme_event is not None:
            theme_event.connect(self.apply_theme)

    def apply_theme(self, _event=None) -> None:
        """Draw the plot in the colours of napari's theme (dark or light)."""
        colours = theme_colours(self.viewer)
        background, text = colours["background"], colours["text"]
        self.canvas.figure.set_facecolor(background)
        self._ax_loss.set_facecolor(background)
        for ax in (self._ax_loss, self._ax_dice):
            ax.tick_params(colors=text, which="both")
            for spine in ax.spines.values():
                spine.set_color(text)
            ax.xaxis.label.set_color(text)
        self.canvas.draw_idle()

    def _redraw(self, force: bool = False):
        now = time.monotonic()
        if not force and now - self._last_draw < 1.0:  # a draw costs ~60 ms of GUI time
            return
        self._last_draw = now
        losses = self.history["loss"]
        key = _held_out_key(self.history["eval"])
        evals = [r for r in self.history["eval"] if r.get(key) is not None]
        self._loss_line.set_data([s for s, _ in losses], [v for _, v in losses])
        self._dice_line.set_data([r["step"] for r in evals], [r[key] for r in evals])
        steps = [s for s, _ in losses] + [r["step"] for r in evals]
        self._ax_loss.set_xlim(0, max(max(steps, default=1), int(self.steps.value), 1))
        if losses:
            self._ax_loss.relim()
            self._ax_loss.autoscale_view(scalex=False)
        label, top = "held-out Dice", 1.0
        if key == FALSE_POSITIVES:  # pixels, not a Dice in 0..1
            label, top = "held-out false-positive px", max(max(r[key] for r in evals), 1) * 1.05
        self._ax_dice.set_ylabel(label, color="tab:green", fontsize=7)
        self._ax_dice.set_ylim(0, top)
        self.canvas.draw_idle()


def _held_out_key(records: list[dict]) -> str:
    """The validation entry the plot draws: ``val_dice``, or the false-positive pixels of
    a held-out part without foreground (where Dice means nothing)."""
    return FALSE_POSITIVES if any(FALSE_POSITIVES in r for r in records) else "val_dice"


def read_history(train_dir: Path) -> dict[str, list]:
    """Loss and validation points of a run's ``metrics.jsonl`` (``run_folder.read_metrics``:
    a cut-off last line is left out)."""
    from .training.run_folder import read_metrics  # here: it imports torch

    history: dict[str, list] = {"loss": [], "eval": []}
    for record in read_metrics(train_dir):
        if record.get("train_loss") is not None:
            history["loss"].append((record["step"], record["train_loss"]))
        if record.get("val_dice") is not None or record.get(FALSE_POSITIVES) is not None:
            history["eval"].append(record)
    return history
