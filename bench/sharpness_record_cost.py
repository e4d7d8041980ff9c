"""What one warm ``SharpnessTracker`` record costs against 100 W1 training steps (CPU time).

W1 (``bench_fit``): MLP 784-256-128-10, Adam lr 1e-3, batch 128, synthetic 60,000 x 784. After
300 Adam steps, ``--reps`` times: three blocks of 100 training steps (``time.process_time`` per
step) and, for each (subset, warm_iterations) setting, one warm record through the tracker's
own hook (a cold record first, not timed; 3 more steps so the warm start is not exact). The
ratio is the record's CPU time over 100 steps' (the share of training at ``every=100``): CPU
time and one thread, so that other processes on a loaded machine change it little.

Usage::

    python bench/sharpness_record_cost.py --reps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench_fit import LR, SEED, make_data, make_model
from skier.history import History
from skier.train import SharpnessTracker, TrainState

SETTINGS = [(256, 2), (256, 3), (256, 4), (512, 2), (512, 3), (512, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = make_data(60_000, 0)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    inputs, targets = train.inputs[0], train.targets
    generator = torch.Generator().manual_seed(SEED)
    loss = torch.nn.CrossEntropyLoss()

    def step() -> None:
        index = torch.randint(0, len(targets), (128,), generator=generator)
        optimizer.zero_grad()
        loss(model(inputs[index]), targets[index]).backward()
        optimizer.step()

    for _ in range(300):
        step()
    steps: list[float] = []
    records: dict[tuple[int, int], list[float]] = {s: [] for s in SETTINGS}
    for _ in range(args.reps):
        for _ in range(3):
            start = time.process_time()
            for _ in range(100):
                step()
            steps.append((time.process_time() - start) / 100)
        for subset, warm in SETTINGS:
            tracker = SharpnessTracker(train, every=1, subset=subset, warm_iterations=warm,
                                       seed=SEED)  # fmt: skip
            state = TrainState(model, epochs=1, task="classification", history=History(),
                               available_keys=frozenset())  # fmt: skip
            tracker.on_fit_start(state)
            state.step = 1
            tracker.on_batch_end(state)  # cold: not timed
            for _ in range(3):
                step()
            state.step = 2
            start = time.process_time()
            tracker.on_batch_end(state)
            records[(subset, warm)].append(time.process_time() - start)
    per_step = statistics.median(steps)
    out = {"threads": args.threads, "reps": args.reps, "median_step_s": per_step,
           "min_step_s": min(steps), "settings": {}}  # fmt: skip
    print(f"training step: median {per_step * 1e3:.2f} ms, min {min(steps) * 1e3:.2f} ms CPU")
    for (subset, warm), times in records.items():
        median = statistics.median(times)
        ratio = median / (100 * per_step)
        out["settings"][f"subset={subset},warm={warm}"] = {
            "median_record_s": median, "min_record_s": min(times), "ratio_at_every_100": ratio,
        }  # fmt: skip
        print(f"subset {subset}, warm_iterations {warm}: record {median * 1e3:.1f} ms "
              f"(min {min(times) * 1e3:.1f}); record / 100 steps {ratio:.3f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
