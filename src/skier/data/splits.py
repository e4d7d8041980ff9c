"""Seeded train / validation / test splits and k-fold indices.

>>> y = np.array([0, 1] * 50)
>>> train, val, test = stratified_split(y, val_fraction=0.2, test_fraction=0.1, seed=0)
>>> len(train), len(val), len(test)
(70, 20, 10)

Classification labels are split stratified, so every split keeps the class proportions; float
(regression) targets are shuffled plainly. The same seed always gives the same indices: the
ones scikit-learn's ``train_test_split`` gives (skier draws them itself, with numpy, so that a
run does not import ``sklearn.model_selection``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from skier.errors import DataError, problem

__all__ = ["kfold_indices", "stratified_split"]


def _labels(y: np.ndarray, stratify: bool) -> np.ndarray | None:
    """The labels to stratify on, or ``None`` for a plain shuffle (regression targets)."""
    y = np.asarray(y)
    if not stratify or y.dtype.kind == "f" or (y.ndim == 2 and y.shape[1] > 1):
        return None
    return y.reshape(-1)


def _check_class_counts(labels: np.ndarray, needed: int, why: str) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    small = [(c.item(), int(n)) for c, n in zip(classes, counts, strict=True) if n < needed]
    if small:
        shown = ", ".join(f"class {c!r}: {n}" for c, n in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise DataError(
            problem(
                "y",
                f"at least {needed} examples of every class {why}",
                f"{shown}{more}",
                "Use more data, fewer splits, or stratify=False.",
            )
        )


def _sizes(n: int, fraction: float) -> int:
    # scikit-learn rounds a test fraction up; the same rule keeps the sizes (and splits) its own.
    return int(np.ceil(fraction * n))


def _hold_out(
    index: np.ndarray, size: int, seed: int, labels: np.ndarray | None, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)``: ``size`` entries of ``index`` held out, stratified on ``labels``.

    The same entries, in the same order, as scikit-learn's ``train_test_split(index,
    test_size=size, random_state=seed, stratify=labels)`` (its ``ShuffleSplit`` or
    ``StratifiedShuffleSplit``, both drawing from one legacy ``RandomState``): splits made
    before skier had its own stay as they were, and importing ``sklearn.model_selection`` (with
    pandas and scipy) is no longer part of a run's start-up. Tested against scikit-learn.
    """
    rng = np.random.RandomState(seed)
    if labels is None:
        order = rng.permutation(index.size)
        return index[order[size:]], index[order[:size]]
    kept_size = index.size - size
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    _check_class_counts(labels, 2, f"left to hold out the {name} split")
    kept_name = "training" if name == "validation" else "training + validation"
    for part, part_size in ((kept_name, kept_size), (name, size)):
        if part_size < classes.size:
            raise DataError(
                problem(
                    f"the {part} split",
                    f"at least one example per class ({classes.size})",
                    f"{part_size} examples",
                    "Change val_fraction / test_fraction or use stratify=False.",
                )
            )
    # Positions of each class's members, in their order in ``labels`` (a stable sort).
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    # The draws below, in this order, are the ones scikit-learn makes from its generator.
    per_class_kept = _proportional_counts(counts, kept_size, rng)
    per_class_held = _proportional_counts(counts - per_class_kept, size, rng)
    kept_parts, held_parts = [], []
    for positions, k, h in zip(members, per_class_kept, per_class_held, strict=True):
        shuffled = positions[rng.permutation(positions.size)]
        kept_parts.append(shuffled[:k])
        held_parts.append(shuffled[k : k + h])
    kept = rng.permutation(np.concatenate(kept_parts))
    held = rng.permutation(np.concatenate(held_parts))
    return index[kept], index[held]


def _proportional_counts(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` each class gets: its share of ``draws`` rounded down, then one
    more for the classes with the largest fractional parts until ``draws`` are given out, ties
    broken at random (scikit-learn's ``_approximate_mode``, with its use of ``rng``)."""
    share = counts / counts.sum() * draws
    given = np.floor(share)
    short = int(draws - given.sum())
    fraction = share - given
    # Largest fractional part first; each tied group takes its turn whole or in a random part.
    for value in np.unique(fraction)[::-1]:
        if short <= 0:
            break
        tied = np.flatnonzero(fraction == value)
        chosen = rng.choice(tied, size=min(tied.size, short), replace=False)
        given[chosen] += 1
        short -= chosen.size
    return given.astype(int)


def stratified_split(
    y: np.ndarray,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` into sorted ``(train_idx, val_idx, test_idx)`` int64 arrays.

    Integer, bool and string labels are stratified (unless ``stratify=False``); float targets are
    shuffled plainly. ``val_idx`` / ``test_idx`` are empty when their fraction is 0.

    >>> train, val, test = stratified_split(np.arange(10) % 2, 0.2, 0.0, seed=1)
    >>> len(train), len(val), len(test)
    (8, 2, 0)
    """
    y = np.asarray(y)
    n = int(y.shape[0])
    problems = []
    if not 0.0 <= val_fraction < 1.0:
        problems.append(problem("val_fraction", "in [0, 1)", val_fraction))
    if not 0.0 <= test_fraction < 1.0:
        problems.append(problem("test_fraction", "in [0, 1)", test_fraction))
    if not problems and val_fraction + test_fraction >= 1.0:
        problems.append(
            problem(
                "val_fraction + test_fraction",
                "below 1 so that some training data is left",
                val_fraction + test_fraction,
            )
        )
    if problems:
        raise DataError(problems)

    n_test = _sizes(n, test_fraction)
    n_val = _sizes(n, val_fraction)
    if n - n_test - n_val < 1:
        raise DataError(
            problem("y", "long enough to leave training examples after splitting", f"{n} rows")
        )
    labels = _labels(y, stratify)
    parts = 1 + (n_val > 0) + (n_test > 0)
    if labels is not None and parts > 1:
        _check_class_counts(labels, parts, f"to stratify into {parts} splits")
        n_classes = int(np.unique(labels).size)
        for name, size in (("validation", n_val), ("test", n_test)):
            if 0 < size < n_classes:
                raise DataError(
                    problem(
                        f"the {name} split",
                        f"at least one example per class ({n_classes})",
                        f"{size} examples",
                        "Raise its fraction or use stratify=False.",
                    )
                )

    index = np.arange(n)
    empty = np.empty(0, dtype=np.int64)
    rest, test = index, empty
    if n_test > 0:
        rest, test = _hold_out(index, n_test, seed, labels, "test")
    train, val = rest, empty
    if n_val > 0:
        rest_labels = None if labels is None else labels[rest]
        train, val = _hold_out(rest, n_val, seed + 1, rest_labels, "validation")
    return (
        np.sort(train).astype(np.int64),
        np.sort(val).astype(np.int64),
        np.sort(test).astype(np.int64),
    )


def kfold_indices(
    y: np.ndarray, k: int = 5, seed: int = 0, stratify: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``k`` sorted ``(train_idx, val_idx)`` pairs; each index is validation exactly once.

    Stratified for labels (see :func:`stratified_split`), shuffled with ``seed``.

    >>> folds = list(kfold_indices(np.arange(12) % 3, k=4, seed=0))
    >>> len(folds), sorted(np.concatenate([val for _, val in folds]).tolist()) == list(range(12))
    (4, True)
    """
    y = np.asarray(y)
    n = int(y.shape[0])
    if k < 2 or k > n:
        raise DataError(problem("k", f"between 2 and the number of examples ({n})", k))
    labels = _labels(y, stratify)
    # Checked here rather than in the generator body, so a bad call fails where it is made.
    if labels is not None:
        _check_class_counts(labels, k, f"for {k}-fold cross-validation")
    return _folds(n, k, seed, labels)


def _folds(
    n: int, k: int, seed: int, labels: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    index = np.arange(n)
    if labels is None:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed).split(index)
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, labels)
    for train, val in splitter:
        yield np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)
