"""The sections of a run's config (``skier train CONFIG``).

>>> cfg = RunConfig.model_validate({"optim": {"name": "sgd", "lr": 0.1}})
>>> cfg.optim.lr, cfg.train.epochs
(0.1, 20)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from skier.config.base import Fraction, PositiveInt, Section
from skier.config.diagnostics import LRFindConfig
from skier.config.schedule import ScheduleConfig
from skier.errors import did_you_mean

Positive = Annotated[float, Field(gt=0.0)]

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
]


class DataConfig(Section):
    """Where the data comes from and how it is split and preprocessed."""

    name: Literal["digits", "synthetic", "csv", "npz", "idx", "image_folder", "dataset"] = "digits"
    dataset: str | None = Field(
        None,
        validate_default=True,
        description="name 'dataset': package.module:function returning a torch Dataset, or "
        "{train, val, test} of them (README)",
    )
    dataset_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="name 'dataset': keyword arguments of the function"
    )
    path: str | None = Field(None, description="csv/npz file, IDX images file, image folder")
    labels_path: str | None = Field(None, description="IDX labels file (idx only)")
    target: str | list[str] | None = Field(
        None, description="target column (csv; several 0/1 columns: multi-label) or npz array key"
    )
    features_key: str = Field("x", description="npz array key of the inputs")
    numeric_columns: list[str] | None = Field(None, description="csv: declared, else detected")
    categorical_columns: list[str] | None = Field(None, description="csv: declared, else detected")
    missing: Literal["error", "drop", "impute"] = "error"
    task: Literal["auto", "classification", "regression", "multilabel"] = "auto"
    as_images: bool = Field(False, description="digits/idx: keep the N x 1 x H x W image shape")
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="image_folder: [H, W]"
    )
    channels: Literal[1, 3] | None = Field(
        None, description="image_folder: 1 gray, 3 RGB (None: auto)"
    )
    cache: bool = Field(True, description="image_folder: keep the decoded pixels in a file")
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

    @field_validator("dataset")
    @classmethod
    def _dataset_reference(cls, v: str | None, info: Any) -> str | None:
        name = info.data.get("name")
        if name == "dataset" and v is None:
            raise ValueError(
                "must be set for data.name 'dataset': a 'package.module:function' that returns "
                "a torch Dataset, e.g. 'my_data:make_dataset'"
            )
        if v is not None and name != "dataset":
            raise ValueError(f"must be unset unless data.name is 'dataset'; data.name is {name!r}")
        if v is not None and (":" not in v or v.startswith(":") or v.endswith(":")):
            raise ValueError("must be a 'package.module:function' reference, e.g. 'my_data:make'")
        return v


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
    """Optimizer by name (any ``torch.optim`` class too) and its hyper-parameters.

    Set only the settings the chosen optimizer takes: any other one set to a value other than
    its default is an error (``skier.optim`` checks this). ``None`` means the optimizer's own
    default, where that differs between optimizers. ``lookahead: true`` wraps the optimizer in
    Lookahead (``lookahead_k`` fast steps, then the slow weights move ``lookahead_alpha`` of the
    way). ``sam: rho`` wraps it in sharpness-aware minimization (two forward-backward passes a
    step; see :class:`skier.optim.SAM`). Example::

        optim: {name: rmsprop, lr: 0.001, alpha: 0.9, centered: true, lookahead: true}
    """

    name: str = "adam"
    lr: Annotated[float, Field(gt=0.0)] | Literal["auto"] = Field(
        1e-3, description="'auto': chosen by the LR range test (the lr_find section) first"
    )
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] | None = Field(
        None, description="None: 0.9 for momentum/nesterov, else 0"
    )
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0.0)] | None = Field(
        None, description="None: 0.01 for adamw, else 0"
    )
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="None: torch's default (adam 1e-8, adagrad 1e-10, adadelta 1e-6)"
    )
    amsgrad: bool = Field(False, description="adam/adamw: the max of past squared gradients")
    alpha: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.99, description="rmsprop: smoothing of the squared gradients"
    )
    centered: bool = Field(False, description="rmsprop: divide by the gradient's variance")
    rho: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.9, description="adadelta: smoothing of the squared gradients and updates"
    )
    etas: tuple[Annotated[float, Field(gt=0.0)], Annotated[float, Field(gt=0.0)]] = Field(
        (0.5, 1.2), description="rprop: (decrease, increase) factors of the step sizes"
    )
    step_sizes: tuple[Annotated[float, Field(gt=0.0)], Annotated[float, Field(gt=0.0)]] = Field(
        (1e-6, 50.0), description="rprop: (min, max) step size"
    )
    lr_decay: Annotated[float, Field(ge=0.0)] = Field(0.0, description="adagrad")
    initial_accumulator_value: Annotated[float, Field(ge=0.0)] = Field(0.0, description="adagrad")
    max_iter: PositiveInt = Field(20, description="lbfgs: iterations per step")
    history_size: PositiveInt = Field(100, description="lbfgs: updates kept for the curvature")
    line_search: Literal["strong_wolfe"] | None = Field(None, description="lbfgs")
    lookahead: bool = Field(False, description="wrap the optimizer in Lookahead")
    lookahead_k: PositiveInt = Field(5, description="lookahead: fast steps per slow step")
    lookahead_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.5, description="lookahead: slow weights move this share towards the fast ones"
    )
    sam: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="wrap the optimizer in SAM with this radius rho (e.g. 0.05); null: off"
    )
    sam_adaptive: bool = Field(False, description="sam: adaptive SAM (ASAM), scaled by |w|")
    extra: dict[str, Any] = Field(default_factory=dict, description="other keyword arguments")

    @field_validator("etas")
    @classmethod
    def _etas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < 1.0 < v[1]:
            raise ValueError("must be (decrease, increase) with 0 < decrease < 1 < increase")
        return v

    @field_validator("step_sizes")
    @classmethod
    def _step_sizes(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError("must be (min, max) with min <= max")
        return v


class TrainConfig(Section):
    """The training loop.

    ``accumulate: k`` (gradient accumulation) cuts each optimizer step of ``batch_size × k``
    examples into k micro-batches of ``batch_size`` (an epoch's shorter last step into k as even
    as possible) and weights each one's loss by its share of the step's examples, so the step is
    the one on the whole batch; ``drop_last``, schedules and the step counter are in optimizer
    steps. Batch norm normalizes each micro-batch by its own statistics, so with it the step
    differs from the big batch's.
    """

    epochs: PositiveInt = 20
    batch_size: PositiveInt | Literal["full"] = 128
    accumulate: PositiveInt = Field(
        1,
        description="micro-batches per optimizer step (gradient accumulation): a step sees "
        "batch_size x accumulate examples",
    )
    drop_last: bool = False
    shuffle: bool = True
    num_workers: Annotated[int, Field(ge=0)] = Field(
        0, description="a Dataset given to fit: worker processes that read its examples"
    )
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="a Dataset's batches in pinned memory ('auto': on CUDA)"
    )
    persistent_workers: bool = Field(
        True, description="num_workers > 0: keep the workers between epochs"
    )
    prefetch_factor: PositiveInt | None = Field(
        None, description="num_workers > 0: batches each worker reads ahead (None: torch's 2)"
    )
    sampling: Literal["uniform", "balanced", "informative"] = Field(
        "uniform", description="how mini-batches are drawn (see the README)"
    )
    informative_floor: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.2, description="informative sampling: share of the uniform distribution in the mix"
    )
    loss: str = Field("auto", description="a loss by name, or package.module:function (README)")
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # cross_entropy
    class_weights: list[Annotated[float, Field(ge=0.0)]] | None = None  # cross_entropy, nll
    pos_weight: Positive | list[Positive] | None = None  # binary_cross_entropy: one or per label
    huber_delta: Positive = 1.0  # huber: where quadratic turns linear
    smooth_l1_beta: Positive = 1.0  # smooth_l1: where quadratic turns linear
    metrics: list[str] = Field(default_factory=list, description="more metrics (README)")
    reduction: Literal["mean", "sum"] = "mean"
    grad_clip: Annotated[float, Field(gt=0.0)] | None = None
    grad_clip_mode: Literal["norm", "value"] = Field(
        "norm", description="clip the global gradient norm, or each gradient value"
    )
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    amp: bool | Literal["fp16", "bf16"] = Field(
        False,
        description="mixed precision: true (fp16 + loss scaling on CUDA, bf16 on the CPU), "
        "'fp16' (CUDA only) or 'bf16'",
    )
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = Field(
        False,
        description="torch.compile the model that trains: true (mode 'default'), "
        "'reduce-overhead' or 'max-autotune'; off by default (bench/RESULTS.md: on the CPU "
        "it costs seconds of compiling and gains little on small MLPs)",
    )
    val_every: PositiveInt = 1
    exact_train_error: bool = Field(False, description="a full pass for train loss/error")
    progress: Literal["auto", "on", "off"] = "auto"
    stop_on_non_finite: bool = True
    # Weight averaging (README "Flat minima on purpose"): one average per run, EMA or SWA.
    ema: Fraction | None = Field(
        None, description="decay of an exponential moving average of the weights, e.g. 0.999"
    )
    ema_warmup: bool = Field(True, description="ema: decay min(ema, (1+t)/(10+t)) at update t")
    swa_start: PositiveInt | Fraction | None = Field(
        None,
        description="stochastic weight averaging: an equal average once per epoch from this "
        "epoch, or from this fraction of train.epochs (0.75: the last quarter)",
    )
    swa_lr: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="swa: the lr SWALR anneals to after swa_start (unset: the schedule's)"
    )
    swa_anneal_epochs: Annotated[int, Field(ge=0)] = Field(
        0, description="swa: epochs from the lr to swa_lr (0: at once)"
    )
    swa_anneal_strategy: Literal["cos", "linear"] = "cos"
    average_select: Literal["raw", "average"] = Field(
        "raw", description="the weights fit returns and best is judged on: raw or the average"
    )

    @field_validator("swa_start")
    @classmethod
    def _one_average(cls, v: float | None, info: Any) -> float | None:
        if v is not None and info.data.get("ema") is not None:
            raise ValueError("must be unset when train.ema is set (one average per run)")
        epochs = info.data.get("epochs")
        if v is not None and isinstance(epochs, int) and v > epochs:
            raise ValueError(f"must be at most train.epochs ({epochs})")
        return v

    @field_validator("swa_lr")
    @classmethod
    def _swa_lr_needs_start(cls, v: float | None, info: Any) -> float | None:
        if v is not None and info.data.get("swa_start") is None:
            raise ValueError("must be unset unless train.swa_start is set, e.g. swa_start: 15")
        return v

    @field_validator("average_select")
    @classmethod
    def _average_exists(cls, v: str, info: Any) -> str:
        if v == "average" and info.data.get("ema") is None and info.data.get("swa_start") is None:
            raise ValueError("must be 'raw' unless train.ema or train.swa_start is set")
        return v

    @property
    def swa_start_epoch(self) -> int | None:
        """The first epoch SWA averages: ``swa_start``, or ``floor(f * epochs) + 1`` for a
        fraction ``f``.

        >>> TrainConfig(epochs=20, swa_start=0.75).swa_start_epoch
        16
        """
        if self.swa_start is None or isinstance(self.swa_start, int):
            return self.swa_start
        return int(self.swa_start * self.epochs) + 1

    @field_validator("amp", mode="before")
    @classmethod
    def _amp(cls, v: Any) -> Any:
        if isinstance(v, bool) or v in ("fp16", "bf16"):
            return v
        raise ValueError("must be true, false, 'fp16' or 'bf16'")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile(cls, v: Any) -> Any:
        if isinstance(v, bool) or v in ("default", "reduce-overhead", "max-autotune"):
            return v
        raise ValueError("must be true, false, 'default', 'reduce-overhead' or 'max-autotune'")

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
    """Checkpoints in ``RUN_DIR/checkpoints``: ``last.pt`` and ``best.pt`` (the names
    ``skier.train.Checkpoint`` owns)."""

    enabled: bool = True
    every: PositiveInt = 1
    every_s: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = Field(
        10.0,
        description="write the checkpoints at most every this many seconds (in between the "
        "state is held in memory and written at the end, on failure or Ctrl-C); a SIGKILL "
        "loses at most this plus one epoch; 0 = every epoch",
    )
    keep_best: bool = True
    monitor: str = "auto"


class RecordConfig(Section):
    """Where runs are written: a directory per run and a row in the store."""

    dir: str = "runs"
    store: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///DIR/skier.db")
    name: str | None = None
    plots: bool = True
    report: bool = True
    flush_every_s: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = Field(
        1.0,
        description="write the epochs to the store and metrics.csv at most every this many "
        "seconds while training (always at the end and on failure or Ctrl-C); 0 = every epoch",
    )
    loggers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="trackers that get a copy of the run: tensorboard (DIR/RUN/tensorboard), "
        "mlflow (needs skier[tensorboard] / skier[mlflow])",
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI (CLI), else a SQLite "
        "store, mlflow.db in record.dir",
    )
    mlflow_experiment: str = Field("skier", description="MLflow experiment the runs go in")
    mlflow_log_checkpoint: bool = Field(
        False, description="log the best checkpoint to MLflow as an artifact"
    )


class InitConfig(Section):
    """How the model's weights start (applied after the model is built, before training).

    ``scheme`` sets the weights of every Linear and Conv layer and ``bias`` their biases;
    embeddings, normalization layers and any other parameter keep their own PyTorch init.
    ``pretrained`` then loads the checkpoint tensors whose names and shapes match, over the
    scheme. See :func:`skier.models.initialize`.
    """

    scheme: str = Field(
        "default",
        description="'default' keeps each layer's own init; uniform, normal, xavier_uniform, "
        "xavier_normal, kaiming_uniform, kaiming_normal, orthogonal, zeros, constant; or "
        "'package.module:function', called as function(weight) in place",
    )
    a: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = Field(
        0.05, description="uniform: weights ~ U(-a, a)"
    )
    std: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = Field(
        0.01, description="normal: weights ~ N(0, std²)"
    )
    gain: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = Field(
        1.0, description="xavier_uniform, xavier_normal, orthogonal: scale factor"
    )
    mode: Literal["fan_in", "fan_out"] = Field(
        "fan_in",
        description="kaiming_*: keep the variance of the forward (fan_in) or backward pass",
    )
    nonlinearity: Literal["relu", "leaky_relu", "tanh", "sigmoid", "selu", "linear"] = Field(
        "relu", description="kaiming_*: the activation after the layer (leaky_relu: slope 0.01)"
    )
    value: Annotated[float, Field(allow_inf_nan=False)] = Field(
        0.01, description="constant: every weight (shows the symmetry problem)"
    )
    bias: Literal["auto", "default", "zeros", "constant", "normal"] = Field(
        "auto",
        description="biases of Linear/Conv layers; 'auto': 'default' when scheme is "
        "'default', else 'zeros'",
    )
    bias_value: Annotated[float, Field(allow_inf_nan=False)] = Field(
        0.0, description="bias 'constant': every bias"
    )
    bias_std: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = Field(
        0.01, description="bias 'normal': biases ~ N(0, bias_std²)"
    )
    pretrained: str | None = Field(
        None,
        description="skier checkpoint or state-dict file: tensors whose names and shapes match "
        "are loaded; relative to the config file's folder",
    )

    @staticmethod
    def schemes() -> tuple[str, ...]:
        """The built-in scheme names (a ``package.module:function`` reference is valid too)."""
        return (
            "default",
            "uniform",
            "normal",
            "xavier_uniform",
            "xavier_normal",
            "kaiming_uniform",
            "kaiming_normal",
            "orthogonal",
            "zeros",
            "constant",
        )

    @field_validator("scheme")
    @classmethod
    def _known_scheme_or_reference(cls, v: str) -> str:
        known = cls.schemes()
        if v in known:
            return v
        module, sep, attr = v.partition(":")
        if sep and all(p.isidentifier() for p in [*module.split("."), *attr.split(".")]):
            return v
        # Keras' names for the same schemes, which difflib would match to 'normal'/'uniform'.
        aliases = {"he": "kaiming", "glorot": "xavier"}
        prefix, _, rest = v.partition("_")
        alias = f"{aliases[prefix]}_{rest}" if prefix in aliases else ""
        hint = f" Did you mean {alias!r}?" if alias in known else did_you_mean(v, known)
        raise ValueError(
            f"must be one of {', '.join(known)}, or a 'package.module:function' reference"
            + (f".{hint}" if hint else "")
        )

    @field_validator("pretrained")
    @classmethod
    def _pretrained_path(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must be a file path (or null for none)")
        return v


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
        0, description="record per-layer gradient norms and update ratios every N steps (0: off)"
    )
    gradient_flow_layers: Literal["weights", "all"] = Field(
        "weights", description="'weights': weight matrices and kernels only; 'all': biases too"
    )
    sharpness_every: PositiveInt | None = Field(
        None,
        description="record λ1 of the training loss (against 2/lr) every N steps (null: off)",
    )
    sharpness_subset: PositiveInt | None = Field(
        256, description="λ1 on a fixed seeded subset of this many training examples (null: all)"
    )
    sharpness_iterations: Annotated[int, Field(ge=2)] = Field(
        20, description="at most this many Hessian-vector products for the first (cold) record"
    )
    sharpness_warm_iterations: PositiveInt = Field(
        3,
        description="at most this many products per later record, warm-started from the last "
        "(the cost bound; a capped record is marked sharpness_converged 0)",
    )
    sharpness_tolerance: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        1e-3, description="a record stops when λ1 changes by less than this (relative)"
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
    # The LR range test's settings: used by optim.lr: auto and by `skier lr-find`.
    lr_find: LRFindConfig = Field(default_factory=lambda: LRFindConfig())
