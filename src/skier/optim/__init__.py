"""Optimizers by name, Lookahead, from-scratch teaching optimizers and learning-rate schedules."""

from skier.optim.lookahead import Lookahead
from skier.optim.registry import (
    OPTIMIZERS,
    SETTINGS,
    build_optimizer,
    needs_closure,
    optimizer_names,
    register_optimizer,
)
from skier.optim.schedules import build_scheduler

__all__ = [
    "OPTIMIZERS",
    "SETTINGS",
    "Lookahead",
    "build_optimizer",
    "build_scheduler",
    "needs_closure",
    "optimizer_names",
    "register_optimizer",
]
