"""The trackers a recorded run copies itself to (``record.loggers``): built, ended, recorded.

The loggers themselves are callbacks (:mod:`skier.train.callbacks.trackers`); this module only
says, for a run of the runner, where they write (the run directory's ``tensorboard/`` folder,
``sqlite:///DIR/mlflow.db`` unless ``record.mlflow_uri`` names a store), what they are given
(the flattened config, the run's id, kind and name), and which files they get at the end.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skier.config import RunConfig, config_to_yaml
from skier.errors import StoreError
from skier.record import RunDir
from skier.record.rundir import RunFiles
from skier.train.callbacks.checkpoint import Checkpoint
from skier.train.callbacks.trackers import TrackerLogger, flatten_params

__all__ = [
    "close_group_tracker",
    "finish_trackers",
    "group_run_id",
    "mlflow_uri",
    "open_group_tracker",
    "study_tag",
    "tracker_loggers",
    "trackers_ending",
]

#: The files a tracker gets once the run has written them (those that exist).
_ARTIFACTS = (RunFiles.CONFIG, RunFiles.RESULT, RunFiles.METRICS, RunFiles.REPORT,
              RunFiles.LEARNING_CURVES_PNG)  # fmt: skip


def mlflow_uri(config: RunConfig, root: Path, store_url: str | None = None) -> str:
    """``record.mlflow_uri``, else a SQLite store beside skier's own SQLite store (so the folds
    of a cross-validation, whose folders are nested, share their parent's), else beside the
    run directories.

    >>> from skier.config import RunConfig
    >>> mlflow_uri(RunConfig(), Path("/tmp/runs"))
    'sqlite:////tmp/runs/mlflow.db'
    >>> mlflow_uri(RunConfig(), Path("/tmp/runs/cv1/folds"), "sqlite:////tmp/runs/skier.db")
    'sqlite:////tmp/runs/mlflow.db'
    """
    if config.record.mlflow_uri:
        return config.record.mlflow_uri
    prefix = "sqlite:///"
    if store_url is not None and store_url.startswith(prefix) and store_url != prefix:
        root = Path(store_url[len(prefix) :]).parent
    return f"sqlite:///{Path(root).resolve() / RunFiles.MLFLOW_DB}"


def tracker_loggers(
    config: RunConfig,
    run_dir: RunDir,
    *,
    run_id: str,
    kind: str,
    name: str,
    store_url: str | None = None,
    echo: Callable[[str], None] | None = None,
    mlflow_parent: str | None = None,
    mlflow_resume_tag: tuple[str, str] | None = None,
) -> list[TrackerLogger]:
    """The loggers ``record.loggers`` names, for this run directory (none by default).
    ``mlflow_parent`` nests the MLflow run under a group's (a cv fold under its cv run);
    ``mlflow_resume_tag`` continues the MLflow run with that tag (a resumed study's)."""
    if not config.record.loggers:
        return []
    from skier.train.callbacks.mlflow_logger import MLflowLogger
    from skier.train.callbacks.tensorboard_logger import TensorBoardLogger

    params = flatten_params(config.model_dump(mode="json"))
    position = run_dir.path / RunFiles.TRACKERS_JSON
    common: dict[str, Any] = {
        "params": params,
        "position_file": position,
        "finish_at_fit_end": False,  # finish_trackers does, once the run's files exist
        "echo": echo,
    }
    out: list[TrackerLogger] = []
    for logger in dict.fromkeys(config.record.loggers):  # each once, in the order given
        if logger == "tensorboard":
            out.append(TensorBoardLogger(run_dir.path / RunFiles.TENSORBOARD,
                                         config_text=config_to_yaml(config), **common))  # fmt: skip
        else:
            tags = {"skier.run_id": run_id, "skier.kind": kind}
            uri = mlflow_uri(config, run_dir.path.parent, store_url)
            experiment = config.record.mlflow_experiment
            best = run_dir.checkpoints / Checkpoint.BEST_FILE
            checkpoint = best if config.record.mlflow_log_checkpoint else None
            out.append(MLflowLogger(uri, experiment=experiment, run_name=name, tags=tags,
                                    parent_run_id=mlflow_parent, checkpoint=checkpoint,
                                    # a run killed before its position held the MLflow
                                    # run's id finds it again by its skier run id
                                    resume_tag=mlflow_resume_tag or ("skier.run_id", run_id),
                                    **common))  # fmt: skip
    return out


def finish_trackers(
    loggers: Sequence[TrackerLogger],
    run_dir: RunDir,
    status: str,
    stop_reason: str | None = None,
) -> dict[str, str]:
    """End each logger's run with ``status`` and the run's files; what each logger did: ``ok``
    or its failure (for ``result.json``)."""
    files = run_files(run_dir)
    for logger in loggers:
        logger.finish(status, stop_reason=stop_reason, artifacts=files)
    return logger_record(loggers)


def run_files(run_dir: RunDir) -> list[Path]:
    """What a tracker gets at the end: the run's record files, then every figure (``*.png``:
    the learning curves and the diagnostics) in the run directory; those that exist."""
    named = [run_dir.path / name for name in _ARTIFACTS]
    figures = sorted(p for p in run_dir.path.glob("*.png") if p not in named)
    return [p for p in [*named, *figures] if p.is_file()]


def logger_record(loggers: Sequence[TrackerLogger]) -> dict[str, str]:
    """``{"mlflow": "ok", "tensorboard": "failed: ..."}``: what the run record notes."""
    return {lg.name: "ok" if lg.failure is None else f"failed: {lg.failure}" for lg in loggers}


@contextmanager
def trackers_ending(loggers: Sequence[TrackerLogger | None], run_dir: RunDir) -> Iterator[None]:
    """A fit that raises ends the trackers' runs too (``failed``, or ``interrupted`` on
    Ctrl-C), so that no MLflow run is left ``RUNNING``; then the error goes on. ``None``
    entries (a group run without MLflow) are skipped."""
    present = [lg for lg in loggers if lg is not None]
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, Exception | KeyboardInterrupt):
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            finish_trackers(present, run_dir, status, stop_reason=str(exc) or None)
        raise


def open_group_tracker(
    config: RunConfig,
    run_dir: RunDir,
    *,
    run_id: str,
    kind: str,
    name: str,
    task: str,
    store_url: str | None = None,
    mlflow_parent: str | None = None,
    resume_tag: tuple[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrackerLogger | None:
    """The MLflow run of a group run (``cv``, ``tune``, ``seeds``), when ``record.loggers``
    names mlflow: opened now, so that its members (folds, trials, seeds) nest under it with
    ``mlflow.parentRunId`` = its ``run_id``; ended by :func:`close_group_tracker`. With
    ``resume_tag`` the newest MLflow run with that tag goes on, if any (a resumed study)."""
    if "mlflow" not in config.record.loggers:
        return None
    import torch

    from skier.history import History
    from skier.train.state import TrainState

    only = config.model_copy(
        update={"record": config.record.model_copy(update={"loggers": ["mlflow"]})}
    )
    (logger,) = tracker_loggers(
        only,
        run_dir,
        run_id=run_id,
        kind=kind,
        name=name,
        store_url=store_url,
        echo=echo,
        mlflow_parent=mlflow_parent,
        mlflow_resume_tag=resume_tag,
    )
    state = TrainState(torch.nn.Module(), epochs=0, task=task, history=History(),
                       available_keys=frozenset())  # fmt: skip
    logger.on_fit_start(state)
    logger.wait_opened(logger.finish_timeout_s)  # its members need its run id
    return logger


def study_tag(storage: str, study: str) -> tuple[str, str]:
    """The tag that finds a tuning study's MLflow run again when the study is resumed (in
    another ``skier tune`` run): a hash of where the study is stored and its name.

    >>> study_tag("/tmp/runs/t1/study.journal", "lr-study")[0]
    'skier.study'
    """
    return "skier.study", hashlib.sha256(f"{storage}\n{study}".encode()).hexdigest()[:32]


def group_run_id(logger: TrackerLogger | None) -> str | None:
    """The MLflow run id a group's members nest under (None: no MLflow, or it failed)."""
    if logger is None or not logger.wait_opened(0):
        return None
    return getattr(logger, "run_id", None)


def close_group_tracker(
    logger: TrackerLogger | None,
    run_dir: RunDir,
    status: str,
    *,
    stop_reason: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """End a group's MLflow run with ``status``, its summary ``metrics`` (the finite numbers
    among them, e.g. the cv mean of each metric as ``mean_val_loss``) and its files."""
    if logger is None:
        return {}
    numbers = {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    files = run_files(run_dir)
    logger.finish(status, stop_reason=stop_reason, artifacts=files, metrics=numbers)
    return logger_record([logger])


def export_to_tracker(
    view: Any,
    to: str,
    *,
    mlflow_uri: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Send a recorded run (a :class:`skier.report.views.RunView`) to ``to`` (``tensorboard``
    or ``mlflow``), every epoch as live logging would have: its rows, its per-step lr
    (``lr.csv``), its flattened config, tags and files. TensorBoard writes into the run's
    ``tensorboard/`` folder and shares the live logger's position, so epochs it already has are
    not written twice; MLflow makes a new MLflow run in ``mlflow_uri`` (default: beside the run
    directories). Returns what :func:`logger_record` says."""
    import torch

    from skier.history import History
    from skier.train.state import TrainState

    if view.run_dir is None:
        raise StoreError(f"run {view.id} has no run directory to export from; its folder is gone.")
    run_dir = RunDir(view.run_dir)
    config = RunConfig.model_validate(view.config) if view.config else RunConfig()
    record = config.record.model_copy(update={"loggers": [to]})
    if mlflow_uri is not None:
        record = record.model_copy(update={"mlflow_uri": mlflow_uri})
    config = config.model_copy(update={"record": record})
    (logger,) = tracker_loggers(
        config, run_dir, run_id=view.id, kind=view.kind, name=view.name, echo=echo
    )
    if to == "mlflow":
        logger.position_file = None  # a new MLflow run for each export
        logger.resume_tag = None  # type: ignore[attr-defined]  # (an MLflowLogger)
    logger.finish_timeout_s = 3600.0  # an export is nothing but its sends: wait for them
    history = History(rows=[dict(r) for r in view.history.rows])
    lr_csv = run_dir.path / RunFiles.LR_CSV
    if lr_csv.is_file():
        lines = lr_csv.read_text().strip().splitlines()[1:]
        history.steps["lr"] = [float(line.split(",")[1]) for line in lines]
    keys = frozenset(history.keys)
    state = TrainState(torch.nn.Module(), epochs=len(history), task=str(view.result.get("task")),
                       history=history, available_keys=keys)  # fmt: skip
    state.epoch = len(history)
    logger.on_fit_start(state)  # sends every epoch past the logger's position
    stop = view.result.get("stop_reason")
    return finish_trackers([logger], run_dir, view.status, stop if isinstance(stop, str) else None)
