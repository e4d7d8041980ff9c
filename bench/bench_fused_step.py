"""What skier's direct fused Adam step and gradient clearing (``skier.optim.fused``) save per
step against torch's ``optimizer.step()`` and ``zero_grad(set_to_none=True)``, at the suite's
MLP shapes (W1/W2: 784-256-128-10, six parameters; W3: 64-128-10, four).

Each call is timed over ``--calls`` calls in the thread's CPU time, the four calls interleaved
over ``--rounds`` rounds; medians in µs a call. The step's gradients are fixed (the update's
cost does not depend on their values); the clearing's are put back before each call.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_fused_step.py --rounds 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from skier.optim.fused import fused_adam_step, grads_to_none

SHAPES = {
    "W1": [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)],
    "W3": [(128, 64), (128,), (10, 128), (10,)],
}


def _calls(shapes: list[tuple[int, ...]]) -> dict[str, Callable[[], None]]:
    params = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    grads = [torch.randn_like(p) for p in params]
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()  # the state, made by torch's step

    def put_back() -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = g

    def zero_grad() -> None:
        put_back()
        opt.zero_grad(set_to_none=True)

    def direct_clear() -> None:
        put_back()
        grads_to_none(opt)

    return {
        "torch_step": opt.step,
        "direct_step": lambda: None if fused_adam_step(opt) else opt.step(),
        "torch_zero_grad": zero_grad,
        "direct_clear": direct_clear,
        "put_back_only": put_back,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    record: dict[str, object] = {"threads": torch.get_num_threads()}
    for workload, shapes in SHAPES.items():
        calls = _calls(shapes)
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds + 1):  # the first round warms up, not counted
            for name, call in calls.items():
                t0 = time.thread_time()
                for _ in range(args.calls):
                    call()
                times[name].append((time.thread_time() - t0) / args.calls * 1e6)
        medians = {name: statistics.median(ts[1:]) for name, ts in times.items()}
        record[workload] = medians
        shown = ", ".join(f"{k} {v:.1f}" for k, v in medians.items())
        print(f"{workload} (µs a call, median of {args.rounds}): {shown}")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else ""
    record["load_end"] = load
    print(f"load average at the end: {load}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
