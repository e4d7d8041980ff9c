"""Store fixtures: a SQLite file per test and, when the server answers, a PostgreSQL schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from skier.record import RunStore

# The tests (not the library) may read the environment: point them at another server if needed.
POSTGRES_URL = os.environ.get(
    "SKIER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    """An admin connection to the test server; skips the test when it is not reachable."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except (SQLAlchemyError, ImportError) as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        where = f"{make_url(POSTGRES_URL).host}:{make_url(POSTGRES_URL).port}"
        pytest.skip(f"PostgreSQL not reachable at {where}: {reason}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_engine: Engine) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards, so tests never collide."""
    schema = f"skier_test_{secrets.token_hex(4)}"
    with postgres_engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?connect_timeout=3&options=-csearch_path%3D{schema}"
    finally:
        with postgres_engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'skier.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def store(store_url: str) -> Iterator[RunStore]:
    with RunStore(store_url) as opened:
        yield opened
