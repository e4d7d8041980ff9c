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
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    NoSuchModuleError,
    ProgrammingError,
    SQLAlchemyError,
)

from skier import __version__
from skier.errors import StoreError, problem
from skier.history import History
from skier.record.rundir import json_safe, new_run_id
from skier.record.schema import (
    ADDED_COLUMNS,
    ARTIFACT_KINDS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    artifacts,
    meta,
    metadata,
    metrics,
    params,
    runs,
)

__all__ = [
    "ArtifactRecord",
    "RunRecord",
    "RunStore",
    "default_store_url",
    "flatten_config",
]

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
_FINISHED = tuple(s for s in RUN_STATUSES if s != "running")
_DEFAULT_CONNECT_TIMEOUT_S = 10


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


@dataclass(frozen=True)
class ArtifactRecord:
    """A file a run wrote (checkpoint, figure, report, ...)."""

    name: str
    path: Path
    kind: str


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Not parseable as a URL: still never echo what looks like a password.
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error and appends a link on further lines; keep the cause.
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def _finite(value: float | None) -> float | None:
    """``None`` for NaN and infinities: strict SQL floats have neither on every backend."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # SQLite returns the naive UTC wall time the store wrote; PostgreSQL returns an aware time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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


class RunStore:
    """Runs, params, metrics and artifacts in the database at ``url`` (any SQLAlchemy URL).

    The constructor only stores the URL; the database is opened on first use (or by
    :meth:`open`), its tables created if absent and its schema version checked. SQLite files get
    their parent folder created, WAL mode (readers never block the writer) and a busy timeout, so
    a dashboard and several training processes can share one file.

    Non-finite metric values (NaN, inf) are stored as NULL and read back as NaN, so an epoch with
    a diverged loss or no validation keeps its row.

    >>> with RunStore("sqlite://") as store:   # in memory
    ...     store.list_runs()
    []
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"RunStore({_hide_password(self.url)!r})"

    def __enter__(self) -> RunStore:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- connection --------------------------------------------------------------------------
    def open(self) -> RunStore:
        """Connect, create missing tables and check the schema version; returns ``self``."""
        self._connected()
        return self

    def _connected(self) -> Engine:
        if self._engine is None:
            engine = self._create_engine()
            try:
                self._init_schema(engine)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    def close(self) -> None:
        """Release every pooled connection; the store reopens on next use."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***`` (for messages and logs)."""
        return _hide_password(self.url)

    def _create_engine(self) -> Engine:
        try:
            url = make_url(self.url)
        except ArgumentError:
            raise StoreError(
                problem(
                    "store URL",
                    "a SQLAlchemy URL",
                    self.safe_url,
                    "For example 'sqlite:///runs/skier.db' or "
                    "'postgresql+psycopg://user@host:5432/db'.",
                )
            ) from None
        backend = url.get_backend_name()
        connect_args: dict[str, Any] = {}
        if backend == "sqlite":
            self._make_sqlite_folder(url)
        try:
            libpq = url.get_driver_name() in ("psycopg", "psycopg2")  # loads the dialect
            if libpq and "connect_timeout" not in url.query:
                # libpq waits forever on an unreachable host by default; fail in bounded time.
                connect_args["connect_timeout"] = _DEFAULT_CONNECT_TIMEOUT_S
            engine = create_engine(url, connect_args=connect_args)
        except (NoSuchModuleError, ImportError, ArgumentError) as exc:
            raise StoreError(
                problem(
                    "store URL",
                    "a database with an installed driver",
                    self.safe_url,
                    f"{_one_line(exc)}. Install the driver (e.g. pip install 'skier[postgres]').",
                )
            ) from None
        if backend == "sqlite":
            self._configure_sqlite(engine)
        return engine

    def _make_sqlite_folder(self, url: URL) -> None:
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                problem("store folder", "creatable", str(Path(database).parent), str(exc))
            ) from None

    def _configure_sqlite(self, engine: Engine) -> None:
        busy_ms = int(self.busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN (below) instead of the sqlite3 module,
            # which would begin lazily and could fail to upgrade a read lock under contention.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL, far fewer fsyncs
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front (waiting up to busy_timeout for it), so a
            # transaction never dies half-way with "database is locked"; readers never block.
            write = conn.get_execution_options().get("skier_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def _unreachable(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"store must be reachable and writable; got {self.safe_url!r}: {_one_line(exc)}. "
            "Check the URL, that the server is running and that you may write there."
        )

    def _init_schema(self, engine: Engine) -> None:
        for attempt in (1, 2):
            try:
                with engine.connect() as conn:
                    conn.execution_options(skier_write=True)
                    with conn.begin():
                        metadata.create_all(conn, checkfirst=True)
                        found = conn.execute(
                            select(meta.c.value).where(meta.c.key == "schema_version")
                        ).scalar_one_or_none()
                        if found is None:
                            conn.execute(
                                insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION))
                            )
                        elif found.isdigit() and int(found) < SCHEMA_VERSION:
                            self._migrate(conn, int(found))
                            found = str(SCHEMA_VERSION)
                break
            except (IntegrityError, ProgrammingError) as exc:
                # Two processes creating the tables at once on PostgreSQL: the loser retries
                # and finds them.
                if attempt == 2:
                    raise self._unreachable(exc) from exc
            except SQLAlchemyError as exc:
                raise self._unreachable(exc) from exc
        self._check_version(found)

    @staticmethod
    def _migrate(conn: Connection, version: int) -> None:
        """Bring a store written by an older skier up to :data:`SCHEMA_VERSION`, in place.

        Only added (nullable) columns so far: old rows read as ``NULL`` there, and an older
        skier refuses the upgraded store (its version is now higher), as it should.
        """
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for table, column, sql_type in ADDED_COLUMNS.get(target, ()):
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
        conn.execute(
            update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
        )

    def _check_version(self, found: str | None) -> None:
        if found is None:
            return
        try:
            version = int(found)
        except ValueError:
            raise StoreError(
                problem("store schema version", "an integer", found, f"Store: {self.safe_url}.")
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                problem(
                    "store schema version",
                    f"at most {SCHEMA_VERSION} (what skier {__version__} knows)",
                    version,
                    f"The store {self.safe_url} was written by a newer skier; upgrade skier.",
                )
            )

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        engine = self._connected()
        try:
            with engine.connect() as conn:
                if write:
                    conn.execution_options(skier_write=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(
                f"store operation must succeed; got {_one_line(exc)!r} from {self.safe_url!r}."
            ) from exc

    def _unknown_run(self, run_id: str) -> StoreError:
        return StoreError(
            problem(
                "run id",
                f"a run in the store {self.safe_url}",
                run_id,
                "List the runs with RunStore.list_runs() or `skier runs`.",
            )
        )

    def _require_run(self, conn: Connection, run_id: str) -> None:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise self._unknown_run(run_id)

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

    def log_epoch(self, run_id: str, epoch: int, values: Mapping[str, float]) -> None:
        """Record one epoch's metrics (replacing any logged before for the same keys).

        An ``"epoch"`` key in ``values`` is ignored (it is the ``epoch`` argument); NaN and
        infinities are stored as NULL. Also advances the run's ``epochs_done``.
        """
        rows = []
        for key, value in values.items():
            if key == "epoch":
                continue
            try:
                number = _finite(value)
            except (TypeError, ValueError):
                raise StoreError(problem(f"metric {key!r}", "a number", value)) from None
            rows.append({"run_id": run_id, "epoch": int(epoch), "key": key, "value": number})
        with self._transaction(write=True) as conn:
            # One statement both checks the run exists and advances its progress.
            progress = case(
                (or_(runs.c.epochs_done.is_(None), runs.c.epochs_done < epoch), int(epoch)),
                else_=runs.c.epochs_done,
            )
            moved = conn.execute(
                update(runs).where(runs.c.id == run_id).values(epochs_done=progress)
            )
            if moved.rowcount == 0:
                raise self._unknown_run(run_id)
            if rows:
                _upsert(conn, metrics, rows, ("run_id", "epoch", "key"), ("value",))

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
    ) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first; optionally only those with ``status``, of
        ``kind`` (``"train"``, ``"landscape"``, ...) or belonging to ``parent_id``."""
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
            return [self._record(row) for row in conn.execute(query)]

    def metrics(self, run_id: str) -> History:
        """The run's per-epoch metrics as a :class:`History` (NULL values come back as NaN)."""
        query = (
            select(metrics.c.epoch, metrics.c.key, metrics.c.value)
            .where(metrics.c.run_id == run_id)
            .order_by(metrics.c.epoch)
        )
        with self._transaction(write=False) as conn:
            self._require_run(conn, run_id)
            found = conn.execute(query).all()
        by_epoch: dict[int, dict[str, float]] = {}
        for epoch, key, value in found:
            by_epoch.setdefault(epoch, {})[key] = math.nan if value is None else float(value)

        def order(key: str) -> tuple[int, str]:
            return (_KEY_ORDER.index(key) if key in _KEY_ORDER else len(_KEY_ORDER), key)

        history = History()
        for epoch, row in by_epoch.items():
            history.append({"epoch": float(epoch), **{k: row[k] for k in sorted(row, key=order)}})
        return history

    def params(self, run_id: str) -> dict[str, str]:
        """The run's flattened config: dotted key → JSON-encoded value."""
        query = select(params.c.key, params.c.value).where(params.c.run_id == run_id)
        with self._transaction(write=False) as conn:
            self._require_run(conn, run_id)
            return {k: v for k, v in conn.execute(query.order_by(params.c.key))}

    def artifacts(self, run_id: str) -> list[ArtifactRecord]:
        """The files the run recorded, by name."""
        query = (
            select(artifacts.c.name, artifacts.c.path, artifacts.c.kind)
            .where(artifacts.c.run_id == run_id)
            .order_by(artifacts.c.name)
        )
        with self._transaction(write=False) as conn:
            self._require_run(conn, run_id)
            return [ArtifactRecord(n, Path(p), k) for n, p, k in conn.execute(query)]

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
        value: Any
        source: Any = runs
        if sort in _SORT_COLUMNS:
            value = _SORT_COLUMNS[sort]
        elif sort.startswith("test_"):
            value = case((runs.c.test_metric_name == sort, runs.c.test_metric_value), else_=None)
        else:
            # The metric at the run's best epoch, else at its last epoch that has a value: outer
            # joins on the metrics key (run_id, epoch, key) and one grouped pass for the last
            # epochs, rather than a correlated subquery per run (10x slower on PostgreSQL).
            last = (
                select(metrics.c.run_id, func.max(metrics.c.epoch).label("epoch"))
                .where(metrics.c.key == sort, metrics.c.value.is_not(None))
                .group_by(metrics.c.run_id)
                .subquery("last_epoch")
            )
            at_best, at_last = metrics.alias("at_best"), metrics.alias("at_last")
            source = (
                runs.outerjoin(
                    at_best,
                    and_(
                        at_best.c.run_id == runs.c.id,
                        at_best.c.key == sort,
                        at_best.c.epoch == runs.c.best_epoch,
                    ),
                )
                .outerjoin(last, last.c.run_id == runs.c.id)
                .outerjoin(
                    at_last,
                    and_(
                        at_last.c.run_id == runs.c.id,
                        at_last.c.key == sort,
                        at_last.c.epoch == last.c.epoch,
                    ),
                )
            )
            value = func.coalesce(at_best.c.value, at_last.c.value)
        value = value.label("sort_value")
        missing = case((value.is_(None), 1), else_=0)
        query = (
            select(runs, value)
            .select_from(source)
            .order_by(missing, value.desc() if descending else value.asc())
            .order_by(runs.c.created_at.desc(), runs.c.id.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(runs.c.status == status)
        if kind is not None:
            query = query.where(runs.c.kind == kind)
        with self._transaction(write=False) as conn:
            found = conn.execute(query).all()
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

    def find_runs(self, ref: str, *, limit: int = 10) -> list[RunRecord]:
        """Runs that ``ref`` names: its exact id, else ids starting with it, else that name.

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
                found = [self._record(row) for row in conn.execute(query)]
                if found:
                    return found
        return []

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

        def order(key: str) -> tuple[int, str]:
            return (_KEY_ORDER.index(key) if key in _KEY_ORDER else len(_KEY_ORDER), key)

        for run_id, by_epoch in rows.items():
            columns: list[str] = []
            for row in by_epoch.values():
                columns += [k for k in row if k not in columns]
            columns.sort(key=order)
            history = out[run_id]
            for epoch in sorted(by_epoch):
                row = by_epoch[epoch]
                history.rows.append(
                    {"epoch": float(epoch), **{k: row[k] for k in columns if k in row}}
                )
        return out

    def descendants(self, run_id: str) -> list[RunRecord]:
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
        return found

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
            for table in (metrics, params, artifacts):
                conn.execute(delete(table).where(table.c.run_id.in_(ids)))
            conn.execute(update(runs).where(runs.c.parent_id.in_(ids)).values(parent_id=None))
            conn.execute(delete(runs).where(runs.c.id.in_(ids)))
        return ids


class _Row:
    """A plain mapping dressed as a SQLAlchemy row for :meth:`RunStore._record`."""

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping
