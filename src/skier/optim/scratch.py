"""Optimizers written from scratch: the course's update rules, one parameter tensor at a time.

These are for reading, not for speed (torch.optim's own classes are faster). Each class's
docstring gives its update rule; the tests prove each one equal to its torch.optim counterpart.
Notation: θ the weights, g the gradient, lr the learning rate, λ the weight decay, t the step.

>>> import torch
>>> model = torch.nn.Linear(2, 1)
>>> opt = Adam(model.parameters(), lr=0.01)
>>> model(torch.ones(1, 2)).sum().backward()
>>> opt.step()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["SGD", "Adam", "AdamW", "Momentum", "Nesterov", "RMSprop", "Rprop"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


class _Scratch(Optimizer):
    """Runs the closure, then ``update`` on every parameter that has a gradient."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state[p], group)
        return loss

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Change ``p`` in place, given its gradient ``g``, its state and its group's settings."""
        raise NotImplementedError


def _with_l2(p: Tensor, g: Tensor, weight_decay: float) -> Tensor:
    # "Weight decay" the way torch's SGD, RMSprop and Adam do it: an L2 penalty λ/2·‖θ‖² added
    # to the loss, i.e. λθ added to the gradient (coupled: Adam then rescales it too).
    return g.add(p, alpha=weight_decay) if weight_decay else g


class SGD(_Scratch):
    """Gradient descent: θ ← θ − lr·(g + λθ)."""

    def __init__(self, params: Params, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        g = _with_l2(p, g, group["weight_decay"])
        p.add_(g, alpha=-group["lr"])


class Momentum(_Scratch):
    """Heavy ball (Polyak): v ← μv + g;  θ ← θ − lr·v   (g includes λθ).

    The course writes v ← μv − lr·g; θ ← θ + v. Torch keeps the velocity without the lr (its
    buffer is v/(−lr)): the same steps while lr is constant, but when a schedule changes lr,
    torch's form applies the new lr to the whole velocity at once. We follow torch. Its first
    step starts the buffer at g (not μ·0 + g, the same thing here: no dampening).
    """

    def __init__(
        self, params: Params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        g = _with_l2(p, g, group["weight_decay"])
        if "velocity" not in state:
            state["velocity"] = g.clone()
        else:
            state["velocity"].mul_(group["momentum"]).add_(g)
        p.add_(state["velocity"], alpha=-group["lr"])


class Nesterov(Momentum):
    """Nesterov momentum: v ← μv + g;  θ ← θ − lr·(g + μv)   (g includes λθ).

    The course's form looks ahead: v ← μv − lr·∇f(θ + μv); θ ← θ + v. Rewritten in the
    look-ahead point (Sutskever et al., 2013), that is the step above, which needs only the
    gradient at the current weights; torch's ``SGD(nesterov=True)`` uses it too.
    """

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        g = _with_l2(p, g, group["weight_decay"])
        if "velocity" not in state:
            state["velocity"] = g.clone()
        else:
            state["velocity"].mul_(group["momentum"]).add_(g)
        p.add_(g.add(state["velocity"], alpha=group["momentum"]), alpha=-group["lr"])


class Rprop(_Scratch):
    """Resilient backpropagation (Riedmiller & Braun, 1993): only the sign of g is used.

    Each weight has its own step size s (starting at lr)::

        g·g_prev > 0:  s ← min(s·η⁺, s_max)   same sign again: speed up
        g·g_prev < 0:  s ← max(s·η⁻, s_min)   overshot a minimum: slow down, and set g ← 0
        θ ← θ − sign(g)·s;  g_prev ← g

    Setting g ← 0 after a sign change (the "iRprop⁻" variant torch implements) skips that
    weight's step and makes the next comparison neutral. With mini-batches the sign of g is noisy:
    Rprop is meant for full batches.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
    ) -> None:
        super().__init__(params, {"lr": lr, "etas": etas, "step_sizes": step_sizes})

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        (eta_minus, eta_plus), (s_min, s_max) = group["etas"], group["step_sizes"]
        if "step_size" not in state:
            state["step_size"] = torch.full_like(p, group["lr"])
            state["prev"] = torch.zeros_like(p)
        same = g * state["prev"]  # > 0: the sign held; < 0: it changed
        factor = torch.ones_like(p)
        factor[same > 0] = eta_plus
        factor[same < 0] = eta_minus
        state["step_size"].mul_(factor).clamp_(s_min, s_max)
        g = g.masked_fill(same < 0, 0.0)
        p.addcmul_(g.sign(), state["step_size"], value=-1)
        state["prev"] = g


class RMSprop(_Scratch):
    """RMSprop (Hinton): divide g by a running root-mean-square of past gradients.

        v ← αv + (1 − α)g²;  θ ← θ − lr·g/(√v + ε)   (g includes λθ; v starts at 0)

    ε is added after the square root, as in torch (some texts put it inside: √(v + ε)).
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        g = _with_l2(p, g, group["weight_decay"])
        alpha = group["alpha"]
        if "square_avg" not in state:
            state["square_avg"] = torch.zeros_like(p)
        v = state["square_avg"]
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        p.addcdiv_(g, v.sqrt().add_(group["eps"]), value=-group["lr"])


class Adam(_Scratch):
    """Adam (Kingma & Ba, 2015): momentum on g and RMSprop's scaling, both bias-corrected.

        m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²     (g includes λθ; m, v start at 0)
        m̂ = m/(1 − β₁ᵗ);  v̂ = v/(1 − β₂ᵗ)              (undo the pull towards the zero start)
        θ ← θ − lr·m̂/(√v̂ + ε)

    Torch computes the same thing as θ ← θ − (lr/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε).
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        g = _with_l2(p, g, group["weight_decay"])
        self._adam_step(p, g, state, group)

    @staticmethod
    def _adam_step(p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p.addcdiv_(m_hat, v_hat.sqrt().add_(group["eps"]), value=-group["lr"])


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

        θ ← θ·(1 − lr·λ)   first, outside the gradient, so Adam's scaling does not touch it;
        then Adam's step with the plain g.

    In Adam with L2, λθ is divided by √v̂ like the rest of g, so weights with large gradients
    are barely decayed. Torch multiplies by lr·λ (not λ alone): the decay follows an lr schedule.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        p.mul_(1 - group["lr"] * group["weight_decay"])
        self._adam_step(p, g, state, group)


# The names in skier's optimizer registry (scratch_sgd, ...).
SCRATCH: dict[str, type[Optimizer]] = {
    "scratch_sgd": SGD,
    "scratch_momentum": Momentum,
    "scratch_nesterov": Nesterov,
    "scratch_rprop": Rprop,
    "scratch_rmsprop": RMSprop,
    "scratch_adam": Adam,
    "scratch_adamw": AdamW,
}
