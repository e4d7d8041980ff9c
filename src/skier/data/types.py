"""The in-memory data types the rest of skier works with.

Their reprs are short (sizes and shapes, never tensors); in a notebook a DataBundle shows as
tables of its splits and its preprocessing (``_repr_html_``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from skier._html import html_table

__all__ = ["DataBundle", "Split", "Task"]

Task = Literal["classification", "regression", "multilabel"]


@dataclass(frozen=True)
class Split:
    """One split of a data set as tensors: ``model(*inputs)`` is the forward call.

    ``inputs`` usually holds one tensor (``N x features`` or ``N x C x H x W``); a tabular set with
    categorical columns holds two, ``(numeric float N x d, categorical long N x c)``. ``targets`` is
    ``long N`` for classification and ``float N x t`` for regression. ``weights``, when given, are
    per-example loss weights (a float ``N``, e.g. scikit-learn's ``sample_weight``): the
    training loss of a batch is the mean of its examples' losses times their weights.

    >>> s = Split((torch.zeros(4, 3),), torch.tensor([0, 1, 0, 1]))
    >>> len(s), s.input_shape
    (4, (3,))
    >>> s
    Split(4 examples; inputs (3,) float32; targets int64)
    """

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.targets.shape[0]
        for i, t in enumerate(self.inputs):
            if t.shape[0] != n:
                raise ValueError(
                    f"inputs[{i}] must have as many rows as targets ({n}); got {t.shape[0]}."
                )
        if self.weights is not None and tuple(self.weights.shape) != (n,):
            raise ValueError(
                f"weights must have one value per example ({n},); got {tuple(self.weights.shape)}."
            )

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __repr__(self) -> str:
        inputs, targets = self._inputs_text(), self._targets_text()
        return f"Split({len(self)} examples; inputs {inputs}; targets {targets})"

    def _inputs_text(self) -> str:
        return " + ".join(f"{tuple(t.shape[1:])} {_dtype(t)}" for t in self.inputs)

    def _targets_text(self) -> str:
        shape = tuple(self.targets.shape[1:])
        return f"{shape} {_dtype(self.targets)}" if shape else _dtype(self.targets)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example of the first input (no batch dimension)."""
        return tuple(self.inputs[0].shape[1:])

    @property
    def device(self) -> torch.device:
        return self.targets.device

    def to(self, device: torch.device | str) -> Split:
        weights = self.weights.to(device) if self.weights is not None else None
        return Split(tuple(t.to(device) for t in self.inputs), self.targets.to(device), weights)

    def take(self, index: torch.Tensor) -> Split:
        """The examples at ``index`` (a long tensor on the same device)."""
        weights = self.weights[index] if self.weights is not None else None
        return Split(tuple(t[index] for t in self.inputs), self.targets[index], weights)


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
    # data.name 'dataset': the training examples as a torch Dataset, read as training goes;
    # ``train`` is then an empty Split that carries their shapes and types only.
    train_dataset: Dataset[Any] | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def streams(self) -> bool:
        """Whether the training examples are a Dataset read as training goes (``train`` then
        holds none)."""
        return self.train_dataset is not None

    @property
    def output_size(self) -> int:
        if self.task != "classification":
            return self.num_targets
        if self.num_classes is None:
            raise ValueError("num_classes must be set for a classification DataBundle; got None.")
        return int(self.num_classes)

    def _splits(self) -> list[tuple[str, Split]]:
        found = (("train", self.train), ("val", self.val), ("test", self.test))
        return [(name, split) for name, split in found if split is not None]

    def _size(self, name: str, split: Split) -> int:
        """A split's examples (the training Dataset's, when it streams)."""
        if name == "train" and self.train_dataset is not None:
            return len(self.train_dataset)  # type: ignore[arg-type]
        return len(split)

    def _target_text(self) -> str:
        if self.task == "classification":
            return f"{self.num_classes} classes"
        if self.task == "multilabel":
            return f"{self.num_targets} labels"
        return f"{self.num_targets} target{'' if self.num_targets == 1 else 's'}"

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name} {self._size(name, split)}" for name, split in self._splits())
        return (
            f"DataBundle({self.name!r}: {self.task}, {self._target_text()}; {sizes}; "
            f"inputs {self.train._inputs_text()})"
        )

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("task", f"{self.task}, {self._target_text()}")]
        if self.class_names:
            facts.append(("classes", _listed(self.class_names)))
        if self.feature_names:
            facts.append((f"features ({len(self.feature_names)})", _listed(self.feature_names)))
        if self.categorical_cardinalities:
            facts.append(("categorical columns", _listed(self.categorical_cardinalities)))
        info = self.info
        if "source" in info:
            facts.append(("source", str(info["source"])))
        split = info.get("split")
        if isinstance(split, dict):
            facts.append(("split", ", ".join(f"{k} {v}" for k, v in split.items())))
        prep = info.get("preprocessing")
        if isinstance(prep, dict):
            shown = ", ".join(
                f"{k} {prep[k]}" for k in ("standardize", "missing", "scalar") if k in prep
            )
            facts.append(("preprocessing", shown))
        if info.get("rows_dropped"):
            facts.append(("rows dropped", str(info["rows_dropped"])))
        return facts

    def _repr_html_(self) -> str:
        splits = html_table(
            ["split", "examples", "inputs", "targets"],
            [[n, self._size(n, s), s._inputs_text(), s._targets_text()] for n, s in self._splits()],
            caption=f"DataBundle {self.name!r}",
        )
        return splits + html_table(["about the data", ""], self._facts())

    def with_splits(self, train: Split, val: Split | None, test: Split | None) -> DataBundle:
        return replace(self, train=train, val=val, test=test)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


_LISTED = 10  # how many names a repr lists before it says how many more there are


def _listed(values: Sequence[object]) -> str:
    shown = ", ".join(map(str, values[:_LISTED]))
    more = len(values) - _LISTED
    return shown + (f", … ({more} more)" if more > 0 else "")
