"""Lessons on the terrain the skier crosses: skip connections smooth the loss landscape, large
batches settle in sharper minima, and two minima are joined by a valley of low loss."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from skier.config import ConnectConfig, LandscapeConfig, SharpnessConfig
from skier.data import Split
from skier.diagnostics import connect, landscape, sharpness
from skier.lessons._tools import axes, digits, mlp
from skier.lessons.base import Context, Trial, check, lesson
from skier.train import Callback, evaluate, fit
from skier.train.state import TrainState

__all__: list[str] = []


class _StopBelow(Callback):
    """Stops training once the logged training loss (exact with ``exact_train_error``) is below
    ``target``: both nets of a comparison end at about the same loss, whatever the number of
    epochs that takes."""

    stateful = False

    def __init__(self, target: float) -> None:
        self.target = target

    def monitored_keys(self) -> list[str]:
        return ["loss"]

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if logs["loss"] < self.target:
            state.request_stop(f"training loss below {self.target:g}")


def _negative_curvature_share(loss: np.ndarray) -> float:
    """Share of the grid's second differences along α (rows) and β (columns) that are
    negative: 0 for a surface that is convex along both axes."""
    along_alpha = loss[:, 2:] - 2 * loss[:, 1:-1] + loss[:, :-2]
    along_beta = loss[2:, :] - 2 * loss[1:-1, :] + loss[:-2, :]
    negative = int((along_alpha < 0).sum() + (along_beta < 0).sum())
    return negative / (along_alpha.size + along_beta.size)


@lesson(
    16,
    "skip-connections",
    title="Skip connections smooth the landscape",
    claim="The filter-normalized 2-D loss landscape of a deep net is smoother with skip "
    "connections than without: with both nets trained to the same training loss, the plain "
    "net's surface bends down (negative curvature) in many places, the residual net's hardly "
    "anywhere (Li et al. 2018).",
    setup="Digits (all 1,078 training examples; quick: a seeded 500), ReLU MLPs of 20 hidden "
    "layers of 32 (the same in both versions), with and without residual blocks (residual: "
    "true), Adam lr 2e-3, batch 64, until the exact training loss is below 0.05 (at most 400 "
    "epochs); then the loss on a 21 x 21 grid (quick: 15 x 15) over α, β ∈ [−1, 1] along two "
    "filter-normalized random directions (skier.diagnostics.landscape, on the whole training "
    "set; quick: a seeded 400 of it). Measure: the share of second differences along α and β "
    "that are negative. Twenty layers, because the difference grows with depth: with 8 plain "
    "layers of 24 (and an 11 x 11 grid) the plain surface is nearly convex on some seeds "
    "(measured: 0.5% to 16% negative over seeds 0-4), with 20 it bends down in 20% to 37% of "
    "places (with skips: 0 to 0.3%).",
    seconds=(6.0, 45.0),
)
def skip_connections(ctx: Context) -> Trial:
    data = digits()
    generator = torch.Generator().manual_seed(ctx.seed)
    train = data.train
    if ctx.quick:
        train = train.take(torch.randperm(len(train), generator=generator)[:500])
    depth, width, budget = 20, 32, 400
    points, subset = ctx.pick((15, 400), (21, None))
    shares, losses, surfaces, epochs = {}, {}, {}, {}
    for residual in (False, True):
        model = mlp(data, [width] * depth, seed=ctx.seed, residual=residual)
        found = fit(model, train, optimizer="adam", lr=2e-3, epochs=budget, batch_size=64,
                    seed=ctx.seed, progress="off", exact_train_error=True, device=ctx.device,
                    callbacks=[_StopBelow(0.05)])  # fmt: skip
        key = "skip" if residual else "plain"
        epochs[key] = found.epochs_done
        losses[key] = evaluate(model, train)["loss"]
        result = landscape(
            model, train, LandscapeConfig(dims=2, points=points, subset=subset, seed=ctx.seed)
        )
        surfaces[key] = result
        shares[key] = _negative_curvature_share(result.surface.loss)
    measured = {
        "plain_negative_curvature_share": shares["plain"],
        "skip_negative_curvature_share": shares["skip"],
        "plain_train_loss": losses["plain"],
        "skip_train_loss": losses["skip"],
        "plain_epochs": float(epochs["plain"]),
        "skip_epochs": float(epochs["skip"]),
    }
    ratio = max(losses.values()) / min(losses.values())
    checks = [
        check("share of negative second differences, no skips", shares["plain"],
              greater_than=0.05),
        check("share of negative second differences, with skips", shares["skip"],
              less_than=0.02),
        check("training losses comparable (larger / smaller)", ratio, less_than=3.0),
        # The deep plain net trains slowly; it must reach the target within its budget, or
        # the two landscapes are not compared at the same loss.
        check(f"epochs the slower net needed to reach the target (of at most {budget})",
              max(epochs.values()), less_than=budget),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, panels = axes(2, width=4.6, height=4.2)
        for ax, key, label in zip(panels, ("plain", "skip"), ("no skips", "with skips"),
                                  strict=True):  # fmt: skip
            found_surface = surfaces[key]
            assert found_surface.betas is not None
            grid = np.log10(found_surface.surface.loss)
            shown = ax.contourf(found_surface.alphas, found_surface.betas, grid, levels=20,
                                cmap="viridis")  # fmt: skip
            ax.contour(found_surface.alphas, found_surface.betas, grid, levels=20,
                       colors="k", linewidths=0.3)  # fmt: skip
            ax.plot([0], [0], "w*", ms=10)
            ax.set_xlabel("α")
            ax.set_ylabel("β")
            ax.set_title(f"{label}: {shares[key]:.0%} negative curvature", fontsize=9)
            fig.colorbar(shown, ax=ax, label="log10 train loss")
        figures[f"Loss landscape of a {depth}-layer MLP without and with skips"] = fig
    return Trial(measured, checks, figures)


def _train_to(model: torch.nn.Module, train: Split, batch_size: int | str, *, lr: float,
              target: float, seed: int, device: str, epochs: int) -> int:  # fmt: skip
    found = fit(model, train, optimizer="sgd", lr=lr, epochs=epochs, batch_size=batch_size,
                seed=seed, progress="off", exact_train_error=True, device=device,
                callbacks=[_StopBelow(target)])  # fmt: skip
    return found.epochs_done


@lesson(
    17,
    "sharp-vs-flat",
    title="Large batches find sharper minima",
    claim="Trained to the same training loss, large-batch training ends in a sharper minimum — "
    "a top eigenvalue of the Hessian of the training loss several times larger — than "
    "small-batch SGD (Keskar et al. 2017).",
    setup="Digits, a ReLU MLP 64-64-64-64-64-10 (the same initialisation for both), plain SGD "
    "at lr 0.1: with batch 4 until the exact training loss is below 0.05, then with the full "
    "batch (1,078 examples: gradient descent, up to 2,000 epochs) until it is below the loss "
    "batch 4 reached, so both end at the same loss (the full batch a hair lower). Then the "
    "top Hessian eigenvalue of the training loss over the whole training split by power "
    "iteration (skier.diagnostics.sharpness) run to convergence: a relative change below "
    "1e-6, at most 1,000 iterations; an unconverged estimate fails the lesson. The full batch "
    "cannot pass 2/lr = 20 (gradient descent is unstable beyond it) and rises towards it; the "
    "noise of batch 4 keeps SGD out of such sharp regions. A deeper net than lesson 9's: with "
    "one or two hidden layers both runs reach the target loss before the full batch sharpens, "
    "and the ratio is near 1 (measured: 0.8 to 2.4 over seeds).",
    seconds=(6.0, 18.0),
)
def sharp_vs_flat(ctx: Context) -> Trial:
    data = digits()
    lr, target = 0.1, 0.05
    found: dict[str, dict[str, float]] = {}
    for key, batch_size, epochs in (("small", 4, 100), ("large", "full", 2000)):
        model = mlp(data, [64] * 4, seed=ctx.seed)
        # The small batch overshoots the target within its last epoch; the large batch trains
        # to the loss the small batch reached. A lower cross-entropy loss usually means a
        # flatter minimum, so this does not favour the claim.
        goal = target if key == "small" else found["small"]["train_loss"]
        done = _train_to(model, data.train, batch_size, lr=lr, target=goal, seed=ctx.seed,
                         device=ctx.device, epochs=epochs)  # fmt: skip
        result = sharpness(
            model,
            data.train,
            settings=SharpnessConfig(top_k=1, max_iterations=1000, tolerance=1e-6, trace=False,
                                     seed=ctx.seed),
        )  # fmt: skip
        found[key] = {
            "epochs": float(done),
            "train_loss": evaluate(model, data.train)["loss"],
            "top_eigenvalue": result.top_eigenvalue,
            "power_iterations": float(result.iterations[0]),
        }
    small, large = found["small"], found["large"]
    measured = {
        "small_batch_top_eigenvalue": small["top_eigenvalue"],
        "large_batch_top_eigenvalue": large["top_eigenvalue"],
        "sharpness_ratio": large["top_eigenvalue"] / small["top_eigenvalue"],
        "small_batch_train_loss": small["train_loss"],
        "large_batch_train_loss": large["train_loss"],
        "small_batch_epochs": small["epochs"],
        "large_batch_epochs": large["epochs"],
        "small_batch_power_iterations": small["power_iterations"],
        "large_batch_power_iterations": large["power_iterations"],
        "edge_of_stability": 2.0 / lr,
    }
    checks = [
        check("top Hessian eigenvalue, full batch / batch 4", measured["sharpness_ratio"],
              greater_than=2.0),
        # Power iteration stops early only once converged: fewer iterations than its limit
        # means a measured eigenvalue, not a truncated estimate.
        check("power iterations to converge, the slower run (of at most 1,000)",
              max(small["power_iterations"], large["power_iterations"]), less_than=1000),
        check("epochs batch 4 needed to reach the target loss (of at most 100)",
              small["epochs"], less_than=100),
        # Each run trains until its loss is below its goal (so the losses themselves are not
        # checks: they hold by construction); each must get there within its epoch budget, or
        # the two minima are not at the same loss.
        check("epochs the full batch needed to reach batch 4's loss (of at most 2,000)",
              large["epochs"], less_than=2000),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.2)
        names = ["batch 4", "full batch"]
        values = [small["top_eigenvalue"], large["top_eigenvalue"]]
        ax.bar(names, values, color=["tab:blue", "tab:red"])
        for i, (value, item) in enumerate(zip(values, (small, large), strict=True)):
            text = f"λ₁ = {value:.2f}\nloss {item['train_loss']:.3f}\n{item['epochs']:.0f} epochs"
            ax.text(i, value, text, ha="center", va="bottom", fontsize=8)
        ax.axhline(2.0 / lr, color="0.4", ls="--", lw=1)
        ax.text(-0.4, 2.0 / lr, "2 / lr", va="bottom", fontsize=8, color="0.3")
        ax.set_ylim(0, max(max(values), 2.0 / lr) * 1.3)
        ax.set_ylabel("top Hessian eigenvalue λ₁")
        ax.set_title(f"SGD lr {lr:g} to training loss < {target:g}", fontsize=9)
        figures["Sharpness after small- and large-batch training"] = fig
    return Trial(measured, checks, figures)


@lesson(
    18,
    "mode-connectivity",
    title="Minima are connected by valleys",
    claim="Two minima found from different seeds are separated by a loss barrier on the "
    "straight line between them, but joined by a simple curve along which the training loss "
    "stays low: training a Bezier curve removes most of the barrier (Garipov et al. 2018).",
    setup="Digits, two MLPs 64-64-64-10 from different seeds, Adam lr 3e-3, batch 128, 30 "
    "epochs (quick: 20); a quadratic Bezier curve between them trained by "
    "skier.diagnostics.connect (Adam lr 3e-3, 60 epochs, quick: 30); the training loss along "
    "the line and the curve at 31 values of t. Barrier: the maximum minus the mean of the two "
    "ends. Checked: the share of the line's barrier left on the curve is below 0.1 (the curve "
    "removes more than 90% of it).",
    seconds=(2.0, 6.0),
)
def mode_connectivity(ctx: Context) -> Trial:
    data = digits()
    epochs = ctx.pick(20, 30)
    ends = []
    for seed in (2 * ctx.seed, 2 * ctx.seed + 1):
        model = mlp(data, [64, 64, 64], seed=seed)
        fit(model, data.train, optimizer="adam", lr=3e-3, epochs=epochs, batch_size=128,
            seed=seed, progress="off", device=ctx.device)  # fmt: skip
        ends.append(model)
    settings = ConnectConfig(epochs=ctx.pick(30, 60), points=31, ensemble_points=5,
                             plane_points=0, seed=ctx.seed)  # fmt: skip
    result = connect(ends[0], ends[0], ends[1], data, settings,
                     optim_config={"name": "adam", "lr": 3e-3})  # fmt: skip
    line = float(result.summary["line_train_loss_barrier"])
    curve = float(result.summary["curve_train_loss_barrier"])
    reduction = float(result.summary["barrier_reduction"] or 0.0)
    share_left = 1.0 - reduction  # the share of the line's barrier still on the curve
    end_loss = float((result.line["train_loss"][0] + result.line["train_loss"][-1]) / 2)
    measured = {
        "line_train_loss_barrier": line,
        "curve_train_loss_barrier": curve,
        "barrier_reduction": reduction,
        "barrier_share_left": share_left,
        "endpoint_train_loss": end_loss,
        "line_test_error_max": float(np.max(result.line["test_error"])),
        "curve_test_error_max": float(np.max(result.curve["test_error"])),
    }
    checks = [
        check("train-loss barrier on the straight line", line, greater_than=0.5),
        # "Removes more than 90%" checked as "leaves less than 10%": the same inequality, but
        # a share removed cannot pass 1, so its margin over 0.9 could never exceed 11% however
        # well the curve trained; the share left says how far the result is from failing.
        check("share of the line's barrier left on the curve", share_left, less_than=0.1),
    ]
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2, width=4.6)
        for key, ax, label in (("train_loss", left, "train loss"),
                               ("test_error", right, "test error")):  # fmt: skip
            ax.plot(result.ts, result.line[key], "-", color="tab:red", label="straight line")
            ax.plot(result.ts, result.curve[key], "-", color="tab:blue", label="Bezier curve")
            ax.set_xlabel("t")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
        left.set_yscale("log")
        left.set_title(f"barrier {line:.2f} → {max(curve, 0.0):.3f} ({reduction:.0%} less)",
                       fontsize=9)  # fmt: skip
        right.set_title("test error along both paths", fontsize=9)
        figures["Straight line and trained curve between two minima"] = fig
    return Trial(measured, checks, figures)
