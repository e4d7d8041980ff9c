"""Batches from a user's ``Dataset`` (data that need not fit in memory) or ``DataLoader``.

For a ``Dataset``, skier builds the ``DataLoader`` itself and makes it exact:

- **the order** of each epoch is a permutation drawn from the run's seeded shuffle generator,
  the same draw the in-memory batches make, so a ``TensorDataset`` trains exactly as the
  tensors it holds;
- **each example's randomness**: before ``dataset[i]`` is read, torch's CPU generator, numpy's
  and Python's ``random`` are seeded from ``(train.seed, epoch, i)`` (and the main process's
  states are put back after), so random augmentation inside ``__getitem__`` draws the same
  numbers whatever ``train.num_workers``, whichever worker reads the example, and after a
  resume;
- **the workers** (``train.num_workers``) are seeded from ``(train.seed, epoch, worker id)``
  through the loader's own generator, never from the global RNG, so starting them changes no
  draw of the training (dropout, ...);
- **the position**: the epoch is in :meth:`LoaderBatches.state_dict` (the shuffle generator is
  in the checkpoint's RNG states), so a resumed run reads the epochs the uninterrupted one would.

A ``DataLoader`` the user built is used as it is. skier restores the global RNG states on a
resume, so a loader that draws only from them (its default sampler with no ``generator``,
workers that are not persistent) resumes the same way; a loader with its own generator,
sampler state or persistent workers' RNG is outside what skier records.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from skier.errors import problem
from skier.train.batches import Batch, _WholeBatches, resolve_batch_size

__all__ = ["LoaderBatches", "SeededExamples", "example_seed", "loader_problems"]

_MASK = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64's finaliser: nearby inputs give unrelated 64-bit outputs."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def example_seed(seed: int, epoch: int, index: int) -> int:
    """The seed example ``index`` is read with in ``epoch`` of a run seeded ``seed`` (63 bits).

    >>> example_seed(0, 1, 5) == example_seed(0, 1, 5) != example_seed(0, 2, 5)
    True
    """
    return _mix(_mix(_mix(seed & _MASK) ^ epoch) ^ index) >> 1


class SeededExamples(Dataset[Any]):
    """``dataset[i]`` read with seeded RNGs; its keys are ``(epoch, i)`` pairs.

    In the main process (``num_workers: 0``) the global torch (CPU), numpy and ``random``
    states are saved and put back around each read, so the training's own draws (dropout,
    ...) do not depend on how many examples were read or by whom.
    """

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[Any]:
        """A batch's examples (the DataLoader asks for them together): the main process's
        states are saved and put back once a batch (numpy's take about 0.2 ms)."""
        main = get_worker_info() is None
        saved = (torch.get_rng_state(), np.random.get_state(), random.getstate()) if main else None
        try:
            out = []
            for epoch, index in keys:
                seed = example_seed(self.seed, epoch, index)
                torch.default_generator.manual_seed(seed)
                np.random.seed(seed & 0xFFFFFFFF)
                random.seed(seed)
                out.append(self.dataset[index])
            return out
        finally:
            if saved is not None:
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])


class _EpochOrder(Sampler[tuple[int, int]]):
    """``(epoch, index)`` keys in this epoch's order: a permutation from the shuffle generator
    (drawn as :class:`~skier.train.batches.TensorBatches` draws it), else as stored."""

    def __init__(self, n: int, *, shuffle: bool, generator: torch.Generator | None) -> None:
        self.n, self.shuffle, self.generator = n, shuffle, generator
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (
            torch.randperm(self.n, generator=self.generator).tolist()
            if self.shuffle
            else range(self.n)
        )
        epoch = self.epoch
        return ((epoch, i) for i in order)


def loader_problems(cfg: Any, train: Any) -> list[str]:
    """The loader settings (``train.num_workers``, ``train.prefetch_factor``) this ``train``
    data cannot use, one line each: they are for a Dataset skier loads."""
    if isinstance(train, Dataset) and not isinstance(train, DataLoader):
        if cfg.prefetch_factor is not None and cfg.num_workers == 0:
            return [
                problem("train.prefetch_factor", "null when train.num_workers is 0",
                        cfg.prefetch_factor, "Only worker processes read ahead.")
            ]  # fmt: skip
        return []
    what = "a DataLoader" if isinstance(train, DataLoader) else "in-memory data"
    hint = (
        "A DataLoader is used as it is: build it with the workers you want."
        if isinstance(train, DataLoader)
        else "In-memory batches are indexed on the device; workers load a Dataset's examples."
    )
    out = []
    if cfg.num_workers != 0:
        out.append(problem("train.num_workers", f"0 when train is {what}", cfg.num_workers, hint))
    if cfg.prefetch_factor is not None:
        out.append(
            problem("train.prefetch_factor", f"null when train is {what}", cfg.prefetch_factor,
                    hint)
        )  # fmt: skip
    return out


def _as_batch(item: Any, device: torch.device) -> Batch:
    if isinstance(item, dict):
        raise TypeError("dict batches are not supported; yield (inputs..., target) tuples")
    if not isinstance(item, Sequence) or len(item) < 2:
        raise TypeError("each batch must be a tuple (inputs..., target)")
    *xs, y = item
    inputs = tuple(x.to(device, non_blocking=True) for x in xs)
    return inputs, y.to(device, non_blocking=True), None


class LoaderBatches(_WholeBatches):
    """Batches from a user's ``DataLoader`` (used as it is) or a ``Dataset`` (loaded by a
    ``DataLoader`` skier builds: seeded order and examples, ``num_workers`` workers)."""

    def __init__(
        self,
        source: DataLoader[Any] | Dataset[Any],
        device: torch.device,
        *,
        batch_size: int | Literal["full"] = 128,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool | Literal["auto"] = "auto",
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
    ) -> None:
        self.device, self.seed, self.epoch = device, seed, 0
        self._order: _EpochOrder | None = None
        self._worker_seeds = torch.Generator()  # the loader's own: never the global RNG
        if isinstance(source, DataLoader):
            self.loader: DataLoader[Any] = source
        else:
            n = len(source)  # type: ignore[arg-type]
            size = resolve_batch_size(batch_size, n)
            self._order = _EpochOrder(n, shuffle=shuffle and size < n, generator=generator)
            pin = device.type == "cuda" if pin_memory == "auto" else pin_memory
            self.loader = DataLoader(
                SeededExamples(source, seed),
                batch_size=size,
                sampler=self._order,
                drop_last=drop_last and n >= size,
                num_workers=num_workers,
                pin_memory=pin,
                persistent_workers=persistent_workers and num_workers > 0,
                prefetch_factor=prefetch_factor if num_workers > 0 else None,
                generator=self._worker_seeds,
            )
        dataset = self.loader.dataset
        self.num_examples = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        self.epoch += 1
        if self._order is not None:  # skier's loader: this epoch's keys and worker seeds
            self._order.epoch = self.epoch
            self._worker_seeds.manual_seed(example_seed(self.seed, self.epoch, -1) & _MASK)
        for item in self.loader:
            yield _as_batch(item, self.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The epochs read so far (the order's generator is in the checkpoint's RNG states)."""
        return {"epoch": torch.tensor(self.epoch)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "epoch" in state:
            self.epoch = int(state["epoch"])
