"""A landscape's few-output ``Linear`` layers (a classifier's head) through a faster product.

On the CPU, torch's kernel for a ``Linear`` with 6-15 outputs is slow: for 1,437 x 128 inputs
and 10 outputs ``F.linear`` takes ~185 µs at one thread, the same product with the weight
padded to 16 zero columns (``addmm`` with the transposed weight kept in a buffer) ~85 µs
(bench/RESULTS.md, 2026-12-07 fifth session). The outputs are the same to float rounding.

While :meth:`Heads.installed` is active, each such layer's ``forward`` computes that product for
a 2-D float32 input of at least 128 rows, with no gradient, and runs as usual for anything else.
The layer's current weight and bias are copied into the buffer at each call, so the product is
the layer at whatever weights the points write.

Where the layer's output is the model's output and the measured loss pads a few classes'
logits with ``-inf`` columns (:func:`skier.train.losses.pad_few_classes`), the product's 16
columns are returned with ``-inf`` in the added ones: the padding the loss would make, without
its copy. The loss then sees 16 columns and pads nothing; the error's arg-max is unchanged
(``-inf`` never wins over the real columns' first maximum).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from skier.data.types import Split
from skier.train.losses import PAD_CLASSES, PAD_MIN_ROWS

__all__ = ["Heads"]

_WIDTH = PAD_CLASSES  # the product's columns: those the loss pads to
_FEW = range(6, _WIDTH)  # outputs where the padded product was measured faster (6-15)
_MIN_ROWS = 128  # fewer rows: the two products cost about the same


class _Head:
    """One layer: its transposed weight and its bias in zero-padded 16-column buffers."""

    def __init__(self, module: nn.Linear, padded: bool) -> None:
        self.module = module
        self.padded = padded
        weight = module.weight
        self.weight_t = torch.zeros(weight.shape[1], _WIDTH, dtype=weight.dtype,
                                    device=weight.device)  # fmt: skip
        self.bias = torch.zeros(_WIDTH, dtype=weight.dtype, device=weight.device)

    def forward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        module, k = self.module, self.module.out_features

        def few(*args: Any, **kwargs: Any) -> Any:
            x = args[0] if len(args) == 1 and not kwargs else None
            if (
                not isinstance(x, torch.Tensor)
                or x.dim() != 2
                or x.shape[0] < _MIN_ROWS
                or x.dtype != torch.float32
                or x.device != self.bias.device
                or torch.is_grad_enabled()
            ):
                return original(*args, **kwargs)
            self.weight_t[:, :k].copy_(module.weight.t())
            if module.bias is not None:
                self.bias[:k].copy_(module.bias)
            z = torch.addmm(self.bias, x, self.weight_t)
            if self.padded and x.shape[0] >= PAD_MIN_ROWS:
                z[:, k:].fill_(-math.inf)
                return z
            return z[:, :k].contiguous()

        return few


class Heads:
    """The few-output ``Linear`` layers of a model that a landscape evaluates on the CPU."""

    def __init__(self, heads: list[_Head]) -> None:
        self.heads = heads

    @classmethod
    def find(
        cls, model: nn.Module, split: Split, batch_size: int, *, pads: bool,
        skip: set[nn.Module] | None = None,
    ) -> Heads | None:  # fmt: skip
        """Every plain float32 ``nn.Linear`` on the CPU with 6-15 outputs (not in ``skip``),
        found by one forward pass over ``split``'s first batch. ``pads``: the measured loss pads
        a few classes' logits with ``-inf`` (plain cross-entropy of integer targets); then a
        layer whose output is the model's output returns the padded columns. ``None`` when
        there is none."""
        candidates = [
            m for m in model.modules()
            if type(m).forward is nn.Linear.forward
            and isinstance(m, nn.Linear)
            and "forward" not in m.__dict__
            and m.out_features in _FEW
            and m.weight.dtype == torch.float32
            and m.weight.device.type == "cpu"
            and m not in (skip or set())
        ]  # fmt: skip
        if not candidates or len(split) == 0:
            return None
        outputs: dict[nn.Module, list[torch.Tensor]] = {}

        def record(module: nn.Module, args: Any, output: Any) -> None:
            outputs.setdefault(module, []).append(output)

        handles = [m.register_forward_hook(record) for m in candidates]
        try:
            with torch.no_grad():
                out = model(*(t[:batch_size] for t in split.inputs))
        finally:
            for h in handles:
                h.remove()
        targets = split.targets
        integer = targets.dim() == 1 and not targets.is_floating_point()
        heads = []
        for m in candidates:
            last = outputs.get(m, [])
            # the model returns this layer's output tensor itself, not a copy or a sum
            final = len(last) == 1 and last[0] is out
            heads.append(_Head(m, padded=pads and integer and final))
        return cls(heads)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The faster ``forward`` on each layer, removed on exit (an error included)."""
        try:
            for head in self.heads:
                head.module.forward = head.forward(head.module.forward)  # type: ignore[method-assign]
            yield
        finally:
            for head in self.heads:
                head.module.__dict__.pop("forward", None)
