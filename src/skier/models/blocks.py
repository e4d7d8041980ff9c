"""Building blocks shared by the models: activations by name and the dense (residual) block.

>>> activation("gelu")
GELU(approximate='none')
>>> DenseBlock(8, 8, residual=True)(torch.zeros(2, 8)).shape
torch.Size([2, 8])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from skier.errors import ModelError, did_you_mean, problem

__all__ = ["ACTIVATIONS", "DenseBlock", "activation", "check_common", "check_sizes", "is_count"]

# Factories rather than instances: every layer needs its own module (a shared instance would
# show up once in named_modules() and confuse hooks such as gradient-flow diagnostics).
_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}

ACTIVATIONS: tuple[str, ...] = tuple(_FACTORIES)
"""The activation names :func:`activation` knows (the same as ``ModelConfig.activation``)."""


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (case-insensitive); :class:`ModelError` when unknown.

    >>> activation("relu")
    ReLU()

    ``activation("rleu")`` raises ``activation must be one of relu, ...; got 'rleu'. Did you mean
    'relu'?``
    """
    factory = _FACTORIES.get(name.lower()) if isinstance(name, str) else None
    if factory is None:
        raise ModelError(_activation_problem(name))
    return factory()


def _activation_problem(name: object) -> str:
    hint = did_you_mean(str(name).lower(), ACTIVATIONS).strip()
    return problem("activation", f"one of {', '.join(ACTIVATIONS)}", name, hint)


def check_sizes(field: str, sizes: Sequence[int], *, allow_empty: bool = True) -> list[str]:
    """Problems with a list of layer widths (an empty list when they are fine)."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        return [problem(field, "a sequence of positive integers", sizes)]
    if not allow_empty and len(sizes) == 0:
        return [problem(field, "a non-empty sequence of positive integers", sizes)]
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, int) or s < 1]
    return [problem(field, "a sequence of positive integers", list(sizes))] if bad else []


def is_count(value: object, minimum: int = 1) -> bool:
    """True for an int (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_common(activation_name: str, dropout: float) -> list[str]:
    """Problems with the settings every model shares (activation, dropout)."""
    out: list[str] = []
    if not isinstance(activation_name, str) or activation_name.lower() not in _FACTORIES:
        out.append(_activation_problem(activation_name))
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        out.append(problem("dropout", "a probability in [0, 1)", dropout))
    return out


class DenseBlock(nn.Module):
    """``Linear → (BatchNorm1d) → activation → (Dropout)``, optionally with a skip connection.

    With ``residual=True`` the block returns ``skip(x) + block(x)``: ``skip`` is the identity when
    ``in_features == out_features``, otherwise a bias-free ``Linear(in_features, out_features)``
    projection (the dense analogue of ResNet's 1x1 projection shortcut), so every block of a
    residual MLP has a skip path whatever the widths. ``skip`` is ``None`` when not residual.

    >>> block = DenseBlock(4, 4, residual=True)
    >>> _ = block.linear.weight.data.zero_(), block.linear.bias.data.zero_()
    >>> x = torch.ones(2, 4)
    >>> bool(torch.equal(block(x), x))  # relu(0) = 0, so the block passes x through
    True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation_name: str = "relu",
        *,
        batch_norm: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        # A bias right before batch norm is cancelled by its mean subtraction: leave it out.
        self.linear = nn.Linear(in_features, out_features, bias=not batch_norm)
        self.norm: nn.Module = nn.BatchNorm1d(out_features) if batch_norm else nn.Identity()
        self.act = activation(activation_name)
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.skip: nn.Module | None = None
        if residual:
            same = in_features == out_features
            self.skip = nn.Identity() if same else nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(self.act(self.norm(self.linear(x))))
        return out if self.skip is None else self.skip(x) + out
