"""Whole runs, each with its run directory and store record: what the CLI verbs call.

``training`` is ``skier train`` (config → data → model → fit → record → plots → report);
``diagnose`` is ``skier lr-find``, ``landscape``, ``sharpness`` and ``connect`` on a config or a
finished run; ``cv`` and ``tune`` are ``skier cv`` and ``skier tune`` (``workers`` their
processes); ``seeds`` is ``skier train --seeds`` (one group of runs over seeds); ``lessons`` is
``skier lesson``.
Python users get the same files and records by calling these.
"""

from typing import TYPE_CHECKING

from skier._lazy import lazy_names
from skier.runner.training import (
    EpochLines,
    RecordLogger,
    RunOutcome,
    check_run_config,
    run_training,
)

if TYPE_CHECKING:
    from skier.runner.cv import CVOutcome, run_cv
    from skier.runner.seeds import SeedsOutcome, run_seeds
    from skier.runner.tune import TuneOutcome, run_tune

__all__ = [
    "CVOutcome",
    "EpochLines",
    "RecordLogger",
    "RunOutcome",
    "SeedsOutcome",
    "TuneOutcome",
    "check_run_config",
    "run_cv",
    "run_seeds",
    "run_training",
    "run_tune",
]

# Search pulls in Optuna (and seeds the search helpers): imported when first used, so
# `skier train` does not pay for it.
_SEARCH: dict[str, str] = {
    "CVOutcome": "skier.runner.cv",
    "run_cv": "skier.runner.cv",
    "TuneOutcome": "skier.runner.tune",
    "run_tune": "skier.runner.tune",
    "SeedsOutcome": "skier.runner.seeds",
    "run_seeds": "skier.runner.seeds",
}

__getattr__, __dir__ = lazy_names(__name__, _SEARCH, globals(), __all__)
