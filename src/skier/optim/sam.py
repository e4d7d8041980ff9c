"""Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur, 2021), around any optimizer.

SAM looks for weights whose whole neighbourhood has a low loss. Each step takes two
forward-backward passes: the gradient ``g`` at the weights ``w`` gives the worst nearby point
``w + e`` within radius ``rho``, and the base optimizer steps from ``w`` with the gradient taken
there::

    e = rho * g / ||g||                      (adaptive, ASAM: e = rho * w² ⊙ g / ||w ⊙ g||)
    w ← base_step(w, ∇L(w + e))

so ``step`` needs a closure that recomputes the loss and its gradient (``needs_closure`` says
so, and skier's :class:`~skier.train.step.OptimizerStep` passes one). ``SAM`` is a
:class:`torch.optim.Optimizer` whose ``param_groups`` *are* the base's, so an LR scheduler on it
changes the base's lr, and whose state is the base's, so a resume is exact.

>>> import torch
>>> model = torch.nn.Linear(2, 1)
>>> opt = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
>>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
>>> def closure():
...     opt.zero_grad()
...     loss = torch.nn.functional.mse_loss(model(x), y)
...     loss.backward()
...     return loss
>>> loss = opt.step(closure)   # the loss at the weights the step started from
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["SAM"]


class SAM(Optimizer):
    """Wrap ``base_optimizer`` in sharpness-aware minimization of radius ``rho``.

    ``step(closure)`` calls the closure at ``w`` (its loss is returned), moves to ``w + e``,
    calls it again, moves back to ``w`` and lets the base optimizer step with the gradient of
    the second call. Whatever the closure does to the gradients (skier's clips them) it does on
    both calls: the base step uses the second, clipped. ``adaptive=True`` is ASAM (Kwon et al.,
    2021): the neighbourhood is scaled by ``|w|``, so it does not change when a layer's weights
    are rescaled. The base must not need a closure of its own (L-BFGS).
    """

    def __init__(
        self, base_optimizer: Optimizer, rho: float = 0.05, adaptive: bool = False
    ) -> None:
        if not isinstance(base_optimizer, Optimizer):
            raise TypeError(
                f"base_optimizer must be a torch.optim.Optimizer; got {type(base_optimizer)!r}."
            )
        if isinstance(base_optimizer, torch.optim.LBFGS | SAM):
            raise ValueError(
                f"base_optimizer must not need a closure of its own; got "
                f"{type(base_optimizer).__name__}. SAM's two passes would each run its line "
                "search: use a first-order optimizer (sgd, adam, ...)."
            )
        if not rho > 0.0:
            raise ValueError(f"rho must be > 0; got {rho!r}.")
        self.base_optimizer = base_optimizer
        self.rho, self.adaptive = float(rho), bool(adaptive)
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        self.param_groups = base_optimizer.param_groups  # one list: schedulers see the base's lr
        self.state = base_optimizer.state

    def __repr__(self) -> str:
        return (
            f"SAM(rho={self.rho}, adaptive={self.adaptive}, base_optimizer={self.base_optimizer!r})"
        )

    def __getstate__(self) -> dict[str, Any]:  # pickle / deepcopy keep the base and rho
        return {
            **super().__getstate__(),
            "base_optimizer": self.base_optimizer,
            "rho": self.rho,
            "adaptive": self.adaptive,
        }

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def perturbation(self) -> list[torch.Tensor | None]:
        """``e`` for each parameter, from the gradients now held (``None``: no gradient)."""
        params = self._params()
        scaled = [
            None if p.grad is None else (p.abs() * p.grad if self.adaptive else p.grad)
            for p in params
        ]
        norms = [t.norm(2) for t in scaled if t is not None]
        if not norms:
            return [None] * len(params)
        factor = self.rho / (torch.stack(norms).norm(2) + 1e-12)
        return [
            None if t is None else (t * p.abs() if self.adaptive else t) * factor
            for p, t in zip(params, scaled, strict=True)
        ]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Ascend to ``w + e``, take the gradient there, come back, step the base optimizer."""
        if closure is None:
            raise RuntimeError(
                "SAM.step needs a closure that zeroes the gradients, recomputes the loss and "
                "backpropagates it (it is called twice); skier's OptimizerStep passes one."
            )
        with torch.enable_grad():
            loss = closure()  # the gradient at w
        params, moves = self._params(), self.perturbation()
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                if e is not None:
                    p.add_(e)  # w + e
        with torch.enable_grad():
            closure()  # the gradient at w + e
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                if e is not None:
                    p.sub_(e)  # back to w
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base's state dict plus ``sam``: the base's class, rho and adaptive."""
        sam = {"base_class": type(self.base_optimizer).__name__, "rho": self.rho,
               "adaptive": self.adaptive}  # fmt: skip
        return {**self.base_optimizer.state_dict(), "sam": sam}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (as torch does, rho and adaptive come from it)."""
        if "sam" not in state_dict:
            raise ValueError(
                "state_dict must come from SAM.state_dict() (it has no 'sam' entry); to start "
                "SAM from a plain optimizer's state, load that into the base."
            )
        saved, base_class = state_dict["sam"], type(self.base_optimizer).__name__
        if saved["base_class"] != base_class:
            raise ValueError(
                f"state_dict is of a SAM around {saved['base_class']}; this one wraps {base_class}."
            )
        self.base_optimizer.load_state_dict({k: v for k, v in state_dict.items() if k != "sam"})
        self.param_groups = self.base_optimizer.param_groups  # loading made new group dicts
        self.state = self.base_optimizer.state
        self.rho, self.adaptive = float(saved["rho"]), bool(saved["adaptive"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.param_groups is self.base_optimizer.param_groups:
            self.base_optimizer.add_param_group(param_group)  # shared list: the base adds it
        else:  # Optimizer.__init__ taking in the base's groups
            super().add_param_group(param_group)
