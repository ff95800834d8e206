"""The Fine-tune dock's live plot: training loss, held-out Dice and HD, in napari's theme.

A mixin of :class:`~napari_tmunet._finetune_widget.FinetuneWidget`; it draws the dock's
``history`` into a compact matplotlib canvas placed in ``plot_box``.
"""

from __future__ import annotations

import time

from ._widget_common import theme_colours


class LivePlot:
    """The plot part of the Fine-tune dock (see the module docstring)."""

    _last_draw = 0.0

    def _make_plot(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(3.6, 1.9), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.setMinimumHeight(150)  # compact: the dock must fit a 768-px screen
        self.canvas.setMinimumWidth(200)
        self._ax_loss, self._ax_dice = figure.subplots(1, 2)
        self._ax_hd = self._ax_dice.twinx()
        (self._loss_line,) = self._ax_loss.plot([], [], lw=0.8, color="tab:blue")
        (self._dice_line,) = self._ax_dice.plot([], [], marker=".", color="tab:green")
        (self._hd_line,) = self._ax_hd.plot([], [], marker=".", ls="--", color="tab:red")
        self._ax_loss.set(title="training loss", xlabel="step")
        self._ax_dice.set(title="held-out", xlabel="step")
        self._ax_dice.set_ylabel("Dice", color="tab:green")
        self._ax_hd.set_ylabel("HD (px)", color="tab:red")
        for ax in (self._ax_loss, self._ax_dice, self._ax_hd):
            ax.tick_params(labelsize=7)
        for ax in (self._ax_loss, self._ax_dice):
            ax.title.set_fontsize(8)
        self.plot_box.native.layout().addWidget(self.canvas)
        self.apply_theme()
        theme_event = getattr(getattr(self.viewer, "events", None), "theme", None)
        if theme_event is not None:
            theme_event.connect(self.apply_theme)

    def apply_theme(self, _event=None) -> None:
        """Draw the plot in the colours of napari's theme (dark or light)."""
        colours = theme_colours(self.viewer)
        background, text = colours["background"], colours["text"]
        self.canvas.figure.set_facecolor(background)
        for ax in (self._ax_loss, self._ax_dice, self._ax_hd):
            ax.set_facecolor(background)
            ax.tick_params(colors=text, which="both")
            for spine in ax.spines.values():
                spine.set_color(text)
            ax.xaxis.label.set_color(text)
            ax.title.set_color(text)
        self._ax_loss.yaxis.label.set_color(text)
        self.canvas.draw_idle()

    def _redraw(self, force: bool = False):
        now = time.monotonic()
        if not force and now - self._last_draw < 1.0:  # a draw costs ~60 ms of GUI time
            return
        self._last_draw = now
        losses = self.history["loss"]
        evals = [r for r in self.history["eval"] if r.get("val_dice") is not None]
        self._loss_line.set_data([s for s, _ in losses], [v for _, v in losses])
        self._dice_line.set_data([r["step"] for r in evals], [r["val_dice"] for r in evals])
        hd = [r for r in evals if r.get("val_hd") is not None]
        self._hd_line.set_data([r["step"] for r in hd], [r["val_hd"] for r in hd])
        for ax in (self._ax_loss, self._ax_dice, self._ax_hd):
            ax.relim()
            ax.autoscale_view()
        self.canvas.draw_idle()
