from __future__ import annotations

from typing import get_args

import pytest
import torch
from torch import nn

from skier.config import ModelConfig
from skier.errors import ModelError
from skier.models import ACTIVATIONS, DenseBlock, activation


@pytest.mark.parametrize(
    ("name", "oracle"),
    [
        ("relu", torch.relu),
        ("leaky_relu", torch.nn.functional.leaky_relu),
        ("elu", torch.nn.functional.elu),
        ("gelu", torch.nn.functional.gelu),
        ("silu", torch.nn.functional.silu),
        ("tanh", torch.tanh),
        ("sigmoid", torch.sigmoid),
        ("identity", lambda x: x),
    ],
)
def test_activation_matches_torch(name: str, oracle) -> None:
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(activation(name)(x), oracle(x))


def test_activation_names_match_the_config_schema() -> None:
    assert set(ACTIVATIONS) == set(get_args(ModelConfig.model_fields["activation"].annotation))


def test_activation_returns_a_fresh_module_each_call() -> None:
    assert activation("relu") is not activation("relu")


def test_activation_is_case_insensitive() -> None:
    assert isinstance(activation("ReLU"), nn.ReLU)


def test_unknown_activation_suggests_the_closest_name() -> None:
    with pytest.raises(
        ModelError,
        match=r"activation must be one of relu, .*got 'rleu'\. "
        r"Did you mean 'relu'\?",
    ):
        activation("rleu")


def test_unknown_activation_without_a_close_name_lists_the_choices() -> None:
    with pytest.raises(
        ModelError,
        match=r"one of relu, leaky_relu, elu, gelu, silu, tanh, "
        r"sigmoid, identity; got 'softplus'\.$",
    ):
        activation("softplus")


def _zero_linear(block: DenseBlock) -> None:
    with torch.no_grad():
        block.linear.weight.zero_()
        if block.linear.bias is not None:
            block.linear.bias.zero_()


def test_residual_block_with_zero_weights_passes_input_through() -> None:
    block = DenseBlock(6, 6, "relu", residual=True)
    _zero_linear(block)
    x = torch.randn(3, 6)
    assert isinstance(block.skip, nn.Identity)
    assert torch.equal(block(x), x)


def test_residual_block_projects_the_skip_when_widths_differ() -> None:
    block = DenseBlock(6, 4, "relu", residual=True)
    _zero_linear(block)
    assert isinstance(block.skip, nn.Linear)
    assert block.skip.bias is None
    x = torch.randn(3, 6)
    assert torch.equal(block(x), block.skip(x))


def test_plain_block_has_no_skip() -> None:
    block = DenseBlock(6, 6, "relu")
    _zero_linear(block)
    assert block.skip is None
    assert torch.equal(block(torch.randn(3, 6)), torch.zeros(3, 6))
