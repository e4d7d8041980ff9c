"""Runs over seeds: every metric of a group of runs as its mean ± std per epoch. No torch here.

A group (``skier train CONFIG --seeds 0,1,2``) trains the same config once per seed; what it
records is computed here from its runs' histories, so the runner that writes it, the report
that draws it and ``skier compare`` that compares groups read the same numbers. The std is
the sample standard deviation (``numpy.std(..., ddof=1)``; 0 for one run), as cross-validation
reports it; an epoch's mean is over the runs that reached it and logged a finite value.

>>> from skier.history import History
>>> a = History(rows=[{"epoch": 1.0, "loss": 1.0}, {"epoch": 2.0, "loss": 0.5}])
>>> b = History(rows=[{"epoch": 1.0, "loss": 3.0}])
>>> bands = seed_bands({0: a, 1: b})
>>> bands.bands["loss"].mean, bands.bands["loss"].std, bands.bands["loss"].count
([2.0, 0.5], [1.4142135623730951, 0.0], [2, 1])
>>> bands.mean_rows()
[{'epoch': 1.0, 'loss': 2.0}, {'epoch': 2.0, 'loss': 0.5}]
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skier.history import History

__all__ = ["Band", "SeedBands", "mean_std", "seed_bands"]

# Per-epoch keys that are bookkeeping, not metrics: no band is drawn for them.
_NOT_METRICS = ("epoch", "epoch_time")


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """The mean and sample std of the finite values (NaN, NaN when there are none).

    >>> mean_std([1.0, 3.0, float("nan"), None])
    (2.0, 1.4142135623730951)
    """
    clean = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


@dataclass(frozen=True)
class Band:
    """One metric over a group: per epoch its mean, std and how many runs had a value."""

    epochs: list[int]
    mean: list[float]
    std: list[float]
    count: list[int]

    def to_dict(self) -> dict[str, list[Any]]:
        return {
            "epochs": list(self.epochs),
            "mean": [_clean(v) for v in self.mean],
            "std": [_clean(v) for v in self.std],
            "count": list(self.count),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Band:
        return cls(
            [int(e) for e in data.get("epochs", [])],
            [_float(v) for v in data.get("mean", [])],
            [_float(v) for v in data.get("std", [])],
            [int(c) for c in data.get("count", [])],
        )


@dataclass
class SeedBands:
    """Every metric of a group of runs as a :class:`Band`, with the seeds it is over."""

    seeds: list[int]
    bands: dict[str, Band] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return list(self.bands)

    def mean_rows(self) -> list[dict[str, float]]:
        """The group's mean curves as per-epoch rows (what its store row and metrics.csv hold)."""
        rows: dict[int, dict[str, float]] = {}
        for key, band in self.bands.items():
            for epoch, value in zip(band.epochs, band.mean, strict=True):
                row = rows.setdefault(epoch, {"epoch": float(epoch)})
                if math.isfinite(value):
                    row[key] = value
        return [rows[e] for e in sorted(rows)]

    def to_csv(self) -> str:
        """One row per epoch: ``epoch,<metric>_mean,<metric>_std,<metric>_n,...``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["epoch", *[f"{k}_{s}" for k in self.bands for s in ("mean", "std", "n")]])
        by_epoch: dict[int, dict[str, tuple[float, float, int]]] = {}
        for key, band in self.bands.items():
            for i, epoch in enumerate(band.epochs):
                by_epoch.setdefault(epoch, {})[key] = (band.mean[i], band.std[i], band.count[i])
        for epoch in sorted(by_epoch):
            cells: list[Any] = [epoch]
            for key in self.bands:
                mean, std, n = by_epoch[epoch].get(key, (math.nan, math.nan, 0))
                cells += ["" if math.isnan(mean) else repr(mean),
                          "" if math.isnan(std) else repr(std), n]  # fmt: skip
            writer.writerow(cells)
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "bands": {k: b.to_dict() for k, b in self.bands.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeedBands:
        """The bands a group's result.json (``summary["bands"]``) holds."""
        bands = data.get("bands") or {}
        return cls(
            [int(s) for s in data.get("seeds") or []],
            {str(k): Band.from_dict(v) for k, v in bands.items() if isinstance(v, Mapping)},
        )


def seed_bands(histories: Mapping[int, History] | Sequence[History]) -> SeedBands:
    """The mean ± std per epoch of every metric the runs logged (seed → its run's history).

    >>> seed_bands([History(rows=[{"epoch": 1.0, "val_loss": 0.5}])]).metrics
    ['val_loss']
    """
    if not isinstance(histories, Mapping):
        histories = dict(enumerate(histories))
    keys: list[str] = []
    for history in histories.values():
        keys += [k for k in history.keys if k not in keys and k not in _NOT_METRICS]
    bands: dict[str, Band] = {}
    for key in keys:
        by_epoch: dict[int, list[float]] = {}
        for history in histories.values():
            for row in history.rows:
                value = row.get(key)
                if value is not None and math.isfinite(value) and "epoch" in row:
                    by_epoch.setdefault(int(row["epoch"]), []).append(value)
        epochs = sorted(by_epoch)
        stats = [mean_std(by_epoch[e]) for e in epochs]
        bands[key] = Band(
            epochs, [m for m, _ in stats], [s for _, s in stats], [len(by_epoch[e]) for e in epochs]
        )
    return SeedBands([int(s) for s in histories], bands)


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
