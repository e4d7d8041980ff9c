"""Lookahead (Zhang, Lucas, Hinton & Ba, 2019): k steps forward, one step back.

A base ("fast") optimizer moves the weights θ for ``k`` steps; then the slow weights φ move a share
``alpha`` of the way towards them and the fast weights restart from there::

    every k fast steps:  φ ← φ + α(θ − φ);  θ ← φ

φ starts as θ at the first step. ``Lookahead`` is a :class:`torch.optim.Optimizer` whose
``param_groups`` *are* the base's, so an LR scheduler on it changes the base's lr.

>>> import torch
>>> model = torch.nn.Linear(2, 1)
>>> opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=5, alpha=0.5)
>>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
>>> model(torch.ones(1, 2)).sum().backward()
>>> opt.step(); sched.step()
>>> opt.base_optimizer.param_groups[0]["lr"]
0.05
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["Lookahead"]


class Lookahead(Optimizer):
    """Wrap ``base_optimizer``: after every ``k`` of its steps, pull the weights back.

    ``state_dict()`` holds the base optimizer's state, the slow weights and the step counter,
    so a run resumed mid-cycle goes on exactly as if it had not stopped.
    """

    def __init__(self, base_optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(base_optimizer, Optimizer):
            raise TypeError(
                f"base_optimizer must be a torch.optim.Optimizer; got {type(base_optimizer)!r}."
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}.")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1]; got {alpha!r}.")
        self.base_optimizer = base_optimizer
        self.k = k
        self.alpha = float(alpha)
        self.fast_steps = 0  # base steps taken so far; a slow step after every k-th
        # Optimizer.__init__ sets up hooks and state; the groups are the base's own dicts.
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        self.param_groups = base_optimizer.param_groups  # one list: schedulers see the base's lr

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, base_optimizer={self.base_optimizer!r})"

    def __getstate__(self) -> dict[str, Any]:  # pickle / deepcopy keep the base and the counter
        return {
            **super().__getstate__(),
            "base_optimizer": self.base_optimizer,
            "k": self.k,
            "alpha": self.alpha,
            "fast_steps": self.fast_steps,
        }

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One fast step of the base optimizer (``closure`` goes to it); a slow step every k."""
        with torch.no_grad():
            for p in self._params():  # φ₀ = θ₀, taken here so it follows the model's device
                if "slow_weight" not in self.state[p]:
                    self.state[p]["slow_weight"] = p.detach().clone()
        loss = self.base_optimizer.step() if closure is None else self.base_optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            with torch.no_grad():
                for p in self._params():
                    slow = self.state[p]["slow_weight"]
                    slow.add_(p - slow, alpha=self.alpha)  # φ ← φ + α(θ − φ)
                    p.copy_(slow)  # θ ← φ
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base's state dict plus ``lookahead``: k, alpha, the counter and slow weights."""
        index = {p: i for i, p in enumerate(self._params())}
        slow = {index[p]: s["slow_weight"] for p, s in self.state.items() if "slow_weight" in s}
        base = self.base_optimizer.state_dict()
        lookahead = {
            "base_class": type(self.base_optimizer).__name__,
            "k": self.k,
            "alpha": self.alpha,
            "fast_steps": self.fast_steps,
            "slow": slow,
        }
        return {**base, "lookahead": lookahead}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (as torch does, k and alpha come from it)."""
        if "lookahead" not in state_dict:
            raise ValueError(
                "state_dict must come from Lookahead.state_dict() (it has no 'lookahead' entry); "
                "to start Lookahead from a plain optimizer's state, load that into the base."
            )
        saved = state_dict["lookahead"]
        params, base_class = self._params(), type(self.base_optimizer).__name__
        if saved["base_class"] != base_class:
            raise ValueError(
                f"state_dict is of a Lookahead around {saved['base_class']}; "
                f"this one wraps {base_class}."
            )
        if any(
            not 0 <= int(i) < len(params) or tensor.shape != params[int(i)].shape
            for i, tensor in saved["slow"].items()
        ):
            raise ValueError("state_dict's slow weights do not match this optimizer's parameters.")
        self.base_optimizer.load_state_dict(
            {k: v for k, v in state_dict.items() if k != "lookahead"}
        )
        self.param_groups = self.base_optimizer.param_groups  # loading made new group dicts
        self.k, self.alpha, self.fast_steps = saved["k"], saved["alpha"], saved["fast_steps"]
        self.state = defaultdict(dict)
        for i, tensor in saved["slow"].items():
            p = params[int(i)]
            self.state[p]["slow_weight"] = tensor.detach().to(p, copy=True)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.param_groups is self.base_optimizer.param_groups:
            self.base_optimizer.add_param_group(param_group)  # shared list: the base adds it
        else:  # Optimizer.__init__ taking in the base's groups
            super().add_param_group(param_group)
