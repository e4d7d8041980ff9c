"""Sharpness during training against 2/lr: the edge-of-stability picture.

Reads the per-step series that :class:`skier.train.SharpnessTracker` writes into the history
(``sharpness_step``, ``sharpness``, ``sharpness_lr``, ``sharpness_iterations``,
``sharpness_converged``) and draws λ1
per step with the line 2/lr: full-batch gradient descent sharpens until λ1 reaches about 2/lr
and then hovers there (Cohen et al. 2021). Standard library and matplotlib only, so the read
side needs no torch.

>>> from skier.history import History
>>> h = History()
>>> for step, value in ((10, 3.0), (20, 19.5), (30, 20.4)):
...     h.add_step("sharpness_step", step)
...     h.add_step("sharpness", value)
...     h.add_step("sharpness_lr", 0.1)
...     h.add_step("sharpness_iterations", 5)
>>> series = sharpness_series(h)
>>> series.steps, series.edge
([10, 20, 30], [20.0, 20.0, 20.0])
>>> [line.get_label() for line in plot_sharpness_steps(h).get_lines()]
['λ1 (top Hessian eigenvalue)', '2 / lr']
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Protocol

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from skier.history import History
from skier.plots.curves import new_figure

__all__ = [
    "SharpnessSeries",
    "plot_sharpness_steps",
    "plot_sharpness_steps_figure",
    "sharpness_series",
]

# The same names as skier.train.callbacks.sharpness.SHARPNESS_KEYS (no torch here).
_KEYS = (
    "sharpness_step", "sharpness", "sharpness_lr", "sharpness_iterations", "sharpness_converged",
)  # fmt: skip


class HistoryResult(Protocol):
    """What the plot reads (``FitResult`` has it)."""

    @property
    def history(self) -> History: ...


@dataclass(frozen=True)
class SharpnessSeries:
    """The recorded steps, λ1 at each, the lr of each step, the products each took and whether
    each met its tolerance (1.0), stopped at the product cap (0.0) or is unknown (NaN: a history
    written before the flag existed)."""

    steps: list[int]
    values: list[float]
    lrs: list[float]
    iterations: list[int]
    converged: list[float]

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def edge(self) -> list[float]:
        """2/lr at each record (NaN where the lr is unknown or 0)."""
        return [2.0 / lr if lr > 0 and math.isfinite(lr) else math.nan for lr in self.lrs]

    def to_csv(self) -> str:
        """``step,sharpness,lr,two_over_lr,iterations,converged`` rows (converged 1 or 0);
        empty cells for NaN."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("step", "sharpness", "lr", "two_over_lr", "iterations", "converged"))
        flags = [v if math.isnan(v) else int(v) for v in self.converged]
        columns = (self.steps, self.values, self.lrs, self.edge, self.iterations, flags)
        for row in zip(*columns, strict=True):
            writer.writerow(
                ["" if isinstance(v, float) and math.isnan(v) else repr(v) for v in row]
            )
        return out.getvalue()


def sharpness_series(history: History) -> SharpnessSeries:
    """The sharpness records in ``history`` (empty when none were made)."""
    steps = [int(s) for s in history.steps.get(_KEYS[0], [])]
    n = len(steps)

    def padded(key: str) -> list[float]:
        values = list(history.steps.get(key, []))[:n]
        return values + [math.nan] * (n - len(values))

    iterations = [0 if math.isnan(v) else int(v) for v in padded(_KEYS[3])]
    return SharpnessSeries(steps, padded(_KEYS[1]), padded(_KEYS[2]), iterations, padded(_KEYS[4]))


def plot_sharpness_steps(
    result: HistoryResult | History, ax: Axes | None = None, *, log: bool = False
) -> Axes:
    """λ1 per recorded step and the edge of stability 2/lr; ``log=True`` for a log y axis.

    ``result`` is a ``FitResult`` or its ``History``.

    >>> ax = plot_sharpness_steps(result, log=True)   # doctest: +SKIP
    """
    history = result if isinstance(result, History) else result.history
    series = sharpness_series(history)
    if ax is None:
        ax = new_figure().add_subplot()
    if len(series):
        marker = "o" if len(series) < 30 else None
        ax.plot(series.steps, series.values, color="tab:blue", marker=marker, markersize=3,
                linewidth=1.4, label="λ1 (top Hessian eigenvalue)")  # fmt: skip
        # A step line: the lr holds from one record to the next.
        ax.step(series.steps, series.edge, where="post", color="tab:red", linestyle="--",
                linewidth=1.2, label="2 / lr")  # fmt: skip
        if log:
            ax.set_yscale("log", nonpositive="mask")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no sharpness recorded", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("λ1")
    ax.set_title("sharpness against 2/lr (edge of stability)")
    ax.grid(True, alpha=0.3, which="both")
    return ax


def plot_sharpness_steps_figure(result: HistoryResult | History, *, log: bool = False) -> Figure:
    """The sharpness-against-2/lr figure on its own canvas (no pyplot).

    >>> save_figure(plot_sharpness_steps_figure(result), "sharpness_steps.png")  # doctest: +SKIP
    """
    fig = new_figure()
    plot_sharpness_steps(result, fig.add_subplot(), log=log)
    return fig
