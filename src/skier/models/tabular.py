"""A net for tables with numeric and categorical columns: embeddings + :class:`MLP`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from skier.errors import ModelError, problem
from skier.models.blocks import check_common, check_sizes, is_count
from skier.models.mlp import MLP

__all__ = ["TabularNet", "embedding_size"]

MAX_EMBEDDING_SIZE = 50


def embedding_size(cardinality: int) -> int:
    """Default embedding width for a column with ``cardinality`` codes (reserved 0 included).

    ``min(50, round(1.6 * cardinality ** 0.56))``: the power law is fastai's ``emb_sz_rule``
    (fastai/tabular/model.py), fitted to widths that worked well across many tables. fastai caps
    it at 600; skier caps at 50, as the older fast.ai course rule ``min(50, (n + 1) // 2)`` did,
    because skier's tables are small and a wider embedding mostly adds parameters to overfit.

    >>> [embedding_size(n) for n in (2, 10, 100, 10_000)]
    [2, 6, 21, 50]
    """
    return min(MAX_EMBEDDING_SIZE, round(1.6 * cardinality**0.56))


class TabularNet(nn.Module):
    """One ``nn.Embedding`` per categorical column, concatenated with the numeric inputs → MLP.

    ``categorical_cardinalities`` has one entry per column and counts the reserved code 0 for
    values unseen in training, so a column with 3 known values has cardinality 4 and codes
    0..3. ``embedding_sizes`` defaults to :func:`embedding_size` of each cardinality. The
    remaining arguments are those of :class:`MLP`.

    ``forward(x_num, x_cat)`` takes a float ``N x num_numeric`` tensor and a long
    ``N x len(categorical_cardinalities)`` tensor; ``x_cat`` may be left out only when there are
    no categorical columns.

    >>> model = TabularNet(3, [4, 10], output_size=2, hidden_sizes=(16,))
    >>> [e.embedding_dim for e in model.embeddings]
    [3, 6]
    >>> model(torch.zeros(5, 3), torch.zeros(5, 2, dtype=torch.long)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        num_numeric: int,
        categorical_cardinalities: Sequence[int],
        output_size: int,
        embedding_sizes: Sequence[int] | None = None,
        hidden_sizes: Sequence[int] = (256, 128),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        problems = []
        if not is_count(num_numeric, minimum=0):
            problems.append(problem("num_numeric", "a non-negative integer", num_numeric))
        problems += check_sizes("categorical_cardinalities", categorical_cardinalities)
        cardinalities = list(categorical_cardinalities) if not problems else []
        if embedding_sizes is not None:
            size_problems = check_sizes("embedding_sizes", embedding_sizes)
            if not size_problems and len(embedding_sizes) != len(cardinalities):
                size_problems.append(
                    problem(
                        "embedding_sizes",
                        f"one size per categorical column ({len(cardinalities)})",
                        list(embedding_sizes),
                        "Leave it out to use the default rule.",
                    )
                )
            problems += size_problems
        if not is_count(output_size):
            problems.append(problem("output_size", "a positive integer", output_size))
        problems += check_sizes("hidden_sizes", hidden_sizes)
        problems += check_common(activation, dropout)
        if not problems and num_numeric + len(cardinalities) == 0:
            problems.append(
                "TabularNet needs at least one numeric or categorical column; got none."
            )
        if problems:
            raise ModelError(problems)

        sizes = (
            list(embedding_sizes)
            if embedding_sizes is not None
            else [embedding_size(c) for c in cardinalities]
        )
        self.num_numeric = num_numeric
        self.categorical_cardinalities = tuple(cardinalities)
        self.output_size = output_size
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(cardinalities, sizes, strict=True)
        )
        self.mlp = MLP(
            num_numeric + sum(sizes),
            output_size,
            hidden_sizes,
            activation,
            batch_norm=batch_norm,
            dropout=dropout,
            residual=residual,
        )

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        columns = len(self.embeddings)
        if columns == 0:
            return self.mlp(x_num)
        if x_cat is None or x_cat.dim() != 2 or x_cat.shape[1] != columns:
            got = None if x_cat is None else tuple(x_cat.shape)
            raise ModelError(
                problem(
                    "TabularNet's categorical input",
                    f"a long tensor of shape N x {columns}",
                    got,
                    "Pass model(x_num, x_cat) with one code per categorical column.",
                )
            )
        parts = [x_num.flatten(1)]
        parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))
