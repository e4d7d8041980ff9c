from __future__ import annotations

import pytest
import torch
from torch import nn

from skier.errors import ModelError
from skier.models import CNN, MLP, TabularNet, check_output_shape


def test_a_fitting_model_passes() -> None:
    check_output_shape(MLP(64, 10, hidden_sizes=(8,)), (64,), 10)
    check_output_shape(MLP(64, 10, hidden_sizes=(8,)), (1, 8, 8), 10)
    check_output_shape(CNN((1, 8, 8), 10, channels=(4,)), [(1, 8, 8)], 10, batch=2)


def test_categorical_input_gets_valid_long_codes() -> None:
    model = TabularNet(3, [2, 50], output_size=1, hidden_sizes=(8,))
    check_output_shape(model, (3,), 1, categorical_cardinalities=[2, 50], batch=64)


def test_wrong_output_width_names_expected_and_got() -> None:
    with pytest.raises(
        ModelError,
        match=r"^model output must have shape \(batch, 10\) for output_size 10; got \(4, 12\)\. "
        r"Make the last layer produce 10 outputs\.$",
    ):
        check_output_shape(MLP(64, 12, hidden_sizes=(8,)), (64,), 10)


def test_squeezed_regression_output_is_rejected() -> None:
    class Squeezed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x).squeeze(1)

    with pytest.raises(ModelError, match=r"got \(4,\)\. Keep the output dimension"):
        check_output_shape(Squeezed(), (3,), 1)


def test_non_tensor_output_is_rejected() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ModelError, match=r"must be a tensor of shape \(batch, 3\); got tuple"):
        check_output_shape(Pair(), (3,), 3)


def test_forward_error_names_the_input_shape_and_the_original_message() -> None:
    model = MLP(64, 10, hidden_sizes=(8,))
    with pytest.raises(
        ModelError,
        match=r"model forward failed on input of shape \(4, 32\): RuntimeError: mat1 and mat2",
    ) as info:
        check_output_shape(model, (32,), 10)
    assert isinstance(info.value.__cause__, RuntimeError)


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))


def test_parameters_and_batch_norm_statistics_are_unchanged() -> None:
    model = _bn_model()
    model(torch.randn(16, 5))  # move the running stats away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_output_shape(model, (5,), 2)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_torch_rng_state_is_unchanged_even_if_the_model_draws_from_it() -> None:
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.rand_like(x)

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    check_output_shape(Noisy(), (2,), 2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)


def test_train_mode_is_restored_module_by_module() -> None:
    model = _bn_model()
    model.train()
    model[1].eval()  # a frozen batch-norm layer stays frozen
    check_output_shape(model, (5,), 2)
    assert model.training and model[0].training and model[2].training
    assert not model[1].training


def test_modes_are_restored_after_a_failure() -> None:
    model = _bn_model().train()
    with pytest.raises(ModelError):
        check_output_shape(model, (7,), 2)
    assert all(m.training for m in model.modules())


def test_eval_mode_stays_eval() -> None:
    model = _bn_model().eval()
    check_output_shape(model, (5,), 2)
    assert not any(m.training for m in model.modules())


def test_float64_model() -> None:
    check_output_shape(MLP(4, 2, hidden_sizes=(3,)).double(), (4,), 2)


def test_invalid_arguments() -> None:
    with pytest.raises(ModelError, match="3 problems") as info:
        check_output_shape(MLP(4, 2), "4", 0, batch=0)
    assert "input_shapes must be a shape such as (64,)" in str(info.value)


def test_forward_error_with_two_inputs_names_both_shapes() -> None:
    model = TabularNet(3, [4, 5], output_size=2, hidden_sizes=(8,))
    with pytest.raises(
        ModelError, match=r"failed on inputs of shapes \(4, 2\), \(4, 2\): RuntimeError"
    ):
        check_output_shape(model, (2,), 2, categorical_cardinalities=[4, 5])
