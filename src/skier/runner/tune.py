"""``skier tune``: every trial is a skier run (``kind="trial"``) linked to one ``tune`` run;
worker processes share one Optuna study through its storage::

    from skier.config.search import TuneConfig, load_space
    from skier.runner.tune import run_tune
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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from skier import __version__
from skier._io import atomic_write_text
from skier._live import display_mode
from skier.config import RunConfig, config_from_mapping, config_to_yaml
from skier.config.search import (
    SearchSpace,
    TuneConfig,
    set_config_values,
)
from skier.errors import ConfigError, TrainingError, did_you_mean
from skier.record import (
    SCHEMA_VERSION,
    RunDir,
    RunStore,
    capture_environment,
    new_run_id,
)
from skier.record.rundir import RunFiles
from skier.report import write_report
from skier.report.tables import trials_frame, tune_html, tune_text
from skier.runner._live_search import LiveTrials
from skier.runner._search import (
    Echo,
    _absolute_paths,
    _fmt,
    _store_url,
    default_workers,
)
from skier.runner.lifecycle import run_ending, run_name
from skier.runner.trackers import close_group_tracker, open_group_tracker, study_tag
from skier.runner.trackers import group_run_id as _nest
from skier.runner.trackers import trackers_ending as _ending
from skier.runner.training import RunOutcome, run_training
from skier.runner.workers import (
    _shares,
    _supervise,
    _tune_worker,
    _TuneTask,
    pruner_steps,
)
from skier.train.scoring import metric_name
from skier.train.setup import loop_keys

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TuneOutcome", "run_tune"]


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

    def plot(self) -> Figure:
        """The optimization history, parameter importances and parallel coordinates
        (:func:`skier.plots.search.plot_tune_figure`); a notebook shows the figure.

        >>> outcome.plot()   # doctest: +SKIP
        """
        from skier.plots.search import plot_tune_figure

        return plot_tune_figure(self)

    def __repr__(self) -> str:
        return f"TuneOutcome({tune_text(self.summary)}; {self.run_dir})"

    def _repr_html_(self) -> str:
        """The best trial and its parameters, then every trial, best first (notebooks)."""
        return tune_html(self.summary)

    def to_pandas(self) -> Any:
        """One row per trial: number, state, value, each parameter, epochs, run."""
        return trials_frame(self.summary)


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


def _check_objective(tune: TuneConfig, task_kind: str, config: RunConfig) -> None:
    """The objective (or cv_mean's metric) is a validation key a trial's run logs: loss, error
    and accuracy (classification), and ``train.metrics``."""
    metric = tune.metric if tune.objective == "cv_mean" else tune.objective
    what = "--metric" if tune.objective == "cv_mean" else "--objective"
    logged = loop_keys(
        classification=task_kind != "regression", validation=True, penalty=False,
        metrics=[metric_name(m) for m in config.train.metrics],
    )  # fmt: skip
    valid = sorted(k for k in logged if k.startswith("val_"))
    if metric in valid:
        return
    if task_kind == "regression" and metric in ("val_error", "val_accuracy"):
        raise ConfigError(f"{what} {metric!r} needs classification; use val_loss.")
    raise ConfigError(
        f"{what} must be cv_mean or a validation metric the run logs ({', '.join(valid)}); "
        f"got {metric!r}.{did_you_mean(metric, valid)} More metrics: train.metrics."
    )


def run_tune(
    config: RunConfig,
    space: SearchSpace,
    *,
    tune: TuneConfig | None = None,
    base_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    echo: Echo | None = None,
    progress: bool | Literal["auto", "on", "off"] = "auto",
) -> TuneOutcome:
    """Search ``space`` around ``config`` with Optuna; every trial is a recorded skier run.

    Writes ``OUT/<id>/`` with the study's journal (unless ``tune.storage`` names another
    storage), ``trials/`` (one run directory per trial), ``trials.csv``, ``best_config.yaml``
    (``skier train`` accepts it), figures, ``result.json`` and ``report.html``. In a notebook
    (``progress`` "auto" or "on") the trials show in one output as they finish, with the best.
    """
    from skier.search._optuna import optuna  # without tqdm's warning in a notebook

    live = display_mode(progress) == "live"
    verbosity = optuna.logging.get_verbosity()
    if live:  # the live display shows the trials: Optuna's INFO lines would print beside it
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _run_tune(config, space, tune, base_dir, out_dir, store_url, echo, live)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _run_tune(
    config: RunConfig,
    space: SearchSpace,
    tune: TuneConfig | None,
    base_dir: str | Path | None,
    out_dir: str | Path | None,
    store_url: str | None,
    echo: Echo | None,
    shows_live: bool,
) -> TuneOutcome:
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
    _check_objective(tune, task_kind, config)
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
    space_yaml = yaml.safe_dump(space.to_dict(), sort_keys=False)
    atomic_write_text(run_dir.path / RunFiles.SPACE_YAML, space_yaml)
    study_record = {
        "study": study_name,
        "storage": str(Path(storage_url).resolve())
        if storage_kind(storage_url) == "file"
        else _safe_storage(storage_url),
        "tune": tune.model_dump(mode="json", exclude={"storage", "study", "trials"}),
    }
    atomic_write_text(run_dir.path / RunFiles.STUDY_JSON, json.dumps(study_record, indent=2) + "\n")
    storage = open_storage(
        storage_url,
        heartbeat_s=tune.heartbeat_s,
        grace_s=tune.grace_period_s,
        max_retry=tune.max_retry,
    )
    epochs = pruner_steps(tune, config.train.epochs)
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
    name = run_name(config, "tune")
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
    tag = study_tag(str(study_record["storage"]), study_name)  # a resumed study: its MLflow run
    group = open_group_tracker(config, run_dir, run_id=run_id, kind="tune", name=name,
                               task=task_kind, store_url=url, echo=say, resume_tag=tag)  # fmt: skip
    resumed = len(study.get_trials(deepcopy=False))
    say(
        f"tune {run_id} → {run_dir.path}\nstudy {study_name!r} in {_safe_storage(storage_url)}"
        + (f" (resumed: {resumed} trials already)" if resumed else "")
        + f"\n{tune.method} search, {n_trials} trials on {workers} worker(s), "
        f"objective {tune.objective}"
        + (f" ({metric})" if tune.objective == "cv_mean" else "")
        + (f" (mean over seeds {tune.seeds})" if tune.seeds is not None else "")
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
            tracker_parent=_nest(group),
        )
        for i, share in enumerate(_shares(n_trials, workers))
        if share > 0
    ]
    live = LiveTrials(study, n_trials + resumed, metric, direction) if shows_live else None
    started = time.perf_counter()
    notes: list[str] = []
    try:
        with run_ending(url, run_id, started=started), _ending([group], run_dir):
            if len(tasks) == 1:
                _tune_worker(tasks[0], [live.on_trial] if live is not None else [])
            elif tasks:
                notes = _supervise(tasks, study, tune, say, live.refresh if live else None)
        if live is not None:
            live.refresh("done")
    finally:
        close_storage(storage)
    seconds = time.perf_counter() - started
    _fail_orphans(url, run_id)
    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        return _finish_tune(
            config, space, tune, study, run_dir, url, storage_url, settings, seconds, notes,
            base, name, say, n_trials, group,
        )  # fmt: skip
    finally:
        close_storage(storage)


def _fail_orphans(url: str, tune_id: str) -> None:
    """Runs of this search still ``running`` once every worker has exited lost their worker."""
    with RunStore(url) as store:
        for kind in ("trial", "cv", "seeds"):
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
    group: Any = None,  # the tune run's MLflow logger, if any
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
            run_dir.path / RunFiles.BEST_CONFIG_YAML, config_to_yaml(best_config)
        )
        summary["best_config"] = str(best_path)
    atomic_write_text(run_dir.path / RunFiles.TRIALS_CSV, _trials_csv(summary))
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
            tracker_parent=_nest(group),
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
            (RunFiles.CONFIG, run_dir.config_path),
            (RunFiles.SPACE_YAML, run_dir.path / RunFiles.SPACE_YAML),
            (RunFiles.TRIALS_CSV, run_dir.path / RunFiles.TRIALS_CSV),
            (RunFiles.RESULT, run_dir.result_json),
        ):
            kind = {"yaml": "config", "csv": "csv", "json": "json"}[label.rsplit(".", 1)[1]]
            store.add_artifact(run_id, label, path, kind)
        if best_path is not None:
            store.add_artifact(run_id, RunFiles.BEST_CONFIG_YAML, best_path, "config")
        for path in figures.values():
            store.add_artifact(run_id, path.name, path, "figure")
        if config.record.report:
            store.add_artifact(run_id, RunFiles.REPORT, run_dir.report_html, "report")
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
    best_metric = {f"best_{summary['metric']}": best["value"]} if best else {}
    close_group_tracker(group, run_dir, status, stop_reason=error,
                        metrics=best_metric | {"trials": len(summary["trials"])})  # fmt: skip
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
        ("Optimization history (line: best so far)", RunFiles.OPTIMIZATION_HISTORY_PNG,
         plot_optimization_history(summary).figure),
    ]  # fmt: skip
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    if summary["importances"]:
        items.append(
            ("Parameter importance (fANOVA)", RunFiles.PARAM_IMPORTANCES_PNG,
             plot_param_importances(summary).figure)
        )  # fmt: skip
    if complete and summary.get("space"):
        items.append(
            ("Parallel coordinates (colour: objective)", RunFiles.PARALLEL_COORDINATES_PNG,
             plot_parallel_coordinates(summary).figure)
        )  # fmt: skip
        items.append(("Slices: objective against each parameter", RunFiles.SLICES_PNG,
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
                "train the best": f"skier train {run_dir.path / RunFiles.BEST_CONFIG_YAML}",
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
