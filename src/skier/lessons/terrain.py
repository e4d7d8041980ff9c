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
    "anywhere.",
    setup="Digits (500 training examples, seeded), ReLU MLPs of 10 hidden layers of 32 "
    "(quick: 8 of 24), with and without residual blocks (residual: true), Adam lr 2e-3, batch "
    "64, until the exact training loss is below 0.05; then the loss on a 15 x 15 grid "
    "(quick: 11 x 11) over α, β ∈ [−1, 1] along two filter-normalized random directions "
    "(skier.diagnostics.landscape, 400 training examples). Measure: the share of second "
    "differences along α and β that are negative.",
    seconds=(4.0, 10.0),
)
def skip_connections(ctx: Context) -> Trial:
    data = digits()
    generator = torch.Generator().manual_seed(ctx.seed)
    train = data.train.take(torch.randperm(len(data.train), generator=generator)[:500])
    depth, width = ctx.pick((8, 24), (10, 32))
    points = ctx.pick(11, 15)
    shares, losses, surfaces, epochs = {}, {}, {}, {}
    for residual in (False, True):
        model = mlp(data, [width] * depth, seed=ctx.seed, residual=residual)
        found = fit(model, train, optimizer="adam", lr=2e-3, epochs=150, batch_size=64,
                    seed=ctx.seed, progress="off", exact_train_error=True,
                    callbacks=[_StopBelow(0.05)])  # fmt: skip
        key = "skip" if residual else "plain"
        epochs[key] = found.epochs_done
        losses[key] = evaluate(model, train)["loss"]
        result = landscape(
            model, train, LandscapeConfig(dims=2, points=points, subset=400, seed=ctx.seed)
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
              target: float, seed: int) -> int:  # fmt: skip
    found = fit(model, train, optimizer="sgd", lr=lr, epochs=300, batch_size=batch_size,
                seed=seed, progress="off", exact_train_error=True,
                callbacks=[_StopBelow(target)])  # fmt: skip
    return found.epochs_done


@lesson(
    17,
    "sharp-vs-flat",
    title="Large batches find sharper minima",
    claim="Trained to the same training loss, large-batch training ends in a sharper minimum — "
    "a larger top eigenvalue of the Hessian of the training loss — than small-batch SGD "
    "(Keskar et al. 2017).",
    setup="Digits, an MLP 64-64-10 (the same initialisation for both), plain SGD at lr 0.3: "
    "with batch 8 until the exact training loss is below 0.1, and with the full batch (1,078 "
    "examples: gradient descent) until it is below the loss batch 8 reached, so the large "
    "batch ends at the lower loss; then the top Hessian eigenvalue of the training loss by "
    "power iteration (skier.diagnostics.sharpness, 600 training examples).",
    seconds=(1.0, 3.0),
)
def sharp_vs_flat(ctx: Context) -> Trial:
    data = digits()
    lr, target = 0.3, 0.1
    found: dict[str, dict[str, float]] = {}
    for key, batch_size in (("small", 8), ("large", "full")):
        model = mlp(data, [64, 64], seed=ctx.seed)
        # The small batch overshoots the target within its last epoch; the large batch trains
        # to the loss the small batch reached. A lower cross-entropy loss usually means a
        # flatter minimum, so this does not favour the claim.
        goal = target if key == "small" else found["small"]["train_loss"]
        epochs = _train_to(model, data.train, batch_size, lr=lr, target=goal, seed=ctx.seed)
        result = sharpness(
            model,
            data,
            settings=SharpnessConfig(top_k=1, max_iterations=40, trace=False, subset=600,
                                     seed=ctx.seed),
        )  # fmt: skip
        found[key] = {
            "epochs": float(epochs),
            "train_loss": evaluate(model, data.train)["loss"],
            "top_eigenvalue": result.top_eigenvalue,
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
    }
    checks = [
        check("top Hessian eigenvalue, full batch / batch 8", measured["sharpness_ratio"],
              greater_than=1.5),
        check("training loss, batch 8", small["train_loss"], less_than=target),
        check("training loss, full batch / batch 8", large["train_loss"] / small["train_loss"],
              less_than=1.0),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.2)
        names = ["batch 8", "full batch"]
        values = [small["top_eigenvalue"], large["top_eigenvalue"]]
        ax.bar(names, values, color=["tab:blue", "tab:red"])
        for i, (value, item) in enumerate(zip(values, (small, large), strict=True)):
            text = f"λ₁ = {value:.2f}\nloss {item['train_loss']:.3f}\n{item['epochs']:.0f} epochs"
            ax.text(i, value, text, ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(values) * 1.35)
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
    "skier.diagnostics.connect (Adam lr 3e-3, 30 epochs, quick: 15); the training loss along "
    "the line and the curve at 31 values of t. Barrier: the maximum minus the mean of the two "
    "ends.",
    seconds=(1.0, 5.0),
)
def mode_connectivity(ctx: Context) -> Trial:
    data = digits()
    epochs = ctx.pick(20, 30)
    ends = []
    for seed in (2 * ctx.seed, 2 * ctx.seed + 1):
        model = mlp(data, [64, 64, 64], seed=seed)
        fit(model, data.train, optimizer="adam", lr=3e-3, epochs=epochs, batch_size=128,
            seed=seed, progress="off")  # fmt: skip
        ends.append(model)
    settings = ConnectConfig(epochs=ctx.pick(15, 30), points=31, ensemble_points=5,
                             plane_points=0, seed=ctx.seed)  # fmt: skip
    result = connect(ends[0], ends[0], ends[1], data, settings,
                     optim_config={"name": "adam", "lr": 3e-3})  # fmt: skip
    line = float(result.summary["line_train_loss_barrier"])
    curve = float(result.summary["curve_train_loss_barrier"])
    reduction = float(result.summary["barrier_reduction"] or 0.0)
    end_loss = float((result.line["train_loss"][0] + result.line["train_loss"][-1]) / 2)
    measured = {
        "line_train_loss_barrier": line,
        "curve_train_loss_barrier": curve,
        "barrier_reduction": reduction,
        "endpoint_train_loss": end_loss,
        "line_test_error_max": float(np.max(result.line["test_error"])),
        "curve_test_error_max": float(np.max(result.curve["test_error"])),
    }
    checks = [
        check("train-loss barrier on the straight line", line, greater_than=0.5),
        check("share of the barrier the curve removes", reduction, greater_than=0.9),
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
