"""as_split: the one conversion from what a user passes to a Split (fit, evaluate, diagnostics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from skier.data import Split, as_split
from skier.errors import DataError


def test_a_split_is_returned_as_it_is() -> None:
    split = Split((torch.zeros(3, 2),), torch.tensor([0, 1, 0]))
    assert as_split(split) is split


@pytest.mark.parametrize("pair", [tuple, list])
def test_numpy_pairs_become_float32_inputs_and_long_labels(pair: Any) -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))  # float64
    split = as_split(pair([x, np.array([0, 1, 2, 1, 0])]), name="train")
    assert split.inputs[0].dtype == torch.float32 and split.inputs[0].shape == (5, 3)
    assert split.targets.dtype == torch.int64 and split.targets.shape == (5,)
    np.testing.assert_allclose(split.inputs[0].numpy(), x.astype(np.float32))


def test_regression_targets_become_one_column() -> None:
    split = as_split((torch.zeros(4, 2, dtype=torch.float64), np.arange(4.0)))
    assert split.targets.dtype == torch.float32 and split.targets.shape == (4, 1)
    assert as_split((torch.zeros(4, 2), torch.zeros(4, 3))).targets.shape == (4, 3)


def test_tensors_are_not_copied() -> None:
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    split = as_split((x, y))
    assert split.inputs[0] is x and split.targets is y


def test_a_tuple_of_inputs_is_several_inputs() -> None:
    numeric, codes = np.zeros((4, 2)), np.ones((4, 1), dtype=np.int64)
    split = as_split(((numeric, codes), np.array([0, 1, 0, 1])))
    assert len(split.inputs) == 2
    assert split.inputs[0].dtype == torch.float32 and split.inputs[1].dtype == torch.int64


def test_nested_lists_are_one_input() -> None:
    split = as_split(([[1.0, 2.0], [3.0, 4.0]], [0, 1]))
    assert len(split.inputs) == 1 and split.inputs[0].shape == (2, 2)


def test_not_a_pair_names_what_the_caller_accepts() -> None:
    with pytest.raises(DataError, match=r"^train must be a Split or an \(inputs, targets\) pair.*"
                       r"; got str\.$"):  # fmt: skip
        as_split("data.csv", name="train")
    with pytest.raises(DataError, match=r"^data must be a DataBundle or a Split; got list\.$"):
        as_split([1, 2, 3], accepts="a DataBundle or a Split")


def test_rows_that_do_not_line_up() -> None:
    with pytest.raises(DataError, match=r"val inputs\[0\] must have as many rows as targets \(4\)"):
        as_split((np.zeros((3, 2)), np.zeros(4, dtype=np.int64)), name="val")
    with pytest.raises(DataError, match=r"data inputs\[1\] must have as many rows"):
        as_split(((np.zeros((4, 2)), np.zeros((3, 1))), np.zeros(4, dtype=np.int64)))


def test_strings_scalars_and_ragged_rows() -> None:
    with pytest.raises(DataError, match=r"train targets must be a tensor or an array of numbers "
                       r"\(bool, int or float\); got '<U3'\. Encode strings first"):  # fmt: skip
        as_split((np.zeros((2, 2)), ["cat", "dog"]), name="train")
    with pytest.raises(DataError, match=r"data inputs must be an array with one row per example; "
                       r"got 1\.$"):  # fmt: skip
        as_split([1, 2])
    with pytest.raises(DataError, match=r"data inputs must be an array of numbers; got rows of "
                       r"different lengths .*Give every row the same length\.$"):  # fmt: skip
        as_split(([[1.0, 2.0], [3.0]], [0, 1]))
