"""What every diagnostic shares: leave the caller's objects as they were, pick the data,
evaluate a whole split in memory, and do arithmetic on parameter lists.

A diagnostic is ``f(model, data, ...) -> Result``. It validates its inputs first, then works
inside :func:`preserved`, so the model (weights, buffers, gradients, train/eval flags), the
optimizer and torch's global random state are exactly as they were afterwards, even if it fails
or is interrupted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch

from skier.data.load import as_split
from skier.data.types import DataBundle, Split
from skier.errors import DataError, ModelError
from skier.train.hessian import ParamList, dot, norm, seeded_subset
from skier.train.losses import Loss, LossFn, loss_task, resolve_loss

__all__ = [
    "ParamList",
    "add_scaled",
    "choose_split",
    "classification_of",
    "dot",
    "measured_loss",
    "model_device",
    "norm",
    "preserved",
    "seeded_subset",
    "trainable_parameters",
]

_ACCEPTS = "a DataBundle, a Split or an (inputs, targets) pair of tensors or arrays"


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` for every parameter that requires a gradient, in module order."""
    found = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not found:
        raise ModelError(
            f"model must have trainable parameters; got {type(model).__name__} with none."
        )
    return found


def model_device(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextmanager
def preserved(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> Iterator[None]:
    """Snapshot ``model`` (and ``optimizer``, and torch's RNG) and restore them on exit.

    Values are copied back into the same tensor objects, so an optimizer or a hook that holds
    the parameters still holds the right ones. Restoring is bit-for-bit.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {
        id(p): (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()
    }
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            current = model.state_dict(keep_vars=True)
            for key, saved in state.items():
                target = current[key]
                if target.shape != saved.shape:  # e.g. a lazily shaped buffer
                    target.data = saved.clone()
                else:
                    target.copy_(saved)
        for p in model.parameters():
            saved_grad = grads.get(id(p))
            p.grad = None if saved_grad is None else saved_grad.clone()
        for module, training in modes.items():
            module.training = training
        for p, flag in flags.items():
            p.requires_grad_(flag)
        if optimizer is not None and opt_state is not None:
            optimizer.load_state_dict(opt_state)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def choose_split(
    data: DataBundle | Split | tuple[Any, Any],
    split: Literal["train", "val", "test"] = "train",
) -> Split:
    """The split a diagnostic measures on: a bundle's ``split``, or the data itself."""
    if isinstance(data, DataBundle):
        chosen = getattr(data, split)
        if chosen is None:
            raise DataError(
                f"split must be one the data has; got {split!r}, which is empty "
                f"(data.val_fraction / data.test_fraction are 0). Use split 'train'."
            )
        return chosen
    return as_split(data, name="data", accepts=_ACCEPTS)


def classification_of(split: Split, task: str | None = None) -> bool:
    """Whether ``split`` is a classification set (long targets), unless ``task`` says (a
    multi-label task counts its errors too)."""
    if task is not None:
        return task in ("classification", "multilabel")
    return not split.targets.is_floating_point()


def measured_loss(
    loss: str | LossFn | Loss | None, split: Split, task: str | None, field: str
) -> Loss | None:
    """The loss a diagnostic measures: ``loss`` (a built :class:`Loss`, a ``train.loss`` name
    or a callable ``f(outputs, targets)``) for the task, binary cross-entropy for a multi-label
    task, else ``None`` (cross-entropy or MSE, by the task). Targets that do not fit it are a
    :class:`DataError` naming ``train.loss``."""
    if loss is None and task != "multilabel":
        return None
    name = "auto" if loss is None else loss
    if isinstance(name, Loss):
        built = name
    else:
        if task is None:  # as fit infers it: what the loss implies, else the targets' type
            floating = split.targets.is_floating_point()
            task = loss_task(name, split.targets) or (
                "regression" if floating else "classification"
            )
        built = resolve_loss(name, task)
    problems = built.check_targets(split.targets, 0, field)
    if problems:
        raise DataError(problems)
    return built


# --- parameter-list arithmetic (one tensor per trainable parameter; dot and norm live in
# skier.train.hessian, below the diagnostics, so that a callback can use them too) -----------


def add_scaled(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], scale: float) -> ParamList:
    """``a + scale * b``, element by element."""
    return [x + scale * y for x, y in zip(a, b, strict=True)]
