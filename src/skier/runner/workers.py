"""Tuning's worker processes: each runs trials of one shared Optuna study."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skier.config import RunConfig, config_from_mapping
from skier.config.search import (
    CrossValidationConfig,
    SearchSpace,
    TuneConfig,
    parse_space,
    set_config_values,
)
from skier.errors import SkierError
from skier.record.groups import mean_std
from skier.runner._search import (
    Echo,
    _annotate,
    _fmt,
    _init_process,
    _spawn,
)
from skier.runner.cv import run_cv
from skier.runner.seeds import run_seeds
from skier.runner.training import RunOutcome, run_training
from skier.search.crossval import (
    FoldResult,
)

__all__: list[str] = []


@dataclass
class _TuneTask:
    config: dict[str, Any]
    base_dir: str | None
    space: dict[str, Any]
    space_source: str
    tune: dict[str, Any]
    storage_url: str
    study_name: str
    tune_run_id: str
    out_dir: str
    store_url: str
    n_trials: int
    worker_index: int
    threads: int
    echo: bool
    tracker_parent: str | None = None  # the tune run's MLflow run, when it has one


def pruner_steps(tune: TuneConfig, epochs: int) -> int:
    """The steps a trial reports to the pruner: epochs, or the folds (x seeds) or seeds whose
    running mean it reports."""
    seeds = len(tune.seeds) if tune.seeds is not None else 1
    if tune.objective == "cv_mean":
        return tune.folds * seeds
    return seeds if tune.seeds is not None else epochs


def _trial_value(rows: Sequence[Mapping[str, float]], metric: str, direction: str) -> float:
    values = [r[metric] for r in rows if metric in r and math.isfinite(r[metric])]
    if not values:
        return math.nan
    return min(values) if direction == "minimize" else max(values)


class _Objective:
    """Runs one trial as a recorded skier run (or a recorded CV for ``cv_mean``, or a recorded
    group of runs over ``seeds``, scored by the mean of the seeds' values)."""

    def __init__(self, task: _TuneTask, study: Any, space: SearchSpace, journal: bool) -> None:
        from skier.search.tune import objective_direction

        self.task, self.study, self.space, self.journal = task, study, space, journal
        self.tune = TuneConfig.model_validate(task.tune)
        self.metric = self.tune.metric if self.tune.objective == "cv_mean" else self.tune.objective
        self.direction = objective_direction(self.metric, self.tune.direction)

    def __call__(self, trial: Any) -> float:
        import optuna

        from skier.search.recovery import fail_stale_trials, trial_guard
        from skier.search.tune import check_grid_claim, suggest

        tune, task = self.tune, self.task
        if self.journal:  # Optuna's RDB storage fails stale trials itself; journals need skier
            fail_stale_trials(self.study, grace_s=tune.grace_period_s, max_retry=tune.max_retry)
        if tune.method == "grid":
            check_grid_claim(self.study, trial)
        with trial_guard(self.study, trial, journal=self.journal, heartbeat_s=tune.heartbeat_s):
            values = suggest(trial, self.space)
            name = f"{task.study_name}-trial-{trial.number}"
            plain = set_config_values(task.config, {**values, "record.name": name})
            try:
                config = config_from_mapping(plain, f"trial {trial.number}")
                value, reason, info = self._run(config, trial, values)
            except SkierError as exc:
                trial.set_user_attr("skier:error", str(exc).splitlines()[0])
                raise
            for key, item in info.items():
                trial.set_user_attr(f"skier:{key}", item)
            if reason is not None and reason.startswith("pruned"):
                raise optuna.TrialPruned(reason)
            return value

    def _summary(
        self, trial: Any, values: Mapping[str, Any], value: float, reason: str | None
    ) -> dict[str, Any]:
        return {
            "tune_run_id": self.task.tune_run_id,
            "study": self.task.study_name,
            "trial": trial.number,
            "params": dict(values),
            "objective": self.tune.objective,
            "value": value if math.isfinite(value) else None,
            "pruned": bool(reason and reason.startswith("pruned")),
            "state": "pruned" if reason and reason.startswith("pruned") else "complete",
        }

    def _run(
        self, config: RunConfig, trial: Any, values: Mapping[str, Any]
    ) -> tuple[float, str | None, dict[str, Any]]:
        from skier.search.tune import PruningCallback

        task = self.task
        base = Path(task.base_dir) if task.base_dir else None
        if self.tune.objective == "cv_mean":  # over folds, and over seeds if given
            return self._run_cv(config, trial, values, base)
        if self.tune.seeds is not None:
            return self._run_seeds(config, trial, values, base)
        pruning = PruningCallback(trial, self.metric)
        outcome = run_training(
            config,
            base_dir=base,
            out_dir=task.out_dir,
            store_url=task.store_url,
            progress=False,
            callbacks=[pruning],
            kind="trial",
            parent_id=task.tune_run_id,
            tracker_parent=task.tracker_parent,
        )
        result = outcome.result
        value = _trial_value(result.history.rows, self.metric, self.direction)
        reason = result.stop_reason if pruning.pruned_at is not None else None
        _annotate(task.store_url, outcome, self._summary(trial, values, value, reason))
        info = {
            "run_id": outcome.run_id,
            "run_dir": str(outcome.run_dir),
            "epochs": result.epochs_done,
            "stop_reason": result.stop_reason,
        }
        if task.echo:
            state = "pruned" if reason else "done"
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            print(
                f"trial {trial.number} {state}: {self.metric} {_fmt(value)} after "
                f"{result.epochs_done} epochs ({shown}) {result.duration_s:.1f} s",
                flush=True,
            )
        return value, reason, info

    def _prune_on_mean(self, trial: Any, scores: Sequence[float], unit: str) -> str | None:
        """Report the running mean of the finite ``scores`` (one per fold or seed done so far);
        a reason to stop when the pruner says so."""
        finite = [v for v in scores if math.isfinite(v)]
        if not finite:
            return None
        running = sum(finite) / len(finite)
        trial.report(running, len(scores))
        if trial.should_prune():
            return f"pruned: mean {self.metric} {running:.4g} after {len(scores)} {unit}"
        return None

    def _run_cv(
        self, config: RunConfig, trial: Any, values: Mapping[str, Any], base: Path | None
    ) -> tuple[float, str | None, dict[str, Any]]:
        task, tune = self.task, self.tune

        def prune_check(done: list[FoldResult]) -> str | None:
            scores = [r.metrics.get(self.metric, math.nan) for r in done]
            return self._prune_on_mean(trial, scores, "folds")

        outcome = run_cv(
            config,
            cv=CrossValidationConfig(
                folds=tune.folds, workers=1, metric=self.metric, seeds=tune.seeds
            ),
            base_dir=base,
            out_dir=task.out_dir,
            store_url=task.store_url,
            parent_id=task.tune_run_id,
            should_stop=prune_check,
            plots=False,
            progress=False,  # the search shows its trials, not each trial's folds
            tracker_parent=task.tracker_parent,
        )
        value = float(outcome.summary["value"])
        reason = outcome.stop_reason
        if task.echo:
            state = "pruned" if reason else "done"
            print(f"trial {trial.number} {state}: cv mean {self.metric} {_fmt(value)}", flush=True)
        info = {
            "run_id": outcome.run_id,
            "run_dir": str(outcome.run_dir),
            "epochs": sum(int(f["epochs_done"] or 0) for f in outcome.summary["folds"]),
            "stop_reason": reason,
        }
        return value, reason, info

    def _run_seeds(
        self, config: RunConfig, trial: Any, values: Mapping[str, Any], base: Path | None
    ) -> tuple[float, str | None, dict[str, Any]]:
        """One trial over ``tune.seeds``: each seed's value as a plain trial's (its best
        ``metric`` in the run), the trial's value their mean; pruned on the running mean."""
        task, seeds = self.task, self.tune.seeds or []

        def value_of(outcome: RunOutcome) -> float:
            return _trial_value(outcome.result.history.rows, self.metric, self.direction)

        def prune_check(done: list[RunOutcome]) -> str | None:
            return self._prune_on_mean(trial, [value_of(o) for o in done], "seeds")

        group = run_seeds(
            config,
            seeds,
            base_dir=base,
            out_dir=task.out_dir,
            store_url=task.store_url,
            progress=False,
            parent_id=task.tune_run_id,
            should_stop=prune_check,
            plots=False,
            tracker_parent=task.tracker_parent,
        )
        value = mean_std(value_of(o) for o in group.runs)[0]
        reason = group.stop_reason
        if task.echo:
            state = "pruned" if reason else "done"
            print(
                f"trial {trial.number} {state}: mean {self.metric} {_fmt(value)} over "
                f"{len(group.runs)} seeds",
                flush=True,
            )
        info = {
            "run_id": group.run_id,
            "run_dir": str(group.run_dir),
            "epochs": sum(o.result.epochs_done for o in group.runs),
            "stop_reason": reason,
        }
        return value, reason, info


def _open(task: _TuneTask) -> tuple[Any, SearchSpace, bool]:
    """The study as this worker sees it: its own sampler (grid: the same seed everywhere)."""
    from skier.search.tune import make_pruner, make_sampler, open_storage, storage_kind

    tune = TuneConfig.model_validate(task.tune)
    space = parse_space(task.space, task.space_source)
    seed = tune.seed if tune.method == "grid" else tune.seed + task.worker_index
    sampler = make_sampler(tune.method, space, seed=seed, sampler=tune.sampler)
    epochs = int(task.config.get("train", {}).get("epochs", 20))
    steps = pruner_steps(tune, epochs)
    pruner = make_pruner(
        tune.prune, epochs=steps, method=tune.method, startup_trials=tune.prune_startup
    )
    storage = open_storage(
        task.storage_url,
        heartbeat_s=tune.heartbeat_s,
        grace_s=tune.grace_period_s,
        max_retry=tune.max_retry,
    )
    import optuna

    study = optuna.load_study(
        study_name=task.study_name, storage=storage, sampler=sampler, pruner=pruner
    )
    return study, space, storage_kind(task.storage_url) != "rdb"


def _tune_worker(task: _TuneTask, callbacks: Sequence[Callable[..., None]] = ()) -> int:
    """Run ``task.n_trials`` trials of the shared study in this process; returns how many ran.

    ``callbacks`` are Optuna's, called after each trial (the live display in a notebook)."""
    from skier.search.tune import DuplicateGridPoint, close_storage

    tune = TuneConfig.model_validate(task.tune)
    study, space, journal = _open(task)
    try:
        objective = _Objective(task, study, space, journal)
        before = len(study.get_trials(deepcopy=False))
        study.optimize(
            objective,
            n_trials=task.n_trials,
            timeout=tune.timeout_s,
            catch=(SkierError, DuplicateGridPoint),
            gc_after_trial=False,
            callbacks=list(callbacks),
        )
        return len(study.get_trials(deepcopy=False)) - before
    finally:
        close_storage(study._storage)


def _tune_process_main(task: _TuneTask) -> None:
    """Entry point of a spawned tune worker."""
    _init_process(task.threads)
    _tune_worker(task)


def _shares(total: int, workers: int) -> list[int]:
    """``total`` trials split as evenly as possible: [4, 3, 3] for 10 over 3."""
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def _supervise(
    tasks: list[_TuneTask],
    study: Any,
    tune: TuneConfig,
    say: Echo,
    poll: Callable[[], None] | None = None,
) -> list[str]:
    """Run one spawned process per task; a worker that dies has its trial failed and re-queued
    at once and is replaced for the trials it had left (at most ``max_retry + 1`` times).
    ``poll`` is called between checks on the workers (the live display in a notebook)."""
    import socket

    from optuna.trial import TrialState

    from skier.search.recovery import fail_worker_trials

    host = socket.gethostname()
    ctx = _spawn()
    notes: list[str] = []
    live: dict[int, tuple[Any, _TuneTask, int]] = {}
    for i, task in enumerate(tasks):
        proc = ctx.Process(target=_tune_process_main, args=(task,), name=f"skier-tune-{i}")
        proc.start()
        live[i] = (proc, task, 0)
    try:
        while live:
            if poll is not None:
                poll()
            for i, (proc, task, restarts) in list(live.items()):
                proc.join(timeout=0.2)
                if proc.is_alive():
                    continue
                del live[i]
                if proc.exitcode == 0:
                    continue
                worker = f"{host}:{proc.pid}"
                failed = fail_worker_trials(study, worker, max_retry=tune.max_retry)
                # Its failed trials were re-queued: they are left to run, like the rest.
                mine = [
                    t for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("skier:worker") == worker and t.state.is_finished()
                    and t.state != TrialState.FAIL
                ]  # fmt: skip
                left = task.n_trials - len(mine)
                note = (
                    f"worker {i} (pid {proc.pid}) exited with status {proc.exitcode}; "
                    f"failed and re-queued its running trial(s) {failed or 'none'}"
                )
                if left > 0 and restarts < tune.max_retry + 1:
                    replacement = _TuneTask(**{**task.__dict__, "n_trials": left})
                    new = ctx.Process(target=_tune_process_main, args=(replacement,))
                    new.start()
                    live[i] = (new, replacement, restarts + 1)
                    note += f"; a new worker runs its {left} remaining trial(s)"
                notes.append(note)
                say(note)
    except BaseException:
        for proc, _, _ in live.values():
            proc.terminate()
        for proc, _, _ in live.values():
            proc.join()
        raise
    return notes
