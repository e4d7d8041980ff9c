"""Lessons on the first optimizers: momentum on a narrow valley, and why Rprop does not work on
mini-batches."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from skier.lessons._tools import axes, digits, mlp
from skier.lessons.base import Context, Trial, check, lesson
from skier.train import fit

__all__: list[str] = []


def _heavy_ball(
    a: torch.Tensor, x0: torch.Tensor, lrs: torch.Tensor, betas: torch.Tensor, steps: int,
    tol: float,
) -> torch.Tensor:  # fmt: skip
    """Steps for torch's SGD with momentum (v ← βv + g, x ← x − lr·v) on ½xᵀAx to bring
    ‖x‖ below ``tol``·‖x₀‖, for many (lr, β) at once, until the first run does (only the
    fastest is wanted); ``steps + 1`` for the runs that did not."""
    x = x0.expand(len(lrs), -1).clone()
    v = torch.zeros_like(x)
    reached = torch.full((len(lrs),), steps + 1, dtype=torch.int64)
    goal = tol * float(x0.norm())
    for step in range(1, steps + 1):
        v = betas[:, None] * v + x @ a
        x = x - lrs[:, None] * v
        done = (x.norm(dim=1) < goal) & (reached > steps)
        reached[done] = step
        if bool(done.any()):
            break
        x = torch.nan_to_num(x, nan=1e6, posinf=1e6, neginf=-1e6).clamp(-1e6, 1e6)
    return reached


def _path(a: torch.Tensor, x0: torch.Tensor, lr: float, beta: float, steps: int) -> np.ndarray:
    x = x0.clone().requires_grad_()
    optimizer = torch.optim.SGD([x], lr=lr, momentum=beta)
    path = [x0.numpy().copy()]
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * x @ a @ x).backward()
        optimizer.step()
        path.append(x.detach().numpy().copy())
    return np.asarray(path)


@lesson(
    7,
    "momentum",
    title="Momentum on a narrow valley",
    claim="On a poorly conditioned quadratic, momentum reaches the minimum in far fewer steps "
    "than plain SGD, each at its best stable lr.",
    setup="f(x) = ½ xᵀAx with curvatures 1 and 100 (condition number 100), axes rotated by a "
    "seeded angle, from a seeded start at distance 1; steps until ‖x‖ < 1e-4 (at most 3000); "
    "plain SGD at the best of 60 lrs (1e-4 to 1, log-spaced), momentum at the best of those "
    "lrs × β ∈ {0.5, 0.6, 0.7, 0.8, 0.9, 0.95}; the winners rerun with torch.optim.SGD.",
    seconds=(0.3, 1.0),
)
def momentum(ctx: Context) -> Trial:
    rng = np.random.default_rng(ctx.seed)
    angle = float(rng.uniform(0, math.pi))
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)],
                             [math.sin(angle), math.cos(angle)]], dtype=torch.float64)  # fmt: skip
    a = rotation @ torch.diag(torch.tensor([1.0, 100.0], dtype=torch.float64)) @ rotation.T
    start = float(rng.uniform(0.2, 0.8)) * math.pi / 2  # between the valley's axes
    x0 = rotation @ torch.tensor([math.cos(start), math.sin(start)], dtype=torch.float64)
    lr_grid = torch.logspace(-4, 0, 60, dtype=torch.float64)
    beta_grid = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    limit, tol = 3000, 1e-4
    plain = _heavy_ball(a, x0, lr_grid, torch.zeros_like(lr_grid), limit, tol)
    lrs = lr_grid.repeat(len(beta_grid))
    betas = torch.tensor(beta_grid, dtype=torch.float64).repeat_interleave(len(lr_grid))
    heavy = _heavy_ball(a, x0, lrs, betas, limit, tol)
    best_plain = int(plain.argmin())
    best_heavy = int(heavy.argmin())
    plain_lr, heavy_lr, beta = (
        float(lr_grid[best_plain]),
        float(lrs[best_heavy]),
        float(betas[best_heavy]),
    )
    plain_steps, heavy_steps = int(plain[best_plain]), int(heavy[best_heavy])
    # The same runs by torch.optim.SGD: the counts must agree.
    plain_path = _path(a, x0, plain_lr, 0.0, plain_steps)
    heavy_path = _path(a, x0, heavy_lr, beta, heavy_steps)
    goal = tol * float(x0.norm())
    torch_plain = int(np.argmax(np.linalg.norm(plain_path, axis=1) < goal))
    torch_heavy = int(np.argmax(np.linalg.norm(heavy_path, axis=1) < goal))
    measured = {
        "plain_best_lr": plain_lr,
        "plain_steps": float(plain_steps),
        "momentum_best_lr": heavy_lr,
        "momentum_best_beta": beta,
        "momentum_steps": float(heavy_steps),
        "steps_ratio_plain_over_momentum": plain_steps / heavy_steps,
        "torch_optim_step_mismatch": float(
            abs(torch_plain - plain_steps) + abs(torch_heavy - heavy_steps)
        ),
    }
    checks = [
        check("plain SGD reached the tolerance (steps ≤ 3000)", plain_steps, less_than=limit + 1),
        check("steps to ‖x‖ < 1e-4, plain SGD / momentum (each at its best lr)",
              plain_steps / heavy_steps, greater_than=4.0),
        check("torch.optim.SGD rerun: |difference in steps|",
              measured["torch_optim_step_mismatch"], less_than=1.5),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax, speed) = axes(2, width=5.0, height=4.2)
        reach = 1.15 * float(x0.abs().max())
        u, w = np.meshgrid(np.linspace(-reach, reach, 200), np.linspace(-reach, reach, 200))
        an = a.numpy()
        f = 0.5 * (an[0, 0] * u**2 + 2 * an[0, 1] * u * w + an[1, 1] * w**2)
        ax.contour(u, w, f, levels=np.geomspace(1e-3, float(f.max()), 14), colors="0.7",
                   linewidths=0.7)  # fmt: skip
        ax.plot(plain_path[:80, 0], plain_path[:80, 1], ".-", ms=3, lw=0.8,
                label=f"SGD lr {plain_lr:.3g}: {plain_steps} steps")  # fmt: skip
        ax.plot(heavy_path[:80, 0], heavy_path[:80, 1], ".-", ms=3, lw=0.8,
                label=f"momentum β {beta:g}, lr {heavy_lr:.3g}: {heavy_steps} steps")  # fmt: skip
        ax.plot([0], [0], "k*", ms=10)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower left")
        ax.set_title("first 80 steps on the contours", fontsize=9)
        speed.semilogy(np.linalg.norm(plain_path, axis=1), label="SGD")
        speed.semilogy(np.linalg.norm(heavy_path, axis=1), label="momentum")
        speed.axhline(goal, color="0.5", ls="--", lw=1)
        speed.set_xlabel("step")
        speed.set_ylabel("distance to the minimum")
        speed.legend(fontsize=8)
        figures["Momentum on a poorly conditioned quadratic"] = fig
    notes = [
        f"Best stable lrs: plain SGD {plain_lr:.4g}; momentum {heavy_lr:.4g} with β {beta:g}. "
        "Theory (condition number κ = 100): about √κ = 10 times fewer steps."
    ]
    return Trial(measured, checks, figures, notes)


def _fed(optimizer_class: Callable[..., torch.optim.Optimizer], cycles: int) -> list[float]:
    """One scalar weight fed the gradient stream +0.1 x9, −0.9, ``cycles`` times (lr 0.01)."""
    w = torch.zeros((), requires_grad=True)
    optimizer = optimizer_class([w], lr=0.01)
    path = [0.0]
    for _ in range(cycles):
        for g in [0.1] * 9 + [-0.9]:
            w.grad = torch.tensor(g)
            optimizer.step()
            path.append(float(w.detach()))
    return path


@lesson(
    8,
    "rprop-minibatch",
    title="Rprop does not work on mini-batches",
    claim="Rprop steps by the sign of the gradient only: on the stream +0.1 ×9, −0.9 (mean zero) "
    "its weight runs away while RMSprop's does not; on digits, full-batch Rprop converges "
    "while mini-batch Rprop does not.",
    setup="One scalar weight fed the stream for 50 cycles, torch.optim.Rprop and RMSprop at lr "
    "0.01 (torch defaults otherwise); digits, an MLP 64-64-10, Rprop lr 0.01 by "
    "skier.train.fit with the full batch and with batches of 32, 20 epochs (40 in the full "
    "version): the final training loss.",
    seconds=(1.5, 6.0),
)
def rprop_minibatch(ctx: Context) -> Trial:
    cycles = 50
    rprop = _fed(torch.optim.Rprop, cycles)
    rmsprop = _fed(torch.optim.RMSprop, cycles)
    half = len(rprop) // 2
    data = digits()
    epochs = ctx.pick(20, 40)
    curves, final = {}, {}
    for label, m in (("full batch", "full"), ("mini-batch (m = 32)", 32)):
        model = mlp(data, [64, 64], seed=ctx.seed)
        result = fit(model, data.train, optimizer="rprop", lr=0.01, batch_size=m, epochs=epochs,
                     seed=ctx.seed, progress="off", exact_train_error=True,
                     device=ctx.device)  # fmt: skip
        curves[label] = result.history.column("loss")
        final[label] = curves[label][-1]
    full, mini = final["full batch"], final["mini-batch (m = 32)"]
    measured = {
        "rprop_final_weight": rprop[-1],
        "rmsprop_final_weight": rmsprop[-1],
        "rprop_drift_last_25_cycles": abs(rprop[-1] - rprop[half]),
        "rmsprop_drift_last_25_cycles": abs(rmsprop[-1] - rmsprop[half]),
        "full_batch_final_loss": full,
        "minibatch_final_loss": mini,
    }
    checks = [
        check("Rprop: |w| after 50 cycles of a mean-zero stream", abs(rprop[-1]),
              greater_than=100.0),
        check("RMSprop: |w| after 50 cycles", abs(rmsprop[-1]), less_than=1.0),
        check("RMSprop: |drift| over the last 25 cycles", measured["rmsprop_drift_last_25_cycles"],
              less_than=0.05),
        check(f"full-batch Rprop: training loss after {epochs} epochs", full, less_than=0.05),
        check("training loss, mini-batch − full-batch Rprop", mini - full, greater_than=0.5),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2)
        left.plot(rprop, label="Rprop")
        left.plot(rmsprop, label="RMSprop")
        left.set_yscale("symlog", linthresh=1.0)
        left.set_xlabel("step (gradients +0.1 ×9, −0.9, repeated)")
        left.set_ylabel("weight")
        left.legend(fontsize=8)
        left.set_title("a mean-zero gradient stream", fontsize=9)
        for label, curve in curves.items():
            right.semilogy(range(1, epochs + 1), curve, "o-", ms=3, label=label)
        right.set_xlabel("epoch")
        right.set_ylabel("training loss")
        right.legend(fontsize=8)
        right.set_title("Rprop on digits", fontsize=9)
        figures["Rprop: sign steps on noisy gradients"] = fig
    return Trial(measured, checks, figures)
