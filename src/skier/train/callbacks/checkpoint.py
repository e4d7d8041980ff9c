"""Checkpointing: ``last.pt`` every ``every`` epochs and ``best.pt`` when the monitor improves,
each written at most every ``every_s`` seconds while training (held in memory in between).

:class:`Checkpoint` owns these file names (``Checkpoint.LAST_FILE``, ``Checkpoint.BEST_FILE``);
code that looks for them in a checkpoint folder asks it rather than spelling them out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from skier._throttle import Throttle
from skier.errors import ConfigError, problem
from skier.train.callbacks.monitor import Mode, Monitor
from skier.train.state import TrainState

__all__ = ["Checkpoint"]


class Checkpoint(Monitor):
    """Ask the loop for full checkpoints (model, optimizer, scheduler, callbacks, RNG, history).

    The loop writes them atomically after every callback of the epoch has run, so the saved
    callback state is that of the finished epoch whatever the order of the callbacks.
    ``best.pt`` is written when the monitor improves (:class:`Monitor`'s rule);
    ``monitor="auto"`` means ``val_loss`` when there is validation data, else ``loss``.
    Its best only says which epoch ``best.pt`` holds: it is not the run's verdict
    (``gives_verdict`` is off), which stays early stopping's or the history's.

    ``every_s`` throttles the writes by time, for epochs that take milliseconds: a checkpoint
    that falls due less than ``every_s`` seconds after the last one written is *held*, a copy of
    the training state kept in memory, and written at the next epoch ``every_s`` after that
    write, at the end of training, or when training fails or is interrupted (Ctrl-C). Whatever
    is on disk is an exact position (a resume from it is bit-identical); a process killed
    outright (SIGKILL, power cut) loses at most ``every_s`` seconds plus one epoch of work.
    ``best.pt`` is never lost: the best epoch's state is held until written. ``every_s=0``
    (the default here; ``skier train`` uses ``checkpoint.every_s``, 10 s) writes every due epoch.

    >>> ckpt = Checkpoint("runs/demo/checkpoints", every=1)
    >>> ckpt.last_path.name, ckpt.best_path.name
    ('last.pt', 'best.pt')
    """

    LAST_FILE: ClassVar[str] = "last.pt"  # the latest position: what a resume starts from
    BEST_FILE: ClassVar[str] = "best.pt"  # the best epoch so far by the monitor

    section: ClassVar[str] = "checkpoint"
    gives_verdict: ClassVar[bool] = False

    def __init__(
        self,
        directory: str | Path,
        every: int = 1,
        keep_best: bool = True,
        monitor: str = "auto",
        mode: Mode = "auto",
        min_delta: float = 0.0,
        every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problems = []
        if not isinstance(every, int) or every < 1:
            problems.append(problem("checkpoint.every", "an integer >= 1", every))
        if (
            not isinstance(every_s, int | float)
            or isinstance(every_s, bool)
            or not math.isfinite(every_s)
            or every_s < 0
        ):
            problems.append(problem("checkpoint.every_s", "a number of seconds >= 0", every_s))
        problems += self._monitor_problems(mode, min_delta)
        if problems:
            raise ConfigError(problems)
        self.directory = Path(directory)
        self.every = every
        self.keep_best = keep_best
        self.every_s = float(every_s) if isinstance(every_s, int | float) else 0.0
        self._throttle = Throttle(self.every_s, clock)
        self._throttle.mark()
        super().__init__(monitor, mode, min_delta)

    @property
    def last_path(self) -> Path:
        return self.directory / self.LAST_FILE

    @property
    def best_path(self) -> Path:
        return self.directory / self.BEST_FILE

    def on_fit_start(self, state: TrainState) -> None:
        super().on_fit_start(state)
        self._throttle.mark()  # the work at risk is counted from the start

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        now = self._throttle.clock()
        hold = state.epoch != state.epochs and not self._throttle.due(now)
        asked = False
        if state.epoch % self.every == 0 or state.epoch == state.epochs:
            state.request_checkpoint(str(self.last_path), "last", hold=hold)
            asked = True
        if self.keep_best and self.update(logs.get(self.key), state.epoch):
            state.request_checkpoint(str(self.best_path), "best", hold=hold)
            asked = True
        if asked and not hold:
            self._throttle.mark(now)

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        # A stop between two `every` epochs still leaves the final position on disk.
        state.request_checkpoint(str(self.last_path), "last")
