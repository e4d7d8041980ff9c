"""Time to 97% test accuracy on digits: `skier demo` defaults against scikit-learn MLPClassifier.

Both train on the same split of scikit-learn's 8x8 digits (skier's default 60/20/20, inputs
standardized on the training split) and are scored on the same 360 test examples after every
epoch; the scoring is not counted. Reported per seed: the epochs and the training seconds until
test accuracy first reaches the target, the final test accuracy, and the whole run's time.

* skier: the model, optimizer, schedule and epochs of ``skier demo`` (a small CNN, Adam 2e-3,
  cosine over 30 epochs, batch 64) trained by :func:`skier.train.fit`;
* scikit-learn: ``MLPClassifier()`` with its defaults (one hidden layer of 100, Adam 1e-3,
  batch 200, up to 200 epochs), one ``partial_fit`` per epoch so it can be scored, and its plain
  ``fit()`` timed separately (which stops itself when the loss stops improving).

Also the wall time of the ``skier demo`` command itself (start-up, data, training, figures, report)
as a user sees it.

Usage::

    python bench/time_to_accuracy.py [--seeds 0 1 2] [--target 0.97] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _skier(seed: int, target: float) -> dict[str, Any]:
    import torch

    from skier.config import demo_config
    from skier.data import load_data
    from skier.models import build_model
    from skier.train import Callback, TrainState, evaluate, fit

    config = demo_config()
    data = load_data(config.data)
    assert data.test is not None
    torch.manual_seed(seed)
    model = build_model(config.model, input_shape=data.input_shape, output_size=data.output_size)
    accuracies: list[float] = []
    marks = [time.perf_counter()]
    scoring = [0.0]

    class Score(Callback):
        def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
            t0 = time.perf_counter()
            marks.append(t0)
            accuracies.append(evaluate(model, data.test)["accuracy"])
            scoring.append(time.perf_counter() - t0)

    train = config.train.model_copy(update={"seed": seed, "progress": "off"})
    fit(model, data, train_config=train, optim_config=config.optim, schedule=config.schedule,
        regularization=config.regularization, callbacks=[Score()])  # fmt: skip
    seconds = [b - a - s for a, b, s in zip(marks, marks[1:], scoring, strict=False)]
    return _summary(accuracies, seconds, target)


def _sklearn(seed: int, target: float) -> dict[str, Any]:
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from skier.config import DataConfig
    from skier.data import load_data

    data = load_data(DataConfig())
    assert data.test is not None
    x, y = data.train.inputs[0].numpy(), data.train.targets.numpy()
    x_test, y_test = data.test.inputs[0].numpy(), data.test.targets.numpy()
    model = MLPClassifier(random_state=seed)
    accuracies, seconds = [], []
    for _ in range(model.max_iter):
        t0 = time.perf_counter()
        model.partial_fit(x, y, classes=np.arange(10))
        seconds.append(time.perf_counter() - t0)
        accuracies.append(float(model.score(x_test, y_test)))
    result = _summary(accuracies, seconds, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        plain = MLPClassifier(random_state=seed).fit(x, y)
        result["plain_fit_s"] = time.perf_counter() - t0
    result["plain_fit_epochs"] = int(plain.n_iter_)
    result["plain_fit_accuracy"] = float(plain.score(x_test, y_test))
    return result


def _summary(accuracies: list[float], seconds: list[float], target: float) -> dict[str, Any]:
    reached = next((i for i, a in enumerate(accuracies) if a >= target), None)
    lower = target - 0.02  # a target both reach, to compare speed where the 97% one is missed
    easier = next(i for i, a in enumerate([*accuracies, 1.0]) if a >= lower)
    return {
        "epochs_to_target": None if reached is None else reached + 1,
        "seconds_to_target": None if reached is None else sum(seconds[: reached + 1]),
        "lower_target": lower,
        "epochs_to_lower": easier + 1 if easier < len(accuracies) else None,
        "seconds_to_lower": sum(seconds[: easier + 1]) if easier < len(accuracies) else None,
        "final_accuracy": accuracies[-1],
        "best_accuracy": max(accuracies),
        "epochs": len(accuracies),
        "train_s": sum(seconds),
    }


def _demo_command() -> float:
    skier = Path(sys.executable).with_name("skier")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([str(skier), "demo", "--out", out, "--quiet"], check=True,
                       capture_output=True, timeout=600)  # fmt: skip
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--no-command", action="store_true", help="skip timing `skier demo`")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    found: dict[str, Any] = {"target": args.target, "skier": {}, "sklearn": {}}
    for seed in args.seeds:  # interleaved, so machine noise hits both alike
        found["skier"][seed] = _skier(seed, args.target)
        found["sklearn"][seed] = _sklearn(seed, args.target)
    if not args.no_command:
        found["skier_demo_command_s"] = _demo_command()
    for name in ("skier", "sklearn"):
        runs = list(found[name].values())
        hit = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
        lower = [r["seconds_to_lower"] for r in runs if r["seconds_to_lower"] is not None]
        found[f"{name}_median_s_to_lower"] = statistics.median(lower) if lower else None
        found[f"{name}_median_s_to_target"] = statistics.median(hit) if hit else None
        found[f"{name}_reached"] = f"{len(hit)} of {len(runs)}"
        print(f"{name:8s} reached {args.target:.0%} in {found[name + '_reached']} seeds; median "
              f"{found[f'{name}_median_s_to_target'] or float('nan'):.2f} s of training; epochs "
              f"{[r['epochs_to_target'] for r in runs]}; final accuracy "
              f"{[round(r['final_accuracy'], 4) for r in runs]}, best "
              f"{[round(r['best_accuracy'], 4) for r in runs]}; to {args.target - 0.02:.0%}: "
              f"{[r['epochs_to_lower'] for r in runs]} epochs, median "
              f"{found[f'{name}_median_s_to_lower'] or float('nan'):.2f} s")  # fmt: skip
    plain = list(found["sklearn"].values())
    print(f"MLPClassifier().fit(): {[round(r['plain_fit_s'], 2) for r in plain]} s, "
          f"{[r['plain_fit_epochs'] for r in plain]} epochs, accuracy "
          f"{[round(r['plain_fit_accuracy'], 4) for r in plain]}")  # fmt: skip
    if "skier_demo_command_s" in found:
        print(f"`skier demo --quiet` end to end: {found['skier_demo_command_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
