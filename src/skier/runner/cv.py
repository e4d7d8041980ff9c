"""``skier cv`` and ``skier tune``: recorded skier runs driven by :mod:`skier.search`'s engines.

Cross-validation: every fold is a full skier run (``kind="cv_fold"``) grouped under one ``cv``
run, folds run in worker processes::

    from skier.config import load_config
    from skier.config.search import CrossValidationConfig
    from skier.runner.cv import run_cv
    outcome = run_cv(load_config("examples/digits_mlp.yaml"), cv=CrossValidationConfig(folds=5))
    print(outcome.summary["mean"]["val_accuracy"], outcome.summary["median_epoch"])
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from skier import __version__
from skier._io import atomic_write_text
from skier._live import display_mode
from skier.config import RunConfig, config_from_mapping, config_to_yaml
from skier.config.search import (
    CrossValidationConfig,
    set_config_values,
)
from skier.errors import ConfigError
from skier.record import (
    SCHEMA_VERSION,
    RunDir,
    RunStore,
    capture_environment,
    new_run_id,
)
from skier.record.rundir import RunFiles
from skier.report import write_report
from skier.report.tables import cv_frame, cv_html, cv_text
from skier.runner._live_search import LiveFolds
from skier.runner._search import (
    Echo,
    _annotate,
    _fmt,
    _init_process,
    _spawn,
    _store_url,
    default_workers,
)
from skier.runner.lifecycle import run_ending, run_name
from skier.runner.trackers import (
    close_group_tracker,
    group_run_id,
    open_group_tracker,
    trackers_ending,
)
from skier.runner.training import run_training
from skier.search.crossval import (
    CVData,
    Fold,
    FoldResult,
    chosen_metrics,
    cv_data,
    fold_bundle,
    make_folds,
    refit_bundle,
    summarize_folds,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CVOutcome", "run_cv"]


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

    def plot(self) -> Figure:
        """Each fold's curves, their mean and each fold's chosen epoch
        (:func:`skier.plots.search.plot_cv_figure`); a notebook shows the figure.

        >>> outcome.plot()   # doctest: +SKIP
        """
        from skier.plots.search import plot_cv_figure

        return plot_cv_figure(self)

    def __repr__(self) -> str:
        return f"CVOutcome({cv_text(self.summary)}; {self.run_dir})"

    def _repr_html_(self) -> str:
        """What the folds found, then one row per fold and their mean ± std (notebooks)."""
        return cv_html(self.summary)

    def to_pandas(self) -> Any:
        """One row per fold: its run, status, epochs, chosen epoch and metrics."""
        return cv_frame(self.summary)


@dataclass
class _FoldTask:
    config: dict[str, Any]
    base_dir: str | None
    out_dir: str
    store_url: str
    parent_id: str
    fold: Fold
    total: int
    seed: int | None = None
    tracker_parent: str | None = None  # the cv run's MLflow run, when it has one


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
        tracker_parent=task.tracker_parent,
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
            "seed": task.seed,
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
        seed=task.seed,
    )


def _fold_line(r: FoldResult, total: int, metric: str) -> str:
    shown = [metric] + [k for k in ("val_accuracy",) if k != metric and k in r.metrics]
    parts = [f"{k} {r.metrics[k]:.4g}" for k in shown if k in r.metrics]
    chosen = f", chosen epoch {r.best_epoch}" if r.best_epoch is not None else ""
    seed = f" seed {r.seed}" if r.seed is not None else ""
    return (
        f"fold {r.number}/{total} ({r.repeat}.{r.fold}{seed}): {', '.join(parts)}{chosen}, "
        f"{r.epochs_done} epochs, {r.duration_s:.1f} s"
    )


def _fold_tasks(
    config: RunConfig,
    folds: Sequence[Fold],
    seeds: Sequence[int] | None,
    name: str,
    base: Path | None,
    run_dir: RunDir,
    url: str,
    tracker_parent: str | None = None,
) -> list[_FoldTask]:
    """One task per fold, or per fold and seed (numbered 1.. in that order) with ``seeds``."""
    plain = config.model_dump(mode="json")
    per = len(seeds) if seeds else 1
    tasks = []
    for f in folds:
        for j, seed in enumerate(seeds or [None]):
            values: dict[str, Any] = {"record.name": f"{name}-{f.label}"}
            if seed is not None:
                values = {"train.seed": seed, "record.name": f"{name}-{f.label}-seed{seed}"}
            fold = replace(f, number=(f.number - 1) * per + j + 1)
            tasks.append(
                _FoldTask(set_config_values(plain, values), None if base is None else str(base),
                          str(run_dir.path / RunFiles.FOLDS), url, run_dir.run_id, fold,
                          len(folds) * per, seed, tracker_parent)
            )  # fmt: skip
    return tasks


def _run_folds(
    tasks: Sequence[_FoldTask],
    workers: int,
    threads: int,
    say: Echo,
    metric: str,
    should_stop: Callable[[list[FoldResult]], str | None] | None,
    live: LiveFolds | None = None,
) -> tuple[list[FoldResult], str | None]:
    done: list[FoldResult] = []
    if workers <= 1:
        for task in tasks:
            done.append(_run_fold(task))
            say(_fold_line(done[-1], len(tasks), metric))
            if live is not None:
                live.update(done)
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
                if live is not None:
                    live.update(done)
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
    progress: bool | Literal["auto", "on", "off"] = "auto",
    tracker_parent: str | None = None,
) -> CVOutcome:
    """Cross-validate ``config``: one recorded run per fold, then the summary and figures.

    The CV run gets ``OUT/<id>/`` with ``config.yaml``, ``folds.csv``, ``result.json``,
    ``cv_curves.png`` and ``report.html``; fold runs go to ``OUT/<id>/folds/<fold id>/``, all in
    one store. ``should_stop(results_so_far)`` may return a reason to stop early (tuning uses it
    to prune a trial's CV); the CV run then ends ``stopped`` with that reason. In a notebook
    (``progress`` "auto" or "on") the folds show in one output as they finish.

    With ``record.loggers: [mlflow]`` the CV run is an MLflow run (nested under
    ``tracker_parent``, e.g. a tuning run's) with the folds' mean and std of each metric, and
    each fold's MLflow run is nested under it.
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
    name = run_name(config, "cv")
    plan = f"{cv.folds}-fold" if cv.folds > 1 else f"hold-out {cv.holdout_fraction:g}"
    plan += f" x {cv.repeats} repeats" if cv.repeats > 1 else ""
    plan += f" x seeds {', '.join(map(str, cv.seeds))}" if cv.seeds else ""
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
    group = open_group_tracker(
        config,
        run_dir,
        run_id=run_id,
        kind="cv",
        name=name,
        task=data.raw.task,
        store_url=url,
        mlflow_parent=tracker_parent,
        echo=say,
    )
    nest = group_run_id(group)
    tasks = _fold_tasks(config, folds, cv.seeds, name, base, run_dir, url, nest)
    workers = min(cv.workers or default_workers(), len(tasks))
    threads = max(default_workers() // workers, 1)
    live = LiveFolds(len(tasks), cv.metric) if display_mode(progress) == "live" else None
    started = time.perf_counter()
    with run_ending(url, run_id, started=started), trackers_ending([group], run_dir):
        results, stop_reason = _run_folds(
            tasks, workers, threads, say, cv.metric, should_stop, live
        )
    if live is not None:
        live.update(results, f"stopped: {stop_reason}" if stop_reason else "done")
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
        refit = _refit(config, data, summary["median_epoch"], base, run_dir, url, run_id, say, nest)
        summary["refit"] = refit
    _write_cv_outputs(config, run_dir, url, summary, results, plots)
    close_group_tracker(
        group, run_dir, summary["status"], stop_reason=stop_reason, metrics=_group_metrics(summary)
    )
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
    tracker_parent: str | None = None,
) -> dict[str, Any]:
    """Train on every development row for the folds' median chosen epoch count."""
    plain = set_config_values(
        config.model_dump(mode="json"),
        {
            "train.epochs": int(epochs),
            "early_stopping.enabled": False,  # no validation split left to watch
            "record.name": run_name(config, "refit"),
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
        tracker_parent=tracker_parent,
    )
    _annotate(url, outcome, {"cv_run_id": cv_id, "refit": True, "epochs": epochs})
    return {
        "run_id": outcome.run_id,
        "run_dir": str(outcome.run_dir),
        "epochs": epochs,
        "test_metrics": dict(outcome.result.test_metrics),
    }


def _group_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the CV run's MLflow run gets: ``mean_KEY`` and ``std_KEY`` of each fold metric.

    >>> _group_metrics({"mean": {"val_loss": 0.5}, "std_by_metric": {"val_loss": 0.1},
    ...                 "median_epoch": 3})
    {'mean_val_loss': 0.5, 'std_val_loss': 0.1, 'median_epoch': 3}
    """
    out: dict[str, Any] = {f"mean_{k}": v for k, v in summary.get("mean", {}).items()}
    out |= {f"std_{k}": v for k, v in summary.get("std_by_metric", {}).items()}
    out["median_epoch"] = summary.get("median_epoch")
    return out


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
    atomic_write_text(run_dir.path / RunFiles.FOLDS_CSV, _folds_csv(summary))
    run_dir.write_result(summary | {"environment": capture_environment()})
    figures: dict[str, Path | bytes] = {}
    if plots and config.record.plots and results:
        from skier.plots import save_figure
        from skier.plots.search import plot_cv_figure

        path = run_dir.path / RunFiles.CV_CURVES_PNG
        save_figure(plot_cv_figure(results, metric=summary["metric"]), path)
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
        store.add_artifact(run_id, RunFiles.CONFIG, run_dir.config_path, "config")
        store.add_artifact(run_id, RunFiles.FOLDS_CSV, run_dir.path / RunFiles.FOLDS_CSV, "csv")
        store.add_artifact(run_id, RunFiles.RESULT, run_dir.result_json, "json")
        for figure in figures.values():
            if isinstance(figure, Path):
                store.add_artifact(run_id, figure.name, figure, "figure")
        if config.record.report:
            store.add_artifact(run_id, RunFiles.REPORT, run_dir.report_html, "report")


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
