"""Learning-rate schedules: ``torch.optim.lr_scheduler`` objects built from a ScheduleConfig.

:func:`build_schedule` wraps the torch scheduler in a :class:`Schedule` that says when the train
loop steps it (``interval``: after every optimizer step, or after every epoch) and which logged
metric it needs (``monitor``, reduce-on-plateau only). :func:`lr_curve` runs the same schedule on
a dummy parameter to give the lr of every optimizer step of a run, before training.

>>> import torch
>>> from skier.config import ScheduleConfig
>>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
>>> schedule = build_schedule(opt, ScheduleConfig(name="one_cycle"), epochs=3, steps_per_epoch=5)
>>> schedule.interval, schedule.monitor
('step', None)
>>> curve = lr_curve(ScheduleConfig(name="cosine"), lr=0.1, epochs=4, steps_per_epoch=2)
>>> [round(x, 4) for x in curve.lrs]
[0.1, 0.1, 0.0854, 0.0854, 0.05, 0.05, 0.0146, 0.0146]

Which interval ``interval: auto`` picks, and why:

- ``cyclical``, ``one_cycle``: per step (torch counts their lengths in optimizer steps).
- ``cosine_restarts``: per step, the period counted in steps (``restart_epochs x
  steps_per_epoch``), which is torch's documented per-batch use (``step(epoch + i / iters)``)
  without fractional epochs, so a warm-up can come before it through ``SequentialLR``.
- ``plateau``: per epoch (it needs that epoch's metrics); ``step`` is refused.
- the rest: per epoch. With ``interval: step`` they change smoothly within epochs but keep their
  lengths in epochs (a cosine over the run, a step decay every ``step_size`` epochs).

``cycle_momentum`` (cyclical, one_cycle) left unset cycles momentum only when the optimizer has
a ``momentum`` above 0: torch's default (always) would turn plain SGD into momentum SGD, rewrite
Adam's beta1, and fail on optimizers with neither. Set it to ``true`` to get torch's behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

from skier.config import ScheduleConfig, config_from_mapping
from skier.errors import CheckpointError, ConfigError, problem
from skier.history import higher_is_better

__all__ = [
    "LRCurve",
    "Schedule",
    "build_schedule",
    "build_scheduler",
    "lr_curve",
    "resolve_interval",
]

Interval = Literal["epoch", "step"]
_PER_STEP = ("cyclical", "one_cycle", "cosine_restarts")
_STATE_VERSION = 1


def resolve_interval(config: ScheduleConfig) -> Interval:
    """``"step"`` or ``"epoch"``: what ``interval: auto`` means for this schedule."""
    if config.interval != "auto":
        return config.interval
    return "step" if config.name in _PER_STEP else "epoch"


class Schedule:
    """A torch scheduler and how the train loop drives it.

    - ``interval == "step"``: call :meth:`step` after every optimizer step;
      ``interval == "epoch"``: call ``step(logs)`` after every epoch, with that epoch's logs.
    - ``monitor``: the logged key reduce-on-plateau watches (``None`` for the others); an epoch
      whose logs lack it leaves the schedule as it is.
    - :meth:`state_dict` / :meth:`load_state_dict`: everything needed for an exact resume (with
      the optimizer's own state, which holds the current lr).
    - ``scheduler``: the torch object (a ``SequentialLR`` when a warm-up comes first; for
      plateau the ``ReduceLROnPlateau``, its warm-up kept beside it since ``SequentialLR``
      cannot hold one).

    >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    >>> s = build_schedule(opt, ScheduleConfig(name="plateau", patience=0), epochs=5,
    ...                    steps_per_epoch=3)
    >>> opt.step(); s.step({"val_loss": 1.0}); s.step({"val_loss": 1.0}); s.lr
    0.010000000000000002
    """

    def __init__(
        self,
        scheduler: LRScheduler,
        *,
        name: str,
        interval: Interval,
        monitor: str | None = None,
        warmup: LRScheduler | None = None,
        warmup_steps: int = 0,
        total_steps: int | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.name = name
        self.interval: Interval = interval
        self.monitor = monitor
        self.steps = 0  # calls to step() so far
        self._warmup = warmup  # plateau only: the others hold theirs inside a SequentialLR
        self._warmup_steps = warmup_steps
        self._total_steps = total_steps  # one_cycle: torch raises when stepped past its end

    @property
    def lr(self) -> float:
        """The lr of the optimizer's first parameter group now."""
        return float(self.scheduler.optimizer.param_groups[0]["lr"])

    def step(self, metrics: Mapping[str, float] | None = None) -> None:
        """Advance by one interval (``metrics``: the epoch's logs; plateau reads its monitor)."""
        if self._total_steps is not None and self.steps >= self._total_steps:
            return  # past one_cycle's planned end (e.g. more epochs on resume): hold the lr
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if self.steps < self._warmup_steps and self._warmup is not None:
                self._warmup.step()
            elif metrics is None or self.monitor is None or self.monitor not in metrics:
                return  # no value this epoch (e.g. no validation): nothing happened
            else:
                self.scheduler.step(float(metrics[self.monitor]))
        else:
            self.scheduler.step()
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state: torch's state dicts plus which schedule and how far it went."""
        return {
            "version": _STATE_VERSION,
            "name": self.name,
            "interval": self.interval,
            "steps": self.steps,
            "scheduler": self.scheduler.state_dict(),
            "warmup": self._warmup.state_dict() if self._warmup is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`; also takes a bare torch scheduler state (older
        checkpoints)."""
        if "version" not in state:  # a torch scheduler's own state dict
            self.scheduler.load_state_dict(dict(state))
            self.steps = int(state.get("last_epoch", 0))
            return
        saved = (state.get("name"), state.get("interval"))
        if saved != (self.name, self.interval):
            raise CheckpointError(
                problem(
                    "schedule", f"the checkpoint's {saved[0]!r} stepped per {saved[1]}",
                    f"{self.name} per {self.interval}",
                    "Resume with the schedule the run was started with.",
                )
            )  # fmt: skip
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        if self._warmup is not None and state.get("warmup") is not None:
            self._warmup.load_state_dict(dict(state["warmup"]))
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        return (
            f"Schedule({self.name!r}, interval={self.interval!r}, monitor={self.monitor!r}, "
            f"scheduler={type(self.scheduler).__name__})"
        )


def _group_lrs(optimizer: Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def _cycle_momentum(optimizer: Optimizer, config: ScheduleConfig) -> bool:
    if config.cycle_momentum is not None:
        return config.cycle_momentum
    return all(float(g.get("momentum", 0.0) or 0.0) > 0.0 for g in optimizer.param_groups)


def _problems(
    optimizer: Optimizer, config: ScheduleConfig, epochs: int, steps_per_epoch: int
) -> list[str]:
    """What cannot work with this optimizer and run length (the config itself is valid)."""
    out = []
    if epochs < 1:
        out.append(problem("epochs", "at least 1", epochs))
    if steps_per_epoch < 1:
        out.append(problem("steps_per_epoch", "at least 1", steps_per_epoch))
    if config.name == "cyclical" and config.max_lr is not None:
        low = [config.base_lr] if config.base_lr is not None else _group_lrs(optimizer)
        if any(b >= config.max_lr for b in low):
            out.append(
                problem(
                    "schedule.max_lr", f"above base_lr ({', '.join(f'{b:g}' for b in low)})",
                    config.max_lr, "Raise max_lr or set schedule.base_lr below it.",
                )
            )  # fmt: skip
    cycles = config.cycle_momentum and config.name in ("cyclical", "one_cycle")
    if cycles and not {"momentum", "betas"} & set(optimizer.defaults):
        out.append(
            problem(
                "schedule.cycle_momentum",
                "false or unset for an optimizer with neither momentum nor betas",
                True, f"{type(optimizer).__name__} has neither.",
            )
        )  # fmt: skip
    return out


def _main(
    optimizer: Optimizer, config: ScheduleConfig, *, per_step: int, length: int, lrs: list[float]
) -> LRScheduler | None:
    """The schedule after the warm-up; ``per_step``: scheduler steps per epoch, ``length``:
    scheduler steps it runs for, ``lrs``: the optimizer's lrs before any scheduler changed
    them (a warm-up built first has lowered them already)."""
    gamma = 0.1 if config.gamma is None else config.gamma
    name = config.name
    if name == "step":
        return StepLR(optimizer, step_size=config.step_size * per_step, gamma=gamma)
    if name == "multistep":
        return MultiStepLR(optimizer, [m * per_step for m in config.milestones], gamma=gamma)
    if name == "exponential":  # gamma per epoch, so gamma ** (1 / steps) per step
        return ExponentialLR(optimizer, gamma=gamma ** (1.0 / per_step))
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=length, eta_min=config.min_lr)
    if name == "cosine_restarts":
        return CosineAnnealingWarmRestarts(
            optimizer, T_0=config.restart_epochs * per_step, T_mult=config.restart_mult,
            eta_min=config.min_lr,
        )  # fmt: skip
    momentum = _cycle_momentum(optimizer, config)
    if name == "cyclical":
        return CyclicLR(
            optimizer,
            base_lr=config.base_lr if config.base_lr is not None else lrs,
            max_lr=config.max_lr or 0.0,
            step_size_up=config.step_size_up,
            step_size_down=config.step_size_down,
            mode=config.cycle_mode,
            gamma=1.0 if config.gamma is None else config.gamma,
            cycle_momentum=momentum,
        )
    if name == "one_cycle":
        return OneCycleLR(
            optimizer,
            max_lr=config.max_lr if config.max_lr is not None else lrs,
            total_steps=length,
            pct_start=config.pct_start,
            anneal_strategy=config.anneal_strategy,
            cycle_momentum=momentum,
            div_factor=config.div_factor,
            final_div_factor=config.final_div_factor,
            three_phase=config.three_phase,
        )
    return None  # constant


def _warmup_epochs(config: ScheduleConfig, epochs: int) -> int:
    """The warm-up, clipped so that the run reaches the optimizer's lr by its last epoch."""
    return min(config.warmup_epochs, max(epochs - 1, 0))


def _plateau_mode(config: ScheduleConfig) -> Literal["min", "max"]:
    if config.mode != "auto":
        return config.mode
    return "max" if higher_is_better(config.monitor) else "min"


def build_schedule(
    optimizer: Optimizer, config: ScheduleConfig, *, epochs: int, steps_per_epoch: int
) -> Schedule | None:
    """The :class:`Schedule` for ``config`` (``None``: a constant lr without warm-up).

    ``steps_per_epoch`` is the number of optimizer steps in an epoch (batches per epoch).
    Building sets the optimizer's lr to the schedule's first value; everything is checked
    first, and every problem is reported at once (:class:`~skier.errors.ConfigError`).

    >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    >>> build_schedule(opt, ScheduleConfig(name="cosine", warmup_epochs=2), epochs=10,
    ...                steps_per_epoch=4)
    Schedule('cosine', interval='epoch', monitor=None, scheduler=SequentialLR)
    """
    # Validated again: a config changed field by field skips the checks across fields.
    config = config_from_mapping({"schedule": config.model_dump()}, "").schedule
    problems = _problems(optimizer, config, epochs, steps_per_epoch)
    if problems:
        raise ConfigError(problems)
    interval = resolve_interval(config)
    lrs = _group_lrs(optimizer)
    per_step = steps_per_epoch if interval == "step" else 1
    warmup = _warmup_epochs(config, epochs) * per_step
    length = max(epochs * per_step - warmup, 1)
    ramp = (
        LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup) if warmup else None
    )
    if config.name == "plateau":
        plateau = ReduceLROnPlateau(
            optimizer, mode=_plateau_mode(config), factor=config.factor, patience=config.patience,
            threshold=config.threshold, threshold_mode=config.threshold_mode,
            cooldown=config.cooldown, min_lr=config.min_lr,
        )  # fmt: skip
        return Schedule(
            plateau, name=config.name, interval=interval, monitor=config.monitor,
            warmup=ramp, warmup_steps=warmup,
        )  # fmt: skip
    main = _main(optimizer, config, per_step=per_step, length=length, lrs=lrs)
    total = length if config.name == "one_cycle" else None
    if ramp is not None and main is not None:
        scheduler: LRScheduler = SequentialLR(optimizer, [ramp, main], milestones=[warmup])
    elif ramp is not None or main is not None:
        scheduler = ramp or main  # type: ignore[assignment]
    else:
        return None
    return Schedule(scheduler, name=config.name, interval=interval, total_steps=total)


def build_scheduler(
    optimizer: Optimizer, config: ScheduleConfig, epochs: int
) -> LRScheduler | None:
    """Deprecated: the torch scheduler of a schedule stepped once per epoch, with no metrics.

    Kept for callers that step a bare torch scheduler after each epoch; use
    :func:`build_schedule`, which also handles per-step schedules and reduce-on-plateau.
    """
    if config.name == "plateau" or resolve_interval(config) == "step":
        raise ConfigError(
            problem(
                "schedule", "a schedule stepped once per epoch without metrics here",
                f"{config.name} per {resolve_interval(config)}",
                "Use skier.optim.build_schedule (per-step schedules, reduce-on-plateau).",
            )
        )  # fmt: skip
    schedule = build_schedule(optimizer, config, epochs=epochs, steps_per_epoch=1)
    return schedule.scheduler if schedule is not None else None


@dataclass
class LRCurve:
    """The lr of every optimizer step of a planned run (from :func:`lr_curve`).

    ``steps[i]`` is the step number (from 1); ``epochs[i]`` the epochs done before it
    (fractional: 0 for the first step, 1 for the first step of epoch 2); ``lrs[i]`` the lr that
    step uses. ``warmup_end`` and ``restarts`` are in epochs (``None`` / empty when there are
    none); ``notes`` say where the curve is not what training will do.
    """

    steps: list[int]
    epochs: list[float]
    lrs: list[float]
    name: str
    notes: list[str] = field(default_factory=list)
    interval: Interval = "epoch"
    steps_per_epoch: int = 1
    warmup_end: float | None = None
    restarts: list[float] = field(default_factory=list)

    @property
    def min_lr(self) -> float:
        return min(self.lrs) if self.lrs else math.nan

    @property
    def max_lr(self) -> float:
        return max(self.lrs) if self.lrs else math.nan

    def summary(self) -> str:
        """One line: the schedule, its lr range and the number of steps."""
        epochs = len(self.lrs) // max(self.steps_per_epoch, 1)
        return (
            f"{self.name} (per {self.interval}): lr {self.min_lr:.4g} to {self.max_lr:.4g} over "
            f"{len(self.lrs)} steps ({epochs} epochs x {self.steps_per_epoch} steps)"
        )


def _restarts(config: ScheduleConfig, start: int, epochs: int) -> list[float]:
    if config.name != "cosine_restarts":
        return []
    out, at, period = [], float(start), float(config.restart_epochs)
    while at + period < epochs:
        at += period
        out.append(at)
        period *= config.restart_mult
    return out


def lr_curve(
    config: ScheduleConfig,
    *,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    momentum: float | None = None,
) -> LRCurve:
    """The lr at every optimizer step of a run, without training.

    The schedule is built as :func:`build_schedule` builds it, on one dummy parameter with
    SGD at ``lr`` (``momentum``: the real optimizer's, which decides ``cycle_momentum`` when it
    is unset), and stepped as the train loop steps it. Reduce-on-plateau depends on metrics not
    known yet: it is drawn flat (after any warm-up), and ``notes`` says so.

    >>> curve = lr_curve(ScheduleConfig(name="step", step_size=1, gamma=0.5), lr=1.0,
    ...                  epochs=3, steps_per_epoch=2)
    >>> curve.epochs, curve.lrs
    ([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    """
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=lr, momentum=momentum or 0.0)
    schedule = build_schedule(optimizer, config, epochs=epochs, steps_per_epoch=steps_per_epoch)
    interval = schedule.interval if schedule is not None else resolve_interval(config)
    lrs: list[float] = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()  # no gradient: nothing changes, but torch sees the step it expects
            if schedule is not None and interval == "step":
                schedule.step()
        if schedule is not None and interval == "epoch":
            schedule.step({})
    notes = []
    if config.name == "plateau":
        notes.append(
            f"reduce-on-plateau lowers the lr when {config.monitor} stops improving, which is "
            "not known before training: drawn flat"
        )
    warmup = _warmup_epochs(config, epochs)
    if warmup < config.warmup_epochs:
        notes.append(f"warm-up clipped to {warmup} epochs so the run reaches lr {lr:g}")
    if config.name == "one_cycle" and config.max_lr is None:
        notes.append(f"max_lr unset: the optimizer's lr {lr:g} is the peak")
    n = len(lrs)
    return LRCurve(
        steps=list(range(1, n + 1)),
        epochs=[i / steps_per_epoch for i in range(n)],
        lrs=lrs,
        name=config.name,
        notes=notes,
        interval=interval,
        steps_per_epoch=steps_per_epoch,
        warmup_end=float(warmup) if warmup else None,
        restarts=_restarts(config, warmup, epochs),
    )
