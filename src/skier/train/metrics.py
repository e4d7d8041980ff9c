"""Losses and the evaluation pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from skier.data.types import Split

__all__ = ["LossFn", "evaluate_split", "make_example_loss", "make_loss"]

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


@torch.no_grad()
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
    was_training = model.training
    model.eval()
    try:
        n = len(split)
        loss_sum = torch.zeros((), dtype=torch.float64, device=split.device)
        wrong = torch.zeros((), dtype=torch.int64, device=split.device)
        for start in range(0, n, batch_size):
            inputs = tuple(t[start : start + batch_size] for t in split.inputs)
            y = split.targets[start : start + batch_size]
            out = model(*inputs).float()
            if classification:
                loss_sum += F.cross_entropy(out, y, reduction="sum")
                wrong += (out.argmax(dim=1) != y).sum()
            else:
                loss_sum += F.mse_loss(out, y.reshape(out.shape), reduction="sum") / max(
                    out[0].numel(), 1
                )
        result = {"loss": float(loss_sum) / max(n, 1)}
        if classification:
            error = float(wrong) / max(n, 1)
            result["error"] = error
            result["accuracy"] = 1.0 - error
        return result
    finally:
        model.train(was_training)
