"""The training loop: ``fit`` and ``evaluate``.

One epoch is: set LR → forward → loss → backward → clip → step → callbacks → evaluate →
checkpoint. The per-batch path does no Python-side work that can be avoided: running loss and
error are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.optim.lr_scheduler import LRScheduler

from skier._html import html_table
from skier._io import BackgroundWriter
from skier.config import OptimConfig, RegularizationConfig, ScheduleConfig, TrainConfig
from skier.data.types import Split
from skier.errors import CheckpointError
from skier.history import History
from skier.models.flat import training_forward
from skier.train.batches import Batch, micro_batches
from skier.train.callbacks.base import Callback
from skier.train.callbacks.monitor import Monitor, verdict
from skier.train.checkpoint import CheckpointSaver, capture_rng, load_checkpoint, restore_rng
from skier.train.compiled import compile_failure, compile_module
from skier.train.group import ProcessGroup
from skier.train.losses import LossFn, build_loss
from skier.train.metrics import SplitSums, count_wrong, evaluate_split, targets_per_example
from skier.train.scoring import Scoring
from skier.train.setup import DataLike, Setup, _as_split, _infer_task, prepare
from skier.train.state import TrainState
from skier.train.step import LossAndExtra

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FitResult", "check_fit", "evaluate", "fit"]


@dataclass
class FitResult:
    """What ``fit`` returns: the history and how training ended."""

    history: History
    task: str
    epochs_done: int
    monitor: str
    best_epoch: int | None
    best_value: float | None
    stop_reason: str | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    restored: str | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)
    model: torch.nn.Module | None = field(default=None, repr=False)
    diverged: bool = False  # stopped by the non-finite guard (the last good weights were kept)
    # train.ema / train.swa_start: the averaged network (its own copy; `model` holds the raw
    # weights unless train.average_select is "average")
    averaged_model: torch.nn.Module | None = field(default=None, repr=False)

    def plot(self) -> Figure:
        """The learning curves: loss and error side by side
        (:func:`skier.plots.plot_learning_figure`); a notebook shows the figure as it is.

        >>> result.plot()   # doctest: +SKIP
        """
        from skier.plots.curves import plot_learning_figure  # matplotlib only when drawing

        return plot_learning_figure(self)

    def _repr_html_(self) -> str:
        """How training ended, as a table, then the history's table (notebooks)."""
        ended = "diverged (last good weights kept)" if self.diverged else self.stop_reason
        rows: list[list[object]] = [
            ["task", self.task], ["epochs", self.epochs_done],
            ["ended", ended or f"after {self.epochs_done} epochs"],
            ["best", "" if self.best_epoch is None else
             f"{self.monitor} {self.best_value:.4g} at epoch {self.best_epoch}"],
        ]  # fmt: skip
        if self.restored:
            rows.append(["restored", self.restored])
        rows += [[k, v] for k, v in self.test_metrics.items()]
        rows.append(["time", f"{self.duration_s:.1f} s"])
        return html_table(["FitResult", ""], rows) + self.history._repr_html_()


def fit(
    model: torch.nn.Module,
    train: DataLike,
    val: DataLike | None = None,
    *,
    test: DataLike | None = None,
    optimizer: str | torch.optim.Optimizer = "adam",
    scheduler: LRScheduler | None = None,
    schedule: str | Mapping[str, Any] | ScheduleConfig | None = None,
    callbacks: Sequence[Callback] = (),
    task: Literal["classification", "regression"] | None = None,
    resume: str | Path | Mapping[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    optim_config: OptimConfig | None = None,
    regularization: RegularizationConfig | None = None,
    distributed: ProcessGroup | None = None,
    **settings: Any,
) -> FitResult:
    """Train ``model`` on ``train``; validate on ``val`` every ``val_every`` epochs.

    ``settings`` are the fields of the ``train``, ``optim`` and ``regularization`` config
    sections (``epochs``, ``batch_size``, ``accumulate``, ``lr``, ``weight_decay``, ``sam``,
    ``grad_clip``, ``l2``, ``sampling``, ``seed``, ``device``, ...), checked
    by the same schema as the YAML config. ``resume`` is a checkpoint written by
    :class:`~skier.train.callbacks.Checkpoint` (its path, or the state ``load_checkpoint``
    returned); training goes on from its position. ``distributed`` (from
    :func:`skier.train.distributed.init_distributed`) trains data-parallel: ``batch_size`` is
    the global batch, split across the processes; only rank 0 writes checkpoints.

    Example::

        result = fit(model, (x, y), (x_val, y_val), optimizer="sgd", lr=0.1, epochs=5)
        result.history.column("val_loss")
    """
    s = prepare(
        model, train, val, test, optimizer=optimizer, scheduler=scheduler, schedule=schedule,
        callbacks=callbacks, task=task, train_config=train_config, optim_config=optim_config,
        settings=settings, regularization=regularization, distributed=distributed,
    )  # fmt: skip
    checkpoint = (
        dict(resume) if isinstance(resume, Mapping)
        else load_checkpoint(resume) if resume is not None
        else None
    )  # fmt: skip
    with s.determinism():
        return _train(s, checkpoint)


def _train(s: Setup, checkpoint: dict[str, Any] | None) -> FitResult:
    # Checkpoint files are written and synced on a background thread while the next epoch
    # trains; leaving this block waits for them, also when training fails. Held (throttled)
    # checkpoints are written at the end, and when training fails or is interrupted.
    with BackgroundWriter() as writer:
        saver = CheckpointSaver(writer)
        try:
            return _train_epochs(s, checkpoint, saver)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the failure is the error to report
                saver.flush()
            # train.compile: a compiler failure is said in one line
            failure = compile_failure(exc, s.train_cfg.compile or s.compiled is not None)
            if failure is None:
                raise
            raise failure from None


def _train_epochs(
    s: Setup, checkpoint: dict[str, Any] | None, writer: CheckpointSaver
) -> FitResult:
    s.move_to_device()
    state = _start(s, checkpoint)
    # After the resume: DDP starts every rank from rank 0's weights. train.compile compiles
    # the module that trains (DDP's wrapper, if any); s.model stays the plain module.
    s.trained = _module_that_trains(s)
    s.forward = training_forward(s.model, s.trained)  # flattened where it is the same (safe)
    started, logs = time.perf_counter(), dict(state.history.rows[-1]) if state.history else {}
    good = _snapshot(s)
    for cb in s.callbacks:
        cb.on_fit_start(state)
    for epoch in range(state.epoch + 1, s.train_cfg.epochs + 1):
        state.epoch = epoch
        logs = _run_epoch(s, state)  # set LR → forward → loss → backward → clip → step → evaluate
        state.history.append(logs)
        bad = [k for k in ("loss", "val_loss") if not math.isfinite(logs.get(k, 0.0))]
        state.diverged = s.train_cfg.stop_on_non_finite and bool(bad)
        if state.diverged:  # back to the last good weights; this epoch is logged, never saved
            _restore(s, good)
            what = "training loss" if bad[0] == "loss" else "validation loss"
            state.requests.stop_reason = (
                f"non-finite {what} at epoch {epoch}; kept epoch {epoch - 1}"
            )
        elif s.average is not None and s.average.step_lr(epoch, s.optimizer):
            pass  # SWA: SWALR sets the lr from swa_start on, in place of the schedule
        elif s.schedule is not None and s.schedule.interval == "epoch":
            s.schedule.step(logs)
        for cb in s.callbacks:  # callbacks
            cb.on_epoch_end(state, logs)
        s.group.follow_main(state)  # rank 0 decides stop, guard and checkpoints; all follow
        if state.diverged:
            state.requests.checkpoints.clear()
        else:
            _write_checkpoints(s, state, writer)  # checkpoint
            good = _snapshot(s) if s.train_cfg.stop_on_non_finite else good
        if state.stop_requested:
            break
    return _finish(s, state, logs, time.perf_counter() - started, writer)


def _module_that_trains(s: Setup) -> torch.nn.Module:
    """``s.model``, wrapped for the process group (DDP) and compiled as ``train.compile``
    asks; a module the caller compiled trains through their wrapper (under DDP: the DDP
    wrapper compiled, as torch recommends, in ``train.compile``'s mode or the default)."""
    wrapped = s.group.wrap(s.model)
    mode = s.train_cfg.compile
    if s.compiled is not None and wrapped is s.model and mode is False:
        return s.compiled
    return compile_module(wrapped, mode or s.compiled is not None)


def _snapshot(s: Setup) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The model's weights and its average's state: the non-finite guard's last good ones."""
    weights = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
    return weights, s.average.snapshot() if s.average is not None else None


def _restore(s: Setup, good: tuple[dict[str, torch.Tensor], dict[str, Any] | None]) -> None:
    s.model.load_state_dict(good[0])
    if s.average is not None and good[1] is not None:
        s.average.restore(good[1])


def check_fit(
    model: torch.nn.Module,
    train: DataLike,
    val: DataLike | None = None,
    *,
    test: DataLike | None = None,
    optimizer: str | torch.optim.Optimizer = "adam",
    schedule: str | Mapping[str, Any] | ScheduleConfig | None = None,
    callbacks: Sequence[Callback] = (),
    task: Literal["classification", "regression"] | None = None,
    train_config: TrainConfig | None = None,
    optim_config: OptimConfig | None = None,
    regularization: RegularizationConfig | None = None,
    distributed: ProcessGroup | None = None,
    **settings: Any,
) -> None:
    """Run every check :func:`fit` runs first (settings, data, output shape, monitored keys)
    and change nothing: lets a caller fail before it creates files for a run."""
    given = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    saved = copy.deepcopy(given.state_dict()) if given is not None else None
    try:
        prepare(
            model, train, val, test, optimizer=optimizer, scheduler=None, schedule=schedule,
            callbacks=callbacks, task=task, train_config=train_config, optim_config=optim_config,
            settings=settings, regularization=regularization, distributed=distributed,
        )  # fmt: skip
    finally:  # the schedule built on a given optimizer has set its lr: put it back
        if given is not None and saved is not None:
            given.load_state_dict(saved)


def _run_epoch(s: Setup, state: TrainState) -> dict[str, float]:
    t0 = time.perf_counter()
    lr = float(s.optimizer.param_groups[0]["lr"])
    logs: dict[str, float] = {"epoch": float(state.epoch), **_train_one_epoch(s, state), "lr": lr}
    if s.train_cfg.exact_train_error:
        logs.update(s.evaluate(s.train))  # type: ignore[arg-type]
    last = state.epoch == s.train_cfg.epochs
    if s.average is not None:  # SWA: this epoch's weights join the average
        s.average.end_epoch(state.epoch)
    if s.val is not None and (state.epoch % s.train_cfg.val_every == 0 or last):
        metrics = {**s.evaluate(s.val), **s.evaluate_average(s.val)}  # raw and averaged
        logs.update({f"val_{k}": v for k, v in metrics.items()})
    logs["epoch_time"] = time.perf_counter() - t0
    return logs


def _train_one_epoch(s: Setup, state: TrainState) -> dict[str, float]:
    per_batch = _overrides(s.callbacks, "on_batch_end")
    sums = _EpochSums(s)
    s.model.train()
    s.forward = training_forward(s.model, s.trained, s.forward)  # the flat one while valid
    assert s.batches is not None
    per_step = s.schedule if s.schedule is not None and s.schedule.interval == "step" else None
    group = s.optimizer.param_groups[0]
    lrs = state.history.steps.setdefault("lr", [])  # the lr actually used, every step
    parts = s.train_cfg.accumulate
    no_sync = functools.partial(s.group.no_sync, s.trained)  # DDP: all-reduce on the last only
    ema = s.average if s.average is not None and s.average.tag == "ema" else None
    for batch in s.batches:  # the examples of one optimizer step
        if per_step is not None:  # set LR
            lrs.append(group["lr"])
        micro = micro_batches(batch, parts)  # gradient accumulation: k micro-batches, one step
        forwards = [_forward_of(s, m, batch[1].shape[0], first=i == 0) for i, m in enumerate(micro)]
        # forward → loss (+ penalties) → backward, each micro-batch → clip → step (L-BFGS, SAM:
        # with a closure over every micro-batch)
        results = s.step.accumulate(forwards, no_sync=no_sync)
        if ema is not None:  # the EMA of the weights follows every step
            ema.after_step()
        if per_step is not None:
            per_step.step()
        sums.add_step(results, micro)
        state.step += 1  # optimizer steps, whatever the micro-batches
        for cb in per_batch:
            cb.on_batch_end(state)
    if per_step is None:  # one lr for the whole epoch: no per-step work
        lrs.extend([float(group["lr"])] * sums.steps)
    totals = s.group.sum_counts(sums.totals())  # every rank's examples, as sums and counts
    s.group.sync_state(s.model, buffers_only=True)  # identical batch-norm buffers on every rank
    if s.average is not None:  # EMA averaged each rank's own batch-norm buffers: rank 0's
        s.group.sync_state(s.average.module, buffers_only=True)
    return sums.result(totals)


_Extra = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]  # data loss, penalty, output


def _forward_of(s: Setup, micro: Batch, examples: int, *, first: bool) -> LossAndExtra[_Extra]:
    """The forward pass of one micro-batch of a step of ``examples`` examples.

    Its loss is weighted by its share of the step, so the accumulated gradient is the gradient
    of the whole step's loss: ``n_i / examples`` for a mean over the examples (per-example
    sampling weights included), 1 for a sum (and for a distributed rank, which sums its share
    and scales it for the global batch). The penalty is counted once a step, on the first.
    """
    n = micro[1].shape[0]
    share = n / examples if s.reduction == "mean" and n != examples else 1.0
    return functools.partial(_forward, s, micro, share, first)


def _forward(s: Setup, micro: Batch, share: float, penalize: bool) -> tuple[torch.Tensor, _Extra]:
    """One micro-batch's loss to backpropagate, and what the epoch's sums need of it."""
    inputs, y, weights = micro
    out = s.forward(*inputs)
    data_loss = s.loss(out, y, weights)  # forward → loss
    penalty = s.penalty() if penalize and s.penalty is not None else None  # (+ penalties)
    weighted = data_loss if share == 1.0 else data_loss * share
    return s.batches.scaled(weighted, penalty), (data_loss, penalty, out)  # type: ignore[union-attr]


class _EpochSums:
    """The training pass's sums (:class:`SplitSums`, on the device, read once an epoch) and the
    mean penalty per step."""

    def __init__(self, s: Setup) -> None:
        dtype = torch.float32 if s.device.type == "mps" else torch.float64
        self.sums = SplitSums(s.device, classification=s.classification, dtype=dtype)
        self.mean = s.reduction == "mean"  # else the batch loss is a sum over its examples
        self.classification = s.classification
        # A summed loss over several numbers per example (regression, binary labels) is divided
        # by how many there are; cross-entropy sums one value per example already.
        self.per_target = s.loss_fn.targets in ("binary", "real")
        self.penalty = torch.zeros((), dtype=dtype, device=s.device) if s.penalty else None
        self.steps = 0

    def add_step(self, results: Sequence[_Extra], micro: Sequence[Batch]) -> None:
        """One optimizer step: each micro-batch's losses and errors, and the step's penalty."""
        for (data_loss, _, out), (_, y, _) in zip(results, micro, strict=True):
            self.add(data_loss, out, y)
        penalty = results[0][1]
        if self.penalty is not None and penalty is not None:
            self.penalty.add_(penalty.detach())
        self.steps += 1

    def add(self, data_loss: torch.Tensor, out: torch.Tensor, y: Any) -> None:
        n = y.shape[0]
        if self.mean:  # a mean over the batch: n times it is the sum over its examples
            scale = float(n)
        else:  # a sum: regression sums over every target of every example
            scale = 1.0 / targets_per_example(out) if self.per_target else 1.0
        self.sums.loss.add_(data_loss.detach(), alpha=scale)
        if self.classification:
            self.sums.wrong.add_(count_wrong(out.detach(), y))
        self.sums.seen += n

    def totals(self) -> list[torch.Tensor | float]:
        return self.sums.totals()

    def result(self, totals: list[float]) -> dict[str, float]:
        metrics = self.sums.metrics(totals)
        if self.penalty is None:
            return metrics
        # The penalty is the same on every rank: this process's own mean per step.
        penalty = {"penalty": float(self.penalty) / max(self.steps, 1)}
        return {"loss": metrics.pop("loss"), **penalty, **metrics}


def _stateful(callbacks: Sequence[Callback]) -> list[Callback]:
    """The callbacks whose state a checkpoint keeps (a progress bar has none)."""
    return [cb for cb in callbacks if cb.stateful]


def _overrides(callbacks: Sequence[Callback], hook: str) -> list[Callback]:
    """Callbacks that override ``hook``: only those are called on the per-batch path."""
    return [cb for cb in callbacks if getattr(type(cb), hook) is not getattr(Callback, hook)]


def _start(s: Setup, checkpoint: dict[str, Any] | None) -> TrainState:
    state = TrainState(
        s.model,
        epochs=s.train_cfg.epochs,
        task=s.task,
        history=History(),
        available_keys=s.available_keys,
        batches_per_epoch=len(s.batches) if s.batches is not None else 0,
        default_monitor=s.default_monitor,
        is_main=s.group.is_main,
        loss=s.loss_fn,
    )
    average = s.average
    if average is not None and average.select:  # best weights are the average's, once it exists
        state.select_weights(lambda: average.module if average.ready else None)
    if checkpoint is None:
        s.seed()
        return state
    _check_resumable(s, checkpoint)  # before loading anything: a refused resume changes nothing
    try:
        s.model.load_state_dict(checkpoint["model"])
        if s.average is not None:  # before the optimizer: SWALR's set-up changes the lr
            s.average.load_state_dict(checkpoint["average"], s.optimizer)
        s.optimizer.load_state_dict(checkpoint["optimizer"])
        if s.schedule is not None and checkpoint.get("scheduler") is not None:
            s.schedule.load_state_dict(checkpoint["scheduler"])
        if s.scaler is not None and checkpoint.get("scaler") is not None:
            s.scaler.load_state_dict(checkpoint["scaler"])
        saved = checkpoint["callbacks"]
        for cb, c in zip(_stateful(s.callbacks), saved, strict=True):
            cb.load_state_dict(c["state"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint does not match this model or set-up: {first}") from None
    restore_rng(s.group.rng_to_restore(checkpoint), s.shuffle_generator)
    if s.batches is not None and checkpoint.get("sampler"):
        s.batches.load_state_dict(checkpoint["sampler"])
    saved = History.from_dict(checkpoint["history"])
    state.history.extend(saved.rows)
    state.history.steps.update(saved.steps)  # per-step series (lr, gradient flow, ...)
    state.epoch, state.step = int(checkpoint["epoch"]), int(checkpoint["step"])
    return state


def _check_resumable(s: Setup, checkpoint: dict[str, Any]) -> None:
    """Every way the checkpoint does not fit this set-up, found before anything is loaded."""
    problems = []
    saved = [c.get("class") for c in checkpoint.get("callbacks", [])]
    names = [type(cb).__name__ for cb in _stateful(s.callbacks)]
    if saved != names:
        problems.append(f"callbacks must match the checkpoint's {saved}; got {names}.")
    saved_opt, opt = checkpoint.get("optimizer_class"), type(s.optimizer).__name__
    if saved_opt is not None and saved_opt != opt:
        problems.append(f"optimizer must be the checkpoint's {saved_opt}; got {opt}.")
    weights, current = checkpoint.get("model", {}), s.model.state_dict()
    differ = sorted(set(weights) ^ set(current))
    differ += [k for k in current if k in weights and weights[k].shape != current[k].shape]
    if differ:
        problems.append(
            f"checkpoint does not match this model: {len(differ)} tensors differ in name or "
            f"shape ({', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''})."
        )
    saved_avg = (checkpoint.get("average") or {}).get("tag")
    tag = s.average.tag if s.average is not None else None
    if saved_avg != tag:
        problems.append(
            f"weight averaging must match the checkpoint's ({saved_avg or 'none'}); "
            f"got {tag or 'none'}. Set train.ema / train.swa_start as the run that saved it."
        )
    if problems:
        raise CheckpointError(problems)


def _training_state(s: Setup, state: TrainState, *, held: bool = False) -> dict[str, Any]:
    """Everything a resume needs; ``held`` (a checkpoint kept in memory for now) takes the
    history as a view of its rows so far rather than a copy (see ``CheckpointSaver``)."""
    return {
        "epoch": state.epoch,
        "step": state.step,
        "task": s.task,
        "model": s.model.state_dict(),
        "optimizer_class": type(s.optimizer).__name__,
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.schedule.state_dict() if s.schedule is not None else None,
        "scaler": s.scaler.state_dict() if s.scaler is not None else None,
        "callbacks": [
            {"class": type(c).__name__, "state": c.state_dict()} for c in _stateful(s.callbacks)
        ],
        "rng": capture_rng(s.shuffle_generator),
        "sampler": s.batches.state_dict() if s.batches is not None else {},
        "history": state.history.at_now() if held else state.history.to_dict(),
        "average": s.average.state_dict() if s.average is not None else None,
    }


def _write_checkpoints(s: Setup, state: TrainState, writer: CheckpointSaver) -> None:
    requests, state.requests.checkpoints = state.requests.checkpoints, []
    if not requests:
        return
    held = all(r.hold for r in requests)
    payload = _training_state(s, state, held=held)  # distributed: every rank's RNG, rank 0 writes
    payload = s.group.checkpoint_payload(payload, payload["rng"])
    writer.save(payload, requests)  # encoded once for last and best, or held (throttled)
    for r in requests:
        state.written[Path(r.path).stem] = Path(r.path)


def _finish(
    s: Setup, state: TrainState, logs: dict[str, float], seconds: float, writer: CheckpointSaver
) -> FitResult:
    for cb in s.callbacks:
        cb.on_fit_end(state, logs)
    s.group.follow_main(state)
    if not state.diverged:
        _write_checkpoints(s, state, writer)
    writer.flush()  # whatever is still held (the best epoch's state, with no later write)
    restored = None
    average = s.average
    if average is not None and average.ready:
        average.prepare(s.training_inputs)  # SWA: the average's batch-norm statistics
        if average.select:  # the run returns the averaged weights
            s.model.load_state_dict(average.weights())
    if state.requests.restore is not None:
        s.model.load_state_dict(state.requests.restore)
        restored = state.requests.restore_reason
    s.group.sync_state(s.model)  # whatever each rank restored, all end with rank 0's weights
    test_metrics = {}
    if s.test is not None:
        metrics = {**s.evaluate(s.test), **s.evaluate_average(s.test)}
        test_metrics = {f"test_{k}": v for k, v in metrics.items()}
    monitor, best_epoch, best_value = _best(s, state.history)
    return FitResult(
        history=state.history,
        task=s.task,
        epochs_done=state.epoch,
        monitor=monitor,
        best_epoch=best_epoch,
        best_value=best_value,
        stop_reason=state.stop_reason,
        test_metrics=test_metrics,
        duration_s=seconds,
        restored=restored,
        checkpoints=dict(state.written),
        model=s.model,
        diverged=state.diverged,
        averaged_model=s.average.module if s.average is not None else None,
    )


def _best(s: Setup, history: History) -> tuple[str, int | None, float | None]:
    """The monitored key and its best epoch: the verdict of a monitor that has seen a value
    (early stopping's, with its mode, min_delta and warm-up), else the history's, judged by a
    plain :class:`Monitor` of the first monitored key."""
    judge = verdict(s.callbacks)
    if judge is None:
        key = next(
            (keys[0] for keys in (cb.monitored_keys() for cb in s.callbacks) if keys),
            s.default_monitor,
        )
        judge = Monitor(key)
        for row in history.rows:
            judge.update(row.get(key), int(row["epoch"]))
    if judge.best_epoch is None:
        return judge.key, None, None
    return judge.key, judge.best_epoch, judge.best


def evaluate(
    model: torch.nn.Module,
    data: Split | tuple[Any, Any],
    *,
    task: Literal["classification", "regression", "multilabel"] | None = None,
    batch_size: int = 4096,
    loss: str | LossFn | None = None,
    metrics: Sequence[Any] = (),
    **loss_options: Any,
) -> dict[str, float]:
    """Loss (and error, accuracy; ``metrics``) of ``model`` on ``data``, in eval mode, on the
    model's device. ``loss`` (a name or a callable, with its ``loss_options`` such as
    ``label_smoothing``) is the one ``fit`` would use; default cross-entropy or MSE.

    >>> evaluate(model, data.test)          # doctest: +SKIP
    {'loss': 0.08, 'error': 0.02, 'accuracy': 0.98}
    """
    split = _as_split(data, "data")
    if not isinstance(split, Split):
        raise TypeError("evaluate() takes in-memory data: a Split or an (inputs, targets) pair")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    resolved = _infer_task(split, task, loss)  # fit's rule: declared, the loss's, the targets'
    built = None if loss is None else build_loss(loss, options=loss_options)
    scoring = Scoring.for_task(metrics, resolved)
    return evaluate_split(
        model, split.to(device), classification=resolved != "regression", batch_size=batch_size,
        loss=built, scoring=scoring,
    )  # fmt: skip
