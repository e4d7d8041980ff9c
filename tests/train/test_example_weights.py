"""Per-example loss weights on a Split (scikit-learn's sample_weight): an integer weight trains
as that many copies of the row, a zero weight as if the row were not there."""

from __future__ import annotations

import pytest
import torch

from skier.data import Split
from skier.train import fit


def _trained(split: Split) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    fit(model, split, optimizer="sgd", lr=0.1, epochs=5, batch_size="full", progress="off")
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_weights_train_as_repeated_and_removed_rows() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, generator=g), torch.arange(12) % 2
    counts = torch.tensor([0, 1, 2, 3] * 3)
    # Mean 1 over the rows (as the estimators normalise them): the loss is the mean over copies.
    weights = counts.float() * len(counts) / counts.sum()
    rows = torch.repeat_interleave(torch.arange(12), counts)
    weighted = _trained(Split((x,), y, weights))
    repeated = _trained(Split((x[rows],), y[rows]))
    torch.testing.assert_close(weighted, repeated, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(weighted, _trained(Split((x,), y)), atol=1e-4)


def test_weights_follow_the_split_and_must_fit_it() -> None:
    s = Split((torch.zeros(3, 2),), torch.tensor([0, 1, 0]), torch.tensor([1.0, 2.0, 3.0]))
    assert s.take(torch.tensor([2, 0])).weights.tolist() == [3.0, 1.0]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"weights must have one value per example \(3,\)"):
        Split((torch.zeros(3, 2),), torch.tensor([0, 1, 0]), torch.ones(2))
