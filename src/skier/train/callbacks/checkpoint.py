"""Checkpointing: ``last.pt`` every ``every`` epochs and ``best.pt`` when the monitor improves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from skier.errors import ConfigError, problem
from skier.train.callbacks.base import Callback
from skier.train.callbacks.early_stopping import resolve_mode
from skier.train.state import TrainState

__all__ = ["Checkpoint"]


class Checkpoint(Callback):
    """Ask the loop for full checkpoints (model, optimizer, scheduler, callbacks, RNG, history).

    The loop writes them atomically after every callback of the epoch has run, so the saved
    callback state is that of the finished epoch whatever the order of the callbacks.
    ``monitor="auto"`` means ``val_loss`` when there is validation data, else ``loss``.

    >>> ckpt = Checkpoint("runs/demo/checkpoints", every=1)
    """

    def __init__(
        self,
        directory: str | Path,
        every: int = 1,
        keep_best: bool = True,
        monitor: str = "auto",
        mode: Literal["auto", "min", "max"] = "auto",
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(problem("checkpoint.every", "an integer >= 1", every))
        if mode not in ("auto", "min", "max"):
            raise ConfigError(problem("checkpoint.mode", "'auto', 'min' or 'max'", mode))
        self.directory = Path(directory)
        self.every = every
        self.keep_best = keep_best
        self.monitor = monitor
        self.mode = mode
        self.best = math.nan
        self.best_epoch: int | None = None

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def monitored_keys(self) -> list[str]:
        return [] if self.monitor == "auto" else [self.monitor]

    def on_fit_start(self, state: TrainState) -> None:
        if self.monitor == "auto":
            self.monitor = "val_loss" if "val_loss" in state.available_keys else "loss"

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if state.epoch % self.every == 0 or state.epoch == state.epochs:
            state.request_checkpoint(str(self.last_path), "last")
        value = logs.get(self.monitor)
        if not self.keep_best or value is None or not math.isfinite(value):
            return
        sign = 1.0 if resolve_mode(self.monitor, self.mode) == "min" else -1.0
        if math.isnan(self.best) or sign * (self.best - value) > 0:
            self.best, self.best_epoch = value, state.epoch
            state.request_checkpoint(str(self.best_path), "best")

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        # A stop between two `every` epochs still leaves the final position on disk.
        state.request_checkpoint(str(self.last_path), "last")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "monitor": self.monitor}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.monitor = str(state["monitor"])
