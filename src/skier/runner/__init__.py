"""Whole runs, each with its run directory and store record: what the CLI verbs call.

``training`` is ``skier train`` (config → data → model → fit → record → plots → report);
``diagnose`` is ``skier lr-find``, ``skier landscape`` and ``skier sharpness`` on a config or a
finished run. Python users get the same files and records by calling these.
"""

from skier.runner.training import EpochLines, RecordLogger, RunOutcome, run_training

__all__ = ["EpochLines", "RecordLogger", "RunOutcome", "run_training"]
