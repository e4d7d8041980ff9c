"""One optimizer step: zero_grad → forward → loss (+ penalties) → backward → unscale → clip →
step, with a closure where the optimizer needs one.

Every place in skier that trains — ``fit``'s loop, the LR range test, curve training in mode
connectivity — takes its steps through :class:`OptimizerStep`, so clipping, AMP's loss scaling
and closures behave the same everywhere. What cannot work together is refused when the step is
built (:func:`step_problems`), never found out mid-run.

>>> model = torch.nn.Linear(2, 1)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> step = OptimizerStep(opt, model.parameters(), grad_clip=1.0)
>>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
>>> loss = step(lambda: (torch.nn.functional.mse_loss(model(x), y), None))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import torch

from skier.errors import ConfigError
from skier.optim import needs_closure

__all__ = ["OptimizerStep", "clip_gradients", "step_problems"]

T = TypeVar("T")
# What the caller's forward pass returns: the loss to backpropagate (data loss + penalties,
# already scaled for its share of a distributed batch) and whatever the caller wants back.
LossAndExtra = Callable[[], tuple[torch.Tensor, T]]


def clip_gradients(
    parameters: Iterable[torch.Tensor], clip: float | None, mode: Literal["norm", "value"]
) -> None:
    """Clip the gradients of ``parameters`` in place: their total L2 norm to ``clip``
    (``mode="norm"``) or each element to ``[-clip, clip]`` (``mode="value"``)."""
    if clip is None:
        return
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(parameters, clip)
    else:
        torch.nn.utils.clip_grad_value_(parameters, clip)


def step_problems(
    optimizer: torch.optim.Optimizer, *, amp: bool, field: str = "optim.name"
) -> list[str]:
    """Why ``optimizer`` cannot take a step with these settings, one line each (empty: it can).

    AMP's gradient scaler cannot step an optimizer that needs a closure: the closure would
    backpropagate the scaled loss and the line search would compare scaled values that are
    never unscaled (``torch.amp.GradScaler.step`` refuses closures).
    """
    if amp and needs_closure(optimizer):
        return [
            f"train.amp must be false with {field} {type(optimizer).__name__} (an optimizer that "
            "needs a closure); got true. Its line search would run on the scaled loss: turn "
            "train.amp off, or use an optimizer without a closure (adam, sgd)."
        ]
    return []


class OptimizerStep:
    """Takes optimizer steps from a forward pass the caller gives.

    ``step(forward)`` calls ``forward()`` — which runs the model and returns ``(loss, extra)``,
    ``loss`` being what to backpropagate — under autocast when a scaler is given, then
    backpropagates, unscales, clips ``parameters`` and steps. With an optimizer that needs a
    closure (L-BFGS), ``forward`` becomes the closure: it may run several times per step, each
    time with its gradients clipped the same way, and the ``extra`` of its first call (the
    metrics of the weights the step started from) is returned.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[torch.Tensor],
        *,
        grad_clip: float | None = None,
        grad_clip_mode: Literal["norm", "value"] = "norm",
        scaler: torch.amp.GradScaler | None = None,
        device_type: str = "cpu",
    ) -> None:
        problems = step_problems(optimizer, amp=scaler is not None)
        if problems:
            raise ConfigError(problems)
        self.optimizer = optimizer
        self.parameters = list(parameters)
        self.grad_clip, self.grad_clip_mode = grad_clip, grad_clip_mode
        self.scaler = scaler
        self.device_type = device_type
        self.needs_closure = needs_closure(optimizer)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for the forward pass when a scaler is given (AMP), else nothing."""
        if self.scaler is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=torch.float16)

    def __call__(self, forward: LossAndExtra[T]) -> T:
        if self.needs_closure:
            return self._closure_step(forward)
        opt, scaler = self.optimizer, self.scaler
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss, extra = forward()  # forward → loss (+ penalties)
        (loss if scaler is None else scaler.scale(loss)).backward()  # backward
        if scaler is not None:
            scaler.unscale_(opt)  # unscale
        clip_gradients(self.parameters, self.grad_clip, self.grad_clip_mode)  # clip
        if scaler is None:
            opt.step()  # step
        else:
            scaler.step(opt)
            scaler.update()
        return extra

    def _closure_step(self, forward: LossAndExtra[T]) -> T:
        first: list[T] = []

        def closure() -> float:
            self.optimizer.zero_grad(set_to_none=True)
            loss, extra = forward()
            loss.backward()
            clip_gradients(self.parameters, self.grad_clip, self.grad_clip_mode)
            first.append(extra)
            return loss.detach()  # type: ignore[return-value]  # torch's closures return tensors

        self.optimizer.step(closure)
        return first[0]
