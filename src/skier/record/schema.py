"""Tables of the run store (SQLAlchemy Core), portable between SQLite and PostgreSQL.

One row per run in ``runs``; its flattened config in ``params``; one row per (epoch, metric) in
``metrics``; its sort value per metric in ``run_values``; the files it wrote in ``artifacts``;
``meta`` holds the schema version so that an older skier refuses a store written by a newer one
instead of misreading it.

>>> sorted(metadata.tables)
['artifacts', 'meta', 'metrics', 'params', 'run_values', 'runs']
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "ADDED_COLUMNS",
    "ARTIFACT_KINDS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "artifacts",
    "meta",
    "metadata",
    "metrics",
    "params",
    "run_values",
    "runs",
]

#: Bump when a table changes shape; a store written with a newer version is refused on open.
SCHEMA_VERSION: Final = 3

#: Columns added since version 1, added in place to an older store when it is opened.
ADDED_COLUMNS: Final = {2: (("runs", "parent_id", "VARCHAR(64)"), ("runs", "summary_json", "TEXT"))}

#: ``stopped`` is an early stop or the non-finite guard; ``interrupted`` is Ctrl-C or a signal.
RUN_STATUSES: Final = ("running", "completed", "stopped", "failed", "interrupted")
ARTIFACT_KINDS: Final = ("checkpoint", "figure", "report", "csv", "json", "config")

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    # train, lr_find, landscape, sharpness, connect, cv, cv_fold, tune, trial, lesson, course
    Column("kind", String(32), nullable=False),
    # The run this one belongs to: a CV fold's CV run, a trial's study run (schema 2).
    Column("parent_id", String(64)),
    # Timezone-aware on PostgreSQL; SQLite keeps the UTC wall time and the store re-attaches UTC.
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("run_dir", Text),
    Column("task", String(32)),
    Column("epochs_done", Integer),
    Column("best_epoch", Integer),
    Column("monitor", String(255)),
    Column("best_value", Float),
    Column("test_loss", Float),
    Column("test_error", Float),
    Column("test_metric_name", String(255)),
    Column("test_metric_value", Float),
    Column("stop_reason", Text),
    Column("duration_s", Float),
    Column("skier_version", String(32)),
    Column("schema_version", Integer, nullable=False),
    Column("config_json", Text),
    Column("error", Text),
    # What a non-training run found (result.json's gist: suggestions, eigenvalues, ...; schema 2).
    Column("summary_json", Text),
    Index("ix_runs_created_at", "created_at"),
    Index("ix_runs_parent_id", "parent_id"),
    # The runs that belong to one, newest first (skier show): without it SQLite walks every run
    # by created_at looking for them (80 ms at 100,000 runs). Added to older stores on open.
    Index("ix_runs_parent_id_created_at", "parent_id", "created_at", "id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text),
)

metrics = Table(
    "metrics",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("key", String(255), primary_key=True),
    # NULL where the value was NaN or infinite (see RunStore.log_epoch).
    Column("value", Float),
)

# A run's value of each per-epoch metric at its best epoch, else at its last epoch with one
# (schema 3): what `skier runs --sort KEY` orders by, kept by the store's writes
# (skier.record.values), so a top-20 is a range of the (key, value) index, not a lookup per run.
run_values = Table(
    "run_values",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Float, nullable=False),
    Index("ix_run_values_key_value", "key", "value"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("path", Text, nullable=False),
    Column("kind", String(32), nullable=False),  # one of ARTIFACT_KINDS
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
