"""One optimizer step: zero_grad → forward → loss (+ penalties) → backward → unscale → clip →
step, with a closure where the optimizer needs one, over one batch or several micro-batches.

Every place in skier that trains — ``fit``'s loop, the LR range test, curve training in mode
connectivity — takes its steps through :class:`OptimizerStep`, so clipping, AMP's loss scaling
and closures behave the same everywhere. What cannot work together is refused when the step is
built (:func:`step_problems`), never found out mid-run.

>>> model = torch.nn.Linear(2, 1)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> step = OptimizerStep(opt, model.parameters(), grad_clip=1.0)
>>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
>>> loss = step(lambda: (torch.nn.functional.mse_loss(model(x), y), None))

Gradient accumulation is the same step over several forward passes (each loss already weighted by
its share of the step's examples): their gradients add up, and the optimizer steps once.

>>> mse = torch.nn.functional.mse_loss
>>> halves = [(x[:2], y[:2]), (x[2:], y[2:])]
>>> extras = step.accumulate([lambda a=a, b=b: (0.5 * mse(model(a), b), None) for a, b in halves])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import torch

from skier.errors import ConfigError
from skier.optim import needs_closure
from skier.optim.fused import fused_adam_step, grads_to_none

__all__ = ["OptimizerStep", "clip_gradients", "step_problems"]

T = TypeVar("T")
# What the caller's forward pass returns: the loss to backpropagate (data loss + penalties,
# already scaled for its share of a distributed batch) and whatever the caller wants back.
LossAndExtra = Callable[[], tuple[torch.Tensor, T]]
# A context in which a backward pass does not synchronise gradients (DDP's ``no_sync``), for every
# micro-batch of an accumulated step but the last; one process: nothing.
NoSync = Callable[[], contextlib.AbstractContextManager[Any]]


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
    optimizer: torch.optim.Optimizer, *, amp: bool | str, field: str = "optim.name"
) -> list[str]:
    """Why ``optimizer`` cannot take a step with these settings, one line each (empty: it can).

    AMP's gradient scaler cannot step an optimizer that needs a closure (L-BFGS, SAM): the
    closure would backpropagate the scaled loss, a line search would compare scaled values that
    are never unscaled, and SAM's ascent step would be taken on scaled gradients
    (``torch.amp.GradScaler.step`` refuses closures). bfloat16 needs no scaler, but a line
    search comparing losses rounded to 8 bits of mantissa, and SAM's ascent on them, are not
    tested: refused too.
    """
    if amp is not False and needs_closure(optimizer):
        shown = "true" if amp is True else repr(amp)
        return [
            f"train.amp must be false with {field} {type(optimizer).__name__} (an optimizer that "
            f"needs a closure: lbfgs, or any optimizer with optim.sam); got {shown}. AMP's scaler "
            "cannot step a closure (bf16 with one is untested): turn train.amp off, or use an "
            "optimizer without a closure."
        ]
    return []


class OptimizerStep:
    """Takes optimizer steps from a forward pass the caller gives.

    ``step(forward)`` calls ``forward()`` — which runs the model and returns ``(loss, extra)``,
    ``loss`` being what to backpropagate — under autocast in ``autocast_dtype`` when one is
    given (float16 when only a scaler is given: AMP on CUDA; bfloat16 needs no scaler), then
    backpropagates, unscales, clips ``parameters`` and steps. With an optimizer that needs a
    closure (L-BFGS, SAM), ``forward`` becomes the closure: it may run several times per step,
    each time with its gradients clipped the same way, and the ``extra`` of its first call (the
    metrics of the weights the step started from) is returned.

    ``step.accumulate(forwards, no_sync=...)`` is one step over several micro-batches (gradient
    accumulation): every forward pass is backpropagated into the same gradients, each loss being
    already weighted by its share of the step (the caller's), then clipping and the step happen
    once. Every backward pass but the last runs inside ``no_sync()`` (DDP's: no all-reduce until
    the step's last micro-batch). With a closure, the closure runs every micro-batch, so L-BFGS
    and SAM see the whole step's loss and gradient. Returns the extras, one per micro-batch.
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
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if autocast_dtype is None and scaler is not None:
            autocast_dtype = torch.float16
        problems = step_problems(optimizer, amp=autocast_dtype is not None)
        if problems:
            raise ConfigError(problems)
        self.optimizer = optimizer
        self.parameters = list(parameters)
        self.grad_clip, self.grad_clip_mode = grad_clip, grad_clip_mode
        self.scaler = scaler
        self.device_type = device_type
        self.autocast_dtype = autocast_dtype
        self.needs_closure = needs_closure(optimizer)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for the forward pass (AMP: float16 or bfloat16), else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def __call__(self, forward: LossAndExtra[T]) -> T:
        return self.accumulate([forward])[0]

    def accumulate(
        self, forwards: Sequence[LossAndExtra[T]], *, no_sync: NoSync = contextlib.nullcontext
    ) -> list[T]:
        """One optimizer step over the micro-batches ``forwards`` (see the class)."""
        if self.needs_closure:
            return self._closure_step(forwards, no_sync)
        opt, scaler = self.optimizer, self.scaler
        # zero_grad → forward → loss (+ penalties) → backward
        _, extras = self._backward(forwards, no_sync, keep_losses=False)
        if scaler is not None:
            scaler.unscale_(opt)  # unscale
        clip_gradients(self.parameters, self.grad_clip, self.grad_clip_mode)  # clip
        if scaler is None:
            # step: torch's fused Adam kernel called directly where that is all opt.step() does
            if not fused_adam_step(opt):
                opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        return extras

    def _backward(
        self, forwards: Sequence[LossAndExtra[T]], no_sync: NoSync, *, keep_losses: bool = True
    ) -> tuple[list[torch.Tensor], list[T]]:
        """zero_grad, then forward → loss (+ penalties) → backward of each micro-batch into the
        same gradients (the last backward pass synchronises them under DDP); the losses (their
        sum is the step's loss; only a closure needs them) and the extras."""
        grads_to_none(self.optimizer)  # optimizer.zero_grad(set_to_none=True)
        scaler, losses, extras, last = self.scaler, [], [], len(forwards) - 1
        for i, forward in enumerate(forwards):
            if i == last and self.autocast_dtype is None:  # no context to enter (nor a scaler)
                loss, extra = forward()
                loss.backward()
            else:
                with no_sync() if i < last else contextlib.nullcontext():  # DDP: the last syncs
                    with self.autocast():
                        loss, extra = forward()
                    (loss if scaler is None else scaler.scale(loss)).backward()
            if keep_losses:
                losses.append(loss.detach())
            extras.append(extra)
        return losses, extras

    def _closure_step(self, forwards: Sequence[LossAndExtra[T]], no_sync: NoSync) -> list[T]:
        first: list[list[T]] = []

        def closure() -> float:
            losses, extras = self._backward(forwards, no_sync)
            clip_gradients(self.parameters, self.grad_clip, self.grad_clip_mode)
            first.append(extras)
            # The step's loss (torch's closures return tensors).
            return losses[0] if len(losses) == 1 else torch.stack(losses).sum()  # type: ignore[return-value]

        self.optimizer.step(closure)
        return first[0]
