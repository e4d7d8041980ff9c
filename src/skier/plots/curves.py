"""Learning curves: train vs validation loss, error and the asked-for metrics per epoch, best and
stop epochs marked.

Figures are made with :class:`matplotlib.figure.Figure` on the Agg canvas, never through pyplot,
so plotting touches no global state: it is headless and safe in threads, and nothing needs
closing.

>>> from types import SimpleNamespace
>>> from skier.history import History
>>> h = History()
>>> h.extend([{"epoch": 1, "loss": 1.0, "val_loss": 1.1}, {"epoch": 2, "loss": 0.5}])
>>> result = SimpleNamespace(history=h, best_epoch=1, stop_reason=None, test_metrics={})
>>> fig = plot_learning_figure(result)
>>> len(fig.axes)   # no "error" column: a single loss panel
1
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias

from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

from skier._io import atomic_write_bytes
from skier.history import History
from skier.plots.figure import DISPLAY_DPI, new_figure

__all__ = [
    "LearningResult",
    "LearningSource",
    "RecordedCurves",
    "learning_result",
    "new_figure",
    "plot_learning_curves",
    "plot_learning_figure",
    "save_figure",
]

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"
_BEST_COLOR = "tab:green"
_STOP_COLOR = "tab:red"
_AVERAGE_COLOR = "tab:purple"  # the averaged weights' validation curve (train.ema, train.swa)
_AVERAGES = {"ema": "EMA", "swa": "SWA"}


class LearningResult(Protocol):
    """What the curve plots read from a result (``FitResult`` has these)."""

    @property
    def history(self) -> History: ...

    @property
    def best_epoch(self) -> int | None: ...

    @property
    def stop_reason(self) -> str | None: ...

    @property
    def test_metrics(self) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class RecordedCurves:
    """A :class:`LearningResult` made from a bare :class:`History` or a run directory."""

    history: History
    best_epoch: int | None = None
    stop_reason: str | None = None
    test_metrics: Mapping[str, float] = field(default_factory=dict)
    monitor: str | None = None


# What the curve plots accept: a result (a FitResult), its History, or a run directory.
LearningSource: TypeAlias = "LearningResult | History | str | os.PathLike[str]"


def learning_result(source: LearningSource) -> LearningResult:
    """``source`` as something the curve plots read: a result as it is, a History with no
    best or stop epoch, a run directory from its ``metrics.csv`` and ``result.json``.

    >>> h = History(rows=[{"epoch": 1.0, "loss": 0.5}])
    >>> learning_result(h).best_epoch is None
    True
    """
    if isinstance(source, History):
        return RecordedCurves(source)
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise ValueError(
                f"a run directory must be a folder; got {str(folder)!r}, which is not one. "
                "Pass a FitResult, its History, or the folder a run was written to."
            )
        from skier.record.rundir import RunDir  # the store's SQLAlchemy only when reading a run

        run = RunDir(folder)
        result = run.read_result() if run.result_json.is_file() else {}
        best = result.get("best_epoch")
        tests = result.get("test_metrics") or {}
        return RecordedCurves(
            run.read_metrics(),
            best_epoch=int(best) if isinstance(best, int | float) else None,
            stop_reason=result.get("stop_reason") or None,
            test_metrics={str(k): float(v) for k, v in tests.items() if v is not None},
            monitor=result.get("monitor") or None,
        )
    if not isinstance(getattr(source, "history", None), History):
        raise TypeError(
            "the curves must come from a result with a .history (a FitResult), a History or "
            f"a run directory; got {type(source).__name__}."
        )
    return source


def _epochs(history: History) -> list[float]:
    epochs = history.column("epoch")
    if any(math.isnan(e) for e in epochs):  # no usable "epoch" column: number the rows from 1
        return [float(i + 1) for i in range(len(history))]
    return epochs


def _points(history: History, key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key``, leaving out epochs where it is missing or NaN."""
    epochs = _epochs(history)
    pairs = [(e, v) for e, v in zip(epochs, history.column(key), strict=True) if not math.isnan(v)]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _has(history: History, key: str) -> bool:
    return any(not math.isnan(v) for v in history.column(key))


def _stop_epoch(result: LearningResult, last_epoch: float | None) -> float | None:
    """The epoch training stopped at, when that is worth marking (an early or forced stop)."""
    stop = getattr(result, "stop_epoch", None)  # optional: results may name it explicitly
    if stop is not None and (last_epoch is None or stop != last_epoch):
        return float(stop)
    if result.stop_reason and last_epoch is not None:
        return last_epoch
    return None


def plot_learning_curves(
    result: LearningSource, ax: Axes | None = None, *, metric: str = "loss"
) -> Axes:
    """Draw train ``metric`` and ``val_{metric}`` per epoch on ``ax`` (a new figure if None),
    and the averaged weights' ``val_ema_{metric}`` or ``val_swa_{metric}`` beside them if logged.

    ``result`` is a ``FitResult``, its ``History`` or a run directory (see
    :func:`learning_result`).

    NaN points (e.g. epochs without validation) are skipped; every point gets a marker so a
    lone validation point still shows. The best epoch is a dashed green line with a star on the
    validation (else train) value; an early stop is a dotted red line labelled with its epoch.

    >>> ax = plot_learning_curves(result, metric="loss")   # doctest: +SKIP
    """
    run = learning_result(result)
    if ax is None:
        ax = new_figure().add_subplot()
    history = run.history
    for key, label, color in (
        (metric, "train", _TRAIN_COLOR),
        (f"val_{metric}", "validation", _VAL_COLOR),
        *((f"val_{tag}_{metric}", f"validation, {name} weights", _AVERAGE_COLOR)
          for tag, name in _AVERAGES.items()),
    ):  # fmt: skip
        epochs, values = _points(history, key)
        if epochs:
            ax.plot(epochs, values, marker="o", markersize=3, color=color, label=label)

    last_epoch = _epochs(history)[-1] if len(history) else None

    best = run.best_epoch
    if best is not None:
        ax.axvline(
            best, color=_BEST_COLOR, linestyle="--", linewidth=1, label=f"best (epoch {best})"
        )
        # the star goes on the judged curve: the averaged weights' when the monitor is theirs
        monitored = str(getattr(run, "monitor", None) or "")
        averaged = [f"val_{t}_{metric}" for t in _AVERAGES if monitored.startswith(f"val_{t}_")]
        for key in (*averaged, f"val_{metric}", metric):
            epochs, values = _points(history, key)
            if best in epochs:
                ax.plot(
                    [best], [values[epochs.index(best)]], marker="*", markersize=12,
                    color=_BEST_COLOR, linestyle="none",
                )  # fmt: skip
                break

    stop = _stop_epoch(run, last_epoch)
    if stop is not None:
        # The reason can be long: it goes in the report and result.json, the legend stays short.
        ax.axvline(
            stop, color=_STOP_COLOR, linestyle=":", linewidth=1.2, label=f"stop (epoch {stop:g})"
        )

    if len(history) == 0:
        ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def _test_title(test_metrics: Mapping[str, float]) -> str:
    parts = []
    for key, value in test_metrics.items():
        name = key if key.startswith("test_") else f"test_{key}"
        bare = name.removeprefix("test_")
        tag = bare.split("_")[0]
        if tag in _AVERAGES:  # the averaged weights: loss and error, unless the same as the raw
            raw = test_metrics.get(f"test_{bare[len(tag) + 1 :]}", test_metrics.get(bare[4:]))
            if bare.endswith("accuracy") or raw == value:
                continue
        if value is not None and not math.isnan(value):
            parts.append(f"{name.replace('_', ' ')} {value:.4g}")
    return " · ".join(parts)


def _extra_metrics(history: History) -> list[str]:
    """The ``train.metrics`` a history holds (``val_f1_macro`` gives ``f1_macro``): every
    logged validation metric but loss, error, accuracy and the averaged weights' copies."""
    out: list[str] = []
    for key in history.keys:
        name = key.removeprefix("val_")
        if name == key or name in ("loss", "error", "accuracy") or name in out:
            continue
        if name.split("_")[0] not in _AVERAGES and _has(history, key):
            out.append(name)
    return out


def plot_learning_figure(result: LearningSource) -> Figure:
    """Loss and error panels side by side (loss only when there is no error, e.g. regression),
    then a panel for each of ``train.metrics`` that was logged (``val_f1_macro``, ...), three
    panels a row.

    The test metrics, if any, are in the figure title. ``result`` is a ``FitResult``, its
    ``History`` or a run directory (see :func:`learning_result`).

    >>> save_figure(plot_learning_figure(result), "learning_curves.png")   # doctest: +SKIP
    """
    run = learning_result(result)
    history = run.history
    metrics = ["loss"]
    if _has(history, "error") or _has(history, "val_error"):
        metrics.append("error")
    metrics += _extra_metrics(history)
    columns = min(len(metrics), 3)
    rows = math.ceil(len(metrics) / columns)
    fig = new_figure(width=5.2 * columns, height=4.0 * rows)
    for i, metric in enumerate(metrics):
        plot_learning_curves(run, fig.add_subplot(rows, columns, i + 1), metric=metric)
    title = _test_title(run.test_metrics or {})
    if title:
        fig.suptitle(title)
    return fig


def save_figure(
    fig: Figure | SubFigure | None, path: str | Path, *, dpi: int = DISPLAY_DPI
) -> Path:
    """Write ``fig`` as PNG at ``path`` atomically (rendered in memory first).

    ``ax.figure`` may be passed as it is: a sub-figure is saved as its whole figure.
    """
    if isinstance(fig, SubFigure):
        fig = fig.get_figure(root=True)
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib Figure; got {type(fig).__name__}.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())
