"""Workers that die: a trial's heartbeat, failing and re-queueing the trials of dead workers,
and the journal file's lock that a killed worker cannot leave held.

A trial carries its worker (``host:pid``) and, on journal storages, a heartbeat stamped from a
thread (:class:`Heartbeat`, through :func:`trial_guard`). A trial whose worker is known dead
(:func:`fail_worker_trials`, the supervisor's view) or silent past a grace period and not alive
on this machine (:func:`fail_stale_trials`) is failed and re-queued once through Optuna's own
retry callback. RDB storages get Optuna's heartbeat instead (see :mod:`skier.search.tune`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skier.search._optuna import optuna

# isort: split
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "HEARTBEAT_ATTR",
    "WORKER_ATTR",
    "Heartbeat",
    "fail_stale_trials",
    "fail_worker_trials",
    "frozen_trial",
    "journal_lock",
    "trial_guard",
    "worker_alive_here",
    "worker_id",
]

HEARTBEAT_ATTR = "skier:heartbeat"
WORKER_ATTR = "skier:worker"


def worker_id() -> str:
    """``host:pid`` of this process: which worker runs a trial (kept as a trial attribute)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def journal_lock(path: str) -> Any:
    """The lock for a journal file: one the kernel releases when its holder dies (``flock``).

    Optuna's own file locks are files that a killed worker leaves behind; every other worker
    then waits their 30 s grace period, its heartbeats stall, and a live trial can be failed as
    stale. A ``flock`` on ``PATH.flock`` is gone the instant its holder is. Where ``fcntl`` is
    missing (Windows), Optuna's symlink lock.
    """
    from optuna.storages.journal import JournalFileOpenLock, JournalFileSymlinkLock

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return JournalFileSymlinkLock(path)

    class _FlockLock(JournalFileOpenLock):
        def __init__(self, lock_path: str) -> None:  # no super(): no lock file of Optuna's
            self.lock_path = lock_path
            self._fd: int | None = None  # only set and read while the lock is held

        def acquire(self) -> bool:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return True

        def release(self) -> None:
            fd, self._fd = self._fd, None
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    return _FlockLock(path + ".flock")


class Heartbeat:
    """A thread that stamps a running trial every ``interval_s`` seconds (journal storages).

    >>> with Heartbeat(study, trial, 5):   # doctest: +SKIP
    ...     run_the_trial()
    """

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval_s: float) -> None:
        self.study, self.trial, self.interval_s = study, trial, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
            except Exception:  # a finished trial or a storage hiccup: the trial decides
                return

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread = threading.Thread(target=self._loop, name="skier-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _retry(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    retry(study, trial)


def _fail(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Mark another process's running trial failed; ``False`` when someone got there first.

    Through the storage, as Optuna's own ``fail_stale_trials`` does: ``Study.tell`` would also
    run the sampler's ``after_trial``, which for a grid may call ``Study.stop`` outside
    ``optimize``. The storage refuses to finish a trial twice, so exactly one caller wins and
    re-queues it.
    """
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "skier:failed", reason)
        if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL) is False:
            return False
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return False
    return True


def frozen_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """The stored state of trial ``number`` (attributes set by other processes included)."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def fail_stale_trials(study: optuna.Study, *, grace_s: float, max_retry: int = 1) -> list[int]:
    """Fail running trials whose heartbeat is older than ``grace_s`` and re-queue them.

    For journal storages (Optuna's RDB storage does this itself). Returns the failed numbers.
    """
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive_here(t.user_attrs.get(WORKER_ATTR, "")):
            continue  # a late beat from a live worker (a slow storage, a long step) is not death
        beat = t.user_attrs.get(HEARTBEAT_ATTR)
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        if beat is not None and now - float(beat) > grace_s:
            silent = now - float(beat)
            if _fail(study, t, f"no heartbeat for {silent:.0f} s: its worker died"):
                failed.append(t.number)
                _retry(study, frozen_trial(study, t.number), max_retry)
    return failed


def worker_alive_here(worker: str) -> bool:
    """Whether ``worker`` (``host:pid``) is a process alive on this machine.

    ``False`` for a worker on another host: there only its heartbeat can tell.

    >>> worker_alive_here(f"{socket.gethostname()}:{os.getpid()}")
    True
    >>> worker_alive_here("elsewhere:1")
    False
    """
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): os.kill said it is there
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def fail_worker_trials(study: optuna.Study, worker: str, *, max_retry: int = 1) -> list[int]:
    """Fail the running trials of a worker known to be dead (``host:pid``) and re-queue them."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        dead = t.user_attrs.get(WORKER_ATTR) == worker
        if dead and _fail(study, t, f"worker {worker} died during the trial"):
            failed.append(t.number)
            _retry(study, frozen_trial(study, t.number), max_retry)
    return failed


@contextmanager
def trial_guard(
    study: optuna.Study, trial: optuna.Trial, *, journal: bool, heartbeat_s: float
) -> Iterator[None]:
    """Mark the trial with its worker and, on journal storages, beat while it runs."""
    trial.set_user_attr(WORKER_ATTR, worker_id())
    if not journal:
        yield
        return
    with Heartbeat(study, trial, heartbeat_s):
        yield
