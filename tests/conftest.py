"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest


@pytest.fixture
def interrupt_at() -> Callable[[int | None], Any]:
    """A callback factory: ``interrupt_at(3)`` raises ``KeyboardInterrupt`` (a Ctrl-C) at the
    end of epoch 3, after that epoch's other callbacks (``None``: never). It is left out of
    checkpoints (``stateful = False``), so a resume may pass it or not."""
    from skier.train import Callback, TrainState  # here: tests without torch stay without it

    class InterruptAt(Callback):
        stateful = False

        def __init__(self, epoch: int | None) -> None:
            self.epoch = epoch

        def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
            if state.epoch == self.epoch:
                raise KeyboardInterrupt

    return InterruptAt


@pytest.fixture
def dense_top_eigenvalue() -> Callable[..., float]:
    """``dense_top_eigenvalue(model, x, y, loss)``: the largest-magnitude eigenvalue of
    ``loss(model(x), y)``'s Hessian over every weight, by autograd's dense Hessian in float64 —
    the oracle for skier's Lanczos on small models."""
    import torch
    from torch.func import functional_call

    def top(model: Any, x: Any, y: Any, loss: Callable[[Any, Any], Any]) -> float:
        model = model.double()
        names = [n for n, _ in model.named_parameters()]
        shapes = [p.shape for p in model.parameters()]

        def of(theta: torch.Tensor) -> torch.Tensor:
            pieces = torch.split(theta, [s.numel() for s in shapes])
            params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
            return loss(functional_call(model, params, (x.double(),)), y.double())

        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        values = torch.linalg.eigvalsh(torch.autograd.functional.hessian(of, flat))
        return float(values[values.abs().argmax()])

    return top


@pytest.fixture
def dense_trace() -> Callable[..., float]:
    """``dense_trace(model, x, y, loss)``: the trace of ``loss(model(x), y)``'s Hessian over
    every weight, by autograd's dense Hessian in float64 (the model in eval mode) — the oracle
    for skier's trace estimators on small models."""
    import torch
    from torch.func import functional_call

    def trace(model: Any, x: Any, y: Any, loss: Callable[[Any, Any], Any]) -> float:
        model = model.double().eval()
        names = [n for n, _ in model.named_parameters()]
        shapes = [p.shape for p in model.parameters()]
        target = y.double() if y.is_floating_point() else y

        def of(theta: torch.Tensor) -> torch.Tensor:
            pieces = torch.split(theta, [s.numel() for s in shapes])
            params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
            return loss(functional_call(model, params, (x.double(),)), target)

        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        return float(torch.autograd.functional.hessian(of, flat).diagonal().sum())

    return trace
