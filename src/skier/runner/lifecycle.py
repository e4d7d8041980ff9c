"""The end of every recorded run: one place that marks a store row failed or interrupted.

Every run kind (train, cv, tune, each diagnostic, lessons) wraps its work in
:func:`run_ending`; a run that raises is marked ``failed`` with the reason (a skier error's
one line, else a short traceback) and Ctrl-C marks it ``interrupted``; the exception goes on::

    with run_ending(store, run_id):
        result = fit(...)

Its files (the last good checkpoint included) stay where they are.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skier.config import RunConfig
from skier.errors import SkierError
from skier.record import RunStore, default_store_url

if TYPE_CHECKING:
    from skier.train import FitResult

__all__ = [
    "INTERRUPTED",
    "failure_reason",
    "resolve_store_url",
    "result_fields",
    "run_ending",
    "run_name",
]

# Run kinds named NAME-KIND (a search and what it trains); every other kind but training is
# named KIND-NAME (a diagnostic of a training set-up).
_SUFFIXED = ("cv", "tune", "refit")

INTERRUPTED = "interrupted by the user (Ctrl-C)"


def failure_reason(exc: BaseException) -> str:
    """What a failed run's record says: a skier error's message, else a short traceback."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    return str(exc) if isinstance(exc, SkierError) else traceback.format_exc(limit=5)


def resolve_store_url(given: str | None, configured: str | None, root: Path) -> str:
    """The store a run writes to: the one given, else the config's, else ``ROOT/skier.db``."""
    return given or configured or default_store_url(root)


def run_name(config: RunConfig, kind: str = "train") -> str:
    """A run's name in the store: ``record.name`` when set, else data-model; a training run
    adds its optimizer (a group over seeds, ``-seeds``), a search its kind, a diagnostic starts
    with its kind.

    >>> from skier.config import RunConfig
    >>> config = RunConfig()
    >>> run_name(config), run_name(config, "cv"), run_name(config, "sharpness")
    ('digits-mlp-adam', 'digits-mlp-cv', 'sharpness-digits-mlp')
    >>> run_name(config, "seeds")
    'digits-mlp-adam-seeds'
    >>> run_name(config.model_copy(update={"record": config.record.model_copy(
    ...     update={"name": "mine"})}), "tune")
    'mine-tune'
    """
    name = config.record.name
    if kind in ("train", "seeds"):  # a group over seeds is named as the run it repeats
        trained = name or f"{config.data.name}-{config.model.name}-{config.optim.name}"
        return trained if kind == "train" else f"{trained}-seeds"
    base = name or f"{config.data.name}-{config.model.name}"
    return f"{base}-{kind}" if kind in _SUFFIXED else f"{kind}-{base}"


def result_fields(result: FitResult) -> dict[str, Any]:
    """What a finished training run's store row takes from its :class:`FitResult`."""
    return {
        "epochs_done": result.epochs_done,
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_value": result.best_value,
        "test_metrics": result.test_metrics,
        "stop_reason": result.stop_reason,
        "duration_s": result.duration_s,
    }


@contextmanager
def run_ending(
    store: RunStore | str, run_id: str, *, started: float | None = None
) -> Iterator[None]:
    """Mark ``run_id`` ``failed`` (with the reason) or ``interrupted`` when the body raises,
    then re-raise. ``store`` is an open store or its URL (opened only when needed)."""
    t0 = time.perf_counter() if started is None else started
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, (Exception, KeyboardInterrupt)):
            raise  # SystemExit, GeneratorExit: not a failure of the run
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        seconds = time.perf_counter() - t0
        if isinstance(store, RunStore):
            store.finish_run(run_id, status, error=failure_reason(exc), duration_s=seconds)
        else:
            with RunStore(store) as opened:
                opened.finish_run(run_id, status, error=failure_reason(exc), duration_s=seconds)
        raise
