"""The search-space file: what it accepts, and one clear line per mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skier.config import RunConfig
from skier.config.search import config_key_problem, load_space, parse_space
from skier.errors import ConfigError


def test_float_int_categorical_flat_and_nested_keys() -> None:
    space = parse_space(
        {
            "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "train": {"batch_size": {"type": "int", "low": 16, "high": 128, "log": True}},
            "model.hidden_sizes": {"type": "categorical", "choices": [[64], [128, 64]]},
        },
        base=RunConfig(),
    )
    assert space.names == ["optim.lr", "train.batch_size", "model.hidden_sizes"]
    lr, batch, hidden = space.params
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-4, 0.1, True)
    assert (batch.type, batch.low, batch.high) == ("int", 16, 128)
    # lists are handed to Optuna as JSON text and come back as lists
    assert hidden.labels == ("[64]", "[128, 64]")
    assert hidden.value_of("[128, 64]") == [128, 64]


def _error(data: object, path: str = "space.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_space(data, path, base=RunConfig())  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}},
            r"^space\.yaml: optim\.lr must have low <= high; got low=0\.1, high=0\.01\. Swap",
        ),
        (
            {"optim.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
            r"^space\.yaml: optim\.lr\.low must be > 0 with log: true .* got 0\.0\.",
        ),
        (
            {"optim.lrr": {"type": "float", "low": 0.01, "high": 0.1}},
            r"^space\.yaml: optim\.lrr is not a known setting\. Did you mean 'lr'\?$",
        ),
        (
            {"optimm.lr": {"type": "float", "low": 0.01, "high": 0.1}},
            r"^space\.yaml: optimm\.lr is not a known setting\. Did you mean 'optim'\?$",
        ),
        (
            {"optim.lr": {"type": "flaot", "low": 0.01, "high": 0.1}},
            r"^space\.yaml: optim\.lr\.type must be one of float, int, categorical; got 'flaot'\."
            r" Did you mean 'float'\?$",
        ),
        (
            {"optim.lr": {"type": "float", "low": 0.01, "hihg": 0.1}},
            r"space\.yaml: optim\.lr\.hihg is not a known field of a float parameter\. "
            r"Did you mean 'high'\?",
        ),
        (
            {"train.epochs": {"type": "int", "low": 1.5, "high": 4}},
            r"^space\.yaml: train\.epochs\.low must be an integer for type int; got 1\.5\.$",
        ),
        (
            {"train.batch_size": {"type": "categorical", "choices": []}},
            r"^space\.yaml: train\.batch_size\.choices must be a non-empty list; got \[\]\.",
        ),
        (
            {"train.batch_size": {"type": "int", "low": 0, "high": 8}},
            r"^space\.yaml: train\.batch_size: the value 0 is not valid for this setting: "
            r"train\.batch_size must be greater than or equal to 1; got 0\.$",
        ),
        (
            {"optim.lr": 0.1},
            r"^space\.yaml: optim\.lr must be a mapping such as \{type: float",
        ),
        (
            {"optim": {"name": {"type": "categorical", "choices": ["adam", "sgd"]}, "lr": 3}},
            r"^space\.yaml: optim\.lr must be a mapping",
        ),
        ([1, 2], r"^space\.yaml must be a non-empty mapping of config keys"),
    ],
)
def test_bad_spaces_are_one_line_naming_file_and_key(entry: object, message: str) -> None:
    text = _error(entry)
    assert "\n" not in text

    assert re.search(message, text), text


def test_every_problem_is_reported_at_once() -> None:
    text = _error(
        {
            "optim.lr": {"type": "float", "low": 1.0, "high": 0.1},
            "model.dropuot": {"type": "float", "low": 0.0, "high": 0.5},
        }
    )
    assert text.startswith("2 problems:")
    assert "optim.lr must have low <= high" in text and "Did you mean 'dropout'?" in text


def test_load_space_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n")
    assert load_space(path).names == ["optim.lr"]
    path.write_text("optim.lr: {type: float, low: -1, high: 1.0e-1, log: true}\n")
    where = re.escape(str(path))
    with pytest.raises(ConfigError, match=rf"^{where}: optim\.lr\.low must be > 0 with log"):
        load_space(path)
    with pytest.raises(ConfigError, match=r"search space file .* does not exist"):
        load_space(tmp_path / "missing.yaml")


def test_config_keys_inside_free_mappings_and_sections() -> None:
    assert config_key_problem("model.kwargs.width") is None
    assert config_key_problem("optim.extra.foreach") is None
    assert "is a section, not a setting" in str(config_key_problem("optim"))
    assert "which is a setting, not a section" in str(config_key_problem("optim.lr.x"))
