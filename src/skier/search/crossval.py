"""Cross-validation: folds from scikit-learn's splitters, one data bundle per fold, the summary.

The test split is taken off first, exactly as ``skier train`` takes it (same fraction, seed and
stratification), and never enters a fold. The rest (the *development* rows) is split into folds
by scikit-learn: ``RepeatedStratifiedKFold`` / ``RepeatedKFold`` for k-fold,
``StratifiedShuffleSplit`` / ``ShuffleSplit`` for (repeated) hold-out. Each fold's preprocessing
(standardization, category codes) is fitted on that fold's training rows only.

>>> import numpy as np
>>> folds = make_folds(np.array([0, 1] * 10), folds=5, seed=0)
>>> len(folds), sorted(int(i) for f in folds for i in f.val_index) == list(range(20))
(5, True)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skier.config import DataConfig
from skier.data import (
    DataBundle,
    RawData,
    bundle_from_indices,
    check_no_missing,
    drop_missing,
    load_raw,
    stratified_split,
)
from skier.errors import DataError, problem
from skier.record.groups import mean_std

__all__ = [
    "CVData",
    "Fold",
    "FoldResult",
    "chosen_metrics",
    "cv_data",
    "fold_bundle",
    "make_folds",
    "mean_curve",
    "refit_bundle",
    "summarize_folds",
]


@dataclass(frozen=True)
class Fold:
    """One fold: 1-based ``number`` overall, ``repeat`` and ``fold`` within the repeat; the
    indices are rows of the whole data set (never test rows)."""

    number: int
    repeat: int
    fold: int
    train_index: np.ndarray
    val_index: np.ndarray

    @property
    def label(self) -> str:
        return f"r{self.repeat}f{self.fold}" if self.repeat > 1 else f"f{self.fold}"


def _check_counts(labels: np.ndarray, needed: int, why: str) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    small = [(c.item(), int(n)) for c, n in zip(classes, counts, strict=True) if n < needed]
    if small:
        shown = ", ".join(f"class {c!r}: {n}" for c, n in small[:5])
        raise DataError(
            f"every class must have at least {needed} examples {why}; got {shown}. "
            "Use fewer folds, more data, or --no-stratify."
        )


def make_folds(
    y: np.ndarray,
    *,
    folds: int = 5,
    repeats: int = 1,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    index: np.ndarray | None = None,
) -> list[Fold]:
    """Seeded folds over ``y`` (stratified for class labels); ``index`` maps positions to rows.

    ``folds=1`` is hold-out (``holdout_fraction`` for validation), drawn ``repeats`` times;
    ``folds>=2`` is k-fold, repeated ``repeats`` times with fresh shuffles. In every repeat of
    k-fold each row is validation exactly once.

    >>> [len(f.val_index) for f in make_folds(np.arange(10) % 2, folds=1, seed=0)]
    [2]
    """
    from sklearn.model_selection import (
        RepeatedKFold,
        RepeatedStratifiedKFold,
        ShuffleSplit,
        StratifiedShuffleSplit,
    )

    y = np.asarray(y)
    n = int(y.shape[0])
    rows = np.arange(n) if index is None else np.asarray(index, dtype=np.int64)
    labels = None
    if stratify and y.dtype.kind != "f" and y.ndim == 1:
        labels = y
    if folds >= 2:
        if folds > n:
            raise DataError(problem("folds", f"at most the number of examples ({n})", folds))
        splitter: Any
        if labels is not None:
            _check_counts(labels, folds, f"for stratified {folds}-fold cross-validation")
            splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        else:
            splitter = RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        per_repeat = folds
    else:
        n_val = math.ceil(holdout_fraction * n)
        if n_val < 1 or n - n_val < 1:
            raise DataError(
                problem("holdout_fraction", f"leaving rows on both sides of {n} rows", n_val)
            )
        if labels is not None:
            _check_counts(labels, 2, "for a stratified hold-out split")
            n_classes = int(np.unique(labels).size)
            if n_val < n_classes:
                raise DataError(
                    problem(
                        "the hold-out split",
                        f"at least one example per class ({n_classes})",
                        f"{n_val} examples",
                        "Raise holdout_fraction or use --no-stratify.",
                    )
                )
            splitter = StratifiedShuffleSplit(
                n_splits=repeats, test_size=holdout_fraction, random_state=seed
            )
        else:
            splitter = ShuffleSplit(n_splits=repeats, test_size=holdout_fraction, random_state=seed)
        per_repeat = 1
    out = []
    split = splitter.split(np.zeros(n), labels if labels is not None else None)
    for i, (train, val) in enumerate(split):
        out.append(
            Fold(
                number=i + 1,
                repeat=i // per_repeat + 1,
                fold=i % per_repeat + 1,
                train_index=np.sort(rows[train]).astype(np.int64),
                val_index=np.sort(rows[val]).astype(np.int64),
            )
        )
    return out


@dataclass
class CVData:
    """The raw data with its test rows set aside, and the settings to preprocess folds."""

    raw: RawData
    dev_index: np.ndarray
    test_index: np.ndarray
    config: DataConfig
    rows_dropped: int = 0


def cv_data(config: DataConfig, *, base_dir: Path | None = None) -> CVData:
    """Load the data and set the test split aside, exactly as ``load_data`` would split it."""
    raw = load_raw(config, base_dir=base_dir)
    dropped = 0
    if config.missing == "drop":
        raw, dropped = drop_missing(raw)
    elif config.missing == "error":
        check_no_missing(
            raw.x_num, raw.x_cat, raw.feature_names, raw.categorical_names, f" in {raw.name}"
        )
    stratify = raw.task == "classification"
    # val_fraction=0: the same test rows as load_data's split (the test split is drawn first).
    dev, _, test = stratified_split(raw.y, 0.0, config.test_fraction, config.seed, stratify)
    return CVData(raw, dev, test, config, dropped)


def _bundle(
    data: CVData, train_idx: np.ndarray, val_idx: np.ndarray, extra: Mapping[str, Any]
) -> DataBundle:
    cfg = data.config
    split_info = {
        "test_fraction": cfg.test_fraction,
        "seed": cfg.seed,
        "stratified": data.raw.task == "classification",
        **extra,
    }
    return bundle_from_indices(
        data.raw,
        train_idx,
        val_idx,
        data.test_index,
        split_info=split_info,
        standardize=cfg.standardize,
        missing=cfg.missing,
        rows_dropped=data.rows_dropped,
    )


def fold_bundle(data: CVData, fold: Fold) -> DataBundle:
    """The fold as a :class:`DataBundle` (train, val = the fold, test = the untouched test)."""
    extra = {"fold": fold.fold, "repeat": fold.repeat, "cross_validation": True}
    return _bundle(data, fold.train_index, fold.val_index, extra)


def refit_bundle(data: CVData) -> DataBundle:
    """Every development row for training, no validation split, the same test split."""
    empty = np.empty(0, dtype=np.int64)
    return _bundle(data, data.dev_index, empty, {"refit": True})


@dataclass
class FoldResult:
    """What one fold's run gave, in plain types (it crosses process boundaries)."""

    number: int
    repeat: int
    fold: int
    run_id: str
    run_dir: str
    status: str
    epochs_done: int
    best_epoch: int | None
    monitor: str | None
    stop_reason: str | None
    metrics: dict[str, float]  # the logged values at the chosen epoch
    history: list[dict[str, float]] = field(default_factory=list)
    duration_s: float = 0.0
    test_metrics: dict[str, float] = field(default_factory=dict)
    seed: int | None = None  # train.seed, when the folds are trained over several seeds


def chosen_metrics(
    history: Sequence[Mapping[str, float]], best_epoch: int | None
) -> dict[str, float]:
    """The logged values at ``best_epoch`` (the last epoch when there is none).

    >>> chosen_metrics([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.8}], 1)
    {'val_loss': 0.9}
    """
    if not history:
        return {}
    row = history[-1]
    if best_epoch is not None:
        row = next((r for r in history if int(r.get("epoch", -1)) == best_epoch), row)
    return {
        k: float(v)
        for k, v in row.items()
        if k not in ("epoch", "epoch_time") and math.isfinite(float(v))
    }


def mean_curve(results: Sequence[FoldResult], key: str) -> tuple[list[int], list[float]]:
    """Per epoch, the mean of ``key`` over the folds that reached that epoch and logged it."""
    by_epoch: dict[int, list[float]] = {}
    for r in results:
        for row in r.history:
            value = row.get(key)
            if value is not None and math.isfinite(value):
                by_epoch.setdefault(int(row["epoch"]), []).append(value)
    epochs = sorted(by_epoch)
    return epochs, [statistics.fmean(by_epoch[e]) for e in epochs]


def summarize_folds(results: Sequence[FoldResult], metric: str = "val_loss") -> dict[str, Any]:
    """Per-fold metrics, mean ± std of each, the chosen epochs and their median.

    >>> r = FoldResult(1, 1, 1, "a", "", "completed", 3, 2, "val_loss", None,
    ...                {"val_loss": 0.5}, [])
    >>> s = summarize_folds([r, FoldResult(2, 1, 2, "b", "", "completed", 3, 4, "val_loss",
    ...                      None, {"val_loss": 0.7}, [])])
    >>> round(s["mean"]["val_loss"], 3), s["chosen_epochs"], s["median_epoch"]
    (0.6, [2, 4], 3)
    """
    keys: list[str] = []
    for r in results:
        keys += [k for k in r.metrics if k not in keys]
    mean, std = {}, {}
    for key in keys:
        mean[key], std[key] = mean_std([r.metrics.get(key, math.nan) for r in results])
    chosen = [r.best_epoch if r.best_epoch is not None else r.epochs_done for r in results]
    median = round(statistics.median(chosen)) if chosen else None
    return {
        "metric": metric,
        "value": mean.get(metric, math.nan),
        "std": std.get(metric, math.nan),
        "mean": mean,
        "std_by_metric": std,
        "folds": [
            {
                "number": r.number,
                "repeat": r.repeat,
                "fold": r.fold,
                "run_id": r.run_id,
                "status": r.status,
                "epochs_done": r.epochs_done,
                **({"seed": r.seed} if r.seed is not None else {}),
                "chosen_epoch": c,
                "stop_reason": r.stop_reason,
                "duration_s": r.duration_s,
                **{k: r.metrics.get(k) for k in keys},
            }
            for r, c in zip(results, chosen, strict=True)
        ],
        "chosen_epochs": chosen,
        "median_epoch": median,
    }
