"""Mini-batches for the loop.

In-memory data is batched by indexing the (device) tensors with a fresh seeded permutation each
epoch: no per-sample Python work, no DataLoader workers. A user's own ``Dataset`` or
``DataLoader`` goes through :class:`skier.train.loader.LoaderBatches` instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal, Protocol

import torch
from torch.utils.data import DataLoader

from skier.data.types import Split
from skier.errors import problem

__all__ = [
    "BatchSource",
    "InformativeBatches",
    "TensorBatches",
    "accumulate_problems",
    "micro_batches",
    "resolve_batch_size",
    "step_batch_size",
    "steps_per_epoch",
]

# (inputs, targets, per-example loss weights or None)
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor | None]


class BatchSource(Protocol):
    num_examples: int

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...

    def scaled(self, data_loss: torch.Tensor, penalty: torch.Tensor | None) -> torch.Tensor:
        """The loss to backpropagate for a batch of this source (a distributed rank's share
        scales its data loss; whole batches do not)."""
        ...


def resolve_batch_size(batch_size: int | Literal["full"], n: int) -> int:
    """``"full"`` (batch gradient descent) means every example in one batch."""
    return n if batch_size == "full" else min(int(batch_size), n)


def accumulate_problems(batch_size: int | str, accumulate: int, train: Any) -> list[str]:
    """What gradient accumulation cannot do (``train.accumulate`` > 1), one line each."""
    if accumulate == 1:
        return []
    out = []
    if batch_size == "full":
        out.append(
            problem("train.batch_size", "a number with train.accumulate > 1", "full",
                    "batch_size is the micro-batch; a step sees batch_size x accumulate "
                    "examples. For full-batch steps in k pieces, set batch_size: ceil(n / k).")
        )  # fmt: skip
    if isinstance(train, DataLoader):
        out.append(
            problem("train.accumulate", "1 when train is a DataLoader", accumulate,
                    "Its batches are the steps it was built with; pass its Dataset (skier "
                    "batches it as batch_size x accumulate) or in-memory data.")
        )  # fmt: skip
    return out


def step_batch_size(
    batch_size: int | Literal["full"], accumulate: int = 1
) -> int | Literal["full"]:
    """The examples of one optimizer step: ``accumulate`` micro-batches of ``batch_size``.

    >>> step_batch_size(32, 4), step_batch_size("full")
    (128, 'full')
    """
    return batch_size if batch_size == "full" else int(batch_size) * accumulate


def micro_batches(batch: Batch, parts: int) -> list[Batch]:
    """One step's batch cut into at most ``parts`` micro-batches of ``ceil(n / parts)``
    examples, in order (the last may be smaller); an empty batch (a distributed rank's empty
    share) stays one empty micro-batch.

    >>> x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    >>> [len(b[1]) for b in micro_batches(((x,), y, None), 4)]
    [3, 3, 3, 1]
    """
    inputs, y, weights = batch
    n = y.shape[0]
    if parts == 1 or n <= 1:
        return [batch]
    size = math.ceil(n / parts)
    cut = [t.split(size) for t in inputs]
    ys = y.split(size)
    ws = weights.split(size) if weights is not None else [None] * len(ys)
    return [(tuple(c[i] for c in cut), ys[i], ws[i]) for i in range(len(ys))]


def steps_per_epoch(n: int, batch_size: int | Literal["full"], *, drop_last: bool) -> int:
    """Batches (optimizer steps) in an epoch of ``n`` examples; with ``drop_last`` a last batch
    smaller than the others is skipped, unless it is the only one.

    >>> [steps_per_epoch(n, 4, drop_last=d) for n, d in ((10, False), (10, True), (3, True))]
    [3, 2, 1]
    """
    if n == 0:
        return 0
    size = resolve_batch_size(batch_size, n)
    return n // size if drop_last else math.ceil(n / size)


def _gather(
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    weights: torch.Tensor | None,
    idx: torch.Tensor,
) -> Batch:
    """The examples ``idx`` of each tensor, by ``index_select`` (a row copy) rather than
    advanced indexing (``t[idx]``, a general gather kernel): the same values in new tensors
    (a caller may keep them), in 53 µs rather than 136 at W1's 128 x 784 rows, 19 rather than
    39 at W2's 32 (1 thread; bench/RESULTS.md, 2026-12-07 fourth session)."""
    w = weights.index_select(0, idx) if weights is not None else None
    return tuple(t.index_select(0, idx) for t in inputs), targets.index_select(0, idx), w


class _WholeBatches:
    """Batches trained as they are: the loss to backpropagate is the data loss (+ penalty)."""

    def scaled(self, data_loss: torch.Tensor, penalty: torch.Tensor | None) -> torch.Tensor:
        return data_loss if penalty is None else data_loss + penalty


class TensorBatches(_WholeBatches):
    """Batches of an in-memory :class:`Split` (already on the training device).

    ``balanced=True`` draws each epoch's examples with probability inverse to their class
    frequency (with replacement), so every class is equally represented in expectation in each
    mini-batch — the class-balanced sampling of the course.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int | Literal["full"],
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        balanced: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.split = split
        self.num_examples = len(split)
        self.batch_size = resolve_batch_size(batch_size, self.num_examples)
        self.shuffle = shuffle
        self.drop_last = drop_last and self.num_examples >= self.batch_size
        self.generator = generator
        self._sample_weights: torch.Tensor | None = None
        if balanced:
            targets = split.targets.cpu()
            counts = torch.bincount(targets)
            self._sample_weights = (1.0 / counts.clamp(min=1).double())[targets]

    def __len__(self) -> int:
        return steps_per_epoch(self.num_examples, self.batch_size, drop_last=self.drop_last)

    def order(self) -> torch.Tensor | None:
        """This epoch's order of the examples (``None``: as stored); draws from the generator."""
        n = self.num_examples
        if self._sample_weights is not None:
            idx = torch.multinomial(self._sample_weights, n, True, generator=self.generator)
        elif self.shuffle and self.batch_size < n:
            idx = torch.randperm(n, generator=self.generator)
        else:
            return None
        return idx.to(self.split.device)

    def __iter__(self) -> Iterator[Batch]:
        inputs, targets, weights = self.split.inputs, self.split.targets, self.split.weights
        order = self.order()
        size = self.batch_size
        stop = len(self) * size
        for start in range(0, min(stop, self.num_examples), size):
            if order is None:  # in stored order: views
                at = slice(start, start + size)
                w = weights[at] if weights is not None else None  # the split's example weights
                yield tuple(t[at] for t in inputs), targets[at], w
            else:
                yield _gather(inputs, targets, weights, order[start : start + size])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None


class InformativeBatches(TensorBatches):
    """Examples drawn with probability growing with their recent loss.

    Each epoch draws ``n`` examples with replacement from
    ``p_i = (1 - floor) * loss_i / sum(loss) + floor / n``: hard examples come more often, and
    the uniform ``floor`` keeps every example's chance at least ``floor / n`` so the selection
    stays "random enough". Each drawn example carries the weight ``1 / (n * p_i)``; the loop
    multiplies its loss by it, which keeps the expected gradient equal to the full-data gradient
    (unbiased). ``loss_i`` is the example's loss the last time it was in a batch (1 before).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int | Literal["full"],
        *,
        floor: float = 0.2,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(split, batch_size, drop_last=drop_last, generator=generator)
        self.floor = floor
        self.recent = torch.ones(self.num_examples, dtype=torch.float32, device=split.device)
        self._current: torch.Tensor | None = None
        self._observed = 0  # examples of the current batch whose losses were recorded

    def probabilities(self) -> torch.Tensor:
        n = self.num_examples
        losses = self.recent.clamp(min=0.0)
        total = losses.sum()
        by_loss = losses / total if float(total) > 0 else torch.full_like(losses, 1.0 / n)
        return (1.0 - self.floor) * by_loss + self.floor / n

    def __iter__(self) -> Iterator[Batch]:
        n, size = self.num_examples, self.batch_size
        probs = self.probabilities()
        order = torch.multinomial(probs.cpu().double(), n, True, generator=self.generator)
        order = order.to(self.split.device)
        weights = (1.0 / (n * probs))[order]
        if self.split.weights is not None:  # the split's own example weights, times the draw's
            weights = weights * self.split.weights[order]
        inputs, targets = self.split.inputs, self.split.targets
        for start in range(0, len(self) * size, size):
            idx = order[start : start + size]
            self._current, self._observed = idx, 0
            gathered, y, _ = _gather(inputs, targets, None, idx)
            yield gathered, y, weights[start : start + size]

    def observe(self, losses: torch.Tensor) -> None:
        """Record the per-example losses of the batch just yielded (stays on the device): all of
        them, or, with gradient accumulation, its micro-batches' in turn. A closure optimizer
        evaluates the batch again: each pass overwrites the one before."""
        if self._current is None:
            return
        if self._observed >= len(self._current):  # a closure's next pass over the batch
            self._observed = 0
        end = self._observed + losses.shape[0]
        self.recent[self._current[self._observed : end]] = losses.detach().float()
        self._observed = end

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"recent": self.recent.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.recent.copy_(state["recent"].to(self.recent.device))
