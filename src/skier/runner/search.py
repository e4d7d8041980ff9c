"""``skier cv`` and ``skier tune``: recorded skier runs driven by :mod:`skier.search`'s engines.

Cross-validation: every fold is a full skier run (``kind="cv_fold"``) grouped under one ``cv``
run, folds run in worker processes::

    from skier.config import load_config
    from skier.config.search import CrossValidationConfig
    from skier.runner.search import run_cv
    outcome = run_cv(load_config("examples/digits_mlp.yaml"), cv=CrossValidationConfig(folds=5))
    print(outcome.summary["mean"]["val_accuracy"], outcome.summary["median_epoch"])

Tuning: every trial is a skier run (``kind="trial"``) linked to one ``tune`` run; worker
processes share one Optuna study through its storage::

    from skier.config.search import TuneConfig, load_space
    from skier.runner.search import run_tune
    cfg = load_config("examples/digits_cnn_cv.yaml")
    outcome = run_tune(cfg, load_space("examples/space_digits.yaml", base=cfg),
                       tune=TuneConfig(method="bayes", trials=30, workers=2))
    print(outcome.summary["best"], outcome.best_config_path)

Worker processes are started with the ``spawn`` method (a fresh interpreter: no forked torch
threads or open database connections), each limited to its share of the CPU threads.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skier import __version__
from skier._io import atomic_write_text
from skier.config import RunConfig, config_from_mapping, config_to_yaml
from skier.config.search import (
    CrossValidationConfig,
    SearchSpace,
    TuneConfig,
    parse_space,
    set_config_values,
)
from skier.errors import ConfigError, SkierError, TrainingError
from skier.record import (
    SCHEMA_VERSION,
    RunDir,
    RunStore,
    capture_environment,
    new_run_id,
)
from skier.report import write_report
from skier.runner.lifecycle import resolve_store_url, run_ending
from skier.runner.training import RunOutcome, run_training
from skier.search.crossval import (
    CVData,
    Fold,
    FoldResult,
    chosen_metrics,
    cv_data,
    fold_bundle,
    make_folds,
    mean_curve,
    refit_bundle,
    summarize_folds,
)

__all__ = ["CVOutcome", "TuneOutcome", "default_workers", "run_cv", "run_tune"]

Echo = Callable[[str], None]


def default_workers() -> int:
    """The CPU cores this process may use (its affinity where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return max(os.cpu_count() or 1, 1)


def _init_process(threads: int, quiet_optuna: bool = True) -> None:
    """Set up a spawned worker: its share of CPU threads, and Optuna's logger quiet."""
    import torch

    torch.set_num_threads(max(threads, 1))
    if quiet_optuna:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spawn() -> Any:
    return multiprocessing.get_context("spawn")


def _store_url(config: RunConfig, root: Path, store_url: str | None) -> str:
    return resolve_store_url(store_url, config.record.store, root)


def _annotate(store_url: str, outcome: RunOutcome, summary: Mapping[str, Any]) -> None:
    """Add what the search knows (fold, trial, params, pruned) to a finished run's store row."""
    result = outcome.result
    with RunStore(store_url) as store:
        store.finish_run(
            outcome.run_id,
            outcome.status,
            epochs_done=result.epochs_done,
            best_epoch=result.best_epoch,
            monitor=result.monitor,
            best_value=result.best_value,
            test_metrics=result.test_metrics,
            stop_reason=result.stop_reason,
            duration_s=result.duration_s,
            summary=summary,
        )


def _absolute_paths(config: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Relative data and init paths made absolute, so a config written elsewhere still works."""
    out = json.loads(json.dumps(dict(config)))
    if base_dir is None:
        return out
    for section, key in (("data", "path"), ("data", "labels_path"), ("init", "pretrained")):
        value = out.get(section, {}).get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[section][key] = str((base_dir / value).resolve())
    return out


# --- cross-validation --------------------------------------------------------------------------
@dataclass
class CVOutcome:
    """Where a cross-validation was written and what it found (``summary`` = result.json)."""

    run_id: str
    run_dir: Path
    store_url: str
    status: str
    summary: dict[str, Any]
    folds: list[FoldResult]
    stop_reason: str | None = None
    refit: dict[str, Any] | None = None


@dataclass
class _FoldTask:
    config: dict[str, Any]
    base_dir: str | None
    out_dir: str
    store_url: str
    parent_id: str
    fold: Fold
    total: int


_CV_CACHE: dict[str, CVData] = {}


def _cached_cv_data(config: RunConfig, base_dir: Path | None) -> CVData:
    # A worker process runs several folds of the same data: load it once per process.
    key = json.dumps([config.data.model_dump(mode="json"), str(base_dir)], sort_keys=True)
    if key not in _CV_CACHE:
        _CV_CACHE.clear()
        _CV_CACHE[key] = cv_data(config.data, base_dir=base_dir)
    return _CV_CACHE[key]


def _run_fold(task: _FoldTask) -> FoldResult:
    config = config_from_mapping(task.config, "cv config")
    base = Path(task.base_dir) if task.base_dir else None
    bundle = fold_bundle(_cached_cv_data(config, base), task.fold)
    fold = task.fold
    outcome = run_training(
        config,
        base_dir=base,
        out_dir=task.out_dir,
        store_url=task.store_url,
        progress=False,
        data=bundle,
        kind="cv_fold",
        parent_id=task.parent_id,
    )
    result = outcome.result
    rows = [dict(r) for r in result.history.rows]
    metrics = chosen_metrics(rows, result.best_epoch)
    _annotate(
        task.store_url,
        outcome,
        {
            "cv_run_id": task.parent_id,
            "fold": fold.fold,
            "repeat": fold.repeat,
            "number": fold.number,
            "of": task.total,
            "sizes": {"train": len(fold.train_index), "val": len(fold.val_index)},
            "chosen_epoch": result.best_epoch,
            "metrics": metrics,
        },
    )
    return FoldResult(
        number=fold.number,
        repeat=fold.repeat,
        fold=fold.fold,
        run_id=outcome.run_id,
        run_dir=str(outcome.run_dir),
        status=outcome.status,
        epochs_done=result.epochs_done,
        best_epoch=result.best_epoch,
        monitor=result.monitor,
        stop_reason=result.stop_reason,
        metrics=metrics,
        history=rows,
        duration_s=result.duration_s,
        test_metrics=dict(result.test_metrics),
    )


def _fold_line(r: FoldResult, total: int, metric: str) -> str:
    shown = [metric] + [k for k in ("val_accuracy",) if k != metric and k in r.metrics]
    parts = [f"{k} {r.metrics[k]:.4g}" for k in shown if k in r.metrics]
    chosen = f", chosen epoch {r.best_epoch}" if r.best_epoch is not None else ""
    return (
        f"fold {r.number}/{total} ({r.repeat}.{r.fold}): {', '.join(parts)}{chosen}, "
        f"{r.epochs_done} epochs, {r.duration_s:.1f} s"
    )


def _run_folds(
    tasks: Sequence[_FoldTask],
    workers: int,
    threads: int,
    say: Echo,
    metric: str,
    should_stop: Callable[[list[FoldResult]], str | None] | None,
) -> tuple[list[FoldResult], str | None]:
    done: list[FoldResult] = []
    if workers <= 1:
        for task in tasks:
            done.append(_run_fold(task))
            say(_fold_line(done[-1], len(tasks), metric))
            reason = should_stop(sorted(done, key=lambda r: r.number)) if should_stop else None
            if reason:
                return done, reason
        return done, None
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=_spawn(), initializer=_init_process, initargs=(threads,)
    ) as pool:
        pending: set[Future[FoldResult]] = {pool.submit(_run_fold, t) for t in tasks}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    done.append(future.result())  # a fold's error stops the CV
                    say(_fold_line(done[-1], len(tasks), metric))
                reason = should_stop(sorted(done, key=lambda r: r.number)) if should_stop else None
                if reason:
                    for f in pending:
                        f.cancel()
                    return done, reason
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return done, None


def run_cv(
    config: RunConfig,
    *,
    cv: CrossValidationConfig | None = None,
    base_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    echo: Echo | None = None,
    parent_id: str | None = None,
    should_stop: Callable[[list[FoldResult]], str | None] | None = None,
    plots: bool = True,
) -> CVOutcome:
    """Cross-validate ``config``: one recorded run per fold, then the summary and figures.

    The CV run gets ``OUT/<id>/`` with ``config.yaml``, ``folds.csv``, ``result.json``,
    ``cv_curves.png`` and ``report.html``; fold runs go to ``OUT/<id>/folds/<fold id>/``, all in
    one store. ``should_stop(results_so_far)`` may return a reason to stop early (tuning uses it
    to prune a trial's CV); the CV run then ends ``stopped`` with that reason.
    """
    cv = cv or CrossValidationConfig()
    say = echo or (lambda _m: None)
    base = Path(base_dir) if base_dir is not None else None
    root = Path(out_dir) if out_dir is not None else Path(config.record.dir)
    url = _store_url(config, root, store_url)
    seed = config.data.seed if cv.seed is None else cv.seed

    # Everything that can be wrong is found before anything is written.
    if not cv.metric.startswith("val_"):
        raise ConfigError(
            f"the cv metric (--metric) must be a validation metric such as val_loss, val_error "
            f"or val_accuracy; got {cv.metric!r}."
        )
    data = cv_data(config.data, base_dir=base)
    stratify = cv.stratify and data.raw.task == "classification"
    folds = make_folds(
        data.raw.y[data.dev_index],
        folds=cv.folds,
        repeats=cv.repeats,
        holdout_fraction=cv.holdout_fraction,
        seed=seed,
        stratify=stratify,
        index=data.dev_index,
    )
    run_id = new_run_id()
    run_dir = RunDir.create(root, run_id)
    run_dir.checkpoints.rmdir()  # the folds keep their own; the CV run has none
    run_dir.write_config(config_to_yaml(config))
    name = (config.record.name or f"{config.data.name}-{config.model.name}") + "-cv"
    plan = f"{cv.folds}-fold" if cv.folds > 1 else f"hold-out {cv.holdout_fraction:g}"
    plan += f" x {cv.repeats} repeats" if cv.repeats > 1 else ""
    settings = cv.model_dump(mode="json") | {"seed": seed, "stratify": stratify}
    with RunStore(url) as store:
        store.create_run(
            name,
            config.model_dump(mode="json") | {"cv": settings},
            run_dir.path,
            kind="cv",
            task=data.raw.task,
            run_id=run_id,
            parent_id=parent_id,
        )
    say(f"cv {run_id} → {run_dir.path} ({plan}, {len(folds)} folds, test split untouched)")
    workers = min(cv.workers or default_workers(), len(folds))
    threads = max(default_workers() // workers, 1)
    plain = config.model_dump(mode="json")
    tasks = [
        _FoldTask(set_config_values(plain, {"record.name": f"{name}-{f.label}"}),
                  None if base is None else str(base), str(run_dir.path / "folds"), url,
                  run_id, f, len(folds))
        for f in folds
    ]  # fmt: skip
    started = time.perf_counter()
    with run_ending(url, run_id, started=started):
        results, stop_reason = _run_folds(tasks, workers, threads, say, cv.metric, should_stop)
    results.sort(key=lambda r: r.number)
    summary = summarize_folds(results, cv.metric)
    summary.update(
        {
            "run_id": run_id,
            "name": name,
            "kind": "cv",
            "status": "stopped" if stop_reason else "completed",
            "stop_reason": stop_reason,
            "plan": plan,
            "settings": settings,
            "sizes": {"development": len(data.dev_index), "test": len(data.test_index)},
            "workers": workers,
            "duration_s": time.perf_counter() - started,
            "skier_version": __version__,
            "schema_version": SCHEMA_VERSION,
        }
    )
    refit = None
    if cv.refit and not stop_reason and summary["median_epoch"]:
        refit = _refit(config, data, summary["median_epoch"], base, run_dir, url, run_id, say)
        summary["refit"] = refit
    _write_cv_outputs(config, run_dir, url, summary, results, plots)
    with RunStore(url) as store:
        store.finish_run(
            run_id,
            summary["status"],
            epochs_done=summary["median_epoch"],
            monitor=cv.metric,
            best_value=summary["value"] if math.isfinite(summary["value"]) else None,
            stop_reason=stop_reason,
            duration_s=summary["duration_s"],
            test_metrics=(refit or {}).get("test_metrics"),
            summary=summary,
        )
    return CVOutcome(
        run_id, run_dir.path, url, summary["status"], summary, results, stop_reason, refit
    )


def _refit(
    config: RunConfig,
    data: CVData,
    epochs: int,
    base: Path | None,
    run_dir: RunDir,
    url: str,
    cv_id: str,
    say: Echo,
) -> dict[str, Any]:
    """Train on every development row for the folds' median chosen epoch count."""
    plain = set_config_values(
        config.model_dump(mode="json"),
        {
            "train.epochs": int(epochs),
            "early_stopping.enabled": False,  # no validation split left to watch
            "record.name": (config.record.name or f"{config.data.name}-{config.model.name}")
            + "-refit",
        },
    )
    if plain.get("checkpoint", {}).get("monitor") not in ("auto", "loss"):
        plain["checkpoint"]["monitor"] = "auto"
    refit_config = config_from_mapping(plain, "refit config")
    say(f"refit on all {len(data.dev_index)} development rows for {epochs} epochs (the median)")
    outcome = run_training(
        refit_config,
        base_dir=base,
        out_dir=run_dir.path / "refit",
        store_url=url,
        progress=False,
        data=refit_bundle(data),
        kind="train",
        parent_id=cv_id,
    )
    _annotate(url, outcome, {"cv_run_id": cv_id, "refit": True, "epochs": epochs})
    return {
        "run_id": outcome.run_id,
        "run_dir": str(outcome.run_dir),
        "epochs": epochs,
        "test_metrics": dict(outcome.result.test_metrics),
    }


def _folds_csv(summary: Mapping[str, Any]) -> str:
    rows = summary["folds"]
    keys = list(rows[0]) if rows else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in keys})
    return buf.getvalue()


def _write_cv_outputs(
    config: RunConfig,
    run_dir: RunDir,
    url: str,
    summary: dict[str, Any],
    results: Sequence[FoldResult],
    plots: bool,
) -> None:
    run_id = run_dir.run_id
    atomic_write_text(run_dir.path / "folds.csv", _folds_csv(summary))
    run_dir.write_result(summary | {"environment": capture_environment()})
    figures: dict[str, Path | bytes] = {}
    if plots and config.record.plots and results:
        from skier.plots import save_figure
        from skier.plots.search import plot_cv_figure

        keys = [summary["metric"]] + [
            k for k in ("val_accuracy", "val_loss") if k != summary["metric"]
        ]
        keys = [k for k in keys if any(k in r.metrics for r in results)][:2]
        means = {k: mean_curve(results, k) for k in keys}
        path = run_dir.path / "cv_curves.png"
        save_figure(plot_cv_figure(results, means), path)
        figures["Fold curves and their mean (dots: each fold's chosen epoch)"] = path
    result_view = {
        "run_id": run_id,
        "status": summary["status"],
        "stop_reason": summary.get("stop_reason"),
        "epochs_done": summary.get("median_epoch"),
        "monitor": summary["metric"],
        "best_value": summary["value"],
        "duration_s": summary["duration_s"],
        "run_dir": str(run_dir.path),
        **{f"test_{k}": v for k, v in ((summary.get("refit") or {}).get("test_metrics") or {})
           .items() if not k.startswith("test_")},
    }  # fmt: skip
    table = _cv_table(summary)
    if config.record.report:
        write_report(
            run_dir.report_html,
            title=f"{summary['name']} ({summary['plan']})",
            config=config.model_dump(mode="json") | {"cv": summary["settings"]},
            result=result_view,
            figures=figures | ({"Per-fold metrics": table} if table else {}),
            history=None,
        )
    with RunStore(url) as store:
        store.add_artifact(run_id, "config.yaml", run_dir.config_path, "config")
        store.add_artifact(run_id, "folds.csv", run_dir.path / "folds.csv", "csv")
        store.add_artifact(run_id, "result.json", run_dir.result_json, "json")
        for figure in figures.values():
            if isinstance(figure, Path):
                store.add_artifact(run_id, figure.name, figure, "figure")
        if config.record.report:
            store.add_artifact(run_id, "report.html", run_dir.report_html, "report")


def _cv_table(summary: Mapping[str, Any]) -> bytes | None:
    """The per-fold table (with mean ± std) as a PNG, for the report."""
    from skier.plots.search import plot_table_figure

    rows = summary["folds"]
    if not rows:
        return None
    keys = [k for k in ("val_loss", "val_error", "val_accuracy") if k in summary["mean"]]
    head = ["fold", "run", "epochs", "chosen epoch", *keys]
    body = [
        [f"{r['repeat']}.{r['fold']}", r["run_id"], r["epochs_done"], r["chosen_epoch"]]
        + [_fmt(r.get(k)) for k in keys]
        for r in rows
    ]
    body.append(
        ["mean ± std", "", "", f"median {summary['median_epoch']}"]
        + [f"{_fmt(summary['mean'][k])} ± {_fmt(summary['std_by_metric'][k])}" for k in keys]
    )
    buf = io.BytesIO()  # the report embeds the bytes; no file of its own
    plot_table_figure(head, body).savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return str(value)


# --- tuning -------------------------------------------------------------------------------------
@dataclass
class TuneOutcome:
    """Where a search was written and what it found (``summary`` = result.json)."""

    run_id: str
    run_dir: Path
    store_url: str
    status: str
    study_name: str
    storage: str
    summary: dict[str, Any]
    best_config_path: Path | None = None
    trained: RunOutcome | None = None
    trials_run: int = 0
    notes: list[str] = field(default_factory=list)


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


def _trial_value(rows: Sequence[Mapping[str, float]], metric: str, direction: str) -> float:
    values = [r[metric] for r in rows if metric in r and math.isfinite(r[metric])]
    if not values:
        return math.nan
    return min(values) if direction == "minimize" else max(values)


class _Objective:
    """Runs one trial as a recorded skier run (or a recorded CV for ``cv_mean``)."""

    def __init__(self, task: _TuneTask, study: Any, space: SearchSpace, journal: bool) -> None:
        from skier.search.tune import objective_direction

        self.task, self.study, self.space, self.journal = task, study, space, journal
        self.tune = TuneConfig.model_validate(task.tune)
        self.metric = self.tune.metric if self.tune.objective == "cv_mean" else self.tune.objective
        self.direction = objective_direction(self.metric, self.tune.direction)

    def __call__(self, trial: Any) -> float:
        import optuna

        from skier.search.tune import (
            check_grid_claim,
            fail_stale_trials,
            suggest,
            trial_guard,
        )

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
        if self.tune.objective == "cv_mean":
            return self._run_cv(config, trial, values, base)
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

    def _run_cv(
        self, config: RunConfig, trial: Any, values: Mapping[str, Any], base: Path | None
    ) -> tuple[float, str | None, dict[str, Any]]:
        task, tune = self.task, self.tune

        def prune_check(done: list[FoldResult]) -> str | None:
            scores = [r.metrics.get(self.metric, math.nan) for r in done]
            scores = [s for s in scores if math.isfinite(s)]
            if not scores:
                return None
            running = sum(scores) / len(scores)
            trial.report(running, len(done))
            if trial.should_prune():
                return f"pruned: mean {self.metric} {running:.4g} after {len(done)} folds"
            return None

        outcome = run_cv(
            config,
            cv=CrossValidationConfig(folds=tune.folds, workers=1, metric=self.metric),
            base_dir=base,
            out_dir=task.out_dir,
            store_url=task.store_url,
            parent_id=task.tune_run_id,
            should_stop=prune_check,
            plots=False,
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


def _open(task: _TuneTask) -> tuple[Any, SearchSpace, bool]:
    """The study as this worker sees it: its own sampler (grid: the same seed everywhere)."""
    from skier.search.tune import make_pruner, make_sampler, open_storage, storage_kind

    tune = TuneConfig.model_validate(task.tune)
    space = parse_space(task.space, task.space_source)
    seed = tune.seed if tune.method == "grid" else tune.seed + task.worker_index
    sampler = make_sampler(tune.method, space, seed=seed, sampler=tune.sampler)
    epochs = int(task.config.get("train", {}).get("epochs", 20))
    steps = tune.folds if tune.objective == "cv_mean" else epochs
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


def _tune_worker(task: _TuneTask) -> int:
    """Run ``task.n_trials`` trials of the shared study in this process; returns how many ran."""
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


def _supervise(tasks: list[_TuneTask], study: Any, tune: TuneConfig, say: Echo) -> list[str]:
    """Run one spawned process per task; a worker that dies has its trial failed and re-queued
    at once and is replaced for the trials it had left (at most ``max_retry + 1`` times)."""
    import socket

    from optuna.trial import TrialState

    from skier.search.tune import fail_worker_trials

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


def _resolve_trials(tune: TuneConfig, space: SearchSpace, study: Any) -> int:
    if tune.trials is not None:
        return tune.trials
    if tune.method != "grid":
        return 20
    from optuna.trial import TrialState

    from skier.search.tune import grid_points

    # A resumed grid study runs only the points no trial has taken yet.
    size = math.prod(len(v) for v in grid_points(space).values())
    done = {
        t.system_attrs.get("grid_id")
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    }
    return max(size - len(done - {None}), 0)


def _check_objective(tune: TuneConfig, task_kind: str) -> None:
    metric = tune.metric if tune.objective == "cv_mean" else tune.objective
    problems = []
    if not metric.startswith("val_"):
        what = "--metric" if tune.objective == "cv_mean" else "--objective"
        problems.append(
            f"{what} must be cv_mean or a validation metric such as val_loss, val_error or "
            f"val_accuracy; got {metric!r}."
        )
    elif task_kind == "regression" and metric in ("val_error", "val_accuracy"):
        problems.append(f"--objective {metric!r} needs classification; use val_loss.")
    if problems:
        raise ConfigError(problems)


def run_tune(
    config: RunConfig,
    space: SearchSpace,
    *,
    tune: TuneConfig | None = None,
    base_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    echo: Echo | None = None,
) -> TuneOutcome:
    """Search ``space`` around ``config`` with Optuna; every trial is a recorded skier run.

    Writes ``OUT/<id>/`` with the study's journal (unless ``tune.storage`` names another
    storage), ``trials/`` (one run directory per trial), ``trials.csv``, ``best_config.yaml``
    (``skier train`` accepts it), figures, ``result.json`` and ``report.html``.
    """
    import optuna

    from skier.data import load_data
    from skier.search.tune import (
        close_storage,
        make_pruner,
        make_sampler,
        objective_direction,
        open_storage,
        open_study,
        storage_kind,
    )

    tune = tune or TuneConfig()
    say = echo or (lambda _m: None)
    base = Path(base_dir) if base_dir is not None else None
    root = Path(out_dir) if out_dir is not None else Path(config.record.dir)
    url = _store_url(config, root, store_url)

    # Validate before writing: the data, the objective, the grid, the storage.
    task_kind = load_data(config.data, base_dir=base).task
    _check_objective(tune, task_kind)
    metric = tune.metric if tune.objective == "cv_mean" else tune.objective
    direction = objective_direction(metric, tune.direction)
    make_sampler(tune.method, space, seed=tune.seed, sampler=tune.sampler)  # grid errors now
    run_id = new_run_id()
    storage_url = tune.storage or str(root / run_id / "study.journal")
    if storage_kind(storage_url) != "file":
        close_storage(open_storage(storage_url))  # unreachable: fail before the run exists
    study_name = tune.study or f"skier-{run_id}"

    run_dir = RunDir.create(root, run_id)
    run_dir.checkpoints.rmdir()  # the trials keep their own; the search has none
    # With absolute data paths, so that `skier tune --resume RUN_DIR` can read them back.
    run_dir.write_config(
        config_to_yaml(config_from_mapping(_absolute_paths(config.model_dump(mode="json"), base)))
    )
    atomic_write_text(run_dir.path / "space.yaml", yaml.safe_dump(space.to_dict(), sort_keys=False))
    study_record = {
        "study": study_name,
        "storage": str(Path(storage_url).resolve())
        if storage_kind(storage_url) == "file"
        else _safe_storage(storage_url),
        "tune": tune.model_dump(mode="json", exclude={"storage", "study", "trials"}),
    }
    atomic_write_text(run_dir.path / "study.json", json.dumps(study_record, indent=2) + "\n")
    storage = open_storage(
        storage_url,
        heartbeat_s=tune.heartbeat_s,
        grace_s=tune.grace_period_s,
        max_retry=tune.max_retry,
    )
    epochs = config.train.epochs if tune.objective != "cv_mean" else tune.folds
    study = open_study(
        storage,
        study_name,
        direction=direction,
        sampler=make_sampler(tune.method, space, seed=tune.seed, sampler=tune.sampler),
        pruner=make_pruner(
            tune.prune, epochs=epochs, method=tune.method, startup_trials=tune.prune_startup
        ),
    )
    n_trials = _resolve_trials(tune, space, study)
    workers = max(min(tune.workers or default_workers(), n_trials), 1)
    threads = max(default_workers() // workers, 1)
    name = (config.record.name or f"{config.data.name}-{config.model.name}") + "-tune"
    settings = tune.model_dump(mode="json") | {
        "storage": _safe_storage(storage_url),
        "study": study_name,
        "trials": n_trials,
        "workers": workers,
    }
    with RunStore(url) as store:
        store.create_run(
            name,
            config.model_dump(mode="json") | {"tune": settings, "space": space.to_dict()},
            run_dir.path,
            kind="tune",
            task=task_kind,
            run_id=run_id,
        )
    resumed = len(study.get_trials(deepcopy=False))
    say(
        f"tune {run_id} → {run_dir.path}\nstudy {study_name!r} in {_safe_storage(storage_url)}"
        + (f" (resumed: {resumed} trials already)" if resumed else "")
        + f"\n{tune.method} search, {n_trials} trials on {workers} worker(s), "
        f"objective {tune.objective}"
        + (f" ({metric})" if tune.objective == "cv_mean" else "")
        + f" ({direction}), pruning {tune.prune}"
    )
    plain = _absolute_paths(config.model_dump(mode="json"), base)
    tasks = [
        _TuneTask(
            config=plain,
            base_dir=None if base is None else str(base),
            space=dict(space.raw) if space.raw else space.to_dict(),
            space_source=space.source,
            tune=tune.model_dump(mode="json"),
            storage_url=storage_url,
            study_name=study_name,
            tune_run_id=run_id,
            out_dir=str(run_dir.path / "trials"),
            store_url=url,
            n_trials=share,
            worker_index=i,
            threads=threads,
            echo=echo is not None,
        )
        for i, share in enumerate(_shares(n_trials, workers))
        if share > 0
    ]
    started = time.perf_counter()
    notes: list[str] = []
    try:
        with run_ending(url, run_id, started=started):
            if len(tasks) == 1:
                _tune_worker(tasks[0])
            elif tasks:
                notes = _supervise(tasks, study, tune, say)
    finally:
        close_storage(storage)
    seconds = time.perf_counter() - started
    _fail_orphans(url, run_id)
    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        return _finish_tune(
            config, space, tune, study, run_dir, url, storage_url, settings, seconds, notes,
            base, name, say, n_trials,
        )  # fmt: skip
    finally:
        close_storage(storage)


def _fail_orphans(url: str, tune_id: str) -> None:
    """Runs of this search still ``running`` once every worker has exited lost their worker."""
    with RunStore(url) as store:
        for kind in ("trial", "cv"):
            for record in store.list_runs(limit=100_000, status="running", kind=kind,
                                          parent_id=tune_id):  # fmt: skip
                store.finish_run(
                    record.id, "failed", error="its worker process died during the run"
                )


def _safe_storage(url: str) -> str:
    from skier.search.tune import _safe

    return _safe(url)


def _trials_csv(summary: Mapping[str, Any]) -> str:
    names = list((summary.get("space") or {}).keys())
    head = ["number", "state", "value", *names, "epochs", "duration_s", "run_id", "retry_of",
            "note"]  # fmt: skip
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for t in summary["trials"]:
        writer.writerow(
            [t["number"], t["state"], _blank(t["value"])]
            + [_blank(t["params"].get(n)) for n in names]
            + [_blank(t.get(k)) for k in ("epochs", "duration_s", "run_id", "retry_of", "note")]
        )
    return buf.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _finish_tune(
    config: RunConfig,
    space: SearchSpace,
    tune: TuneConfig,
    study: Any,
    run_dir: RunDir,
    url: str,
    storage_url: str,
    settings: dict[str, Any],
    seconds: float,
    notes: list[str],
    base: Path | None,
    name: str,
    say: Echo,
    n_trials: int,
) -> TuneOutcome:
    from skier.search.tune import study_summary

    run_id = run_dir.run_id
    summary = study_summary(study, space)
    best = summary["best"]
    summary.update(
        {
            "run_id": run_id,
            "name": name,
            "kind": "tune",
            "status": "completed" if best else "failed",
            "objective": tune.objective,
            "metric": tune.metric if tune.objective == "cv_mean" else tune.objective,
            "settings": settings,
            "duration_s": seconds,
            "notes": notes,
            "epochs_run": sum(int(t["epochs"] or 0) for t in summary["trials"]),
            "skier_version": __version__,
            "schema_version": SCHEMA_VERSION,
        }
    )
    best_path = None
    if best:
        best_plain = set_config_values(
            _absolute_paths(config.model_dump(mode="json"), base),
            {**best["params"], "record.name": f"{name}-best"},
        )
        best_config = config_from_mapping(best_plain, "best config")
        best_path = atomic_write_text(
            run_dir.path / "best_config.yaml", config_to_yaml(best_config)
        )
        summary["best_config"] = str(best_path)
    atomic_write_text(run_dir.path / "trials.csv", _trials_csv(summary))
    trained = None
    if best and tune.train_best and best_path is not None:
        say(f"training the best config: {best_path}")
        trained = run_training(
            config_from_mapping(yaml.safe_load(best_path.read_text()), str(best_path)),
            out_dir=run_dir.path.parent,
            store_url=url,
            progress=False,
            kind="train",
            parent_id=run_id,
        )
        summary["trained"] = {
            "run_id": trained.run_id,
            "run_dir": str(trained.run_dir),
            "status": trained.status,
            "test_metrics": dict(trained.result.test_metrics),
        }
    run_dir.write_result(summary | {"environment": capture_environment()})
    figures = _tune_figures(config, run_dir, summary)
    if config.record.report:
        _tune_report(config, run_dir, summary, figures, space)
    status = summary["status"]
    error = None
    if not best:
        error = _no_best_reason(summary)
    with RunStore(url) as store:
        for label, path in (
            ("config.yaml", run_dir.config_path),
            ("space.yaml", run_dir.path / "space.yaml"),
            ("trials.csv", run_dir.path / "trials.csv"),
            ("result.json", run_dir.result_json),
        ):
            kind = {"yaml": "config", "csv": "csv", "json": "json"}[label.rsplit(".", 1)[1]]
            store.add_artifact(run_id, label, path, kind)
        if best_path is not None:
            store.add_artifact(run_id, "best_config.yaml", best_path, "config")
        for path in figures.values():
            store.add_artifact(run_id, path.name, path, "figure")
        if config.record.report:
            store.add_artifact(run_id, "report.html", run_dir.report_html, "report")
        store.finish_run(
            run_id,
            status,
            monitor=summary["metric"],
            best_value=best["value"] if best else None,
            duration_s=seconds,
            test_metrics=(summary.get("trained") or {}).get("test_metrics"),
            error=error,
            summary=summary,
        )
    outcome = TuneOutcome(
        run_id, run_dir.path, url, status, summary["study"], _safe_storage(storage_url), summary,
        best_path, trained, n_trials, notes,
    )  # fmt: skip
    if not best:
        raise TrainingError(error or "no trial completed.")
    return outcome


def _no_best_reason(summary: Mapping[str, Any]) -> str:
    errors = [t["note"] for t in summary["trials"] if t["state"] == "fail" and t["note"]]
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items()) or "no trials"
    first = f" First error: {errors[0]}" if errors else ""
    return f"the search must complete at least one trial; got {counts}.{first}"


def _tune_figures(
    config: RunConfig, run_dir: RunDir, summary: Mapping[str, Any]
) -> dict[str, Path]:
    if not config.record.plots or not summary["trials"]:
        return {}
    from skier.plots import save_figure
    from skier.plots.search import (
        plot_optimization_history,
        plot_parallel_coordinates,
        plot_param_importances,
        plot_slices_figure,
    )

    out: dict[str, Path] = {}
    items: list[tuple[str, str, Any]] = [
        ("Optimization history (line: best so far)", "optimization_history.png",
         plot_optimization_history(summary).figure),
    ]  # fmt: skip
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    if summary["importances"]:
        items.append(
            ("Parameter importance (fANOVA)", "param_importances.png",
             plot_param_importances(summary).figure)
        )  # fmt: skip
    if complete and summary.get("space"):
        items.append(
            ("Parallel coordinates (colour: objective)", "parallel_coordinates.png",
             plot_parallel_coordinates(summary).figure)
        )  # fmt: skip
        items.append(("Slices: objective against each parameter", "slices.png",
                      plot_slices_figure(summary)))  # fmt: skip
    for caption, filename, figure in items:
        out[caption] = save_figure(figure, run_dir.path / filename)
    return out


def _tune_report(
    config: RunConfig,
    run_dir: RunDir,
    summary: Mapping[str, Any],
    figures: Mapping[str, Path],
    space: SearchSpace,
) -> None:
    from skier.plots.search import plot_table_figure

    best = summary["best"] or {}
    trained = summary.get("trained") or {}
    result_view = {
        "run_id": summary["run_id"],
        "status": summary["status"],
        "monitor": summary["metric"],
        "best_value": best.get("value"),
        "epochs_done": summary["epochs_run"],
        "duration_s": summary["duration_s"],
        "run_dir": str(run_dir.path),
        **{k if k.startswith("test_") else f"test_{k}": v
           for k, v in (trained.get("test_metrics") or {}).items()},
    }  # fmt: skip
    names = space.names
    rows = sorted(
        summary["trials"],
        key=lambda t: (t["value"] is None, _order(t["value"], summary["direction"])),
    )[:25]
    head = ["trial", "state", "value", *[n.split(".")[-1] for n in names], "epochs"]
    body = [
        [t["number"], t["state"],
         _fmt(t["value"]) + (" (last report)" if t["state"] == "pruned" else ""),
         *[_fmt(t["params"].get(n)) for n in names], _fmt(t["epochs"])]
        for t in rows
    ]  # fmt: skip
    buf = io.BytesIO()
    plot_table_figure(head, body).savefig(buf, format="png", dpi=100)
    best_line = ", ".join(f"{k}={_fmt(v)}" for k, v in (best.get("params") or {}).items())
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
    title = f"{summary['name']}: best {summary['metric']} {_fmt(best.get('value'))} ({best_line})"
    write_report(
        run_dir.report_html,
        title=title,
        config={
            "search": {
                "study": summary["study"],
                "trials": counts,
                "best trial": best.get("number"),
                "best params": best.get("params"),
                "train the best": f"skier train {run_dir.path / 'best_config.yaml'}",
                "importances": summary["importances"],
                "settings": summary["settings"],
                "space": summary.get("space"),
            },
            "base config": config.model_dump(mode="json"),
        },
        result=result_view,
        figures={**figures, "Trials (best first; all of them in trials.csv)": buf.getvalue()},
        history=None,
    )


def _order(value: float | None, direction: str) -> float:
    if value is None:
        return 0.0
    return value if direction == "minimize" else -value
