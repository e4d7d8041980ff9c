from __future__ import annotations

import pytest
import torch
from torch import nn

from skier.errors import ModelError
from skier.models import CNN


@pytest.mark.parametrize(
    ("input_shape", "batch_shape"),
    [
        ((1, 8, 8), (3, 1, 8, 8)),
        ((1, 8, 8), (3, 64)),
        ((1, 28, 28), (3, 1, 28, 28)),
        ((1, 28, 28), (3, 784)),
        ((3, 8, 8), (3, 192)),
    ],
)
def test_output_shape_on_image_and_flat_inputs(input_shape: tuple, batch_shape: tuple) -> None:
    model = CNN(input_shape, 10, channels=(4, 8), hidden_sizes=(16,))
    assert model(torch.randn(batch_shape)).shape == (3, 10)


def test_flat_input_is_reshaped_in_flatten_order() -> None:
    model = CNN((2, 4, 4), 5, channels=(3,), hidden_sizes=())
    images = torch.randn(2, 2, 4, 4)
    assert torch.equal(model(images.flatten(1)), model(images))


@pytest.mark.parametrize(
    ("input_shape", "channels", "feature_shape", "pools"),
    [
        ((1, 8, 8), (16, 32), (32, 2, 2), 2),
        ((1, 8, 8), (4, 4, 4), (4, 2, 2), 2),  # never below 2x2
        ((1, 28, 28), (16, 32), (32, 7, 7), 2),
        ((1, 5, 5), (4,), (4, 2, 2), 1),
        ((1, 3, 3), (4,), (4, 3, 3), 0),
    ],
)
def test_pooling_keeps_at_least_2x2(input_shape, channels, feature_shape, pools) -> None:
    model = CNN(input_shape, 10, channels=channels)
    assert model.feature_shape == feature_shape
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    assert model.features(torch.randn(2, *input_shape)).shape[1:] == feature_shape
    assert model.head.input_size == feature_shape[0] * feature_shape[1] * feature_shape[2]


def test_batch_norm_and_dropout_placement() -> None:
    model = CNN((1, 8, 8), 10, channels=(4, 8), batch_norm=True, dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 2
    assert all(m.bias is None for m in model.features if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.Dropout) for m in model.features)
    assert any(isinstance(m, nn.Dropout) for m in model.head.modules())


def test_even_kernel_size_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"kernel_size must be an odd positive integer; got 4\."):
        CNN((1, 8, 8), 10, kernel_size=4)


def test_bad_input_shape_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"input_shape must be three positive integers"):
        CNN((64,), 10)


def test_input_of_the_wrong_size_gives_a_clear_error() -> None:
    model = CNN((1, 8, 8), 10)
    with pytest.raises(
        ModelError, match=r"CNN input must be N x 1 x 8 x 8 or N x 64; got \(2, 50\)"
    ):
        model(torch.randn(2, 50))
