"""Built-in data sets: scikit-learn's digits and a synthetic teacher-network set. Nothing is
downloaded: ``digits`` ships with scikit-learn and ``synthetic`` is generated.

>>> raw = digits()
>>> raw.x_num.shape, raw.y.shape, raw.task
((1797, 64), (1797,), 'classification')
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from skier.data.raw import RawData
from skier.data.targets import TaskChoice
from skier.errors import DataError, problem

__all__ = ["digits", "synthetic"]


def digits(as_images: bool = False) -> RawData:
    """scikit-learn's 8x8 handwritten digits: 1797 images, 10 classes, pixel values 0..16.

    >>> digits(as_images=True).x_num.shape
    (1797, 1, 8, 8)
    """
    table = _digits_table()
    x = np.ascontiguousarray(table[:, :-1], dtype=np.float32)
    y = table[:, -1].astype(np.int64)
    names = [f"pixel_{row}_{col}" for row in range(8) for col in range(8)]
    if as_images:
        x = x.reshape(-1, 1, 8, 8)
        names = []
    classes = [str(c) for c in range(10)]
    info: dict[str, Any] = {"source": "sklearn.datasets.load_digits"}
    return RawData.numeric(x, y, names, classes, "classification", "digits", info)


def _digits_table() -> np.ndarray:
    """The digits as scikit-learn ships them: 1797 rows of 64 pixels and the label.

    Read from scikit-learn's own file without importing scikit-learn, whose import (pandas and
    scipy with it) costs about a second of a digits run's start-up; through ``load_digits``
    where that file is not found.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    roots = spec.submodule_search_locations if spec is not None else None
    for root in roots or []:
        path = Path(root, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return np.column_stack([x, y])


def synthetic(
    samples: int = 10_000,
    features: int = 20,
    task: TaskChoice = "classification",
    classes: int = 10,
    targets: int = 1,
    teacher_hidden: int = 32,
    noise: float = 0.0,
    seed: int = 0,
) -> RawData:
    """Inputs ``N(0, 1)`` labelled by a random teacher network ``tanh(x W1 + b1) W2``.

    Classification takes the argmax of the teacher's logits; each logit is standardised over the
    samples first, so no class dominates and the classes come out roughly balanced. ``noise`` is
    the standard deviation of Gaussian noise added to the (unit-variance) logits or regression
    outputs. The same ``seed`` gives the same data.

    >>> raw = synthetic(samples=100, features=5, classes=3, seed=1)
    >>> raw.x_num.shape, sorted(set(raw.y.tolist()))
    ((100, 5), [0, 1, 2])
    """
    problems = []
    if samples < 1:
        problems.append(problem("samples", "at least 1", samples))
    if features < 1:
        problems.append(problem("features", "at least 1", features))
    if teacher_hidden < 1:
        problems.append(problem("teacher_hidden", "at least 1", teacher_hidden))
    if noise < 0:
        problems.append(problem("noise", "non-negative", noise))
    if task == "auto":
        task = "classification"
    if task not in ("classification", "regression"):
        problems.append(problem("task", "'classification' or 'regression'", task))
    if task == "classification" and classes < 2:
        problems.append(problem("classes", "at least 2", classes))
    if task == "regression" and targets < 1:
        problems.append(problem("targets", "at least 1", targets))
    if problems:
        raise DataError(problems)

    rng = np.random.default_rng(seed)
    outputs = classes if task == "classification" else targets
    # float32 throughout: 60,000 x 784 is ~190 MB in float32 and generates in well under a second.
    x = rng.standard_normal((samples, features), dtype=np.float32)
    # Python-float scales keep float32 (a numpy float64 scalar would upcast x @ w1 to float64).
    w1 = rng.standard_normal((features, teacher_hidden), dtype=np.float32)
    w1 *= float(1.0 / np.sqrt(features))
    b1 = 0.1 * rng.standard_normal(teacher_hidden, dtype=np.float32)
    w2 = rng.standard_normal((teacher_hidden, outputs), dtype=np.float32)
    out = np.tanh(x @ w1 + b1) @ w2
    # Standardise each output so that logits compete on equal terms and noise has a fixed scale.
    std = out.std(axis=0)
    out = (out - out.mean(axis=0)) / np.where(std > 0, std, 1.0).astype(np.float32)
    if noise > 0:
        out += np.float32(noise) * rng.standard_normal(out.shape, dtype=np.float32)
    if task == "classification":
        out += _balancing_bias(out)

    info = {"source": "synthetic teacher network", "teacher_hidden": teacher_hidden, "seed": seed}
    common: dict[str, Any] = {
        "x_num": x,
        "x_cat": None,
        "feature_names": [f"x{i}" for i in range(features)],
        "categorical_names": [],
        "name": "synthetic",
        "info": info,
    }
    if task == "classification":
        y = out.argmax(axis=1).astype(np.int64)
        names = [str(k) for k in range(classes)]
        return RawData(y=y, class_names=names, task="classification", **common)
    return RawData(y=out.astype(np.float32), class_names=[], task="regression", **common)


def _balancing_bias(logits: np.ndarray, rounds: int = 200, step: float = 0.1) -> np.ndarray:
    """Per-class offsets that make the argmax classes roughly equally frequent.

    Standardised logits alone can leave one class many times as common as another (more so with
    few input features); nudging each class's offset by the log of its over-representation
    evens them out. A small step avoids oscillating; the most balanced offsets seen are kept.
    """
    n, k = logits.shape
    bias = np.zeros(k, dtype=np.float32)
    best, best_gap = bias.copy(), np.inf
    for _ in range(rounds):
        counts = np.bincount((logits + bias).argmax(axis=1), minlength=k)
        share = (counts + 1.0) / (n + k) * k  # 1.0 means exactly balanced
        gap = float(np.abs(share - 1.0).max())
        if gap < best_gap:
            best, best_gap = bias.copy(), gap
        if gap < 0.05:
            break
        bias -= np.float32(step) * np.log(share).astype(np.float32)
    return best
