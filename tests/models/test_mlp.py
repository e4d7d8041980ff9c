from __future__ import annotations

import pytest
import torch
from torch import nn

from skier.errors import ModelError
from skier.models import MLP


@pytest.mark.parametrize(
    ("input_size", "batch_shape"),
    [(64, (5, 64)), (64, (5, 1, 8, 8)), (784, (5, 784)), (784, (5, 1, 28, 28))],
)
def test_output_shape_on_flat_and_image_inputs(input_size: int, batch_shape: tuple) -> None:
    model = MLP(input_size, 10, hidden_sizes=(16, 8))
    assert model(torch.randn(batch_shape)).shape == (5, 10)


def test_no_hidden_layers_is_a_linear_model() -> None:
    model = MLP(4, 3, hidden_sizes=())
    assert len(model.blocks) == 0
    assert model(torch.randn(2, 4)).shape == (2, 3)


def test_hidden_block_layout() -> None:
    model = MLP(4, 2, hidden_sizes=(8, 6), activation="tanh", batch_norm=True, dropout=0.5)
    block = model.blocks[0]
    assert (block.linear.in_features, block.linear.out_features) == (4, 8)
    assert isinstance(block.norm, nn.BatchNorm1d)
    assert isinstance(block.act, nn.Tanh)
    assert isinstance(block.drop, nn.Dropout) and block.drop.p == 0.5
    # The bias before batch norm is redundant and left out.
    assert block.linear.bias is None
    assert (model.head.in_features, model.head.out_features) == (6, 2)


def test_batch_norm_only_when_asked() -> None:
    def count(model: nn.Module) -> int:
        return sum(isinstance(m, nn.BatchNorm1d) for m in model.modules())

    assert count(MLP(4, 2, hidden_sizes=(8, 6), batch_norm=True)) == 2
    assert count(MLP(4, 2, hidden_sizes=(8, 6))) == 0


def test_dropout_is_inactive_in_eval_and_active_in_train() -> None:
    model = MLP(8, 3, hidden_sizes=(64,), dropout=0.5)
    x = torch.randn(16, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_residual_mlp_with_zeroed_blocks_is_its_head() -> None:
    model = MLP(8, 3, hidden_sizes=(8, 8), residual=True)
    with torch.no_grad():
        for block in model.blocks:
            block.linear.weight.zero_()
            block.linear.bias.zero_()
    x = torch.randn(4, 8)
    assert torch.equal(model.blocks(x), x)
    assert torch.equal(model(x), model.head(x))


def test_residual_mlp_projects_where_widths_change() -> None:
    model = MLP(8, 3, hidden_sizes=(16, 16), residual=True)
    assert isinstance(model.blocks[0].skip, nn.Linear)
    assert isinstance(model.blocks[1].skip, nn.Identity)


def test_invalid_arguments_are_reported_together() -> None:
    with pytest.raises(ModelError, match="4 problems") as info:
        MLP(0, 10, hidden_sizes=(8, 0), activation="rlu", dropout=1.0)
    text = str(info.value)
    assert "input_size must be a positive integer; got 0." in text
    assert "hidden_sizes must be a sequence of positive integers; got [8, 0]." in text
    assert "Did you mean 'relu'?" in text
    assert "dropout must be a probability in [0, 1); got 1.0." in text
