"""Starting the processes of a data-parallel run: torchrun's own launcher, behind one call.

The training processes themselves join their group with
:func:`skier.train.distributed.distributed_session`; this module only starts them, waits for
them and says which rank failed first.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from skier.errors import TrainingError
from skier.train.distributed import PeerLost

__all__ = ["RankFailed", "launch"]


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
