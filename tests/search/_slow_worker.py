"""A spawned worker for the heartbeat test: Optuna only (no torch), so it starts fast."""

from __future__ import annotations

import time

import optuna


def run_one_slow_trial(url: str, study_name: str) -> None:
    """Join the study with heartbeats on and start a trial that sleeps until it is killed."""
    import warnings

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name=study_name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        time.sleep(600)
        return 0.0

    study.optimize(objective, n_trials=1)
