"""Benchmark ``skier.train.fit`` against a plain hand-written PyTorch loop, in the same process.

Same data (``synthetic``, 784 features, 10 classes), same model (an MLP 784-256-128-10 with
ReLU, built once and deep-copied, so both loops start from identical weights), same optimizer
(Adam, lr 1e-3), same seeded shuffling. Plain and skier runs are interleaved (the order
alternates every round) so machine noise hits both.

Every run ("call") trains a fresh copy for ``1 + epochs`` epochs; the first (warm-up) epoch is
discarded. The headline compares the median per-epoch time of each loop: skier's from
``result.history.column("epoch_time")``, the plain loop's timed the same way (around one epoch,
from the permutation to the epoch's loss as a Python float). Wall time around each whole call is
reported too.

The machine may be shared: each call records the CPU time other processes took while it ran
(from ``/proc/stat``). A call during which others took more than ``--max-foreign`` of the
machine is marked contended and its round is repeated (up to ``--extra-rounds`` times); the
statistics use the clean calls only. Before each call the benchmark waits (up to
``--quiet-wait`` seconds) for the machine to be quiet.

Usage::

    python bench/bench_fit.py                       # the full benchmark (a few minutes)
    python bench/bench_fit.py --quick               # a smoke test (seconds)
    python bench/bench_fit.py --batch-sizes 128 --epochs 5 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from skier.data import Split
from skier.data.datasets import synthetic
from skier.models import MLP
from skier.train import fit

FEATURES, CLASSES, HIDDEN, LR, SEED = 784, 10, (256, 128), 1e-3, 0
TARGETS = {128: 0.05, 32: 0.15}  # allowed relative overhead of skier's epoch time (the issue)
DEFAULT_EPOCHS = {128: 2, 32: 1}  # measured epochs per call (plus one warm-up epoch)


# --------------------------------------------------------------------------------------------
# Machine load: how much CPU did *other* processes take while we ran?
# --------------------------------------------------------------------------------------------
_HZ = os.sysconf("SC_CLK_TCK")
_NCPU = os.cpu_count() or 1


def _busy_seconds() -> float:
    """CPU seconds spent non-idle by the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _HZ  # user..steal; guest is already counted in user


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Meter:
    """Wall time of a block and the share of the machine other processes used meanwhile."""

    wall: float = 0.0
    foreign: float = 0.0  # CPU seconds of other processes / (wall * cores)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Meter]:
        have_proc = Path("/proc/stat").exists()
        busy0 = _busy_seconds() if have_proc else 0.0
        own0, t0 = _own_seconds(), time.perf_counter()
        yield self
        self.wall = time.perf_counter() - t0
        if have_proc:
            others = (_busy_seconds() - busy0) - (_own_seconds() - own0)
            self.foreign = max(others, 0.0) / max(self.wall * _NCPU, 1e-9)


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Sleep in 0.5 s windows until other processes use < ``threshold`` of the machine."""
    waited = 0.0
    while waited < max_wait:
        with Meter().measure() as m:
            time.sleep(0.5)
        waited += m.wall
        if m.foreign < threshold:
            break
    return waited


class Contended(Exception):
    """A call was aborted because other processes took the CPUs."""


class Watchdog:
    """Aborts the call (raises :class:`Contended` in the main thread, through ``SIGUSR1``) when,
    in any 1-second window, other processes take more than ``limit`` of the machine: with 2
    cores and 2 torch threads a busy neighbour slows an epoch several-fold, and such a call would
    be discarded anyway. Must be entered from the main thread."""

    def __init__(self, limit: float) -> None:
        self.limit, self.peak = limit, 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._previous: Any = None

    def _watch(self) -> None:
        busy0, own0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        while not self._stop.wait(1.0):
            busy, own, t = _busy_seconds(), _own_seconds(), time.perf_counter()
            share = max((busy - busy0) - (own - own0), 0.0) / max((t - t0) * _NCPU, 1e-9)
            busy0, own0, t0 = busy, own, t
            self.peak = max(self.peak, share)
            with self._lock:
                if share > self.limit and not self._stop.is_set():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    return

    def _abort(self, signum: int, frame: object) -> None:
        raise Contended(f"others took {self.peak:.0%} of the CPUs for a second")

    def __enter__(self) -> Watchdog:
        if Path("/proc/stat").exists() and self.limit < 1.0:
            self._previous = signal.signal(signal.SIGUSR1, self._abort)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with self._lock:
                self._stop.set()
        finally:
            if self._previous is not None:
                self._thread.join()
                signal.signal(signal.SIGUSR1, self._previous)


def guarded(fn: Callable[[], Any], args: argparse.Namespace) -> tuple[Any, float]:
    """Wait for a quiet machine, run ``fn``; return its value and the foreign CPU share.

    Raises :class:`Contended` when the watchdog aborted it."""
    wait_quiet(args.quiet_wait, args.max_foreign)
    with Meter().measure() as m, Watchdog(args.abort_foreign):
        value = fn()
    return value, m.foreign


# --------------------------------------------------------------------------------------------
# Data, model and the two loops
# --------------------------------------------------------------------------------------------
def make_data(samples: int, val_samples: int) -> tuple[Split, Split | None]:
    raw = synthetic(samples=samples, features=FEATURES, classes=CLASSES, seed=SEED)
    train = Split((torch.from_numpy(raw.x_num).float(),), torch.from_numpy(raw.y).long())
    if not val_samples:
        return train, None
    # Validation data only has to cost what 10,000 examples cost: a second draw (its own
    # teacher, so its labels do not match the training task; timing is all that matters here).
    v = synthetic(samples=val_samples, features=FEATURES, classes=CLASSES, seed=SEED + 1)
    return train, Split((torch.from_numpy(v.x_num).float(),), torch.from_numpy(v.y).long())


def make_model() -> torch.nn.Module:
    torch.manual_seed(SEED)
    return MLP(FEATURES, CLASSES, hidden_sizes=HIDDEN)


@torch.no_grad()
def plain_evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Loss and error over a whole split in eval mode, in chunks of 4096 (as skier does)."""
    model.eval()
    loss_sum, wrong = 0.0, 0
    for i in range(0, len(x), 4096):
        out = model(x[i : i + 4096])
        loss_sum += F.cross_entropy(out, y[i : i + 4096], reduction="sum").item()
        wrong += int((out.argmax(dim=1) != y[i : i + 4096]).sum())
    model.train()
    return loss_sum / len(x), wrong / len(x)


@dataclass
class Run:
    """One call: ``1 + epochs`` epochs of one loop on a fresh copy of the model."""

    loop: str
    epoch_times: list[float]  # all epochs, the warm-up epoch first
    losses: list[float]
    wall: float = 0.0
    foreign: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> list[float]:
        return self.epoch_times[1:]


def plain_run(base: torch.nn.Module, train: Split, val: Split | None, b: int, epochs: int) -> Run:
    """What a careful person writes by hand (see RESULTS.md for exactly what it does)."""
    model = copy.deepcopy(base)
    (x,), y = train.inputs, train.targets
    n, times, losses = len(y), [], []
    started = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, b):
            idx = perm[i : i + b]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / n)
        if val is not None:
            plain_evaluate(model, val.inputs[0], val.targets)
        times.append(time.perf_counter() - t0)
    return Run("plain", times, losses, time.perf_counter() - started)


def skier_run(base: torch.nn.Module, train: Split, val: Split | None, b: int, epochs: int) -> Run:
    model = copy.deepcopy(base)
    started = time.perf_counter()
    result = fit(
        model, train, val, epochs=epochs, batch_size=b, optimizer="adam", lr=LR,
        progress="off", seed=SEED, device="cpu",
    )  # fmt: skip
    wall = time.perf_counter() - started
    return Run("skier", result.history.column("epoch_time"), result.history.column("loss"), wall)


LOOPS: dict[str, Callable[..., Run]] = {"plain": plain_run, "skier": skier_run}


# --------------------------------------------------------------------------------------------
# Interleaved comparison
# --------------------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def compare(
    base: torch.nn.Module,
    train: Split,
    val: Split | None,
    b: int,
    epochs: int,
    args: argparse.Namespace,
    label: str,
) -> dict[str, Any]:
    runs: list[list[Run]] = []  # the complete rounds, one (plain, skier) pair each
    aborted: list[dict[str, Any]] = []
    clean_rounds = tries = 0
    while clean_rounds < args.rounds and tries < args.rounds + args.extra_rounds:
        if tries >= args.rounds and time.perf_counter() > args.deadline:
            print(f"  [{label} b={b}] out of time budget: no more retries", flush=True)
            break
        order = ("plain", "skier") if tries % 2 == 0 else ("skier", "plain")
        tries += 1
        pair = []
        for name in order:
            head = f"  [{label} b={b}] round {tries} {name:5s}:"
            try:
                run, foreign = guarded(
                    lambda name=name: LOOPS[name](base, train, val, b, 1 + epochs), args
                )
                run.foreign = foreign
            except Contended as exc:
                print(f"{head} aborted, {exc}", flush=True)
                aborted.append({"loop": name, "round": tries, "why": str(exc)})
                break
            pair.append(run)
            flag = "  CONTENDED" if run.foreign > args.max_foreign else ""
            print(
                f"{head} epochs "
                + " ".join(f"{t:.3f}" for t in run.epoch_times)
                + f" s (first discarded); wall {run.wall:.2f} s; "
                f"others used {run.foreign:.0%} of the CPUs{flag}",
                flush=True,
            )
        if len(pair) == 2:
            runs.append(pair)
            clean_rounds += all(r.foreign <= args.max_foreign for r in pair)
    if not runs:
        raise SystemExit(f"[{label} b={b}]: every round was aborted; the machine is too busy")
    clean = [p for p in runs if all(r.foreign <= args.max_foreign for r in p)]
    used = clean or runs  # if every complete round was contended, report them (and say so)
    per: dict[str, dict[str, Any]] = {}
    for name in LOOPS:
        mine = [r for p in used for r in p if r.loop == name]
        per[name] = {
            "epoch": _stats([t for r in mine for t in r.measured]),
            "wall": _stats([r.wall for r in mine]),
        }
    paired = [
        statistics.median(next(r for r in p if r.loop == "skier").measured)
        / statistics.median(next(r for r in p if r.loop == "plain").measured)
        for p in used
    ]
    first = runs[0]
    same_losses = all(
        abs(a - c) <= 1e-6 * max(1.0, abs(a))
        for a, c in zip(
            next(r for r in first if r.loop == "plain").losses,
            next(r for r in first if r.loop == "skier").losses,
            strict=True,
        )
    )
    ratio = per["skier"]["epoch"]["median"] / per["plain"]["epoch"]["median"]
    min_ratio = per["skier"]["epoch"]["min"] / per["plain"]["epoch"]["min"]
    target = TARGETS.get(b) if val is None else None
    return {
        "label": label,
        "batch_size": b,
        "epochs_per_call": epochs,
        "validation": len(val) if val is not None else 0,
        "rounds": len(runs),
        "clean_rounds": len(clean),
        "aborted_calls": aborted,
        "plain": per["plain"],
        "skier": per["skier"],
        "ratio": ratio,
        "min_ratio": min_ratio,
        "paired_ratios": paired,
        "paired_ratio": statistics.median(paired),
        "wall_ratio": per["skier"]["wall"]["median"] / per["plain"]["wall"]["median"],
        "target": target,
        "target_met": None if target is None else ratio <= 1.0 + target,
        "same_losses": same_losses,
        "calls": [
            {"loop": r.loop, "epoch_times": r.epoch_times, "wall": r.wall, "foreign": r.foreign}
            for p in runs
            for r in p
        ],
    }


# --------------------------------------------------------------------------------------------
# Peak memory, each loop in its own subprocess
# --------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def memory_child(loop: str, samples: int, b: int) -> None:
    """Run in a subprocess: peak RSS growth while training (1 + 1 epochs) above the RSS held
    once data and model exist. The peak is reset first (``/proc/self/clear_refs``), so the
    data generation's own peak does not hide the training's."""
    train, _ = make_data(samples, 0)
    base = make_model()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    LOOPS[loop](base, train, None, b, 2)
    peak = _status_kib("VmHWM")
    print(json.dumps({"rss_before_mib": before / 1024, "peak_delta_mib": (peak - before) / 1024}))


def memory(samples: int, batch_sizes: list[int], threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for b in batch_sizes:
        for loop in LOOPS:
            cmd = [sys.executable, __file__, "--memory-child", loop, "--samples", str(samples)]
            cmd += ["--threads", str(threads)]
            proc = subprocess.run(
                [*cmd, "--batch-sizes", str(b)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                out[f"{loop}_b{b}"] = {"error": proc.stderr.strip().splitlines()[-1:]}
                continue
            out[f"{loop}_b{b}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# --------------------------------------------------------------------------------------------
# Where does the per-batch time go? (--profile)
# --------------------------------------------------------------------------------------------
def _ablation_epoch(variant: str, ctx: dict[str, Any], b: int) -> float:
    """One epoch of a hand-written loop with some of skier's per-batch work added."""
    model, opt, g = ctx["model"], ctx["opt"], ctx["gen"]
    (x,), y = ctx["train"].inputs, ctx["train"].targets
    n = len(y)
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=g)
    total = 0.0
    loss_sum = torch.zeros((), dtype=torch.float64)
    wrong = torch.zeros((), dtype=torch.int64)
    sync = variant == "plain .item()"
    count = variant == "+ error count"
    for i in range(0, n, b):
        idx = perm[i : i + b]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        loss.backward()
        opt.step()
        if sync:
            total += loss.item() * len(idx)
        else:
            loss_sum.add_(loss.detach(), alpha=len(idx))
            if count:
                wrong.add_((out.detach().argmax(dim=1) != yb).sum())
    total = total if sync else float(loss_sum)
    return time.perf_counter() - t0


def _skier_epoch_factory(base: torch.nn.Module, train: Split, b: int) -> Callable[[], float]:
    """skier's own per-epoch training function (private API, for profiling only)."""
    from skier.train.loop import _start, _train_one_epoch
    from skier.train.setup import prepare

    s = prepare(
        copy.deepcopy(base), train, None, None, optimizer="adam", scheduler=None, schedule=None,
        callbacks=(), task=None, train_config=None, optim_config=None,
        settings={"batch_size": b, "lr": LR, "seed": SEED, "device": "cpu", "epochs": 10**6},
    )  # fmt: skip
    s.move_to_device()
    state = _start(s, None)

    def epoch() -> float:
        t0 = time.perf_counter()
        state.epoch += 1
        _train_one_epoch(s, state)
        return time.perf_counter() - t0

    return epoch


def _micro(b: int, reps: int, repeats: int = 5) -> dict[str, float]:
    """Microseconds per call of each extra per-batch operation, on a batch-``b`` output: the
    best of ``repeats`` timings of ``reps`` calls (noise only ever adds time)."""
    from skier.train.batches import TensorBatches

    torch.manual_seed(SEED)
    out = torch.randn(b, CLASSES, requires_grad=True) * 1.0
    y = torch.randint(0, CLASSES, (b,))
    loss = F.cross_entropy(out, y)
    loss_sum = torch.zeros((), dtype=torch.float64)
    wrong = torch.zeros((), dtype=torch.int64)
    per_batch: list[Any] = []
    x = torch.randn(reps * b, FEATURES)
    targets = torch.zeros(reps * b, dtype=torch.int64)
    batches = TensorBatches(Split((x,), targets), b, generator=torch.Generator().manual_seed(0))

    def best(fn: Callable[[], Any], calls: int) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append(time.perf_counter() - t0)
        return min(times) / reps * 1e6

    def skier_batching() -> None:
        for _ in batches:
            pass

    def plain_batching() -> None:
        perm = torch.randperm(len(x))
        for i in range(0, len(x), b):
            idx = perm[i : i + b]
            _ = x[idx], targets[idx]

    def scaffolding() -> None:
        with contextlib.nullcontext():
            pass
        for cb in per_batch:
            cb.on_batch_end(None)

    return {
        "loss.item() (plain)": best(lambda: loss.item() * b, reps),
        "loss_sum.add_(loss.detach(), alpha=n)": best(
            lambda: loss_sum.add_(loss.detach(), alpha=b), reps
        ),
        "wrong.add_((out.detach().argmax(1) != y).sum())": best(
            lambda: wrong.add_((out.detach().argmax(dim=1) != y).sum()), reps
        ),
        "autocast nullcontext + empty per_batch loop": best(scaffolding, reps),
        "batching: TensorBatches, per batch": best(skier_batching, 1),
        "batching: plain randperm + slices, per batch": best(plain_batching, 1),
    }


def profile(
    base: torch.nn.Module, train: Split, b: int, args: argparse.Namespace
) -> dict[str, Any]:
    variants = ["plain .item()", "+ on-device loss sum", "+ error count", "skier _train_one_epoch"]
    ctxs: dict[str, Any] = {}
    runners: dict[str, Callable[[], float]] = {}
    for v in variants:
        if v.startswith("skier"):
            runners[v] = _skier_epoch_factory(base, train, b)
            continue
        model = copy.deepcopy(base)
        ctxs[v] = {
            "model": model,
            "opt": torch.optim.Adam(model.parameters(), lr=LR),
            "gen": torch.Generator().manual_seed(SEED),
            "train": train,
        }
        runners[v] = lambda v=v: _ablation_epoch(v, ctxs[v], b)
    for v in variants:  # warm-up epoch of each, discarded
        runners[v]()
    times: dict[str, list[float]] = {v: [] for v in variants}
    clean = tries = 0
    while clean < args.rounds and tries < args.rounds + args.extra_rounds:
        if tries >= args.rounds and time.perf_counter() > args.deadline:
            break
        order = variants if tries % 2 == 0 else variants[::-1]
        tries += 1
        got: dict[str, float] = {}
        try:
            for v in order:
                got[v], foreign = guarded(runners[v], args)
                if foreign > args.max_foreign:
                    raise Contended(f"others used {foreign:.0%} of the CPUs")
        except Contended as exc:
            print(f"  [profile b={b}] round {tries} discarded: {exc}", flush=True)
            continue
        clean += 1
        for v in variants:
            times[v].append(got[v])
        print(
            f"  [profile b={b}] round {tries}: " + ", ".join(f"{v} {got[v]:.3f}" for v in variants),
            flush=True,
        )
    if not clean:
        return {"batch_size": b, "error": "every round was contended"}
    n_batches = -(-len(train) // b)
    plain = times[variants[0]]
    table = {}
    for v in variants:
        diffs = [(t - p) / n_batches * 1e6 for t, p in zip(times[v], plain, strict=True)]
        table[v] = {
            **_stats(times[v]),
            "us_per_batch_paired": statistics.median(diffs),  # vs plain, same round
            "us_per_batch_min": (min(times[v]) - min(plain)) / n_batches * 1e6,
            "ratio_median": statistics.median(times[v]) / statistics.median(plain),
            "ratio_min": min(times[v]) / min(plain),
        }
    micro = _micro(b, 500 if args.quick else 5000)
    return {"batch_size": b, "batches": n_batches, "epochs": table, "micro_us": micro}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": _NCPU,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_table(results: list[dict[str, Any]]) -> None:
    """ratio: of the medians (the headline); min: of the fastest epochs; paired: median over
    rounds of (skier / plain) within a round."""
    head = (
        f"{'config':<12}{'batch':>6}{'plain s/ep':>11}{'skier s/ep':>11}{'ratio':>7}{'min':>7}"
        f"{'paired':>7}{'plain min-max':>15}{'skier min-max':>15}{'wall':>7}{'target':>8}{'met':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        p, s = r["plain"]["epoch"], r["skier"]["epoch"]
        target = f"<={1 + r['target']:.2f}" if r["target"] is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[r["target_met"]]
        print(
            f"{r['label']:<12}{r['batch_size']:>6}{p['median']:>11.3f}{s['median']:>11.3f}"
            f"{r['ratio']:>7.3f}{r['min_ratio']:>7.3f}{r['paired_ratio']:>7.3f}"
            f"{p['min']:>8.3f}-{p['max']:<6.3f}{s['min']:>8.3f}-{s['max']:<6.3f}"
            f"{r['wall_ratio']:>7.3f}{target:>8}{met:>5}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=None, help="measured epochs per call")
    ap.add_argument("--batch-sizes", default="128,32", help="comma-separated (default 128,32)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved plain/skier rounds")
    ap.add_argument("--extra-rounds", type=int, default=4, help="retries for contended rounds")
    ap.add_argument("--samples", type=int, default=60_000, help="training examples")
    ap.add_argument("--val-samples", type=int, default=10_000, help="0: no validation config")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--max-foreign", type=float, default=0.10, help="contention threshold")
    ap.add_argument("--abort-foreign", type=float, default=0.30, help="abort a call at this")
    ap.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; then no more retries")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-batch breakdown")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (a few seconds)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--memory-child", choices=list(LOOPS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.val_samples, args.rounds, args.extra_rounds = 6_000, 1_000, 1, 0
        args.epochs, args.quiet_wait = args.epochs or 1, 0.0
        args.abort_foreign = args.max_foreign = 1.0  # a smoke test: never discard a call
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.samples, batch_sizes[0])
        return 0
    info = machine()
    print(f"skier bench_fit: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{info['torch_threads']} threads, {args.samples} samples")  # fmt: skip
    started = time.perf_counter()
    args.deadline = started + args.budget
    train, val = make_data(args.samples, args.val_samples)
    base = make_model()
    # Import and initialise everything lazy (torch._dynamo, oneDNN kernels) once, unguarded: the
    # watchdog aborts a call by raising inside it, which must not land in the middle of an import.
    tiny = Split((train.inputs[0][:512],), train.targets[:512])
    for b in batch_sizes:
        for loop in LOOPS.values():
            loop(base, tiny, val, b, 1)
    results = []
    for b in batch_sizes:
        epochs = args.epochs or DEFAULT_EPOCHS.get(b, 2)
        results.append(compare(base, train, None, b, epochs, args, "train only"))
    if val is not None:
        b = batch_sizes[0]
        epochs = args.epochs or DEFAULT_EPOCHS.get(b, 2)
        results.append(compare(base, train, val, b, epochs, args, f"+val {len(val)}"))
    profiles = []
    if not args.no_profile:
        prof_sizes = batch_sizes[:1] if args.quick else batch_sizes
        profiles = [profile(base, train, b, args) for b in prof_sizes]
    mem_sizes = batch_sizes[:1] if args.quick else batch_sizes
    mem = {} if args.no_memory else memory(args.samples, mem_sizes, args.threads)
    print()
    print_table(results)
    for r in results:
        if r["clean_rounds"] < r["rounds"] or not r["same_losses"]:
            print(
                f"note [{r['label']} b={r['batch_size']}]: {r['clean_rounds']}/{r['rounds']} "
                f"rounds clean; identical losses: {r['same_losses']}"
            )
    if val is not None:
        no_val = next(r for r in results if r["batch_size"] == batch_sizes[0])
        with_val = results[-1]
        for loop in LOOPS:
            cost = with_val[loop]["epoch"]["median"] - no_val[loop]["epoch"]["median"]
            print(f"validation ({len(val)} examples) per epoch, {loop}: {cost:+.3f} s")
    for p in profiles:
        if "error" in p:
            print(f"\nper-batch breakdown, batch {p['batch_size']}: {p['error']}")
            continue
        print(f"\nper-batch breakdown, batch {p['batch_size']} ({p['batches']} batches/epoch):")
        print("  variant (cumulative)        median s  min s  ratio(med) ratio(min)  us/batch "
              "paired / from mins")  # fmt: skip
        for v, t in p["epochs"].items():
            print(
                f"  {v:<26}{t['median']:>9.3f}{t['min']:>7.3f}{t['ratio_median']:>11.3f}"
                f"{t['ratio_min']:>11.3f}{t['us_per_batch_paired']:>+10.1f} / "
                f"{t['us_per_batch_min']:+.1f}"
            )
        for op, us in p["micro_us"].items():
            print(f"  micro: {op:<50} {us:7.2f} us")
    for key, m in mem.items():
        if "error" in m:
            print(f"memory {key}: failed: {m['error']}")
        else:
            print(f"memory {key}: peak RSS +{m['peak_delta_mib']:.1f} MiB over "
                  f"{m['rss_before_mib']:.0f} MiB")  # fmt: skip
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s")
    if args.json is not None:
        payload = {
            "machine": info,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": results,
            "profile": profiles,
            "memory": mem,
            "total_s": total,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
