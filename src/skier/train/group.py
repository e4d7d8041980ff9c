"""The processes a run trains on, behind one interface, so the loop never asks whether it is
distributed.

:class:`ProcessGroup` is one process: every collective is the identity. The distributed group
(:class:`skier.train.distributed.Distributed`) is the same interface over ``torch.distributed``;
what both share — evaluation over shares, rank 0's decisions, the RNG to restore — is written
once here, on top of the collectives. This module never imports ``torch.distributed``.

>>> group = ProcessGroup()
>>> group.is_main, group.world_size, group.sum_counts([torch.tensor(2.0), 3])
(True, 1, [2.0, 3.0])
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from skier.data.types import Split
from skier.train.batches import BatchSource
from skier.train.losses import Loss
from skier.train.metrics import eval_mode, split_sums
from skier.train.scoring import Scoring
from skier.train.state import CheckpointRequest, TrainState

__all__ = ["ProcessGroup", "shard_bounds"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous ``[lo, hi)`` share of ``n`` items for ``rank``; the first ``n %
    world_size`` ranks get one more, so the shares cover ``n`` exactly, with no padding.

    >>> [shard_bounds(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class ProcessGroup:
    """A run on one process; the base of the distributed group.

    Subclasses replace the collectives (``broadcast``, ``gather``, ``sum_counts``,
    ``sync_state``) and the model and data hooks (``wrap``, ``shard``, ``device_for``,
    ``problems``, ``loss_reduction``); the rest is built on them.
    """

    rank = 0
    world_size = 1

    def __repr__(self) -> str:
        return "ProcessGroup(single process)"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the record, checkpoints, figures and report."""
        return self.rank == 0

    # --- collectives (one process: the identity) ---------------------------------------------
    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        return value

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, in rank order, on rank 0 (``None`` elsewhere)."""
        return [value]

    def sum_counts(self, values: Sequence[torch.Tensor | float]) -> list[float]:
        """Sum of each value over the ranks (sums and counts, never means)."""
        return [float(v) for v in values]

    def barrier(self) -> None:
        return None

    # --- model, data, settings ---------------------------------------------------------------
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module that trains (the distributed group wraps it in DDP)."""
        return model

    def sync_state(self, model: torch.nn.Module, *, buffers_only: bool = False) -> None:
        """Rank 0's buffers (and parameters) on every rank."""
        return None

    def no_sync(self, trained: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        """A context whose backward passes do not all-reduce gradients (every micro-batch of an
        accumulated step but the last); one process has nothing to synchronise."""
        return contextlib.nullcontext()

    def shard(self, batches: BatchSource, *, reduction: str) -> BatchSource:
        """This rank's share of every batch."""
        return batches

    def device_for(self, device: torch.device) -> torch.device:
        """The device this rank trains on, given the one the settings name."""
        return device

    def loss_reduction(self, reduction: str) -> str:
        """The reduction of the training loss on this rank (shares are summed, then scaled)."""
        return reduction

    def problems(self, *, sampling: str, batch_size: int | str, device: str, in_memory: bool,
                 line_search: bool) -> list[str]:  # fmt: skip
        """What this group cannot train with these settings, one line each."""
        return []

    # --- built on the collectives -------------------------------------------------------------
    def evaluate(
        self,
        model: torch.nn.Module,
        split: Split,
        *,
        classification: bool,
        batch_size: int = 4096,
        loss: Loss | None = None,
        scoring: Scoring | None = None,
    ) -> dict[str, float]:
        """Loss (and error, accuracy) over the whole ``split``, in eval mode: each rank
        evaluates its contiguous share, and the sums and counts are added over the ranks.
        ``scoring``'s metrics: rank 0 merges every rank's state (confusion counts add up,
        scores are concatenated in rank order, i.e. the split's order) and sends the values
        to all."""
        lo, hi = shard_bounds(len(split), self.rank, self.world_size)
        with eval_mode(model):
            sums = split_sums(model, split, classification=classification, lo=lo, hi=hi,
                              batch_size=batch_size, loss=loss, scoring=scoring)  # fmt: skip
        scores, sums.scores = sums.scores, None
        metrics = sums.metrics(self.sum_counts(sums.totals()))
        if scores is not None:
            parts = self.gather(scores.host_state())
            metrics.update(self.broadcast(scores.compute_merged(parts) if parts else None))
        return metrics

    def follow_main(self, state: TrainState) -> None:
        """Rank 0's stop request, non-finite verdict and checkpoint requests on every rank.

        Every rank runs the callbacks on the same all-reduced logs, so they would agree anyway;
        taking rank 0's word makes sure no rank ever enters a collective the others skip.
        """
        mine = (
            state.requests.stop_reason,
            state.diverged,
            [(r.path, r.tag, r.hold) for r in state.requests.checkpoints],
        )
        reason, diverged, requests = self.broadcast(mine)
        state.requests.stop_reason, state.diverged = reason, diverged
        state.requests.checkpoints = [CheckpointRequest(p, t, h) for p, t, h in requests]

    def checkpoint_payload(self, payload: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint rank 0 writes (a collective: every rank calls it, only rank 0 gets a
        payload); several ranks add every rank's RNG states, so a resume is exact."""
        if self.world_size == 1:
            return payload
        every = self.gather(rng)
        if every is None:
            return {}
        return {**payload, "world_size": self.world_size, "rng_ranks": every}

    def rng_to_restore(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """This rank's saved RNG states; from another world size, rank 0's (resume not exact)."""
        ranks = checkpoint.get("rng_ranks")
        if ranks and checkpoint.get("world_size") == self.world_size:
            return dict(ranks[self.rank])
        return dict(checkpoint["rng"])
