"""RawData: a whole data set as numpy arrays, what every loader returns before splitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skier.data.types import Task

__all__ = ["RawData"]


@dataclass
class RawData:
    """A whole data set as numpy arrays, before splitting and preprocessing.

    ``x_num`` is float32 ``N x d`` (or ``N x 1 x H x W`` for images) and may hold NaN for missing
    values; ``x_cat`` is an object array ``N x c`` of category values (``None``/NaN = missing) or
    ``None`` when there are no categorical columns. ``y`` is int64 ``N`` with labels ``0..K-1``
    for classification (``class_names[k]`` names label ``k``) and float32 ``N x t`` for regression.

    >>> raw = RawData(np.zeros((2, 1), np.float32), None, np.array([0, 1]), ["a"], [], ["n", "y"],
    ...               "classification")
    >>> len(raw)
    2
    """

    x_num: np.ndarray
    x_cat: np.ndarray | None
    y: np.ndarray
    feature_names: list[str]
    categorical_names: list[str]
    class_names: list[str]
    task: Task
    name: str = "data"
    info: dict[str, Any] = field(default_factory=dict)  # facts for the record (source, columns)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_targets(self) -> int:
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])

    def take(self, index: np.ndarray) -> RawData:
        """The rows at ``index`` (integer indices or a boolean mask), other fields unchanged."""
        return RawData(
            x_num=self.x_num[index],
            x_cat=None if self.x_cat is None else self.x_cat[index],
            y=self.y[index],
            feature_names=self.feature_names,
            categorical_names=self.categorical_names,
            class_names=self.class_names,
            task=self.task,
            name=self.name,
            info=dict(self.info),
        )

    @classmethod
    def numeric(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        feature_names: list[str],
        class_names: list[str],
        task: Task,
        name: str,
        info: dict[str, Any],
    ) -> RawData:
        """A data set whose inputs are all numeric (no categorical columns).

        >>> RawData.numeric(np.zeros((3, 2), np.float32), np.array([0, 1, 0]), ["a", "b"],
        ...                 ["n", "y"], "classification", "tiny", {}).categorical_names
        []
        """
        return cls(
            x_num=x,
            x_cat=None,
            y=y,
            feature_names=feature_names,
            categorical_names=[],
            class_names=class_names,
            task=task,
            name=name,
            info=info,
        )
