"""skier.record: the run store (SQL) and the run directory (files). No torch here.

>>> import tempfile
>>> from skier.record import RunDir, RunStore, default_store_url, new_run_id
>>> root = tempfile.mkdtemp()
>>> run = RunDir.create(root, new_run_id())
>>> with RunStore(default_store_url(root)) as store:
...     run_id = store.create_run("demo", {"seed": 0}, run.path, run_id=run.run_id)
...     store.get_run(run_id).status
'running'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skier._lazy import lazy_names

if TYPE_CHECKING:
    from skier.record.env import capture_environment
    from skier.record.queries import RunList
    from skier.record.rundir import RunDir, RunFiles, json_safe, new_run_id
    from skier.record.schema import ARTIFACT_KINDS, RUN_STATUSES, SCHEMA_VERSION
    from skier.record.store import (
        ArtifactRecord,
        RunRecord,
        RunStore,
        default_store_url,
        flatten_config,
    )

# Imported when first used: the store's SQLAlchemy takes most of a second to import, and
# `skier train --help` (which names RunFiles) needs none of it.
_LAZY: dict[str, str] = {
    "capture_environment": "skier.record.env",
    "RunList": "skier.record.queries",
    "RunDir": "skier.record.rundir",
    "RunFiles": "skier.record.rundir",
    "json_safe": "skier.record.rundir",
    "new_run_id": "skier.record.rundir",
    "ARTIFACT_KINDS": "skier.record.schema",
    "RUN_STATUSES": "skier.record.schema",
    "SCHEMA_VERSION": "skier.record.schema",
    "ArtifactRecord": "skier.record.store",
    "RunRecord": "skier.record.store",
    "RunStore": "skier.record.store",
    "default_store_url": "skier.record.store",
    "flatten_config": "skier.record.store",
}

__all__ = [
    "ARTIFACT_KINDS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "ArtifactRecord",
    "RunDir",
    "RunFiles",
    "RunList",
    "RunRecord",
    "RunStore",
    "capture_environment",
    "default_store_url",
    "flatten_config",
    "json_safe",
    "new_run_id",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)
