"""Metrics beyond loss and error (``train.metrics``): one registry, one entry per metric.

The built-ins add up on the device during an evaluation pass — a confusion matrix for the
classification metrics, per-target sums for the regression ones, the scores themselves for
AUROC — and are read once at its end, so they cost no host synchronisation per batch. Each one
equals scikit-learn's ``sklearn.metrics`` function on the same predictions (``precision``,
``recall`` and ``f1`` are the binary ones for two classes and the macro averages otherwise).
Any callable ``f(outputs, targets) -> float`` (given every output of the split at once) and any
object with ``update(outputs, targets)`` and ``compute()`` (a torchmetrics metric, say) is a
metric too.

>>> scoring = Scoring(["f1_macro", "balanced_accuracy"], kind="classes", num_classes=3)
>>> acc = scoring.start(torch.device("cpu"))
>>> acc.update(torch.eye(3)[[0, 1, 2, 2]], torch.tensor([0, 1, 2, 1]))
>>> {k: round(v, 4) for k, v in acc.compute().items()}
{'f1_macro': 0.7778, 'balanced_accuracy': 0.8333}
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from skier._references import resolve_reference
from skier.errors import ConfigError, did_you_mean, problem

__all__ = ["METRICS", "MetricSpec", "Scoring", "is_metric_object", "metric_name", "register_metric"]

# What the model's outputs and targets are: class logits (or one binary logit), several 0/1
# labels per example, numbers.
Kind = Literal["classes", "multilabel", "real"]
State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MetricSpec:
    """One built-in metric: the kinds of task it scores, the device state it needs
    (``confusion``, ``scores``, ``sums``, ``top_k``) and how its value comes from that state."""

    name: str
    kinds: frozenset[str]
    needs: str
    compute: Callable[[State, int], float]  # (state on the CPU, number of classes)


METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Make ``spec`` available as ``train.metrics: [<spec.name>]``."""
    METRICS[spec.name] = spec
    return spec


# --- classification, from counts -----------------------------------------------------------
def _counts(s: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class (or label): true positives, false positives, false negatives, and whether
    scikit-learn counts it (present among the targets or predictions; every label for
    multi-label)."""
    if "confusion" in s:
        c = s["confusion"]
        tp = c.diagonal()
        fp, fn = c.sum(0) - tp, c.sum(1) - tp
        return tp, fp, fn, (c.sum(0) + c.sum(1)) > 0
    tp, fp, fn = s["tp"], s["fp"], s["fn"]
    return tp, fp, fn, torch.ones_like(tp, dtype=torch.bool)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))


def _per_class(what: str, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    if what == "precision":
        return _ratio(tp, tp + fp)
    if what == "recall":
        return _ratio(tp, tp + fn)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _averaged(what: str, average: str) -> Callable[[State, int], float]:
    def compute(s: State, classes: int) -> float:
        tp, fp, fn, counted = _counts(s)
        if average == "auto":  # binary for two classes, else macro (the default names)
            binary = "confusion" in s and s["confusion"].shape[0] == 2
            average_now = "binary" if binary else "macro"
        else:
            average_now = average
        if average_now == "binary":
            return float(_per_class(what, tp[1:], fp[1:], fn[1:])[0])
        if average_now == "micro":
            return float(_per_class(what, tp.sum(), fp.sum(), fn.sum()))
        values = _per_class(what, tp, fp, fn)[counted]
        if average_now == "weighted":
            support = (tp + fn)[counted]
            return float((values * support).sum() / support.sum()) if support.sum() > 0 else 0.0
        return float(values.mean()) if values.numel() else 0.0

    return compute


def _accuracy(s: State, classes: int) -> float:
    if "confusion" in s:
        c = s["confusion"]
        return float(c.diagonal().sum() / c.sum().clamp(min=1))
    return float(s["subset_correct"] / s["seen"].clamp(min=1))


def _balanced_accuracy(s: State, classes: int) -> float:
    c = s["confusion"]
    support = c.sum(1)
    present = support > 0
    return float((c.diagonal()[present] / support[present]).mean())


def _hamming_loss(s: State, classes: int) -> float:
    return float((s["fp"] + s["fn"]).sum() / (s["seen"] * s["tp"].numel()).clamp(min=1))


# --- AUROC, from the scores ------------------------------------------------------------------
def _positive_rank_sums(columns: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per row of ``columns`` (classes x examples): the sum of the ranks (from 1) of the
    examples ``positive`` marks, tied scores sharing their mean rank. A tied group's mean rank
    is (left + right + 1) / 2 for its ``searchsorted`` bounds in the sorted row, so a value
    sort of each row (SIMD in numpy, several times faster than an argsort or torch's sort on
    the CPU) and binary searches for the positives are all it takes. The positives are
    searched in ascending order (numpy's search then narrows from the last one found: half the
    time of a search in their order), and a row without repeated scores needs only the left
    bounds (each right bound is one more)."""
    columns = np.ascontiguousarray(columns)
    positive = np.ascontiguousarray(positive)
    ordered = np.sort(columns, axis=1)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    sums = np.empty(columns.shape[0], dtype=np.float64)
    for row, (values, hits) in enumerate(zip(columns, positive, strict=True)):
        chosen = np.sort(values[hits])
        left = np.searchsorted(ordered[row], chosen, "left").sum(dtype=np.float64)
        if tied[row]:
            right = np.searchsorted(ordered[row], chosen, "right").sum(dtype=np.float64)
        else:
            right = left + chosen.size
        sums[row] = (left + right + chosen.size) / 2
    return sums


def _auroc(s: State, classes: int) -> float:
    """The area under the ROC curve, per class or label (one-vs-rest) then averaged: the
    Mann-Whitney statistic with tied scores ranked by their mean rank, which is the trapezoidal
    area scikit-learn computes; ``nan`` where a column has one class only (scikit-learn
    refuses those)."""
    scores, y = s["scores"], s["targets"]
    if scores.dim() == 1:  # binary: the positive class's score
        scores, positive = scores[:, None], y.bool()[:, None]
    elif y.dim() == 1:
        positive = torch.nn.functional.one_hot(y.long(), scores.shape[1]).bool()
    else:
        positive = y.bool()
    n_pos = positive.sum(0).double()
    n_neg = positive.shape[0] - n_pos
    sums = _positive_rank_sums(scores.T.numpy(), positive.T.numpy())
    u = torch.from_numpy(sums) - n_pos * (n_pos + 1) / 2
    auc = torch.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg).clamp(min=1), math.nan)
    return float(auc.mean())


# --- regression, from running moments -----------------------------------------------------
def _regression(what: str) -> Callable[[State, int], float]:
    def compute(s: State, classes: int) -> float:
        n = s["seen"].clamp(min=1)
        if what == "mae":
            per = s["abs"] / n
        elif what in ("mse", "rmse"):
            per = s["sq"] / n
            per = per.sqrt() if what == "rmse" else per
        else:  # r2, with scikit-learn's finite answer for a constant target
            res, tot = s["sq"], s["m2"]
            per = torch.where(
                tot > 0, 1 - res / tot.clamp(min=1e-300), torch.where(res == 0, 1.0, 0.0).double()
            )
        return float(per.mean())

    return compute


_C, _ML, _R = "classes", "multilabel", "real"
for _name, _kinds, _needs, _fn in [
    ("accuracy", {_C, _ML}, "confusion", _accuracy),
    ("balanced_accuracy", {_C}, "confusion", _balanced_accuracy),
    ("hamming_loss", {_ML}, "confusion", _hamming_loss),
    ("auroc", {_C, _ML}, "scores", _auroc),
    ("mae", {_R}, "sums", _regression("mae")),
    ("mse", {_R}, "sums", _regression("mse")),
    ("rmse", {_R}, "sums", _regression("rmse")),
    ("r2", {_R}, "sums", _regression("r2")),
]:
    register_metric(MetricSpec(_name, frozenset(_kinds), _needs, _fn))
for _what in ("precision", "recall", "f1"):
    for _avg in ("auto", "macro", "micro", "weighted"):
        _label = _what if _avg == "auto" else f"{_what}_{_avg}"
        register_metric(
            MetricSpec(_label, frozenset({_C, _ML}), "confusion", _averaged(_what, _avg))
        )

_TOP_K = re.compile(r"top_(\d+)_accuracy")


def _spec(name: str) -> MetricSpec | None:
    if name in METRICS:
        return METRICS[name]
    match = _TOP_K.fullmatch(name)
    if match is None or int(match.group(1)) < 1:
        return None
    k = int(match.group(1))
    return MetricSpec(
        name,
        frozenset({_C}),
        f"top_{k}",
        lambda s, c: float(s[f"top_{k}"] / s["seen"].clamp(min=1)),
    )


def metric_name(metric: Any) -> str:
    """The log name of a metric entry: a name as it is, a function's ``__name__``, an object's
    class name in snake case (``MulticlassF1Score`` → ``multiclass_f1_score``).

    >>> metric_name("pkg.mod:my_score"), metric_name(len)
    ('my_score', 'len')
    """
    if isinstance(metric, str):
        return metric.rpartition(":")[2]
    name = getattr(metric, "__name__", None) or type(metric).__name__
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class Scoring:
    """The metrics one run computes: built-in names, ``package.module:function`` paths,
    callables and update/compute objects; checked once, against the task, when built."""

    @classmethod
    def for_task(cls, metrics: Sequence[Any], task: str) -> Scoring | None:
        """The scoring of a run of ``task`` (``None``: no metrics asked)."""
        if not metrics:
            return None
        kind = {"classification": "classes", "multilabel": "multilabel"}.get(task, "real")
        return cls(metrics, kind=kind)  # type: ignore[arg-type]

    def __init__(self, metrics: Sequence[Any], *, kind: Kind, num_classes: int = 0) -> None:
        self.kind, self.num_classes = kind, num_classes
        self.builtin: list[MetricSpec] = []
        self.custom: list[tuple[str, Any]] = []
        problems, names = [], []
        for i, m in enumerate(metrics):
            name = metric_name(m)
            names.append(name)
            if isinstance(m, str) and ":" not in m:
                spec = _spec(m)
                if spec is None:
                    choices = [*METRICS, "top_5_accuracy"]
                    problems.append(
                        problem(
                            f"train.metrics[{i}]",
                            "a built-in metric or 'package.module:function'",
                            m,
                            did_you_mean(m, choices),
                        )
                    )
                elif kind not in spec.kinds:
                    problems.append(
                        problem(
                            f"train.metrics[{i}]",
                            f"a metric for a {kind} task ({', '.join(self.names_for(kind))})",
                            m,
                        )
                    )
                else:
                    self.builtin.append(spec)
            else:
                field = f"train.metrics[{i}]"
                fn = (
                    resolve_reference(m, field, ConfigError, what="a function")
                    if isinstance(m, str)
                    else m
                )
                self.custom.append((name, fn))
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            problems.append(problem("train.metrics", "names used once each", duplicated))
        if problems:
            raise ConfigError(problems)
        self.names = names
        self.needs = {spec.needs for spec in self.builtin}

    @staticmethod
    def names_for(kind: str) -> list[str]:
        """The built-in metrics of a task kind."""
        extra = ["top_5_accuracy"] if kind == "classes" else []
        return [n for n, s in METRICS.items() if kind in s.kinds] + extra

    def __bool__(self) -> bool:
        return bool(self.names)

    def start(self, device: torch.device) -> Accumulator:
        """An empty accumulator for one evaluation pass."""
        return Accumulator(self, device)


class Accumulator:
    """The device state of one evaluation pass: ``update`` per batch, ``compute`` once."""

    def __init__(self, scoring: Scoring, device: torch.device) -> None:
        self.scoring, self.device = scoring, device
        self.state: State = {"seen": torch.zeros((), dtype=torch.int64, device=device)}
        self.collected: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.objects = [(n, copy.deepcopy(m)) for n, m in scoring.custom if is_metric_object(m)]
        self.calls = [(n, m) for n, m in scoring.custom if not is_metric_object(m)]
        self.collected_all: list[tuple[torch.Tensor, torch.Tensor]] = []  # what calls score

    def _add(self, key: str, value: torch.Tensor) -> None:
        if key in self.state:
            self.state[key] += value
        else:
            self.state[key] = value.clone()

    def update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """One batch: outputs (logits, or values) and targets; device ops only."""
        out = out.detach()
        needs, kind = self.scoring.needs, self.scoring.kind
        self.state["seen"] += y.shape[0]
        if kind == "classes":
            binary = out.shape[1] == 1  # one logit: binary cross-entropy
            if "confusion" in needs:
                pred = (out[:, 0] > 0).long() if binary else out.argmax(dim=1)
                c = 2 if binary else out.shape[1]
                index = y.long() * c + pred
                ones = torch.ones_like(index)
                flat = torch.zeros(c * c, dtype=torch.int64, device=out.device)
                self._add("confusion", flat.scatter_add_(0, index, ones).reshape(c, c))
            if "scores" in needs:
                scores = out[:, 0].sigmoid() if binary else out.float().softmax(dim=1)
                self.collected.append((scores, y))
            for need in needs:
                if need.startswith("top_"):
                    # In the top k: fewer than k classes score above the true one.
                    above = (out > out.gather(1, y[:, None].long())).sum(dim=1)
                    self._add(need, (above < int(need[4:])).sum())
        elif kind == "multilabel":
            if "confusion" in needs:
                pred, truth = out > 0, y > 0.5
                self._add("tp", (pred & truth).sum(0))
                self._add("fp", (pred & ~truth).sum(0))
                self._add("fn", (~pred & truth).sum(0))
                self._add("subset_correct", (pred == truth).all(dim=1).sum())
            if "scores" in needs:
                self.collected.append((out.sigmoid(), y))
        elif "sums" in needs:
            self._add_moments(out.double(), y.double().reshape(out.shape))
        for _, obj in self.objects:
            obj.update(out, y)
        if self.calls:
            self.collected_all.append((out, y))

    def _add_moments(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """Per target: absolute and squared errors, and the targets' running mean and sum of
        squared deviations (Chan et al.'s merge: exact enough for R² on any offset)."""
        n_b = y.shape[0]
        err = out - y
        self._add("abs", err.abs().sum(0))
        self._add("sq", (err * err).sum(0))
        mean_b = y.mean(0)
        m2_b = ((y - mean_b) ** 2).sum(0)
        if "mean" not in self.state:
            self.state["mean"], self.state["m2"], self.n_prev = mean_b, m2_b, n_b
            return
        n_a, n = self.n_prev, self.n_prev + n_b
        delta = mean_b - self.state["mean"]
        self.state["mean"] = self.state["mean"] + delta * (n_b / n)
        self.state["m2"] = self.state["m2"] + m2_b + delta * delta * (n_a * n_b / n)
        self.n_prev = n

    def host_state(self) -> State:
        """This pass's state on the host (one transfer): what a distributed rank sends to be
        merged with the other ranks' (:meth:`compute_merged`)."""
        host = {k: v.cpu() for k, v in self.state.items()}
        if self.collected:
            host["scores"] = torch.cat([c[0] for c in self.collected]).cpu()
            host["targets"] = torch.cat([c[1] for c in self.collected]).cpu()
        if self.collected_all:  # none on a rank whose share is empty
            host["call_outputs"] = torch.cat([o for o, _ in self.collected_all]).cpu()
            host["call_targets"] = torch.cat([t for _, t in self.collected_all]).cpu()
        return host

    def compute(self) -> dict[str, float]:
        """Every metric's value (one transfer of the state to the host)."""
        return self.compute_merged([self.host_state()])

    def compute_merged(self, parts: Sequence[State]) -> dict[str, float]:
        """Every metric's value over the examples of every part (distributed ranks' shares, in
        rank order): counts add up, the targets' moments merge by Chan et al.'s rule, scores
        and the outputs a plain function scores are concatenated."""
        host = _merge(parts)
        for key in ("confusion", "tp", "fp", "fn", "abs", "sq", "m2"):
            if key in host:
                host[key] = host[key].double()
        host["seen"] = host["seen"].double()
        result = {
            spec.name: spec.compute(host, self.scoring.num_classes) for spec in self.scoring.builtin
        }
        for name, obj in self.objects:  # a stateful object: one process only (set-up checks)
            result[name] = _number(obj.compute())
        for name, fn in self.calls:
            result[name] = _number(fn(host["call_outputs"], host["call_targets"]))
        return {name: result[name] for name in self.scoring.names}


_CONCATENATED = ("scores", "targets", "call_outputs", "call_targets")


def _merge(parts: Sequence[State]) -> State:
    """One state from several shares' (a part that saw no example adds nothing)."""
    seen = [p for p in parts if int(p["seen"]) > 0] or list(parts[:1])
    if len(seen) == 1:
        return dict(seen[0])
    out: State = {}
    for key in seen[0]:
        values = [p[key] for p in seen]
        if key in _CONCATENATED:
            out[key] = torch.cat(values)
        elif key not in ("mean", "m2"):  # counts and sums
            out[key] = torch.stack(values).sum(0)
    if "mean" in seen[0]:  # per target: the merged mean and sum of squared deviations
        n_a, mean, m2 = seen[0]["seen"].double(), seen[0]["mean"], seen[0]["m2"]
        for p in seen[1:]:
            n_b = p["seen"].double()
            n = n_a + n_b
            delta = p["mean"] - mean
            mean = mean + delta * (n_b / n)
            m2 = m2 + p["m2"] + delta * delta * (n_a * n_b / n)
            n_a = n
        out["mean"], out["m2"] = mean, m2
    return out


def is_metric_object(metric: Any) -> bool:
    """Whether ``metric`` is an object with ``update`` and ``compute`` (a torchmetrics metric)."""
    return callable(getattr(metric, "update", None)) and callable(getattr(metric, "compute", None))


def _number(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)
