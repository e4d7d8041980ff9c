"""The config schema: defaults, overrides and the error messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from skier.config import (
    RunConfig,
    apply_overrides,
    config_from_mapping,
    config_to_yaml,
    demo_config,
    load_config,
)
from skier.errors import ConfigError


def test_defaults_are_complete_and_round_trip_through_yaml(tmp_path: Path) -> None:
    text = config_to_yaml(RunConfig())
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == RunConfig()
    assert "early_stopping:" in text and "batch_size: 128" in text


def test_overrides_are_parsed_as_yaml_values(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "optim.lr=0.05",
            "train.batch_size=full",
            "model.hidden_sizes=[32, 16]",
            "early_stopping.enabled=true",
        ],
    )
    assert cfg.optim.lr == 0.05
    assert cfg.train.batch_size == "full"
    assert cfg.model.hidden_sizes == [32, 16]
    assert cfg.early_stopping.enabled is True


def test_override_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\n  name: sgd\n")
    cfg = load_config(path, ["optim.lr=0.2"])
    assert (cfg.optim.name, cfg.optim.lr) == ("sgd", 0.2)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(
            {
                "optim": {"lrr": 0.1, "lr": 0},
                "train": {"batch_size": 0},
                "data": {"val_fraction": 1.5, "test_fraction": -0.1},
            }
        )
    problems = info.value.problems
    assert len(problems) == 5
    text = "\n".join(problems)
    assert "optim.lrr is not a known setting. Did you mean 'lr'?" in text
    assert "optim.lr must be greater than 0; got 0." in text
    assert "train.batch_size must be greater than or equal to 1; got 0." in text
    assert "data.val_fraction must be less than 1; got 1.5." in text
    assert "data.test_fraction must be greater than or equal to 0; got -0.1." in text


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"modle": {}}, r"modle is not a known setting\. Did you mean 'model'\?"),
        ({"train": {"epochs": "ten"}}, r"train\.epochs must be a valid integer.*got 'ten'"),
        ({"train": {"batch_size": "half"}}, r"train\.batch_size .*got 'half'"),
        ({"train": {"device": "gpu"}}, r"train\.device must be 'auto', 'cpu'"),
        ({"model": {"name": "mpl"}}, r"model\.name must be .*Did you mean 'mlp'\?"),
        ({"data": {"name": "mnist"}}, r"data\.name must be 'digits', 'synthetic'"),
        ({"data": {"val_fraction": 0}}, r"data\.val_fraction must be greater than 0"),
        ({"optim": {"betas": [0.9, 1.0]}}, r"optim\.betas\.1 must be less than 1"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_mapping(data)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping of sections"):
        load_config(scalar)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("optim: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_override_syntax_error() -> None:
    with pytest.raises(ConfigError, match=r"--set must be section\.key=value; got 'optim\.lr'"):
        load_config(None, ["optim.lr"])


def test_apply_overrides_does_not_mutate_input() -> None:
    raw = {"optim": {"lr": 0.1}}
    out = apply_overrides(raw, ["optim.lr=0.2", "train.epochs=3"])
    assert raw == {"optim": {"lr": 0.1}}
    assert out == {"optim": {"lr": 0.2}, "train": {"epochs": 3}}


def test_demo_config_is_valid() -> None:
    cfg = demo_config()
    assert cfg.data.name == "digits" and cfg.model.name == "cnn" and cfg.data.as_images
