"""What each of fit's fast paths (issue 22, "the loop") buys, in one process, against loop_b.

Workloads are the suite's (``suite.py``): W1, W2, W3. Variants, each with the same data, model,
optimizer (Adam, lr 1e-3) and seed, one call = ``--epochs`` epochs (no warm-up dropped: each
call builds its model and optimizer afresh, as the suite's processes do):

  loop_b           the suite's hand-written loop (for-loop Adam, ``x[idx]`` batches)
  skier            fit as it is: fused Adam, index_select batches
  skier_no_lean    fit with every step through ``optimizer.step()`` and ``zero_grad()`` (torch's
                   fused Adam with its Python: hooks, profiler records, argument checks) instead
                   of skier's direct call of the same kernel (``optim.fused.fused_adam_step``;
                   same bits) and its direct clearing of the gradients (``grads_to_none``)
  skier_no_lean_step  the same with only the Adam step through ``optimizer.step()``
  skier_no_fused   fit with ``optim.extra: {fused: false}`` (the for-loop Adam step)
  skier_no_gather  fit with batches gathered by ``x[idx]`` (advanced indexing)
  skier_no_fill    fit without torch's filling of uninitialized memory (on under deterministic
                   algorithms; measured, not taken: bench/RESULTS.md)
  skier_none       both fast paths taken away: the loop before issue 22

The variants are interleaved over rounds, after one warm-up round; each call is timed in the
process's CPU time (``time.thread_time``: less hurt than wall time by other processes on a
shared machine), the ratio to loop_b is taken within each round, and the median over rounds is
reported. A quiet machine's wall-clock verdict is ``suite.py``'s.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_loop_fastpaths.py W3 --epochs 30 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import skier.train.batches as batches
import skier.train.step as steps
import suite
from skier.data import load_data
from skier.models import build_model
from skier.train import Callback, TrainState, fit


class _NoFill(Callback):
    stateful = False

    def on_fit_start(self, state: TrainState) -> None:
        setattr(torch.utils.deterministic, "fill_uninitialized_memory", False)  # noqa: B010

    def on_fit_end(self, state: TrainState, logs: Any) -> None:
        setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)  # noqa: B010


def _indexing(inputs: Any, targets: Any, weights: Any, idx: torch.Tensor) -> Any:
    w = weights[idx] if weights is not None else None
    return tuple(t[idx] for t in inputs), targets[idx], w


def _never(optimizer: torch.optim.Optimizer) -> bool:
    return False


def _zero_grad(optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)


def variants(workload: str, epochs: int) -> dict[str, Callable[[], None]]:
    config = suite._run_config(workload, False)
    data = load_data(config.data)
    x, y, batch = data.train.inputs[0], data.train.targets, suite._spec(workload, False)["batch"]

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(config.model, input_shape=data.input_shape, output_size=data.output_size)

    def loop_b() -> None:
        m = model()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            total = torch.zeros(())
            for i in torch.randperm(len(y), generator=generator).split(batch):
                xb, yb = x[i], y[i]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(m(xb), yb)
                loss.backward()
                opt.step()
                total += loss.detach() * len(yb)
            float(total)

    def skier(
        fused: bool = True,
        gather: bool = True,
        fill: bool = True,
        lean: bool = True,
        lean_zero: bool = True,
    ) -> Callable[[], None]:
        def run() -> None:
            fast, direct, clear = batches._gather, steps.fused_adam_step, steps.grads_to_none
            batches._gather = fast if gather else _indexing  # type: ignore[assignment]
            steps.fused_adam_step = direct if lean else _never  # type: ignore[assignment]
            steps.grads_to_none = clear if lean_zero else _zero_grad  # type: ignore[assignment]
            try:
                fit(model(), data.train, epochs=epochs, batch_size=batch, lr=1e-3, seed=0,
                    progress="off", callbacks=[] if fill else [_NoFill()],
                    **({} if fused else {"extra": {"fused": False}}))  # fmt: skip
            finally:
                batches._gather, steps.fused_adam_step = fast, direct
                steps.grads_to_none = clear

        return run

    return {
        "loop_b": loop_b,
        "skier": skier(),
        "skier_no_lean": skier(lean=False, lean_zero=False),
        "skier_no_lean_step": skier(lean=False),
        "skier_no_fused": skier(fused=False),
        "skier_no_gather": skier(gather=False),
        "skier_no_fill": skier(fill=False),
        "skier_none": skier(fused=False, gather=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=("W1", "W2", "W3"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread",
                        help="the main thread's CPU time (default), or wall time: at 2 or more "
                        "torch threads only wall time counts the other threads' work")  # fmt: skip
    parser.add_argument("--only", nargs="+", help="only these variants (loop_b always)")
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    calls = variants(args.workload, args.epochs)
    if args.only:
        calls = {k: v for k, v in calls.items() if k == "loop_b" or k in args.only}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # a warm-up round, not counted (the first call pays start-up)
        call()
    for _ in range(args.rounds):
        for name, call in calls.items():
            t0 = clock()
            call()
            times[name].append(clock() - t0)
    out: dict[str, Any] = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times["loop_b"], strict=True)]
        out[name] = {"cpu_s": ts, "ratio_per_round": ratios, "ratio": statistics.median(ratios)}
        shown = [round(r, 3) for r in ratios]
        print(f"{args.workload} {name:16s} median ratio to loop_b {out[name]['ratio']:.3f} {shown}")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else ""
    print(f"load average at the end: {load}")
    if args.json:
        record = {"workload": args.workload, "epochs": args.epochs, "rounds": args.rounds,
                  "clock": args.clock,
                  "threads": torch.get_num_threads(), "load_end": load,
                  "variants": out}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
