"""Data-parallel training on several processes, on PyTorch's own engine.

skier coordinates nothing itself: ``torchrun`` (``torch.distributed.run``) starts one process
per rank and runs the rendezvous, ``torch.distributed`` moves the tensors (gloo on CPU, NCCL on
CUDA) and :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients. This
module adds what makes a distributed run *the same run* as a single-process one:

- every rank takes its contiguous share of each global batch of the same seeded permutation
  (``train.batch_size`` is the global batch), and weights its loss so that DDP's average is the
  single-process gradient of the whole batch, even when the shares differ in size;
- the epoch's training and validation metrics are all-reduced as sums and counts (no averages of
  averages, no padding);
- rank 0 decides (stop, non-finite guard, checkpoints) and every rank follows, so no rank waits
  for a collective the others skipped;
- checkpoints hold the RNG states of every rank, so a resume with the same world size is exact.

The library never reads environment variables: the ``skier`` CLI reads what torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and passes it here as a :class:`LaunchInfo`. The
single-process path never imports this module: it trains on a
:class:`~skier.train.group.ProcessGroup`, whose interface :class:`Distributed` implements with
collectives. Starting the processes (torchrun's launcher) is the runner's:
:mod:`skier.runner.launch`.

Example (in each process; torchrun sets the rendezvous address for ``env://``)::

    with distributed_session(LaunchInfo(rank=0, world_size=2), device="cpu") as group:
        result = fit(model, data, distributed=group, batch_size=128)
"""

from __future__ import annotations

import contextlib
import datetime
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from skier.errors import ConfigError, TrainingError, problem
from skier.train.batches import Batch, BatchSource, TensorBatches
from skier.train.compiled import uncompiled
from skier.train.device import resolve_device
from skier.train.group import ProcessGroup, shard_bounds

__all__ = [
    "Distributed",
    "LaunchInfo",
    "PeerLost",
    "ShardedBatches",
    "distributed_session",
    "init_distributed",
    "shard_bounds",
    "shutdown",
]


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in the job, as the launcher said.

    Under torchrun: ``rank=int($RANK)``, ``world_size=int($WORLD_SIZE)``,
    ``local_rank=int($LOCAL_RANK)`` and ``init_method="env://"`` (torch then reads the
    rendezvous address torchrun set). Tests use ``"file:///tmp/some-file"`` instead.

    >>> LaunchInfo(rank=1, world_size=2, local_rank=1).is_main
    False
    """

    rank: int
    world_size: int
    local_rank: int = 0
    init_method: str = "env://"
    timeout_s: float = 1800.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def problems(self) -> list[str]:
        out = []
        if self.world_size < 1:
            out.append(problem("world_size", ">= 1", self.world_size))
        if not 0 <= self.rank < max(self.world_size, 1):
            out.append(problem("rank", f"in [0, {self.world_size})", self.rank))
        if self.local_rank < 0:
            out.append(problem("local_rank", ">= 0", self.local_rank))
        return out


class Distributed(ProcessGroup):
    """The process group of a data-parallel run: :class:`ProcessGroup`'s interface over
    ``torch.distributed``.

    Built by :func:`init_distributed`; passed to ``fit(..., distributed=group)``.
    """

    def __init__(
        self, rank: int, world_size: int, local_rank: int, backend: str, device: torch.device
    ) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend, self.device = backend, device

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, {self.backend})"

    # --- collectives -----------------------------------------------------------------------
    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, in rank order, on rank 0 (``None`` elsewhere)."""
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def sum_counts(self, values: Sequence[torch.Tensor | float]) -> list[float]:
        """Sum of each value over the ranks, in one all-reduce of float64.

        Sums and counts (not means) are reduced, so the result is the metric over every example;
        float64 holds integer counts exactly up to 2**53.
        """
        f64 = torch.float64
        packed = torch.stack([torch.as_tensor(v, dtype=f64, device=self.device) for v in values])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        return [float(v) for v in packed.tolist()]

    def barrier(self) -> None:
        dist.barrier()

    # --- the model ---------------------------------------------------------------------------
    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        """DDP around ``model`` (already on its device); its constructor gives every rank
        rank 0's weights and buffers."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, trained: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        """DDP's ``no_sync``: gradients accumulate locally until a backward pass outside it."""
        ddp = uncompiled(trained)  # train.compile wraps the DDP module
        if isinstance(ddp, DistributedDataParallel):
            return ddp.no_sync()
        return contextlib.nullcontext()

    def sync_state(self, model: torch.nn.Module, *, buffers_only: bool = False) -> None:
        """Rank 0's buffers (and parameters) on every rank.

        Batch norm's running statistics are updated from each rank's own share; taking rank 0's
        after an epoch keeps the ranks identical, as DDP does before each forward pass.
        """
        tensors = list(model.buffers()) if buffers_only else list(model.state_dict().values())
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t, src=0)

    # --- data ----------------------------------------------------------------------------------
    def shard(self, batches: BatchSource, *, reduction: str) -> BatchSource:
        """This rank's share of every global batch of in-memory data (``problems`` refuses
        every other kind of batch source before training starts)."""
        if not isinstance(batches, TensorBatches):
            return batches
        return ShardedBatches(batches, self.rank, self.world_size, reduction=reduction)

    def device_for(self, device: torch.device) -> torch.device:
        """Each process trains on the GPU of its local rank (or the CPU)."""
        return self.device if device.type == "cuda" else device

    def loss_reduction(self, reduction: str) -> str:
        """Each rank sums its share's loss, then scales it (:class:`ShardedBatches`)."""
        return "sum"

    def problems(self, *, sampling: str, batch_size: int | str, device: str, in_memory: bool,
                 line_search: bool) -> list[str]:  # fmt: skip
        return check_settings(
            world_size=self.world_size, sampling=sampling, batch_size=batch_size, device=device,
            in_memory=in_memory, line_search=line_search,
        )  # fmt: skip


class ShardedBatches:
    """This rank's share of every global batch of an in-memory :class:`TensorBatches`.

    All ranks draw the same seeded permutation (their shuffle generators are seeded alike) and
    cut each global batch of ``B`` examples into contiguous shares. The loss of a share is
    summed, then scaled by ``data_scale`` — ``world_size / (B * targets)`` for ``mean``,
    ``world_size`` for ``sum`` — so DDP's average over the ranks is the single-process gradient
    of the whole batch, whatever the shares' sizes. An empty share (a last batch smaller than
    the world) contributes a zero gradient and keeps DDP's all-reduce in step.
    """

    def __init__(
        self, source: TensorBatches, rank: int, world_size: int, *, reduction: str
    ) -> None:
        self.source, self.rank, self.world_size = source, rank, world_size
        self.num_examples = source.num_examples
        self.per_target = max(math.prod(source.split.targets.shape[1:]), 1)
        self.mean = reduction == "mean"
        self.data_scale = float(world_size)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Batch]:
        src = self.source
        inputs, targets = src.split.inputs, src.split.targets
        order = src.order()
        size = src.batch_size
        stop = min(len(src) * size, self.num_examples)
        for start in range(0, stop, size):
            step = min(size, stop - start)  # this global batch
            lo, hi = shard_bounds(step, self.rank, self.world_size)
            lo, hi = start + lo, start + hi
            if self.mean:
                self.data_scale = self.world_size / (step * self.per_target)
            at: slice | torch.Tensor = slice(lo, hi) if order is None else order[lo:hi]
            w = src.split.weights[at] if src.split.weights is not None else None
            yield tuple(t[at] for t in inputs), targets[at], w

    def scaled(self, data_loss: torch.Tensor, penalty: torch.Tensor | None) -> torch.Tensor:
        """The loss this rank backpropagates; the penalty is the same on every rank, so DDP's
        average leaves it as it is."""
        loss = data_loss * self.data_scale
        return loss if penalty is None else loss + penalty

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.source.load_state_dict(state)


def check_settings(
    *,
    world_size: int,
    sampling: str,
    batch_size: int | str,
    device: str,
    in_memory: bool,
    line_search: bool,
) -> list[str]:
    """What a distributed run cannot do, one problem per line (empty: all is well)."""
    out = []
    if not in_memory:
        out.append(
            "train must be in-memory data (a Split or an (inputs, targets) pair) for distributed "
            "training; got a Dataset or DataLoader. Load it into tensors first."
        )
    if sampling == "informative":
        out.append(
            problem("train.sampling", "'uniform' or 'balanced' for distributed training",
                    sampling, "Informative sampling keeps per-example losses on one process.")
        )  # fmt: skip
    if line_search:
        out.append(
            "optim.name must not be an optimizer with a line search (lbfgs) for distributed "
            "training; each rank's closure returns the loss of its own share, so the searches "
            "would differ between ranks."
        )
    if isinstance(batch_size, int) and batch_size < world_size:
        out.append(
            problem("train.batch_size", f"at least the number of processes ({world_size})",
                    batch_size, "It is the global batch, split across the processes.")
        )  # fmt: skip
    if device.startswith("cuda:"):
        out.append(
            problem("train.device", "'cuda' or 'auto' for distributed training", device,
                    "Each process uses the GPU of its local rank.")
        )  # fmt: skip
    return out


def init_distributed(launch: LaunchInfo, device: str = "auto") -> Distributed:
    """Join the process group: NCCL when ``device`` resolves to CUDA (each process on the GPU
    of its local rank), gloo otherwise.

    The NCCL path is written for completeness but has not been run by skier's tests (they
    run on CPU).
    """
    problems = launch.problems()
    if problems:
        raise ConfigError(problems)
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                problem("local_rank", f"< the number of GPUs ({torch.cuda.device_count()})",
                        launch.local_rank, "Start at most one process per GPU.")
            )  # fmt: skip
        resolved = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(resolved)
        backend = "nccl"
    else:
        resolved, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": resolved} if backend == "nccl" else {}
        dist.init_process_group(
            backend,
            init_method=launch.init_method,
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=datetime.timedelta(seconds=launch.timeout_s),
            **kwargs,
        )
    return Distributed(launch.rank, launch.world_size, launch.local_rank, backend, resolved)


def shutdown(group: Distributed | None = None) -> None:
    """Leave the process group (every rank calls it once its work is done)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(launch: LaunchInfo, device: str = "auto") -> Iterator[Distributed]:
    """:func:`init_distributed`, then :func:`shutdown` however the block ends."""
    group = init_distributed(launch, device)
    try:
        yield group
        # Leave together: a rank that exits while rank 0 still writes its report can take the
        # rendezvous down under it (several machines).
        group.barrier()
    finally:
        shutdown(group)


class PeerLost(TrainingError):
    """This rank stopped because another one went away mid-collective (a consequence, not the
    cause: the launcher names the rank that failed first). A worker exits with status 3 for it,
    so the launcher can tell the two apart."""

    exit_code = 3
