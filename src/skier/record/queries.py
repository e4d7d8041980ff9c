"""The run store's read side: run records and the queries behind ``skier runs / show / compare``
and the dashboard. :class:`skier.record.store.RunStore` has every method here.

>>> from skier.record.store import RunStore
>>> with RunStore("sqlite://") as store:
...     run_id = store.create_run("demo", {}, None)
...     [r.name for r in store.list_runs()]
['demo']
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Select, case, null, select

from skier._html import data_frame, html_table
from skier.errors import StoreError, problem
from skier.history import History
from skier.record.engine import StoreConnection
from skier.record.schema import RUN_STATUSES, artifacts, metrics, params, run_values, runs

__all__ = ["ArtifactRecord", "RunList", "RunQueries", "RunRecord"]

# Columns of ``runs`` that RunStore.rank_runs sorts by directly (anything else is a metric key).
_SORT_COLUMNS = {
    "created_at": runs.c.created_at,
    "finished_at": runs.c.finished_at,
    "name": runs.c.name,
    "status": runs.c.status,
    "kind": runs.c.kind,
    "epochs": runs.c.epochs_done,
    "best_value": runs.c.best_value,
    "duration_s": runs.c.duration_s,
    "test_loss": runs.c.test_loss,
    "test_error": runs.c.test_error,
}

# Order of the standard keys when a History is rebuilt from the store (the store keeps no order);
# other keys follow alphabetically.
_KEY_ORDER = ("loss", "error", "val_loss", "val_error", "lr")


def _key_order(key: str) -> tuple[int, str]:
    return (_KEY_ORDER.index(key) if key in _KEY_ORDER else len(_KEY_ORDER), key)


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``. Times are timezone-aware UTC."""

    id: str
    name: str
    status: str
    kind: str
    created_at: datetime
    finished_at: datetime | None
    run_dir: str | None
    task: str | None
    epochs_done: int | None
    best_epoch: int | None
    monitor: str | None
    best_value: float | None
    test_loss: float | None
    test_error: float | None
    test_metric_name: str | None
    test_metric_value: float | None
    stop_reason: str | None
    duration_s: float | None
    skier_version: str | None
    schema_version: int
    config_json: str | None
    error: str | None
    parent_id: str | None = None
    summary_json: str | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """What a non-training run found (parsed ``summary_json``; empty if none)."""
        return dict(json.loads(self.summary_json)) if self.summary_json else {}

    @property
    def config(self) -> dict[str, Any]:
        """The config the run was created with (parsed ``config_json``)."""
        return dict(json.loads(self.config_json)) if self.config_json else {}

    @property
    def test_metrics(self) -> dict[str, float]:
        """``{"test_loss": ..., "test_error": ..., "test_accuracy": ...}``, known values only."""
        found = {
            "test_loss": self.test_loss,
            "test_error": self.test_error,
            self.test_metric_name or "": self.test_metric_value,
        }
        return {k: v for k, v in found.items() if k and v is not None}

    def __repr__(self) -> str:
        return f"RunRecord({self.id} {self.name!r}: {self.kind}, {self.status})"

    def _row(self) -> dict[str, Any]:
        """The run as a flat row: what ``skier runs`` lists, with every test metric."""
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "status": self.status,
            "created_at": self.created_at, "epochs": self.epochs_done,
            "best_epoch": self.best_epoch, "monitor": self.monitor, "best_value": self.best_value,
            **self.test_metrics, "duration_s": self.duration_s, "parent_id": self.parent_id,
            "run_dir": self.run_dir,
        }  # fmt: skip


class RunList(list[RunRecord]):
    """The runs a query found (newest first): a list of :class:`RunRecord` that shows itself
    as a table in a notebook, as one short line in a terminal, and as a DataFrame.

    >>> RunList()
    RunList(no runs)
    """

    def __repr__(self) -> str:
        if not self:
            return "RunList(no runs)"
        shown = ", ".join(f"{r.id} {r.name!r}" for r in self[:3])
        more = f", … ({len(self) - 3} more)" if len(self) > 3 else ""
        return f"RunList({len(self)} run{'' if len(self) == 1 else 's'}: {shown}{more})"

    def _repr_html_(self) -> str:
        """The columns of ``skier runs``: id, kind, name, status, epochs, best, test, time."""
        rows = [
            [r.id, r.kind, r.name, r.status, r.epochs_done,
             "" if r.best_value is None else f"{r.monitor}={r.best_value:.4g}",
             ", ".join(f"{k}={v:.4g}" for k, v in r.test_metrics.items()),
             "" if r.duration_s is None else f"{r.duration_s:.1f} s",
             f"{r.created_at:%Y-%m-%d %H:%M:%S}"]
            for r in self
        ]  # fmt: skip
        head = ["id", "kind", "name", "status", "epochs", "best", "test", "time", "started (UTC)"]
        caption = f"{len(self)} run{'' if len(self) == 1 else 's'}"
        return html_table(head, rows, caption=caption)

    def to_pandas(self) -> Any:
        """One row per run: id, name, kind, status, epochs, best value, test metrics, ..."""
        rows = [r._row() for r in self]
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        return data_frame(rows, columns or None, owner="RunList.to_pandas")


@dataclass(frozen=True)
class ArtifactRecord:
    """A file a run wrote (checkpoint, figure, report, ...)."""

    name: str
    path: Path
    kind: str


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # SQLite returns the naive UTC wall time the store wrote; PostgreSQL returns an aware time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class RunQueries(StoreConnection):
    """The reads of :class:`skier.record.store.RunStore`: runs, metrics, params, artifacts."""

    # --- reads -------------------------------------------------------------------------------
    @staticmethod
    def _record(row: Any) -> RunRecord:
        data = dict(row._mapping)
        data["created_at"] = _utc(data["created_at"])
        data["finished_at"] = _utc(data["finished_at"])
        return RunRecord(**data)

    def get_run(self, run_id: str) -> RunRecord:
        """The run with id ``run_id``; :class:`StoreError` if there is none."""
        with self._transaction(write=False) as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise self._unknown_run(run_id)
        return self._record(row)

    def list_runs(
        self,
        limit: int = 50,
        status: str | None = None,
        *,
        kind: str | None = None,
        parent_id: str | None = None,
    ) -> RunList:
        """The newest ``limit`` runs, newest first; optionally only those with ``status``, of
        ``kind`` (``"train"``, ``"landscape"``, ...) or belonging to ``parent_id``. A notebook
        shows the list as a table; ``to_pandas()`` gives a DataFrame."""
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(problem("status", f"one of {list(RUN_STATUSES)}", status))
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(runs.c.status == status)
        if kind is not None:
            query = query.where(runs.c.kind == kind)
        if parent_id is not None:
            query = query.where(runs.c.parent_id == parent_id)
        with self._transaction(write=False) as conn:
            return RunList(self._record(row) for row in conn.execute(query))

    def metrics(self, run_id: str) -> History:
        """The run's per-epoch metrics as a :class:`History` (NULL values come back as NaN)."""
        query = (
            select(metrics.c.epoch, metrics.c.key, metrics.c.value)
            .where(metrics.c.run_id == run_id)
            .order_by(metrics.c.epoch)
        )
        found = self._rows_of_run(run_id, query)
        by_epoch: dict[int, dict[str, float]] = {}
        for epoch, key, value in found:
            by_epoch.setdefault(epoch, {})[key] = math.nan if value is None else float(value)

        history = History()
        for epoch, row in by_epoch.items():
            history.append(
                {"epoch": float(epoch), **{k: row[k] for k in sorted(row, key=_key_order)}}
            )
        return history

    def params(self, run_id: str) -> dict[str, str]:
        """The run's flattened config: dotted key → JSON-encoded value."""
        query = select(params.c.key, params.c.value).where(params.c.run_id == run_id)
        return {k: v for k, v in self._rows_of_run(run_id, query.order_by(params.c.key))}

    def artifacts(self, run_id: str) -> list[ArtifactRecord]:
        """The files the run recorded, by name."""
        query = (
            select(artifacts.c.name, artifacts.c.path, artifacts.c.kind)
            .where(artifacts.c.run_id == run_id)
            .order_by(artifacts.c.name)
        )
        return [ArtifactRecord(n, Path(p), k) for n, p, k in self._rows_of_run(run_id, query)]

    def _rows_of_run(self, run_id: str, query: Select[Any]) -> list[Any]:
        """The rows ``query`` finds, after checking that ``run_id`` is in the store."""
        with self._transaction(write=False) as conn:
            self._require_run(conn, run_id)
            return list(conn.execute(query).all())

    # --- queries for the read side: skier runs / show / compare / rm, the dashboard ---------
    def rank_runs(
        self,
        sort: str,
        *,
        descending: bool = False,
        limit: int = 50,
        status: str | None = None,
        kind: str | None = None,
    ) -> list[tuple[RunRecord, float | None]]:
        """Runs ordered by ``sort``, each with its value of it; runs without one come last.

        ``sort`` is a column (``created_at``, ``name``, ``epochs``, ``best_value``,
        ``duration_s``, ``test_loss``, ``test_error``), the test metric a run recorded (e.g.
        ``test_accuracy``) or any per-epoch metric (``val_error``): its value at the run's best
        epoch, else at its last epoch that has one.

        >>> from skier.record.store import RunStore
        >>> with RunStore("sqlite://") as store:
        ...     a = store.create_run("a", {}, None); store.log_epoch(a, 1, {"val_error": 0.3})
        ...     b = store.create_run("b", {}, None); store.log_epoch(b, 1, {"val_error": 0.1})
        ...     [(r.name, v) for r, v in store.rank_runs("val_error")]
        [('b', 0.1), ('a', 0.3)]
        """
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(problem("status", f"one of {list(RUN_STATUSES)}", status))
        if not sort or len(sort) > 255:
            raise StoreError(problem("sort key", "a column or metric name", sort))
        filters = []
        if status is not None:
            filters.append(runs.c.status == status)
        if kind is not None:
            filters.append(runs.c.kind == kind)
        with self._transaction(write=False) as conn:
            if self.is_sort_column(sort):
                found = _rank_by_column(conn, sort, descending, limit, filters)
            else:
                found = _rank_by_metric(conn, sort, descending, limit, filters)
        out: list[tuple[RunRecord, float | None]] = []
        for row in found:
            data = dict(row._mapping)
            number = data.pop("sort_value")
            record = self._record(_Row(data))
            if isinstance(number, datetime):
                number = (
                    number.replace(tzinfo=UTC).timestamp()
                    if not number.tzinfo
                    else (number.timestamp())
                )
            elif number is not None and not isinstance(number, int | float):
                number = None  # a text column (name, status): the order is the answer
            out.append((record, None if number is None else float(number)))
        return out

    def sort_keys(self) -> list[str]:
        """The per-epoch metrics some run has a value of (what ``rank_runs`` can sort by
        besides the columns), in order.

        >>> from skier.record.store import RunStore
        >>> with RunStore("sqlite://") as store:
        ...     run = store.create_run("a", {}, None)
        ...     store.log_epoch(run, 1, {"val_error": 0.3, "loss": 1.0})
        ...     store.sort_keys()
        ['loss', 'val_error']
        """
        with self._transaction(write=False) as conn:
            found = conn.execute(select(run_values.c.key).distinct()).scalars().all()
        return sorted(found, key=_key_order)

    def is_sort_column(self, sort: str) -> bool:
        """Whether ``rank_runs`` sorts by ``sort`` as a column of the run (or its test metric)
        rather than as a per-epoch metric."""
        return sort in _SORT_COLUMNS or sort.startswith("test_")

    def find_runs(self, ref: str, *, limit: int = 10) -> RunList:
        """Runs that ``ref`` names: its exact id, else ids starting with it, else that name.

        >>> from skier.record.store import RunStore
        >>> with RunStore("sqlite://") as store:
        ...     run_id = store.create_run("digits", {}, None, run_id="20261122-010203-abcdef")
        ...     [r.id for r in store.find_runs("20261122-0102")]
        ['20261122-010203-abcdef']
        """
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._transaction(write=False) as conn:
            for where in (
                runs.c.id == ref,
                runs.c.id.like(escaped + "%", escape="\\"),
                runs.c.name == ref,
            ):
                query = (
                    select(runs)
                    .where(where)
                    .order_by(runs.c.created_at.desc(), runs.c.id.desc())
                    .limit(limit)
                )
                found = RunList(self._record(row) for row in conn.execute(query))
                if found:
                    return found
        return RunList()

    def metrics_of(
        self,
        run_ids: Sequence[str],
        *,
        keys: Sequence[str] | None = None,
        after_epoch: int | None = None,
    ) -> dict[str, History]:
        """The per-epoch metrics of several runs in one query: run id → History.

        ``keys`` keeps only those metrics; ``after_epoch`` only later epochs (what a live view
        has not seen yet). Unknown ids get an empty History.
        """
        ids = list(dict.fromkeys(run_ids))
        out = {run_id: History() for run_id in ids}
        if not ids:
            return out
        query = select(metrics.c.run_id, metrics.c.epoch, metrics.c.key, metrics.c.value).where(
            metrics.c.run_id.in_(ids)
        )
        if keys is not None:
            query = query.where(metrics.c.key.in_(list(keys)))
        if after_epoch is not None:
            query = query.where(metrics.c.epoch > int(after_epoch))
        with self._transaction(write=False) as conn:
            # No ORDER BY: sorting 500,000 rows in SQL costs more than sorting epochs here.
            found = conn.execute(query).all()
        rows: dict[str, dict[int, dict[str, float]]] = {run_id: {} for run_id in ids}
        for run_id, epoch, key, value in found:
            rows[run_id].setdefault(epoch, {})[key] = math.nan if value is None else float(value)

        for run_id, by_epoch in rows.items():
            columns: list[str] = []
            for row in by_epoch.values():
                columns += [k for k in row if k not in columns]
            columns.sort(key=_key_order)
            history = out[run_id]
            for epoch in sorted(by_epoch):
                row = by_epoch[epoch]
                history.rows.append(
                    {"epoch": float(epoch), **{k: row[k] for k in columns if k in row}}
                )
        return out

    def descendants(self, run_id: str) -> RunList:
        """The runs that belong to ``run_id`` (folds, trials, diagnostics), at any depth."""
        found: list[RunRecord] = []
        frontier = [run_id]
        seen = {run_id}
        with self._transaction(write=False) as conn:
            self._require_run(conn, run_id)
            while frontier:
                query = select(runs).where(runs.c.parent_id.in_(frontier)).order_by(runs.c.id)
                children = [self._record(row) for row in conn.execute(query)]
                children = [c for c in children if c.id not in seen]
                seen.update(c.id for c in children)
                found += children
                frontier = [c.id for c in children]
        return RunList(found)


_NEWEST = (runs.c.created_at.desc(), runs.c.id.desc())  # ties: newest first


def _rank_by_column(
    conn: Connection, sort: str, descending: bool, limit: int, filters: list[Any]
) -> list[Any]:
    """Runs ordered by a column of ``runs`` (or the test metric they recorded)."""
    value: Any = _SORT_COLUMNS.get(sort)
    if value is None:
        value = case((runs.c.test_metric_name == sort, runs.c.test_metric_value), else_=None)
    value = value.label("sort_value")
    order = value.desc().nulls_last() if descending else value.asc().nulls_last()
    return list(
        conn.execute(select(runs, value).where(*filters).order_by(order, *_NEWEST).limit(limit))
    )


def _rank_by_metric(
    conn: Connection, key: str, descending: bool, limit: int, filters: list[Any]
) -> list[Any]:
    """Runs ordered by their kept value of a per-epoch metric (:mod:`skier.record.values`): a
    range of the (key, value) index; then, if ``limit`` is not reached, the runs without one,
    newest first."""
    kept = run_values.c.value
    ranked = (
        select(runs, kept.label("sort_value"))
        .join(run_values, (run_values.c.run_id == runs.c.id) & (run_values.c.key == key))
        .where(*filters)
        .order_by(kept.desc() if descending else kept.asc(), *_NEWEST)
        .limit(limit)
    )
    found = list(conn.execute(ranked))
    if len(found) < limit:
        has_value = select(run_values.c.run_id).where(
            run_values.c.run_id == runs.c.id, run_values.c.key == key
        )
        rest = (
            select(runs, null().label("sort_value"))
            .where(~has_value.exists(), *filters)
            .order_by(*_NEWEST)
            .limit(limit - len(found))
        )
        found += conn.execute(rest)
    return found


class _Row:
    """A plain mapping dressed as a SQLAlchemy row for :meth:`RunStore._record`."""

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping
