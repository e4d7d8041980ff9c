"""Each run's sort value per metric, kept as the store is written (schema 3).

``skier runs --sort val_error`` orders runs by their value of a per-epoch metric: at the run's
best epoch, else at its last epoch that has one. Computed at query time that is two index lookups
per run — linear in the number of runs (2 s at 100,000 runs on PostgreSQL). The store keeps the
answer instead, in ``run_values`` (run_id, key, value), recomputed for a run whenever what it
depends on changes (:meth:`RunStore.log_epoch` for the keys logged, ``finish_run`` and
``resume_run`` for all the run's keys, the upgrade to schema 3 for every run), so a top-20 is a
short range of the (key, value) index.

>>> from skier.record.store import RunStore
>>> with RunStore("sqlite://") as store:
...     run = store.create_run("a", {}, None)
...     store.log_epoch(run, 1, {"val_error": 0.3}); store.log_epoch(run, 2, {"val_error": 0.2})
...     before = store.rank_runs("val_error")[0][1]
...     store.finish_run(run, "completed", best_epoch=1)
...     before, store.rank_runs("val_error")[0][1]
(0.2, 0.3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, String, delete, func, insert, literal, select, union_all

from skier.record.schema import metrics, run_values, runs

__all__ = ["refresh_run_values"]


def refresh_run_values(
    conn: Connection, run_id: str | None = None, keys: Sequence[str] | None = None
) -> None:
    """Recompute ``run_values`` for one run (every run when ``run_id`` is None), for ``keys``
    (every key the run logged when None), in the caller's transaction.

    With ``keys`` given the (run, key) pairs are literal rows (a UNION ALL: SQLite has no
    named VALUES table), so logging an epoch costs a few index lookups whatever the run's
    length; without, the pairs are the run's distinct metric keys (one pass over its rows: at
    the end of a run, on resume and on upgrade)."""
    pairs: Any
    if keys is not None:
        if run_id is None or not keys:
            return
        literal_rows = [
            select(literal(run_id, String).label("run_id"), literal(k, String).label("key"))
            for k in dict.fromkeys(keys)
        ]
        pairs = union_all(*literal_rows).subquery("pairs")
    else:
        distinct = select(metrics.c.run_id, metrics.c.key).distinct()
        if run_id is not None:
            distinct = distinct.where(metrics.c.run_id == run_id)
        pairs = distinct.subquery("pairs")
    value = _value_at_best_else_last(pairs.c.run_id, pairs.c.key)
    chosen = (
        select(pairs.c.run_id, pairs.c.key, value.label("value"))
        .select_from(pairs.join(runs, runs.c.id == pairs.c.run_id))
        .subquery("chosen")
    )
    stale = delete(run_values)
    if run_id is not None:
        stale = stale.where(run_values.c.run_id == run_id)
    if keys is not None:
        stale = stale.where(run_values.c.key.in_(list(keys)))
    conn.execute(stale)
    conn.execute(
        insert(run_values).from_select(
            ["run_id", "key", "value"],
            select(chosen.c.run_id, chosen.c.key, chosen.c.value).where(
                chosen.c.value.is_not(None)
            ),
        )
    )


def _value_at_best_else_last(run_id: Any, key: Any) -> Any:
    """The value of metric ``key`` of run ``run_id`` at its best epoch, else at its last epoch
    with one (NaN is stored as NULL, so it has none). Two lookups on the metrics key (run_id,
    epoch, key): the second walks the run's epochs backwards and stops at the first value."""
    at_best, at_last = metrics.alias("at_best"), metrics.alias("at_last")
    best = (
        select(at_best.c.value)
        .where(at_best.c.run_id == run_id, at_best.c.epoch == runs.c.best_epoch)
        .where(at_best.c.key == key)
        .scalar_subquery()
    )
    last = (
        select(at_last.c.value)
        .where(at_last.c.run_id == run_id, at_last.c.key == key, at_last.c.value.is_not(None))
        .order_by(at_last.c.epoch.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(best, last)
