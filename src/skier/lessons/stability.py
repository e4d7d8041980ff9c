"""A lesson on the edge of stability: full-batch gradient descent sharpens until the top
Hessian eigenvalue reaches about 2/η, then hovers there (Cohen et al. 2021)."""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from skier.data import Split
from skier.lessons._tools import axes, digits, mlp
from skier.lessons.base import Context, Trial, check, lesson
from skier.train import SharpnessTracker, fit

__all__: list[str] = []

_LRS = (2.0, 3.0)
_EVERY = 10
_BAND = (0.8, 1.3)  # λ1 / (2/η) after the sharpening phase
# λ1 / (2/η) at the first record: training starts below the band it later settles in.
_BELOW = _BAND[0]


@lesson(
    23,
    "edge-of-stability",
    title="Full-batch gradient descent sharpens to 2/η",
    claim="Full-batch gradient descent with step size η raises the sharpness λ1 (the top "
    "eigenvalue of the training loss's Hessian) until it reaches about 2/η — beyond which a "
    "quadratic would make gradient descent diverge — and then hovers there while the loss "
    "keeps falling: the edge of stability (Cohen et al. 2021).",
    setup="Digits (a seeded 300 of the training examples; quick: 200), one-hot targets and the "
    "mean squared error (the setting of most of Cohen et al.'s runs: with cross-entropy the "
    "loss of these separable digits goes to zero and λ1 falls with it, measured 0.07-0.14 of "
    "2/η after 200 steps), a tanh MLP 32-32-10, full-batch gradient descent (SGD without "
    "momentum) at η = 2 and 3 (2/η = 1 and 0.67) for 300 steps (quick: 250). λ1 every 10 "
    "steps by skier.train.SharpnessTracker (power iteration warm-started from the last "
    "eigenvector, relative tolerance 1e-3, at most 30 products) on the whole training set. "
    "Checked for each η: λ1 at step 10 is below 0.8 · 2/η, the band's lower end (it sharpens "
    "from below), and the median of λ1 / (2/η) over the last third of the records is between "
    "0.8 and 1.3. "
    "Measured before choosing the band, on seeds 0-2 at 1 thread: 0.41-0.63 at step 10 and "
    "0.94-1.09 over the last half (300 examples), 0.42-0.66 and 0.98-1.11 over the last third "
    "(quick). About 3 s of CPU time for the quick version.",
    seconds=(5.0, 8.0),
)
def edge_of_stability(ctx: Context) -> Trial:
    data = digits()
    size, steps = ctx.pick((200, 250), (300, 300))
    generator = torch.Generator().manual_seed(ctx.seed)
    chosen = data.train.take(torch.randperm(len(data.train), generator=generator)[:size])
    train = Split(chosen.inputs, F.one_hot(chosen.targets, data.output_size).float())
    measured: dict[str, float] = {}
    checks = []
    curves: dict[float, tuple[list[float], list[float]]] = {}
    for lr in _LRS:
        model = mlp(data, [32, 32], seed=ctx.seed, activation="tanh")
        tracker = SharpnessTracker(train, every=_EVERY, subset=None, max_iterations=30,
                                   tolerance=1e-3, seed=ctx.seed)  # fmt: skip
        result = fit(model, train, optimizer="sgd", lr=lr, epochs=steps, batch_size="full",
                     seed=ctx.seed, progress="off", device=ctx.device,
                     callbacks=[tracker])  # fmt: skip
        values = result.history.steps["sharpness"]
        edge = 2.0 / lr
        ratios = [v / edge for v in values]
        settled = statistics.median(ratios[-(len(ratios) // 3) :])
        curves[lr] = (result.history.steps["sharpness_step"], values)
        measured[f"lr_{lr:g}_first_ratio"] = ratios[0]
        measured[f"lr_{lr:g}_settled_ratio"] = settled
        measured[f"lr_{lr:g}_max_ratio"] = max(ratios)
        measured[f"lr_{lr:g}_final_loss"] = result.history.column("loss")[-1]
        measured[f"lr_{lr:g}_mean_products"] = statistics.fmean(
            result.history.steps["sharpness_iterations"]
        )
        checks += [
            check(f"η = {lr:g}: λ1 / (2/η) at step {_EVERY}", ratios[0], less_than=_BELOW),
            check(f"η = {lr:g}: median λ1 / (2/η), last third of training", settled,
                  between=_BAND),
        ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.6)
        for lr, color in zip(_LRS, ("tab:blue", "tab:orange"), strict=True):
            recorded, values = curves[lr]
            ax.plot(recorded, values, color=color, lw=1.4, label=f"λ1, η = {lr:g}")
            ax.axhline(2.0 / lr, color=color, ls="--", lw=1, label=f"2/η = {2.0 / lr:.2f}")
        ax.set_xlabel("step")
        ax.set_ylabel("top Hessian eigenvalue λ1")
        ax.set_title("full-batch gradient descent, MSE, tanh MLP", fontsize=9)
        ax.legend(fontsize=8)
        figures["Sharpness against 2/η during full-batch gradient descent"] = fig
    return Trial(measured, checks, figures)
