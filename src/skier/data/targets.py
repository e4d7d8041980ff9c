"""Targets: resolve the task (classification or regression) and encode the target column.

>>> y, task, names = encode_target(np.array([3, 1, 3]))
>>> y.tolist(), task, names
([1, 0, 1], 'classification', ['1', '3'])
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import numpy as np

from skier.data.types import Task
from skier.errors import DataError, problem

if TYPE_CHECKING:  # pandas is slow to import: imported only where a value needs it
    import pandas as pd

__all__ = ["MAX_AUTO_CLASSES", "TaskChoice", "encode_labels", "encode_target", "examples"]

TaskChoice = Literal["auto", "classification", "regression", "multilabel"]

#: ``task="auto"`` calls an integer-valued target with at most this many values a class label.
MAX_AUTO_CLASSES = 50


def _is_series(value: Any) -> TypeGuard[pd.Series]:
    """Whether ``value`` is a pandas Series; none can exist before pandas is imported, so
    this never imports it (nor does :func:`_is_frame`)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.Series)


def _is_frame(value: Any) -> TypeGuard[pd.DataFrame]:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def _is_integer_valued(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def examples(values: Sequence[Any] | np.ndarray, limit: int = 3) -> list[Any]:
    """The first ``limit`` values as plain Python objects, for error messages.

    >>> examples(np.array([1.5, 2.5, 3.5, 4.5]))
    [1.5, 2.5, 3.5]
    """
    out = []
    for v in list(values)[:limit]:
        out.append(v.item() if isinstance(v, np.generic) else v)
    return out


def encode_target(
    y: np.ndarray | pd.Series, task: TaskChoice = "auto", field: str = "y"
) -> tuple[np.ndarray, Task, list[str]]:
    """Resolve the task and encode ``y``: labels ``0..K-1`` or float32 ``N x t`` targets.

    ``task="auto"`` means classification for string/bool targets and for integer-valued targets
    with at most :data:`MAX_AUTO_CLASSES` distinct values; regression otherwise. Returns
    ``(y_encoded, task, class_names)``; ``class_names`` is empty for regression.

    >>> y, task, names = encode_target(np.array(["cat", "dog", "cat"]))
    >>> y.tolist(), task, names
    ([0, 1, 0], 'classification', ['cat', 'dog'])
    """
    values = y.to_numpy() if _is_series(y) else np.asarray(y)
    if values.ndim == 0 or values.ndim > 2:
        raise DataError(problem(field, "a 1-D array (or N x t for regression)", values.shape))
    numeric = values.dtype.kind in "iuf"
    if values.dtype.kind in "fc" and np.isnan(values.astype(np.float64)).any():
        raise DataError(
            problem(field, "free of missing values", f"{int(np.isnan(values).sum())} NaN")
        )
    if values.dtype.kind == "O":
        import pandas as pd  # its missing values: None, NaN, NaT, pd.NA

        if pd.isna(values).any():
            raise DataError(
                problem(field, "free of missing values", f"{int(pd.isna(values).sum())}")
            )

    if task == "auto":
        if values.ndim == 2 and values.shape[1] > 1:
            task = "regression"
        elif not numeric:
            task = "classification"
        elif values.dtype.kind in "iu" or _is_integer_valued(values):
            few = np.unique(values).size <= MAX_AUTO_CLASSES
            task = "classification" if few else "regression"
        else:
            task = "regression"

    if task == "multilabel":
        return encode_labels(values.reshape(len(values), -1), field)
    if task == "regression":
        if not numeric:
            bad = examples(np.unique(values.astype(str)))
            raise DataError(
                problem(
                    field,
                    "numeric for task 'regression'",
                    bad,
                    "Set task: classification for class labels.",
                )
            )
        out = values.astype(np.float32, copy=False)
        return (out.reshape(-1, 1) if out.ndim == 1 else out), "regression", []

    if values.ndim == 2:
        if values.shape[1] != 1:
            raise DataError(problem(field, "1-D class labels for classification", values.shape))
        values = values[:, 0]
    if values.dtype.kind == "f":
        if not _is_integer_valued(values):
            frac = values[values != np.round(values)]
            raise DataError(
                problem(
                    field,
                    "integer-valued class labels for task 'classification'",
                    examples(frac),
                    "Set task: regression for continuous targets.",
                )
            )
        if np.abs(values).max(initial=0.0) >= 2**31:
            raise DataError(
                problem(
                    field,
                    "class labels below 2**31 in size",
                    examples(values[np.abs(values) >= 2**31]),
                    "Set task: regression for continuous targets.",
                )
            )
        values = values.astype(np.int64)
    if values.dtype.kind in "iub":
        classes, codes = np.unique(values, return_inverse=True)
        names = [str(c.item()) for c in classes]
    else:
        # Mixed objects do not sort; their text does, and text is what the record shows anyway.
        classes, codes = np.unique(values.astype(str), return_inverse=True)
        names = [str(c) for c in classes]
    if len(names) < 2:
        raise DataError(
            problem(field, "at least 2 classes for classification", names, "Check the target.")
        )
    return codes.astype(np.int64).reshape(-1), "classification", names


_TRUE, _FALSE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no"}


def encode_labels(
    y: np.ndarray | pd.DataFrame, field: str = "y"
) -> tuple[np.ndarray, Task, list[str]]:
    """Multi-label targets: one column per label, each 0/1 (or true/false, yes/no), as float32
    ``N x L``; the labels are named by the columns (``label_0``, ... for an array).

    >>> import pandas as pd
    >>> y, task, names = encode_labels(pd.DataFrame({"cat": [1, 0], "dog": ["yes", "no"]}))
    >>> y.tolist(), task, names
    ([[1.0, 1.0], [0.0, 0.0]], 'multilabel', ['cat', 'dog'])
    """
    if _is_frame(y):
        names, values = [str(c) for c in y.columns], y.to_numpy(dtype=object)
    else:
        values = np.asarray(y, dtype=object)
        if values.ndim != 2:
            raise DataError(
                problem(field, "an N x L array of 0/1 labels (multilabel)", values.shape)
            )
        names = [f"label_{j}" for j in range(values.shape[1])]
    text = np.vectorize(lambda v: str(v).strip().lower(), otypes=[str])(values)
    bad = ~np.isin(text, list(_TRUE | _FALSE))
    if bad.any():
        raise DataError(
            problem(field, "0/1 labels for a multi-label task (or true/false, yes/no)",
                    examples(np.unique(values[bad].astype(str))))
        )  # fmt: skip
    return np.isin(text, list(_TRUE)).astype(np.float32), "multilabel", names
