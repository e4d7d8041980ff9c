"""Monitor: the one place that says whether a logged value is an improvement."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from skier.errors import ConfigError, problem
from skier.history import higher_is_better
from skier.train.callbacks.base import Callback
from skier.train.state import TrainState

__all__ = ["Monitor", "resolve_mode", "verdict"]

Mode = Literal["auto", "min", "max"]


def resolve_mode(monitor: str, mode: str) -> Literal["min", "max"]:
    """``auto``: maximise accuracies, F1, precision, recall, AUROC and R²; minimise everything
    else (losses, errors, mae, rmse): :func:`skier.history.higher_is_better`.

    >>> resolve_mode("val_accuracy", "auto"), resolve_mode("val_loss", "auto")
    ('max', 'min')
    >>> resolve_mode("val_f1_macro", "auto"), resolve_mode("val_rmse", "auto")
    ('max', 'min')
    """
    if mode == "min":
        return "min"
    if mode == "max":
        return "max"
    return "max" if higher_is_better(monitor) else "min"


class Monitor(Callback):
    """A callback that watches one logged key and keeps its best value and epoch.

    A value is an improvement when it beats the best by more than ``min_delta`` in the
    direction of ``mode`` (``auto``: maximise accuracies, minimise the rest); a tie is not one,
    nor is a missing or non-finite value. ``monitor="auto"`` watches ``val_loss`` when there is
    validation data (``val_ema_loss``/``val_swa_loss`` when the run returns its averaged
    weights: ``train.average_select: average``), else ``loss``: the resolved name is
    :attr:`key`, set at fit start, while ``monitor`` keeps what was given. A fresh fit starts
    from no best; a resumed fit keeps the loaded state, its key included.

    On its own a ``Monitor`` records the best of its key; subclasses (:class:`EarlyStopping`,
    :class:`Checkpoint`) act on :meth:`update`'s answer. The run's verdict
    (``FitResult.best_epoch``, ``best_value``) comes from a Monitor: see :func:`verdict`.

    >>> m = Monitor("val_accuracy", min_delta=0.01)
    >>> [m.update(v, epoch) for epoch, v in enumerate([0.5, 0.505, 0.6, 0.6], start=1)]
    [True, False, True, False]
    >>> m.best, m.best_epoch
    (0.6, 3)
    """

    #: Prefix of this callback's settings in error messages (``early_stopping.min_delta``).
    section: ClassVar[str] = "monitor"
    #: Whether this monitor's best can be the run's verdict (see :func:`verdict`).
    gives_verdict: ClassVar[bool] = True

    best: float
    best_epoch: int | None

    def __init__(self, monitor: str = "val_loss", mode: Mode = "auto", min_delta: float = 0.0):
        problems = self._monitor_problems(mode, min_delta)
        if problems:
            raise ConfigError(problems)
        self.monitor = monitor  # as given, "auto" included; the resolved name is `key`
        self.mode = mode
        self.min_delta = min_delta
        self._key: str | None = None
        self.reset()

    @classmethod
    def _monitor_problems(cls, mode: object, min_delta: object) -> list[str]:
        """What is wrong with ``mode`` and ``min_delta``, for a subclass to report with its own."""
        problems = []
        if mode not in ("auto", "min", "max"):
            problems.append(problem(f"{cls.section}.mode", "'auto', 'min' or 'max'", mode))
        try:
            delta_ok = float(min_delta) >= 0  # type: ignore[arg-type]
        except (TypeError, ValueError):
            delta_ok = False
        if not delta_ok:
            problems.append(problem(f"{cls.section}.min_delta", ">= 0", min_delta))
        return problems

    @property
    def key(self) -> str:
        """The logged key watched: ``monitor``, or what ``"auto"`` resolved to at fit start."""
        return self._key if self._key is not None else self.monitor

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return resolve_mode(self.key, self.mode)

    @property
    def sign(self) -> float:
        """+1 when smaller is better, -1 when larger is: ``sign * (a - b) > 0`` means a is worse."""
        return 1.0 if self.resolved_mode == "min" else -1.0

    @property
    def restores_weights(self) -> bool:
        """Whether the model ends training with this monitor's best weights."""
        return False

    def reset(self) -> None:
        """Forget the best (a fresh fit). A subclass clears its own state too, then calls this."""
        self.best = math.inf if self.resolved_mode == "min" else -math.inf
        self.best_epoch = None

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best by more than ``min_delta`` (a tie does not)."""
        return math.isfinite(value) and self.sign * (self.best - value) > self.min_delta

    def update(self, value: float | None, epoch: int) -> bool:
        """Take ``value`` (``None``: not logged this epoch) at ``epoch``; ``True`` when it is
        an improvement, and then it is the new best."""
        if value is None or not self.improved(value):
            return False
        self.best, self.best_epoch = value, epoch
        return True

    def monitored_keys(self) -> list[str]:
        return [] if self.monitor == "auto" else [self.monitor]

    def on_fit_start(self, state: TrainState) -> None:
        if state.epoch == 0:  # a fresh fit; a resume keeps the loaded state
            self._key = self._resolve(state)
            self.reset()
        elif self._key is None:  # resumed from a state that did not save its key
            self._key = self._resolve(state)

    def _resolve(self, state: TrainState) -> str:
        return state.default_monitor if self.monitor == "auto" else self.monitor

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.update(logs.get(self.key), state.epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.key, "best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("monitor")  # the resolved key; absent in EarlyStopping's older state
        self._key = str(saved) if saved is not None and saved != "auto" else None
        best = float(state["best"])
        # Checkpoint's older state says NaN for "no best yet"
        self.best = best if not math.isnan(best) else (math.inf * self.sign)
        self.best_epoch = state["best_epoch"]


def verdict(callbacks: Iterable[Callback]) -> Monitor | None:
    """The monitor whose best is the run's verdict, among those that have seen a value and
    give one (``gives_verdict``): the first whose best weights the model ends with (early
    stopping's ``restore_best``), else the first. ``None``: the loop judges the history.

    >>> quiet, seen = Monitor("val_loss"), Monitor("val_accuracy")
    >>> seen.update(0.9, epoch=2)
    True
    >>> verdict([quiet, seen]) is seen  # the first has seen no value
    True
    """
    seen = [
        cb
        for cb in callbacks
        if isinstance(cb, Monitor) and cb.gives_verdict and cb.best_epoch is not None
    ]
    return next((m for m in seen if m.restores_weights), seen[0] if seen else None)
