"""Cross-validation and tuning shown live in a notebook cell: folds and trials as they finish,
in one output updated in place (see :mod:`skier._live`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from skier._html import html_table
from skier._live import LiveOutput, duration_text, status_html
from skier.search.crossval import FoldResult, mean_curve

__all__ = ["LiveFolds", "LiveTrials"]

_ROWS = 20  # the table shows the latest trials; the figure shows them all


class LiveFolds:
    """The folds done so far: a row each, the running mean of the metric, the fold curves."""

    def __init__(self, total: int, metric: str, output: LiveOutput | None = None) -> None:
        self.total, self.metric = total, metric
        # Every fold shows as it finishes (they are seconds apart); the figure is throttled.
        self.output = output if output is not None else LiveOutput(text_every_s=0.0)
        self._started = time.monotonic()

    def update(self, done: Sequence[FoldResult], ending: str | None = None) -> None:
        folds = sorted(done, key=lambda r: r.number)
        values = [v for r in folds if math.isfinite(v := r.metrics.get(self.metric, math.nan))]
        facts = [f"{len(folds)}/{self.total} folds"]
        if values:
            spread = f" ± {statistics.stdev(values):.4g}" if len(values) > 1 else ""
            facts.append(f"mean {self.metric} {statistics.fmean(values):.4g}{spread}")
        facts.append(f"elapsed {duration_text(time.monotonic() - self._started)}")
        facts += [ending] if ending else []
        head = ["fold", self.metric, "chosen epoch", "epochs", "seconds"]
        rows = [[f"{r.repeat}.{r.fold}", r.metrics.get(self.metric), r.best_epoch,
                 r.epochs_done, r.duration_s] for r in folds]  # fmt: skip
        html = status_html("cross-validation", facts, html_table(head, rows) if rows else "")
        self.output.update(html, ", ".join(facts), (lambda: self._figure(folds)) if folds else None,
                           final=ending is not None)  # fmt: skip

    def _figure(self, folds: Sequence[FoldResult]) -> Any:
        from skier.plots.search import plot_cv_figure

        return plot_cv_figure(folds, {self.metric: mean_curve(folds, self.metric)})


class LiveTrials:
    """The trials finished so far: the latest as a table, the best so far, the history figure.

    ``refresh`` reads the study only when an update is due, so a supervisor may call it often.
    """

    def __init__(
        self, study: Any, total: int, metric: str, direction: str, output: LiveOutput | None = None
    ) -> None:
        self.study, self.total, self.metric, self.direction = study, total, metric, direction
        self.output = output if output is not None else LiveOutput(text_every_s=1.0)
        self._started = time.monotonic()

    def on_trial(self, study: Any, trial: Any) -> None:
        """An Optuna callback (``study.optimize(callbacks=[...])``): after each trial, which
        always shows (a trial is the unit of progress; the figure keeps its throttle)."""
        self.refresh(study=study, force=True)

    def refresh(self, ending: str | None = None, study: Any = None, *, force: bool = False) -> None:
        if ending is None and not force and not self.output.due():
            return
        trials = (study or self.study).get_trials(deepcopy=False)
        rows = [_trial(t) for t in trials if t.state.is_finished()]
        complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
        facts = [f"{len(rows)}/{self.total} trials"]
        if complete:
            pick = min if self.direction == "minimize" else max
            best = pick(complete, key=lambda r: r["value"])
            facts.append(f"best {self.metric} {best['value']:.4g} (trial {best['number']})")
        facts.append(f"elapsed {duration_text(time.monotonic() - self._started)}")
        facts += [ending] if ending else []
        table = html_table(
            ["trial", "state", self.metric, "params"],
            [[r["number"], r["state"], r["value"], r["shown"]] for r in rows[-_ROWS:]],
        )
        summary = {"trials": rows, "direction": self.direction}
        self.output.update(status_html("tune", facts, table if rows else ""), ", ".join(facts),
                           (lambda: _history(summary)) if rows else None,
                           final=ending is not None, force=force)  # fmt: skip


def _trial(t: Any) -> dict[str, Any]:
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    if value is None and t.intermediate_values:  # a pruned trial: its last report
        value = t.intermediate_values[max(t.intermediate_values)]
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in t.params.items())  # fmt: skip
    return {"number": t.number, "state": t.state.name.lower(), "value": value, "shown": shown}


def _history(summary: dict[str, Any]) -> Any:
    from skier.plots.search import plot_optimization_history

    return plot_optimization_history(summary)
