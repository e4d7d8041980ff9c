"""Eight processes training and recording at once into one store: every run and every epoch
row present, none duplicated — on SQLite (the default) and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest

from skier.record import RunStore, default_store_url

from . import _child

PROCESSES, EPOCHS = 8, 4
CONFIG: dict[str, Any] = {
    "data": {"name": "synthetic", "samples": 300, "features": 8, "classes": 2},
    "model": {"hidden_sizes": [16]},
    "train": {"epochs": EPOCHS, "batch_size": 32},
    "record": {"plots": False, "report": False},
}
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _train_all(out: Path, store: str | None) -> list[str]:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "skier.runner", _child.__name__])
    name = f"concurrent-{uuid.uuid4().hex[:8]}"
    config = {**CONFIG, "record": {**CONFIG["record"], "name": name}}
    children = [
        ctx.Process(target=_child.train, args=(config, str(out), None, store))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(600)
    assert [c.exitcode for c in children] == [0] * PROCESSES
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(runs) == PROCESSES
    return runs


def _check(url: str, runs: list[str]) -> None:
    with RunStore(url) as store:
        for run_id in runs:
            record = store.get_run(run_id)
            assert record.status == "completed" and record.epochs_done == EPOCHS
            history = store.metrics(run_id)
            assert [int(r["epoch"]) for r in history.rows] == list(range(1, EPOCHS + 1))
            assert {a.name for a in store.artifacts(run_id)} >= {"config.yaml", "result.json"}


@pytest.mark.slow
def test_eight_processes_share_one_sqlite_store(tmp_path: Path) -> None:
    runs = _train_all(tmp_path / "runs", None)
    url = default_store_url(tmp_path / "runs")
    _check(url, runs)
    with RunStore(url) as store:
        assert sorted(r.id for r in store.list_runs(limit=100)) == runs


def _postgres_reachable() -> bool:
    try:
        with RunStore(PG_URL) as store:
            store.list_runs(limit=1)
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _postgres_reachable(), reason="PostgreSQL is not reachable at 127.0.0.1:5432 (db test)"
)
def test_eight_processes_share_one_postgresql_store(tmp_path: Path) -> None:
    runs = _train_all(tmp_path / "runs", PG_URL)
    _check(PG_URL, runs)
