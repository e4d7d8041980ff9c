"""Early stopping on a monitored validation metric."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch

from skier.errors import ConfigError, problem
from skier.train.callbacks.monitor import Mode, Monitor
from skier.train.state import TrainState

__all__ = ["EarlyStopping"]

Criterion = Literal["patience", "up", "generalization_loss"]


class EarlyStopping(Monitor):
    """Stop training when ``monitor`` stops improving.

    What counts as an improvement (``mode``, ``min_delta``, ties) is :class:`Monitor`'s, and
    so is ``monitor="auto"`` (``val_loss`` with validation data, else ``loss``).
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

    section: ClassVar[str] = "early_stopping"

    wait: int
    checks: list[float]
    stopped_epoch: int | None
    _best_weights: dict[str, torch.Tensor] | None

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Mode = "auto",
        patience: int = 10,
        min_delta: float = 0.0,
        warmup_epochs: int = 0,
        restore_best: bool = True,
        criterion: Criterion = "patience",
        strips: int = 3,
        threshold: float = 5.0,
    ) -> None:
        problems = self._monitor_problems(mode, min_delta)
        if patience < 1:
            problems.append(problem("early_stopping.patience", ">= 1", patience))
        if warmup_epochs < 0:
            problems.append(problem("early_stopping.warmup_epochs", ">= 0", warmup_epochs))
        if strips < 1:
            problems.append(problem("early_stopping.strips", ">= 1", strips))
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
        self.patience = patience
        self.warmup_epochs = warmup_epochs
        self.restore_best = restore_best
        self.criterion = criterion
        self.strips = strips
        self.threshold = threshold
        super().__init__(monitor, mode, min_delta)

    @property
    def restores_weights(self) -> bool:
        return self.restore_best

    def reset(self) -> None:
        super().reset()
        self.wait = 0
        self.checks = []
        self.stopped_epoch = None
        self._best_weights = None

    def _rule_fires(self, value: float) -> str | None:
        if self.criterion == "patience":
            if self.wait >= self.patience:
                return f"no improvement in {self.key} for {self.wait} validation checks"
        elif self.criterion == "up":
            if len(self.checks) > self.strips:
                rise = self.sign * (value - self.checks[-1 - self.strips])
                if rise > self.min_delta:
                    return f"{self.key} got worse over {self.strips} validation checks"
        elif math.isfinite(self.best) and self.best != 0:
            gl = 100.0 * self.sign * (value / self.best - 1.0)
            if gl > self.threshold:
                return (
                    f"{self.key} is {gl:.1f}% worse than its best "
                    f"(generalization loss > {self.threshold:g}%)"
                )
        return None

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        value = logs.get(self.key)
        if value is None or state.epoch <= self.warmup_epochs or not math.isfinite(value):
            return
        self.checks.append(value)
        if self.update(value, state.epoch):
            self.wait = 0
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
            **super().state_dict(),
            "wait": self.wait,
            "checks": list(self.checks),
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self._best_weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state["wait"])
        self.checks = [float(v) for v in state["checks"]]
        self.stopped_epoch = state["stopped_epoch"]
        self._best_weights = state["best_weights"]
