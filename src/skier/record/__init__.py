"""skier.record: the run store (SQL) and the run directory (files). No torch here.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> run = RunDir.create(root, new_run_id())
>>> with RunStore(default_store_url(root)) as store:
...     run_id = store.create_run("demo", {"seed": 0}, run.path, run_id=run.run_id)
...     store.get_run(run_id).status
'running'
"""

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
