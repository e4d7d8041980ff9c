"""Gradient flow over training: one line per layer, log scale, first layer dark, last light.

Reads the per-step series that :class:`skier.train.GradientFlow` writes into the history
(``grad_flow_step``, ``grad_norm/<layer>``, ``weight_norm/<layer>``, ``update_ratio/<layer>``);
standard library and matplotlib only, so the read side needs no torch.

>>> from types import SimpleNamespace
>>> from skier.history import History
>>> h = History()
>>> for step, g0, g1 in ((10, 1e-6, 0.1), (20, 2e-6, 0.2)):
...     h.add_step("grad_flow_step", step)
...     h.add_step("grad_norm/0.weight", g0)
...     h.add_step("grad_norm/2.weight", g1)
>>> gradient_flow_series(h).layers
['0.weight', '2.weight']
>>> ax = plot_gradient_flow(SimpleNamespace(history=h))
>>> [line.get_label() for line in ax.get_lines()]
['0.weight', '2.weight']
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Protocol

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from skier.history import History
from skier.plots.curves import new_figure

__all__ = [
    "GRADIENT_FLOW_METRICS",
    "GradientFlowSeries",
    "gradient_flow_series",
    "plot_gradient_flow",
    "plot_gradient_flow_figure",
]

STEP_KEY = "grad_flow_step"  # the same names as skier.train.callbacks.gradient_flow
GRADIENT_FLOW_METRICS = ("grad_norm", "weight_norm", "update_ratio")
_TITLES = {
    "grad_norm": "gradient norm ‖g‖",
    "weight_norm": "weight norm ‖w‖",
    "update_ratio": "update ratio ‖Δw‖ / ‖w‖",
}
_MAX_LABELS = 12  # more layers than this: only the first and last are named in the legend


class HistoryResult(Protocol):
    """What the gradient flow plots read (``FitResult`` has it)."""

    @property
    def history(self) -> History: ...


@dataclass(frozen=True)
class GradientFlowSeries:
    """The recorded steps and, per metric and layer, one value per step (NaN where missing)."""

    steps: list[int]
    layers: list[str]  # in the model's order: first layer first
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # metric -> layer

    def __len__(self) -> int:
        return len(self.steps)

    def plot(self, ax: Axes | None = None, *, metric: str = "grad_norm") -> Axes:
        """Draw ``metric`` per layer over steps (see :func:`plot_gradient_flow`)."""
        return _plot_series(self, ax, metric)

    def rows(self) -> list[tuple[int, str, float, float, float]]:
        """``(step, layer, grad_norm, weight_norm, update_ratio)``, step by step, layer by layer."""
        missing = [math.nan] * len(self)
        grad, weight, ratio = (self.values.get(m, {}) for m in GRADIENT_FLOW_METRICS)
        return [
            (
                step,
                layer,
                grad.get(layer, missing)[i],
                weight.get(layer, missing)[i],
                ratio.get(layer, missing)[i],
            )
            for i, step in enumerate(self.steps)
            for layer in self.layers
        ]

    def to_csv(self) -> str:
        """``step,layer,grad_norm,weight_norm,update_ratio`` rows; empty cells for NaN."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("step", "layer", *GRADIENT_FLOW_METRICS))
        for step, layer, *values in self.rows():
            writer.writerow((step, layer, *("" if math.isnan(v) else repr(v) for v in values)))
        return out.getvalue()


def gradient_flow_series(history: History) -> GradientFlowSeries:
    """The gradient flow records in ``history`` (empty when none were made)."""
    steps = [int(s) for s in history.steps.get(STEP_KEY, [])]
    values: dict[str, dict[str, list[float]]] = {m: {} for m in GRADIENT_FLOW_METRICS}
    layers: dict[str, None] = {}
    for key, series in history.steps.items():
        metric, _, layer = key.partition("/")
        if metric in values and layer:
            # Pad or cut to the steps: a well-formed record has one value per step already.
            padded = list(series[: len(steps)]) + [math.nan] * (len(steps) - len(series))
            values[metric][layer] = padded
            layers[layer] = None
    return GradientFlowSeries(steps, list(layers), values)


def plot_gradient_flow(
    result: HistoryResult | History, ax: Axes | None = None, *, metric: str = "grad_norm"
) -> Axes:
    """Draw ``metric`` (``grad_norm``, ``update_ratio`` or ``weight_norm``) per layer over steps.

    One line per layer on a log scale, coloured from dark (first layer) to light (last), so a
    vanishing gradient shows as dark lines far below light ones. Zeros and NaN are left out.

    ``result`` is a ``FitResult`` or its ``History``.

    >>> ax = plot_gradient_flow(result, metric="update_ratio")   # doctest: +SKIP
    """
    history = result if isinstance(result, History) else result.history
    return _plot_series(gradient_flow_series(history), ax, metric)


def _plot_series(series: GradientFlowSeries, ax: Axes | None, metric: str) -> Axes:
    if metric not in GRADIENT_FLOW_METRICS:
        raise ValueError(
            f"metric must be one of {', '.join(GRADIENT_FLOW_METRICS)}; got {metric!r}."
        )
    if ax is None:
        ax = new_figure().add_subplot()
    per_layer = series.values[metric]
    layers = [layer for layer in series.layers if layer in per_layer]
    cmap = colormaps["viridis"]
    for i, layer in enumerate(layers):
        shade = i / max(len(layers) - 1, 1) * 0.9  # the top of viridis is too pale to see
        named = len(layers) <= _MAX_LABELS or i in (0, len(layers) - 1)
        ax.plot(
            series.steps, per_layer[layer], color=cmap(shade), linewidth=1.2,
            marker="o" if len(series) == 1 else None, markersize=3,
            label=layer if named else "_nolegend_",
        )  # fmt: skip
    if layers:
        ax.set_yscale("log", nonpositive="mask")
    else:
        ax.text(
            0.5, 0.5, "no gradient flow recorded", ha="center", va="center",
            transform=ax.transAxes,
        )  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(_TITLES[metric])
    ax.grid(True, alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", title="first → last layer", title_fontsize="small")
    return ax


def plot_gradient_flow_figure(result: HistoryResult | History) -> Figure:
    """Gradient norms and update ratios side by side, one line per layer.

    >>> save_figure(plot_gradient_flow_figure(result), "gradient_flow.png")   # doctest: +SKIP
    """
    fig = new_figure(width=10.4, height=4.0)
    for i, metric in enumerate(("grad_norm", "update_ratio")):
        plot_gradient_flow(result, fig.add_subplot(1, 2, i + 1), metric=metric)
    return fig
