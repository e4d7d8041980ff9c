"""The LR range test's curve: loss against lr, with the suggested lrs marked.

Draws an :class:`~skier.diagnostics.lr_range.LRRangeResult` as it is: the smoothed loss, the
raw per-batch losses faintly behind it, and a vertical line for each suggestion the test
made (the chosen one solid and thick). Like every skier plot it computes nothing and never
calls ``plt.show()``.

>>> ax = plot_lr_range(result)                                  # doctest: +SKIP
>>> save_figure(ax.figure, "lr_range.png")                      # doctest: +SKIP
>>> plot_lr_range("runs/20261122-101500-ab12cd")                # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from matplotlib.axes import Axes

from skier.config import LRFindConfig
from skier.plots.curves import new_figure

__all__ = ["LRRangeSource", "RecordedLRRange", "lr_range_of", "plot_lr_range"]


class LRRangeLike(Protocol):
    """What the plot reads from an LR range test (``LRRangeResult`` has these)."""

    @property
    def lrs(self) -> Sequence[float]: ...
    @property
    def losses(self) -> Sequence[float]: ...
    @property
    def smoothed(self) -> Sequence[float]: ...
    @property
    def suggestions(self) -> Mapping[str, float | None]: ...
    @property
    def suggestion(self) -> str: ...
    @property
    def diverged(self) -> bool: ...
    @property
    def settings(self) -> LRFindConfig: ...


@dataclass(frozen=True)
class RecordedLRRange:
    """An LR range test read back from a run directory."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float | None]
    suggestion: str
    diverged: bool
    settings: LRFindConfig


# What the plot accepts: the result, or a run directory that holds one (an lr_find run, or a
# training run that chose its lr with the test, optim.lr: auto).
LRRangeSource: TypeAlias = "LRRangeLike | str | os.PathLike[str]"


def _floats(values: Sequence[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def lr_range_of(source: LRRangeSource) -> LRRangeLike:
    """``source`` as something the plot reads: a result as it is; a run directory from its
    ``result.json`` (an lr_find run) or its ``lr_find.json`` (a training run with
    ``optim.lr: auto``)."""
    if isinstance(source, str | os.PathLike):
        from skier.record.rundir import RunDir, RunFiles  # the store's modules only when reading

        run = RunDir(Path(source))
        found = run.read_result() if run.result_json.is_file() else {}
        data = found.get("result") if found.get("kind") == "lr_find" else None
        if data is None and (run.path / RunFiles.LR_FIND_JSON).is_file():
            data = json.loads((run.path / RunFiles.LR_FIND_JSON).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(
                f"result must be an LR range test or a run directory that holds one; got "
                f"{str(source)!r}, which holds none (an lr_find run or a training run with "
                "optim.lr: auto does)."
            )
        return RecordedLRRange(
            _floats(data["lrs"]), _floats(data["losses"]), _floats(data["smoothed"]),
            {k: None if v is None else float(v) for k, v in data["suggestions"].items()},
            str(data["suggestion"]), bool(data["diverged"]),
            LRFindConfig.model_validate(data["settings"]),
        )  # fmt: skip
    if not all(hasattr(source, name) for name in ("lrs", "smoothed", "suggestions")):
        raise TypeError(
            "result must be an LR range test's result (what lr_range_test returns) or a run "
            f"directory that holds one; got {type(source).__name__}."
        )
    return source


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
    result: LRRangeSource, ax: Axes | None = None, *, log_scale: bool = True, show_raw: bool = True
) -> Axes:
    """Draw the LR range test's loss against lr on ``ax`` (a new figure if None).

    The smoothed loss is the solid line; ``show_raw`` adds the per-batch losses faintly. Each
    suggestion that is not None is a vertical line named with its value in the legend; the
    chosen one (``result.suggestion``) is solid and thick, the others dashed. A run that
    diverged has its last lr marked in red. The y-axis stops a little above the loss the
    curve fell from, so the blow-up at the end does not flatten the descent. ``log_scale``:
    a log lr axis (the natural one for an exponential ramp). ``result``: what
    ``lr_range_test`` returned, or a run directory that holds an LR range test.

    >>> ax = plot_lr_range(result, show_raw=False)   # doctest: +SKIP
    >>> [t.get_text() for t in ax.get_legend().get_texts()]   # doctest: +SKIP
    ['smoothed loss', 'valley 0.0034 (chosen)', 'steepest 0.0071', 'minimum 0.0038']
    """
    result = lr_range_of(result)
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
