"""Hyper-parameter search on Optuna: samplers, pruners, storages, the pruning callback.

skier writes none of these engines again; this module picks and wires Optuna's:

- ``grid`` → ``GridSampler`` (the same seed in every worker, so trial *k* of a new study is
  grid point *k* in every process: each point once), ``random`` → ``RandomSampler``, ``bayes``
  → ``TPESampler`` (``constant_liar``: parallel workers spread out) or ``GPSampler``.
- ``median`` → ``MedianPruner``, ``hyperband`` → ``HyperbandPruner`` (resource = epochs).
- storages: an SQLAlchemy URL (PostgreSQL, SQLite) → :class:`~optuna.storages.RDBStorage` with
  Optuna's heartbeat and a retry of stale trials; ``redis://`` → a Redis journal; anything else
  is a journal file (:class:`~optuna.storages.journal.JournalFileBackend`), safe for several
  processes on one machine (locked with ``flock``). Journals have no heartbeat in Optuna, so
  skier beats a trial's ``skier:heartbeat`` attribute from a thread and fails (and retries)
  silent trials: :mod:`skier.search.recovery`.

>>> from skier.config.search import parse_space
>>> space = parse_space({"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}})
>>> sorted(distributions(space))
['optim.lr']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

# optuna first, through the module that silences its import of tqdm.auto (a warning in a notebook)
from skier.search._optuna import optuna

# isort: split
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from skier.config.search import ParamSpec, SearchSpace
from skier.errors import ConfigError, StoreError, problem
from skier.search.recovery import frozen_trial, journal_lock
from skier.train import Callback
from skier.train.callbacks.monitor import resolve_mode
from skier.train.state import TrainState

__all__ = [
    "DuplicateGridPoint",
    "PruningCallback",
    "StorageKind",
    "best_so_far",
    "check_grid_claim",
    "close_storage",
    "distributions",
    "grid_points",
    "make_pruner",
    "make_sampler",
    "objective_direction",
    "open_storage",
    "open_study",
    "param_importances",
    "storage_kind",
    "study_summary",
    "suggest",
]

StorageKind = Literal["rdb", "redis", "file"]
MAX_GRID_POINTS = 100_000


class DuplicateGridPoint(Exception):
    """A worker lost a race for a grid point another trial already has; the trial is skipped."""


# --- search space → Optuna ---------------------------------------------------------------------
def _distribution(spec: ParamSpec) -> BaseDistribution:
    if spec.type == "categorical":
        return CategoricalDistribution(spec.labels)
    if spec.type == "int":
        return IntDistribution(
            int(spec.low or 0), int(spec.high or 0), log=spec.log, step=int(spec.step or 1)
        )
    return FloatDistribution(float(spec.low or 0.0), float(spec.high or 0.0), log=spec.log,
                             step=spec.step)  # fmt: skip


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna's distribution for every parameter of ``space``."""
    return {p.name: _distribution(p) for p in space.params}


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Draw every parameter from ``trial``; returns config values by dotted key."""
    values: dict[str, Any] = {}
    for spec in space.params:
        if spec.type == "categorical":
            label = trial.suggest_categorical(spec.name, list(spec.labels))
            values[spec.name] = spec.value_of(label)
        elif spec.type == "int":
            values[spec.name] = trial.suggest_int(
                spec.name, int(spec.low or 0), int(spec.high or 0), step=int(spec.step or 1),
                log=spec.log,
            )  # fmt: skip
        else:
            values[spec.name] = trial.suggest_float(
                spec.name, float(spec.low or 0.0), float(spec.high or 0.0), step=spec.step,
                log=spec.log,
            )  # fmt: skip
    return values


def _grid_values(spec: ParamSpec, where: str) -> list[Any]:
    if spec.type == "categorical":
        return list(spec.labels)
    low, high = spec.low or 0, spec.high or 0
    if spec.type == "int":
        step = int(spec.step or 1)
        return list(range(int(low), int(high) + 1, step))
    if spec.step is None:
        if low == high:
            return [float(low)]
        raise ConfigError(
            f"{where}{spec.name} must have a step (or be categorical) for method grid; got a "
            f"continuous range [{low!r}, {high!r}]. Add e.g. step: {(high - low) / 4:g}."
        )
    count = math.floor((high - low) / spec.step + 1e-9) + 1
    # Rounded so that 0.1 + 2 * 0.1 is stored and shown as 0.3.
    return [round(low + i * spec.step, 12) for i in range(count)]


def grid_points(space: SearchSpace) -> dict[str, list[Any]]:
    """Every parameter's grid values (categorical labels as Optuna stores them).

    >>> from skier.config.search import parse_space
    >>> grid_points(parse_space({"train.epochs": {"type": "int", "low": 1, "high": 3}}))
    {'train.epochs': [1, 2, 3]}
    """
    where = f"{space.source}: " if space.source else ""
    points = {p.name: _grid_values(p, where) for p in space.params}
    size = math.prod(len(v) for v in points.values())
    if size > MAX_GRID_POINTS:
        raise ConfigError(
            problem(
                "the grid",
                f"at most {MAX_GRID_POINTS} points",
                size,
                "Use coarser steps, fewer parameters, or method random/bayes.",
            )
        )
    return points


def make_sampler(
    method: str, space: SearchSpace, *, seed: int = 0, sampler: str = "auto"
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``method`` (``grid``, ``random`` or ``bayes``).

    >>> from skier.config.search import parse_space
    >>> space = parse_space({"train.epochs": {"type": "int", "low": 1, "high": 3}})
    >>> type(make_sampler("grid", space)).__name__
    'GridSampler'
    """
    if method == "grid":
        return optuna.samplers.GridSampler(grid_points(space), seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "bayes":
        if sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    raise ConfigError(problem("method", "one of grid, random, bayes", method))


def make_pruner(
    name: str, *, epochs: int, method: str = "bayes", startup_trials: int = 5
) -> optuna.pruners.BasePruner:
    """``median``, ``hyperband`` or ``none`` (``auto``: none for grid, else median).

    The median rule waits for ``startup_trials`` finished trials and a fifth of the epochs
    before it prunes, so the first trials and the noisy first epochs decide nothing.

    >>> type(make_pruner("auto", epochs=10, method="grid")).__name__
    'NopPruner'
    """
    if name == "auto":
        name = "none" if method == "grid" else "median"
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=startup_trials,
            n_warmup_steps=max(epochs // 5, 1),
            interval_steps=1,
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(epochs, 1), reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(problem("prune", "one of median, hyperband, none", name))


def objective_direction(metric: str, direction: str = "auto") -> Literal["minimize", "maximize"]:
    """``auto``: maximize accuracies, minimize losses and errors.

    >>> objective_direction("val_accuracy"), objective_direction("val_loss")
    ('maximize', 'minimize')
    """
    if direction in ("minimize", "maximize"):
        return "minimize" if direction == "minimize" else "maximize"
    return "maximize" if resolve_mode(metric, "auto") == "max" else "minimize"


# --- storages and studies ----------------------------------------------------------------------
def storage_kind(url: str) -> StorageKind:
    """``rdb`` (an SQLAlchemy URL), ``redis`` or ``file`` (a journal file path).

    >>> storage_kind("postgresql://u@h/db"), storage_kind("redis://h"), storage_kind("s.log")
    ('rdb', 'redis', 'file')
    """
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    if "://" in url and not url.startswith("file://"):
        return "rdb"
    return "file"


def _rdb_url(url: str) -> str:
    # SQLAlchemy's "postgresql://" means psycopg2; skier's postgres extra installs psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(
    url: str,
    *,
    heartbeat_s: int = 5,
    grace_s: int | None = None,
    max_retry: int = 1,
) -> optuna.storages.BaseStorage:
    """Optuna's storage for ``url`` (see the module docstring); errors are one line.

    RDB storages get Optuna's heartbeat: a trial silent for ``grace_s`` seconds is failed and
    re-queued (at most ``max_retry`` times) by the next worker that starts a trial.
    """
    kind = storage_kind(url)
    try:
        if kind == "file":
            path = Path(url.removeprefix("file://")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalFileBackend

            lock = journal_lock(str(path))
            return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
        if kind == "redis":
            from optuna.storages.journal import JournalRedisBackend

            with warnings.catch_warnings():
                # The Redis journal is marked experimental; skier uses it on purpose.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                backend = JournalRedisBackend(url)
            return optuna.storages.JournalStorage(backend)
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(
                parents=True, exist_ok=True
            )
        with warnings.catch_warnings():
            # heartbeat_interval and the retry callback are marked experimental in Optuna.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                _rdb_url(url),
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=heartbeat_s,
                grace_period=grace_s or 4 * heartbeat_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=max_retry
                ),
            )
    except ImportError as exc:
        raise StoreError(
            problem("--storage", "a storage whose driver is installed", _safe(url), str(exc))
        ) from None
    except Exception as exc:  # the drivers' errors are many; report them in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"--storage must be reachable and writable; got {_safe(url)!r}: {first}. Check the "
            "URL, that the server runs and that you may write there."
        ) from None


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Close a storage's database connections (RDB), so none is left for the garbage collector."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}{':***' if ':' in creds else ''}@{host}"
    return url


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    direction: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Create the study ``name`` or load it (resume); its direction must match."""
    if direction not in ("minimize", "maximize"):
        raise ConfigError(problem("direction", "minimize or maximize", direction))
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="minimize" if direction == "minimize" else "maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    found = study.direction.name.lower()
    if found != direction:
        raise ConfigError(
            f"--study {name!r} exists with direction {found!r}; got {direction!r}. Use the same "
            "objective as before, or a new study name."
        )
    return study


# --- during a trial ----------------------------------------------------------------------------
class PruningCallback(Callback):
    """Report each validation epoch's ``monitor`` to an Optuna trial; stop when it says prune.

    Stopping is a request on the state (the run ends ``stopped`` with a reason that starts with
    ``pruned``), never an exception inside the loop, so the run is recorded like any other.

    >>> cb = PruningCallback(trial, "val_loss")   # doctest: +SKIP
    """

    stateful = False

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss") -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None

    def monitored_keys(self) -> list[str]:
        return [self.monitor]

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), state.epoch)
        if self.trial.should_prune():
            self.pruned_at = state.epoch
            state.request_stop(
                f"pruned: {self.monitor} {value:.4g} at epoch {state.epoch} is worse than "
                "the pruner allows"
            )


def check_grid_claim(study: optuna.Study, trial: optuna.Trial) -> None:
    """Raise :class:`DuplicateGridPoint` if another live or finished trial has this grid point.

    A new study gives trial *k* grid point *k*, so this only fires when workers race past the
    end of the grid (a resumed study, or machines that asked for more trials than points).
    """
    attrs = frozen_trial(study, trial.number).system_attrs
    grid_id = attrs.get("grid_id")
    if grid_id is None or "failed_trial" in attrs:
        return  # not a grid trial, or a retry that takes over a failed trial's point
    for t in study.get_trials(deepcopy=False):
        if t.number == trial.number or t.system_attrs.get("grid_id") != grid_id:
            continue
        taken = t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.RUNNING and t.number < trial.number
        )
        if taken:
            trial.set_user_attr("skier:skipped", f"grid point already in trial {t.number}")
            raise DuplicateGridPoint(f"grid point {grid_id} is already in trial {t.number}")


# --- after the search --------------------------------------------------------------------------
def _trial_row(t: FrozenTrial) -> dict[str, Any]:
    duration = t.duration.total_seconds() if t.duration is not None else None
    steps = sorted(t.intermediate_values)
    note = t.user_attrs.get("skier:stop_reason")
    if t.state == TrialState.FAIL:  # a retry inherits its original's attributes: not its fate
        note = (
            t.user_attrs.get("skier:failed")
            or t.user_attrs.get("skier:skipped")
            or (t.user_attrs.get("skier:error"))
        )
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": t.value if t.value is not None and math.isfinite(t.value) else None,
        "params": dict(t.params),
        "run_id": t.user_attrs.get("skier:run_id"),
        "epochs": t.user_attrs.get("skier:epochs", steps[-1] if steps else None),
        "duration_s": duration,
        "retry_of": t.system_attrs.get("failed_trial"),
        "note": note,
    }


def param_importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importance of each parameter over the complete trials ({} when too few)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return {}
    varied = [n for n in complete[0].params if len({repr(t.params.get(n)) for t in complete}) > 1]
    if not varied:
        return {}
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        found = get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), params=varied
        )
    except (ValueError, RuntimeError):
        return {}  # e.g. a dynamic search space across resumed runs: importance is undefined
    return {str(k): float(v) for k, v in found.items()}


def study_summary(study: optuna.Study, space: SearchSpace | None = None) -> dict[str, Any]:
    """Best trial, every trial as a row, counts by state and parameter importances."""
    trials = study.get_trials(deepcopy=False)
    rows = [_trial_row(t) for t in trials]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    best: dict[str, Any] | None = None
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        b = study.best_trial
        values = dict(b.params)
        if space is not None:
            values = {n: space[n].value_of(v) if n in space.names else v for n, v in values.items()}
        best = {
            "number": b.number,
            "value": b.value,
            "params": values,
            "run_id": b.user_attrs.get("skier:run_id"),
            "run_dir": b.user_attrs.get("skier:run_dir"),
        }
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "trials": rows,
        "counts": counts,
        "best": best,
        "importances": param_importances(study),
        "space": space.to_dict() if space is not None else None,
    }


def best_so_far(values: Sequence[float | None], direction: str) -> list[float | None]:
    """The running best of ``values`` (``None`` entries keep the previous best)."""
    out: list[float | None] = []
    best: float | None = None
    better: Callable[[float, float], bool] = (
        (lambda a, b: a < b) if direction == "minimize" else (lambda a, b: a > b)
    )
    for v in values:
        if v is not None and (best is None or better(v, best)):
            best = v
        out.append(best)
    return out
