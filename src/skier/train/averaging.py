"""Weight averaging: an exponential moving average of the weights (EMA), or stochastic weight
averaging (SWA, Izmailov et al. 2018), kept beside the raw weights while ``fit`` trains.

The loop calls a :class:`WeightAverage` at four points: after every optimizer step (EMA), at
the end of every epoch (SWA's equal average, and its lr from ``swa_start`` on), when it
evaluates (the average is evaluated beside the raw model: ``val_ema_loss``, ``val_swa_loss``,
...), and when it saves or resumes (the average, its count and SWALR's state). The average is
a ``torch.optim.swa_utils.AveragedModel``; SWA's lr is ``SWALR``.

EMA: the first update copies the weights; update ``t`` (``t`` updates made before it) is
``ema = d * ema + (1 - d) * w`` with ``d = min(decay, (1 + t) / (10 + t))`` under
``ema_warmup``, else ``d = decay``. Floating buffers (batch-norm statistics) are averaged the
same way, integer ones copied. It is one ``torch._foreach_lerp_`` per step with ``d`` computed
on the host (``AveragedModel.update_parameters`` reads its device counter twice per call: a
host sync per step on a GPU).

SWA: from the end of epoch ``swa_start`` (or of the first epoch past that fraction of
``train.epochs``), the running equal average of the weights at the end
of each epoch; batch-norm statistics of the average are recomputed over the training split
(in order, in batches of ``batch_size``) before it is evaluated or returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch.optim.swa_utils import SWALR, AveragedModel

from skier.config import TrainConfig
from skier.data import Split
from skier.errors import problem

__all__ = [
    "WeightAverage",
    "averaging_problems",
    "checkpoint_average",
    "ema_decay",
    "has_batch_norm",
    "input_batches",
    "recompute_batch_norm",
]

_BN = torch.nn.modules.batchnorm._BatchNorm


def ema_decay(decay: float, updates: int, *, warmup: bool) -> float:
    """The decay of EMA update number ``updates`` (counted from 0: the copy).

    >>> ema_decay(0.999, 1, warmup=True), ema_decay(0.999, 1, warmup=False)
    (0.18181818181818182, 0.999)
    """
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


def has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


@torch.no_grad()
def recompute_batch_norm(
    model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, ...]]
) -> None:
    """Batch-norm running statistics of ``model`` recomputed over ``batches`` (tuples of
    inputs): ``torch.optim.swa_utils.update_bn``, for models that take several inputs."""
    momenta = {m: m.momentum for m in model.modules() if isinstance(m, _BN)}
    if not momenta:
        return
    for m in momenta:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    was_training = model.training
    model.train()
    try:
        for inputs in batches:
            model(*inputs)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.train(was_training)


def input_batches(split: Split, batch_size: int | str) -> Iterator[tuple[torch.Tensor, ...]]:
    """``split``'s inputs in order, in batches of ``batch_size`` (``"full"``: one batch): what
    SWA's batch-norm statistics are recomputed over, in training and in a run's diagnostics."""
    size = len(split) if batch_size == "full" else int(batch_size)
    for lo in range(0, len(split), size):
        yield tuple(t[lo : lo + size] for t in split.inputs)


def checkpoint_average(
    checkpoint: Mapping[str, Any],
) -> tuple[str, dict[str, torch.Tensor], bool] | None:
    """The weight average a training checkpoint holds: its tag (``"ema"``, ``"swa"``), its
    weights under the model's state-dict keys, and whether its batch-norm statistics are stale
    (SWA's are recomputed only before the average is evaluated: over the training inputs in
    order, in batches of ``batch_size``, as :func:`recompute_batch_norm`). ``None`` when the run
    kept no average or it held nothing yet (SWA before ``swa_start``).

    >>> checkpoint_average({"average": None}) is None
    True
    """
    average = checkpoint.get("average")
    if not average or int(average.get("updates", 0)) == 0:
        return None
    prefix = "module."  # AveragedModel's keys: module.<the model's key>, and n_averaged
    weights = {k[len(prefix) :]: v for k, v in average["averaged"].items() if k.startswith(prefix)}
    return str(average["tag"]), weights, bool(average.get("bn_stale"))


def averaging_problems(
    cfg: TrainConfig, *, per_step_schedule: str | None, in_memory: bool, batch_norm: bool
) -> list[str]:
    """What weight averaging cannot do with this set-up (the config's own checks aside).

    A distributed run averages on every rank: the ranks' parameters are equal after each
    all-reduced step, so each computes the same average; the loop gives every rank rank 0's
    batch-norm buffers of the average after each epoch (EMA averages each rank's own), and SWA
    recomputes them over the whole training split, the same on every rank.
    """
    if cfg.ema is None and cfg.swa_start is None:
        return []
    problems = []
    if cfg.swa_lr is not None and per_step_schedule is not None:
        problems.append(
            problem("train.swa_lr", f"unset with schedule '{per_step_schedule}' (it sets the lr "
                    "every step; SWALR sets it once an epoch)", cfg.swa_lr,
                    "Leave swa_lr unset to average under the schedule's own (cyclical) lr.")
        )  # fmt: skip
    if cfg.swa_start is not None and batch_norm and not in_memory:
        problems.append(
            problem("train.swa_start", "unset for a batch-norm model trained from a Dataset or "
                    "DataLoader", cfg.swa_start,
                    "SWA recomputes batch-norm statistics over in-memory training data; pass "
                    "train as an (inputs, targets) pair or a Split.")
        )  # fmt: skip
    return problems


class WeightAverage:
    """The average of ``model``'s weights that ``fit`` keeps when ``train.ema`` or
    ``train.swa_start`` is set.

    >>> avg = WeightAverage(torch.nn.Linear(2, 1), TrainConfig(ema=0.9))
    >>> avg.tag, avg.val_keys(classification=False)
    ('ema', ['val_ema_loss'])
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.tag = "ema" if cfg.ema is not None else "swa"
        self.select = cfg.average_select == "average"
        # EMA averages buffers too (batch-norm statistics); SWA copies them and recomputes
        # batch norm for the average.
        self.averaged = AveragedModel(model, use_buffers=self.tag == "ema")
        self.updates = 0  # host-side count of updates (EMA's decay needs no device read)
        self.swalr: SWALR | None = None
        self._bn_stale = False
        pairs = list(zip(self._averaged_tensors(), self._model_tensors(), strict=True))
        self._floats = [(a, m) for a, m in pairs if a.is_floating_point()]
        self._others = [(a, m) for a, m in pairs if not a.is_floating_point()]

    # --- what the loop asks ------------------------------------------------------------------
    def val_keys(self, *, classification: bool) -> list[str]:
        names = ["loss", "error", "accuracy"] if classification else ["loss"]
        return [f"val_{self.tag}_{k}" for k in names]

    @property
    def module(self) -> torch.nn.Module:
        """The averaged network (same architecture and state-dict keys as the model)."""
        return self.averaged.module

    @property
    def ready(self) -> bool:
        """Whether the average holds anything yet (SWA: from the end of epoch ``swa_start``)."""
        return self.updates > 0

    def after_step(self) -> None:
        """EMA: one update after an optimizer step (no host sync)."""
        if self.tag != "ema":
            return
        with torch.no_grad():
            if self.updates == 0:
                for a, m in self._floats + self._others:
                    a.copy_(m)
            else:
                d = ema_decay(self.cfg.ema or 0.0, self.updates, warmup=self.cfg.ema_warmup)
                if self._floats:
                    averaged, current = zip(*self._floats, strict=True)
                    torch._foreach_lerp_(list(averaged), list(current), 1.0 - d)
                for a, m in self._others:
                    a.copy_(m)
            self.averaged.n_averaged += 1
        self.updates += 1

    def _swa_epoch(self, epoch: int) -> bool:
        start = self.cfg.swa_start_epoch
        return self.tag == "swa" and start is not None and epoch >= start

    def end_epoch(self, epoch: int) -> None:
        """SWA: add the weights at the end of epoch ``epoch`` (from ``swa_start`` on) to the
        equal average."""
        if not self._swa_epoch(epoch):
            return
        self.averaged.update_parameters(self.model)
        self.updates += 1
        self._bn_stale = True

    def step_lr(self, epoch: int, optimizer: torch.optim.Optimizer) -> bool:
        """SWA with ``swa_lr``: set the lr of the epoch after ``epoch`` (from ``swa_start`` on).
        ``True`` when SWALR set it (the loop's schedule then does not)."""
        if not self._swa_epoch(epoch) or self.cfg.swa_lr is None:
            return False
        if self.swalr is None:  # from epoch swa_start + 1 the lr anneals to swa_lr
            self.swalr = self._make_swalr(optimizer)
            if self.cfg.swa_anneal_epochs > 0:
                self.swalr.step()
        else:
            self.swalr.step()
        return True

    def prepare(self, inputs: Callable[[], Iterator[tuple[torch.Tensor, ...]]]) -> None:
        """Before the average is evaluated or returned: SWA recomputes its batch-norm statistics
        (``inputs()`` yields the training inputs), leaving the training RNG as it was."""
        if not self._bn_stale:
            return
        devices = [self.model_device().index or 0] if self.model_device().type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            recompute_batch_norm(self.module, inputs())
        self._bn_stale = False

    def model_device(self) -> torch.device:
        return next((p.device for p in self.module.parameters()), torch.device("cpu"))

    def weights(self) -> dict[str, torch.Tensor]:
        """A detached copy of the average's weights, under the model's state-dict keys."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def snapshot(self) -> dict[str, Any]:
        """A copy of the average's state (the non-finite guard's last good one)."""
        averaged = {k: v.detach().clone() for k, v in self.averaged.state_dict().items()}
        return {"averaged": averaged, "updates": self.updates, "bn_stale": self._bn_stale}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.averaged.load_state_dict(snapshot["averaged"])
        self.updates, self._bn_stale = snapshot["updates"], snapshot["bn_stale"]

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "updates": self.updates,
            "averaged": self.averaged.state_dict(),
            "swalr": self.swalr.state_dict() if self.swalr is not None else None,
            "bn_stale": self._bn_stale,
        }

    def load_state_dict(self, state: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
        """Load a checkpoint's average; before the optimizer's state is loaded (building SWALR
        changes the optimizer's lr, which the optimizer's own state then puts back)."""
        if state.get("tag") != self.tag:
            raise ValueError(f"the checkpoint's average is {state.get('tag')!r}, not {self.tag!r}")
        self.averaged.load_state_dict(state["averaged"])
        self.updates = int(state["updates"])
        self._bn_stale = bool(state["bn_stale"])
        if state.get("swalr") is not None:
            self.swalr = self._make_swalr(optimizer)
            self.swalr.load_state_dict(dict(state["swalr"]))

    # --- internals ---------------------------------------------------------------------------
    def _make_swalr(self, optimizer: torch.optim.Optimizer) -> SWALR:
        return SWALR(
            optimizer, swa_lr=self.cfg.swa_lr or 0.0, anneal_epochs=self.cfg.swa_anneal_epochs,
            anneal_strategy=self.cfg.swa_anneal_strategy,
        )  # fmt: skip

    def _averaged_tensors(self) -> list[torch.Tensor]:
        module = self.averaged.module
        return [t.detach() for t in (*module.parameters(), *module.buffers())]

    def _model_tensors(self) -> list[torch.Tensor]:
        return [t.detach() for t in (*self.model.parameters(), *self.model.buffers())]
