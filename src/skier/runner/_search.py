"""Shared by cv, tune and their worker processes: worker count, process set-up, store rows."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from skier.config import RunConfig
from skier.record import (
    RunStore,
)
from skier.runner.lifecycle import resolve_store_url, result_fields
from skier.runner.training import RunOutcome

__all__ = ["Echo", "default_workers"]

Echo = Callable[[str], None]


def default_workers() -> int:
    """The CPU cores this process may use (its affinity where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return max(os.cpu_count() or 1, 1)


def _init_process(threads: int, quiet_optuna: bool = True) -> None:
    """Set up a spawned worker: its share of CPU threads, and Optuna's logger quiet."""
    import torch

    torch.set_num_threads(max(threads, 1))
    if quiet_optuna:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spawn() -> Any:
    return multiprocessing.get_context("spawn")


def _store_url(config: RunConfig, root: Path, store_url: str | None) -> str:
    return resolve_store_url(store_url, config.record.store, root)


def _annotate(store_url: str, outcome: RunOutcome, summary: Mapping[str, Any]) -> None:
    """Add what the search knows (fold, trial, params, pruned) to a finished run's store row."""
    result = outcome.result
    with RunStore(store_url) as store:
        store.finish_run(
            outcome.run_id,
            outcome.status,
            **result_fields(result),
            summary=summary,
        )


def _absolute_paths(config: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Relative data and init paths made absolute, so a config written elsewhere still works."""
    out = json.loads(json.dumps(dict(config)))
    if base_dir is None:
        return out
    for section, key in (("data", "path"), ("data", "labels_path"), ("init", "pretrained")):
        value = out.get(section, {}).get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[section][key] = str((base_dir / value).resolve())
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return str(value)
