"""Runs over seeds: every metric of a group as its mean curve with a ± std band around it.

Plots compute nothing: they draw a :class:`~skier.record.groups.SeedBands` (what a group of
runs over seeds records; ``seed_bands`` computes it). No torch here.

>>> from skier.history import History
>>> from skier.record.groups import seed_bands
>>> bands = seed_bands({0: History(rows=[{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]),
...                     1: History(rows=[{"epoch": 1, "loss": 0.8}, {"epoch": 2, "loss": 0.7}])})
>>> ax = plot_seed_band(bands, "loss")
>>> len(ax.collections), ax.get_lines()[0].get_label()   # one band, one mean line
(1, 'mean of 2 seeds')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from skier.plots.figure import new_figure, panel_axes
from skier.record.groups import SeedBands

__all__ = ["band_metrics", "finish_epoch_axes", "plot_seed_band", "plot_seed_bands_figure"]


def band_metrics(bands: SeedBands) -> list[str]:
    """The metrics a group's figure shows: validation first, then training, then the rest.

    >>> from skier.record.groups import Band
    >>> band_metrics(SeedBands([0], {k: Band([], [], [], []) for k in ("lr", "loss", "val_loss")}))
    ['val_loss', 'loss', 'lr']
    """
    preferred = ["val_loss", "val_error", "val_accuracy", "loss", "error"]
    found = bands.metrics
    return [k for k in preferred if k in found] + [k for k in found if k not in preferred]


def plot_seed_band(
    bands: SeedBands,
    metric: str,
    ax: Axes | None = None,
    *,
    label: str | None = None,
    color: str | None = None,
) -> Axes:
    """``metric``'s mean over the seeds per epoch, with the band mean ± std filled around it.

    >>> ax = plot_seed_band(group_bands, "val_loss", label="adam")  # doctest: +SKIP
    """
    if ax is None:
        ax = new_figure(width=6.4, height=4.0).add_subplot()
    band = bands.bands.get(metric)
    points = [] if band is None else [
        (e, m, s) for e, m, s in zip(band.epochs, band.mean, band.std, strict=True)
        if math.isfinite(m)
    ]  # fmt: skip
    if points:
        epochs = [e for e, _, _ in points]
        mean = [m for _, m, _ in points]
        std = [s if math.isfinite(s) else 0.0 for _, _, s in points]
        text = label or f"mean of {len(bands.seeds)} seeds"
        (line,) = ax.plot(epochs, mean, linewidth=1.5, marker="o", markersize=2.5,
                          label=text, color=color)  # fmt: skip
        ax.fill_between(
            epochs,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            color=line.get_color(),
            alpha=0.22,
            linewidth=0,
            label=f"{label} ± std" if label else "± std",
        )
    return finish_epoch_axes(ax, metric, drawn=bool(points))


def finish_epoch_axes(ax: Axes, metric: str, *, drawn: bool) -> Axes:
    """Axes of ``metric`` per epoch: labels, integer epochs, grid, and a legend, or a note
    that nothing was recorded (``drawn`` false)."""
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(True, alpha=0.3)
    return ax


def plot_seed_bands_figure(bands: SeedBands, metrics: Sequence[str] | None = None) -> Figure:
    """Every metric of a group (or ``metrics``) as mean ± std bands, two panels per row.

    >>> fig = plot_seed_bands_figure(group_bands)  # doctest: +SKIP
    """
    keys = list(metrics) if metrics else band_metrics(bands)
    keys = keys or ["loss"]
    fig, axes = panel_axes(len(keys), height=3.6)
    for key, ax in zip(keys, axes, strict=True):
        plot_seed_band(bands, key, ax)
    seeds = ", ".join(str(s) for s in bands.seeds)
    fig.suptitle(f"mean ± std over seeds {seeds}")
    return fig
