"""MLflow: one MLflow run per fit, its params, per-epoch metrics (batched), tags and artifacts."""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skier.train.callbacks.trackers import StepSeries, TrackerLogger
from skier.train.state import TrainState

__all__ = ["MLflowLogger", "default_artifact_location"]

_BATCH_METRICS = 1000  # MlflowClient.log_batch's limits per call
_BATCH_PARAMS = 100
_PARAM_LENGTH = 6000


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment in a local SQLite store keeps its artifacts: ``mlartifacts``
    beside the database (as ``mlflow server`` does), not in the working directory.

    >>> default_artifact_location("sqlite:////tmp/runs/mlflow.db")
    '/tmp/runs/mlartifacts'
    >>> default_artifact_location("http://127.0.0.1:5000") is None
    True
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return str(Path(tracking_uri[len(prefix) :]).resolve().parent / "mlartifacts")


@contextmanager
def _quiet() -> Iterator[None]:
    # MLflow's own deprecation notices (e.g. about SQLAlchemy) are nothing a skier user can act
    # on; they stay out of the training's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _check_reachable(uri: str, timeout_s: float) -> None:
    """A tracking server's URL: its host and port take a connection within ``timeout_s``, or
    a one-line :class:`ConnectionError` now (not after MLflow's own minutes of retries)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the MLflow tracking server at {uri}: {exc}") from exc


def _last_steps(client: Any, run_id: str) -> dict[str, int]:
    """The last step of each metric the run has on the server: a session killed after a send
    and before it wrote its position sent more than the position says."""
    keys = client.get_run(run_id).data.metrics
    return {
        key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
        for key in keys
    }


class MLflowLogger(TrackerLogger):
    """Logs a fit as one MLflow run: ``params`` (a flat mapping, e.g. the flattened config),
    every epoch metric with ``step`` = epoch (and, with ``log_steps=True``, the lr of every
    optimizer step as ``lr_step``: off by default, as a local SQLite store takes a few hundred
    microseconds a point), sent with ``MlflowClient.log_batch`` at most every
    ``flush_every_s`` seconds; tags (the
    given ``tags`` plus ``skier.status`` and ``skier.stop_reason`` at the end), the final and
    best metrics, and ``artifacts`` (files) when it finishes; ``checkpoint`` (e.g. a run's
    ``checkpoints/best.pt``) is logged too, under ``checkpoints/``, when that file exists then.
    ``parent_run_id`` nests the run under another (cross-validation folds, tuning trials).
    ``resume_tag`` (a tag's key and value, plain letters, digits, ``._-``) continues the newest
    run of the experiment that has that tag, if there is one, and tags a new run with it (a
    resumed tuning study goes on in its MLflow run). A
    resumed fit with the same ``position_file`` continues the same MLflow run (see
    :mod:`~skier.train.callbacks.trackers`), and first reads the run's metric history from
    the server: a step the server already has (sent just before a kill, before the position
    was written) is not sent again.

    Everything that talks to MLflow runs on the logger's sender thread, so a slow or
    unreachable server never holds up training (a local store is opened before the first
    epoch, so that a kill never leaves it half made): a server's URL whose host and port take no
    connection within ``connect_timeout_s`` fails the logger at once (one line, noted in
    ``failure``); one that stops answering later is waited for at most ``finish_timeout_s``
    seconds at the end.

    ``tracking_uri`` is a tracking server's URL or a local store such as
    ``sqlite:///mlflow.db``; a new experiment in a SQLite store keeps its artifacts in
    ``mlartifacts`` beside the database (not in the working directory). Needs the
    ``mlflow-skinny`` (or ``mlflow``) package (``pip install 'skier[mlflow]'``).

    >>> fit(model, data, callbacks=[MLflowLogger("sqlite:///runs/mlflow.db")])  # doctest: +SKIP
    """

    name = "mlflow"
    module = "mlflow"
    extra = "mlflow"

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = "skier",
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        artifacts: Sequence[str | Path] = (),
        checkpoint: str | Path | None = None,
        parent_run_id: str | None = None,
        resume_tag: tuple[str, str] | None = None,
        artifact_location: str | None = None,
        log_steps: bool = False,
        connect_timeout_s: float = 5.0,
        position_file: str | Path | None = None,
        flush_every_s: float = 5.0,
        finish_timeout_s: float = 60.0,
        finish_at_fit_end: bool = True,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            params=params,
            position_file=position_file,
            flush_every_s=flush_every_s,
            finish_timeout_s=finish_timeout_s,
            finish_at_fit_end=finish_at_fit_end,
            echo=echo,
        )
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.artifacts = [Path(p) for p in artifacts]
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.parent_run_id = parent_run_id
        self.resume_tag = resume_tag
        self.artifact_location = artifact_location
        self.step_keys = self.step_keys if log_steps else ()
        self.connect_timeout_s = connect_timeout_s
        self.open_before_training = urlsplit(tracking_uri).scheme not in ("http", "https")
        self._client: Any = None
        self.run_id: str | None = None
        self._on_server: dict[str, int] = {}  # a resumed run's last step of each metric

    def _open(self, state: TrainState, position: Mapping[str, Any]) -> dict[str, Any]:
        _check_reachable(self.tracking_uri, self.connect_timeout_s)
        with _quiet():
            from mlflow.entities import Param, RunTag
            from mlflow.tracking import MlflowClient

            client = self._client = MlflowClient(tracking_uri=self.tracking_uri)
            self.run_id = position.get("run_id")
            if self.run_id is not None:  # a resumed fit: the same MLflow run goes on
                client.update_run(self.run_id, status="RUNNING")
                self._on_server = _last_steps(client, self.run_id)
                return {"run_id": self.run_id}
            found = client.get_experiment_by_name(self.experiment)
            where = self.artifact_location or default_artifact_location(self.tracking_uri)
            experiment_id = (
                found.experiment_id
                if found is not None
                else client.create_experiment(self.experiment, artifact_location=where)
            )
            if self.resume_tag is not None:  # e.g. a resumed study's group run goes on
                key, value = self.resume_tag
                found_runs = client.search_runs(
                    [experiment_id], f"tags.`{key}` = '{value}'", max_results=1,
                    order_by=["attributes.start_time DESC"],
                )  # fmt: skip
                if found_runs:
                    self.run_id = found_runs[0].info.run_id
                    client.update_run(self.run_id, status="RUNNING")
                    self._on_server = _last_steps(client, self.run_id)
                    return {"run_id": self.run_id}
            tags = dict(self.tags)
            if self.resume_tag is not None:
                tags[self.resume_tag[0]] = self.resume_tag[1]
            if self.parent_run_id is not None:
                tags["mlflow.parentRunId"] = self.parent_run_id
            run = client.create_run(experiment_id, tags=tags, run_name=self.run_name)
            self.run_id = run.info.run_id
            params = [Param(k, str(v)[:_PARAM_LENGTH]) for k, v in self.params.items()]
            for i in range(0, len(params), _BATCH_PARAMS):
                client.log_batch(self.run_id, params=params[i : i + _BATCH_PARAMS])
            if not params:
                client.log_batch(self.run_id, tags=[RunTag("skier.logger", "mlflow")])
        return {"run_id": self.run_id}

    def _send(self, rows: Sequence[Mapping[str, float]], steps: StepSeries) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, int(row["epoch"]))
            for row in rows
            for key, value in row.items()
            if key != "epoch"
        ]
        metrics += [
            Metric(f"{k}_step", v, now, s) for k, points in steps.items() for s, v in points
        ]
        if self._on_server:  # a resumed run: not what the server had before it was killed
            metrics = [m for m in metrics if m.step > self._on_server.get(m.key, -1)]
        with _quiet():
            for i in range(0, len(metrics), _BATCH_METRICS):
                self._client.log_batch(self.run_id, metrics=metrics[i : i + _BATCH_METRICS])

    def _close(
        self, tags: Mapping[str, str], summary: Mapping[str, float], files: list[Path]
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        last = int(self.position.get("epoch", 0))
        status = tags["status"]
        with _quiet():
            self._client.log_batch(
                self.run_id,
                metrics=[Metric(k, v, now, last) for k, v in summary.items()],
                tags=[RunTag(f"skier.{k}", v) for k, v in tags.items()],
            )
            for path in [*self.artifacts, *files]:
                if path.is_file():
                    self._client.log_artifact(self.run_id, str(path))
            if self.checkpoint is not None and self.checkpoint.is_file():
                self._client.log_artifact(self.run_id, str(self.checkpoint), "checkpoints")
            finished = {"failed": "FAILED", "interrupted": "KILLED"}.get(status, "FINISHED")
            self._client.set_terminated(self.run_id, finished)
