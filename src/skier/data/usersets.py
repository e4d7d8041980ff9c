"""``data.name: dataset``: the user's own torch ``Dataset``, named in the config.

``data.dataset: package.module:function`` is called with ``data.dataset_kwargs`` and returns a
map-style ``Dataset`` of ``(inputs..., target)`` items (training only), a ``(train, val[,
test])`` tuple or a ``{"train": ..., "val": ..., "test": ...}`` mapping of them. The training
set is read as training goes (``DataBundle.train_dataset``); validation and test sets are read
into memory once, in order. ``data.standardize`` and the split fractions are not applied: the
Dataset's own transforms and splits are used as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch.utils.data import Dataset, IterableDataset, default_collate

from skier._references import resolve_reference
from skier.config import DataConfig
from skier.data.types import DataBundle, Split, Task
from skier.errors import DataError, problem

__all__ = ["dataset_factory", "load_user_dataset"]

_FIELD = "data.dataset"
_RETURNS = (
    "a torch Dataset, a (train, val[, test]) tuple or a {'train', 'val', 'test'} mapping of them"
)


def dataset_factory(config: DataConfig) -> Any:
    """The function ``data.dataset`` names, imported (one :class:`DataError` naming the field
    when it cannot be)."""
    return resolve_reference(str(config.dataset), _FIELD, DataError, what="a function")


def load_user_dataset(config: DataConfig) -> DataBundle:
    """Call ``data.dataset``'s function and describe what it returns as a :class:`DataBundle`
    whose ``train_dataset`` is the training Dataset.

    >>> cfg = DataConfig(name="dataset", dataset="my_data:make", dataset_kwargs={"n": 100})
    >>> load_user_dataset(cfg)  # doctest: +SKIP
    DataBundle('my_data:make': classification, 10 classes; train 100, ...)
    """
    ref = str(config.dataset)
    factory = dataset_factory(config)
    try:
        made = factory(**config.dataset_kwargs)
    except Exception as exc:  # the user's code: any failure is one line naming the field
        raise DataError(
            f"{_FIELD} {ref!r}: calling it with data.dataset_kwargs "
            f"{config.dataset_kwargs!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    train, val, test = _parts(made, ref)
    first = _example(train, ref, "train")
    target = torch.as_tensor(first[-1])
    task: Task = (
        config.task
        if config.task != "auto"
        else "regression"
        if target.is_floating_point()
        else "classification"
    )
    splits = {
        name: _read_all(d, ref, name) for name, d in (("val", val), ("test", test)) if d is not None
    }
    classes, names = _classes(train, splits.values()) if task == "classification" else (None, ())
    empty = Split(
        tuple(torch.as_tensor(x).unsqueeze(0)[:0] for x in first[:-1]), target.unsqueeze(0)[:0]
    )
    sizes = {"train": len(train), **{k: len(v) for k, v in splits.items()}}  # type: ignore[arg-type]
    return DataBundle(
        train=empty,
        val=splits.get("val"),
        test=splits.get("test"),
        task=task,
        num_classes=classes,
        num_targets=max(int(target.numel()), 1),
        name=ref,
        class_names=names,
        info={"source": f"dataset {ref}", "split": sizes},
        train_dataset=train,
    )


def _parts(made: Any, ref: str) -> tuple[Dataset[Any], Dataset[Any] | None, Dataset[Any] | None]:
    if isinstance(made, Mapping):
        unknown = sorted(set(made) - {"train", "val", "test"})
        if unknown or "train" not in made:
            raise DataError(
                problem(_FIELD, f"a function returning {_RETURNS}", ref,
                        f"Its mapping must have a 'train' key, and only train/val/test; got keys "
                        f"{sorted(made)}.")
            )  # fmt: skip
        parts: list[Any] = [made.get("train"), made.get("val"), made.get("test")]
    elif (
        isinstance(made, tuple | list)
        and 1 <= len(made) <= 3
        and all(p is None or isinstance(p, Dataset) for p in made)
    ):
        parts = [*made, None, None][:3]
    else:
        parts = [made, None, None]
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        if part is None and name != "train":
            continue
        if not isinstance(part, Dataset) or isinstance(part, IterableDataset):
            got = type(part).__name__
            raise DataError(
                problem(_FIELD, f"a function returning {_RETURNS}", ref,
                        f"Its {name} data is a {got}, not a map-style torch Dataset (with "
                        "__len__ and __getitem__).")
            )  # fmt: skip
    return cast(Dataset[Any], parts[0]), parts[1], parts[2]


def _example(dataset: Dataset[Any], ref: str, name: str) -> Sequence[Any]:
    try:
        n = len(dataset)  # type: ignore[arg-type]
        item = dataset[0] if n > 0 else None
    except Exception as exc:  # the user's code
        raise DataError(
            f"{_FIELD} {ref!r}: reading the {name} Dataset's first example raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if item is None:
        raise DataError(problem(_FIELD, f"a function whose {name} Dataset holds examples", ref,
                                "It is empty."))  # fmt: skip
    if not isinstance(item, Sequence) or len(item) < 2:
        raise DataError(
            problem(_FIELD, "a Dataset of (inputs..., target) items", ref,
                    f"Its {name} Dataset's first item is a {type(item).__name__}.")
        )  # fmt: skip
    return item


def _read_all(dataset: Dataset[Any], ref: str, name: str) -> Split:
    """A whole (validation or test) Dataset in memory, in order."""
    _example(dataset, ref, name)
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    *inputs, targets = default_collate(items)
    return Split(tuple(inputs), targets)


def _classes(train: Dataset[Any], splits: Any) -> tuple[int, tuple[str, ...]]:
    """How many classes, and their names: the train Dataset's ``classes`` (a list of names, as
    torchvision's, or a number), else one pass over every label."""
    declared = getattr(train, "classes", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared, ()
    if isinstance(declared, Sequence) and not isinstance(declared, str) and declared:
        return len(declared), tuple(str(c) for c in declared)
    labels = [int(train[i][-1]) for i in range(len(train))]  # type: ignore[arg-type]
    labels += [int(s.targets.max()) for s in splits if len(s)]
    return max(labels) + 1, ()
