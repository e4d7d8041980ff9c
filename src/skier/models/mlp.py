"""A multi-layer perceptron: the default model for flat (and flattened image) inputs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from skier.errors import ModelError, problem
from skier.models.blocks import DenseBlock, check_common, check_sizes, is_count

__all__ = ["MLP"]


class MLP(nn.Module):
    """Fully connected net: flatten → hidden blocks → ``Linear(…, output_size)``.

    Each hidden block is ``Linear → (BatchNorm1d) → activation → (Dropout)``. The input is
    flattened from dimension 1 on, so ``N x 64`` and ``N x 1 x 8 x 8`` both work when
    ``input_size = 64``. With ``residual=True`` every hidden block gets a skip path: the identity
    where its input and output widths match, a bias-free linear projection where they differ
    (see :class:`~skier.models.blocks.DenseBlock`). The output layer is a plain ``Linear`` that
    returns logits (classification) or values (regression), shape ``N x output_size``.

    >>> model = MLP(64, 10, hidden_sizes=(32,))
    >>> model(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_sizes: Sequence[int] = (256, 128),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        problems = []
        if not is_count(input_size):
            problems.append(problem("input_size", "a positive integer", input_size))
        if not is_count(output_size):
            problems.append(problem("output_size", "a positive integer", output_size))
        problems += check_sizes("hidden_sizes", hidden_sizes)
        problems += check_common(activation, dropout)
        if problems:
            raise ModelError(problems)

        self.input_size = input_size
        self.output_size = output_size
        self.hidden_sizes = tuple(hidden_sizes)
        widths = [input_size, *self.hidden_sizes]
        self.blocks = nn.Sequential(
            *(
                DenseBlock(
                    w_in,
                    w_out,
                    activation,
                    batch_norm=batch_norm,
                    dropout=dropout,
                    residual=residual,
                )
                for w_in, w_out in itertools.pairwise(widths)
            )
        )
        self.head = nn.Linear(widths[-1], output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x.flatten(1)))
