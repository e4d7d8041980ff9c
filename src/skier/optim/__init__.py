"""Optimizers by name and learning-rate schedules."""

from skier.optim.registry import OPTIMIZERS, build_optimizer, optimizer_names, register_optimizer
from skier.optim.schedules import build_scheduler

__all__ = [
    "OPTIMIZERS",
    "build_optimizer",
    "build_scheduler",
    "optimizer_names",
    "register_optimizer",
]
