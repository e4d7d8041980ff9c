"""Everything ``fit`` needs, resolved and validated before anything is changed.

``prepare`` checks the settings, the data, the model's output shape and the callbacks' monitored
keys, and reports every problem at once. Only then does ``fit`` move the model, seed the RNGs or
touch a file.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset

from skier._live import display_mode
from skier.config import (
    OptimConfig,
    RegularizationConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_mapping,
)
from skier.data.load import as_split
from skier.data.types import DataBundle, Split
from skier.errors import ConfigError, DataError, did_you_mean, problem
from skier.models import check_output_shape
from skier.optim import build_optimizer, has_line_search
from skier.optim.schedules import Schedule, build_schedule, resolve_interval
from skier.train.averaging import (
    WeightAverage,
    averaging_problems,
    has_batch_norm,
    input_batches,
)
from skier.train.batches import (
    BatchSource,
    InformativeBatches,
    TensorBatches,
    accumulate_problems,
    step_batch_size,
    steps_per_epoch,
)
from skier.train.callbacks.base import Callback
from skier.train.callbacks.live import LiveDisplay
from skier.train.callbacks.progress import ProgressBar
from skier.train.compiled import compile_problems, uncompiled
from skier.train.device import amp_dtype, amp_problems, resolve_device
from skier.train.group import ProcessGroup
from skier.train.loader import LoaderBatches, loader_problems
from skier.train.losses import (
    Loss,
    LossFn,
    loss_options,
    loss_task,
    model_output_size,
    resolve_loss,
)
from skier.train.regularize import Penalty
from skier.train.scoring import Scoring, is_metric_object
from skier.train.step import OptimizerStep, step_problems

__all__ = ["DataLike", "Setup", "averaged_tag", "loop_keys", "monitor_problems", "prepare"]

DataLike = Split | DataBundle | tuple[Any, Any] | Dataset[Any] | DataLoader[Any]

_OPTIM_KEYS = set(OptimConfig.model_fields) - {"name"}
_TRAIN_KEYS = set(TrainConfig.model_fields)
_REG_KEYS = set(RegularizationConfig.model_fields)


def _settings(
    settings: Mapping[str, Any], optimizer: Any, schedule: Any
) -> tuple[TrainConfig, OptimConfig, ScheduleConfig, RegularizationConfig]:
    """Split ``fit``'s keywords into the config sections, validated by the same schema."""
    known = _TRAIN_KEYS | _OPTIM_KEYS | _REG_KEYS
    unknown = [k for k in settings if k not in known]
    valid = sorted(known | {"optimizer", "schedule", "callbacks"})
    if unknown:
        raise ConfigError(
            [f"fit() got an unknown setting {k!r}.{did_you_mean(k, valid)}" for k in unknown]
        )
    raw: dict[str, Any] = {
        "train": {k: v for k, v in settings.items() if k in _TRAIN_KEYS},
        "optim": {k: v for k, v in settings.items() if k in _OPTIM_KEYS},
        "regularization": {k: v for k, v in settings.items() if k in _REG_KEYS},
    }
    if isinstance(optimizer, str):
        raw["optim"]["name"] = optimizer
    if isinstance(schedule, str):
        raw["schedule"] = {"name": schedule}
    elif isinstance(schedule, Mapping):
        raw["schedule"] = dict(schedule)
    cfg = config_from_mapping(raw, "fit()")
    sched = schedule if isinstance(schedule, ScheduleConfig) else cfg.schedule
    return cfg.train, cfg.optim, sched, cfg.regularization


_ACCEPTS = "a Split, a DataBundle, an (inputs, targets) pair, a torch Dataset or a DataLoader"


def _as_split(data: Any, name: str) -> Split | DataLoader[Any] | Dataset[Any] | None:
    """In-memory data through :func:`skier.data.as_split`; a Dataset or DataLoader as it is."""
    if data is None or isinstance(data, DataLoader | Dataset):
        return data
    return as_split(data, name=name, accepts=_ACCEPTS)


@dataclass
class Setup:
    """The resolved training set-up; built by :func:`prepare`."""

    model: torch.nn.Module
    train_cfg: TrainConfig
    device: torch.device
    task: str
    output_size: int
    train: Split | DataLoader[Any] | Dataset[Any]
    val: Split | None
    test: Split | None
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None
    loss_fn: Loss
    example_loss: LossFn | None  # per-example losses (informative sampling); None: a callable's
    callbacks: list[Callback]
    available_keys: frozenset[str]
    step: OptimizerStep
    group: ProcessGroup
    reduction: str  # of the training loss on this process (a distributed rank sums its share)
    shuffle_generator: torch.Generator = field(default_factory=torch.Generator)
    batches: BatchSource | None = None
    penalty: Penalty | None = None
    average: WeightAverage | None = None  # EMA or SWA of the weights, built on the device
    scoring: Scoring | None = None  # train.metrics, computed by every evaluation pass
    compiled: torch.nn.Module | None = None  # the caller's torch.compile'd wrapper of `model`
    trained: torch.nn.Module = field(init=False)  # `model`, or the DDP wrapper that trains it
    forward: Callable[..., Any] = field(init=False)  # `trained`, or the flat forward of `model`

    def __post_init__(self) -> None:
        self.trained = self.forward = self.model

    def loss(self, out: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None) -> Any:
        """The data loss of a batch; with sampling weights, the unbiased weighted loss."""
        if weights is None:
            return self.loss_fn(out, y)
        assert self.example_loss is not None  # set-up refuses weights without per-example losses
        per_example = self.example_loss(out, y)
        if isinstance(self.batches, InformativeBatches):
            self.batches.observe(per_example)
        weighted = per_example * weights
        return weighted.mean() if self.reduction == "mean" else weighted.sum()

    @property
    def default_monitor(self) -> str:
        """What ``monitor: auto`` and the run's verdict watch: the validation loss (the
        average's, with ``average_select: average``), else the training loss."""
        averaged = f"val_{averaged_tag(self.train_cfg)}_loss"
        if self.train_cfg.average_select == "average" and averaged in self.available_keys:
            return averaged
        return "val_loss" if "val_loss" in self.available_keys else "loss"

    def training_inputs(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The training split's inputs in order, in batches of ``batch_size`` (SWA's batch
        norm); in-memory data only (set-up refuses the rest)."""
        if isinstance(self.train, Split):
            yield from input_batches(self.train, self.train_cfg.batch_size)

    @property
    def classification(self) -> bool:
        """Whether the loop counts errors: class labels, one or several per example."""
        return self.task in ("classification", "multilabel")

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """AMP's gradient scaler (float16 on CUDA), else ``None`` (bfloat16 needs none)."""
        return self.step.scaler

    def evaluate(self, split: Split, model: torch.nn.Module | None = None) -> dict[str, float]:
        """Metrics of the model (or ``model``: the averaged weights) over a whole split;
        distributed, every rank evaluates a share."""
        return self.group.evaluate(
            model if model is not None else self.model, split, classification=self.classification,
            loss=self.loss_fn, scoring=self.scoring,
        )  # fmt: skip

    def evaluate_average(self, split: Split) -> dict[str, float]:
        """The averaged weights' metrics, as ``{tag}_loss``, ... (``{}`` before it holds any)."""
        if self.average is None or not self.average.ready:
            return {}
        self.average.prepare(self.training_inputs)
        metrics = self.evaluate(split, self.average.module)
        return {f"{self.average.tag}_{k}": v for k, v in metrics.items()}

    @contextlib.contextmanager
    def determinism(self) -> Iterator[None]:
        """Deterministic algorithms while training (when asked); the caller's settings after.

        On the CPU the ops skier uses are deterministic already; on CUDA this also turns off
        cuDNN's autotuner (cuBLAS additionally needs CUBLAS_WORKSPACE_CONFIG=:4096:8, which is
        the caller's environment to set, not the library's).
        """
        if not self.train_cfg.deterministic:
            yield
            return
        before = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        )
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]

    def seed(self) -> None:
        seed = self.train_cfg.seed
        # Distributed: dropout masks differ between ranks; rank 0 draws as a single process.
        torch.manual_seed(seed + self.group.rank)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.shuffle_generator.manual_seed(seed)

    def move_to_device(self) -> None:
        """The only mutation of the caller's objects: model and data go to the device."""
        self.model.to(self.device)
        if averaged_tag(self.train_cfg) is not None:  # a copy of the model, on the device
            self.average = WeightAverage(self.model, self.train_cfg)
        cfg = self.train_cfg
        per_step = step_batch_size(cfg.batch_size, cfg.accumulate)  # the loop cuts micro-batches
        if isinstance(self.train, Split) and cfg.sampling == "informative":
            self.train = self.train.to(self.device)
            self.batches = InformativeBatches(
                self.train,
                per_step,
                floor=cfg.informative_floor,
                drop_last=cfg.drop_last,
                generator=self.shuffle_generator,
            )
        elif isinstance(self.train, Split):
            self.train = self.train.to(self.device)
            self.batches = TensorBatches(
                self.train,
                per_step,
                shuffle=cfg.shuffle,
                drop_last=cfg.drop_last,
                balanced=cfg.sampling == "balanced",
                generator=self.shuffle_generator,
            )
        else:
            self.batches = LoaderBatches(
                self.train, self.device, batch_size=per_step, shuffle=cfg.shuffle,
                drop_last=cfg.drop_last, generator=self.shuffle_generator, seed=cfg.seed,
                num_workers=cfg.num_workers, pin_memory=cfg.pin_memory,
                persistent_workers=cfg.persistent_workers, prefetch_factor=cfg.prefetch_factor,
            )  # fmt: skip
        self.batches = self.group.shard(self.batches, reduction=cfg.reduction)
        self.val = self.val.to(self.device) if self.val is not None else None
        self.test = self.test.to(self.device) if self.test is not None else None


def _infer_task(train: Any, declared: str | None, loss: Any) -> str:
    """The declared task, else the one the loss implies (binary cross-entropy on N x L targets:
    multi-label), else classification for integer targets and regression for float ones."""
    if declared is not None:
        if declared not in ("classification", "regression", "multilabel"):
            tasks = "'classification', 'regression' or 'multilabel'"
            raise ConfigError(problem("task", tasks, declared))
        return declared
    if isinstance(train, Split):
        target = train.targets
    else:
        sample = _first_example(train)
        if sample is None:
            raise ConfigError(
                "task must be given for this data set (its first example is unreadable)."
            )
        target = torch.as_tensor(sample[-1]).unsqueeze(0)
    implied = loss_task(loss, target)
    if implied is not None:
        return implied
    return "regression" if target.is_floating_point() else "classification"


def _first_example(data: Any) -> Sequence[Any] | None:
    dataset = data.dataset if isinstance(data, DataLoader) else data
    try:
        item = dataset[0]
    except (TypeError, IndexError, KeyError, NotImplementedError):
        return None
    return item if isinstance(item, Sequence) and len(item) >= 2 else None


def _output_size(task: str, splits: Sequence[Split | None], bundle: DataBundle | None) -> int:
    if bundle is not None:
        return bundle.output_size
    known = [s for s in splits if s is not None]
    if task != "classification":  # regression targets, multi-label labels
        return int(known[0].targets.shape[1]) if known and known[0].targets.dim() > 1 else 1
    return int(max(int(s.targets.max()) for s in known) + 1) if known else 0


def _check_shapes(setup: Setup, bundle: DataBundle | None) -> None:
    if setup.output_size == 0:  # classes unknown (a Dataset with no in-memory split): no check
        return
    sample: Sequence[torch.Tensor]
    if isinstance(setup.train, Split):
        sample = setup.train.inputs
        shapes = [tuple(t.shape[1:]) for t in sample if t.is_floating_point()]
        cats = [t for t in sample if not t.is_floating_point()]
    else:
        first = _first_example(setup.train)
        if first is None:
            return
        xs = [torch.as_tensor(x) for x in first[:-1]]
        shapes = [tuple(x.shape) for x in xs if x.is_floating_point()]
        cats = [x.unsqueeze(0) for x in xs if not x.is_floating_point()]
    cards: Sequence[int] = ()
    if cats:
        cards = (
            bundle.categorical_cardinalities
            if bundle is not None
            else (cats[0].max(dim=0).values + 1).tolist()
        )
    check_output_shape(setup.model, shapes, setup.output_size, categorical_cardinalities=cards)


def averaged_tag(cfg: TrainConfig) -> str | None:
    """``"ema"`` or ``"swa"``: the average of the weights a run keeps (``None``: none)."""
    return "ema" if cfg.ema is not None else "swa" if cfg.swa_start is not None else None


def loop_keys(
    *,
    classification: bool,
    validation: bool,
    penalty: bool,
    average: str | None = None,
    metrics: Sequence[str] = (),
    train_metrics: bool = False,
) -> frozenset[str]:
    """The log keys the loop produces: what a callback or a plateau schedule may monitor.
    ``average`` (``"ema"``, ``"swa"``): the averaged weights' validation keys too;
    ``metrics``: ``train.metrics``' names (``val_<name>``; un-prefixed too with
    ``train_metrics``, the exact pass over the training split).

    >>> sorted(loop_keys(classification=False, validation=True, penalty=False, average="ema"))
    ['epoch', 'epoch_time', 'loss', 'lr', 'val_ema_loss', 'val_loss']
    """
    keys = {"epoch", "loss", "lr", "epoch_time"}
    if penalty:
        keys.add("penalty")
    if classification:
        keys |= {"error", "accuracy"}
    evaluated = [k for k in keys if k in ("loss", "error", "accuracy")] + list(metrics)
    if train_metrics:
        keys |= set(metrics)
    if validation:
        keys |= {f"val_{k}" for k in evaluated}
        if average is not None:
            keys |= {f"val_{average}_{k}" for k in evaluated}
    return frozenset(keys)


def monitor_problems(
    callbacks: Sequence[Any], available: frozenset[str], schedule: ScheduleConfig | None = None
) -> list[str]:
    """One line per monitored key that is not in ``available`` (and per callback that is not a
    skier Callback or lacks one it needs before it); ``schedule``: a plateau schedule's monitor.
    """
    problems = []
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            problems.append(f"callbacks[{i}] must be a skier Callback; got {type(cb).__name__}.")
            continue
        for key in cb.monitored_keys():
            if key not in available:
                problems.append(
                    f"{type(cb).__name__}.monitor must be a key the loop produces; got {key!r}."
                    f"{did_you_mean(key, available)} Valid keys: {', '.join(sorted(available))}."
                    + (" (Validation keys need validation data.)" if key.startswith("val_") else "")
                )
        before = {type(c) for c in callbacks[:i]}
        for needed in cb.requires:
            if not any(issubclass(b, needed) for b in before):
                problems.append(
                    f"{type(cb).__name__} needs a {needed.__name__} callback before it in the list."
                )
    if schedule is not None and schedule.name == "plateau" and schedule.monitor not in available:
        problems.append(
            f"schedule.monitor must be a key the loop produces; got {schedule.monitor!r}."
            f"{did_you_mean(schedule.monitor, available)} "
            f"Valid keys: {', '.join(sorted(available))}."
        )
    return problems


def prepare(
    model: torch.nn.Module,
    train: DataLike,
    val: Any,
    test: Any,
    *,
    optimizer: str | torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    schedule: str | Mapping[str, Any] | ScheduleConfig | None,
    callbacks: Sequence[Callback],
    task: str | None,
    train_config: TrainConfig | None,
    optim_config: OptimConfig | None,
    settings: Mapping[str, Any],
    regularization: RegularizationConfig | None = None,
    distributed: ProcessGroup | None = None,
) -> Setup:
    """Validate and resolve everything; change nothing."""
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    # A module the caller compiled trains as it is, but checkpoints, evaluation, callbacks and
    # the result see the plain module inside it (no "_orig_mod." in a checkpoint).
    caller_compiled = model if uncompiled(model) is not model else None
    model = uncompiled(model)
    # A callable loss or metric is no config value: kept aside, its place checked as a name.
    settings = dict(settings)
    given_loss = settings.pop("loss") if callable(settings.get("loss")) else None
    given_metrics = list(settings.get("metrics") or [])
    if given_metrics:
        settings["metrics"] = [m for m in given_metrics if isinstance(m, str)]
    try:
        cfg_train, cfg_optim, cfg_sched, cfg_reg = _settings(settings, optimizer, schedule)
    except ValidationError as exc:  # pragma: no cover - config_from_mapping converts these
        raise ConfigError(str(exc)) from None
    cfg_train = train_config or cfg_train
    cfg_optim = optim_config or cfg_optim
    cfg_reg = regularization or cfg_reg
    bundle = train if isinstance(train, DataBundle) else None
    if bundle is not None:
        train = bundle.train if bundle.train_dataset is None else bundle.train_dataset
        val, test = val or bundle.val, test or bundle.test
        task = task or bundle.task
    train_s = _as_split(train, "train")
    if train_s is None:
        raise DataError("train must hold data; got None.")
    val_s, test_s = _as_split(val, "val"), _as_split(test, "test")
    if not isinstance(val_s, Split | None) or not isinstance(test_s, Split | None):
        raise DataError(
            "val and test must be in-memory data (a Split or an (inputs, targets) pair)."
        )
    if isinstance(train_s, Split) and len(train_s) == 0:
        raise DataError("train must hold at least one example; got 0.")
    if not isinstance(train_s, Split):  # these two index the in-memory tensors
        hint = "Pass train as an (inputs, targets) pair or a Split."
        problems = []
        if cfg_train.sampling != "uniform":
            problems.append(
                problem("train.sampling", "'uniform' when train is a Dataset or DataLoader",
                        cfg_train.sampling, hint)
            )  # fmt: skip
        if cfg_train.exact_train_error:
            problems.append(
                problem("train.exact_train_error", "False when train is a Dataset or DataLoader",
                        True, hint)
            )  # fmt: skip
        if problems:
            raise ConfigError(problems)
    device = resolve_device(cfg_train.device)
    resolved_task = _infer_task(train_s, task, given_loss or cfg_train.loss)
    splits = [train_s if isinstance(train_s, Split) else None, val_s, test_s]
    loss = resolve_loss(given_loss or cfg_train.loss, resolved_task, reduction=cfg_train.reduction,
                        options=loss_options(cfg_train))  # fmt: skip
    classes = _output_size(resolved_task, splits, bundle)
    output_size = model_output_size(loss, resolved_task, classes)
    problems = loss.target_problems(
        dict(zip(("train", "val", "test"), splits, strict=True)), classes
    )
    if problems:
        raise DataError(problems)
    scoring = Scoring.for_task(given_metrics or cfg_train.metrics, resolved_task)
    available = loop_keys(
        classification=resolved_task != "regression",
        validation=val_s is not None,
        penalty=bool(cfg_reg.l1 or cfg_reg.l2),
        average=averaged_tag(cfg_train),
        metrics=scoring.names if scoring is not None else (),
        train_metrics=cfg_train.exact_train_error,
    )
    callbacks = list(callbacks)
    problems = monitor_problems(callbacks, available, cfg_sched if scheduler is None else None)
    if problems:
        raise ConfigError(problems)
    group = distributed if distributed is not None else ProcessGroup()
    # Only rank 0 shows progress; "off" adds nothing, so nothing is called per batch.
    shows = display_mode(cfg_train.progress) if group.is_main else "off"
    if shows != "off" and not any(isinstance(c, ProgressBar | LiveDisplay) for c in callbacks):
        callbacks.append(LiveDisplay() if shows == "live" else ProgressBar(True))
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = build_optimizer(model.parameters(), cfg_optim)
    device = group.device_for(device)
    problems = group.problems(
        sampling=cfg_train.sampling, batch_size=cfg_train.batch_size, device=cfg_train.device,
        in_memory=isinstance(train_s, Split), line_search=has_line_search(opt),
    ) + step_problems(opt, amp=cfg_train.amp)  # fmt: skip
    problems += amp_problems(cfg_train.amp, device)
    problems += compile_problems(cfg_train.compile, device)
    problems += accumulate_problems(cfg_train.batch_size, cfg_train.accumulate, train_s)
    problems += loader_problems(cfg_train, train_s)
    if cfg_train.sampling == "informative" and loss.per_example is None:
        problems.append(
            problem("train.loss", "a loss that gives per-example values with train.sampling "
                    "'informative'", loss.name, "Give the callable a reduction argument "
                    "(reduction='none': one value per example), or sample uniformly.")
        )  # fmt: skip
    objects = [n for n, m in scoring.custom if is_metric_object(m)] if scoring else []
    if objects and group.world_size > 1:  # its state is its own: no way to merge the ranks'
        problems.append(problem("train.metrics", "built-in names or plain functions in a "
                                "distributed run", objects, "A metric object with update/"
                                "compute keeps its own state on each rank."))  # fmt: skip
    if isinstance(optimizer, torch.optim.Optimizer) and cfg_optim.sam is not None:
        problems.append(
            problem("optim.sam", "null when fit() is given an optimizer object", cfg_optim.sam,
                    "Wrap it yourself: skier.optim.SAM(optimizer, rho=...), or pass its name.")
        )  # fmt: skip
    per_step = scheduler is None and resolve_interval(cfg_sched) == "step"
    problems += averaging_problems(
        cfg_train, per_step_schedule=cfg_sched.name if per_step else None,
        in_memory=isinstance(train_s, Split), batch_norm=has_batch_norm(model),
    )  # fmt: skip
    if problems:
        raise ConfigError(problems)
    reduction = group.loss_reduction(cfg_train.reduction)
    precision = amp_dtype(cfg_train.amp, device)  # fp16 needs loss scaling (CUDA only)
    step = OptimizerStep(
        opt, model.parameters(), grad_clip=cfg_train.grad_clip,
        grad_clip_mode=cfg_train.grad_clip_mode, autocast_dtype=precision,
        scaler=torch.amp.GradScaler("cuda") if precision == torch.float16 else None,
        device_type=device.type,
    )  # fmt: skip
    setup = Setup(
        model=model,
        train_cfg=cfg_train,
        device=device,
        task=resolved_task,
        output_size=output_size,
        train=train_s,
        val=val_s,
        test=test_s,
        optimizer=opt,
        schedule=None,
        loss_fn=loss
        if reduction == cfg_train.reduction
        else resolve_loss(
            given_loss or cfg_train.loss,
            resolved_task,
            reduction=reduction,
            options=loss_options(cfg_train),
        ),
        example_loss=loss.per_example,
        callbacks=callbacks,
        available_keys=available,
        step=step,
        group=group,
        reduction=reduction,
        scoring=scoring,
        compiled=caller_compiled,
        penalty=(
            Penalty(model, l1=cfg_reg.l1, l2=cfg_reg.l2, penalize=cfg_reg.penalize)
            if cfg_reg.l1 or cfg_reg.l2
            else None
        ),
    )
    _check_shapes(setup, bundle)
    # Last: building a schedule changes the optimizer's lr (e.g. a warm-up ramp starts low).
    if scheduler is not None:  # the caller's own torch scheduler, stepped once per epoch
        setup.schedule = Schedule(scheduler, name=type(scheduler).__name__, interval="epoch")
    else:
        steps = (
            len(train_s) if isinstance(train_s, DataLoader)
            else steps_per_epoch(len(train_s),  # type: ignore[arg-type]
                                 step_batch_size(cfg_train.batch_size, cfg_train.accumulate),
                                 drop_last=cfg_train.drop_last)
        )  # fmt: skip
        setup.schedule = build_schedule(opt, cfg_sched, epochs=cfg_train.epochs,
                                        steps_per_epoch=steps)  # fmt: skip
    return setup
