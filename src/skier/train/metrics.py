"""Losses and the evaluation pass."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from skier.data.types import Split
from skier.train.losses import Loss, LossFn, pad_few_classes
from skier.train.scoring import Accumulator, Scoring

__all__ = [
    "LossFn",
    "SplitSums",
    "batch_sums",
    "count_wrong",
    "eval_mode",
    "evaluate_split",
    "split_sums",
    "targets_per_example",
]


def targets_per_example(out: torch.Tensor) -> int:
    """How many numbers one example's output holds: a regression loss summed over a batch is
    divided by it, so every loss skier reports is a mean *per example*."""
    return max(math.prod(out.shape[1:]), 1)


def count_wrong(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many examples of a batch a classifier gets wrong: the arg-max class, a single
    logit's sign (binary cross-entropy), or any label of a multi-label example."""
    if y.dim() == 2:  # multi-label: wrong unless every label is right (subset accuracy)
        return ((out > 0) != (y > 0.5)).any(dim=1).sum()
    if out.shape[-1] == 1:
        return ((out[..., 0] > 0).long() != y).sum()
    return (out.argmax(dim=-1) != y).sum()


def batch_sums(
    out: torch.Tensor, y: torch.Tensor, *, classification: bool, loss: Loss | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss summed over a batch's examples (per example: cross-entropy, or squared error
    averaged over the targets; ``loss``: that loss's per-example value) and, for
    classification, the number it gets wrong (else 0).

    Written with batch-level ops only, so ``torch.func.vmap`` can run it over many weight
    settings at once (the landscapes' many-points pass does).
    """
    zero = torch.zeros((), dtype=torch.int64, device=out.device)
    if loss is not None:
        total, _ = loss.batch_sum(out, y)
        return total, count_wrong(out, y) if classification else zero
    if classification:
        return F.cross_entropy(pad_few_classes(out, y), y, reduction="sum"), count_wrong(out, y)
    squared = F.mse_loss(out, y.reshape(out.shape), reduction="sum")
    return squared / targets_per_example(out), zero


def batch_totals(
    out: torch.Tensor, y: torch.Tensor, *, classification: bool, loss: Loss | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """A batch's summed loss, wrong count (``None`` unless classification, or a zero with the
    default loss) and total class weight (``None``: one each): what :class:`SplitSums` adds."""
    if loss is None:
        loss_sum, wrong = batch_sums(out, y, classification=classification)
        return loss_sum, wrong, None
    loss_sum, weight = loss.batch_sum(out, y)
    return loss_sum, count_wrong(out, y) if classification else None, weight


class SplitSums:
    """Sums and counts over examples (loss, wrong, seen), kept on the device and read once;
    with ``scoring``, the device state of the metrics it asks for (:mod:`skier.train.scoring`).

    Sums, not means, so that shares of a split (batches, distributed ranks) add up exactly to
    the metric over every example. A loss with class weights divides by the examples' total
    weight (``weight``), as torch's weighted mean does.
    """

    def __init__(
        self,
        device: torch.device,
        *,
        classification: bool,
        dtype: torch.dtype = torch.float64,
        scoring: Scoring | None = None,
    ) -> None:
        self.classification = classification
        self.loss = torch.zeros((), dtype=dtype, device=device)
        self.wrong = torch.zeros((), dtype=torch.int64, device=device)
        self.weight: torch.Tensor | None = None
        self.seen = 0
        self.scores: Accumulator | None = scoring.start(device) if scoring else None

    def add(
        self,
        loss_sum: torch.Tensor,
        wrong: torch.Tensor | None,
        n: int,
        weight: torch.Tensor | None = None,
    ) -> None:
        """One batch: its summed per-example loss, its wrong count, its size (and the
        examples' total class weight, when the loss weighs classes)."""
        self.loss.add_(loss_sum.detach())
        if self.classification and wrong is not None:
            self.wrong.add_(wrong)
        if weight is not None:
            self.weight = weight.double() if self.weight is None else self.weight + weight
        self.seen += n

    def totals(self) -> list[torch.Tensor | float]:
        """``[loss, wrong, seen]`` (and the class weight): what a distributed run all-reduces."""
        weight = [] if self.weight is None else [self.weight]
        return [self.loss, self.wrong, float(self.seen), *weight]

    def metrics(self, totals: list[float] | None = None) -> dict[str, float]:
        """Mean loss (and error, accuracy) from these sums, or from ``totals`` (all-reduced),
        then the asked-for metrics."""
        if totals is None:  # one synchronisation for both numbers
            loss, wrong = torch.stack([self.loss.double(), self.wrong.double()]).tolist()
            seen = float(self.seen)
            denominator = float(self.weight) if self.weight is not None else seen
        else:
            loss, wrong, seen = totals[:3]
            denominator = totals[3] if len(totals) > 3 else seen
        result = {"loss": loss / (denominator if denominator > 0 else 1.0)}
        if self.classification:
            result["error"] = wrong / max(seen, 1.0)
            result["accuracy"] = 1.0 - result["error"]
        if self.scores is not None:
            result.update(self.scores.compute())
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
    loss: Loss | None = None,
    scoring: Scoring | None = None,
) -> SplitSums:
    """The sums over examples ``[lo, hi)`` of ``split`` (all of it by default), in batches, in
    the model's current mode: the one evaluation pass every metric of skier is built on.
    ``loss``: the run's loss (default: cross-entropy or MSE); ``scoring``: more metrics."""
    hi = len(split) if hi is None else hi
    sums = SplitSums(split.device, classification=classification, scoring=scoring)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        out = model(*(t[start:stop] for t in split.inputs)).float()
        y = split.targets[start:stop]
        loss_sum, wrong, weight = batch_totals(out, y, classification=classification, loss=loss)
        sums.add(loss_sum, wrong, stop - start, weight)
        if sums.scores is not None:
            sums.scores.update(out, y)
    return sums


def evaluate_split(
    model: torch.nn.Module,
    split: Split,
    *,
    classification: bool,
    batch_size: int = 4096,
    loss: Loss | None = None,
    scoring: Scoring | None = None,
) -> dict[str, float]:
    """Mean loss (and error, accuracy for classification; ``scoring``'s metrics) over a whole
    split, in eval mode.

    The caller's train/eval mode is restored afterwards.
    """
    with eval_mode(model):
        sums = split_sums(model, split, classification=classification, batch_size=batch_size,
                          loss=loss, scoring=scoring)  # fmt: skip
        return sums.metrics()
