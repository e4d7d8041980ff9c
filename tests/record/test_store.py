from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from datetime import UTC
from pathlib import Path

import pytest

from skier import __version__
from skier.errors import StoreError
from skier.history import History
from skier.record import (
    SCHEMA_VERSION,
    ArtifactRecord,
    RunStore,
    default_store_url,
    flatten_config,
    new_run_id,
)

CONFIG = {
    "data": {"name": "digits", "val_fraction": 0.2},
    "optim": {"name": "sgd", "lr": 0.1, "betas": [0.9, 0.99]},
    "model": {"hidden_sizes": [32, 16], "extra": {}},
    "seed": 0,
}
EPOCHS = [
    {"epoch": 1, "loss": 1.5, "error": 0.6, "val_loss": 1.6, "val_error": 0.65, "lr": 0.1},
    {"epoch": 2, "loss": 0.9, "error": 0.3, "lr": 0.1},  # no validation this epoch
    {"epoch": 3, "loss": 0.5, "error": 0.1, "val_loss": 0.7, "val_error": 0.2, "lr": 0.05},
]


def _sqlite_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_round_trip(store: RunStore, tmp_path: Path) -> None:
    run_id = store.create_run("digits-mlp", CONFIG, tmp_path / "run", task="classification")
    for row in EPOCHS:
        store.log_epoch(run_id, int(row["epoch"]), row)
    store.add_artifact(run_id, "best", tmp_path / "run/checkpoints/best.pt", "checkpoint")
    store.add_artifact(run_id, "curves", "old.png", "figure")
    store.add_artifact(run_id, "curves", "learning_curves.png", "figure")  # upsert
    store.finish_run(
        run_id,
        "stopped",
        best_epoch=3,
        monitor="val_loss",
        best_value=0.7,
        test_metrics={"test_loss": 0.75, "test_error": 0.2, "test_accuracy": 0.8},
        stop_reason="early stopping: val_loss did not improve for 5 epochs",
        duration_s=1.25,
    )

    run = store.get_run(run_id)
    assert (run.id, run.name, run.status, run.kind, run.task) == (
        run_id,
        "digits-mlp",
        "stopped",
        "train",
        "classification",
    )
    assert run.run_dir == str(tmp_path / "run")
    assert run.epochs_done == 3  # advanced by log_epoch, kept by finish_run
    assert (run.best_epoch, run.monitor, run.best_value) == (3, "val_loss", 0.7)
    assert run.test_metrics == {"test_loss": 0.75, "test_error": 0.2, "test_accuracy": 0.8}
    assert run.stop_reason.startswith("early stopping")
    assert run.duration_s == 1.25
    assert (run.skier_version, run.schema_version) == (__version__, SCHEMA_VERSION)
    assert run.config == CONFIG
    assert run.created_at.tzinfo == UTC and run.finished_at is not None
    assert run.finished_at >= run.created_at
    assert run.error is None

    assert [r.id for r in store.list_runs()] == [run_id]

    history = store.metrics(run_id)
    expected = History()
    expected.extend(EPOCHS)
    # to_dict turns NaN into None, so the comparison is exact; epoch 2 has no val_* keys at all.
    assert history.to_dict() == expected.to_dict()
    assert history.keys == ["epoch", "loss", "error", "val_loss", "val_error", "lr"]

    assert store.params(run_id) == {
        "data.name": '"digits"',
        "data.val_fraction": "0.2",
        "model.extra": "{}",
        "model.hidden_sizes": "[32, 16]",
        "optim.betas": "[0.9, 0.99]",
        "optim.lr": "0.1",
        "optim.name": '"sgd"',
        "seed": "0",
    }
    assert store.artifacts(run_id) == [
        ArtifactRecord("best", tmp_path / "run/checkpoints/best.pt", "checkpoint"),
        ArtifactRecord("curves", Path("learning_curves.png"), "figure"),
    ]


def test_log_epoch_upserts_and_stores_non_finite_as_null(store: RunStore) -> None:
    run_id = store.create_run("r", {}, None)
    store.log_epoch(run_id, 1, {"loss": 1.0, "val_loss": 2.0})
    store.log_epoch(run_id, 1, {"loss": 0.5, "lr": 0.1})  # replaces loss, keeps val_loss
    store.log_epoch(run_id, 2, {"loss": math.inf, "val_loss": math.nan})
    rows = store.metrics(run_id).rows
    assert rows[0] == {"epoch": 1.0, "loss": 0.5, "val_loss": 2.0, "lr": 0.1}
    assert rows[1]["epoch"] == 2.0 and set(rows[1]) == {"epoch", "loss", "val_loss"}
    assert math.isnan(rows[1]["loss"]) and math.isnan(rows[1]["val_loss"])
    store.finish_run(run_id, "stopped", best_value=math.nan, stop_reason="non-finite loss")
    assert store.get_run(run_id).best_value is None


def test_list_runs_newest_first_with_status_filter(store: RunStore) -> None:
    ids = [
        store.create_run(f"run{i}", {}, None, run_id=f"2026010{i}-000000-aaaaaa") for i in (1, 2, 3)
    ]
    store.finish_run(ids[1], "completed")
    assert [r.id for r in store.list_runs()] == ids[::-1]
    assert [r.id for r in store.list_runs(limit=2)] == ids[:0:-1]
    assert [r.id for r in store.list_runs(status="completed")] == [ids[1]]
    assert [r.id for r in store.list_runs(status="running")] == [ids[2], ids[0]]
    with pytest.raises(StoreError, match="status must be one of"):
        store.list_runs(status="done")


def test_resume_run_drops_later_epochs(store: RunStore) -> None:
    run_id = store.create_run("r", {}, None)
    for epoch in (1, 2, 3):
        store.log_epoch(run_id, epoch, {"loss": 1.0 / epoch})
    store.finish_run(run_id, "interrupted", error="KeyboardInterrupt")
    store.resume_run(run_id, from_epoch=2)
    run = store.get_run(run_id)
    assert (run.status, run.finished_at, run.error, run.epochs_done) == ("running", None, None, 2)
    assert store.metrics(run_id).column("epoch") == [1.0, 2.0]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_run("nope-123"),
        lambda s: s.log_epoch("nope-123", 1, {"loss": 1.0}),
        lambda s: s.add_artifact("nope-123", "a", "a.png", "figure"),
        lambda s: s.finish_run("nope-123", "completed"),
        lambda s: s.resume_run("nope-123"),
        lambda s: s.metrics("nope-123"),
        lambda s: s.params("nope-123"),
        lambda s: s.artifacts("nope-123"),
    ],
)
def test_unknown_run_id_is_a_store_error(store: RunStore, call) -> None:
    with pytest.raises(StoreError, match=r"run id must be a run in the store .*; got 'nope-123'"):
        call(store)


def test_bad_arguments_are_store_errors(sqlite_url: str) -> None:
    with RunStore(sqlite_url) as store:
        run_id = store.create_run("r", {}, None)
        with pytest.raises(StoreError, match="run id must be new"):
            store.create_run("again", {}, None, run_id=run_id)
        with pytest.raises(StoreError, match="artifact kind must be one of"):
            store.add_artifact(run_id, "x", "x.bin", "binary")
        with pytest.raises(StoreError, match="finished status must be one of"):
            store.finish_run(run_id, "running")
        with pytest.raises(StoreError, match="metric 'loss' must be a number"):
            store.log_epoch(run_id, 1, {"loss": "high"})  # type: ignore[dict-item]


def test_sqlite_uses_wal_and_creates_parent_folder(sqlite_url: str) -> None:
    path = Path(_sqlite_file(sqlite_url))
    assert not path.parent.exists()
    with RunStore(sqlite_url) as store:
        store.create_run("r", {}, None)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = default_store_url("runs/nested")
    assert url == "sqlite:///runs/nested/skier.db"
    with RunStore(url) as store:
        store.create_run("r", {}, None)
    assert (tmp_path / "runs" / "nested" / "skier.db").is_file()


def test_two_stores_write_the_same_file_concurrently(sqlite_url: str) -> None:
    stores = [RunStore(sqlite_url), RunStore(sqlite_url)]
    run_ids = [s.create_run(f"writer{i}", {"i": i}, None) for i, s in enumerate(stores)]
    errors: list[BaseException] = []

    def write(store: RunStore, run_id: str) -> None:
        try:
            for epoch in range(1, 31):
                store.log_epoch(run_id, epoch, {"loss": 1.0 / epoch, "val_loss": 2.0 / epoch})
                store.add_artifact(run_id, "last", f"epoch{epoch}.pt", "checkpoint")
                store.list_runs()  # a reader in the mix, as a dashboard would be
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=pair) for pair in zip(stores, run_ids, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        for run_id in run_ids:
            assert len(stores[0].metrics(run_id)) == 30
            assert stores[1].get_run(run_id).epochs_done == 30
            assert stores[0].artifacts(run_id)[0].path == Path("epoch30.pt")
    finally:
        for store in stores:
            store.close()


def test_newer_schema_is_refused(sqlite_url: str) -> None:
    RunStore(sqlite_url).open().close()
    with contextlib.closing(sqlite3.connect(_sqlite_file(sqlite_url))) as conn, conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(
        StoreError,
        match=rf"schema version must be at most {SCHEMA_VERSION} .*; got {SCHEMA_VERSION + 1}\.",
    ):
        RunStore(sqlite_url).open()
    with contextlib.closing(sqlite3.connect(_sqlite_file(sqlite_url))) as conn, conn:
        conn.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="store schema version must be an integer"):
        RunStore(sqlite_url).list_runs()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", r"store URL must be a SQLAlchemy URL; got 'not a url'"),
        ("nosuchdb://x/y", r"store URL must be a database with an installed driver.*nosuchdb"),
    ],
)
def test_bad_url_is_a_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        RunStore(url).open()


def test_unreachable_server_names_url_without_password() -> None:
    url = "postgresql+psycopg://skier:hunter2@127.0.0.1:1/nowhere?connect_timeout=2"
    store = RunStore(url)
    with pytest.raises(
        StoreError, match=r"store must be reachable .*127\.0\.0\.1:1/nowhere"
    ) as info:
        store.list_runs()
    assert "hunter2" not in str(info.value) and "skier:***@" in str(info.value)
    assert "\n" not in str(info.value)
    assert "hunter2" not in repr(store)


def test_unwritable_sqlite_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="store folder must be creatable"):
        RunStore(f"sqlite:///{blocker}/sub/skier.db").open()


def test_flatten_config() -> None:
    assert flatten_config({"a": {"b": {"c": 1}, "d": None}, "e": "x", "f": Path("p")}) == {
        "a.b.c": "1",
        "a.d": "null",
        "e": '"x"',
        "f": '"p"',
    }


def test_create_run_uses_given_id(sqlite_url: str) -> None:
    run_id = new_run_id()
    with RunStore(sqlite_url) as store:
        assert store.create_run("r", {}, None, kind="lr_range", run_id=run_id) == run_id
        assert store.get_run(run_id).kind == "lr_range"


def test_version_1_store_is_upgraded_in_place(sqlite_url: str) -> None:
    # A store as skier 0.1 (schema 1) wrote it: no parent_id / summary_json columns.
    store = RunStore(sqlite_url).open()
    old = store.create_run("old", {"optim": {"lr": 0.1}}, None)
    store.finish_run(old, "completed", test_metrics={"test_loss": 0.5})
    store.close()
    with contextlib.closing(sqlite3.connect(_sqlite_file(sqlite_url))) as conn, conn:
        conn.execute("DROP INDEX ix_runs_parent_id")
        conn.execute("DROP INDEX ix_runs_parent_id_created_at")
        conn.execute("ALTER TABLE runs DROP COLUMN parent_id")
        conn.execute("ALTER TABLE runs DROP COLUMN summary_json")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with RunStore(sqlite_url) as upgraded:
        record = upgraded.get_run(old)
        assert record.parent_id is None and record.summary == {}
        assert record.test_metrics == {"test_loss": 0.5}
        child = upgraded.create_run("fold", {}, None, kind="cv_fold", parent_id=old)
        upgraded.finish_run(child, "completed", summary={"best": 1.5, "nan": float("nan")})
        assert upgraded.get_run(child).summary == {"best": 1.5, "nan": None}
        assert [r.id for r in upgraded.list_runs(parent_id=old)] == [child]
        assert [r.id for r in upgraded.list_runs(kind="train")] == [old]
    with contextlib.closing(sqlite3.connect(_sqlite_file(sqlite_url))) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert version == str(SCHEMA_VERSION)
    assert {"ix_runs_parent_id", "ix_runs_parent_id_created_at"} <= indexes


def test_an_index_added_since_is_made_on_open_and_used(store_url: str) -> None:
    """A store made before ix_runs_parent_id_created_at gets it when opened; on SQLite the runs
    that belong to one are then found through it, not by walking every run by date."""
    from sqlalchemy import event, text

    with RunStore(store_url) as store:
        parent = store.create_run("cv", {}, None, kind="cv")
        for _ in range(3):
            store.create_run("other", {}, None)
        with store._connected().begin() as conn:
            conn.execute(text("DROP INDEX ix_runs_parent_id_created_at"))
    with RunStore(store_url) as store:
        child = store.create_run("fold", {}, None, kind="cv_fold", parent_id=parent)
        engine = store._connected()
        seen: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append((a[2], a[3])))
        assert [r.id for r in store.list_runs(parent_id=parent)] == [child]
        statement, parameters = seen[-1]
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                found = conn.execute(
                    text(
                        "SELECT indexname FROM pg_indexes "
                        "WHERE tablename = 'runs' AND schemaname = current_schema()"
                    )
                )
                assert "ix_runs_parent_id_created_at" in {row[0] for row in found}
            else:
                plan = [row[-1] for row in conn.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {statement}", parameters)]  # fmt: skip
                assert plan == [
                    "SEARCH runs USING INDEX ix_runs_parent_id_created_at (parent_id=?)"
                ]
