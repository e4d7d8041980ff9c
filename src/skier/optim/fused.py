"""torch's fused Adam / AdamW step without ``Optimizer.step``'s Python around it.

``torch.optim.Adam(fused=True).step()`` spends most of a small model's step in Python: the
profiler's ``record_function``, the hooks, the grad-mode switch with its dynamo graph breaks,
the per-group argument checks and the grouping of tensors by device and dtype — about 30–40 µs
a step on CPU, for one kernel of about 15 µs at a 64-128-10 MLP (bench/RESULTS.md, 2026-12-07
fifth session). :func:`fused_adam_step` makes the same two kernel calls torch's ``_fused_adam``
makes (``_foreach_add_`` on the step counts, then ``_fused_adam_`` / ``_fused_adamw_``) with the
same arguments, so the weights and the optimizer state are the same bits; it does so only where
nothing else would happen in ``optimizer.step()``, and otherwise returns ``False`` for the caller
to call ``optimizer.step()``:

- the optimizer is exactly ``torch.optim.Adam`` or ``AdamW`` (not a subclass, not a wrapper such
  as Lookahead or SAM), its ``step`` not replaced on the instance except by an LR scheduler's
  step counter (whose bookkeeping, ``_opt_called``, is done here the same way);
- no step hooks on it nor global optimizer hooks; no profiler running (its trace names the step);
  no gradient scaler's ``grad_scale`` / ``found_inf`` on it;
- every group fused, not capturable nor differentiable, its lr, betas, eps and weight decay plain
  numbers (a tensor lr takes torch's path);
- every parameter with a gradient on the CPU, of one dtype within its group, with a dense
  gradient and its state already made by a step of torch's own (the first step goes through
  ``optimizer.step()``, which creates it).

The tensor lists are read afresh from ``param_groups`` and ``state`` every step (a few µs), so a
``load_state_dict``, an ``add_param_group``, a checkpoint restore or a scheduler's new lr is seen
at the next step with nothing to invalidate.

>>> model = torch.nn.Linear(3, 1)
>>> opt = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
>>> model(torch.ones(2, 3)).sum().backward()
>>> fused_adam_step(opt)  # no state yet: torch's own step makes it
False
>>> opt.step()
>>> fused_adam_step(opt)
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer

__all__ = ["fused_adam_step", "grads_to_none"]

_CLASSES = (torch.optim.Adam, torch.optim.AdamW)
_NUMBER = frozenset((int, float))  # exact types: a bool or a tensor takes torch's path


def _plain_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` would do nothing but torch's fused update (see the module);
    an LR scheduler's step counter is the one thing allowed on the instance (it is marked)."""
    if type(optimizer) not in _CLASSES:
        return False
    if (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or torch_optimizer._global_optimizer_pre_hooks
        or torch_optimizer._global_optimizer_post_hooks
        or torch.autograd._profiler_enabled()
        or getattr(optimizer, "grad_scale", None) is not None
        or getattr(optimizer, "found_inf", None) is not None
        or optimizer.defaults.get("differentiable")
    ):
        return False
    own = vars(optimizer).get("step")
    # An LRScheduler wraps the class's step to note that it was called; anything else: not ours.
    return own is None or (
        getattr(own, "_wrapped_by_lr_sched", False)
        and getattr(own, "__wrapped__", None) is type(optimizer).step
    )


def _group_lists(
    group: dict[str, Any], state: dict[torch.Tensor, dict[str, Any]]
) -> tuple[list[torch.Tensor], ...] | None:
    """The kernel's tensor lists for ``group`` (parameters with a gradient only, as torch's
    ``_init_group``), or ``None`` where torch's step must run."""
    if not group["fused"] or group["capturable"] or group["differentiable"]:
        return None
    beta1, beta2 = group["betas"]
    wd, eps = group["weight_decay"], group["eps"]
    if not {type(group["lr"]), type(beta1), type(beta2), type(eps), type(wd)} <= _NUMBER:
        return None
    amsgrad = group["amsgrad"]
    params, grads, exp_avgs, exp_avg_sqs, maxima, steps = [], [], [], [], [], []
    dtype = None
    for p in group["params"]:
        grad = p.grad
        if grad is None:
            continue
        st = state.get(p)
        if not st or not p.is_cpu or grad.layout is not torch.strided:
            return None
        if dtype is None:
            dtype = p.dtype
        elif p.dtype is not dtype:  # torch would split the kernel by dtype: let it
            return None
        params.append(p)
        grads.append(grad)
        exp_avgs.append(st["exp_avg"])
        exp_avg_sqs.append(st["exp_avg_sq"])
        steps.append(st["step"])
        if amsgrad:
            maxima.append(st["max_exp_avg_sq"])
    return params, grads, exp_avgs, exp_avg_sqs, maxima, steps


def fused_adam_step(optimizer: torch.optim.Optimizer) -> bool:
    """Take ``optimizer``'s step as torch's fused Adam / AdamW kernel would, bit for bit, and
    return ``True``; or take nothing and return ``False`` where ``optimizer.step()`` would do
    more than that (see the module): the caller then calls it."""
    if not _plain_step(optimizer):
        return False
    plan = []
    for group in optimizer.param_groups:
        found = _group_lists(group, optimizer.state)
        if found is None:
            return False
        plan.append((group, found))
    previous = torch.is_grad_enabled()
    torch._C._set_grad_enabled(False)  # as torch's step: the update is not differentiated
    try:
        for group, (params, grads, exp_avgs, exp_avg_sqs, maxima, steps) in plan:
            if not params:  # no gradient in this group: torch's step skips it too
                continue
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            kernel(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                maxima,
                steps,
                amsgrad=group["amsgrad"],
                lr=float(group["lr"]),
                beta1=float(beta1),
                beta2=float(beta2),
                weight_decay=float(group["weight_decay"]),
                eps=float(group["eps"]),
                maximize=group["maximize"],
                grad_scale=None,
                found_inf=None,
            )
    finally:
        torch._C._set_grad_enabled(previous)
    if "step" in vars(optimizer):  # the LR scheduler's counter: the step was called
        optimizer._opt_called = True  # type: ignore[attr-defined]
    return True


def grads_to_none(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)``: every gradient of its parameters set to
    ``None``, without the profiler record and dynamo guard torch wraps around that loop (about
    5 µs a step); torch's own ``zero_grad`` where a class or the instance overrides it (Lookahead,
    SAM) or a profiler runs (its trace names the call).

    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> p.grad = torch.ones(2)
    >>> grads_to_none(torch.optim.SGD([p], lr=0.1)); p.grad is None
    True
    """
    if (
        type(optimizer).zero_grad is not _ZERO_GRAD
        or "zero_grad" in vars(optimizer)
        or torch.autograd._profiler_enabled()
    ):
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad = None


_ZERO_GRAD = torch.optim.Optimizer.zero_grad
