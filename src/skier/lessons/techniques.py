"""Lessons on the training techniques that act on the terrain: gradient accumulation is the
larger batch, SAM finds a flatter minimum than the optimizer it wraps, and SWA's average sits
in a flatter, wider region than the SGD iterates it averages."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from skier.config import LandscapeConfig
from skier.data import Split
from skier.diagnostics.landscape import landscape
from skier.diagnostics.sharpness import sharpness
from skier.lessons._tools import axes, digits, mlp, noisy_labels
from skier.lessons.base import Context, Trial, check, lesson
from skier.train import Callback, evaluate, fit
from skier.train.state import TrainState

__all__: list[str] = []

_MICRO, _K = 64, 4  # micro-batches of 64, four to a step: steps of 256


@lesson(
    24,
    "accumulation-is-the-large-batch",
    title="Gradient accumulation of k micro-batches is one step on the k-times batch",
    claim="Summing the gradients of k micro-batches before one optimizer step is the same "
    "step as one on the k-times larger batch — the loss curve and the weights coincide to "
    "float rounding, the last, partial group of each epoch included — so a batch too big for "
    "memory can be trained exactly; the step count, not the micro-batch, is what the "
    "optimizer sees.",
    setup="Digits (1,078 training examples: 4 steps of 256 and a last one of 54), an MLP "
    "64-64-10 without batch norm, SGD with momentum 0.9 at lr 0.1, 8 epochs (quick: 4), the "
    "same seed for all three runs: micro-batches of 64 accumulated 4 to a step "
    "(train.accumulate: 4), whole batches of 256, and plain batches of 64 (4 times the "
    "steps). Checked: the largest relative gap between the accumulated run's and the "
    "256-batch run's epoch losses, and between their final weights, is below 1e-4; the "
    "64-batch run's final loss differs from the 256-batch run's by more than 5% (the "
    "comparison can tell runs apart). Measured before choosing the bounds, quick on seeds 0-4 at 1 "
    "and 2 threads and full on seeds 0-2: gaps of 0 to 3e-7, and 64-batch losses 53-97% away.",
    seconds=(2.0, 3.0),
)
def accumulation_is_the_large_batch(ctx: Context) -> Trial:
    data = digits()
    epochs = ctx.pick(4, 8)
    runs = {}
    for name, batch, accumulate in (("accumulated", _MICRO, _K), ("large", _MICRO * _K, 1),
                                    ("small", _MICRO, 1)):  # fmt: skip
        model = mlp(data, [64, 64], seed=ctx.seed)
        result = fit(model, data, optimizer="sgd", lr=0.1, momentum=0.9, epochs=epochs,
                     batch_size=batch, accumulate=accumulate, seed=ctx.seed, progress="off",
                     device=ctx.device)  # fmt: skip
        weights = torch.cat([p.detach().flatten().cpu() for p in model.parameters()])
        runs[name] = (result.history.column("loss"), weights)
    (acc_loss, acc_w), (big_loss, big_w), (small_loss, _) = (
        runs["accumulated"], runs["large"], runs["small"],
    )  # fmt: skip
    loss_gap = max(abs(a - b) / abs(b) for a, b in zip(acc_loss, big_loss, strict=True))
    weight_gap = float((acc_w - big_w).abs().max() / big_w.abs().max())
    small_gap = abs(small_loss[-1] - big_loss[-1]) / abs(big_loss[-1])
    measured = {
        "loss_gap": loss_gap,
        "weight_gap": weight_gap,
        "small_batch_gap": small_gap,
        "final_loss_accumulated": acc_loss[-1],
        "final_loss_large": big_loss[-1],
        "final_loss_small": small_loss[-1],
    }
    checks = [
        check("largest relative gap of the epoch losses, accumulated vs 256", loss_gap,
              less_than=1e-4),
        check("largest gap of the final weights (relative to the largest weight)", weight_gap,
              less_than=1e-4),
        check("final loss of batches of 64 vs 256 (relative gap)", small_gap, greater_than=0.05),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.6)
        x = list(range(1, epochs + 1))
        ax.plot(x, big_loss, lw=3, alpha=0.4, color="tab:blue", label="batches of 256")
        ax.plot(x, acc_loss, lw=1.2, ls="--", color="black", label="64 x 4 accumulated")
        ax.plot(x, small_loss, lw=1.2, color="tab:orange", label="batches of 64")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("accumulation is the larger batch", fontsize=9)
        figures["Training loss: accumulated, large and small batches"] = fig
    return Trial(measured, checks, figures)


@lesson(
    25,
    "sam-finds-flatter-minima",
    title="SAM finds a flatter minimum than the optimizer it wraps",
    claim="Sharpness-aware minimization (Foret et al. 2021) steps from the worst point of a "
    "small ball around the weights, so it settles where the loss is flat around it: at the "
    "same (near-zero) training loss, its minimum's top Hessian eigenvalue λ1 is well below "
    "that of the same optimizer without it.",
    setup="Digits, an MLP 64-64-10, SGD with momentum 0.9 at lr 0.05, batches of 32, 30 epochs "
    "(quick: 20), the same seed and initial weights for both runs; SAM with rho 0.05 "
    "(optim.sam: 0.05) around the same SGD. λ1 of the mean training loss on the whole "
    "training set in eval mode (skier.diagnostics.sharpness, Lanczos). Checked: both runs fit "
    "the training set (final training loss below 0.01, so the minima are compared at matched "
    "loss), and λ1 with SAM / λ1 without is below 0.7. Measured before choosing the bound, "
    "seeds 0-4 at 1 and 2 threads: ratios 0.3-0.45 and training losses below 2e-3.",
    seconds=(12.0, 20.0),
)
def sam_finds_flatter_minima(ctx: Context) -> Trial:
    data = digits()
    epochs = ctx.pick(20, 30)
    found: dict[str, dict[str, float]] = {}
    curves: dict[str, list[float]] = {}
    for name, rho in (("sgd", None), ("sam", 0.05)):
        model = mlp(data, [64, 64], seed=ctx.seed)
        result = fit(model, data, optimizer="sgd", lr=0.05, momentum=0.9, epochs=epochs,
                     batch_size=32, seed=ctx.seed, progress="off", device=ctx.device,
                     sam=rho)  # fmt: skip
        top = sharpness(model, data.train, settings={"top_k": 1, "trace": False})
        history = result.history
        found[name] = {
            "lambda1": top.eigenvalues[0],
            "train_loss": history.column("loss")[-1],
            "val_error": history.column("val_error")[-1],
        }
        curves[name] = history.column("loss")
    ratio = found["sam"]["lambda1"] / found["sgd"]["lambda1"]
    measured = {f"{run}_{key}": value for run, row in found.items() for key, value in row.items()}
    measured["lambda1_ratio"] = ratio
    checks = [
        check("final training loss without SAM", found["sgd"]["train_loss"], less_than=0.01),
        check("final training loss with SAM", found["sam"]["train_loss"], less_than=0.01),
        check("λ1 with SAM / λ1 without", ratio, less_than=0.7),
    ]
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2, width=4.4)
        x = list(range(1, epochs + 1))
        left.plot(x, curves["sgd"], label="SGD")
        left.plot(x, curves["sam"], label="SAM (rho 0.05)")
        left.set_yscale("log")
        left.set_xlabel("epoch")
        left.set_ylabel("training loss")
        left.legend(fontsize=8)
        right.bar(["SGD", "SAM"], [found["sgd"]["lambda1"], found["sam"]["lambda1"]],
                  color=["tab:blue", "tab:orange"])  # fmt: skip
        right.set_ylabel("top Hessian eigenvalue λ1")
        right.set_title("sharpness of the minimum", fontsize=9)
        figures["SAM against SGD: training loss and sharpness"] = fig
    return Trial(measured, checks, figures)


class _KeepLast(Callback):
    """Copies of the (raw) weights at the end of each of the last ``count`` epochs."""

    stateful = False

    def __init__(self, count: int) -> None:
        self.count = count
        self.kept: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if state.epoch > state.epochs - self.count:
            self.kept.append(state.capture_weights())


_THRESHOLD = 1.5  # training loss that bounds the valley (chance level is ln 10 = 2.3)


def _valley(
    model: torch.nn.Module, train: Split, seed: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """The width, along one filter-normalized random direction (α ∈ [−1, 1], 81 points), of
    the stretch around α = 0 where the training loss stays below ``_THRESHOLD``; and the curve."""
    found = landscape(model, train, LandscapeConfig(dims=1, points=81, seed=seed))
    alphas, loss = found.alphas, found.surface.loss
    centre = len(alphas) // 2
    if loss[centre] >= _THRESHOLD:
        return 0.0, alphas, loss
    low = high = centre
    while low > 0 and loss[low - 1] < _THRESHOLD:
        low -= 1
    while high < len(alphas) - 1 and loss[high + 1] < _THRESHOLD:
        high += 1
    return float(alphas[high] - alphas[low]), alphas, loss


@lesson(
    26,
    "swa-finds-flatter-region",
    title="SWA's average sits in a flatter, wider region than the SGD iterates it averages",
    claim="Stochastic weight averaging (Izmailov et al. 2018) keeps the lr high and constant so "
    "that SGD's iterates bounce around the walls of a wide basin, and averages them: the "
    "average lands nearer the basin's flat centre than any of them — its top Hessian "
    "eigenvalue λ1 is lower and its filter-normalized 1-D valley wider than those of the "
    "iterates it averages — with better test error.",
    setup="Digits with 20% of the training labels replaced by random classes (clean digits "
    "are fitted to zero loss, where every Hessian vanishes and there is no basin wall to "
    "bounce on), an MLP 64-64-10, SGD with momentum 0.9 at a constant lr 0.1, weight decay "
    "5e-4, batches of 64, 30 epochs; SWA averages the weights at the end of epochs 15-30 "
    "(train.swa_start: 15, swa_lr: 0.1). Compared with the raw SGD weights at the end of "
    "each of the last 5 epochs (quick: 3), which the average includes. λ1 of the mean "
    "training loss on the whole (noisy) training set (skier.diagnostics.sharpness, "
    "Lanczos); valley width: the stretch of α ∈ [−1, 1] around the weights (81 points) "
    "where the training loss along one filter-normalized random direction "
    "(skier.diagnostics.landscape) stays below 1.5. Checked: λ1 of the average / λ1 of the "
    "flattest iterate below 0.8; valley width of the average / that of the widest iterate "
    "above 1; test error of the average / the best iterate's below 1. The bounds were chosen "
    "from a first measurement (full, seeds 0-4, one thread: λ1 ratios 0.53-0.64, width ratios "
    "1.12-1.17, test error ratios 0.83-0.91); the sweep after (quick on seeds 0-4, full on "
    "0-2, each at 1 and 2 threads) measured λ1 ratios 0.44-0.64, width ratios 1.12-1.23 and "
    "test error ratios 0.64-0.93. Other set-ups measured worse: clean labels (training loss "
    "near 0, λ1 of the average above the last iterate's on 2 of 3 seeds), 20 epochs averaged "
    "from epoch 10 (λ1 ratios to the last iterate up to 0.90), 40 epochs (SGD memorizes the "
    "noise; ratios up to 0.76), batches of 32 (an iterate diverged at 2 threads).",
    seconds=(5.0, 30.0),
)
def swa_finds_flatter_region(ctx: Context) -> Trial:
    data = digits()
    train, test = noisy_labels(data.train, 0.2, ctx.seed), data.test
    assert test is not None
    keep = _KeepLast(ctx.pick(3, 5))
    model = mlp(data, [64, 64], seed=ctx.seed)
    result = fit(model, train, data.val, optimizer="sgd", lr=0.1, momentum=0.9,
                 weight_decay=5e-4, epochs=30, batch_size=64, swa_start=15, swa_lr=0.1,
                 seed=ctx.seed, progress="off", device=ctx.device,
                 callbacks=[keep])  # fmt: skip
    averaged = result.averaged_model
    assert averaged is not None
    rows, curves = [], []
    for weights in keep.kept:  # the iterates, in the raw model
        model.load_state_dict(weights)
        width, alphas, loss = _valley(model, train, ctx.seed)
        top = sharpness(model, train, settings={"top_k": 1, "trace": False}).eigenvalues[0]
        rows.append((top, width, evaluate(model, test)["error"]))
        curves.append(loss)
    swa_top = sharpness(averaged, train, settings={"top_k": 1, "trace": False}).eigenvalues[0]
    swa_width, alphas, swa_loss = _valley(averaged, train, ctx.seed)
    swa_error = evaluate(averaged, test)["error"]
    tops, widths, errors = (np.array(column) for column in zip(*rows, strict=True))
    measured = {
        "swa_lambda1": swa_top,
        "swa_width": swa_width,
        "swa_test_error": swa_error,
        "iterates_lambda1_min": float(tops.min()),
        "iterates_lambda1_median": float(np.median(tops)),
        "iterates_width_max": float(widths.max()),
        "iterates_test_error_min": float(errors.min()),
        "lambda1_ratio": swa_top / float(tops.min()),
        "width_ratio": swa_width / float(widths.max()),
        "test_error_ratio": swa_error / float(errors.min()),
    }
    checks = [
        check("λ1 of the average / λ1 of the flattest iterate", measured["lambda1_ratio"],
              less_than=0.8),
        check("valley width of the average / that of the widest iterate",
              measured["width_ratio"], greater_than=1.0),
        check("test error of the average / that of the best iterate",
              measured["test_error_ratio"], less_than=1.0),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2, width=4.6)
        for i, loss in enumerate(curves):
            left.plot(alphas, loss, color="tab:blue", alpha=0.35, lw=1,
                      label="SGD iterates (last epochs)" if i == 0 else None)  # fmt: skip
        left.plot(alphas, swa_loss, color="tab:orange", lw=2, label="SWA average")
        left.axhline(_THRESHOLD, color="gray", ls=":", lw=1)
        left.set_xlabel("α (filter-normalized random direction)")
        left.set_ylabel("training loss")
        left.set_ylim(0, 4 * _THRESHOLD)
        left.legend(fontsize=8)
        labels = [f"SGD −{len(tops) - 1 - i}" for i in range(len(tops))]
        right.bar([*labels, "SWA"], [*tops, swa_top],
                  color=["tab:blue"] * len(tops) + ["tab:orange"])  # fmt: skip
        right.set_ylabel("top Hessian eigenvalue λ1")
        right.set_title("sharpness: the iterates and their average", fontsize=9)
        figures["SWA against the SGD iterates it averages: valley and sharpness"] = fig
    return Trial(measured, checks, figures)
