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
single-process path never imports this module.

Example (in each process; torchrun sets the rendezvous address for ``env://``)::

    with distributed_session(LaunchInfo(rank=0, world_size=2), device="cpu") as group:
        result = fit(model, data, distributed=group, batch_size=128)
"""

from __future__ import annotations

import contextlib
import datetime
import math
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from skier.data.types import Split
from skier.errors import ConfigError, TrainingError, problem
from skier.train.batches import Batch, TensorBatches
from skier.train.setup import resolve_device
from skier.train.state import CheckpointRequest, TrainState

__all__ = [
    "Distributed",
    "LaunchInfo",
    "PeerLost",
    "RankFailed",
    "ShardedBatches",
    "distributed_session",
    "init_distributed",
    "launch",
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


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous ``[lo, hi)`` share of ``n`` items for ``rank``; the first ``n %
    world_size`` ranks get one more, so the shares cover ``n`` exactly, with no padding.

    >>> [shard_bounds(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class Distributed:
    """The process group of a data-parallel run, and the few collectives ``fit`` needs.

    Built by :func:`init_distributed`; passed to ``fit(..., distributed=group)``.
    """

    def __init__(
        self, rank: int, world_size: int, local_rank: int, backend: str, device: torch.device
    ) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend, self.device = backend, device

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, {self.backend})"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the record, checkpoints, figures and report."""
        return self.rank == 0

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
    def shard(self, batches: TensorBatches, *, reduction: str) -> ShardedBatches:
        return ShardedBatches(batches, self.rank, self.world_size, reduction=reduction)

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: Split, *, classification: bool, batch_size: int = 4096
    ) -> dict[str, float]:
        """Loss (and error, accuracy) over the whole ``split``: each rank evaluates its
        contiguous share, and the sums and counts are all-reduced."""
        lo, hi = shard_bounds(len(split), self.rank, self.world_size)
        was_training = model.training
        model.eval()
        try:
            loss_sum = torch.zeros((), dtype=torch.float64, device=split.device)
            wrong = torch.zeros((), dtype=torch.int64, device=split.device)
            per_target = max(math.prod(split.targets.shape[1:]), 1)
            for start in range(lo, hi, batch_size):
                stop = min(start + batch_size, hi)
                inputs = tuple(t[start:stop] for t in split.inputs)
                y = split.targets[start:stop]
                out = model(*inputs).float()
                if classification:
                    loss_sum += F.cross_entropy(out, y, reduction="sum")
                    wrong += (out.argmax(dim=1) != y).sum()
                else:
                    loss_sum += F.mse_loss(out, y.reshape(out.shape), reduction="sum") / per_target
        finally:
            model.train(was_training)
        total, wrong_total, n = self.sum_counts([loss_sum, wrong, hi - lo])
        result = {"loss": total / max(n, 1)}
        if classification:
            result["error"] = wrong_total / max(n, 1)
            result["accuracy"] = 1.0 - result["error"]
        return result

    # --- decisions -----------------------------------------------------------------------------
    def follow_main(self, state: TrainState) -> None:
        """Rank 0's stop request, non-finite verdict and checkpoint requests on every rank.

        Every rank runs the callbacks on the same all-reduced logs, so they would agree anyway;
        taking rank 0's word makes sure no rank ever enters a collective the others skip.
        """
        mine = (
            state.requests.stop_reason,
            state.diverged,
            [(r.path, r.tag) for r in state.requests.checkpoints],
        )
        reason, diverged, requests = self.broadcast(mine)
        state.requests.stop_reason, state.diverged = reason, diverged
        state.requests.checkpoints = [CheckpointRequest(p, t) for p, t in requests]

    def checkpoint_payload(self, payload: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint rank 0 writes: rank 0's state plus every rank's RNG states (a
        collective: every rank calls it, only rank 0 gets a payload to write)."""
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
            if order is None:
                yield tuple(t[lo:hi] for t in inputs), targets[lo:hi], None
            else:
                idx = order[lo:hi]
                yield tuple(t[idx] for t in inputs), targets[idx], None

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
    needs_closure: bool,
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
    if needs_closure:
        out.append(
            "optim.name must not be an optimizer that needs a closure (lbfgs) for distributed "
            "training; its line search would differ between ranks."
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


class RankFailed(TrainingError):
    """A rank of a launched job failed; the launcher stopped the others.

    ``rank`` is the first rank that failed and ``exit_code`` what the command exits with: 2 when
    that rank refused bad input (it printed why), else 1.
    """

    def __init__(self, message: str, *, rank: int, exit_code: int = 1) -> None:
        super().__init__(message)
        self.rank, self.exit_code = rank, exit_code


def launch(
    worker_args: Sequence[str],
    *,
    nproc: int,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
) -> None:
    """Run ``python -m skier WORKER_ARGS`` as ``nproc`` processes on this machine, through
    torchrun's own launcher; return when every rank has finished.

    One machine (``nnodes=1``, no endpoint) rendezvous on a free local port. Several machines use
    torchrun's static rendezvous: node 0 hosts it at ``rdzv_endpoint`` (``HOST:PORT``) and every
    node gives its ``node_rank``. There are no in-job restarts (``--max-restarts 0``): when a rank
    fails torchrun stops the others, and this raises :class:`RankFailed` naming the first one;
    resuming from the last checkpoint is the recovery path.

    Example::

        launch(["train", "examples/digits_mlp.yaml", "--distributed-worker"], nproc=2)
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    argv = [f"--nproc-per-node={nproc}", f"--nnodes={nnodes}", "--max-restarts=0"]
    if rdzv_endpoint is None:
        argv.append("--standalone")
    else:
        argv += ["--rdzv-backend=static", f"--rdzv-endpoint={rdzv_endpoint}",
                 f"--node-rank={node_rank}"]  # fmt: skip
    argv += ["--module", "skier", *worker_args]
    try:
        run(parse_args(argv))
    except SignalException:  # Ctrl-C or a kill of the launcher: the ranks were stopped too
        raise KeyboardInterrupt from None
    except ChildFailedError as exc:
        # Failure times are whole seconds, so the rank that failed first often ties with the
        # ranks that failed because of it: those that lost contact (status 3) or that torchrun
        # stopped (SIGTERM) come last.
        failures = exc.failures
        consequence = {PeerLost.exit_code: 2, -int(signal.SIGTERM): 1}
        rank = min(failures, key=lambda r: (
            consequence.get(failures[r].exitcode, 0), failures[r].timestamp, r
        ))  # fmt: skip
        failure = failures[rank]
        if failure.exitcode < 0:
            how = f"was killed by signal {failure.signal_name()}"
        else:
            how = f"exited with status {failure.exitcode}"
        raise RankFailed(
            f"rank {rank} {how}; torchrun stopped the other ranks.",
            rank=rank,
            exit_code=2 if failure.exitcode == 2 else 1,
        ) from None
