"""Typed, validated settings: one schema for the YAML config and the Python keywords.

>>> cfg = RunConfig.model_validate({"optim": {"name": "sgd", "lr": 0.1}})
>>> cfg.optim.lr, cfg.train.epochs
(0.1, 20)

Loading reports every problem at once, with "did you mean" for misspelt keys::

    load_config("run.yaml", overrides=["optim.lr=0.01", "train.epochs=5"])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skier.errors import ConfigError, did_you_mean

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "DiagnosticsConfig",
    "EarlyStoppingConfig",
    "InitConfig",
    "ModelConfig",
    "OptimConfig",
    "RecordConfig",
    "RegularizationConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_mapping",
    "config_to_yaml",
    "demo_config",
    "load_config",
]

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where the data comes from and how it is split and preprocessed."""

    name: Literal["digits", "synthetic", "csv", "npz", "idx"] = "digits"
    path: str | None = Field(None, description="csv / npz file, or the IDX images file")
    labels_path: str | None = Field(None, description="IDX labels file (idx only)")
    target: str | None = Field(None, description="target column (csv) or array key (npz: 'y')")
    features_key: str = Field("x", description="npz array key of the inputs")
    numeric_columns: list[str] | None = Field(None, description="csv: declared, else detected")
    categorical_columns: list[str] | None = Field(None, description="csv: declared, else detected")
    missing: Literal["error", "drop", "impute"] = "error"
    task: Literal["auto", "classification", "regression"] = "auto"
    as_images: bool = Field(False, description="digits/idx: keep the N x 1 x H x W image shape")
    standardize: bool = True
    val_fraction: Fraction = 0.2
    test_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    seed: int = 0
    # synthetic teacher network
    samples: PositiveInt = 10_000
    features: PositiveInt = 20
    classes: Annotated[int, Field(ge=2)] = 10
    targets: PositiveInt = 1
    teacher_hidden: PositiveInt = 32
    noise: Annotated[float, Field(ge=0.0)] = 0.0


class ModelConfig(Section):
    """Which network to build. ``name`` may also be ``package.module:function``."""

    name: str = "mlp"
    hidden_sizes: list[PositiveInt] = Field(default_factory=lambda: [256, 128])
    activation: Literal[
        "relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid", "identity"
    ] = "relu"
    batch_norm: bool = False
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    residual: bool = False
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32])
    kernel_size: PositiveInt = 3
    embedding_sizes: list[PositiveInt] | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict, description="for module:function models")

    @field_validator("name")
    @classmethod
    def _known_or_reference(cls, v: str) -> str:
        if v in ("mlp", "cnn", "tabular") or ":" in v:
            return v
        raise ValueError(
            "must be 'mlp', 'cnn', 'tabular' or a 'module:function' reference"
            + did_you_mean(v, ["mlp", "cnn", "tabular"])
        )


class OptimConfig(Section):
    """Optimizer by name (any ``torch.optim`` class too) and its hyper-parameters."""

    name: str = "adam"
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: Annotated[float, Field(gt=0.0)] = 1e-8
    extra: dict[str, Any] = Field(default_factory=dict, description="other keyword arguments")


class ScheduleConfig(Section):
    """Learning-rate schedule, stepped once per epoch."""

    name: Literal["constant", "step", "exponential", "cosine"] = "constant"
    step_size: PositiveInt = 10
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    min_lr: Annotated[float, Field(ge=0.0)] = 0.0
    warmup_epochs: Annotated[int, Field(ge=0)] = 0


class TrainConfig(Section):
    """The training loop."""

    epochs: PositiveInt = 20
    batch_size: PositiveInt | Literal["full"] = 128
    drop_last: bool = False
    shuffle: bool = True
    balanced: bool = Field(False, description="class-balanced mini-batches")
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    reduction: Literal["mean", "sum"] = "mean"
    grad_clip: Annotated[float, Field(gt=0.0)] | None = None
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    amp: bool = Field(False, description="mixed precision (CUDA only)")
    val_every: PositiveInt = 1
    exact_train_error: bool = Field(False, description="a full pass for train loss/error")
    progress: Literal["auto", "on", "off"] = "auto"
    stop_on_non_finite: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return v


class EarlyStoppingConfig(Section):
    """Stop when the monitored validation metric stops improving."""

    enabled: bool = False
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: Annotated[int, Field(ge=1)] = 10
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    restore_best: bool = True
    criterion: Literal["patience", "up", "generalization_loss"] = "patience"
    strips: PositiveInt = Field(3, description="'up': successive rises that stop training")
    threshold: Annotated[float, Field(gt=0.0)] = Field(
        5.0, description="'generalization_loss': percent above the best that stops training"
    )


class CheckpointConfig(Section):
    """Checkpoints in ``RUN_DIR/checkpoints``: ``last.pt`` and ``best.pt``."""

    enabled: bool = True
    every: PositiveInt = 1
    keep_best: bool = True
    monitor: str = "auto"


class RecordConfig(Section):
    """Where runs are written: a directory per run and a row in the store."""

    dir: str = "runs"
    store: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///DIR/skier.db")
    name: str | None = None
    plots: bool = True
    report: bool = True


class InitConfig(Section):
    """How the model's weights start (applied after the model is built, before training)."""

    scheme: str = Field("default", description="'default' keeps each layer's own init")


class RegularizationConfig(Section):
    """Explicit penalty terms, added to the data loss and logged apart from it."""

    l1: Annotated[float, Field(ge=0.0)] = 0.0
    l2: Annotated[float, Field(ge=0.0)] = 0.0
    penalize: Literal["weights", "all"] = Field(
        "weights", description="'weights': no penalty on biases and normalization layers"
    )


class DiagnosticsConfig(Section):
    """Optional measurements during training (off by default, no cost when off)."""

    gradient_flow_every: Annotated[int, Field(ge=0)] = Field(
        0, description="record per-layer gradient norms every N steps (0: off)"
    )


class RunConfig(Section):
    """A whole run: ``skier train CONFIG`` reads one of these from YAML."""

    data: DataConfig = Field(default_factory=lambda: DataConfig())
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig())
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig())
    init: InitConfig = Field(default_factory=lambda: InitConfig())
    train: TrainConfig = Field(default_factory=lambda: TrainConfig())
    regularization: RegularizationConfig = Field(default_factory=lambda: RegularizationConfig())
    diagnostics: DiagnosticsConfig = Field(default_factory=lambda: DiagnosticsConfig())
    early_stopping: EarlyStoppingConfig = Field(default_factory=lambda: EarlyStoppingConfig())
    checkpoint: CheckpointConfig = Field(default_factory=lambda: CheckpointConfig())
    record: RecordConfig = Field(default_factory=lambda: RecordConfig())


# --- loading ------------------------------------------------------------------------------------


def _fields_at(loc: Sequence[int | str]) -> list[str]:
    """Valid keys of the section that ``loc`` points into (for "did you mean")."""
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        ann = info.annotation if info is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _describe(err: Mapping[str, Any], source: str) -> str:
    # Drop pydantic's union-branch labels ("constrained-int", "literal['full']") from the path.
    loc = [str(p) for p in err["loc"] if not any(c in str(p) for c in "-[(")]
    field = ".".join(loc) or "config"
    where = f"{source}: " if source else ""
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        valid = _fields_at(err["loc"])
        hint = did_you_mean(loc[-1], valid) or (
            f" Valid keys: {', '.join(valid)}." if valid else ""
        )
        return f"{where}{field} is not a known setting.{hint}"
    if kind == "missing":
        return f"{where}{field} is required."
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.startswith(("greater", "less")):
        msg = msg.replace("Input should be", "must be")
    elif msg.startswith("Input should be"):
        msg = "must be" + msg.removeprefix("Input should be")
    elif not msg.startswith("must"):
        msg = f"must be valid: {msg}"
    return f"{where}{field} {msg}; got {value!r}."


def _merge_problems(problems: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out


def config_from_mapping(data: Mapping[str, Any] | None, source: str = "") -> RunConfig:
    """Validate a plain mapping; raise :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source or 'config'} must be a mapping of sections; got {data!r}.")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A union (batch_size: int | "full") reports one error per branch: keep the first.
        seen: dict[str, str] = {}
        for err in errors:
            key = ".".join(str(p) for p in err["loc"] if not any(c in str(p) for c in "-[("))
            seen.setdefault(key, _describe(err, source))
        raise ConfigError(_merge_problems(seen.values())) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set must be section.key=value; got {item!r}.")
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


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (``None`` = all defaults), apply overrides and validate."""
    data: Any = {}
    source = ""
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist.")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{source} is not valid YAML{at}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a mapping of sections; got {data!r}.")
    data = apply_overrides(data, overrides)
    return config_from_mapping(data, source)


def config_to_yaml(config: RunConfig) -> str:
    """The fully resolved config as YAML (what ``skier config show`` prints)."""
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
