"""Settings of model selection: cross-validation, tuning, and the search-space file.

A search space is a YAML mapping from any config key to how to draw it::

    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    model.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
    train.batch_size: {type: int, low: 32, high: 256, log: true}
    model.hidden_sizes: {type: categorical, choices: [[128], [256, 128]]}

Keys may also be nested (``optim: {lr: {type: float, ...}}``). Every problem is reported at once,
one line each, naming the file and the key::

    >>> space = parse_space({"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}})
    >>> space.names, space["optim.lr"].log
    (['optim.lr'], True)
    >>> parse_space({"optim.lrr": {"type": "float", "low": 0.1, "high": 1}}, "s.yaml")
    Traceback (most recent call last):
    ...
    skier.errors.ConfigError: s.yaml: optim.lrr is not a known setting. Did you mean 'lr'?
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from skier.config.base import Fraction, PositiveInt, Section
from skier.config.loading import config_from_mapping, read_yaml_mapping
from skier.config.run import RunConfig
from skier.errors import ConfigError, did_you_mean

__all__ = [
    "CrossValidationConfig",
    "ParamSpec",
    "SearchSpace",
    "TuneConfig",
    "config_key_problem",
    "load_space",
    "parse_seeds",
    "parse_space",
    "set_config_values",
]

PARAM_TYPES = ("float", "int", "categorical")
_SPEC_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}


def parse_seeds(value: str | Sequence[Any], field: str = "--seeds") -> list[int]:
    """The seeds of a group of runs: ``"0,1,2"`` or a list of integers, at least one, none twice.

    >>> parse_seeds("0, 1,2")
    [0, 1, 2]
    >>> parse_seeds("0,x")
    Traceback (most recent call last):
    ...
    skier.errors.ConfigError: --seeds must be integers separated by commas, e.g. 0,1,2; got '0,x'.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    seeds: list[int] = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if isinstance(text, bool) or not isinstance(text, int | str):
            seeds = []
            break
        try:
            seeds.append(int(text))
        except ValueError:
            seeds = []
            break
    if not seeds:
        raise ConfigError(
            f"{field} must be integers separated by commas, e.g. 0,1,2; got {value!r}."
        )
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"{field} must name each seed once; got {value!r} ({repeated[0]} twice). A repeated "
            "seed trains the same run again."
        )
    return seeds


def _each_once(seeds: list[int] | None) -> list[int] | None:
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise ValueError("each seed must appear once")
    return seeds


class CrossValidationConfig(Section):
    """How ``skier cv`` splits the data that is not the test split.

    ``folds: 1`` is a hold-out split (``holdout_fraction`` of the data for validation);
    ``folds >= 2`` is k-fold. Classification labels are stratified unless ``stratify: false``.
    ``repeats`` re-draws the folds with new shuffles (repeated k-fold / repeated hold-out).
    ``refit: true`` trains once more on all of it for the median of the folds' chosen epochs.
    ``seeds`` trains every fold once per ``train.seed`` given, so the mean (and std) is over
    folds and seeds: a configuration scored by its mean over seeds too.

    >>> CrossValidationConfig(folds=1).holdout_fraction
    0.2
    """

    folds: PositiveInt = Field(5, description="1: hold-out; k >= 2: k-fold")
    repeats: PositiveInt = Field(1, description="times the folds are re-drawn")
    holdout_fraction: Fraction = Field(0.2, description="validation share of a hold-out split")
    stratify: bool = Field(True, description="keep class proportions in every fold")
    seed: int | None = Field(None, description="shuffle seed of the folds (default: data.seed)")
    workers: PositiveInt | None = Field(None, description="fold processes (default: cores)")
    metric: str = Field("val_loss", description="the metric summarized over the folds")
    refit: bool = Field(False, description="train on all non-test data for the median epochs")
    seeds: Annotated[list[int], Field(min_length=1)] | None = Field(
        None, description="train every fold once per train.seed given; the mean is over all"
    )

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, seeds: list[int] | None) -> list[int] | None:
        return _each_once(seeds)


class TuneConfig(Section):
    """How ``skier tune`` searches.

    ``objective`` is a validation metric (its best value in the run) or ``cv_mean`` (the mean
    over ``folds`` cross-validation folds of ``metric``). ``seeds`` scores a trial by its mean
    over those ``train.seed`` values (a group of runs over seeds per trial; with ``cv_mean``,
    every fold once per seed). ``trials`` is how many trials this
    command runs (default: the grid's size for ``grid``, else 20), shared among its ``workers``.

    >>> TuneConfig(method="grid").prune
    'auto'
    """

    method: Literal["grid", "random", "bayes"] = "bayes"
    sampler: Literal["auto", "tpe", "gp"] = Field(
        "auto", description="bayes: tpe (default) or gp (Gaussian process)"
    )
    trials: PositiveInt | None = Field(None, description="trials this command runs")
    workers: PositiveInt | None = Field(None, description="worker processes (default: cores)")
    storage: str | None = Field(
        None,
        description="postgresql://..., sqlite:///..., redis://... or a journal file path; "
        "default: RUN_DIR/study.journal",
    )
    study: str | None = Field(None, description="study name (default: the run id)")
    prune: Literal["auto", "median", "hyperband", "none"] = Field(
        "auto", description="'auto': median for random/bayes, none for grid"
    )
    prune_startup: Annotated[int, Field(ge=0)] = Field(
        5, description="median: finished trials before any trial is pruned"
    )
    objective: str = Field("val_loss", description="a val_ metric, or cv_mean")
    metric: str = Field("val_loss", description="cv_mean: the metric averaged over the folds")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="'auto': maximize accuracies, minimize the rest"
    )
    folds: Annotated[int, Field(ge=2)] = Field(3, description="cv_mean: folds per trial")
    seeds: Annotated[list[int], Field(min_length=1)] | None = Field(
        None, description="score each trial by its mean over these train.seed values"
    )
    seed: int = Field(0, description="sampler seed (grid: the same in every worker)")
    timeout_s: Annotated[float, Field(gt=0)] | None = Field(
        None, description="stop starting trials after this many seconds"
    )
    heartbeat_s: PositiveInt = Field(5, description="seconds between a running trial's beats")
    grace_s: PositiveInt | None = Field(
        None, description="a running trial silent this long is failed (default 4 x heartbeat)"
    )
    max_retry: Annotated[int, Field(ge=0)] = Field(
        1, description="times a trial of a dead worker is retried"
    )
    train_best: bool = Field(False, description="train the best config once the search ends")

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, seeds: list[int] | None) -> list[int] | None:
        return _each_once(seeds)

    @property
    def grace_period_s(self) -> int:
        return self.grace_s if self.grace_s is not None else 4 * self.heartbeat_s


@dataclass(frozen=True)
class ParamSpec:
    """One searched setting: ``name`` is the dotted config key.

    Categorical choices that are not plain scalars (lists such as ``[256, 128]``) are handed to
    Optuna as their JSON text (``labels``) and turned back into values by :meth:`value_of`.
    """

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def labels(self) -> tuple[Any, ...]:
        """The categorical choices as Optuna stores them (None, bool, int, float or str)."""
        return tuple(_label(c) for c in self.choices)

    def value_of(self, sampled: Any) -> Any:
        """The config value for what the sampler returned (a label for categoricals)."""
        if self.type == "categorical":
            return self.choices[self.labels.index(sampled)]
        if self.type == "int":
            return int(sampled)
        return float(sampled)

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _label(choice: Any) -> Any:
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice)


@dataclass(frozen=True)
class SearchSpace:
    """The searched settings, in file order.

    >>> space = parse_space({"model.dropout": {"type": "float", "low": 0, "high": 0.5}})
    >>> space["model.dropout"].high
    0.5
    """

    params: tuple[ParamSpec, ...]
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}


def config_key_problem(key: str, root: type[BaseModel] = RunConfig) -> str | None:
    """Why ``key`` (``"optim.lr"``) is not a setting of ``root``, or ``None`` when it is.

    Keys inside free-form mappings (``optim.extra.foo``, ``model.kwargs.width``) are accepted.

    >>> config_key_problem("optim.lrr")
    "optim.lrr is not a known setting. Did you mean 'lr'?"
    """
    parts = key.split(".")
    model: type[BaseModel] = root
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            hint = did_you_mean(part, list(fields)) or f" Valid keys: {', '.join(fields)}."
            return f"{key} is not a known setting.{hint}"
        annotation = fields[part].annotation
        last = i == len(parts) - 1
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if last:
                return f"{key} is a section, not a setting; name one of its keys, e.g. {key}." + (
                    next(iter(annotation.model_fields), "")
                )
            model = annotation
            continue
        if last:
            return None
        origin = getattr(annotation, "__origin__", None)
        if origin is dict or annotation is dict:
            return None  # free-form mapping (model.kwargs, optim.extra)
        return f"{key} goes below {'.'.join(parts[: i + 1])}, which is a setting, not a section."
    return None


def set_config_values(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (a config mapping) with each dotted key of ``values`` set; nothing validated.

    >>> set_config_values({"optim": {"lr": 0.1}}, {"optim.lr": 0.01, "train.epochs": 3})
    {'optim': {'lr': 0.01}, 'train': {'epochs': 3}}
    """
    out = json.loads(json.dumps(dict(base)))  # a deep copy of plain data
    node: dict[str, Any]
    for key, value in values.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spec_problems(key: str, spec: Mapping[str, Any], where: str) -> list[str]:
    """Shape problems of one entry: type, fields, bounds."""
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        hint = did_you_mean(str(kind), PARAM_TYPES) if isinstance(kind, str) else ""
        return [f"{where}{key}.type must be one of float, int, categorical; got {kind!r}.{hint}"]
    problems = []
    allowed = _SPEC_KEYS[kind]
    suggested = set()
    for extra in (k for k in spec if k not in allowed):
        hint = did_you_mean(str(extra), allowed)
        suggested.add(hint.removeprefix(" Did you mean '").removesuffix("'?"))
        hint = hint or f" Valid keys for {kind}: {', '.join(allowed)}."
        problems.append(f"{where}{key}.{extra} is not a known field of a {kind} parameter.{hint}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(
                f"{where}{key}.choices must be a non-empty list; got {choices!r}. "
                "For example choices: [32, 64, 128]."
            )
        elif len({json.dumps(_label(c)) for c in choices}) != len(choices):
            problems.append(f"{where}{key}.choices must not repeat a value; got {choices!r}.")
        return problems
    low, high, log, step = (
        spec.get("low"),
        spec.get("high"),
        spec.get("log", False),
        spec.get("step"),
    )
    for name, value in (("low", low), ("high", high)):
        if value is None:
            if name not in suggested:  # a misspelt "hihg" already says "did you mean 'high'"
                problems.append(f"{where}{key}.{name} is required for a {kind} parameter.")
        elif not _number(value) or not math.isfinite(value):
            problems.append(f"{where}{key}.{name} must be a finite number; got {value!r}.")
        elif kind == "int" and float(value) != int(value):
            problems.append(f"{where}{key}.{name} must be an integer for type int; got {value!r}.")
    if not isinstance(log, bool):
        problems.append(f"{where}{key}.log must be true or false; got {log!r}.")
    if step is not None and (not _number(step) or not step > 0):
        problems.append(f"{where}{key}.step must be a number > 0; got {step!r}.")
    if problems or low is None or high is None:
        return problems
    if low > high:
        problems.append(
            f"{where}{key} must have low <= high; got low={low!r}, high={high!r}. Swap them."
        )
    if log and low <= 0:
        problems.append(
            f"{where}{key}.low must be > 0 with log: true (a log scale has no 0 or negatives); "
            f"got {low!r}. Raise low or drop log."
        )
    if log and step is not None:
        problems.append(
            f"{where}{key} cannot have both log: true and a step; got step={step!r}. Drop one."
        )
    if kind == "int" and step is not None and float(step) != int(step):
        problems.append(f"{where}{key}.step must be an integer for type int; got {step!r}.")
    return problems


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys; a mapping with a ``type`` key is one parameter."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "type" not in value and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _candidate_values(spec: ParamSpec) -> list[Any]:
    if spec.type == "categorical":
        return list(spec.choices)
    if spec.type == "int":
        return [int(spec.low or 0), int(spec.high or 0)]
    return [float(spec.low or 0.0), float(spec.high or 0.0)]


def _value_problems(space: Sequence[ParamSpec], base: RunConfig, where: str) -> list[str]:
    """Each candidate value (bounds, choices) set into ``base`` must give a valid config."""
    problems = []
    start = base.model_dump(mode="json")
    for spec in space:
        for value in _candidate_values(spec):
            try:
                config_from_mapping(set_config_values(start, {spec.name: value}))
            except ConfigError as exc:
                mine = [p for p in exc.problems if p.startswith(spec.name)] or exc.problems
                problems.append(
                    f"{where}{spec.name}: the value {value!r} is not valid for this setting: "
                    + mine[0]
                )
                break
    return problems


def parse_space(
    data: Mapping[str, Any] | None, source: str = "", *, base: RunConfig | None = None
) -> SearchSpace:
    """Validate a search-space mapping; :class:`ConfigError` lists every problem, one a line.

    With ``base``, every bound and choice is also checked against the setting it goes into
    (``train.batch_size`` low 0 is an error: the batch size must be at least 1).
    """
    where = f"{source}: " if source else ""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(
            f"{source or 'search space'} must be a non-empty mapping of config keys to "
            f"parameters; got {data!r}. For example optim.lr: {{type: float, low: 1e-4, "
            "high: 0.1, log: true}."
        )
    problems: list[str] = []
    specs: list[ParamSpec] = []
    for key, spec in _flatten(data).items():
        key_problem = config_key_problem(key)
        if key_problem is not None:
            problems.append(where + key_problem)
            continue
        if not isinstance(spec, Mapping):
            problems.append(
                f"{where}{key} must be a mapping such as {{type: float, low: 0.0, high: 1.0}}; "
                f"got {spec!r}."
            )
            continue
        found = _spec_problems(key, spec, where)
        if found:
            problems.extend(found)
            continue
        if spec["type"] == "categorical":
            specs.append(ParamSpec(key, "categorical", choices=tuple(spec["choices"])))
        else:
            kind = spec["type"]
            step = spec.get("step")
            specs.append(
                ParamSpec(
                    key,
                    kind,
                    low=int(spec["low"]) if kind == "int" else float(spec["low"]),
                    high=int(spec["high"]) if kind == "int" else float(spec["high"]),
                    log=bool(spec.get("log", False)),
                    step=None if step is None else (int(step) if kind == "int" else float(step)),
                )
            )
    if not problems and base is not None:
        problems.extend(_value_problems(specs, base, where))
    if problems:
        raise ConfigError(problems)
    return SearchSpace(tuple(specs), source, dict(data))


def load_space(path: str | Path, *, base: RunConfig | None = None) -> SearchSpace:
    """Read and validate a search-space YAML file (see :func:`parse_space`)."""
    data = read_yaml_mapping(path, what="search space file")
    return parse_space(data, str(path), base=base)
