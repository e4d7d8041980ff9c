"""Training shown live in a notebook cell: one output, updated in place (see :mod:`skier._live`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from skier._html import html_table
from skier._live import LiveOutput, LiveTarget, duration_text, status_html
from skier.train.callbacks.base import Callback
from skier.train.state import TrainState

__all__ = ["LiveDisplay"]

_SHOWN = ("loss", "error", "accuracy", "val_loss", "val_error", "val_accuracy", "lr")


class LiveDisplay(Callback):
    """Epoch and batch progress, the latest loss and validation metrics, elapsed and estimated
    time left, and the learning curves, as one output of a Jupyter cell, updated in place.

    ``fit`` adds it by itself in a Jupyter kernel (``progress="auto"`` or ``"on"``); give it in
    ``callbacks`` to choose the throttle. Within an epoch the text moves on at most every
    ``text_every_s`` seconds and shows the batch count (no per-batch loss: reading one would
    wait for the device); the learning curves are redrawn after an epoch at most every
    ``figure_every_s`` seconds (see :class:`skier._live.LiveOutput`), and once more at the end.

    >>> fit(model, data, epochs=20, callbacks=[LiveDisplay(figure_every_s=10)])  # doctest: +SKIP
    """

    stateful = False

    def __init__(
        self,
        *,
        text_every_s: float = 1.0,
        figure_every_s: float = 2.0,
        target: LiveTarget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.text_every_s = text_every_s
        self.figure_every_s = figure_every_s
        self._target = target
        self._clock = clock
        self.output: LiveOutput | None = None
        self._started = 0.0
        self._first_epoch = 0  # the epochs done before this fit (a resume)
        self._batch = 0
        self._logs: dict[str, float] = {}

    def on_fit_start(self, state: TrainState) -> None:
        self.output = LiveOutput(target=self._target, text_every_s=self.text_every_s,
                                 figure_every_s=self.figure_every_s, clock=self._clock)  # fmt: skip
        self._started = self._clock()
        self._first_epoch, self._batch = state.epoch, 0
        self._logs = {k: v for k, v in (state.history.rows[-1] if state.history else {}).items()}
        self._show(state, figure=False)

    def on_batch_end(self, state: TrainState) -> None:
        self._batch += 1
        if self.output is not None and self.output.due():  # one clock read per batch
            self._show(state, figure=False)

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self._batch = 0
        self._logs.update(logs)  # validation keys stay from the last epoch that had them
        self._show(state, figure=True)

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self._show(state, figure=True, final=True)

    # --- what is shown -----------------------------------------------------------------------
    def _facts(self, state: TrainState, final: bool) -> list[str]:
        elapsed = self._clock() - self._started
        per_epoch = max(state.batches_per_epoch, 1)
        in_epoch = min(self._batch / per_epoch, 1.0)
        # The epoch being trained is state.epoch while batches run, done once on_epoch_end ran.
        running = state.epoch - (0 if self._batch == 0 else 1)
        done = running - self._first_epoch + in_epoch
        total = state.epochs - self._first_epoch
        facts = [f"epoch {state.epoch}/{state.epochs}"]
        if self._batch:
            facts.append(f"batch {self._batch}/{state.batches_per_epoch}")
        facts.append(f"elapsed {duration_text(elapsed)}")
        if final:
            facts.append(state.stop_reason or "done")
        elif 0 < done < total:
            facts.append(f"left ~{duration_text(elapsed * (total - done) / done)}")
        return facts

    def _show(self, state: TrainState, *, figure: bool, final: bool = False) -> None:
        if self.output is None:
            return
        facts = self._facts(state, final)
        shown = [(k, self._logs[k]) for k in _SHOWN if k in self._logs]
        table = html_table([k for k, _ in shown], [[v for _, v in shown]]) if shown else ""
        text = ", ".join(facts + [f"{k} {v:.4g}" for k, v in shown])
        draw = (lambda: _figure(state)) if figure and len(state.history) else None
        self.output.update(status_html("fit", facts, table), text, draw, final=final)


def _figure(state: TrainState) -> Any:
    # Imported here: train sits below plots, and matplotlib loads only once a figure is drawn.
    from skier.plots.curves import RecordedCurves, plot_learning_figure

    return plot_learning_figure(RecordedCurves(state.history, stop_reason=state.stop_reason))
