"""Learning-rate schedules, stepped once per epoch (a later issue adds the per-step ones).

>>> import torch
>>> from skier.config import ScheduleConfig
>>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
>>> build_scheduler(opt, ScheduleConfig(name="cosine"), epochs=10) is not None
True
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
    StepLR,
)

from skier.config import ScheduleConfig

__all__ = ["build_scheduler"]


def build_scheduler(
    optimizer: Optimizer, config: ScheduleConfig, epochs: int
) -> LRScheduler | None:
    """The scheduler for ``config`` (``None`` for a constant rate without warm-up)."""
    warmup = min(config.warmup_epochs, max(epochs - 1, 0))
    rest = max(epochs - warmup, 1)
    main: LRScheduler | None
    if config.name == "step":
        main = StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    elif config.name == "exponential":
        main = ExponentialLR(optimizer, gamma=config.gamma)
    elif config.name == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=rest, eta_min=config.min_lr)
    else:
        main = None
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    if main is None:
        return ramp
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
