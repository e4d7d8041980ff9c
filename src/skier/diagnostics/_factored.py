"""A landscape's points without re-running the layers that see only the data.

A grid point's weights are ``θ0 + α·δ + β·η``. A layer whose input does not depend on any
trainable weight (the first ``Linear`` or convolution of most models: its input is the data)
has an output that is linear in its own weight and bias jointly, so at every point it is
``F(θ0) + α·F(δ) + β·F(η)``: three outputs computed once, then one or two additions a point
instead of the layer's product. On a small MLP that layer is most of a forward pass.

While :meth:`InputLayers.installed` is active, each such layer's ``forward`` returns that sum
for the inputs it saw when it was found (recognized by their memory, which the captured
tensors keep alive) and runs as usual for any other input. The points must then be evaluated
one at a time with ordinary forward passes (not the vmap'd pass, whose weights differ per
point inside one call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from skier.data.types import Split
from skier.diagnostics._common import ParamList

__all__ = ["InputLayers"]

# Layers whose output is linear in (weight, bias) jointly, for a fixed input.
_AFFINE = (nn.Linear, nn.modules.conv._ConvNd)
# The precomputed outputs are bounded (elements over all layers, inputs and directions + 1).
_MAX_ELEMENTS = 1 << 26

_Key = tuple[int, torch.Size, tuple[int, ...], torch.dtype, torch.device]


def _key(t: torch.Tensor) -> _Key:
    return (t.data_ptr(), t.shape, t.stride(), t.dtype, t.device)


class _Layer:
    """One factored layer: per input it saw, its output at θ0 and along each direction."""

    def __init__(self, module: nn.Module, pieces: dict[_Key, list[torch.Tensor]]) -> None:
        self.module = module
        self.pieces = pieces
        self.inputs: list[torch.Tensor] = []  # kept alive so that their memory stays theirs
        self.row: dict[_Key, torch.Tensor] = {}
        self.alpha = 0.0

    def set_row(self, beta: float) -> None:
        self.row = {
            k: (p[0] if len(p) == 2 else p[0] + beta * p[2]) for k, p in self.pieces.items()
        }

    def forward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def factored(*args: Any, **kwargs: Any) -> Any:
            if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
                row = self.row.get(_key(args[0]))
                if row is not None:
                    return torch.add(row, self.pieces[_key(args[0])][1], alpha=self.alpha)
            return original(*args, **kwargs)

        return factored


class InputLayers:
    """The factored layers of ``model`` for points ``base + α·dirs[0] (+ β·dirs[1])``."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers

    @classmethod
    def find(
        cls,
        model: nn.Module,
        split: Split,
        params: Sequence[torch.Tensor],
        dirs: Sequence[ParamList],
        batch_size: int,
    ) -> InputLayers | None:
        """Factor every ``Linear``/convolution that is called only on inputs no trainable weight
        reaches (found by one forward pass over ``split`` in batches of ``batch_size``, the
        evaluation's); the model must hold ``base`` now. ``None`` when there is none."""
        seen: dict[nn.Module, list[torch.Tensor]] = {}
        refused: set[nn.Module] = set()

        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            single = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
            if not single or args[0].requires_grad:
                refused.add(module)
            else:
                seen.setdefault(module, []).append(args[0])

        candidates = [
            m for m in model.modules() if isinstance(m, _AFFINE) and "forward" not in m.__dict__
        ]
        handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in candidates]
        try:
            with torch.enable_grad():  # an input downstream of a trainable weight requires grad
                for start in range(0, len(split), batch_size):
                    model(*(t[start : start + batch_size] for t in split.inputs))
        finally:
            for h in handles:
                h.remove()
        index = {id(p): i for i, p in enumerate(params)}
        layers: list[_Layer] = []
        budget = _MAX_ELEMENTS
        with torch.no_grad():
            for module in candidates:
                inputs = seen.get(module)
                if module in refused or not inputs:
                    continue
                own = dict(module.named_parameters(recurse=False))
                if not any(id(p) in index for p in own.values()):
                    continue  # nothing of it moves
                pieces: dict[_Key, list[torch.Tensor]] = {}
                for x in inputs:
                    if _key(x) in pieces:
                        continue
                    out = [module(x)]
                    for d in dirs:
                        values = {
                            name: d[index[id(p)]] if id(p) in index else torch.zeros_like(p)
                            for name, p in own.items()
                        }
                        out.append(torch.func.functional_call(module, values, (x,)))
                    pieces[_key(x)] = out
                size = sum(t.numel() for out in pieces.values() for t in out)
                if size > budget:
                    continue
                budget -= size
                layer = _Layer(module, pieces)
                layer.inputs = inputs
                layers.append(layer)
        return cls(layers) if layers else None

    def set_row(self, beta: float) -> None:
        for layer in self.layers:
            layer.set_row(beta)

    def set_alpha(self, alpha: float) -> None:
        for layer in self.layers:
            layer.alpha = alpha

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The factored ``forward`` on each layer, removed on exit."""
        try:
            for layer in self.layers:
                original = layer.module.forward
                layer.module.forward = layer.forward(original)
            yield
        finally:
            for layer in self.layers:
                layer.module.__dict__.pop("forward", None)
