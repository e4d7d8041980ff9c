"""What the flattened forward (``skier.models.flat``) saves in ``fit``: the same runs with it on
and off (``skier.models.flat.ENABLED``), in one process, paired rounds in alternating order.

Workloads at the suite's shapes: W3 (MLP 64-128-10 on digits, batch 64, 23 steps an epoch) and
W2 (MLP 784-256-128-10, batch 32, synthetic; ``--w2-samples`` examples). Each run's first
epoch is a warm-up and left out; the rest is timed per epoch at its end, in wall time and in
the thread's CPU time (``time.thread_time``: what other processes on a shared machine change
least). Also the forward pass alone and forward + backward, in µs a call, module against flat.
Every pair's training losses must be bit-identical (checked).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_flat_forward.py --rounds 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import skier.models.flat as flat
from skier.models import MLP
from skier.train import Callback, fit


class _Clock(Callback):
    stateful = False

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def on_epoch_end(self, state: Any, logs: Any) -> None:
        self.marks.append((time.perf_counter(), time.thread_time()))


def _data(workload: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    if workload == "W3":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    g = torch.Generator().manual_seed(0)
    return torch.randn(samples, 784, generator=g), torch.randint(0, 10, (samples,), generator=g)


SPECS = {"W3": ([128], 64), "W2": ([256, 128], 32)}


def _fit(workload: str, data: Any, epochs: int, enabled: bool) -> tuple[float, float, list[float]]:
    flat.ENABLED = enabled
    hidden, batch = SPECS[workload]
    torch.manual_seed(0)
    model = MLP(data[0].shape[1], 10, hidden_sizes=hidden)
    clock = _Clock()
    result = fit(model, data, epochs=epochs + 1, batch_size=batch, lr=1e-3, seed=0,
                 callbacks=[clock], progress="off")  # fmt: skip
    (w0, c0), (w1, c1) = clock.marks[0], clock.marks[-1]
    return (w1 - w0) / epochs, (c1 - c0) / epochs, result.history.column("loss")


def _per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - start) / calls * 1e6


def _micro(workload: str, rounds: int, calls: int) -> dict[str, Any]:
    hidden, batch = SPECS[workload]
    width = 64 if workload == "W3" else 784
    model = MLP(width, 10, hidden_sizes=hidden)
    forward = flat.flat_forward(model)
    assert forward is not None
    x, y = torch.randn(batch, width), torch.randint(0, 10, (batch,))
    loss = torch.nn.functional.cross_entropy

    def train(fn: Callable[..., Any]) -> Callable[[], None]:
        return lambda: loss(fn(x), y).backward()

    def no_grad(fn: Callable[..., Any]) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                fn(x)

        return call

    cases = {"forward_module": no_grad(model), "forward_flat": no_grad(forward),
             "fwd_bwd_module": train(model), "fwd_bwd_flat": train(forward)}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(rounds):
        for name in list(cases)[:: 1 if r % 2 == 0 else -1]:
            times[name].append(_per_call(cases[name], calls))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workloads", nargs="+", default=["W3", "W2"], choices=list(SPECS))
    parser.add_argument("--w3-epochs", type=int, default=20)
    parser.add_argument("--w2-epochs", type=int, default=1)
    parser.add_argument("--w2-samples", type=int, default=16_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "loadavg_start": _load(),
                           "rounds": args.rounds, "workloads": {}}  # fmt: skip
    for workload in args.workloads:
        data = _data(workload, args.w2_samples)
        epochs = args.w3_epochs if workload == "W3" else args.w2_epochs
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        ratios_wall, ratios_cpu = [], []
        _fit(workload, data, 1, True)  # warm-up of the process
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            got = {on: _fit(workload, data, epochs, on) for on in order}
            assert got[True][2] == got[False][2], "the flat forward changed the losses"
            for on in order:
                runs[on].append(got[on][:2])
            ratios_wall.append(got[True][0] / got[False][0])
            ratios_cpu.append(got[True][1] / got[False][1])
        med = {
            f"{k}_{what}": statistics.median(t[i] for t in runs[on]) * 1e3
            for on, k in ((True, "flat"), (False, "module"))
            for i, what in enumerate(("wall_ms_per_epoch", "cpu_ms_per_epoch"))
        }
        out["workloads"][workload] = {
            **med, "ratio_wall_median": statistics.median(ratios_wall),
            "ratio_cpu_median": statistics.median(ratios_cpu),
            "ratios_cpu": ratios_cpu, "ratios_wall": ratios_wall,
            "micro_us": _micro(workload, args.rounds, 2000 if workload == "W3" else 500),
        }  # fmt: skip
        print(workload, json.dumps(out["workloads"][workload], indent=1))
    flat.ENABLED = True
    out["loadavg_end"] = _load()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__() if os.name else ""


if __name__ == "__main__":
    main()
