from __future__ import annotations

import ast
import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import skier.models
from skier.config import ModelConfig
from skier.errors import ModelError
from skier.models import (
    CNN,
    MLP,
    TabularNet,
    build_model,
    check_output_shape,
    count_parameters,
)


def test_mlp_from_config() -> None:
    config = ModelConfig(hidden_sizes=[16, 16], batch_norm=True, residual=True, dropout=0.1)
    model = build_model(config, input_shape=(1, 8, 8), output_size=10)
    assert isinstance(model, MLP)
    assert model.input_size == 64 and model.hidden_sizes == (16, 16)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert isinstance(model.blocks[1].skip, nn.Identity)
    check_output_shape(model, (1, 8, 8), 10)


@pytest.mark.parametrize(
    ("input_shape", "image_shape"),
    [((1, 8, 8), (1, 8, 8)), ((64,), (1, 8, 8)), ((28, 28), (1, 28, 28)), ((784,), (1, 28, 28))],
)
def test_cnn_from_config(input_shape: tuple, image_shape: tuple) -> None:
    config = ModelConfig(name="cnn", channels=[4, 8], hidden_sizes=[16], kernel_size=5)
    model = build_model(config, input_shape=input_shape, output_size=10)
    assert isinstance(model, CNN) and model.input_shape == image_shape
    check_output_shape(model, input_shape, 10, batch=2)


def test_cnn_on_flat_data_that_is_not_square_suggests_as_images() -> None:
    with pytest.raises(
        ModelError,
        match=r"input_shape must be C x H x W.*; got \(20,\)\. Set data\.as_images: true",
    ):
        build_model(ModelConfig(name="cnn"), input_shape=(20,), output_size=3)


def test_cnn_with_categorical_columns_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"model\.name must be 'mlp' or 'tabular'"):
        build_model(
            ModelConfig(name="cnn"),
            input_shape=(4,),
            output_size=3,
            categorical_cardinalities=[3],
        )


def test_mlp_with_categorical_columns_builds_a_tabular_net() -> None:
    config = ModelConfig(hidden_sizes=[8], embedding_sizes=[2, 3])
    model = build_model(config, input_shape=(4,), output_size=3, categorical_cardinalities=[5, 6])
    assert isinstance(model, TabularNet)
    assert [e.embedding_dim for e in model.embeddings] == [2, 3]
    check_output_shape(model, (4,), 3, categorical_cardinalities=[5, 6])


def test_tabular_by_name() -> None:
    config = ModelConfig(name="tabular", hidden_sizes=[8])
    model = build_model(config, input_shape=(4,), output_size=1, num_numeric=4)
    assert isinstance(model, TabularNet) and model.num_numeric == 4
    with pytest.raises(ModelError, match=r"num_numeric must be the number of numeric features"):
        build_model(config, input_shape=(4,), output_size=1, num_numeric=5)


def test_tabular_embedding_sizes_of_the_wrong_length() -> None:
    config = ModelConfig(name="tabular", embedding_sizes=[2])
    with pytest.raises(ModelError, match=r"one size per categorical column \(2\)"):
        build_model(config, input_shape=(4,), output_size=1, categorical_cardinalities=[5, 6])


def test_bad_shapes_are_reported_together() -> None:
    with pytest.raises(ModelError, match="2 problems"):
        build_model(ModelConfig(), input_shape=(-1,), output_size=0)


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    assert count_parameters(model) == 8 + 3
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 3
    assert count_parameters(model) == 11


# --- module:function references -----------------------------------------------------------------

_counter = itertools.count()


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a module to tmp_path and return its (unique) name; forget it afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"skier_user_models_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


NET_SOURCE = """
    import math
    from torch import nn

    def make(input_shape, output_size, width=4):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Linear(width, output_size)
        )

    def make_kw(**kwargs):
        return make(**kwargs)

    def fixed(width):
        return nn.Linear(3, width)

    class Net(nn.Module):
        def __init__(self, input_shape, output_size):
            super().__init__()
            self.linear = nn.Linear(input_shape[0], output_size)

        def forward(self, x):
            return self.linear(x)

    def not_a_module(input_shape, output_size):
        return [1, 2]

    def broken(input_shape, output_size):
        raise ValueError("width must be even")

    NOT_CALLABLE = 3
"""


def test_reference_gets_shapes_and_kwargs(write_module) -> None:
    name = write_module(NET_SOURCE)
    config = ModelConfig(name=f"{name}:make", kwargs={"width": 7})
    model = build_model(config, input_shape=(1, 8, 8), output_size=10)
    assert model[1].out_features == 7
    check_output_shape(model, (1, 8, 8), 10)


def test_reference_through_var_keywords(write_module) -> None:
    name = write_module(NET_SOURCE)
    model = build_model(
        ModelConfig(name=f"{name}:make_kw"),
        input_shape=(6,),
        output_size=2,
        categorical_cardinalities=[3],  # not forwarded through **kwargs
    )
    check_output_shape(model, (6,), 2)


def test_reference_without_shape_keywords_gets_only_kwargs(write_module) -> None:
    name = write_module(NET_SOURCE)
    model = build_model(
        ModelConfig(name=f"{name}:fixed", kwargs={"width": 5}), input_shape=(3,), output_size=5
    )
    assert isinstance(model, nn.Linear) and model.out_features == 5


def test_reference_to_a_class(write_module) -> None:
    name = write_module(NET_SOURCE)
    model = build_model(ModelConfig(name=f"{name}:Net"), input_shape=(3,), output_size=2)
    assert model(torch.zeros(1, 3)).shape == (1, 2)


def test_reference_to_a_missing_module() -> None:
    with pytest.raises(
        ModelError,
        match=r"model\.name must be .*importable module; got 'no_such_pkg_xyz\.models:make'\. "
        r"No module named 'no_such_pkg_xyz'",
    ):
        build_model(
            ModelConfig(name="no_such_pkg_xyz.models:make"), input_shape=(3,), output_size=2
        )


def test_reference_to_a_module_whose_import_fails(write_module) -> None:
    name = write_module("import no_such_dependency_xyz\n")
    with pytest.raises(ModelError, match=rf"importing '{name}' failed: No module named 'no_such"):
        build_model(ModelConfig(name=f"{name}:make"), input_shape=(3,), output_size=2)
    other = write_module("raise RuntimeError('boom')\n")
    with pytest.raises(ModelError, match=rf"importing '{other}' raised RuntimeError: boom"):
        build_model(ModelConfig(name=f"{other}:make"), input_shape=(3,), output_size=2)


def test_reference_to_a_missing_attribute_suggests_a_name(write_module) -> None:
    name = write_module(NET_SOURCE)
    with pytest.raises(ModelError, match=r"has no attribute 'mak'\. Did you mean 'make'\?"):
        build_model(ModelConfig(name=f"{name}:mak"), input_shape=(3,), output_size=2)


def test_reference_to_something_not_callable(write_module) -> None:
    name = write_module(NET_SOURCE)
    with pytest.raises(ModelError, match=r"a reference to a function or class.*is a int"):
        build_model(ModelConfig(name=f"{name}:NOT_CALLABLE"), input_shape=(3,), output_size=2)


def test_reference_that_returns_no_module(write_module) -> None:
    name = write_module(NET_SOURCE)
    with pytest.raises(
        ModelError,
        match=rf"model\.name must be a function that returns a torch\.nn\.Module; "
        rf"got '{name}:not_a_module'\. It returned list\.",
    ):
        build_model(ModelConfig(name=f"{name}:not_a_module"), input_shape=(3,), output_size=2)


def test_reference_that_raises(write_module) -> None:
    name = write_module(NET_SOURCE)
    with pytest.raises(ModelError, match=r"raised ValueError: width must be even") as info:
        build_model(ModelConfig(name=f"{name}:broken"), input_shape=(3,), output_size=2)
    assert isinstance(info.value.__cause__, ValueError)


def test_malformed_reference() -> None:
    with pytest.raises(ModelError, match=r"a 'package\.module:function' reference; got 'mod:'"):
        build_model(ModelConfig(name="mod:"), input_shape=(3,), output_size=2)


# --- layers -------------------------------------------------------------------------------------

# skier._references: the config references resolver, outside the layers (the data layer uses it too)
ALLOWED = {"skier.config", "skier.errors", "skier.history", "skier._references"}


def test_models_import_only_lower_layers() -> None:
    package = Path(skier.models.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("skier.") and not name.startswith("skier.models"):
                    assert name in ALLOWED, f"{path.name} imports {name}"
