"""Optimizers by name, Lookahead, SAM, from-scratch teaching optimizers and LR schedules."""

from skier.optim.lookahead import Lookahead
from skier.optim.registry import (
    OPTIMIZERS,
    SETTINGS,
    build_optimizer,
    has_line_search,
    needs_closure,
    optimizer_names,
    register_optimizer,
)
from skier.optim.sam import SAM
from skier.optim.schedules import build_scheduler

__all__ = [
    "OPTIMIZERS",
    "SAM",
    "SETTINGS",
    "Lookahead",
    "build_optimizer",
    "build_scheduler",
    "has_line_search",
    "needs_closure",
    "optimizer_names",
    "register_optimizer",
]
