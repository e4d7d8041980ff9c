"""Several runs side by side, from Python: what ``skier compare`` prints, as an object that
shows itself as tables in a notebook, as one line in a terminal, as a DataFrame, and draws
the runs' curves overlaid. No torch here.

>>> import tempfile
>>> from skier.record import RunStore, default_store_url
>>> with RunStore(default_store_url(tempfile.mkdtemp())) as store:
...     a = store.create_run("a", {"optim": {"lr": 0.1}}, None)
...     store.log_epoch(a, 1, {"val_loss": 0.5})
...     b = store.create_run("b", {"optim": {"lr": 0.01}}, None)
...     store.log_epoch(b, 1, {"val_loss": 0.4})
...     found = compare_runs([a, b], store=store)
>>> found.values("val_loss"), found.differences
([0.5, 0.4], [('optim.lr', ['0.1', '0.01'])])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skier._html import data_frame, html_table
from skier.errors import StoreError, did_you_mean, problem
from skier.history import History
from skier.record import RunStore
from skier.record.groups import SeedBands
from skier.record.kinds import RUN_KINDS
from skier.report.views import RunView, config_differences, load_view

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RunComparison",
    "compare_runs",
    "group_bands",
    "run_labels",
    "spread_at_best",
    "value_at_best",
]


def group_bands(view: RunView) -> SeedBands | None:
    """A group of runs over seeds' bands (every metric's mean ± std per epoch), else None."""
    kind = RUN_KINDS.get(view.kind)
    summary = view.summary if kind is not None and kind.role == "group" else {}
    if not isinstance(summary.get("bands"), dict):
        return None
    return SeedBands.from_dict(summary)


def _group_final(view: RunView, key: str, stat: str) -> float | None:
    final = (view.summary.get("final") or {}).get(key)
    value = final.get(stat) if isinstance(final, dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def spread_at_best(view: RunView, key: str) -> float | None:
    """A group's std over its seeds of ``key`` at each seed's best epoch; None for one run."""
    return _group_final(view, key, "std") if group_bands(view) is not None else None


def value_at_best(view: RunView, key: str) -> float | None:
    """``key`` at the run's best epoch, else at its last epoch that has a value; for a group
    of runs over seeds, the mean over its seeds of each one's value at its best epoch.

    >>> view = RunView("r", None, None, {"best_epoch": 1}, {},
    ...                History(rows=[{"epoch": 1.0, "loss": 0.3}, {"epoch": 2.0, "loss": 0.2}]))
    >>> value_at_best(view, "loss")
    0.3
    """
    if group_bands(view) is not None:
        return _group_final(view, key, "mean")
    history = view.history
    if key not in history.keys:
        return None
    best = view.get("best_epoch")
    rows = history.rows
    for row in rows:
        if best is not None and row.get("epoch") == best and not math.isnan(row.get(key, math.nan)):
            return float(row[key])
    for row in reversed(rows):
        if not math.isnan(row.get(key, math.nan)):
            return float(row[key])
    return None


def run_labels(views: Sequence[RunView]) -> list[str]:
    """Short, unique labels: the name, with the id when names repeat."""
    names = [v.name for v in views]
    return [f"{n} ({v.id})" if names.count(n) > 1 else n for n, v in zip(names, views, strict=True)]


@dataclass
class RunComparison:
    """Runs side by side: each run's ``metrics`` at its best epoch (else its last), its test
    metrics, and the config settings that differ between the runs."""

    views: list[RunView]
    metrics: list[str]

    @classmethod
    def of(cls, views: Sequence[RunView], metric: str | None = None) -> RunComparison:
        """Compare ``views`` on ``metric`` (default: the metrics worth a panel, val_ first)."""
        from skier.plots.compare import compare_metrics

        histories = {v.id: v.history for v in views}
        if metric and not any(metric in h.keys for h in histories.values()):
            known = sorted({k for h in histories.values() for k in h.keys if k != "epoch"})
            raise StoreError(
                problem("metric", f"one the runs recorded ({', '.join(known)})", metric,
                        did_you_mean(metric, known))
            )  # fmt: skip
        return cls(list(views), [metric] if metric else compare_metrics(histories))

    @property
    def labels(self) -> list[str]:
        """Short, unique labels: the name, with the id when names repeat."""
        return run_labels(self.views)

    @property
    def differences(self) -> list[tuple[str, list[str]]]:
        """The settings that differ: (dotted key, one value per run)."""
        return config_differences({v.id: v.config for v in self.views})

    @property
    def histories(self) -> dict[str, History]:
        """Each run's per-epoch metrics, by label (what the comparison figure draws)."""
        return {label: v.history for label, v in zip(self.labels, self.views, strict=True)}

    @property
    def bands(self) -> dict[str, SeedBands]:
        """The groups of runs over seeds among the runs, by label: every metric's mean ± std."""
        found = {label: group_bands(v) for label, v in zip(self.labels, self.views, strict=True)}
        return {label: bands for label, bands in found.items() if bands is not None}

    def values(self, key: str) -> list[float | None]:
        """``key`` of each run at its best epoch (else its last), in the runs' order; a
        group's mean over its seeds."""
        return [value_at_best(v, key) for v in self.views]

    def spreads(self, key: str) -> list[float | None]:
        """A group's std over its seeds of ``key`` (None for a single run), in the runs' order."""
        return [spread_at_best(v, key) for v in self.views]

    def cells(self, key: str) -> list[str | float | None]:
        """``key`` of each run as shown: a value, or a group's ``mean ± std``."""
        return [
            value if spread is None or value is None else f"{value:.4g} ± {spread:.4g}"
            for value, spread in zip(self.values(key), self.spreads(key), strict=True)
        ]

    def _tests(self) -> list[str]:
        found: list[str] = []
        for v in self.views:
            found += [k for k in v.test_metrics if k not in found]
        return found

    def __repr__(self) -> str:
        differ = [k for k, _ in self.differences]
        settings = "same config"
        if differ:
            shown = ", ".join(differ[:3]) + (", …" if len(differ) > 3 else "")
            settings = f"{len(differ)} setting{'' if len(differ) == 1 else 's'} differ: {shown}"
        return f"RunComparison({len(self.views)} runs: {', '.join(self.labels)}; {settings})"

    def _repr_html_(self) -> str:
        """The runs with their metrics, then the settings that differ (notebooks)."""
        tests = self._tests()
        head = ["run", "id", "kind", "status", "epochs", *self.metrics, *tests]
        columns = [self.cells(k) for k in self.metrics]
        rows = [
            [label, v.id, v.kind, v.status, len(v.history)]
            + [column[i] for column in columns]
            + [v.test_metrics.get(k) for k in tests]
            for i, (label, v) in enumerate(zip(self.labels, self.views, strict=True))
        ]
        caption = "Runs (metrics at each run's best epoch, else its last; a group: mean ± std)"
        html = html_table(head, rows, caption=caption)
        differences = self.differences
        if differences:
            html += html_table(
                ["setting", *self.labels],
                [[key, *values] for key, values in differences],
                caption="Config differences",
            )
        return html

    def to_pandas(self) -> Any:
        """One row per run: id, name, kind, status, epochs, the metrics, the test metrics and
        every setting that differs."""
        tests = self._tests()
        differences = self.differences
        rows = [
            {"id": v.id, "name": v.name, "kind": v.kind, "status": v.status,
             "epochs": len(v.history), **{k: value_at_best(v, k) for k in self.metrics},
             **{f"{k}_std": spread_at_best(v, k) for k in self.metrics if group_bands(v)},
             **{k: v.test_metrics.get(k) for k in tests},
             **{key: values[i] for key, values in differences}}
            for i, v in enumerate(self.views)
        ]  # fmt: skip
        return data_frame(rows, None, owner="RunComparison.to_pandas")

    def plot(self) -> Figure:
        """The runs' curves overlaid, one panel per metric, a group's as mean ± std bands
        (:func:`skier.plots.compare.plot_compare_figure`)."""
        from skier.plots.compare import plot_compare_figure

        return plot_compare_figure(self.histories, self.metrics, bands=self.bands)


def compare_runs(
    runs: Sequence[str | Path],
    *,
    store: RunStore | None = None,
    metric: str | None = None,
) -> RunComparison:
    """Compare ``runs`` (ids, id prefixes, names or run directories), as ``skier compare``
    does; a notebook shows the result as tables, ``.plot()`` overlays the curves.

    >>> compare_runs(["runs/20261122-101500-ab12cd", "runs/20261122-103000-cd34ef"])  # doctest: +SKIP
    """  # noqa: E501
    if isinstance(runs, str | Path):
        raise TypeError(
            f"runs must be a list of run ids, names or run directories; got one {runs!r}."
        )
    views = [load_view(ref, store=store, related=False) for ref in runs]
    return RunComparison.of(views, metric)
