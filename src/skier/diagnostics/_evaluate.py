"""Evaluating a model at many weight settings on one in-memory split, and re-estimating batch
norm: shared by the landscapes and mode connectivity."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from skier.data.types import Split
from skier.diagnostics._common import ParamList, trainable_parameters
from skier.train.losses import Loss
from skier.train.metrics import batch_sums, batch_totals, split_sums

__all__ = ["BATCH_NORM", "Evaluator", "recompute_batch_norm"]

BATCH_NORM = (nn.modules.batchnorm._BatchNorm,)

# A point's summed loss, wrong count and total class weight (Evaluator.sums).
_Sums = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def _added(a: _Sums, b: _Sums) -> _Sums:
    """Two batches' sums added as :class:`~skier.train.metrics.SplitSums` adds them."""
    loss = a[0].double() + b[0]
    wrong = None if a[1] is None or b[1] is None else a[1] + b[1]
    weight = None if a[2] is None or b[2] is None else a[2].double() + b[2]
    return loss, wrong, weight


class Evaluator:
    """Loss and error of the model at many weight settings, on one in-memory split.

    The loss is ``loss`` (the run's), else cross-entropy or MSE by ``classification``; a
    callable loss (one torch.func may not vmap) is evaluated one point at a time."""

    def __init__(
        self,
        model: nn.Module,
        split: Split,
        *,
        classification: bool,
        batch_size: int,
        batch_points: int,
        loss: Loss | None = None,
    ) -> None:
        self.model = model
        self.split = split
        self.classification = classification
        self.batch_size = batch_size
        self.batch_points = batch_points if loss is None or loss.targets is not None else 1
        self.loss = loss
        self.names = [n for n, _ in trainable_parameters(model)]
        self.params = [p for _, p in trainable_parameters(model)]
        self._batches: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] | None = None

    @torch.no_grad()
    def at(self, weights: Sequence[ParamList]) -> tuple[list[float], list[float]]:
        """Loss and error for each parameter list in ``weights``."""
        if self.batch_points > 1 and len(weights) > 1:
            return self._batched(weights)
        losses, errors = [], []
        for w in weights:
            for p, value in zip(self.params, w, strict=True):
                p.copy_(value)
            loss, error = self._one()
            losses.append(loss)
            errors.append(error)
        return losses, errors

    def _one(self) -> tuple[float, float]:
        sums = split_sums(self.model, self.split, classification=self.classification,
                          batch_size=self.batch_size, loss=self.loss)  # fmt: skip
        metrics = sums.metrics()  # one synchronisation per point: both numbers together
        return metrics["loss"], metrics.get("error", math.nan)

    @property
    def pads(self) -> bool:
        """Whether the measured loss pads a few classes' logits with ``-inf`` columns."""
        return self.loss.pads if self.loss is not None else self.classification

    def sums(self) -> _Sums:
        """The summed loss, wrong count and total class weight over the split at the model's
        current weights, left on the device (no synchronisation): :meth:`means` reads many
        points' at once. The batches are those of ``split_sums``, sliced once."""
        if self._batches is None:
            split, size = self.split, self.batch_size
            self._batches = [
                (tuple(t[i : i + size] for t in split.inputs), split.targets[i : i + size])
                for i in range(0, len(split), size)
            ]
        total: _Sums | None = None
        for inputs, y in self._batches:
            out = self.model(*inputs).float()
            sums = batch_totals(out, y, classification=self.classification, loss=self.loss)
            total = sums if total is None else _added(total, sums)
        assert total is not None  # the split is not empty
        return total

    def means(self, points: Sequence[_Sums]) -> tuple[list[float], list[float]]:
        """Loss and error of each point's :meth:`sums`, read in one synchronisation: the
        numbers ``split_sums(...).metrics()`` gives."""
        if not points:
            return [], []
        kept = [0] + [i for i in (1, 2) if points[0][i] is not None]
        columns = [torch.stack([s[i].double() for s in points])  # type: ignore[union-attr]
                   for i in kept]  # fmt: skip
        values = dict(zip(kept, torch.stack(columns).tolist(), strict=True))
        n = float(len(self.split))
        denominators = values.get(2, [n] * len(points))
        losses = [v / (d if d > 0 else 1.0) for v, d in zip(values[0], denominators, strict=True)]
        if not self.classification:
            return losses, [math.nan] * len(points)
        return losses, [w / max(n, 1.0) for w in values[1]]

    def _batched(self, weights: Sequence[ParamList]) -> tuple[list[float], list[float]]:
        # Several points in one forward pass: vmap over stacked parameters, shared inputs, and
        # the same per-batch sums as the one-point pass, vmap'd over the points.
        from torch.func import functional_call, vmap

        buffers = dict(self.model.named_buffers())
        losses: list[float] = []
        errors: list[float] = []
        split, n = self.split, len(self.split)
        # The summed loss's denominator: the examples, or their total class weight.
        weight = self.loss.total_weight(split.targets) if self.loss is not None else None
        denominator = float(weight) if weight is not None else n
        for first in range(0, len(weights), self.batch_points):
            chunk = weights[first : first + self.batch_points]
            stacked = {
                name: torch.stack([w[i] for w in chunk]) for i, name in enumerate(self.names)
            }
            k = len(chunk)
            loss_sum = torch.zeros(k, dtype=torch.float64, device=split.device)
            wrong = torch.zeros(k, dtype=torch.int64, device=split.device)

            def sums(
                params: dict[str, torch.Tensor], y: torch.Tensor, *inputs: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
                out = functional_call(self.model, ({**params, **buffers}), inputs).float()
                return batch_sums(out, y, classification=self.classification, loss=self.loss)

            for start in range(0, n, self.batch_size):
                inputs = tuple(t[start : start + self.batch_size] for t in split.inputs)
                y = split.targets[start : start + self.batch_size]
                in_dims = (0, None) + (None,) * len(inputs)
                batch_loss, batch_wrong = vmap(sums, in_dims=in_dims)(stacked, y, *inputs)
                loss_sum += batch_loss
                wrong += batch_wrong
            values = torch.stack([loss_sum, wrong.to(torch.float64)]).tolist()
            losses += [v / denominator for v in values[0]]
            errors += [w / n if self.classification else math.nan for w in values[1]]
        return losses, errors


def recompute_batch_norm(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
) -> None:
    """Re-estimate every batch-norm layer's running statistics on ``split`` (in place).

    The statistics are averaged over the split's batches (``momentum=None``) with dropout off;
    a split of up to ``batch_size`` examples is one batch, so its mean and variance are exact.
    """
    layers = [m for m in model.modules() if isinstance(m, BATCH_NORM)]
    if not layers:
        return
    saved = [(m, m.momentum, m.training) for m in layers]
    was_training = model.training
    model.eval()
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        n = len(split)
        order = torch.randperm(n, generator=generator).to(split.device)
        with torch.no_grad():
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                if index.numel() < 2:
                    continue  # batch norm cannot use a batch of one in train mode
                model(*(t[index] for t in split.inputs))
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
