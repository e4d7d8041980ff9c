"""A plain hand-written DDP loop on CPU (gloo), 2 processes x 1 thread: what one step costs
without skier, in parts — the reference RESULTS.md compares skier's distributed loop with.

The workload of ``bench_distributed.py``: an MLP 784-256-128-10, Adam (lr 1e-3), 64 examples a
rank (global batch 128) drawn from a fixed random tensor. Per rank and per step, three
measures, each the median over ``--steps`` steps after ``--warmup``:

- ``compute``: forward, backward and the Adam step with no communication (the model is not
  wrapped), while the other process does the same: what two processes cost each other alone;
- ``all_reduce``: one bare ``dist.all_reduce`` of a tensor the size of all the gradients;
- ``ddp``: the full step of ``torch.nn.parallel.DistributedDataParallel`` (backward all-reduces).

    python bench/ddp_hand_loop.py --json bench/results/DATE-ddp-hand-loop.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )  # fmt: skip


def _timed(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _rank(rank: int, init: str, out: str, steps: int, warmup: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(64, 784, generator=generator)
    y = torch.randint(10, (64,), generator=generator)

    def stepper(model: torch.nn.Module):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        return step

    plain = _model()
    size = sum(p.numel() for p in plain.parameters())
    flat = torch.zeros(size)
    dist.barrier()
    found = {"compute": _timed(stepper(plain), steps, warmup)}
    dist.barrier()
    found["all_reduce"] = _timed(lambda: dist.all_reduce(flat), steps, warmup)
    dist.barrier()
    ddp = torch.nn.parallel.DistributedDataParallel(_model())
    found["ddp"] = _timed(stepper(ddp), steps, warmup)
    gathered: list[dict[str, float] | None] = [None, None]
    dist.all_gather_object(gathered, found)
    if rank == 0:
        Path(out).write_text(json.dumps({"ranks": gathered, "gradient_floats": size}))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        init, out = Path(tmp) / "rendezvous", Path(tmp) / "found.json"
        mp.start_processes(_rank, args=(str(init), str(out), args.steps, args.warmup),
                           nprocs=2, start_method="spawn")  # fmt: skip
        found = json.loads(out.read_text())
    for key in ("compute", "all_reduce", "ddp"):
        values = [r[key] for r in found["ranks"]]
        print(f"{key:10s} ms a step (median, rank 0 / rank 1): "
              + " / ".join(f"{v:.2f}" for v in values))  # fmt: skip
    floats = found["gradient_floats"]
    print(f"gradient: {floats:,} float32 ({floats * 4 / 1e6:.2f} MB)")
    if args.json is not None:
        payload = {"torch": torch.__version__, "steps": args.steps, "warmup": args.warmup, **found}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
