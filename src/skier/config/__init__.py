"""Typed, validated settings: one schema for the YAML config and the Python keywords.

>>> cfg = RunConfig.model_validate({"optim": {"name": "sgd", "lr": 0.1}})
>>> cfg.optim.lr, cfg.train.epochs
(0.1, 20)

Loading reports every problem at once, with "did you mean" for misspelt keys::

    load_config("run.yaml", overrides=["optim.lr=0.01", "train.epochs=5"])

The package is cut by what the settings are for: ``run`` (the sections of a training run),
``diagnostics`` (LR range test, landscapes, sharpness), ``loading`` (YAML, ``--set``), ``base``
(strict sections and error messages).
"""

from skier.config.base import Section, validate_model
from skier.config.diagnostics import (
    ConnectConfig,
    LandscapeConfig,
    LRFindConfig,
    SharpnessConfig,
)
from skier.config.loading import (
    apply_overrides,
    config_from_mapping,
    config_to_yaml,
    demo_config,
    load_config,
    read_config_mapping,
    read_yaml_mapping,
)
from skier.config.run import (
    CheckpointConfig,
    DataConfig,
    DiagnosticsConfig,
    EarlyStoppingConfig,
    InitConfig,
    ModelConfig,
    OptimConfig,
    RecordConfig,
    RegularizationConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
)
from skier.config.search import (
    CrossValidationConfig,
    SearchSpace,
    TuneConfig,
    load_space,
    parse_space,
)

__all__ = [
    "CheckpointConfig",
    "ConnectConfig",
    "CrossValidationConfig",
    "DataConfig",
    "DiagnosticsConfig",
    "EarlyStoppingConfig",
    "InitConfig",
    "LRFindConfig",
    "LandscapeConfig",
    "ModelConfig",
    "OptimConfig",
    "RecordConfig",
    "RegularizationConfig",
    "RunConfig",
    "ScheduleConfig",
    "SearchSpace",
    "Section",
    "SharpnessConfig",
    "TrainConfig",
    "TuneConfig",
    "apply_overrides",
    "config_from_mapping",
    "config_to_yaml",
    "demo_config",
    "load_config",
    "load_space",
    "parse_space",
    "read_config_mapping",
    "read_yaml_mapping",
    "validate_model",
]
