"""The LR range test's curve: loss against lr, with the suggested lrs marked.

Draws an :class:`~skier.diagnostics.lr_range.LRRangeResult` as it is: the smoothed loss, the
raw per-batch losses faintly behind it, and a vertical line for each suggestion the test
made (the chosen one solid and thick). Like every skier plot it computes nothing and never
calls ``plt.show()``.

>>> ax = plot_lr_range(result)                                  # doctest: +SKIP
>>> save_figure(ax.figure, "lr_range.png")                      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from matplotlib.axes import Axes

from skier.plots.curves import new_figure

if TYPE_CHECKING:  # the plot only reads the result; no torch needed at run time
    from skier.diagnostics.lr_range import LRRangeResult

__all__ = ["plot_lr_range"]

_SMOOTHED_COLOR = "tab:blue"
_STOP_COLOR = "tab:red"
_RULE_COLORS = {"valley": "tab:green", "steepest": "tab:orange", "minimum": "tab:purple"}
# Above the loss the curve started from, show at most this share of its fall: a diverged
# run ends far above everything else and would squash the part worth reading.
_HEADROOM = 0.5


def _nan_if_not_finite(values: Sequence[float]) -> list[float]:
    # matplotlib leaves a gap at NaN; an infinity would break the autoscaling.
    return [v if math.isfinite(v) else math.nan for v in values]


def _y_limits(smoothed: Sequence[float], raw: Sequence[float]) -> tuple[float, float] | None:
    """Limits that show the whole descent and cut off the explosion after the minimum."""
    finite = [(i, v) for i, v in enumerate(smoothed) if math.isfinite(v)]
    if len(finite) < 2:
        return None
    low_index, low = min(finite, key=lambda p: p[1])
    start_level = max(v for i, v in finite if i <= low_index)
    fall = start_level - low
    top = max(v for _, v in finite)
    if fall > 0.0:
        top = min(top, start_level + _HEADROOM * fall)
    bottom = min([low, *(v for v in raw if math.isfinite(v))])
    if not top > bottom:
        return None
    pad = 0.05 * (top - bottom)
    return bottom - pad, top + pad


def plot_lr_range(
    result: LRRangeResult, ax: Axes | None = None, *, log_scale: bool = True, show_raw: bool = True
) -> Axes:
    """Draw the LR range test's loss against lr on ``ax`` (a new figure if None).

    The smoothed loss is the solid line; ``show_raw`` adds the per-batch losses faintly. Each
    suggestion that is not None is a vertical line named with its value in the legend; the
    chosen one (``result.suggestion``) is solid and thick, the others dashed. A run that
    diverged has its last lr marked in red. The y-axis stops a little above the loss the
    curve fell from, so the blow-up at the end does not flatten the descent. ``log_scale``:
    a log lr axis (the natural one for an exponential ramp).

    >>> ax = plot_lr_range(result, show_raw=False)   # doctest: +SKIP
    >>> [t.get_text() for t in ax.get_legend().get_texts()]   # doctest: +SKIP
    ['smoothed loss', 'valley 0.0034 (chosen)', 'steepest 0.0071', 'minimum 0.0038']
    """
    if ax is None:
        ax = new_figure(width=7.0, height=4.0).add_subplot()
    lrs = list(result.lrs)
    smoothed = _nan_if_not_finite(result.smoothed)
    raw = _nan_if_not_finite(result.losses) if show_raw else []
    if not lrs:
        ax.text(0.5, 0.5, "no steps", ha="center", va="center", transform=ax.transAxes)
    if lrs and show_raw:
        ax.plot(lrs, raw, color=_SMOOTHED_COLOR, alpha=0.3, linewidth=0.8, label="loss per batch")
    if lrs:
        ax.plot(lrs, smoothed, color=_SMOOTHED_COLOR, linewidth=1.8, label="smoothed loss")
    for name, value in result.suggestions.items():
        if value is None or not math.isfinite(value):
            continue
        chosen = name == result.suggestion
        color = _RULE_COLORS.get(name, "tab:gray")
        ax.axvline(
            value, color=color, linestyle="-" if chosen else "--",
            linewidth=2.4 if chosen else 1.1, alpha=1.0 if chosen else 0.8,
            zorder=3 if chosen else 2,
            label=f"{name} {value:.2g}" + (" (chosen)" if chosen else ""),
        )  # fmt: skip
        if value in lrs:  # the rule picked one of the steps: mark it on the curve too
            at = lrs.index(value)
            ax.plot(
                [value], [smoothed[at]], marker="o", markersize=7 if chosen else 5,
                color=color, linestyle="none", zorder=4, label="_nolegend_",
            )  # fmt: skip
    if result.diverged and lrs:
        ax.axvline(
            lrs[-1], color=_STOP_COLOR, linestyle=":", linewidth=1.2,
            label=f"stop: diverged at {lrs[-1]:.2g}",
        )  # fmt: skip
    limits = _y_limits(smoothed, raw)
    if limits is not None:
        ax.set_ylim(*limits)
    if log_scale:
        ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    settings = result.settings
    ax.set_title(
        f"LR range test ({settings.mode} ramp, {len(lrs)} of {settings.num_steps} steps)",
        fontsize="medium",
    )
    ax.grid(True, alpha=0.3, which="both" if log_scale else "major")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax
