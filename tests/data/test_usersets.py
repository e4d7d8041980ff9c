"""data.name: dataset — a Dataset factory named in the config, its forms and its errors."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.config import DataConfig, config_from_mapping
from skier.data import load_data, load_raw
from skier.errors import ConfigError, DataError
from skier.train import fit

MODULE = """
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

g = torch.Generator().manual_seed(0)
X = torch.randn(90, 5, generator=g)
Y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


class Named(TensorDataset):
    classes = ["low", "mid", "high", "top"]


def train_only(n=90):
    return TensorDataset(X[:n], Y[:n])

def as_mapping():
    return {"train": TensorDataset(X[:60], Y[:60]), "val": TensorDataset(X[60:], Y[60:])}

def as_tuple():
    parts = [(0, 60), (60, 75), (75, 90)]
    return tuple(TensorDataset(X[a:b], Y[a:b]) for a, b in parts)

def named():
    return Named(X, Y)

def regression():
    return TensorDataset(X, X[:, :2].sum(dim=1, keepdim=True))

def not_a_dataset():
    return [1, 2, 3]

def bad_keys():
    return {"training": TensorDataset(X, Y)}

def iterable():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([])
    return Stream()

def broken(**kwargs):
    raise FileNotFoundError("no folder 'gone'")

NOT_CALLABLE = 3
"""


@pytest.fixture(autouse=True)
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_data_mod.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "user_data_raises.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def _config(ref: str, **more: Any) -> DataConfig:
    return DataConfig(name="dataset", dataset=ref, **more)


def test_a_dataset_alone_is_the_training_set() -> None:
    bundle = load_data(_config("user_data_mod:train_only", dataset_kwargs={"n": 80}))
    assert bundle.streams and len(bundle.train_dataset) == 80  # type: ignore[arg-type]
    assert len(bundle.train) == 0 and bundle.input_shape == (5,)
    assert bundle.val is None and bundle.test is None
    assert bundle.task == "classification" and bundle.num_classes == 3  # one pass over labels
    assert "train 80" in repr(bundle)


def test_a_mapping_and_a_tuple_give_the_in_memory_val_and_test() -> None:
    from user_data_mod import X, Y  # type: ignore[import-not-found]

    mapping = load_data(_config("user_data_mod:as_mapping"))
    assert mapping.val is not None and torch.equal(mapping.val.inputs[0], X[60:])
    assert torch.equal(mapping.val.targets, Y[60:])
    assert mapping.test is None
    tupled = load_data(_config("user_data_mod:as_tuple"))
    assert tupled.test is not None and len(tupled.test) == 15
    assert tupled.info["split"] == {"train": 60, "val": 15, "test": 15}


def test_classes_attribute_gives_the_count_and_names() -> None:
    bundle = load_data(_config("user_data_mod:named"))
    assert bundle.num_classes == 4 and list(bundle.class_names) == ["low", "mid", "high", "top"]


def test_float_targets_are_regression() -> None:
    bundle = load_data(_config("user_data_mod:regression"))
    assert bundle.task == "regression" and bundle.output_size == 1


def test_fit_on_the_bundle_trains_from_the_dataset_exactly_as_in_memory() -> None:
    from user_data_mod import X, Y

    bundle = load_data(_config("user_data_mod:as_mapping"))
    settings: dict[str, Any] = {"epochs": 2, "batch_size": 16, "lr": 0.05, "optimizer": "sgd",
                                "device": "cpu", "progress": "off", "seed": 4}  # fmt: skip

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Linear(5, 3)

    streamed = fit(model(), bundle, **settings)
    memory = fit(model(), (X[:60], Y[:60]), (X[60:], Y[60:]), **settings)
    assert [{k: v for k, v in r.items() if k != "epoch_time"} for r in streamed.history.rows] == [
        {k: v for k, v in r.items() if k != "epoch_time"} for r in memory.history.rows
    ]


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("user_data_missing:make", r"data\.dataset must be .*No module named 'user_data_missing'"),
        ("user_data_raises:make", r"data\.dataset 'user_data_raises:make': importing .* raised "
                                  "RuntimeError: boom at import"),
        ("user_data_mod:trian_only", r"has no attribute 'trian_only'\. Did you mean 'train_only'"),
        ("user_data_mod:NOT_CALLABLE", r"data\.dataset must be a reference to a function"),
        ("user_data_mod:not_a_dataset", r"data\.dataset must be .*train data is a list, not a "
                                        "map-style torch Dataset"),
        ("user_data_mod:iterable", r"train data is a Stream, not a map-style"),
        ("user_data_mod:bad_keys", r"must have a 'train' key.*got keys \['training'\]"),
        ("user_data_mod:broken", r"data\.dataset 'user_data_mod:broken': calling it with "
                                 r"data\.dataset_kwargs \{\} raised FileNotFoundError: no folder"),
    ],
)  # fmt: skip
def test_each_failure_is_one_line_naming_the_field(ref: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as caught:
        load_data(_config(ref))
    assert len(caught.value.problems) == 1 and "\n" not in str(caught.value)


def test_the_config_checks_the_reference_and_the_name() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("data.dataset must be set for data.name 'dataset'")
    ):
        config_from_mapping({"data": {"name": "dataset"}}, "run.yaml")
    with pytest.raises(
        ConfigError, match=re.escape("data.dataset must be unset unless data.name is")
    ):
        config_from_mapping({"data": {"dataset": "a:b"}}, "run.yaml")
    with pytest.raises(
        ConfigError, match=re.escape("must be a 'package.module:function' reference")
    ):
        config_from_mapping({"data": {"name": "dataset", "dataset": "nocolon"}}, "run.yaml")


def test_cross_validation_arrays_are_refused_for_a_dataset() -> None:
    with pytest.raises(DataError, match=re.escape("data.name must be an in-memory data set here")):
        load_raw(_config("user_data_mod:train_only"))
