"""Whole runs: config → data → model → fit (+ callbacks) → record → plots → report.

This is what ``skier train`` and ``skier demo`` call, and what a Python user calls to get the
same run directory and store row::

    from skier.config import load_config
    from skier.runner import run_training
    outcome = run_training(load_config("examples/digits_mlp.yaml"))
    print(outcome.run_dir, outcome.result.test_metrics)

Everything is validated before the run directory or the store row is created; once they exist,
a failure marks the run ``failed`` (``interrupted`` on Ctrl-C) and keeps its last good
checkpoint and its per-epoch record. Before any data is read, one error lists every problem
found in the config, its data files and its monitored keys (:func:`check_run_config`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from skier import __version__
from skier._io import atomic_write_text
from skier._live import display_mode
from skier.config import (
    RunConfig,
    config_from_mapping,
    config_to_yaml,
)
from skier.data import DataBundle, load_data
from skier.errors import CheckpointError, ConfigError, TrainingError
from skier.models import build_model, count_parameters, initialize
from skier.record import (
    SCHEMA_VERSION,
    RunDir,
    RunStore,
    capture_environment,
    json_safe,
    new_run_id,
)
from skier.record.rundir import RunFiles
from skier.runner.lifecycle import resolve_store_url, result_fields, run_ending, run_name
from skier.runner.preflight import (
    check_run_config,
    config_sections,
    monitoring_callbacks,
    preflight,
    pretrained_path,
    raise_problems,
)
from skier.runner.recording import EpochLines, RecordLogger
from skier.runner.trackers import (
    finish_trackers,
    logger_record,
    tracker_loggers,
    trackers_ending,
)
from skier.train import (
    Callback,
    Checkpoint,
    FitResult,
    LiveDisplay,
    ProgressBar,
    check_fit,
    fit,
)
from skier.train.callbacks.gradient_flow import GradientFlow
from skier.train.callbacks.sharpness import SharpnessTracker
from skier.train.checkpoint import load_checkpoint, load_model_weights
from skier.train.losses import loss_options, model_output_size, resolve_loss

if TYPE_CHECKING:  # single-process runs never import the distributed module
    from skier.train.distributed import Distributed

__all__ = ["EpochLines", "RecordLogger", "RunOutcome", "check_run_config", "run_training"]

# Settings a resumed run may change: how long it trains and how it reports, nothing that
# would make the resumed run differ from the one that was interrupted.
# A tracker added on resume gets the whole history first (see skier.train.callbacks.trackers).
RESUMABLE_CHANGES = ("train.epochs", "train.progress", "record.plots", "record.report",
                     "record.loggers", "record.mlflow_uri", "record.mlflow_experiment",
                     "record.mlflow_log_checkpoint", "record.flush_every_s",
                     "checkpoint.every_s")  # fmt: skip


@dataclass
class RunOutcome:
    """Where a run was written and how it ended."""

    run_id: str
    run_dir: Path
    store_url: str
    status: str
    result: FitResult
    summary: dict[str, Any] = field(default_factory=dict)


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _resume_config(run_dir: RunDir, requested: RunConfig | None) -> RunConfig:
    """The run's saved config; a requested one may differ only in :data:`RESUMABLE_CHANGES`."""
    if not run_dir.config_path.is_file():
        raise CheckpointError(f"resume directory {str(run_dir.path)!r} has no config.yaml.")
    saved = config_from_mapping(yaml.safe_load(run_dir.config_path.read_text()), "saved config")
    if requested is None:
        return saved
    old, new = _flat(saved.model_dump(mode="json")), _flat(requested.model_dump(mode="json"))
    changed = [k for k in new if new[k] != old.get(k) and k not in RESUMABLE_CHANGES]
    if new["train.epochs"] != old["train.epochs"] and saved.schedule.name == "cosine":
        changed.append("train.epochs")  # the cosine period is the planned number of epochs
    if changed:
        raise ConfigError(
            [
                f"{k} must match the run being resumed ({old.get(k)!r}); got {new[k]!r}."
                for k in changed
            ]
        )
    return requested


def _callbacks(
    config: RunConfig,
    run_dir: RunDir,
    progress: bool | Literal["auto"],
    epoch_lines: Callable[[str], None] | None,
    data: DataBundle | None = None,
) -> list[Any]:
    cbs = monitoring_callbacks(config.early_stopping, config.checkpoint, run_dir.checkpoints)
    diag = config.diagnostics
    if diag.gradient_flow_every > 0:  # off: nothing is added, so nothing runs per batch
        cbs.append(GradientFlow(diag.gradient_flow_every, layers=diag.gradient_flow_layers))
    if diag.sharpness_every is not None:  # the same: off adds nothing
        if data is None:
            raise ValueError("diagnostics.sharpness_every needs the run's data to measure on")
        cbs.append(
            SharpnessTracker(
                data.train, every=diag.sharpness_every, subset=diag.sharpness_subset,
                max_iterations=diag.sharpness_iterations, tolerance=diag.sharpness_tolerance,
                warm_iterations=diag.sharpness_warm_iterations,
                seed=config.train.seed,
            )
        )  # fmt: skip
    shows = display_mode(_progress(config, progress))
    if shows == "live":
        cbs.append(LiveDisplay())
    elif shows == "bar":
        cbs.append(ProgressBar(True))
    elif epoch_lines is not None:
        cbs.append(EpochLines(epoch_lines))
    return cbs


def _progress(config: RunConfig, progress: bool | Literal["auto"]) -> bool | Literal["auto"]:
    """The caller's choice, unless the config turns progress off."""
    return False if config.train.progress == "off" else progress


def _build(
    config: RunConfig,
    base_dir: Path | None,
    *,
    resuming: bool = False,
    data: DataBundle | None = None,
) -> tuple[DataBundle, Any, float, dict[str, Any]]:
    """Data, the initialised model, the seconds both took and the ``init`` record.

    A resumed run takes every weight from its checkpoint, so it applies neither the scheme nor
    ``init.pretrained`` (whose file need not exist any more).
    """
    import torch  # local: seeding the model's initialisation is a run-level concern

    t0 = time.perf_counter()
    if data is None:
        data = load_data(config.data, base_dir=base_dir)
    init = config.init
    path, weights = None, None
    if init.pretrained is not None and not resuming:
        path = pretrained_path(init.pretrained, base_dir)
        weights = load_model_weights(path)  # weights_only=True: a checkpoint or a state dict
    # Seeded once, before the model is built and initialised: a run is reproducible from
    # train.seed, and fit() re-seeds itself, so drawing the init changes nothing after it.
    torch.manual_seed(config.train.seed)
    model = build_model(
        config.model,
        input_shape=data.input_shape,
        output_size=model_output_size(
            resolve_loss(config.train.loss, data.task, options=loss_options(config.train)),
            data.task,
            data.output_size,
        ),  # one logit for binary cross-entropy on two classes
        categorical_cardinalities=data.categorical_cardinalities,
    )
    if resuming:
        record: dict[str, Any] = {
            "scheme": init.scheme,
            "pretrained": init.pretrained,
            "resumed": "not applied: the weights come from the checkpoint",
        }
    else:
        record = initialize(model, init, pretrained=weights).to_dict()
        if path is not None:
            record["pretrained"] = str(path)
    return data, model, time.perf_counter() - t0, record


def build_initial_model(config: RunConfig, data: DataBundle, base_dir: Path | None = None) -> Any:
    """The model a new run of ``config`` on ``data`` starts from: seeded, built, initialised and
    given its ``init.pretrained`` weights, as :func:`run_training` does."""
    return _build(config, base_dir, data=data)[1]


def _choose_lr(
    config: RunConfig,
    model: Any,
    data: DataBundle,
    progress: bool | Literal["auto"],
    say: Callable[[str], None],
) -> Any:
    """``optim.lr: auto``: the LR range test on the initialised model, whose weights it leaves
    exactly as they were, so the run starts from the same point it would have anyway."""
    from skier.diagnostics.lr_range import lr_range_test

    settings = config.lr_find
    optim = config.optim.model_copy(update={"lr": settings.start_lr})
    found = lr_range_test(
        model,
        data,
        optim_config=optim,
        train_config=config.train,
        settings=settings,
        task=data.task,
        # As the training's display: "auto" means a notebook's or a terminal's only.
        progress=_progress(config, progress),
    )
    if found.lr is None:
        raise TrainingError(
            f"optim.lr: auto could not choose an lr: the LR range test's {settings.suggestion!r} "
            f"rule found none in {len(found.lrs)} steps. Give optim.lr a number, or widen "
            "lr_find (start_lr, end_lr, num_steps)."
        )
    say(
        f"lr-find: optim.lr = {found.lr:.3g} ({settings.suggestion}; "
        + ", ".join(f"{k} {v:.3g}" for k, v in found.suggestions.items() if v is not None)
        + ")"
    )
    return found


def _write_lr_find(
    run_dir: RunDir, store: RunStore, run_id: str, found: Any, *, plots: bool
) -> None:
    from skier.plots import save_figure
    from skier.plots.lr_range import plot_lr_range

    path = run_dir.path / RunFiles.LR_FIND_JSON
    atomic_write_text(path, json.dumps(json_safe(found.to_dict()), indent=2, allow_nan=False))
    store.add_artifact(run_id, RunFiles.LR_FIND_JSON, path, "json")
    if plots:
        png = run_dir.path / RunFiles.LR_FIND_PNG
        save_figure(plot_lr_range(found).figure, png)
        store.add_artifact(run_id, RunFiles.LR_FIND_PNG, png, "figure")


def run_training(
    config: RunConfig,
    *,
    base_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    resume_dir: str | Path | None = None,
    store_url: str | None = None,
    progress: bool | Literal["auto"] = "auto",
    echo: Callable[[str], None] | None = None,
    epoch_lines: bool = False,
    data: DataBundle | None = None,
    callbacks: Sequence[Callback] = (),
    kind: str = "train",
    parent_id: str | None = None,
    tracker_parent: str | None = None,
    distributed: Distributed | None = None,
    run_id: str | None = None,
) -> RunOutcome:
    """Train as ``config`` says and record everything in a run directory and the store.

    ``out_dir`` is the folder that holds run directories (default ``config.record.dir``);
    ``resume_dir`` continues an interrupted run from its last checkpoint, in the same directory
    and store row. ``echo`` receives one-line messages (the CLI prints them); with
    ``epoch_lines`` it also gets a line per epoch whenever no progress bar is shown.

    ``distributed`` (every rank calls ``run_training`` with its process group) trains
    data-parallel; rank 0 alone writes the run directory, store row, checkpoints, figures and
    report, prints and shows progress. ``run_id`` names a new run (rank 0's is used).
    """
    main = distributed is None or distributed.is_main
    say = echo if echo is not None and main else (lambda _msg: None)
    if not main:  # no bars or epoch lines from the other ranks
        progress, epoch_lines = False, False
    base = Path(base_dir) if base_dir is not None else None
    resume = RunDir(resume_dir) if resume_dir is not None else None
    if resume is not None:
        config = _resume_config(resume, config)
        last = resume.checkpoints / Checkpoint.LAST_FILE
        if not last.is_file():
            raise CheckpointError(
                f"resume directory {str(resume.path)!r} has no checkpoints/{last.name} to resume "
                "from."
            )
        state = load_checkpoint(last)  # read once, handed to fit
        checkpoint: dict[str, Any] | None = state
        root = resume.path.parent
        from_epoch = int(state["epoch"])
    else:
        checkpoint, from_epoch = None, 0
        root = Path(out_dir) if out_dir is not None else Path(config.record.dir)
    url = resolve_store_url(store_url, config.record.store, root)

    # Validate everything before anything is written: first what needs no data, all at once.
    if data is None:
        raise_problems([], *preflight(config_sections(config), base, resuming=resume is not None))
    data, model, data_seconds, init_record = _build(
        config, base, resuming=resume is not None, data=data
    )
    lr_found = None
    if config.optim.lr == "auto":
        # A resumed run's saved config already holds the number chosen when it started.
        lr_found = _choose_lr(config, model, data, progress, say) if main else None
        lr = lr_found.lr if lr_found is not None else None
        lr = distributed.broadcast(lr) if distributed is not None else lr  # rank 0's choice
        config = config.model_copy(update={"optim": config.optim.model_copy(update={"lr": lr})})
    run_id = resume.run_id if resume is not None else run_id or new_run_id()
    if distributed is not None:
        run_id = distributed.broadcast(run_id)
    run_dir = resume or RunDir(root / run_id)
    extra = list(callbacks)
    callbacks = _callbacks(config, run_dir, progress, say if epoch_lines else None, data=data)
    fit_kwargs: dict[str, Any] = {
        # The runner adds its own bar (CLI: --quiet, CI); fit() must not add another.
        "train_config": config.train.model_copy(update={"progress": "off"}),
        "optim_config": config.optim,
        "schedule": config.schedule,
        "regularization": config.regularization,
    }
    check_fit(model, data, callbacks=[*callbacks, *extra], distributed=distributed, **fit_kwargs)
    name = run_name(config)
    trackers = []  # built here: a missing package is refused before the run is created
    if main:
        trackers = tracker_loggers(
            config,
            run_dir,
            run_id=run_id,
            kind=kind,
            name=name,
            store_url=url,
            echo=say,
            mlflow_parent=tracker_parent,
        )
    if not main:
        callbacks += [RecordLogger(None, run_id, run_dir), *extra]
        result = fit(model, data, callbacks=callbacks, resume=checkpoint, distributed=distributed,
                     **fit_kwargs)  # fmt: skip
        status = _status(result)
        return RunOutcome(run_id, run_dir.path, url, status, result)
    store = RunStore(url).open()

    if resume is None:
        run_dir = RunDir.create(root, run_id)
        store.create_run(
            name,
            config.model_dump(mode="json"),
            run_dir.path,
            kind=kind,
            task=data.task,
            run_id=run_id,
            parent_id=parent_id,
        )
    else:
        store.resume_run(run_id, from_epoch=from_epoch)
    run_dir.write_config(config_to_yaml(config))
    say(f"run {run_id} → {run_dir.path}")
    if lr_found is not None:
        _write_lr_find(run_dir, store, run_id, lr_found, plots=config.record.plots)
    recorder = RecordLogger(store, run_id, run_dir, flush_every_s=config.record.flush_every_s)
    callbacks.append(recorder)
    callbacks.extend([*trackers, *extra])
    started = time.perf_counter()
    with (
        run_ending(store, run_id, started=started),
        trackers_ending(trackers, run_dir),
        recorder.flushed(),
    ):
        result = fit(model, data, callbacks=callbacks, resume=checkpoint, distributed=distributed,
                     **fit_kwargs)  # fmt: skip
    status = _status(result)
    summary = _summary(
        config, data, model, result, run_id, name, status, data_seconds, init=init_record
    )
    lr_json = run_dir.path / RunFiles.LR_FIND_JSON
    if lr_json.is_file():  # optim.lr: auto (also when this run was resumed)
        summary["lr_find"] = json.loads(lr_json.read_text())
    if trackers:  # which tracker failed, if one did (training went on without it)
        summary["loggers"] = logger_record(trackers)
    _write_outputs(config, run_dir, store, run_id, result, summary, data.info)
    ended = finish_trackers(trackers, run_dir, status, result.stop_reason)
    if trackers and ended != summary["loggers"]:  # one failed while it sent the files
        summary["loggers"] = ended
        run_dir.write_result(summary)
    store.finish_run(
        run_id,
        status,
        **result_fields(result),
        error=result.stop_reason if status == "failed" else None,
    )
    store.close()
    return RunOutcome(run_id, run_dir.path, store.safe_url, status, result, summary)


def _status(result: FitResult) -> str:
    """``failed`` when the non-finite guard stopped the run (its last good weights are kept),
    ``stopped`` for any other stop (early stopping, pruning), else ``completed``."""
    if result.diverged:
        return "failed"
    return "stopped" if result.stop_reason else "completed"


def _summary(
    config: RunConfig,
    data: DataBundle,
    model: Any,
    result: FitResult,
    run_id: str,
    name: str,
    status: str,
    data_seconds: float,
    *,
    init: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    history = result.history
    epoch_times = [t for t in history.column("epoch_time") if t == t]
    final = dict(history.rows[-1]) if history.rows else {}
    return {
        "run_id": run_id,
        "name": name,
        "status": status,
        "task": result.task,
        "epochs_done": result.epochs_done,
        "epochs_planned": config.train.epochs,
        "monitor": result.monitor,
        "best_epoch": result.best_epoch,
        "best_value": result.best_value,
        "stop_reason": result.stop_reason,
        "restored": result.restored,
        "final_metrics": final,
        "test_metrics": result.test_metrics,
        "timings": {
            "data_s": data_seconds,
            "fit_s": result.duration_s,
            "mean_epoch_s": sum(epoch_times) / len(epoch_times) if epoch_times else None,
        },
        "model": {"class": type(model).__name__, "parameters": count_parameters(model)},
        "init": dict(init) if init is not None else None,
        "data": {"name": data.name, **{k: v for k, v in data.info.items() if k != "preprocessing"}},
        "checkpoints": {k: str(v) for k, v in result.checkpoints.items()},
        "skier_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "environment": capture_environment(),
    }


def _write_outputs(
    config: RunConfig,
    run_dir: RunDir,
    store: RunStore,
    run_id: str,
    result: FitResult,
    summary: dict[str, Any],
    data_info: dict[str, Any],
) -> None:
    run_dir.write_metrics(result.history)
    run_dir.write_result(summary)
    if "preprocessing" in data_info:
        # What was fitted on the training split (means, stds, vocabularies): what a later
        # prediction on new data needs, kept beside the checkpoints rather than in result.json.
        path = run_dir.path / RunFiles.PREPROCESSING_JSON
        atomic_write_text(path, json.dumps(json_safe(data_info["preprocessing"]), indent=2))
        store.add_artifact(run_id, RunFiles.PREPROCESSING_JSON, path, "json")
    store.add_artifact(run_id, RunFiles.CONFIG, run_dir.config_path, "config")
    store.add_artifact(run_id, RunFiles.METRICS, run_dir.metrics_csv, "csv")
    store.add_artifact(run_id, RunFiles.RESULT, run_dir.result_json, "json")
    for path in result.checkpoints.values():
        store.add_artifact(run_id, f"checkpoints/{path.name}", path, "checkpoint")
    lrs = result.history.steps.get("lr", [])
    if lrs:  # the lr actually used at every optimizer step
        lines = ["step,lr", *(f"{i},{lr!r}" for i, lr in enumerate(lrs, 1))]
        atomic_write_text(run_dir.path / RunFiles.LR_CSV, "\n".join(lines) + "\n")
        store.add_artifact(run_id, RunFiles.LR_CSV, run_dir.path / RunFiles.LR_CSV, "csv")
    # matplotlib and the report are imported where they are used, at the end: not on the way
    # to epoch 1, and not at all by a run with plots, report and per-step series off
    if config.record.plots and result.history.rows:
        from skier.plots import plot_learning_figure, save_figure

        figure = plot_learning_figure(result)
        save_figure(figure, run_dir.learning_curves_png)
        store.add_artifact(
            run_id, RunFiles.LEARNING_CURVES_PNG, run_dir.learning_curves_png, "figure"
        )
    diag = config.diagnostics
    if diag.gradient_flow_every > 0 or diag.sharpness_every is not None:
        _write_per_step_series(config, run_dir, store, run_id, result)
    if config.record.report:
        from skier.report import write_run_report

        # Every section the run's data allows (curves, lr schedule, gradient flow, sharpness,
        # lr_find).
        write_run_report(run_dir.path, store=store)
        store.add_artifact(run_id, RunFiles.REPORT, run_dir.report_html, "report")


def _write_per_step_series(
    config: RunConfig, run_dir: RunDir, store: RunStore, run_id: str, result: FitResult
) -> None:
    """The per-step series recorded during training (gradient flow, sharpness): csv and plot."""
    from skier.plots import save_figure
    from skier.plots.gradient_flow import gradient_flow_series, plot_gradient_flow_figure
    from skier.plots.sharpness_steps import plot_sharpness_steps_figure, sharpness_series

    diag = config.diagnostics
    per_step = (  # the per-step series recorded during training: (on, csv, its series, png, plot)
        (diag.gradient_flow_every > 0, RunFiles.GRADIENT_FLOW_CSV, gradient_flow_series,
         RunFiles.GRADIENT_FLOW_PNG, plot_gradient_flow_figure),
        (diag.sharpness_every is not None, RunFiles.SHARPNESS_STEPS_CSV, sharpness_series,
         RunFiles.SHARPNESS_STEPS_PNG, plot_sharpness_steps_figure),
    )  # fmt: skip
    for on, csv_name, series, png_name, plot in per_step:
        if not on:
            continue
        atomic_write_text(run_dir.path / csv_name, series(result.history).to_csv())
        store.add_artifact(run_id, csv_name, run_dir.path / csv_name, "csv")
        if config.record.plots:
            save_figure(plot(result), run_dir.path / png_name)
            store.add_artifact(run_id, png_name, run_dir.path / png_name, "figure")
