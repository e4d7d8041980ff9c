"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest


@pytest.fixture
def interrupt_at() -> Callable[[int | None], Any]:
    """A callback factory: ``interrupt_at(3)`` raises ``KeyboardInterrupt`` (a Ctrl-C) at the
    end of epoch 3, after that epoch's other callbacks (``None``: never). It is left out of
    checkpoints (``stateful = False``), so a resume may pass it or not."""
    from skier.train import Callback, TrainState  # here: tests without torch stay without it

    class InterruptAt(Callback):
        stateful = False

        def __init__(self, epoch: int | None) -> None:
            self.epoch = epoch

        def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
            if state.epoch == self.epoch:
                raise KeyboardInterrupt

    return InterruptAt
