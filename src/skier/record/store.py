"""The run store: runs, their params, per-epoch metrics and artifacts in one SQL database.

SQLite by default (a file next to the run directories), PostgreSQL or any SQLAlchemy URL when
several machines share one store. Everything goes in and out as plain Python types.

>>> import tempfile
>>> store = RunStore(default_store_url(tempfile.mkdtemp()))
>>> run_id = store.create_run("demo", {"optim": {"lr": 0.1}}, run_dir="runs/demo")
>>> store.log_epoch(run_id, 1, {"loss": 0.5, "val_loss": 0.6})
>>> store.finish_run(run_id, "completed", best_epoch=1, monitor="val_loss", best_value=0.6)
>>> store.get_run(run_id).status, store.params(run_id)
('completed', {'optim.lr': '0.1'})
>>> store.metrics(run_id).column("val_loss")
[0.6]
>>> store.close()
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from skier import __version__
from skier.errors import StoreError, problem
from skier.record.queries import ArtifactRecord, RunQueries, RunRecord
from skier.record.rundir import json_safe, new_run_id
from skier.record.schema import (
    ARTIFACT_KINDS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    artifacts,
    metrics,
    params,
    run_values,
    runs,
)
from skier.record.values import refresh_run_values

__all__ = [
    "ArtifactRecord",
    "RunRecord",
    "RunStore",
    "default_store_url",
    "flatten_config",
]

_FINISHED = tuple(s for s in RUN_STATUSES if s != "running")


def default_store_url(runs_dir: str | Path) -> str:
    """The SQLite URL of ``runs_dir/skier.db``.

    >>> default_store_url("runs")
    'sqlite:///runs/skier.db'
    """
    return f"sqlite:///{(Path(runs_dir) / 'skier.db').as_posix()}"


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys, each value JSON-encoded text.

    >>> flatten_config({"optim": {"name": "sgd", "lr": 0.1}, "tags": ["a"]})
    {'optim.name': '"sgd"', 'optim.lr': '0.1', 'tags': '["a"]'}
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, dotted))
        else:
            flat[dotted] = json.dumps(json_safe(value), default=str, sort_keys=True)
    return flat


def _finite(value: float | None) -> float | None:
    """``None`` for NaN and infinities: strict SQL floats have neither on every backend."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    updates: Sequence[str],
) -> None:
    """Insert ``rows``, replacing ``updates`` columns where the ``keys`` already exist."""
    index = [table.c[k] for k in keys]
    if conn.dialect.name == "sqlite":
        lite = sqlite_insert(table)
        conn.execute(
            lite.on_conflict_do_update(
                index_elements=index, set_={c: lite.excluded[c] for c in updates}
            ),
            list(rows),
        )
        return
    if conn.dialect.name == "postgresql":
        pg = postgresql_insert(table)
        conn.execute(
            pg.on_conflict_do_update(
                index_elements=index, set_={c: pg.excluded[c] for c in updates}
            ),
            list(rows),
        )
        return
    # Other backends: delete then insert, in the caller's transaction.
    for row in rows:
        conn.execute(delete(table).where(and_(*(table.c[k] == row[k] for k in keys))))
    conn.execute(insert(table), list(rows))


class RunStore(RunQueries):
    """Runs, params, metrics and artifacts in the database at ``url`` (any SQLAlchemy URL).

    The constructor only stores the URL; the database is opened on first use (or by
    :meth:`open`), its tables created if absent and its schema version checked. SQLite files get
    their parent folder created, WAL mode (readers never block the writer) and a busy timeout, so
    a dashboard and several training processes can share one file.

    Non-finite metric values (NaN, inf) are stored as NULL and read back as NaN, so an epoch with
    a diverged loss or no validation keeps its row.

    >>> with RunStore("sqlite://") as store:   # in memory
    ...     store.list_runs()
    RunList(no runs)
    """

    def __repr__(self) -> str:
        return f"RunStore({self.safe_url!r})"

    def __enter__(self) -> RunStore:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> RunStore:
        """Connect, create missing tables and check the schema version; returns ``self``."""
        self._connected()
        return self

    # --- writes ------------------------------------------------------------------------------
    def create_run(
        self,
        name: str,
        config: Mapping[str, Any],
        run_dir: str | Path | None,
        kind: str = "train",
        task: str | None = None,
        *,
        run_id: str | None = None,
        parent_id: str | None = None,
    ) -> str:
        """Add a ``running`` run with its config (also flattened into params); returns its id.

        Pass ``run_id`` to use the id of a run directory made first (see ``new_run_id``);
        ``parent_id`` links the run to the one it belongs to (a CV fold to its CV run).
        """
        run_id = run_id or new_run_id()
        now = datetime.now(UTC)
        flat = flatten_config(config)
        with self._transaction(write=True) as conn:
            if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None:
                raise StoreError(
                    problem("run id", "new", run_id, f"It is already in {self.safe_url}.")
                )
            conn.execute(
                insert(runs).values(
                    id=run_id,
                    name=name,
                    status="running",
                    kind=kind,
                    parent_id=parent_id,
                    created_at=now,
                    run_dir=None if run_dir is None else str(run_dir),
                    task=task,
                    skier_version=__version__,
                    schema_version=SCHEMA_VERSION,
                    config_json=json.dumps(json_safe(config), default=str, allow_nan=False),
                )
            )
            if flat:
                conn.execute(
                    insert(params),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in flat.items()],
                )
        return run_id

    def resume_run(self, run_id: str, *, from_epoch: int | None = None) -> None:
        """Mark a run ``running`` again; ``from_epoch`` drops metrics logged after that epoch."""
        with self._transaction(write=True) as conn:
            values: dict[str, Any] = {"status": "running", "finished_at": None, "error": None}
            if from_epoch is not None:
                values["epochs_done"] = from_epoch
            if conn.execute(update(runs).where(runs.c.id == run_id).values(values)).rowcount == 0:
                raise self._unknown_run(run_id)
            if from_epoch is not None:
                conn.execute(
                    delete(metrics).where(metrics.c.run_id == run_id, metrics.c.epoch > from_epoch)
                )
                refresh_run_values(conn, run_id)

    def log_epoch(self, run_id: str, epoch: int, values: Mapping[str, float]) -> None:
        """Record one epoch's metrics (replacing any logged before for the same keys).

        An ``"epoch"`` key in ``values`` is ignored (it is the ``epoch`` argument); NaN and
        infinities are stored as NULL. Also advances the run's ``epochs_done``.
        """
        self.log_epochs(run_id, [(epoch, values)])

    def log_epochs(self, run_id: str, epochs: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Record several epochs' metrics in one transaction, as :meth:`log_epoch` each."""
        rows = []
        for epoch, values in epochs:
            for key, value in values.items():
                if key == "epoch":
                    continue
                try:
                    number = _finite(value)
                except (TypeError, ValueError):
                    raise StoreError(problem(f"metric {key!r}", "a number", value)) from None
                rows.append({"run_id": run_id, "epoch": int(epoch), "key": key, "value": number})
        if not epochs:
            return
        last = max(int(epoch) for epoch, _ in epochs)
        with self._transaction(write=True) as conn:
            # One statement both checks the run exists and advances its progress.
            progress = case(
                (or_(runs.c.epochs_done.is_(None), runs.c.epochs_done < last), last),
                else_=runs.c.epochs_done,
            )
            moved = conn.execute(
                update(runs).where(runs.c.id == run_id).values(epochs_done=progress)
            )
            if moved.rowcount == 0:
                raise self._unknown_run(run_id)
            if rows:
                _upsert(conn, metrics, rows, ("run_id", "epoch", "key"), ("value",))
                refresh_run_values(conn, run_id, [str(row["key"]) for row in rows])

    def add_artifact(self, run_id: str, name: str, path: str | Path, kind: str) -> None:
        """Record a file the run wrote; ``kind`` is one of :data:`ARTIFACT_KINDS`."""
        if kind not in ARTIFACT_KINDS:
            raise StoreError(problem("artifact kind", f"one of {list(ARTIFACT_KINDS)}", kind))
        row = {"run_id": run_id, "name": name, "path": str(path), "kind": kind}
        with self._transaction(write=True) as conn:
            self._require_run(conn, run_id)
            _upsert(conn, artifacts, [row], ("run_id", "name"), ("path", "kind"))

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        epochs_done: int | None = None,
        best_epoch: int | None = None,
        monitor: str | None = None,
        best_value: float | None = None,
        test_metrics: Mapping[str, float] | None = None,
        stop_reason: str | None = None,
        duration_s: float | None = None,
        error: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """Record how a run ended.

        ``summary`` is what a non-training run found (a diagnostic's suggestions, a search's best
        value): stored as JSON, read back as :attr:`RunRecord.summary`.

        ``test_metrics`` keys may carry the ``test_`` prefix or not: ``loss`` and ``error`` go to
        their own columns, the first other one (e.g. ``accuracy``) to ``test_metric_name`` /
        ``test_metric_value``; result.json keeps them all. ``epochs_done=None`` keeps the count
        that :meth:`log_epoch` advanced.
        """
        if status not in _FINISHED:
            raise StoreError(problem("finished status", f"one of {list(_FINISHED)}", status))
        values: dict[str, Any] = {
            "status": status,
            "finished_at": datetime.now(UTC),
            "best_epoch": best_epoch,
            "monitor": monitor,
            "best_value": _finite(best_value),
            "stop_reason": stop_reason,
            "duration_s": _finite(duration_s),
            "error": error,
            "test_loss": None,
            "test_error": None,
            "test_metric_name": None,
            "test_metric_value": None,
        }
        if epochs_done is not None:
            values["epochs_done"] = epochs_done
        if summary is not None:
            values["summary_json"] = json.dumps(json_safe(summary), default=str, allow_nan=False)
        for key, value in (test_metrics or {}).items():
            short = key.removeprefix("test_")
            if short in ("loss", "error"):
                values[f"test_{short}"] = _finite(value)
            elif values["test_metric_name"] is None:
                values["test_metric_name"] = f"test_{short}"
                values["test_metric_value"] = _finite(value)
        with self._transaction(write=True) as conn:
            if conn.execute(update(runs).where(runs.c.id == run_id).values(values)).rowcount == 0:
                raise self._unknown_run(run_id)
            refresh_run_values(conn, run_id)  # the best epoch is known now

    def delete_run(self, run_id: str, *, with_descendants: bool = True) -> list[str]:
        """Delete a run's rows (metrics, params, artifacts, the run), and by default those of
        the runs that belong to it; returns the deleted ids. Files are left to the caller.

        Runs that named a deleted run as parent but are kept lose the link (``parent_id`` NULL).
        """
        ids = [run_id]
        if with_descendants:
            ids += [r.id for r in self.descendants(run_id)]
        with self._transaction(write=True) as conn:
            self._require_run(conn, run_id)
            for table in (metrics, run_values, params, artifacts):
                conn.execute(delete(table).where(table.c.run_id.in_(ids)))
            conn.execute(update(runs).where(runs.c.parent_id.in_(ids)).values(parent_id=None))
            conn.execute(delete(runs).where(runs.c.id.in_(ids)))
        return ids
