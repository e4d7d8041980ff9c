"""Preprocessing learned from the training split only: standardisation and category codes.

>>> x_train = np.array([[1.0], [3.0]], dtype=np.float32)
>>> prep = Preprocessor().fit(x_train)
>>> prep.transform(np.array([[5.0]], dtype=np.float32))[0].tolist()
[[3.0]]

Categorical columns become integer codes ``1..K`` for the ``K`` categories seen in training;
code ``0`` is reserved for a category that is unknown (first seen at validation/test time) or
missing, so a column's embedding table needs ``K + 1`` rows (:attr:`Preprocessor.cardinalities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from skier.data.raw import RawData
from skier.errors import DataError, problem

__all__ = [
    "MissingPolicy",
    "Preprocessor",
    "check_no_missing",
    "drop_missing",
    "missing_counts",
]

MissingPolicy = Literal["error", "drop", "impute"]
UNKNOWN = 0  # the reserved category code: unknown or missing


def _numeric_missing(x_num: np.ndarray) -> np.ndarray:
    """Boolean ``N x d`` (tables) or ``N x 1`` (images: one flag per example) of NaN entries."""
    nan = np.isnan(x_num)
    return nan if x_num.ndim == 2 else nan.reshape(len(x_num), -1).any(axis=1, keepdims=True)


def _names(given: Sequence[str], count: int, prefix: str) -> list[str]:
    return list(given) if len(given) == count else [f"{prefix}[{i}]" for i in range(count)]


def missing_counts(
    x_num: np.ndarray,
    x_cat: np.ndarray | None = None,
    numeric_names: Sequence[str] = (),
    categorical_names: Sequence[str] = (),
) -> dict[str, int]:
    """Rows with a missing value, per column that has any (images count as one column ``x``).

    >>> missing_counts(np.array([[1.0, np.nan], [np.nan, np.nan]]), None, ["a", "b"])
    {'a': 1, 'b': 2}
    """
    out: dict[str, int] = {}
    if x_num.size:
        per_col = _numeric_missing(x_num).sum(axis=0)
        names = _names(numeric_names, len(per_col), "x") if x_num.ndim == 2 else ["x"]
        out.update({n: int(c) for n, c in zip(names, per_col, strict=True) if c})
    if x_cat is not None and x_cat.size:
        import pandas as pd  # slow to import: only categorical columns need it

        per_col = pd.isna(x_cat).sum(axis=0)
        names = _names(categorical_names, len(per_col), "cat")
        out.update({n: int(c) for n, c in zip(names, per_col, strict=True) if c})
    return out


def check_no_missing(
    x_num: np.ndarray,
    x_cat: np.ndarray | None = None,
    numeric_names: Sequence[str] = (),
    categorical_names: Sequence[str] = (),
    where: str = "",
) -> None:
    """Raise one :class:`DataError` naming every column with missing values and its row count.

    >>> check_no_missing(np.array([[np.nan]]), None, ["age"])
    Traceback (most recent call last):
    skier.errors.DataError: column 'age' must be free of missing values; got '1 row(s) missing'. ...
    """
    counts = missing_counts(x_num, x_cat, numeric_names, categorical_names)
    if counts:
        raise DataError(
            [
                problem(
                    f"column {name!r}",
                    "free of missing values",
                    f"{n} row(s) missing{where}",
                    "Set data.missing to 'drop' or 'impute'.",
                )
                for name, n in counts.items()
            ]
        )


def drop_missing(raw: RawData) -> tuple[RawData, int]:
    """Drop every row with a missing input; returns the rest and how many rows were dropped.

    >>> raw, dropped = drop_missing(raw)  # doctest: +SKIP
    """
    bad = np.zeros(len(raw), dtype=bool)
    if raw.x_num.size:
        bad |= _numeric_missing(raw.x_num).any(axis=1)
    if raw.x_cat is not None and raw.x_cat.size:
        import pandas as pd

        bad |= np.asarray(pd.isna(raw.x_cat)).any(axis=1)
    dropped = int(bad.sum())
    return (raw.take(~bad) if dropped else raw), dropped


def _moments(x: np.ndarray, per_feature: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance ignoring NaN, accumulated in float64.

    Per column for tables, one scalar for images. ``np.nanmean`` would warn on an all-NaN
    column; such a column gets mean 0 and variance 0 here instead.
    """
    axis = 0 if per_feature else None
    nan = np.isnan(x)
    if not nan.any():  # the common case, without the masked copies
        mean = np.atleast_1d(x.mean(axis=axis, dtype=np.float64))
        var = np.atleast_1d(x.var(axis=axis, dtype=np.float64))
        return mean, var
    ok = ~nan
    count = np.atleast_1d(ok.sum(axis=axis)).astype(np.float64)
    filled = np.where(ok, x, 0).astype(np.float64)
    total = np.atleast_1d(filled.sum(axis=axis))
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    centred = np.where(ok, filled - (mean if per_feature else mean[0]), 0.0)
    sq = np.atleast_1d((centred**2).sum(axis=axis))
    var = np.divide(sq, count, out=np.zeros_like(sq), where=count > 0)
    return mean, var


class Preprocessor:
    """Learn input statistics on the training split, then apply them to every split.

    Numeric inputs are standardised with the training mean and standard deviation, per feature
    for tables and one scalar for images (``N x C x H x W``); a constant feature (std 0) is only
    centred. Categorical columns are coded ``1..K`` by the training categories, with ``0`` for
    unknown or missing. ``missing`` decides what a missing value does: ``"error"`` raises
    :class:`DataError` naming each column; ``"impute"`` fills numbers with the training mean and
    categories with code 0; ``"drop"`` expects rows already dropped (:func:`drop_missing`) and
    otherwise behaves like ``"error"``.

    >>> prep = Preprocessor(missing="impute").fit(x_train, x_cat_train)  # doctest: +SKIP
    >>> x_num, x_cat = prep.transform(x_val, x_cat_val)                  # doctest: +SKIP
    """

    def __init__(
        self,
        standardize: bool = True,
        missing: MissingPolicy = "error",
        numeric_names: Sequence[str] = (),
        categorical_names: Sequence[str] = (),
    ) -> None:
        if missing not in ("error", "drop", "impute"):
            raise DataError(problem("missing", "'error', 'drop' or 'impute'", missing))
        self.standardize = standardize
        self.missing: MissingPolicy = missing
        self.numeric_names = list(numeric_names)
        self.categorical_names = list(categorical_names)
        # Learned by fit():
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.scalar_ = False  # one mean/std for all inputs (images)
        self.categories_: list[list[str]] = []

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column: the training categories plus the reserved code 0."""
        return [len(vocab) + 1 for vocab in self.categories_]

    def _check_missing(self, x_num: np.ndarray, x_cat: np.ndarray | None, where: str) -> None:
        if self.missing == "impute":
            return
        check_no_missing(x_num, x_cat, self.numeric_names, self.categorical_names, where)

    def fit(self, x_num: np.ndarray, x_cat: np.ndarray | None = None) -> Preprocessor:
        """Learn means, standard deviations and category vocabularies from training data."""
        self._check_missing(x_num, x_cat, " in the training split")
        self.scalar_ = x_num.ndim != 2
        mean, var = _moments(x_num, per_feature=not self.scalar_)
        std = np.sqrt(var)
        self.mean_ = mean
        self.std_ = np.where(std > 0, std, 1.0)
        self.categories_ = []
        if x_cat is not None:
            import pandas as pd

            for j in range(x_cat.shape[1]):
                col = pd.Series(x_cat[:, j], dtype=object)
                known = col[col.notna()].astype(str)
                self.categories_.append(sorted(set(known)))
        return self

    def transform(
        self, x_num: np.ndarray, x_cat: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Apply the learned statistics: float32 inputs and int64 category codes (or ``None``)."""
        if self.mean_ is None or self.std_ is None:
            raise DataError("Preprocessor must be fitted before transform; call fit() first.")
        self._check_missing(x_num, x_cat, "")
        if x_num.ndim == 2 and x_num.shape[1] != self.mean_.shape[0]:
            raise DataError(
                problem("x_num", f"{self.mean_.shape[0]} columns as in training", x_num.shape[1])
            )
        if (x_cat is None) != (not self.categories_) or (
            x_cat is not None and x_cat.shape[1] != len(self.categories_)
        ):
            shape = None if x_cat is None else x_cat.shape
            raise DataError(
                problem("x_cat", f"{len(self.categories_)} columns as in training", shape)
            )
        shape = (1, -1) if x_num.ndim == 2 else (1,) * x_num.ndim
        mean = self.mean_.astype(np.float32).reshape(shape)
        std = self.std_.astype(np.float32).reshape(shape)
        out = x_num.astype(np.float32, copy=True)
        if self.missing == "impute":
            nan = np.isnan(out)
            if nan.any():
                out = np.where(nan, mean, out)
        if self.standardize:
            out -= mean
            out /= std
        return out, None if x_cat is None else self._encode(x_cat)

    def _encode(self, x_cat: np.ndarray) -> np.ndarray:
        import pandas as pd

        codes = np.empty(x_cat.shape, dtype=np.int64)
        for j, vocab in enumerate(self.categories_):
            col = pd.Series(x_cat[:, j], dtype=object)
            missing = col.isna().to_numpy()
            # Unknown categories get position -1 from the lookup; +1 turns it into the reserved 0.
            position = pd.Index(vocab, dtype=object).get_indexer(col.astype(str).to_numpy(object))
            codes[:, j] = np.asarray(position, dtype=np.int64) + 1
            codes[missing, j] = UNKNOWN
        return codes

    def fit_transform(
        self, x_num: np.ndarray, x_cat: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return self.fit(x_num, x_cat).transform(x_num, x_cat)

    def to_dict(self) -> dict[str, Any]:
        """What was learned, as plain JSON-serialisable values (for the run record).

        >>> Preprocessor().fit(np.array([[0.0], [2.0]])).to_dict()["mean"]
        [1.0]
        """
        if self.mean_ is None or self.std_ is None:
            raise DataError("Preprocessor must be fitted before to_dict; call fit() first.")
        return {
            "standardize": self.standardize,
            "missing": self.missing,
            "scalar": self.scalar_,
            "numeric_names": list(self.numeric_names),
            "mean": [float(v) for v in self.mean_],
            "std": [float(v) for v in self.std_],
            "categorical_names": list(self.categorical_names),
            "categories": [list(v) for v in self.categories_],
            "cardinalities": self.cardinalities,
            "unknown_code": UNKNOWN,
        }

    state_dict = to_dict  # the name torch users reach for

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output (e.g. at inference)."""
        prep = cls(
            standardize=bool(state["standardize"]),
            missing=state["missing"],
            numeric_names=state.get("numeric_names", ()),
            categorical_names=state.get("categorical_names", ()),
        )
        prep.mean_ = np.asarray(state["mean"], dtype=np.float64)
        prep.std_ = np.asarray(state["std"], dtype=np.float64)
        prep.scalar_ = bool(state.get("scalar", False))
        prep.categories_ = [list(v) for v in state.get("categories", [])]
        return prep
