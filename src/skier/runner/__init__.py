"""Whole runs, each with its run directory and store record: what the CLI verbs call.

``training`` is ``skier train`` (config → data → model → fit → record → plots → report);
``diagnose`` is ``skier lr-find``, ``landscape``, ``sharpness`` and ``connect`` on a config or a
finished run; ``cv`` and ``tune`` are ``skier cv`` and ``skier tune`` (``workers`` their
processes); ``seeds`` is ``skier train --seeds`` (one group of runs over seeds); ``lessons`` is
``skier lesson``.
Python users get the same files and records by calling these.
"""

from typing import Any

from skier.runner.training import (
    EpochLines,
    RecordLogger,
    RunOutcome,
    check_run_config,
    run_training,
)

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

_SEARCH = {
    "CVOutcome": "cv",
    "run_cv": "cv",
    "TuneOutcome": "tune",
    "run_tune": "tune",
    "SeedsOutcome": "seeds",
    "run_seeds": "seeds",
}


def __getattr__(name: str) -> Any:
    # Search pulls in Optuna (and seeds the search helpers): imported when asked for, so
    # `skier train` does not pay for it.
    if name in _SEARCH:
        from importlib import import_module

        return getattr(import_module(f"skier.runner.{_SEARCH[name]}"), name)
    raise AttributeError(f"module 'skier.runner' has no attribute {name!r}")
