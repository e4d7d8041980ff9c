"""What recording gradient flow costs: ``fit`` with ``GradientFlow(every)`` against ``fit`` without.

Workload as in ``bench_fit.py``: ``synthetic`` 60,000 x 784, 10 classes; MLP 784-256-128-10
(ReLU), built once and deep-copied so every call starts from the same weights; Adam, lr 1e-3,
batch 128 (469 steps per epoch). Variants, each a ``fit`` call of one warm-up epoch (discarded)
plus ``--epochs`` measured ones:

- ``none``: ``fit(...)`` with no callbacks at all;
- ``off``: the callbacks the runner builds for a config with ``diagnostics.gradient_flow_every=0``
  (checked to be an empty list: the option adds nothing, so the code path is the same as
  ``none``, and the two differ only by noise — which this measures);
- ``every=100``, ``every=10``, ``every=1``: ``callbacks=[GradientFlow(every)]``.

Calls are interleaved (the order rotates every round) so machine noise hits every variant. The
machine may be shared: like ``bench_fit.py``, each call records the share of the CPUs other
processes took while it ran (``/proc/stat``) and waits (up to ``--quiet-wait`` s) for a quiet
machine first; calls over ``--max-foreign`` are marked contended and their round is repeated
while the time budget lasts. Statistics use the clean calls (all calls if none is clean, said
so), and report the median and the min of the per-epoch times. All variants must produce
bitwise-identical losses (the callback only reads).

Usage::

    python bench/bench_gradient_flow.py            # full run, about 2-4 minutes on 2 cores
    python bench/bench_gradient_flow.py --quick    # smoke test, seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# bench/ is not a package: run as a script, its folder is on sys.path (contention tools)
from bench_fit import (
    LR,
    SEED,
    Meter,
    machine,
    make_data,
    make_model,
    wait_quiet,
)
from skier.config import RunConfig
from skier.data import Split
from skier.record import RunDir
from skier.runner import _callbacks
from skier.train import Callback, GradientFlow, fit

BATCH = 128


def runner_callbacks(every: int) -> list[Callback]:
    """The callbacks ``skier train`` adds for ``diagnostics.gradient_flow_every=every`` (with
    early stopping, checkpoints and progress off, so that only the option is left)."""
    config = RunConfig.model_validate(
        {
            "diagnostics": {"gradient_flow_every": every},
            "early_stopping": {"enabled": False},
            "checkpoint": {"enabled": False},
            "train": {"progress": "off"},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        return list(_callbacks(config, RunDir(tmp), False, None))


def variants() -> dict[str, list[Callback] | int]:
    """Variant name -> its callbacks (a list), or ``every`` for a fresh GradientFlow per call."""
    off = runner_callbacks(0)
    on = runner_callbacks(10)
    if off != [] or [type(c) for c in on] != [GradientFlow]:
        raise SystemExit(f"runner callbacks: off gives {off}, on gives {on}; expected [] and one")
    return {"none": [], "off": off, "every=100": 100, "every=10": 10, "every=1": 1}


def one_call(
    base: torch.nn.Module, train: Split, spec: list[Callback] | int, epochs: int
) -> dict[str, Any]:
    model = copy.deepcopy(base)
    callbacks: Sequence[Callback] = [GradientFlow(spec)] if isinstance(spec, int) else spec
    t0 = time.perf_counter()
    result = fit(
        model, train, epochs=1 + epochs, batch_size=BATCH, optimizer="adam", lr=LR,
        callbacks=callbacks, progress="off", seed=SEED, device="cpu",
    )  # fmt: skip
    wall = time.perf_counter() - t0
    records = len(result.history.steps.get("grad_flow_step", []))
    return {
        "epoch_times": result.history.column("epoch_time"),
        "losses": result.history.column("loss"),
        "wall": wall,
        "records": records,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    specs = variants()
    names = list(specs)
    train, _ = make_data(args.samples, 0)
    base = make_model()
    tiny = Split((train.inputs[0][:512],), train.targets[:512])
    for spec in specs.values():  # lazy imports and kernel set-up, once, untimed
        one_call(base, tiny, spec, 1)
    deadline = time.perf_counter() + args.budget
    calls: list[dict[str, Any]] = []
    clean_rounds = tries = 0
    while clean_rounds < args.rounds and tries < args.rounds + args.extra_rounds:
        if tries >= args.rounds and time.perf_counter() > deadline:
            print("  out of time budget: no more retries", flush=True)
            break
        shift = tries % len(names)
        order = names[shift:] + names[:shift]
        tries += 1
        contended = False
        for name in order:
            wait_quiet(args.quiet_wait, args.max_foreign)
            with Meter().measure() as meter:
                call = one_call(base, train, specs[name], args.epochs)
            call.update(variant=name, round=tries, foreign=meter.foreign)
            contended |= meter.foreign > args.max_foreign
            calls.append(call)
            print(
                f"  round {tries} {name:>9}: epochs "
                + " ".join(f"{t:.3f}" for t in call["epoch_times"])
                + f" s (first discarded); others used {meter.foreign:.0%} of the CPUs"
                + ("  CONTENDED" if meter.foreign > args.max_foreign else ""),
                flush=True,
            )
        clean_rounds += not contended
    clean = [c for c in calls if c["foreign"] <= args.max_foreign]
    per: dict[str, Any] = {}
    for name in names:
        mine = [c for c in clean if c["variant"] == name] or [
            c for c in calls if c["variant"] == name
        ]
        per[name] = {
            "epoch": _stats([t for c in mine for t in c["epoch_times"][1:]]),
            "wall": _stats([c["wall"] for c in mine]),
            "records_per_call": mine[0]["records"],
            "clean_calls": sum(c["variant"] == name for c in clean),
        }
    ref = per["off"]["epoch"]
    steps_per_epoch = -(-args.samples // BATCH)
    for name in names:
        e = per[name]["epoch"]
        per[name]["ratio"] = e["median"] / ref["median"]
        per[name]["min_ratio"] = e["min"] / ref["min"]
        every = specs[name]
        records_per_epoch = steps_per_epoch // every if isinstance(every, int) else 0
        if records_per_epoch:  # cost per recorded step, from the medians
            per[name]["us_per_record"] = (e["median"] - ref["median"]) / records_per_epoch * 1e6
    first = {c["variant"]: c["losses"] for c in calls if c["round"] == 1}
    same = all(v == first["none"] for v in first.values())
    return {
        "machine": machine(),
        "samples": args.samples,
        "batch_size": BATCH,
        "steps_per_epoch": steps_per_epoch,
        "epochs_per_call": args.epochs,
        "rounds": tries,
        "clean_rounds": clean_rounds,
        "variants": per,
        "same_losses": same,
        "calls": calls,
    }


def micro(threads: int, repeats: int = 7, calls: int = 100) -> dict[str, float]:
    """Microseconds per call, best of ``repeats`` timings (noise only ever adds time, so the
    minimum holds up on a busy machine): one training step at batch 128, and GradientFlow's
    work on a recorded step with every=1 (record + the next snapshot, flush amortized)."""
    import torch.nn.functional as F

    from skier.history import History
    from skier.train import TrainState

    torch.set_num_threads(threads)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(SEED)
    x, y = torch.randn(BATCH, 784, generator=g), torch.randint(0, 10, (BATCH,), generator=g)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    state = TrainState(
        model, epochs=1, task="classification", history=History(), available_keys=frozenset()
    )
    flow = GradientFlow(every=1)
    flow.on_fit_start(state)

    def record() -> None:
        state.step += 1
        flow.on_batch_end(state)

    def best(fn: Any, n: int) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times.append(time.perf_counter() - t0)
            flow.on_epoch_end(state, {})  # the flush, once per "epoch" of n records
        return min(times) / n * 1e6

    train_step()
    step_us, record_us = best(train_step, calls // 4), best(record, calls)
    return {"train_step_us": step_us, "record_us": record_us, "ratio": record_us / step_us}


def print_table(out: dict[str, Any]) -> None:
    print(
        f"\nbatch {out['batch_size']}, {out['steps_per_epoch']} steps/epoch; "
        f"{out['clean_rounds']}/{out['rounds']} clean rounds; "
        f"losses identical across variants: {out['same_losses']}"
    )
    head = (
        f"{'variant':<10}{'median s/ep':>12}{'min s/ep':>10}{'max s/ep':>10}"
        f"{'ratio':>8}{'min ratio':>10}{'us/record':>10}{'n':>4}"
    )
    print(head)
    print("-" * len(head))
    for name, v in out["variants"].items():
        e = v["epoch"]
        per_record = f"{v['us_per_record']:.0f}" if "us_per_record" in v else "-"
        print(
            f"{name:<10}{e['median']:>12.3f}{e['min']:>10.3f}{e['max']:>10.3f}"
            f"{v['ratio']:>8.3f}{v['min_ratio']:>10.3f}{per_record:>10}{e['n']:>4}"
        )
    print("ratio: median epoch / median epoch of 'off'; min ratio: fastest / fastest of 'off'")
    m = out["micro"]
    print(
        f"micro (best of 7): a training step {m['train_step_us']:.0f} us; GradientFlow on a "
        f"recorded step (every=1: record + snapshot) {m['record_us']:.0f} us = "
        f"{m['ratio']:.1%} of a step; at every=k about {m['ratio']:.1%}/k"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2, help="measured epochs per call")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of all variants")
    ap.add_argument("--extra-rounds", type=int, default=3, help="retries for contended rounds")
    ap.add_argument("--samples", type=int, default=60_000, help="training examples")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--max-foreign", type=float, default=0.10, help="contention threshold")
    ap.add_argument("--quiet-wait", type=float, default=5.0, help="max seconds to wait per call")
    ap.add_argument("--budget", type=float, default=200.0, help="seconds; then no more retries")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (seconds)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.rounds, args.extra_rounds, args.epochs = 3_000, 1, 0, 1
        args.quiet_wait, args.max_foreign = 0.0, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = run(args)
    out["micro"] = micro(args.threads)
    out["seconds"] = time.perf_counter() - started
    print_table(out)
    print(f"total {out['seconds']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["same_losses"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
