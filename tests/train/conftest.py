"""Shared fixtures for the training-loop tests: tiny, seeded, CPU only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from skier.history import History
from skier.train import TrainState

N, D, CLASSES = 240, 12, 3


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _teacher_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable 3-class problem: labels from a fixed random linear teacher, 10 % noise."""
    teacher = torch.randn(D, CLASSES, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    y = (x @ teacher).argmax(dim=1)
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = torch.randint(0, CLASSES, (int(flip.sum()),), generator=g)
    return x, y


@pytest.fixture(scope="session")
def clf_data() -> tuple[torch.Tensor, torch.Tensor]:
    return _teacher_data(N, seed=2)


@pytest.fixture(scope="session")
def clf_val() -> tuple[torch.Tensor, torch.Tensor]:
    return _teacher_data(80, seed=3)


@pytest.fixture(scope="session")
def reg_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, D, generator=g)
    y = x @ torch.randn(D, 1, generator=g) + 0.1 * torch.randn(200, 1, generator=g)
    return x, y


ModelFactory = Callable[..., nn.Module]


@pytest.fixture(scope="session")
def make_mlp() -> ModelFactory:
    """``make_mlp(seed, out=3, hidden=16, dropout=0.0, batch_norm=False)``: a 2-layer MLP."""

    def build(
        seed: int = 0,
        out: int = CLASSES,
        hidden: int = 16,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Linear(D, hidden)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, out))
        return nn.Sequential(*layers)

    return build


@pytest.fixture
def make_state() -> Callable[..., TrainState]:
    """A bare TrainState over a tiny model, for driving callbacks without training."""

    def build(
        epochs: int = 100, keys: frozenset[str] = frozenset({"loss", "val_loss", "val_accuracy"})
    ) -> TrainState:
        return TrainState(
            nn.Linear(2, 1),
            epochs=epochs,
            task="classification",
            history=History(),
            available_keys=keys,
        )

    return build
