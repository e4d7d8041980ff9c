"""The run store's connection: engine creation (SQLite tuning, drivers), schema creation and
migration, and transactions. :class:`skier.record.store.RunStore` builds on it.

>>> conn = StoreConnection("sqlite://")   # in memory; opened on first use
>>> conn.safe_url
'sqlite://'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    make_url,
    select,
    update,
)
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
from skier.record.schema import ADDED_COLUMNS, SCHEMA_VERSION, meta, metadata, runs
from skier.record.values import refresh_run_values

__all__ = ["StoreConnection"]

_DEFAULT_CONNECT_TIMEOUT_S = 10


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


class StoreConnection:
    """The database at ``url`` (any SQLAlchemy URL): opened on first use, tables created if
    absent, schema version checked; transactions that turn driver errors into :class:`StoreError`.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self._engine: Engine | None = None

    # --- connection --------------------------------------------------------------------------
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
                        if found is None or found == str(SCHEMA_VERSION):
                            # Indexes added since the store's tables were made (create_all
                            # makes an index only with its table).
                            for table in metadata.sorted_tables:
                                for index in table.indexes:
                                    index.create(conn, checkfirst=True)
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

        Added (nullable) columns, whose old rows read as ``NULL``, and tables (made by
        ``create_all`` before this runs): schema 3's ``run_values`` is filled from every run's
        metrics here (one pass over the metrics table). An older skier refuses the upgraded
        store (its version is now higher), as it should.
        """
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for table, column, sql_type in ADDED_COLUMNS.get(target, ()):
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
        if version < 3:
            refresh_run_values(conn)
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
