"""Losses and the evaluation pass."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from skier.data.types import Split

__all__ = [
    "LossFn",
    "SplitSums",
    "batch_sums",
    "eval_mode",
    "evaluate_split",
    "make_example_loss",
    "make_loss",
    "split_sums",
    "targets_per_example",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(
    name: Literal["cross_entropy", "mse"], reduction: Literal["mean", "sum"] = "mean"
) -> LossFn:
    """Cross-entropy on logits (classification) or mean squared error (regression).

    With ``reduction="sum"`` the gradient, and so the effective step, grows with the batch size.
    """
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y, reduction=reduction)

    def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y.reshape(out.shape), reduction=reduction)

    return mse


def make_example_loss(name: Literal["cross_entropy", "mse"]) -> LossFn:
    """One loss per example (shape ``N``): the mean over targets for regression."""
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")

    def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per = F.mse_loss(out, y.reshape(out.shape), reduction="none")
        return per.reshape(per.shape[0], -1).mean(dim=1)

    return mse


def targets_per_example(out: torch.Tensor) -> int:
    """How many numbers one example's output holds: a regression loss summed over a batch is
    divided by it, so every loss skier reports is a mean *per example*."""
    return max(math.prod(out.shape[1:]), 1)


def batch_sums(
    out: torch.Tensor, y: torch.Tensor, *, classification: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss summed over a batch's examples (per example: cross-entropy, or squared error
    averaged over the targets) and, for classification, the number it gets wrong (else 0).

    Written with batch-level ops only, so ``torch.func.vmap`` can run it over many weight
    settings at once (the landscapes' many-points pass does).
    """
    if classification:
        wrong = (out.argmax(dim=-1) != y).sum()
        return F.cross_entropy(out, y, reduction="sum"), wrong
    squared = F.mse_loss(out, y.reshape(out.shape), reduction="sum")
    return squared / targets_per_example(out), torch.zeros((), dtype=torch.int64, device=out.device)


class SplitSums:
    """Sums and counts over examples (loss, wrong, seen), kept on the device and read once.

    Sums, not means, so that shares of a split (batches, distributed ranks) add up exactly to
    the metric over every example.
    """

    def __init__(
        self, device: torch.device, *, classification: bool, dtype: torch.dtype = torch.float64
    ) -> None:
        self.classification = classification
        self.loss = torch.zeros((), dtype=dtype, device=device)
        self.wrong = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0

    def add(self, loss_sum: torch.Tensor, wrong: torch.Tensor | None, n: int) -> None:
        """One batch: its summed per-example loss, its wrong count, its size."""
        self.loss.add_(loss_sum.detach())
        if self.classification and wrong is not None:
            self.wrong.add_(wrong)
        self.seen += n

    def totals(self) -> list[torch.Tensor | float]:
        """``[loss, wrong, seen]``: what a distributed run all-reduces."""
        return [self.loss, self.wrong, float(self.seen)]

    def metrics(self, totals: list[float] | None = None) -> dict[str, float]:
        """Mean loss (and error, accuracy) from these sums, or from ``totals`` (all-reduced)."""
        if totals is None:  # one synchronisation for both numbers
            loss, wrong = torch.stack([self.loss.double(), self.wrong.double()]).tolist()
            seen = float(self.seen)
        else:
            loss, wrong, seen = totals
        result = {"loss": loss / max(seen, 1.0)}
        if self.classification:
            result["error"] = wrong / max(seen, 1.0)
            result["accuracy"] = 1.0 - result["error"]
        return result


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode and without gradients; the caller's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def split_sums(
    model: torch.nn.Module,
    split: Split,
    *,
    classification: bool,
    lo: int = 0,
    hi: int | None = None,
    batch_size: int = 4096,
) -> SplitSums:
    """The sums over examples ``[lo, hi)`` of ``split`` (all of it by default), in batches, in
    the model's current mode: the one evaluation pass every metric of skier is built on."""
    hi = len(split) if hi is None else hi
    sums = SplitSums(split.device, classification=classification)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        out = model(*(t[start:stop] for t in split.inputs)).float()
        loss_sum, wrong = batch_sums(out, split.targets[start:stop], classification=classification)
        sums.add(loss_sum, wrong, stop - start)
    return sums


def evaluate_split(
    model: torch.nn.Module,
    split: Split,
    *,
    classification: bool,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Mean loss (and error, accuracy for classification) over a whole split, in eval mode.

    The caller's train/eval mode is restored afterwards.
    """
    with eval_mode(model):
        sums = split_sums(model, split, classification=classification, batch_size=batch_size)
        return sums.metrics()
