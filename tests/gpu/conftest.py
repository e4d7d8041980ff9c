"""Tests marked ``cuda``: they run where ``torch.cuda.is_available()``, and skip with the reason
everywhere else. ``bench/gpu/check.sh`` runs them (``pytest -m cuda tests/gpu``) on a GPU machine.
"""

from __future__ import annotations

import os

import pytest
import torch

from skier.config import DataConfig, ModelConfig
from skier.data import DataBundle, load_data
from skier.models import build_model

# skier trains with deterministic algorithms by default; on CUDA cuBLAS then needs a fixed
# workspace, or torch warns at every matmul (an error under filterwarnings=error). Set before
# any CUDA work; spawned workers inherit it.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

NO_GPU = (
    "needs a CUDA GPU (torch.cuda.is_available() is False); run bench/gpu/check.sh on a GPU machine"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_GPU)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return load_data(DataConfig(name="digits"))


def digits_mlp(data: DataBundle, seed: int = 0) -> torch.nn.Module:
    """The W3 model (MLP 64-128-10), seeded: the same initial weights on every device."""
    torch.manual_seed(seed)
    config = ModelConfig(hidden_sizes=[128])
    return build_model(config, input_shape=data.input_shape, output_size=data.output_size)
