"""Several runs on one figure: their curves of a metric overlaid, and a run's lr per step.

Plots compute nothing: they take the runs' :class:`~skier.history.History` objects (as
``RunStore.metrics_of`` returns them) and draw. No torch here.

>>> from skier.history import History
>>> a, b = History(), History()
>>> a.extend([{"epoch": 1, "val_error": 0.3}, {"epoch": 2, "val_error": 0.2}])
>>> b.extend([{"epoch": 1, "val_error": 0.4}])
>>> ax = plot_compare_curves({"run a": a, "run b": b}, "val_error")
>>> [line.get_label() for line in ax.get_lines()]
['run a', 'run b']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from skier.history import History
from skier.plots.curves import new_figure
from skier.plots.figure import panel_axes
from skier.plots.seeds import finish_epoch_axes, plot_seed_band
from skier.record.groups import SeedBands

__all__ = ["compare_metrics", "plot_compare_curves", "plot_compare_figure", "plot_lr_steps"]


def _points(history: History, key: str) -> tuple[list[float], list[float]]:
    if key not in history.keys:
        return [], []
    epochs = history.column("epoch")
    values = history.column(key)
    pairs = [(e, v) for e, v in zip(epochs, values, strict=True) if not math.isnan(v)]
    return [e for e, _ in pairs], [v for _, v in pairs]


def compare_metrics(histories: Mapping[str, History]) -> list[str]:
    """The metrics worth a panel: ``val_error``/``val_loss`` first, then the train ones, then the
    rest (``lr`` and gradient-flow columns left out).

    >>> h = History(); h.append({"epoch": 1, "loss": 1.0, "val_loss": 1.2, "lr": 0.1})
    >>> compare_metrics({"a": h})
    ['val_loss', 'loss']
    """
    found: list[str] = []
    for history in histories.values():
        found += [k for k in history.keys if k not in found]
    preferred = ["val_error", "val_loss", "error", "loss"]
    rest = [
        k
        for k in found
        if k not in preferred
        and k not in ("epoch", "lr", "epoch_time", "penalty")
        and not k.startswith("grad")
    ]
    return [k for k in preferred if k in found] + sorted(rest)[:2]


def plot_compare_curves(
    histories: Mapping[str, History],
    metric: str,
    ax: Axes | None = None,
    *,
    bands: Mapping[str, SeedBands] | None = None,
) -> Axes:
    """One line per run of ``metric`` against epoch; runs without the metric are left out. A
    group of runs over seeds in ``bands`` (same label) is drawn as its mean with a ± std band.

    >>> ax = plot_compare_curves({"a": history_a, "b": history_b}, "val_loss")  # doctest: +SKIP
    """
    if ax is None:
        ax = new_figure().add_subplot()
    drawn = 0
    for label, history in histories.items():
        group = (bands or {}).get(label)
        if group is not None and metric in group.bands:
            plot_seed_band(group, metric, ax, label=label)
            drawn += 1
            continue
        epochs, values = _points(history, metric)
        if epochs:
            ax.plot(epochs, values, marker="o", markersize=2.5, linewidth=1.3, label=label)
            drawn += 1
    return finish_epoch_axes(ax, metric, drawn=drawn > 0)


def plot_compare_figure(
    histories: Mapping[str, History] | Any,
    metrics: Sequence[str] | None = None,
    *,
    bands: Mapping[str, SeedBands] | None = None,
) -> Figure:
    """Panels side by side (two per row), one per metric, every run overlaid in each.

    ``histories``: run label → History, or a comparison of runs
    (:func:`skier.report.comparison.compare_runs`, whose ``.histories`` and ``.bands`` it
    draws); ``bands``: the groups of runs over seeds among them, drawn as mean ± std.

    >>> fig = plot_compare_figure({"a": history_a, "b": history_b})  # doctest: +SKIP
    """
    if not isinstance(histories, Mapping):
        found = getattr(histories, "histories", None)
        if not isinstance(found, Mapping):
            raise TypeError(
                "histories must map run labels to History objects, or be a comparison of runs "
                f"(compare_runs); got {type(histories).__name__}."
            )
        bands = bands if bands is not None else getattr(histories, "bands", None)
        histories = found
    keys = list(metrics) if metrics else compare_metrics(histories)
    keys = keys or ["loss"]
    fig, axes = panel_axes(len(keys))
    for key, ax in zip(keys, axes, strict=True):
        plot_compare_curves(histories, key, ax, bands=bands)
    return fig


def plot_lr_steps(
    lrs: Sequence[float],
    ax: Axes | None = None,
    *,
    steps_per_epoch: int | None = None,
    log_scale: bool = False,
) -> Axes:
    """The lr used at every optimizer step of a run (its ``lr.csv``); epochs on a second axis
    when ``steps_per_epoch`` is known.

    >>> ax = plot_lr_steps([0.1, 0.1, 0.05, 0.025])
    >>> ax.get_xlabel()
    'optimizer step'
    """
    if ax is None:
        ax = new_figure(width=6.4, height=3.2).add_subplot()
    steps = list(range(1, len(lrs) + 1))
    ax.plot(steps, list(lrs), color="tab:purple", linewidth=1.4)
    if log_scale and lrs and min(lrs) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("lr")
    ax.set_title("learning rate per step")
    ax.grid(True, alpha=0.3)
    if steps_per_epoch:
        per = float(steps_per_epoch)

        def to_epoch(step: Any) -> Any:
            return step / per

        def to_step(epoch: Any) -> Any:
            return epoch * per

        top = ax.secondary_xaxis("top", functions=(to_epoch, to_step))
        top.set_xlabel("epoch")
    if not lrs:
        ax.text(0.5, 0.5, "no steps recorded", ha="center", va="center", transform=ax.transAxes)
    return ax
