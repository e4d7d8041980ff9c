"""The state callbacks see: read-only facts plus a few explicit requests.

Callbacks never change the loop directly. They ask: stop (with a reason), save a checkpoint,
restore a set of weights at the end. The loop carries the requests out at its own stages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from skier.history import History

if TYPE_CHECKING:
    from skier.train.losses import Loss

__all__ = ["CheckpointRequest", "TrainState"]


@dataclass(frozen=True)
class CheckpointRequest:
    path: str
    tag: Literal["last", "best"] = "last"
    # Held: keep a copy of this epoch's state in memory and write it with the next checkpoint
    # that is not held, at the end, or when training fails (time-throttled checkpoints).
    hold: bool = False


@dataclass
class _Requests:
    stop_reason: str | None = None
    checkpoints: list[CheckpointRequest] = field(default_factory=list)
    restore: dict[str, torch.Tensor] | None = None
    restore_reason: str = ""


class TrainState:
    """What a callback may read (``epoch``, ``step``, ``history``, ...) and ask for."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        epochs: int,
        task: str,
        history: History,
        available_keys: frozenset[str],
        batches_per_epoch: int = 0,
        default_monitor: str | None = None,
        is_main: bool = True,
        loss: Loss | None = None,
    ) -> None:
        self._model = model
        self._history = history
        self._selected: Callable[[], torch.nn.Module | None] | None = None
        self.epochs = epochs
        self.is_main = is_main  # rank 0 (or a single process): the one that writes and logs
        self.task = task
        self.loss = loss  # the run's data loss, which a measuring callback uses too (sharpness)
        self.available_keys = available_keys
        self.batches_per_epoch = batches_per_epoch
        # What `monitor: auto` watches: val_loss (the average's, when the run selects the
        # averaged weights), else loss.
        self.default_monitor = default_monitor or (
            "val_loss" if "val_loss" in available_keys else "loss"
        )
        self.epoch = 0
        self.step = 0
        self.requests = _Requests()
        self.diverged = False  # set by the loop when an epoch's training loss is not finite
        self.written: dict[str, Path] = {}  # checkpoints written so far, by name ("last", "best")

    # --- read side ---------------------------------------------------------------------------
    @property
    def history(self) -> History:
        return self._history

    @property
    def stop_requested(self) -> bool:
        return self.requests.stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        return self.requests.stop_reason

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """The model's parameters and their gradients, to read (norms, ratios); never to change."""
        return self._model.named_parameters()

    def measured_model(self) -> torch.nn.Module:
        """The model itself (not a distributed wrapper), for a callback that measures it — a
        Hessian-vector product — and leaves it exactly as it was; never to change."""
        return self._model

    def capture_weights(self) -> dict[str, torch.Tensor]:
        """A detached copy of the weights the run returns (e.g. to restore the best later): the
        model's, or their average with ``train.average_select: average``."""
        selected = self._selected() if self._selected is not None else None
        model = selected if selected is not None else self._model
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def select_weights(self, model: Callable[[], torch.nn.Module | None]) -> None:
        """(The loop) whose weights :meth:`capture_weights` copies: ``model()``, or the
        model's while that is ``None`` (an average that holds nothing yet)."""
        self._selected = model

    # --- requests ----------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after this epoch; the first reason given wins."""
        if self.requests.stop_reason is None:
            self.requests.stop_reason = reason

    def request_checkpoint(
        self, path: str, tag: Literal["last", "best"] = "last", *, hold: bool = False
    ) -> None:
        """Ask the loop to write a full checkpoint once every callback has run; ``hold`` keeps
        it in memory until the next one asked without ``hold``, the end of training or a
        failure (and writes it then)."""
        self.requests.checkpoints.append(CheckpointRequest(path, tag, hold))

    def request_restore(self, weights: Mapping[str, torch.Tensor], reason: str) -> None:
        """Ask the loop to load ``weights`` into the model when training ends."""
        self.requests.restore = dict(weights)
        self.requests.restore_reason = reason
