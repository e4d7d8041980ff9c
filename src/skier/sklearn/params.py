"""The estimators' settings: config sections stored as given, routed as ``section__field``.

An estimator stores each section (``model``, ``optim``, ``train``, ``schedule``,
``regularization``, ``record``) exactly as it was passed: a name, a mapping of the section's
fields, a config object or ``None``. ``get_params(deep=True)`` adds one ``section__field`` entry
per field a mapping sets, and ``set_params(optim__lr=0.01)`` replaces the section with a new
mapping (never changing the one the caller passed), which is what ``GridSearchCV`` and
``clone`` need. Values are checked when ``fit`` builds the config, by the YAML schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from skier.config import (
    ModelConfig,
    OptimConfig,
    RecordConfig,
    RegularizationConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_mapping,
)
from skier.errors import ConfigError, did_you_mean

__all__ = ["SECTIONS", "Settings", "section_mapping", "section_params", "split_params"]

# The config sections an estimator takes, each the YAML section of the same name.
SECTIONS: dict[str, type[BaseModel]] = {
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "schedule": ScheduleConfig,
    "regularization": RegularizationConfig,
    "record": RecordConfig,
}
# Sections that a plain string names (its ``name`` field).
_NAMED = ("model", "optim", "schedule")


def section_mapping(section: str, value: Any) -> dict[str, Any]:
    """The fields a section's stored value sets, as a new dict (``{}`` for ``None``).

    >>> section_mapping("optim", "sgd"), section_mapping("train", {"epochs": 3})
    ({'name': 'sgd'}, {'epochs': 3})
    >>> section_mapping("optim", OptimConfig(lr=0.1))
    {'lr': 0.1}
    """
    if value is None or value is False or value is True:
        return {}
    if isinstance(value, str) and section in _NAMED:
        return {"name": value}
    if section == "model" and callable(value) and not isinstance(value, BaseModel):
        return {"name": value}  # a factory: called with the other fields as keywords
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(
        f"{section} must be a mapping of its fields, a config object"
        + (", a name" if section in _NAMED else "")
        + (" or a model factory" if section == "model" else "")
        + f" or None; got {value!r}."
    )


def section_params(section: str, value: Any) -> dict[str, Any]:
    """``section__field`` entries for ``get_params(deep=True)``: the fields a mapping or config
    object sets (a bare name or ``None`` sets none of its own)."""
    if not isinstance(value, Mapping | BaseModel):
        return {}
    return {f"{section}__{k}": v for k, v in section_mapping(section, value).items()}


def split_params(
    params: Mapping[str, Any], valid: Mapping[str, Any], estimator: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``set_params`` keywords cut into plain parameters and per-section field updates; an
    unknown name is a ``ValueError`` naming it (as scikit-learn's own ``set_params``)."""
    plain: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        section, sep, name = key.partition("__")
        if not sep:
            if key not in valid:
                hint = did_you_mean(key, valid)
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {estimator}.{hint} "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            plain[key] = value
        elif section in SECTIONS:
            nested.setdefault(section, {})[name] = value
        else:
            raise ValueError(
                f"Invalid parameter {key!r} for estimator {estimator}: {section!r} is not a "
                f"section.{did_you_mean(section, SECTIONS)} Sections: {', '.join(SECTIONS)}."
            )
    return plain, nested


def updated_section(section: str, value: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new mapping: the stored section with ``fields`` set; an unknown field is an error
    (a factory model takes any keyword)."""
    current = section_mapping(section, value)
    factory = section == "model" and callable(current.get("name"))
    known = SECTIONS[section].model_fields
    unknown = [k for k in fields if k not in known] if not factory else []
    if unknown:
        raise ValueError(
            "; ".join(
                f"{section}__{k} is not a setting: {section} has no field {k!r}."
                f"{did_you_mean(k, known)}"
                for k in unknown
            )
        )
    return {**current, **fields}


class Settings:
    """What an estimator's stored sections resolve to when ``fit`` runs: the validated
    :class:`~skier.config.RunConfig` and, for a factory model, the factory and its keywords."""

    def __init__(self, sections: Mapping[str, Any], *, owner: str, seed: int | None) -> None:
        raw = {name: section_mapping(name, sections.get(name)) for name in SECTIONS}
        model = raw["model"]
        self.factory: Callable[..., Any] | None = None
        self.factory_kwargs: dict[str, Any] = {}
        if callable(model.get("name")):
            self.factory = model.pop("name")
            self.factory_kwargs, raw["model"] = model, {}
        raw["train"].setdefault("progress", "off")  # an estimator is quiet unless asked
        if seed is not None:
            raw["train"]["seed"] = seed
        self.record = sections.get("record") not in (None, False)
        self.config: RunConfig = config_from_mapping(raw, owner)
