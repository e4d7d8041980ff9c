from __future__ import annotations

import pytest
import torch

from skier.errors import ModelError
from skier.models import TabularNet, embedding_size


def _codes(cardinalities: list[int], n: int = 6) -> torch.Tensor:
    return torch.stack([torch.randint(0, c, (n,)) for c in cardinalities], dim=1)


@pytest.mark.parametrize(
    ("cardinality", "size"), [(1, 2), (2, 2), (4, 3), (10, 6), (100, 21), (2_000, 50)]
)
def test_embedding_size_rule(cardinality: int, size: int) -> None:
    assert embedding_size(cardinality) == size == min(50, round(1.6 * cardinality**0.56))


def test_two_categorical_columns() -> None:
    model = TabularNet(3, [4, 100], output_size=2, hidden_sizes=(16,))
    assert [e.num_embeddings for e in model.embeddings] == [4, 100]
    assert [e.embedding_dim for e in model.embeddings] == [3, 21]
    assert model.mlp.input_size == 3 + 3 + 21
    out = model(torch.randn(6, 3), _codes([4, 100]))
    assert out.shape == (6, 2)


def test_reserved_and_largest_codes_are_valid() -> None:
    model = TabularNet(2, [4, 5], output_size=1, hidden_sizes=(8,))
    codes = torch.tensor([[0, 0], [3, 4]])
    assert model(torch.randn(2, 2), codes).shape == (2, 1)


def test_embeddings_get_gradients() -> None:
    model = TabularNet(2, [4, 5], output_size=1, hidden_sizes=(8,))
    model(torch.randn(6, 2), _codes([4, 5])).sum().backward()
    assert all(
        e.weight.grad is not None and e.weight.grad.abs().sum() > 0 for e in model.embeddings
    )


def test_explicit_embedding_sizes() -> None:
    model = TabularNet(3, [4, 10], output_size=2, embedding_sizes=[2, 7], hidden_sizes=(8,))
    assert [e.embedding_dim for e in model.embeddings] == [2, 7]
    assert model(torch.randn(6, 3), _codes([4, 10])).shape == (6, 2)


def test_embedding_sizes_must_have_one_entry_per_column() -> None:
    with pytest.raises(
        ModelError,
        match=r"embedding_sizes must be one size per categorical column \(2\); got \[3\]\.",
    ):
        TabularNet(3, [4, 10], output_size=2, embedding_sizes=[3])


def test_without_categorical_columns_it_is_an_mlp() -> None:
    model = TabularNet(5, [], output_size=3, hidden_sizes=(8,))
    assert len(model.embeddings) == 0
    assert model(torch.randn(4, 5)).shape == (4, 3)


def test_only_categorical_columns() -> None:
    model = TabularNet(0, [4, 10], output_size=3, hidden_sizes=(8,))
    assert model(torch.zeros(6, 0), _codes([4, 10])).shape == (6, 3)


def test_missing_categorical_input_is_a_clear_error() -> None:
    model = TabularNet(3, [4, 10], output_size=2, hidden_sizes=(8,))
    with pytest.raises(ModelError, match=r"a long tensor of shape N x 2; got None"):
        model(torch.randn(6, 3))
    with pytest.raises(ModelError, match=r"got \(6, 1\)"):
        model(torch.randn(6, 3), _codes([4]))


def test_invalid_arguments_are_reported_together() -> None:
    with pytest.raises(ModelError, match="2 problems") as info:
        TabularNet(-1, [4, 0], output_size=2)
    assert "num_numeric must be a non-negative integer; got -1." in str(info.value)
    assert "categorical_cardinalities must be a sequence of positive integers" in str(info.value)
