"""Informative sampling: hard examples drawn more often, a uniform floor, unbiased weights."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from skier.data.types import Split
from skier.train.batches import InformativeBatches


def _split(n: int = 100) -> Split:
    return Split((torch.arange(float(n)).unsqueeze(1),), torch.zeros(n, dtype=torch.long))


def test_probabilities_mix_the_loss_distribution_with_a_uniform_floor() -> None:
    batches = InformativeBatches(_split(4), 2, floor=0.2, generator=torch.Generator())
    batches.recent = torch.tensor([3.0, 1.0, 0.0, 0.0])
    p = batches.probabilities()
    expected = 0.8 * torch.tensor([0.75, 0.25, 0.0, 0.0]) + 0.2 / 4
    assert torch.allclose(p, expected)
    assert torch.isclose(p.sum(), torch.tensor(1.0))
    assert float(p.min()) >= 0.2 / 4  # a zero-loss example keeps the floor


def test_weights_make_the_weighted_loss_unbiased() -> None:
    n = 50
    g = torch.Generator().manual_seed(0)
    batches = InformativeBatches(_split(n), n, floor=0.3, generator=g)
    losses = torch.rand(n, generator=torch.Generator().manual_seed(1)) * 5
    batches.recent = losses.clone()
    estimates = []
    for _ in range(400):
        ((x,), _y, w) = next(iter(batches))
        idx = x.squeeze(1).long()
        estimates.append(float((losses[idx] * w).mean()))
    mean_estimate = sum(estimates) / len(estimates)
    assert abs(mean_estimate - float(losses.mean())) < 0.03 * float(losses.mean())


def test_hard_examples_are_drawn_more_often_and_observe_updates_them() -> None:
    n = 100
    batches = InformativeBatches(_split(n), 10, floor=0.2, generator=torch.Generator())
    batches.recent = torch.full((n,), 0.1)
    batches.recent[:10] = 10.0  # ten hard examples
    counts = torch.zeros(n)
    for (x,), _y, _w in batches:
        idx = x.squeeze(1).long()
        counts += torch.bincount(idx, minlength=n)
        batches.observe(torch.full((len(idx),), 0.5))
    assert counts[:10].sum() > 5 * counts[10:20].sum()
    assert torch.all(batches.recent[counts > 0] == 0.5)  # every drawn example was updated


def test_fit_with_informative_sampling_learns_and_resumes_exactly(
    tmp_path: object, interrupt_at: Any
) -> None:
    from pathlib import Path

    from skier.train import Checkpoint, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    kw = {"sampling": "informative", "batch_size": 32, "epochs": 4, "optimizer": "adam",
          "lr": 0.02, "device": "cpu", "progress": "off"}  # fmt: skip
    root = Path(str(tmp_path))

    def model() -> torch.nn.Module:
        torch.manual_seed(3)
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    whole = model()
    result = fit(whole, (x, y), callbacks=[Checkpoint(root / "a")], **kw)
    assert result.history.column("loss")[-1] < 0.5 * result.history.column("loss")[0]

    with contextlib.suppress(KeyboardInterrupt):
        fit(model(), (x, y), callbacks=[Checkpoint(root / "b"), interrupt_at(2)], **kw)
    resumed = model()
    fit(resumed, (x, y), callbacks=[Checkpoint(root / "b")], resume=root / "b" / "last.pt", **kw)
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
