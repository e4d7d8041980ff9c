"""Gradient flow: per-layer gradient norms and update ratios, recorded every ``every`` steps.

Vanishing gradients show as first layers whose gradient norm is orders of magnitude below the
last layers'; exploding ones as norms that grow step after step; a learning rate that is too
large or too small as update ratios ‖Δw‖/‖w‖ far above (or below) about 1e-3.

The values go into the history's per-step series (``history.steps``), one value per recorded
step in each key, all keys aligned by position:

- ``grad_flow_step``: the step (``state.step``) of each record;
- ``grad_norm/<name>``: L2 norm of the gradient of parameter ``<name>`` at that step;
- ``weight_norm/<name>``: L2 norm of the weights after that step's update;
- ``update_ratio/<name>``: ‖w_after − w_before‖ / ‖w_before‖ over that step's update.

``<name>`` is the parameter's name from ``model.named_parameters()`` (``0.weight``, ...).

Cost: nothing on the steps in between but an integer test. The update ratio needs the weights
before the recorded step, so the step before a record copies the tracked weights: one copy per
``every`` steps, then at the record an in-place difference and four norms per tracked tensor
(memory: one copy of the tracked weights, kept and reused while recording is on). The
norms stay on the device and are read to the host once per epoch (one sync per epoch, none per
batch); the history's series grow at the end of each epoch.

>>> from skier.train import fit
>>> result = fit(model, data, callbacks=[GradientFlow(every=10)])  # doctest: +SKIP
>>> result.history.steps["grad_norm/0.weight"][:3]                  # doctest: +SKIP
[0.41, 0.38, 0.35]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch

from skier.train.callbacks.base import Callback
from skier.train.state import TrainState

__all__ = ["GRADIENT_FLOW_METRICS", "GRADIENT_FLOW_STEP", "GradientFlow"]

GRADIENT_FLOW_STEP = "grad_flow_step"
# The per-layer series, in the order of the columns of a record: ``f"{metric}/{name}"``.
GRADIENT_FLOW_METRICS = ("grad_norm", "weight_norm", "update_ratio")


def _norm(t: torch.Tensor) -> torch.Tensor:
    # Low-precision weights (fp16/bf16) are summed in float32, so a norm cannot overflow.
    return torch.linalg.vector_norm(t, dtype=torch.promote_types(t.dtype, torch.float32))


def _cloned(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if tensors is None else {k: v.clone() for k, v in tensors.items()}


class GradientFlow(Callback):
    """Record per-layer gradient norms, weight norms and update ratios every ``every`` steps.

    ``layers="weights"`` (the default) tracks the weight matrices and kernels (parameters of
    two or more dimensions: Linear, Conv, Embedding weights); ``"all"`` adds biases and
    normalization parameters. Parameters that do not train (``requires_grad=False``) are left
    out. Records happen on steps ``every, 2·every, ...`` (``state.step`` counts optimizer steps
    from 1), from ``on_batch_end``, where the step's gradients are still in ``.grad`` and the
    weights already updated. A parameter that got no gradient in a step records a norm of 0.

    Example::

        result = fit(model, data, callbacks=[GradientFlow(every=50)])
        steps = result.history.steps["grad_flow_step"]
        first = result.history.steps["grad_norm/0.weight"]   # same length as steps
    """

    def __init__(self, every: int, layers: Literal["weights", "all"] = "weights") -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"every must be a whole number of steps ≥ 1; got {every!r}. "
                "Record every step with every=1."
            )
        if layers not in ("weights", "all"):
            raise ValueError(
                f"layers must be 'weights' or 'all'; got {layers!r}. "
                "'weights' tracks the parameters of two or more dimensions."
            )
        self.every = every
        self.layers = layers
        self._reset()

    def _reset(self) -> None:
        self._names: list[str] = []
        self._snapshot: dict[str, torch.Tensor] | None = None  # weights before the next record
        self._spare: dict[str, torch.Tensor] | None = None  # a used snapshot's memory, reused
        self._pending_steps: list[int] = []
        self._pending: list[torch.Tensor] = []  # one (layers, 3) tensor per record, on device
        self.series: dict[str, list[float]] = {}  # what this callback wrote into the history

    # --- the hooks ---------------------------------------------------------------------------
    def on_fit_start(self, state: TrainState) -> None:
        names = self._tracked_names(state)
        if state.step == 0:  # a fresh fit; a resume keeps the loaded state
            self._reset()
        elif self._names and self._names != names:
            raise ValueError(
                f"GradientFlow's layers must match the checkpoint's {self._names}; got {names}."
            )
        self._names = names
        # A resumed fit's history may come back without the per-step series: put ours back.
        for key, values in self.series.items():
            if key not in state.history.steps:
                for value in values:
                    state.history.add_step(key, value)
        if self._snapshot is None and (state.step + 1) % self.every == 0:
            self._snapshot = self._copy(state)  # every=1: the first record needs the start

    def on_batch_end(self, state: TrainState) -> None:
        step = state.step
        if step % self.every == 0:
            self._record(state)
        if (step + 1) % self.every == 0:
            self._snapshot = self._copy(state)

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self._flush(state)

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self._flush(state)

    # --- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "layers": self.layers,
            "names": list(self._names),
            "snapshot": _cloned(self._snapshot),  # a copy: a record writes into its own
            "pending_steps": list(self._pending_steps),
            "pending": self._stacked() if self._pending else None,
            "series": {k: list(v) for k, v in self.series.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["every"] != self.every or state["layers"] != self.layers:
            raise ValueError(
                f"GradientFlow must match the checkpoint's every={state['every']}, "
                f"layers={state['layers']!r}; got every={self.every}, layers={self.layers!r}."
            )
        self._names = [str(n) for n in state["names"]]
        snapshot = state["snapshot"]
        # Copied: a record writes into its snapshot, which must not change the caller's dict.
        self._snapshot = _cloned(snapshot)
        self._pending_steps = [int(s) for s in state["pending_steps"]]
        pending = state["pending"]
        self._pending = [] if pending is None else list(pending.unbind(0))
        self.series = {str(k): [float(x) for x in v] for k, v in state["series"].items()}

    # --- the work ----------------------------------------------------------------------------
    def _tracked_names(self, state: TrainState) -> list[str]:
        return [
            name
            for name, p in state.named_parameters()
            if p.requires_grad and (self.layers == "all" or p.dim() >= 2)
        ]

    def _tracked(self, state: TrainState) -> list[tuple[str, torch.nn.Parameter]]:
        wanted = set(self._names)
        return [(name, p) for name, p in state.named_parameters() if name in wanted]

    @torch.no_grad()
    def _copy(self, state: TrainState) -> dict[str, torch.Tensor]:
        spare, self._spare = self._spare, None
        if spare is None:
            return {name: p.detach().clone() for name, p in self._tracked(state)}
        for name, p in self._tracked(state):  # every=1: no allocation per step
            spare[name].copy_(p.detach())
        return spare

    @torch.no_grad()
    def _record(self, state: TrainState) -> None:
        before, rows, used = self._snapshot or {}, [], {}
        tracked = self._tracked(state)
        for name, p in tracked:
            w = p.detach()
            weight = _norm(w)
            grad = _norm(p.grad) if p.grad is not None else torch.zeros_like(weight)
            old = before.get(name)
            if old is None:  # cannot happen in a fit; kept defensive for a hand-driven state
                ratio = torch.full_like(weight, math.nan)
            else:
                old = old.to(w.device)
                old_norm = _norm(old)
                old.sub_(w)  # the snapshot is used once: it takes -Δw in place, no allocation
                ratio = _norm(old) / old_norm
                used[name] = old
            rows.append(torch.stack((grad, weight, ratio)).float())
        if rows:
            device = rows[0].device
            self._pending.append(torch.stack([r.to(device) for r in rows]))
            self._pending_steps.append(state.step)
        self._snapshot = None  # used once: the next snapshot reuses its memory
        self._spare = used if len(used) == len(tracked) else None

    def _flush(self, state: TrainState) -> None:
        """Move the epoch's records to the host (one sync) and into the history."""
        if not self._pending:
            return
        values = self._stacked().tolist()  # the one host sync of the epoch
        for step, record in zip(self._pending_steps, values, strict=True):
            self._add(state, GRADIENT_FLOW_STEP, float(step))
            for name, row in zip(self._names, record, strict=True):
                for metric, value in zip(GRADIENT_FLOW_METRICS, row, strict=True):
                    self._add(state, f"{metric}/{name}", value)
        self._pending, self._pending_steps = [], []

    def _stacked(self) -> torch.Tensor:
        # After a resume the loaded records are on the CPU, the new ones on the model's device.
        device = self._pending[-1].device
        return torch.stack([t.to(device) for t in self._pending])

    def _add(self, state: TrainState, key: str, value: float) -> None:
        state.history.add_step(key, value)
        self.series.setdefault(key, []).append(float(value))
