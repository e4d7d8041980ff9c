"""Read-side queries on a store of 1,000 runs x 100 epochs (5 metrics an epoch: 500,000 metric
rows), on SQLite and, when it answers, PostgreSQL. The acceptance line: each query under 1 s.

    .venv/bin/python bench/bench_store_queries.py [--runs 1000] [--epochs 100] [--postgres URL]

Rows are bulk-inserted straight into the tables (what 1,000 finished runs leave behind); the
queries are the ones ``skier runs``, ``skier runs --sort``, ``skier show``, ``skier compare`` and
the dashboard make. Each timing is the best of 5 (after one warm-up) on a connection pool that is
already open, as in a running dashboard; the first query of a fresh process is also shown.
"""

from __future__ import annotations

import argparse
import math
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from skier.record import RunStore
from skier.record.schema import SCHEMA_VERSION, metrics, params, runs
from skier.report.views import load_view

KEYS = ("loss", "error", "val_loss", "val_error", "lr")


def populate(store: RunStore, n_runs: int, n_epochs: int) -> list[str]:
    store.open()
    engine = store._connected()
    rng = random.Random(0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"20260101-{i:06d}-{secrets.token_hex(3)}" for i in range(n_runs)]
    run_rows, param_rows, metric_rows = [], [], []
    for i, run_id in enumerate(ids):
        lr = 10 ** rng.uniform(-4, -1)
        best = rng.randint(n_epochs // 2, n_epochs)
        run_rows.append(
            {
                "id": run_id, "name": f"run-{i}", "status": "completed", "kind": "train",
                "created_at": start + timedelta(minutes=i), "epochs_done": n_epochs,
                "best_epoch": best, "monitor": "val_loss", "best_value": rng.random(),
                "test_metric_name": "test_accuracy", "test_metric_value": rng.random(),
                "schema_version": SCHEMA_VERSION, "config_json": f'{{"optim": {{"lr": {lr}}}}}',
                "duration_s": rng.uniform(1, 100),
            }
        )  # fmt: skip
        param_rows += [
            {"run_id": run_id, "key": "optim.lr", "value": repr(lr)},
            {"run_id": run_id, "key": "optim.name", "value": '"sgd"'},
        ]
        for epoch in range(1, n_epochs + 1):
            decay = math.exp(-epoch * lr * 10)
            for key in KEYS:
                metric_rows.append(
                    {"run_id": run_id, "epoch": epoch, "key": key,
                     "value": lr if key == "lr" else decay + 0.05 * rng.random()}
                )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(runs), run_rows)
        conn.execute(insert(params), param_rows)
        for chunk in range(0, len(metric_rows), 50_000):
            conn.execute(insert(metrics), metric_rows[chunk : chunk + 50_000])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return ids


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def queries(store: RunStore, ids: list[str]) -> dict[str, Callable[[], Any]]:
    some = ids[:: max(len(ids) // 10, 1)][:10]
    return {
        "runs (newest 20)": lambda: store.list_runs(limit=20),
        "runs (all 1,000)": lambda: store.list_runs(limit=len(ids)),
        "runs --sort val_error (top 20)": lambda: store.rank_runs("val_error", limit=20),
        "runs --sort val_error (all)": lambda: store.rank_runs("val_error", limit=len(ids)),
        "runs --sort test_accuracy (all)": lambda: store.rank_runs(
            "test_accuracy", descending=True, limit=len(ids)
        ),
        "find run by id prefix": lambda: store.find_runs(ids[len(ids) // 2][:17]),
        "show: one run's metrics": lambda: store.metrics(ids[-1]),
        "show: load_view (metrics, children)": lambda: load_view(ids[-1], store=store),
        "compare: metrics of 10 runs": lambda: store.metrics_of(some),
        "dashboard poll: epochs after 99": lambda: store.metrics_of([ids[-1]], after_epoch=99),
        "export: metrics of all 1,000 runs": lambda: store.metrics_of(ids),
    }


def bench(url: str, label: str, n_runs: int, n_epochs: int) -> list[tuple[str, float]]:
    store = RunStore(url)
    t = time.perf_counter()
    ids = populate(store, n_runs, n_epochs)
    print(
        f"{label}: populated {n_runs} runs x {n_epochs} epochs in {time.perf_counter() - t:.1f} s"
    )
    store.close()
    cold_store = RunStore(url)
    t = time.perf_counter()
    cold_store.rank_runs("val_error", limit=20)
    cold = time.perf_counter() - t
    cold_store.close()
    out = [("first query of a fresh process (open + sort)", cold)]
    with RunStore(url) as store:
        for name, fn in queries(store, ids).items():
            out.append((name, best_of(fn)))
    for name, seconds in out:
        print(f"  {name:<46} {seconds * 1000:8.1f} ms")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    results: dict[str, list[tuple[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'skier.db'}"
        results["SQLite"] = bench(url, "SQLite", args.runs, args.epochs)
    schema = f"skier_bench_{secrets.token_hex(4)}"
    admin = create_engine(args.postgres, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure: no PostgreSQL figures
        print(f"PostgreSQL skipped: {str(exc).splitlines()[0]}")
    else:
        try:
            url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            results["PostgreSQL"] = bench(url, "PostgreSQL", args.runs, args.epochs)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
    names = [n for n, _ in next(iter(results.values()))]
    print("\n| query | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for i, name in enumerate(names):
        cells = " | ".join(f"{results[b][i][1] * 1000:.1f} ms" for b in results)
        print(f"| {name} | {cells} |")
    worst = max(s for r in results.values() for _, s in r)
    print(f"\nslowest: {worst * 1000:.0f} ms ({'under' if worst < 1 else 'OVER'} 1 s)")


if __name__ == "__main__":
    main()
