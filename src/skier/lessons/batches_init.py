"""Lessons on batches and initialization: how big a batch, averaging vs summing its gradient,
why weights must start random and at which scale. (Momentum and Rprop: ``first_optimizers``.)"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from skier.config import InitConfig
from skier.lessons._tools import axes, digits, mlp
from skier.lessons.base import Context, Trial, check, lesson
from skier.models import MLP, initialize
from skier.train import evaluate, fit

__all__: list[str] = []


def _throughput(ctx: Context, m: int, seconds: float) -> float:
    """Training examples per second with batches of ``m`` (forward, backward, SGD step)."""
    data = digits()
    model = mlp(data, [64, 64], seed=ctx.seed).to(ctx.device)
    x = data.train.inputs[0].to(ctx.device)
    y = data.train.targets.to(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(ctx.seed)

    def step(index: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()

    def sync() -> None:  # a GPU runs ahead of Python: wait for it before reading the clock
        if ctx.device.startswith("cuda"):
            torch.cuda.synchronize()

    step(torch.randint(len(x), (m,), generator=generator).to(ctx.device))  # warm-up
    sync()
    seen, started = 0, time.perf_counter()
    while True:
        step(torch.randint(len(x), (m,), generator=generator).to(ctx.device))
        seen += m
        sync()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and seen >= 5 * m:
            return seen / elapsed


@lesson(
    3,
    "batch-size",
    title="Batch, stochastic and mini-batch gradient descent",
    claim="At equal epochs, batch gradient descent makes one update per epoch and barely moves, "
    "SGD with m = 1 makes N updates and goes furthest, a mini-batch sits between; but one "
    "example at a time uses the hardware so poorly that an epoch takes far longer, and a "
    "mini-batch at the larger lr it allows reaches SGD's loss in a fraction of the wall time: "
    "a poor batch size makes learning slow.",
    setup="Digits (N = 1077 training examples), an MLP 64-64-10, torch SGD lr 0.03, batch "
    "sizes 1, 32 and N for 2 epochs (5 in the full version) by skier.train.fit, and m = 32 at "
    "lr 0.5 for 10 epochs (20); then examples per second of a training step for m = 1 … N on "
    "the current device. On a CPU the whole lesson runs on one torch thread, whatever the "
    "caller asks, so that other work on a shared machine does not swamp its timings (at two "
    "threads on a busy machine the epoch-time ratio fell from 22-32 to below 5).",
    seconds=(5.0, 15.0),
)
def batch_size(ctx: Context) -> Trial:
    # Its checks are timings: on a CPU they are taken on one thread whatever the caller's
    # setting (threads waiting on each other on a busy machine turned the ratios upside down).
    threads = torch.get_num_threads()
    if ctx.device == "cpu":
        torch.set_num_threads(1)
    try:
        return _batch_size(ctx)
    finally:
        torch.set_num_threads(threads)


def _batch_size(ctx: Context) -> Trial:
    data = digits()
    n = len(data.train)
    epochs = ctx.pick(2, 5)
    sizes: dict[str, int | str] = {"SGD (m = 1)": 1, "mini-batch (m = 32)": 32, "batch GD": "full"}
    curves: dict[str, tuple[list[float], list[float]]] = {}
    updates: dict[str, float] = {}
    for label, m in sizes.items():
        model = mlp(data, [64, 64], seed=ctx.seed)
        result = fit(
            model, data.train, optimizer="sgd", lr=0.03, batch_size=m, epochs=epochs,
            seed=ctx.seed, progress="off", exact_train_error=True, device=ctx.device,
        )  # fmt: skip
        start = evaluate(mlp(data, [64, 64], seed=ctx.seed), data.train)["loss"]
        losses = [start, *result.history.column("loss")]
        times = np.cumsum([0.0, *result.history.column("epoch_time")]).tolist()
        curves[label] = (losses, times)
        updates[label] = len(result.history.steps["lr"]) / epochs
    # The mini-batch at the larger lr it allows (m = 1 at lr 0.5 is unstable).
    fast_epochs = ctx.pick(10, 20)
    result = fit(
        mlp(data, [64, 64], seed=ctx.seed), data.train, optimizer="sgd", lr=0.5, batch_size=32,
        epochs=fast_epochs, seed=ctx.seed, progress="off", exact_train_error=True,
        device=ctx.device,
    )  # fmt: skip
    fast = "mini-batch (m = 32), lr 0.5"
    curves[fast] = (
        [curves["batch GD"][0][0], *result.history.column("loss")],
        np.cumsum([0.0, *result.history.column("epoch_time")]).tolist(),
    )
    sweep = [1, 4, 16, 64, 128, 512, n]
    rate = {m: _throughput(ctx, m, ctx.pick(0.2, 0.4)) for m in sweep}
    expected = {label: math.ceil(n / (n if m == "full" else int(m))) for label, m in sizes.items()}
    final = {label: curves[label][0][-1] for label in sizes}
    drop = {label: curves[label][0][0] - curves[label][0][-1] for label in sizes}
    epoch_time = {label: curves[label][1][-1] / epochs for label in sizes}
    sgd, mini, full = "SGD (m = 1)", "mini-batch (m = 32)", "batch GD"
    # Wall time the fast mini-batch needs to reach the loss SGD (m = 1) ended with.
    reached = [t for v, t in zip(*curves[fast], strict=True) if v <= final[sgd]]
    fast_time = reached[0] if reached else math.inf
    measured = {
        "updates_per_epoch_m1": updates[sgd],
        "updates_per_epoch_m32": updates[mini],
        "updates_per_epoch_full": updates[full],
        "updates_per_epoch_max_error": max(abs(updates[k] - expected[k]) for k in sizes),
        "final_loss_m1": final[sgd],
        "final_loss_m32": final[mini],
        "final_loss_full": final[full],
        "loss_decrease_ratio_m32_over_full": drop[mini] / drop[full],
        "epoch_seconds_m1": epoch_time[sgd],
        "epoch_seconds_m32": epoch_time[mini],
        "epoch_seconds_full": epoch_time[full],
        "throughput_ratio_m128_over_m1": rate[128] / rate[1],
        "seconds_m1_to_its_final_loss": curves[sgd][1][-1],
        "seconds_m32_lr05_to_that_loss": fast_time,
        "wall_time_ratio_m1_over_m32_lr05": curves[sgd][1][-1] / fast_time,
    }
    measured.update({f"examples_per_s_m{m}": r for m, r in rate.items()})
    checks = [
        check("largest |updates per epoch − ⌈N/m⌉| over m = 1, 32, N",
              measured["updates_per_epoch_max_error"], less_than=0.5),
        check(f"loss decrease in {epochs} epochs, mini-batch / batch GD",
              measured["loss_decrease_ratio_m32_over_full"], greater_than=5.0),
        check(f"training loss after {epochs} epochs, mini-batch − SGD (m = 1)",
              final[mini] - final[sgd], greater_than=0.5),
        check("seconds per epoch, SGD (m = 1) / mini-batch (m = 32)",
              epoch_time[sgd] / epoch_time[mini], greater_than=5.0),
        check("examples per second, m = 128 / m = 1", rate[128] / rate[1], greater_than=10.0),
        check("wall time to SGD (m = 1)'s final loss: SGD / mini-batch at lr 0.5",
              measured["wall_time_ratio_m1_over_m32_lr05"], greater_than=3.0),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (by_epoch, by_time, speed) = axes(3, width=4.4)
        for label, (losses, times) in curves.items():
            if label in updates:
                by_epoch.plot(range(epochs + 1), losses, "o-", ms=3,
                              label=f"{label}: {updates[label]:.0f} updates/epoch")  # fmt: skip
            by_time.plot(times, losses, "o-", ms=3, label=label)
        by_time.axhline(final[sgd], color="0.6", ls=":", lw=1)
        by_time.legend(fontsize=7)
        by_epoch.set_xlabel("epoch")
        by_epoch.set_ylabel("training loss")
        by_epoch.legend(fontsize=7)
        by_epoch.set_title("equal epochs", fontsize=9)
        by_time.set_xscale("symlog", linthresh=0.01)
        by_time.set_xlim(left=0.0)
        by_time.set_xlabel("wall time (s)")
        by_time.set_title("against wall time (+ m = 32 at a larger lr)", fontsize=9)
        speed.loglog(list(rate), list(rate.values()), "o-")
        speed.set_xlabel("batch size m")
        speed.set_ylabel("training examples per second")
        speed.set_title(f"throughput on {ctx.device}", fontsize=9)
        figures["Batch size: progress per epoch, per second, and throughput"] = fig
    notes = [
        f"lr 0.03 for the equal-epoch runs, 0.5 for the fast mini-batch; timings on "
        f"{ctx.device}, single-threaded on a CPU."
    ]
    return Trial(measured, checks, figures, notes)


@lesson(
    4,
    "mean-vs-sum",
    title="Averaging or summing the batch gradient",
    claim="Summing the loss over a batch of m examples instead of averaging it multiplies the "
    "gradient by m: with a sum, the same lr behaves like lr·m with the mean.",
    setup="Digits, an MLP 64-64-10, batches of m = 32 (drop_last), torch SGD: one step with "
    "reduction 'sum' and lr 0.002 against one with 'mean' and lr 0.002·32; then training by "
    "skier.train.fit for 5 epochs with the two, and with 'mean' at lr 0.002.",
    seconds=(1.0, 1.0),
)
def mean_vs_sum(ctx: Context) -> Trial:
    data = digits()
    m, lr = 32, 0.002
    generator = torch.Generator().manual_seed(ctx.seed)
    index = torch.randperm(len(data.train), generator=generator)[:m]
    x, y = data.train.inputs[0][index], data.train.targets[index]
    start = mlp(data, [64, 64], seed=ctx.seed)
    after = {}
    for reduction, step_lr in (("sum", lr), ("mean", lr * m)):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=step_lr)
        F.cross_entropy(model(x), y, reduction=reduction).backward()
        optimizer.step()
        after[reduction] = torch.cat([p.detach().flatten() for p in model.parameters()])
    before = torch.cat([p.detach().flatten() for p in start.parameters()])
    step_size = float((after["mean"] - before).abs().max())
    step_gap = float((after["sum"] - after["mean"]).abs().max()) / step_size

    # With 2 epochs the mean at the same lr trailed by only 0.54-0.78 (seeds 0-4) against the
    # 0.5 asked; by 5 epochs the sum at lr has moved m times as far.
    epochs = 5
    runs = {
        f"sum, lr {lr:g}": ("sum", lr),
        f"mean, lr {lr * m:g} (= lr·m)": ("mean", lr * m),
        f"mean, lr {lr:g}": ("mean", lr),
    }
    curves = {}
    for label, (reduction, run_lr) in runs.items():
        model = copy.deepcopy(start)
        result = fit(
            model, data.train, optimizer="sgd", lr=run_lr, batch_size=m, drop_last=True,
            reduction=reduction, epochs=epochs, seed=ctx.seed, progress="off",
            exact_train_error=True, device=ctx.device,
        )  # fmt: skip
        curves[label] = [evaluate(start, data.train)["loss"], *result.history.column("loss")]
    summed, scaled, same = (np.asarray(c) for c in curves.values())
    measured = {
        "one_step_max_rel_difference": step_gap,
        "curves_max_abs_difference": float(np.abs(summed - scaled).max()),
        "final_loss_sum": float(summed[-1]),
        "final_loss_mean_lr_times_m": float(scaled[-1]),
        "final_loss_mean_same_lr": float(same[-1]),
    }
    checks = [
        check("one step: max |θ_sum − θ_mean·m| / max |step|", step_gap, less_than=1e-4),
        check("training curves, sum at lr vs mean at lr·m: largest |loss difference|",
              measured["curves_max_abs_difference"], less_than=1e-3),
        check("final loss, mean at the same lr − sum at lr (the sum moves m times faster)",
              float(same[-1] - summed[-1]), greater_than=0.5),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.6)
        for (label, curve), style in zip(curves.items(), ("o-", "x--", "s-"), strict=True):
            ax.plot(range(epochs + 1), curve, style, ms=5, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_title(f"batches of m = {m}: the sum's curve is the mean's at lr·m", fontsize=9)
        ax.legend(fontsize=8)
        figures["Sum at lr trains like mean at lr·m"] = fig
    notes = [
        f"m = {m} is a power of two, so multiplying by m is exact in floating point and the two "
        "runs agree bit for bit; another m would agree to rounding."
    ]
    return Trial(measured, checks, figures, notes)


def _unit_spread(model: torch.nn.Module) -> float:
    """The largest distance between two hidden units' incoming weights (and bias), over the
    hidden layers, relative to the mean size of those weights."""
    worst = 0.0
    for block in model.blocks:  # type: ignore[union-attr]
        linear = block.linear
        rows = torch.cat([linear.weight.detach(), linear.bias.detach()[:, None]], dim=1)
        scale = float(rows.norm(dim=1).mean()) or 1.0
        spread = float(torch.cdist(rows.double(), rows.double()).max()) / scale
        worst = max(worst, spread)
    return worst


@lesson(
    5,
    "symmetry",
    title="Symmetric initialization: every hidden unit stays the same",
    claim="With zero or constant initialization every hidden unit of a layer computes the "
    "same thing, gets the same gradient and so stays identical through training; random "
    "initialization breaks the symmetry.",
    setup="Digits, a tanh MLP 64-32-32-10 initialized by skier.models.initialize with "
    "'constant' (0.05), 'zeros' or 'xavier_normal' (biases zero); torch SGD lr 0.05, momentum "
    "0.9, batches of 32, 5 epochs (10 in the full version). Spread: the largest distance "
    "between two units' incoming weights (and bias) over the hidden layers, relative to their "
    "mean norm, measured after training (before it, constant and zero init have spread 0 by "
    "construction, so that is only drawn, not checked). Checked after training: the spread "
    "under constant and zero init, that the constant-init weights did move (the units "
    "trained, in lockstep), the spread under random init, and the training accuracy.",
    seconds=(1.0, 3.0),
)
def symmetry(ctx: Context) -> Trial:
    data = digits()
    epochs = ctx.pick(5, 10)
    schemes = {
        "constant 0.05": InitConfig(scheme="constant", value=0.05),
        "zeros": InitConfig(scheme="zeros"),
        "random (xavier_normal)": InitConfig(scheme="xavier_normal"),
    }
    spread: dict[str, list[float]] = {}
    accuracy: dict[str, float] = {}
    moved: dict[str, float] = {}
    for label, config in schemes.items():
        model = mlp(data, [32, 32], seed=ctx.seed, activation="tanh")
        initialize(model, config)
        first = model.blocks[0].linear.weight.detach().clone()  # type: ignore[union-attr,index]
        series = [_unit_spread(model)]
        # One optimizer (its momentum carried on), one epoch at a time to follow the spread.
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for epoch in range(epochs):
            fit(model, data.train, optimizer=optimizer, batch_size=32, epochs=1,
                seed=ctx.seed * 1000 + epoch, progress="off", device=ctx.device)  # fmt: skip
            series.append(_unit_spread(model))
        spread[label] = series
        accuracy[label] = evaluate(model, data.train)["accuracy"]
        last = model.blocks[0].linear.weight.detach()  # type: ignore[union-attr,index]
        moved[label] = float((last - first).abs().max())
    const, zero, rand = "constant 0.05", "zeros", "random (xavier_normal)"
    measured = {
        "spread_constant_end": spread[const][-1],
        "spread_zeros_end": spread[zero][-1],
        "spread_random_start": spread[rand][0],
        "spread_random_end": spread[rand][-1],
        "spread_constant_largest_after_an_epoch": max(spread[const][1:]),
        "constant_first_layer_weight_change": moved[const],
        "zeros_first_layer_weight_change": moved[zero],
        "train_accuracy_constant": accuracy[const],
        "train_accuracy_zeros": accuracy[zero],
        "train_accuracy_random": accuracy[rand],
    }
    checks = [
        check(f"constant init: spread between hidden units after {epochs} epochs",
              measured["spread_constant_end"], less_than=1e-4),
        check("constant init: first-layer weights did change (they trained, in lockstep)",
              moved[const], greater_than=0.05),
        check(f"zeros init: spread between hidden units after {epochs} epochs",
              measured["spread_zeros_end"], less_than=1e-4),
        check(f"random init: spread between hidden units after {epochs} epochs",
              measured["spread_random_end"], greater_than=0.5),
        check("training accuracy, random − constant init",
              accuracy[rand] - accuracy[const], greater_than=0.1),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2)
        for label, series in spread.items():
            left.plot(range(epochs + 1), np.maximum(series, 1e-12), "o-", ms=3, label=label)
        left.set_yscale("log")
        left.set_xlabel("epoch")
        left.set_ylabel("spread between hidden units")
        left.legend(fontsize=8)
        left.set_title("constant and zero init never separate the units", fontsize=9)
        right.bar(list(accuracy), list(accuracy.values()), color=["tab:blue", "tab:orange",
                                                                  "tab:green"])  # fmt: skip
        right.set_ylabel("training accuracy")
        right.tick_params(axis="x", labelsize=7)
        right.set_title(f"after {epochs} epochs", fontsize=9)
        figures["Hidden units stay identical without random initialization"] = fig
    notes = [
        "With zeros and tanh the hidden layers get no gradient at all (tanh(0) = 0 and the "
        "head's weights are zero): only the output biases learn. With a constant the units "
        "train, but in lockstep: the net is as good as one unit per layer."
    ]
    return Trial(measured, checks, figures, notes)


@lesson(
    6,
    "xavier-vs-he",
    title="Xavier and He initialization across 20 layers",
    claim="Through 20 layers, Xavier initialization keeps the activations' scale with tanh but "
    "lets it collapse with ReLU (halved variance per layer); He initialization keeps it with "
    "ReLU.",
    setup="A 20-layer MLP of width 512 (skier.models.MLP, no bias) initialized by "
    "skier.models.initialize with xavier_normal or kaiming_normal (relu, fan_in); 512 "
    "standard-normal inputs; the standard deviation of each layer's output.",
    seconds=(0.5, 2.0),
)
def xavier_vs_he(ctx: Context) -> Trial:
    width, depth = 512, 20
    generator = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(ctx.pick(256, 512), width, generator=generator)
    setups = {
        "Xavier, tanh": ("tanh", InitConfig(scheme="xavier_normal")),
        "Xavier, ReLU": ("relu", InitConfig(scheme="xavier_normal")),
        "He, ReLU": ("relu", InitConfig(scheme="kaiming_normal", nonlinearity="relu")),
    }
    stds: dict[str, list[float]] = {}
    for label, (activation, config) in setups.items():
        model = MLP(width, 10, hidden_sizes=(width,) * depth, activation=activation)
        initialize(model, config, generator=torch.Generator().manual_seed(ctx.seed))
        h, series = x, []
        with torch.no_grad():
            for block in model.blocks:
                h = block(h)
                series.append(float(h.std()))
        stds[label] = series
    ratio = {label: s[-1] / s[0] for label, s in stds.items()}
    late = {label: s[-1] / s[depth // 2 - 1] for label, s in stds.items()}
    measured = {
        "std_ratio_20_over_1_xavier_tanh": ratio["Xavier, tanh"],
        "std_ratio_20_over_1_xavier_relu": ratio["Xavier, ReLU"],
        "std_ratio_20_over_1_he_relu": ratio["He, ReLU"],
        "std_ratio_20_over_10_xavier_tanh": late["Xavier, tanh"],
        "std_ratio_20_over_10_xavier_relu": late["Xavier, ReLU"],
    }
    checks = [
        check("std at layer 20 / layer 1, Xavier + tanh (held: no collapse)",
              ratio["Xavier, tanh"], greater_than=0.1),
        check("std at layer 20 / layer 10, Xavier + tanh (a slow, not a geometric, decline)",
              late["Xavier, tanh"], greater_than=0.5),
        check("std at layer 20 / layer 1, Xavier + ReLU (collapses, ≈ 2^(−19/2))",
              ratio["Xavier, ReLU"], less_than=0.01),
        check("std at layer 20 / layer 1, He + ReLU (held)", ratio["He, ReLU"],
              between=(0.4, 2.5)),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.6)
        for label, series in stds.items():
            ax.semilogy(range(1, depth + 1), series, "o-", ms=3, label=label)
        ax.set_xlabel("layer")
        ax.set_ylabel("std of the layer's output")
        ax.set_xticks(range(1, depth + 1, 2))
        ax.legend(fontsize=8)
        ax.set_title("activation scale through a 20-layer MLP at initialization", fontsize=9)
        figures["Activation scale across 20 layers"] = fig
    notes = [
        "With tanh, Xavier's variance still shrinks slowly (about 1/layer: tanh squashes), "
        "but not geometrically as Xavier does with ReLU."
    ]
    return Trial(measured, checks, figures, notes)
