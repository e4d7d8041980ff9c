"""The contract every experiment-tracker logger (TensorBoard, MLflow) shares.

A tracker logger is a callback that copies what the loop records (its per-epoch rows and
per-step series) to another tool. What all of them have to get right lives here, once:

- **Cheap, and never in the way.** Rows are buffered and handed, at most every
  ``flush_every_s`` seconds and at fit end, to the logger's own sender thread, which sends
  them in order, as one batch (what piles up while a slow server answers goes together in the
  next): the training thread never waits on a file or a server. :meth:`TrackerLogger.finish`
  waits for the sender at most ``finish_timeout_s`` seconds.
- **Resumable.** Its *position* (the last epoch it sent, plus what the tool needs to continue
  the same run, e.g. the MLflow run id) is written, after each send, to ``position_file``. A
  resumed fit first sends the restored history's rows past that position, then goes on: every
  epoch reaches the tool exactly once. A process killed after a send and before its position
  write sent more than the position says; each tool sorts that out on resume in its own way
  (TensorBoard's ``purge_step`` hides the earlier session's events past the position, MLflow
  reads the run's metric history and skips the steps the server has). Loggers are not
  checkpointed (``stateful = False``): their position file is newer than any checkpoint.
- **Harmless.** A failing tool (a server that cannot be reached, a full disk) never stops
  training: the logger reports it once, in one line, through ``echo``, stops sending, and
  keeps the failure in :attr:`TrackerLogger.failure` for the run record.
- **Rank 0 only.** Under DDP the other ranks send nothing.

A new tracker subclasses :class:`TrackerLogger` and implements ``_open``, ``_send`` and
``_close``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from skier._io import atomic_write_text
from skier._throttle import Throttle
from skier.errors import SkierError, require_extra
from skier.history import History
from skier.train.callbacks.base import Callback
from skier.train.callbacks.monitor import Monitor, resolve_mode
from skier.train.state import TrainState

__all__ = [
    "StepSeries",
    "TrackerLogger",
    "best_and_final",
    "flatten_params",
    "run_status",
]

#: Per-step series a tracker copies (the lr of every optimizer step; a per-step loss if any).
STEP_KEYS = ("lr", "loss")

StepSeries = dict[str, list[tuple[int, float]]]  # key -> [(step, value), ...]


def flatten_params(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``section.key`` pairs (lists and ``None`` as text).

    >>> flatten_params({"optim": {"name": "sgd", "lr": 0.1}, "model": {"hidden": [64, 32]}})
    {'optim.name': 'sgd', 'optim.lr': 0.1, 'model.hidden': '[64, 32]'}
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def run_status(state: TrainState) -> str:
    """``failed`` (the non-finite guard stopped it), ``stopped`` or ``completed``: as the
    runner's record says."""
    if state.diverged:
        return "failed"
    return "stopped" if state.stop_reason else "completed"


def best_and_final(history: History, monitor: str) -> dict[str, float]:
    """``final_KEY`` for every key of the last row and ``best_MONITOR`` (with its epoch).

    >>> h = History([{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.7}])
    >>> best_and_final(h, "val_loss")
    {'final_val_loss': 0.7, 'best_val_loss': 0.5, 'best_epoch': 1.0}
    """
    if not history.rows:
        return {}
    out = {f"final_{k}": v for k, v in history.rows[-1].items() if k != "epoch"}
    watch = Monitor(monitor, mode=resolve_mode(monitor, "auto"))
    for row in history.rows:
        watch.update(row.get(monitor, math.nan), int(row["epoch"]))
    if watch.best_epoch is not None:
        out[f"best_{monitor}"] = watch.best
        out["best_epoch"] = float(watch.best_epoch)
    return out


class TrackerLogger(Callback):
    """Base of the tracker loggers: buffering, the sender thread, position, faults and rank 0
    (see the module).

    Subclasses set :attr:`name` and :attr:`extra` and implement ``_open(state, position)``
    (returns what to keep in the position), ``_send(rows, steps)`` and
    ``_close(status, summary, artifacts)``; all three run on the logger's sender thread, one
    after the other, never on the training thread.
    """

    stateful = False  # its position file, not the checkpoint, says where it is
    #: Whether the fit waits (at most ``finish_timeout_s``) for the tool's run to be opened:
    #: yes for local files (a store's tables are created whole before a kill can come, and
    #: the position holds the run's id); no for a server, which may not answer.
    open_before_training: bool = True
    #: The per-step series it copies (a subclass or an instance may send none).
    step_keys: tuple[str, ...] = STEP_KEYS
    name: ClassVar[str] = "tracker"
    module: ClassVar[str] = ""
    extra: ClassVar[str] = ""

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        config_text: str | None = None,
        position_file: str | Path | None = None,
        flush_every_s: float = 5.0,
        finish_timeout_s: float = 60.0,
        finish_at_fit_end: bool = True,
        echo: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if self.module:
            require_extra(self.module, self.extra, f"{type(self).__name__}")
        if not finish_timeout_s > 0:
            raise ValueError(f"finish_timeout_s must be > 0; got {finish_timeout_s!r}.")
        self.params = dict(params or {})
        self.config_text = config_text
        self.position_file = Path(position_file) if position_file is not None else None
        self.flush_every_s = flush_every_s
        self._throttle = Throttle(flush_every_s, clock)  # due until the first hand-off
        self.finish_timeout_s = finish_timeout_s
        self.finish_at_fit_end = finish_at_fit_end
        self.echo = echo
        self.failure: str | None = None
        self.position: dict[str, Any] = {}  # what the tool has: the sender thread's
        self._active = False
        self._pending: list[dict[str, float]] = []  # rows not yet handed to the sender
        self._queued_epoch = 0
        self._history: History | None = None
        self._monitor = "loss"
        # The sender thread and what the training thread hands it, under _ready.
        self._ready = threading.Condition()
        self._outbox: list[dict[str, float]] = []
        self._wake = False
        self._closing: tuple[dict[str, str], dict[str, float], list[Path]] | None = None
        self._busy = False
        self._generation = 0  # which fit's sender may take from the outbox
        self._opened = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the callback hooks (the training thread) -----------------------------------------
    def on_fit_start(self, state: TrainState) -> None:
        self._active = state.is_main
        if not self._active:
            return
        self._history, self._monitor = state.history, state.default_monitor
        # A sender left open by a fit that raised (this logger's, or another's that writes the
        # same position file) first sends what it was handed; this logger's then stops.
        for other in list(_SENDERS):
            same_file = self.position_file is not None and other.position_file == self.position_file
            if other is self or same_file:
                other.drain(self.finish_timeout_s)
        with self._ready:
            self._generation += 1
            self._outbox, self._wake, self._closing, self._busy = [], False, None, True
            self._ready.notify_all()
        saved = self._read_position()
        self._queued_epoch = int(saved.get("epoch", 0))
        # A resumed fit: the restored history's rows the tool has not had yet.
        self._pending = [r for r in state.history.rows if r["epoch"] > self._queued_epoch]
        self._opened.clear()
        self._thread = threading.Thread(target=self._sender, args=(state, saved, self._generation),
                                        name=f"skier-{self.name}", daemon=True)  # fmt: skip
        _SENDERS.add(self)
        self._thread.start()
        if self.open_before_training:  # a local store: made whole before a kill can come
            self._opened.wait(self.finish_timeout_s)
        self._hand_off()

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if not self._active:
            return
        if state.epoch > self._queued_epoch:
            self._pending.append(dict(state.history.rows[-1]))
            self._queued_epoch = state.epoch
        if self._throttle.due():
            self._hand_off()

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if not self._active:
            return
        self._hand_off()
        if self.finish_at_fit_end:
            self.finish(run_status(state), stop_reason=state.stop_reason)

    def finish(
        self,
        status: str,
        *,
        stop_reason: str | None = None,
        artifacts: Sequence[Path] = (),
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Send what is left, the best and final metrics (and ``metrics``, e.g. a group's
        summary), ``artifacts`` (files that exist), and close the tool's run with ``status``;
        waits for the sender at most ``finish_timeout_s`` seconds (past that the logger is
        noted as failed and what was left is not sent). The runner calls it once its files
        exist."""
        if not self._active:
            return
        self._active = False
        history = self._history or History()
        summary = best_and_final(history, self._monitor) | dict(metrics or {})
        files = [Path(p) for p in artifacts if Path(p).is_file()]
        tags = {"status": status, "stop_reason": stop_reason or ""}
        with self._ready:
            self._outbox += self._pending
            self._pending = []
            self._closing = (tags, summary, files)
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(self.finish_timeout_s)
            if self._thread.is_alive() and self.failure is None:
                self._fail(f"TimeoutError: still sending after {self.finish_timeout_s:g} s at "
                           "the end; what was left is not sent")  # fmt: skip
        _SENDERS.discard(self)

    def wait_opened(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` seconds for the tool's run to be opened (e.g. so that a
        group's MLflow run id is known to its members); whether it was, without failing."""
        return self._opened.wait(timeout_s) and self.failure is None

    # --- what a subclass implements (the sender thread) ------------------------------------
    def _open(self, state: TrainState, position: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _send(self, rows: Sequence[Mapping[str, float]], steps: StepSeries) -> None:
        raise NotImplementedError

    def _close(
        self, tags: Mapping[str, str], summary: Mapping[str, float], files: list[Path]
    ) -> None:
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------------
    def _hand_off(self) -> None:
        """Give the buffered rows to the sender (it sends them, and the per-step series past
        its position, as one batch when it is free: never waits on the tool)."""
        self._throttle.mark()
        with self._ready:
            self._outbox += self._pending
            self._pending = []
            self._wake = True
            self._ready.notify()

    def drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` seconds until the sender has sent what it was handed
        (e.g. after a fit that raised, which leaves the sender idle but open); whether it
        had."""
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while self._busy or self._outbox or self._wake:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._ready.wait(left)
        return True

    def _sender(self, state: TrainState, saved: Mapping[str, Any], generation: int) -> None:
        """The sender thread: open the tool's run, then send what is handed over, in order,
        until :meth:`finish` asks it to close (or a new fit of this logger starts another)."""
        self.position = {}
        opened = self._guard(lambda: self.position.update(self._open(state, saved)))
        self.position.setdefault("epoch", int(saved.get("epoch", 0)))
        self.position.setdefault("steps", dict(saved.get("steps", {})))
        if opened:  # e.g. the new MLflow run's id, before anything can interrupt the fit
            self._write_position()
        self._opened.set()
        while True:
            with self._ready:
                while not (self._outbox or self._wake or self._closing):
                    if self._generation != generation:
                        return
                    self._busy = False
                    self._ready.notify_all()
                    self._ready.wait()
                rows, self._outbox, self._wake = self._outbox, [], False
                closing, self._busy = self._closing, True
            self._send_now(rows)
            if closing is not None:
                self._guard(functools.partial(self._close, *closing))
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
                return

    def _send_now(self, rows: list[dict[str, float]]) -> None:
        """Send ``rows`` and the per-step series past the position, then move it."""
        if self.failure is not None or self._history is None:
            return
        steps = self._new_steps(self._history)
        if not rows and not any(steps.values()):
            return
        if not self._guard(lambda: self._send(rows, steps)):
            return
        if rows:
            self.position["epoch"] = int(rows[-1]["epoch"])
        for key, points in steps.items():
            if points:
                self.position["steps"][key] = points[-1][0]
        self._write_position()

    def _new_steps(self, history: History) -> StepSeries:
        done = self.position.get("steps", {})
        out: StepSeries = {}
        for key in self.step_keys:
            values = history.steps.get(key, [])  # (a slice is taken whole, while it grows)
            first = int(done.get(key, 0))
            out[key] = [(i, v) for i, v in enumerate(values[first:], first + 1)]
        return out

    def _guard(self, work: Callable[[], object]) -> bool:
        """Run ``work``; a failure turns this logger off, said once, never raised."""
        if self.failure is not None:
            return False
        try:
            work()
        except Exception as exc:  # any tool's error: training and skier's record go on
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            self._fail(f"{type(exc).__name__}: {first}")
            return False
        return True

    def _fail(self, failure: str) -> None:
        with self._ready:  # the sender and finish's time limit: the first one says it
            if self.failure is not None:
                return
            self.failure = failure
        line = f"skier: the {self.name} logger failed and is off for this run ({failure})"
        (self.echo or _stderr)(line)
        self.position["failure"] = failure
        self._write_position()

    def _read_position(self) -> dict[str, Any]:
        if self.position_file is None or not self.position_file.is_file():
            return {}
        try:
            data = json.loads(self.position_file.read_text())
        except (OSError, ValueError):
            return {}
        entry = data.get(self.name, {}) if isinstance(data, dict) else {}
        return entry if isinstance(entry, dict) else {}

    def _write_position(self) -> None:
        """This logger's entry in the position file (shared by the run's loggers, whose
        sender threads take turns)."""
        if self.position_file is None:
            return
        with _POSITION_LOCK:
            try:
                text = self.position_file.read_text() if self.position_file.is_file() else "{}"
                data = json.loads(text)
            except (OSError, ValueError):
                data = {}
            data[self.name] = self.position
            try:
                atomic_write_text(self.position_file, json.dumps(data, indent=2), sync=False)
            except (OSError, SkierError) as exc:
                if self.failure is None:
                    self.failure = f"cannot write {self.position_file}: {exc}"
                    (self.echo or _stderr)(f"skier: the {self.name} logger: {self.failure}")


#: One writer of a position file at a time (the loggers of a run share one).
_POSITION_LOCK = threading.Lock()
#: The loggers whose sender may still be sending (a fit interrupted before its end).
_SENDERS: weakref.WeakSet[TrackerLogger] = weakref.WeakSet()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
