"""Early stopping on a monitored validation metric."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch

from skier.errors import ConfigError, problem
from skier.train.callbacks.base import Callback
from skier.train.state import TrainState

__all__ = ["EarlyStopping", "resolve_mode"]

Criterion = Literal["patience", "up", "generalization_loss"]


def resolve_mode(monitor: str, mode: str) -> Literal["min", "max"]:
    """``auto``: maximise accuracies, minimise everything else (losses, errors)."""
    if mode == "min":
        return "min"
    if mode == "max":
        return "max"
    return "max" if "acc" in monitor else "min"


class EarlyStopping(Callback):
    """Stop training when ``monitor`` stops improving.

    Only epochs whose logs hold ``monitor`` count (validation checks; with ``val_every: 5`` the
    patience is five checks, not five epochs). The first ``warmup_epochs`` epochs are ignored
    entirely: they neither set the best value nor count toward patience.

    ``criterion`` picks the stopping rule:

    - ``patience``: no improvement larger than ``min_delta`` over ``patience`` checks.
    - ``up``: the course's rule — the cumulative one-step difference over ``strips`` checks is
      positive, i.e. the value now is worse than it was ``strips`` checks ago (by more than
      ``min_delta``). Prechelt's UP_s ("Early stopping — but when?", 1998) instead asks for a
      rise at each of s successive strips; the cumulative form tolerates one noisy dip.
    - ``generalization_loss``: the value is more than ``threshold`` percent worse than the best
      (Prechelt's GL_alpha).

    With ``restore_best`` the weights of the best check are put back when training ends.

    >>> es = EarlyStopping(monitor="val_loss", patience=3)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Literal["auto", "min", "max"] = "auto",
        patience: int = 10,
        min_delta: float = 0.0,
        warmup_epochs: int = 0,
        restore_best: bool = True,
        criterion: Criterion = "patience",
        strips: int = 3,
        threshold: float = 5.0,
    ) -> None:
        problems = []
        if patience < 1:
            problems.append(problem("early_stopping.patience", ">= 1", patience))
        if min_delta < 0:
            problems.append(problem("early_stopping.min_delta", ">= 0", min_delta))
        if warmup_epochs < 0:
            problems.append(problem("early_stopping.warmup_epochs", ">= 0", warmup_epochs))
        if strips < 1:
            problems.append(problem("early_stopping.strips", ">= 1", strips))
        if mode not in ("auto", "min", "max"):
            problems.append(problem("early_stopping.mode", "auto, min or max", mode))
        if not threshold > 0:
            problems.append(problem("early_stopping.threshold", "> 0 (a percentage)", threshold))
        if criterion not in ("patience", "up", "generalization_loss"):
            problems.append(
                problem(
                    "early_stopping.criterion", "patience, up or generalization_loss", criterion
                )
            )
        if problems:
            raise ConfigError(problems)
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.patience = patience
        self.min_delta = min_delta
        self.warmup_epochs = warmup_epochs
        self.restore_best = restore_best
        self.criterion = criterion
        self.strips = strips
        self.threshold = threshold
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.checks: list[float] = []
        self.stopped_epoch: int | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None

    def monitored_keys(self) -> list[str]:
        return [self.monitor]

    def _sign(self) -> float:
        return 1.0 if self.mode == "min" else -1.0

    def _improved(self, value: float) -> bool:
        return self._sign() * (self.best - value) > self.min_delta

    def _rule_fires(self, value: float) -> str | None:
        if self.criterion == "patience":
            if self.wait >= self.patience:
                return f"no improvement in {self.monitor} for {self.wait} validation checks"
        elif self.criterion == "up":
            if len(self.checks) > self.strips:
                rise = self._sign() * (value - self.checks[-1 - self.strips])
                if rise > self.min_delta:
                    return f"{self.monitor} got worse over {self.strips} validation checks"
        elif math.isfinite(self.best) and self.best != 0:
            gl = 100.0 * self._sign() * (value / self.best - 1.0)
            if gl > self.threshold:
                return (
                    f"{self.monitor} is {gl:.1f}% worse than its best "
                    f"(generalization loss > {self.threshold:g}%)"
                )
        return None

    def on_fit_start(self, state: TrainState) -> None:
        if state.epoch == 0:  # a fresh fit; a resume keeps the loaded state
            self._reset()

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None or state.epoch <= self.warmup_epochs or not math.isfinite(value):
            return
        self.checks.append(value)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self._best_weights = state.capture_weights()
        else:
            self.wait += 1
        reason = self._rule_fires(value)
        if reason is not None:
            self.stopped_epoch = state.epoch
            state.request_stop(f"early stopping: {reason}")

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if self.restore_best and self._best_weights is not None and self.best_epoch != state.epoch:
            state.request_restore(
                self._best_weights, f"restored the weights of epoch {self.best_epoch}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "checks": list(self.checks),
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self._best_weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.wait = int(state["wait"])
        self.checks = [float(v) for v in state["checks"]]
        self.stopped_epoch = state["stopped_epoch"]
        self._best_weights = state["best_weights"]
