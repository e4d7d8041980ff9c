"""What a training run records while it trains: the epochs in the store and ``metrics.csv``
(:class:`RecordLogger`, throttled by time), and a line per epoch where no bar is shown."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from skier._throttle import Throttle
from skier.record import RunDir, RunStore
from skier.train import Callback
from skier.train.state import TrainState

__all__ = ["EpochLines", "RecordLogger"]


class RecordLogger(Callback):
    """Writes the epochs to the store and ``metrics.csv``, at most every ``flush_every_s``
    seconds (0: every epoch), at the end of training, and by :meth:`flushed` when training
    fails, so a finished epoch is never lost unless the process is killed outright. A reader
    of the store (the live dashboard) is at most ``flush_every_s`` seconds plus one epoch
    behind the training.

    ``store=None`` writes nothing: a distributed rank other than 0 keeps the same callbacks
    (checkpoints list them) but rank 0 alone records.
    """

    def __init__(
        self,
        store: RunStore | None,
        run_id: str,
        run_dir: RunDir,
        *,
        flush_every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.run_id, self.run_dir = store, run_id, run_dir
        self.flush_every_s = flush_every_s
        self._pending: list[tuple[int, dict[str, float]]] = []
        self._history: Any = None
        self._throttle = Throttle(flush_every_s, clock)
        self._throttle.mark()

    def on_fit_start(self, state: TrainState) -> None:
        self._throttle.mark()

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if self.store is None:
            return
        self._pending.append((state.epoch, dict(logs)))
        self._history = state.history
        if self._throttle.due():
            self.flush()

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.flush()

    def flush(self) -> None:
        """Write the epochs not yet written: one store transaction, and ``metrics.csv``."""
        if self.store is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        self.store.log_epochs(self.run_id, pending)
        self.run_dir.write_metrics(self._history, sync=False)  # the store has every epoch
        self._throttle.mark()

    @contextlib.contextmanager
    def flushed(self) -> Iterator[None]:
        """Training inside: when it raises, the epochs it finished are written before the
        error goes on (a failure to write them then is not the error to report)."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self.flush()
            raise


class EpochLines(Callback):
    """One line per epoch through ``echo``: progress for logs and pipes, where bars are off."""

    stateful = False

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        keys = ("loss", "error", "val_loss", "val_error", "lr")
        parts = [f"{k} {logs[k]:.4g}" for k in keys if k in logs]
        seconds = logs.get("epoch_time", 0.0)
        self.echo(f"epoch {state.epoch}/{state.epochs}  " + "  ".join(parts) + f"  {seconds:.2f} s")
