"""The callback contract: a few hooks, a read-only state, a flat dict of float logs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skier.train.state import TrainState

__all__ = ["Callback"]


class Callback:
    """Base class: override the hooks you need.

    - ``on_fit_start(state)``: once, before the first epoch (and after a resume).
    - ``on_batch_end(state)``: after each optimizer step (``state.step`` counts them); with
      ``train.accumulate: k``, once per step of k micro-batches, whose summed gradients the
      parameters still hold. Only called when overridden (it costs per-batch Python work).
    - ``on_epoch_end(state, logs)``: ``logs`` is a flat ``dict[str, float]`` such as ``loss``,
      ``error``, ``val_loss``, ``val_error``, ``lr``, ``epoch_time``; validation keys appear only
      on validation epochs.
    - ``on_fit_end(state, logs)``: once, with the last epoch's logs.

    ``monitored_keys()`` names the log keys the callback reads; the loop checks them at fit start
    against what it will produce. ``requires`` lists callback classes that must come earlier in
    the list. ``state_dict``/``load_state_dict`` make a resume exact; a callback with
    ``stateful = False`` (a progress bar) is left out of checkpoints.
    """

    requires: tuple[type[Callback], ...] = ()
    stateful = True  # False: nothing to checkpoint, and it may differ between run and resume

    def monitored_keys(self) -> list[str]:
        return []

    def on_fit_start(self, state: TrainState) -> None:
        return None

    def on_batch_end(self, state: TrainState) -> None:
        return None

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        return None

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None
