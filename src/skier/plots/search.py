"""Figures of model selection: fold curves with their mean, and a search's trials.

Every function draws what it is given (fold histories and mean curves computed by
:mod:`skier.search`, a study summary from :func:`skier.search.tune.study_summary`) with plain
matplotlib on the Agg canvas; none calls ``plt.show()``. The cv plots take a cv result (what
``run_cv`` returns), its fold results or a cv run directory; the search plots a tune result
(what ``run_tune`` returns), its summary or a tune run directory.

>>> summary = {"direction": "minimize", "trials": [
...     {"number": 0, "state": "complete", "value": 0.5, "params": {"optim.lr": 0.01}},
...     {"number": 1, "state": "pruned", "value": 0.9, "params": {"optim.lr": 0.1}}],
...     "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1, "log": True}},
...     "importances": {}}
>>> ax = plot_optimization_history(summary)
>>> ax.get_ylabel()
'objective'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from skier.plots.curves import new_figure

__all__ = [
    "CVSource",
    "SearchSource",
    "cv_folds",
    "cv_metrics",
    "plot_cv_curves",
    "plot_cv_figure",
    "plot_optimization_history",
    "plot_parallel_coordinates",
    "plot_param_importances",
    "plot_slices_figure",
    "plot_table_figure",
    "plot_tune_figure",
    "study_of",
]

_MEAN_COLOR = "black"
_COMPLETE = "tab:blue"
_PRUNED = "tab:gray"
_BEST = "tab:red"


class FoldCurve(Protocol):
    """What the fold plot reads from a fold result (``FoldResult`` has these)."""

    number: int
    repeat: int
    fold: int
    best_epoch: int | None
    history: list[dict[str, float]]


class CVResult(Protocol):
    """A cross-validation result (``run_cv``'s ``CVOutcome``): its folds and its summary."""

    @property
    def folds(self) -> Sequence[FoldCurve]: ...

    @property
    def summary(self) -> Mapping[str, Any]: ...


@dataclass
class RecordedFold:
    """A :class:`FoldCurve` read back from a cv run directory (``folds/<fold id>/``)."""

    number: int
    repeat: int
    fold: int
    best_epoch: int | None
    history: list[dict[str, float]] = field(default_factory=list)


# What the cv plots accept: a cv result, its fold results, or a cv run directory.
CVSource: TypeAlias = "CVResult | Sequence[FoldCurve] | str | os.PathLike[str]"
# What the tune plots accept: a tune result (.summary), its summary, or a tune run directory.
SearchSource: TypeAlias = "Mapping[str, Any] | Any | str | os.PathLike[str]"


def _run_summary(folder: str | os.PathLike[str], argument: str, kind: str) -> dict[str, Any]:
    """The ``result.json`` of a ``kind`` run directory (a clear error for anything else)."""
    from skier.record.rundir import RunDir  # the store's modules only when reading a run

    run = RunDir(Path(folder))
    found = run.read_result() if run.result_json.is_file() else {}
    if found.get("kind") != kind:
        what = f"a {found['kind']} run" if found.get("kind") else "no finished run"
        raise ValueError(
            f"{argument} must be a {kind} run directory; got {str(folder)!r}, which holds {what}."
        )
    return found


def cv_folds(source: CVSource, argument: str = "folds") -> tuple[list[FoldCurve], dict[str, Any]]:
    """The fold curves of ``source`` and its summary (empty for bare fold results).

    ``source`` is what ``run_cv`` returned, its ``folds``, or a cv run directory (each fold's
    curve read from ``folds/<fold id>/metrics.csv``).

    >>> cv_folds([])
    ([], {})
    """
    if isinstance(source, str | os.PathLike):
        from skier.record.rundir import RunDir, RunFiles

        summary = _run_summary(source, argument, "cv")
        folds: list[FoldCurve] = []
        for row in summary.get("folds") or []:
            run = RunDir(Path(source) / RunFiles.FOLDS / str(row.get("run_id")))
            rows = run.read_metrics().rows if run.metrics_csv.is_file() else []
            chosen = row.get("chosen_epoch")
            folds.append(RecordedFold(int(row["number"]), int(row["repeat"]), int(row["fold"]),
                                      None if chosen is None else int(chosen), rows))  # fmt: skip
        return folds, summary
    found, recorded = getattr(source, "folds", None), getattr(source, "summary", None)
    if found is not None and isinstance(recorded, Mapping):
        return list(found), dict(recorded)
    if isinstance(source, Sequence) and all(hasattr(f, "history") for f in source):
        return list(cast(Sequence[FoldCurve], source)), {}
    raise TypeError(
        f"{argument} must be a cross-validation result (what run_cv returns), its fold results "
        f"or a cv run directory; got {type(source).__name__}."
    )


def study_of(source: SearchSource, argument: str = "summary") -> Mapping[str, Any]:
    """The study summary of ``source``: a tune result (``run_tune``'s, via ``.summary``), the
    summary itself, or a tune run directory (its ``result.json``).

    >>> study_of({"trials": []})
    {'trials': []}
    """
    if isinstance(source, str | os.PathLike):
        return _run_summary(source, argument, "tune")
    summary = source if isinstance(source, Mapping) else getattr(source, "summary", None)
    if not isinstance(summary, Mapping) or "trials" not in summary:
        raise TypeError(
            f"{argument} must be a search result (what run_tune returns), its summary or a tune "
            f"run directory; got {type(source).__name__}."
        )
    return summary


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    pairs = [
        (float(r["epoch"]), float(r[key]))
        for r in rows
        if key in r and "epoch" in r and math.isfinite(float(r[key]))
    ]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _mean_curve(folds: Sequence[FoldCurve], key: str) -> tuple[list[int], list[float]]:
    from skier.search.crossval import mean_curve  # the mean is search's, drawn here

    return mean_curve(folds, key)  # type: ignore[arg-type]


def cv_metrics(folds: Sequence[FoldCurve], metric: str = "val_loss") -> list[str]:
    """The (at most two) metrics a cv figure shows: ``metric``, then val_accuracy or val_loss.

    >>> cv_metrics([], "val_error")
    ['val_error']
    """
    keys = [metric] + [k for k in ("val_accuracy", "val_loss") if k != metric]
    logged = [k for k in keys if any(k in row for f in folds for row in f.history)]
    return logged[:2] or [metric]


def plot_cv_curves(
    folds: CVSource,
    mean: tuple[Sequence[int], Sequence[float]] | None = None,
    metric: str = "val_loss",
    ax: Axes | None = None,
) -> Axes:
    """Each fold's ``metric`` per epoch (thin), their mean (thick), each fold's chosen epoch (dot).

    ``folds``: a cv result, its fold results or a cv run directory; ``mean`` (epochs, values)
    is computed from the folds when not given.

    >>> ax = plot_cv_curves([], ([1, 2], [0.5, 0.4]))
    >>> ax.get_title()
    'val_loss per fold and mean'
    """
    curves, _ = cv_folds(folds)
    if mean is None:
        mean = _mean_curve(curves, metric)
    if ax is None:
        ax = new_figure().add_subplot()
    for f in curves:
        epochs, values = _series(f.history, metric)
        if not epochs:
            continue
        label = f"fold {f.repeat}.{f.fold}" if len(curves) <= 10 else None
        (line,) = ax.plot(epochs, values, linewidth=1, alpha=0.6, label=label)
        if f.best_epoch is not None and float(f.best_epoch) in epochs:
            i = epochs.index(float(f.best_epoch))
            ax.plot([epochs[i]], [values[i]], marker="o", color=line.get_color(), linestyle="none")
    if mean[0]:
        ax.plot(list(mean[0]), list(mean[1]), color=_MEAN_COLOR, linewidth=2.5, label="mean")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per fold and mean")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncol=2)
    return ax


def plot_cv_figure(
    folds: CVSource,
    means: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
    *,
    metric: str | None = None,
) -> Figure:
    """One panel per metric in ``means`` (e.g. val_loss and val_accuracy).

    ``folds``: a cv result, its fold results or a cv run directory. Without ``means``, the
    panels are the cv ``metric`` (the result's, else val_loss) and val_accuracy (or
    val_loss), their means from the folds.
    """
    curves, summary = cv_folds(folds)
    if means is None:
        keys = cv_metrics(curves, metric or str(summary.get("metric") or "val_loss"))
        means = {k: _mean_curve(curves, k) for k in keys}
    keys = list(means) or ["val_loss"]
    fig = new_figure(6.0 * len(keys), 4.0)
    for i, key in enumerate(keys):
        plot_cv_curves(curves, means.get(key, ([], [])), key, fig.add_subplot(1, len(keys), i + 1))
    return fig


def _values(summary: Mapping[str, Any], states: Sequence[str]) -> list[tuple[int, float]]:
    return [
        (int(t["number"]), float(t["value"]))
        for t in summary["trials"]
        if t["state"] in states and t["value"] is not None and math.isfinite(float(t["value"]))
    ]


def plot_optimization_history(source: SearchSource, ax: Axes | None = None) -> Axes:
    """Objective per trial (pruned trials: their last reported value, grey), best so far."""
    summary = study_of(source)
    if ax is None:
        ax = new_figure().add_subplot()
    complete = _values(summary, ("complete",))
    pruned = _values(summary, ("pruned",))
    if complete:
        ax.plot(*zip(*complete, strict=True), "o", color=_COMPLETE, label="complete")
    if pruned:
        ax.plot(*zip(*pruned, strict=True), "x", color=_PRUNED, label="pruned (last report)")
    minimize = summary.get("direction", "minimize") == "minimize"
    best_x, best_y, best = [], [], None
    for number, value in sorted(complete):
        if best is None or (value < best if minimize else value > best):
            best = value
        best_x.append(number)
        best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color=_BEST, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title("Optimization history")
    ax.grid(alpha=0.3)
    if complete or pruned:
        ax.legend(fontsize="small")
    return ax


def plot_param_importances(source: SearchSource, ax: Axes | None = None) -> Axes:
    """Horizontal bars of each parameter's importance (they sum to 1)."""
    summary = study_of(source)
    if ax is None:
        ax = new_figure().add_subplot()
    items = sorted(summary.get("importances", {}).items(), key=lambda kv: kv[1])
    if items:
        names, values = zip(*items, strict=True)
        ax.barh(list(names), list(values), color=_COMPLETE)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize="small")
    ax.set_xlabel("importance")
    ax.set_title("Parameter importance")
    return ax


def _axis_position(spec: Mapping[str, Any], value: Any) -> float | None:
    """Where ``value`` sits on its parameter's axis, from 0 to 1 (log axes in log space)."""
    if value is None:
        return None
    if spec.get("type") == "categorical":
        labels = [_label(c) for c in spec["choices"]]
        return labels.index(value) / max(len(labels) - 1, 1) if value in labels else None
    low, high = float(spec["low"]), float(spec["high"])
    v = float(value)
    if spec.get("log"):
        low, high, v = math.log10(low), math.log10(high), math.log10(v)
    return 0.5 if high == low else (v - low) / (high - low)


def _label(choice: Any) -> Any:
    import json

    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice)


def plot_parallel_coordinates(source: SearchSource, ax: Axes | None = None) -> Axes:
    """One line per complete trial across every parameter's axis, coloured by the objective."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    summary = study_of(source)
    if ax is None:
        ax = new_figure(8.0, 4.5).add_subplot()
    space: Mapping[str, Any] = summary.get("space") or {}
    names = list(space)
    trials = [t for t in summary["trials"] if t["state"] == "complete" and t["value"] is not None]
    if not names or not trials:
        return ax
    values = [float(t["value"]) for t in trials]
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    cmap = colormaps["viridis_r" if summary.get("direction") == "minimize" else "viridis"]
    xs = list(range(len(names) + 1))
    for t, value in sorted(zip(trials, values, strict=True), key=lambda p: -p[1]):
        ys = [_axis_position(space[n], t["params"].get(n)) for n in names]
        ys.append(norm(value))
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        ax.plot(*zip(*points, strict=True), color=cmap(norm(value)), alpha=0.7, linewidth=1.2)
    for x, n in enumerate(names):
        spec = space[n]
        if spec.get("type") == "categorical":
            lo, hi = str(spec["choices"][0]), str(spec["choices"][-1])
        else:
            lo, hi = f"{spec['low']:g}", f"{spec['high']:g}"
        ax.text(x, -0.06, lo, ha="center", va="top", fontsize="x-small")
        ax.text(x, 1.06, hi, ha="center", va="bottom", fontsize="x-small")
    ax.text(len(names), -0.06, f"{min(values):.4g}", ha="center", va="top", fontsize="x-small")
    ax.text(len(names), 1.06, f"{max(values):.4g}", ha="center", va="bottom", fontsize="x-small")
    for x in xs:
        ax.axvline(x, color="0.6", linewidth=0.8)
    ax.set_xticks(xs, [*names, "objective"], fontsize="small", rotation=15)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    ax.set_title("Parallel coordinates (log axes where the space is log)")
    return ax


def plot_slices_figure(source: SearchSource) -> Figure:
    """Objective against each parameter, one panel per parameter (pruned trials grey)."""
    summary = study_of(source)
    space: Mapping[str, Any] = summary.get("space") or {}
    names = list(space) or ["(no parameters)"]
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = new_figure(4.2 * cols, 3.3 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        spec = space.get(name, {})
        categorical = spec.get("type") == "categorical"
        labels = [_label(c) for c in spec.get("choices", [])]
        for state, marker, color in (("complete", "o", _COMPLETE), ("pruned", "x", _PRUNED)):
            pts = [
                (t["params"].get(name), float(t["value"]))
                for t in summary["trials"]
                if t["state"] == state and t["value"] is not None and name in t["params"]
            ]
            if categorical:
                pts = [(labels.index(x), y) for x, y in pts if x in labels]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker, color=color, alpha=0.7, label=state)
        if categorical:
            ax.set_xticks(range(len(labels)), [str(c) for c in labels], fontsize="x-small")
            ax.set_xlim(-0.5, len(labels) - 0.5)
        elif spec.get("log"):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
    return fig


def plot_tune_figure(source: SearchSource) -> Figure:
    """A search at a glance: the optimization history, then the parameter importances (when
    there are any) and the parallel coordinates (when a trial completed).

    >>> len(plot_tune_figure({"direction": "minimize", "trials": []}).axes)
    1
    """
    summary = study_of(source, "source")
    panels: list[Any] = [plot_optimization_history]
    if summary.get("importances"):
        panels.append(plot_param_importances)
    if summary.get("space") and any(t["state"] == "complete" for t in summary["trials"]):
        panels.append(plot_parallel_coordinates)
    fig = new_figure(5.5 * len(panels), 4.0)
    for i, draw in enumerate(panels):
        draw(summary, fig.add_subplot(1, len(panels), i + 1))
    return fig


def plot_table_figure(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> Figure:
    """A table as a figure (for reports that embed images)."""
    fig = new_figure(min(1.0 + 1.0 * len(head), 16.0), 0.6 + 0.28 * (len(rows) + 1))
    ax = fig.add_subplot()
    ax.axis("off")
    cells = [[str(c) for c in row] for row in rows] or [["" for _ in head]]
    table = ax.table(cellText=cells, colLabels=list(head), loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(head))))
    return fig
