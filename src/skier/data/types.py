"""The in-memory data types the rest of skier works with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

__all__ = ["DataBundle", "Split", "Task"]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Split:
    """One split of a data set as tensors: ``model(*inputs)`` is the forward call.

    ``inputs`` usually holds one tensor (``N x features`` or ``N x C x H x W``); a tabular set with
    categorical columns holds two, ``(numeric float N x d, categorical long N x c)``. ``targets`` is
    ``long N`` for classification and ``float N x t`` for regression. ``weights``, when given, are
    per-example loss weights (e.g. from a sampler).

    >>> s = Split((torch.zeros(4, 3),), torch.tensor([0, 1, 0, 1]))
    >>> len(s), s.input_shape
    (4, (3,))
    """

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor

    def __post_init__(self) -> None:
        n = self.targets.shape[0]
        for i, t in enumerate(self.inputs):
            if t.shape[0] != n:
                raise ValueError(
                    f"inputs[{i}] must have as many rows as targets ({n}); got {t.shape[0]}."
                )

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example of the first input (no batch dimension)."""
        return tuple(self.inputs[0].shape[1:])

    @property
    def device(self) -> torch.device:
        return self.targets.device

    def to(self, device: torch.device | str) -> Split:
        return Split(tuple(t.to(device) for t in self.inputs), self.targets.to(device))

    def take(self, index: torch.Tensor) -> Split:
        """The examples at ``index`` (a long tensor on the same device)."""
        return Split(tuple(t[index] for t in self.inputs), self.targets[index])


@dataclass
class DataBundle:
    """Train / validation / test splits plus what the model and the record need to know."""

    train: Split
    val: Split | None
    test: Split | None
    task: Task
    num_classes: int | None = None  # classification only
    num_targets: int = 1  # regression only
    name: str = "data"
    feature_names: Sequence[str] = ()
    class_names: Sequence[str] = ()
    categorical_cardinalities: Sequence[int] = ()  # one per categorical column, incl. reserved
    info: dict[str, Any] = field(default_factory=dict)  # preprocessing facts for the record

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def output_size(self) -> int:
        if self.task != "classification":
            return self.num_targets
        if self.num_classes is None:
            raise ValueError("num_classes must be set for a classification DataBundle; got None.")
        return int(self.num_classes)

    def with_splits(self, train: Split, val: Split | None, test: Split | None) -> DataBundle:
        return replace(self, train=train, val=val, test=test)
