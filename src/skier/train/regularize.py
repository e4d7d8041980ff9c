"""Explicit penalty terms: L1 and L2 on chosen parameters, added to the data loss.

The penalty is ``l1 * sum|w| + l2 / 2 * sum w^2`` over the penalized parameters, so the L2 term's
gradient is ``l2 * w`` — the same as coupled weight decay with SGD. By default (``penalize:
weights``) biases and the parameters of normalization layers are left out, as is usual: they
set offsets and scales, not the capacity the penalty is meant to limit.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
>>> [name for name, _ in penalized_parameters(net, "weights")]
['0.weight']
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

__all__ = ["Penalty", "penalized_parameters"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def penalized_parameters(
    model: nn.Module, penalize: Literal["weights", "all"]
) -> Iterator[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs a penalty applies to."""
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORMS)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if penalize == "weights" and (is_norm or name == "bias"):
                continue
            yield (f"{module_name}.{name}" if module_name else name), param


class Penalty:
    """Callable that returns the current penalty as a scalar tensor (part of the graph)."""

    def __init__(
        self, model: nn.Module, *, l1: float, l2: float, penalize: Literal["weights", "all"]
    ) -> None:
        pairs = list(penalized_parameters(model, penalize))
        self.names = [name for name, _ in pairs]
        self.params = [p for _, p in pairs]
        self.l1, self.l2 = l1, l2

    def __call__(self) -> torch.Tensor:
        terms = []
        if self.l1:
            terms.append(self.l1 * torch.stack([p.abs().sum() for p in self.params]).sum())
        if self.l2:
            terms.append(0.5 * self.l2 * torch.stack([p.square().sum() for p in self.params]).sum())
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]
