"""A progress bar over epochs and batches (tqdm), quiet when stderr is not a terminal."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal

from tqdm.std import tqdm as text_tqdm

from skier._live import in_jupyter_kernel
from skier.train.callbacks.base import Callback
from skier.train.state import TrainState

__all__ = ["ProgressBar", "progress_bar_class"]


def progress_bar_class() -> type[Any]:
    """tqdm's notebook widget in a Jupyter kernel that has ipywidgets, else tqdm's text bar.

    Not ``tqdm.auto``: in a kernel without ipywidgets it warns ("TqdmWarning: IProgress not
    found") as soon as it is imported; the text bar works there and says nothing.
    """
    if in_jupyter_kernel() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    return text_tqdm


class ProgressBar(Callback):
    """Epoch bar with the latest metrics; a batch bar inside it.

    ``enabled="auto"`` shows the bars only when stderr is a terminal (the CLI also turns them
    off under CI).
    """

    stateful = False

    def __init__(self, enabled: bool | Literal["auto"] = "auto") -> None:
        self.enabled = sys.stderr.isatty() if enabled == "auto" else bool(enabled)
        self._epochs: Any = None
        self._batch: Any = None
        self._reset_at = 0.0

    def on_fit_start(self, state: TrainState) -> None:
        if not self.enabled:
            return
        tqdm = progress_bar_class()
        self._epochs = tqdm(
            total=state.epochs, initial=state.epoch, desc="epochs", unit="ep", leave=True
        )
        self._batch = tqdm(total=state.batches_per_epoch, desc="batches", unit="b", leave=False)

    def on_batch_end(self, state: TrainState) -> None:
        if self._batch is not None:
            self._batch.update(1)

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if self._epochs is None:
            return
        shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "val_loss", "val_error")}
        self._epochs.set_postfix(shown, refresh=False)
        self._epochs.update(1)
        self._new_epoch(self._batch)

    def _new_epoch(self, bar: Any) -> None:
        """The batch bar back to 0. tqdm's ``reset`` redraws the bar (about 0.15 ms, 2% of an
        epoch of digits); epochs that short reset the count without a redraw, and tqdm draws
        it again at its next update due by ``mininterval``."""
        now = time.monotonic()
        if now - self._reset_at >= bar.mininterval:
            bar.reset()
            self._reset_at = now
        else:
            bar.n = bar.last_print_n = 0

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        for bar in (self._batch, self._epochs):
            if bar is not None:
                bar.close()
        self._epochs = self._batch = None
