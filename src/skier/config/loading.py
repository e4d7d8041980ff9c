"""Reading configs: YAML files, ``--set`` overrides, and the demo's config.

Loading reports every problem at once, with "did you mean" for misspelt keys::

    load_config("run.yaml", overrides=["optim.lr=0.01", "train.epochs=5"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skier.config.base import validate_model
from skier.config.run import RunConfig
from skier.errors import ConfigError

__all__ = [
    "apply_overrides",
    "config_from_mapping",
    "config_to_yaml",
    "demo_config",
    "load_config",
    "read_config_mapping",
    "read_yaml_mapping",
]


def config_from_mapping(data: Mapping[str, Any] | None, source: str = "") -> RunConfig:
    """Validate a plain mapping; raise :class:`ConfigError` listing every problem."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source or 'config'} must be a mapping of sections; got {data!r}.")
    return validate_model(RunConfig, data, source)


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set must be section.key=value; got {item!r}.")
    import yaml  # slow to import: only where YAML is read or written (not by fit)

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a raw mapping."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        path, value = _parse_override(item)
        node: dict[str, Any] = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


def read_config_mapping(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """A YAML config as a raw mapping (``None`` = empty: all defaults) with ``overrides``
    applied, not yet validated (what :func:`load_config` and a pre-flight check start from)."""
    data = read_yaml_mapping(path, what="config file") if path is not None else {}
    return apply_overrides(data, overrides)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (``None`` = all defaults), apply overrides and validate."""
    return config_from_mapping(read_config_mapping(path, overrides), str(path) if path else "")


def read_yaml_mapping(path: str | Path, *, what: str = "file") -> dict[str, Any]:
    """A YAML file that must hold a mapping (``yaml.safe_load``); one-line errors otherwise."""
    p = Path(path)
    source = str(p)
    if not p.is_file():
        raise ConfigError(f"{what} {source!r} does not exist.")
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source} is not valid YAML{at}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of sections; got {data!r}.")
    return data


def config_to_yaml(config: RunConfig) -> str:
    """The fully resolved config as YAML (what ``skier config show`` prints)."""
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def demo_config() -> RunConfig:
    """The config ``skier demo`` runs: a small CNN on scikit-learn's 8x8 digits."""
    return RunConfig.model_validate(
        {
            "data": {"name": "digits", "as_images": True},
            "model": {"name": "cnn", "channels": [32, 64], "hidden_sizes": [128], "dropout": 0.2},
            "optim": {"name": "adam", "lr": 0.002},
            "schedule": {"name": "cosine"},
            "train": {"epochs": 30, "batch_size": 64},
            "record": {"name": "demo-digits-cnn"},
        }
    )
