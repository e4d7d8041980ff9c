"""Lessons on gradient descent itself: going downhill, the noise of mini-batch gradients, and
backpropagation as the chain rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from skier.data import Split
from skier.lessons._tools import axes, digits, mlp
from skier.lessons.base import Context, Trial, check, lesson
from skier.train.batches import TensorBatches

__all__: list[str] = []


def _double_well(x: torch.Tensor) -> torch.Tensor:
    # Two minima: a shallow one near x = 1.13 and a deeper one near x = -1.30, a hill between.
    return x**4 - 3 * x**2 + x


def _descend(x0: float, lr: float, steps: int, momentum: float = 0.0) -> list[float]:
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([x], lr=lr, momentum=momentum)
    path = [x0]
    for _ in range(steps):
        optimizer.zero_grad()
        _double_well(x).backward()
        optimizer.step()
        value = float(x.detach())
        path.append(value)
        if not math.isfinite(value) or abs(value) > 1e6:
            break  # diverged: no point going on
    return path


def _slope(path: list[float]) -> float:
    x = torch.tensor(path[0], dtype=torch.float64, requires_grad=True)
    _double_well(x).backward()
    assert x.grad is not None
    return float(x.grad)


@lesson(
    1,
    "downhill",
    title="Gradient descent goes downhill",
    claim="A step against the derivative goes downhill when it is small enough: at a good lr "
    "every step lowers the loss, too small an lr crawls, a good one converges, too large "
    "diverges; momentum carries the skier over a small hill into "
    "the better minimum where plain gradient descent stops in the first.",
    setup="f(x) = x⁴ − 3x² + x from x₀ ≈ 2 (jittered by the seed); torch.optim.SGD with lr "
    "1e-4, 1e-2 and 0.3 for 300 steps, and lr 1e-2 with momentum 0.9. That every step goes "
    "against the derivative is how gradient descent is defined, so it is recorded "
    "(steps_against_derivative) but not checked; what is checked is that no step at lr 1e-2 "
    "raises f (by more than 1e-12: rounding), while steps at lr 0.3 do.",
    seconds=(1.0, 2.0),
)
def downhill(ctx: Context) -> Trial:
    rng = np.random.default_rng(ctx.seed)
    x0 = 2.0 + float(rng.uniform(-0.1, 0.1))
    steps = 300
    paths = {lr: _descend(x0, lr, steps) for lr in (1e-4, 1e-2, 0.3)}
    heavy = _descend(x0, 1e-2, steps * 2, momentum=0.9)
    plain = _descend(x0, 1e-2, steps * 2)
    good = paths[1e-2]
    against = [(b - a) * _slope([a]) < 0 for a, b in itertools.pairwise(good) if b != a]
    f = lambda v: float(_double_well(torch.tensor(v, dtype=torch.float64)))  # noqa: E731
    # A rise of f counts when it is beyond rounding: once converged, x moves by ~1e-16 and f
    # by an ulp either way.
    uphill = sum(f(b) > f(a) + 1e-12 for a, b in itertools.pairwise(good))
    large = [v for v in paths[0.3] if math.isfinite(v)]
    uphill_large = sum(f(b) > f(a) + 1e-12 for a, b in itertools.pairwise(large))
    local_min, global_min = 1.1309, -1.3008
    measured = {
        "steps_against_derivative": float(np.mean(against)),
        "good_lr_steps_uphill": float(uphill),
        "large_lr_steps_uphill": float(uphill_large),
        "small_lr_distance_to_minimum": abs(paths[1e-4][-1] - local_min),
        "good_lr_distance_to_minimum": abs(good[-1] - local_min),
        "large_lr_final_abs_x": min(abs(paths[0.3][-1]), 1e6)
        if math.isfinite(paths[0.3][-1])
        else 1e6,
        "plain_final_loss": f(plain[-1]),
        "momentum_final_loss": f(heavy[-1]),
    }
    checks = [
        check("steps at lr 1e-2 that raised f (of 300)",
              measured["good_lr_steps_uphill"], less_than=0.5),
        check("distance to the minimum after 300 steps, lr 1e-4 (crawls)",
              measured["small_lr_distance_to_minimum"], greater_than=0.2),
        check("distance to the minimum after 300 steps, lr 1e-2 (converges)",
              measured["good_lr_distance_to_minimum"], less_than=1e-3),
        check("|x| after lr 0.3 (diverges)", measured["large_lr_final_abs_x"], greater_than=1e3),
        check("final loss with momentum minus without (lower: the better minimum)",
              measured["momentum_final_loss"] - measured["plain_final_loss"], less_than=-1.0),
        check("where momentum ends (the deeper minimum, x ≈ -1.30)", heavy[-1],
              between=(global_min - 0.01, global_min + 0.01)),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2)
        grid = np.linspace(-2.0, 2.3, 400)
        curve = [f(v) for v in grid]
        for ax in (left, right):
            ax.plot(grid, curve, color="0.6", lw=1)
            ax.set_xlabel("x")
            ax.set_ylabel("f(x)")
            ax.set_ylim(-4.5, 6)
        for lr, color in ((1e-4, "tab:orange"), (1e-2, "tab:green"), (0.3, "tab:red")):
            xs = [v for v in paths[lr][:40] if abs(v) < 2.3]
            left.plot(xs, [f(v) for v in xs], "o-", ms=3, color=color, label=f"lr {lr:g}")
        left.set_title("plain gradient descent, first 40 steps", fontsize=9)
        left.legend(fontsize=8)
        for path, color, label in ((plain, "tab:green", "no momentum"),
                                   (heavy, "tab:blue", "momentum 0.9")):  # fmt: skip
            right.plot(path, [f(v) for v in path], "-", color=color, lw=1, label=label)
            right.plot([path[-1]], [f(path[-1])], "*", color=color, ms=12)
        right.set_title("momentum carries over the hill", fontsize=9)
        right.legend(fontsize=8)
        figures["Gradient descent on a double well"] = fig
    return Trial(measured, checks, figures)


@lesson(
    2,
    "sgd-noise",
    title="A mini-batch gradient is a noisy estimate",
    claim="The mini-batch gradient is an unbiased, noisy estimate of the full gradient; for "
    "m ≪ N its error falls as σ/√m (slope −0.5 on a log-log plot against the batch size m). "
    "Batches drawn as training draws them — without replacement — are less noisy than that "
    "as m nears N: the error follows σ/√m · √((N − m)/(N − 1)), the finite-population "
    "correction, which at m = N/2 is already 0.71.",
    setup="Digits (N = 1077 training examples), an MLP 64-64-10 at its initialisation "
    "(seeded); per-example gradients by torch.func, σ² their mean squared distance to the full "
    "gradient. Batches exactly as skier.train.fit draws them (TensorBatches: a fresh seeded "
    "permutation each epoch cut into ⌊N/m⌋ batches, drop_last) for m = 1 … 256, N/2 and 3N/4, "
    "enough epochs for about 200 batches at each m (quick: 100; at least 50 epochs for "
    "m ≥ N/2, whose one or two batches an epoch are one draw); the "
    "root-mean-square distance between batch and full gradient. Checked: the slope for "
    "m = 2 … 64 (at m = 1 every epoch uses each example once, so its error is σ by "
    "construction), the error at m = N/2 against σ/√m, every m against the corrected law, and "
    "the mean of the first batch of each epoch at m = N/2 against the full gradient.",
    seconds=(3.0, 8.0),
)
def sgd_noise(ctx: Context) -> Trial:
    data = digits()
    model = mlp(data, [64, 64], seed=ctx.seed).eval()
    x, y = data.train.inputs[0], data.train.targets
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g.reshape(len(x), -1) for g in per_example.values()], dim=1).double()
    n = len(x)
    full = flat.mean(dim=0)
    centred = flat - full
    # ‖mean of a batch's rows of `centred`‖² = maskᵀ·gram·mask / m²: every batch's error from
    # one N × N product instead of an m × parameters sum per batch.
    gram = centred @ centred.T
    sigma = float(gram.diagonal().mean().sqrt())
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, n // 2, 3 * n // 4]
    wanted = ctx.pick(100, 200)  # batches per m
    generator = torch.Generator().manual_seed(ctx.seed)
    rows = Split((torch.arange(n),), torch.zeros(n))  # batches of example indices
    errors, first_batches = [], torch.zeros(0, n, dtype=flat.dtype)
    for m in sizes:
        source = TensorBatches(rows, m, drop_last=True, generator=generator)
        epochs = max(math.ceil(wanted / len(source)), 50 if m >= n // 2 else 1)
        batches = [torch.stack([b[0] for b, _, _ in source]) for _ in range(epochs)]
        index = torch.cat(batches)
        mask = torch.zeros(len(index), n, dtype=flat.dtype).scatter_(1, index, 1.0)
        squared = ((mask @ gram) * mask).sum(dim=1) / m**2
        errors.append(float(squared.mean().sqrt()))
        if m == n // 2:
            first_batches = mask[:: len(source)]  # one independent batch per epoch
    law = [sigma / math.sqrt(m) * math.sqrt((n - m) / (n - 1)) for m in sizes]
    small = [i for i, m in enumerate(sizes) if 2 <= m <= 64]
    slope = float(np.polyfit(np.log([sizes[i] for i in small]),
                             np.log([errors[i] for i in small]), 1)[0])  # fmt: skip
    half = sizes.index(n // 2)
    below = errors[half] / (sigma / math.sqrt(sizes[half]))
    worst_law = max(abs(e / w - 1) for e, w in zip(errors, law, strict=True))
    # Unbiased: the mean of independent batch gradients closes in on the full gradient, as
    # fast as the error of one batch over √(batches) (RMS ratio 1 for an unbiased estimate).
    weights = first_batches.sum(dim=0) / (len(first_batches) * sizes[half])
    bias = float((weights @ gram @ weights).sqrt())
    bias_ratio = bias / (errors[half] / math.sqrt(len(first_batches)))
    measured = {
        "log_log_slope": slope,
        "sigma": sigma,
        "error_over_sigma_root_m_at_half": below,
        "corrected_factor_at_half": math.sqrt((n - sizes[half]) / (n - 1)),
        "largest_relative_gap_to_corrected_law": worst_law,
        "mean_of_batches_error_over_expected": bias_ratio,
    }
    measured.update({f"error_m{m}": e for m, e in zip(sizes, errors, strict=True)})
    checks = [
        check("|log-log slope of the error against m, m = 2 … 64, + 0.5|", abs(slope + 0.5),
              less_than=0.1),
        check(f"error at m = N/2 = {sizes[half]} / (σ/√m): below the uncorrected law", below,
              less_than=0.85),
        check("largest |measured error / (σ/√m·√((N−m)/(N−1))) − 1| over m = 1 … 3N/4",
              worst_law, less_than=0.1),
        check(f"‖mean of {len(first_batches)} independent batch gradients (m = N/2) − full‖ / "
              "(error of one / √batches)", bias_ratio, less_than=3.0),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=5.6)
        ax.loglog(sizes, errors, "o-", label="measured ‖g_m − g‖ (RMS), without replacement")
        ax.loglog(sizes, [sigma / math.sqrt(m) for m in sizes], "--", color="0.5",
                  label="σ/√m")  # fmt: skip
        ax.loglog(sizes, law, ":", color="k", label="σ/√m · √((N − m)/(N − 1))")
        ax.set_xlabel("batch size m")
        ax.set_ylabel("gradient error")
        ax.set_title(f"slope {slope:.3f} for m ≤ 64 (expected −0.5); N = {n}", fontsize=9)
        ax.legend(fontsize=8)
        figures["Mini-batch gradient error against batch size"] = fig
    return Trial(measured, checks, figures)


@lesson(
    22,
    "backprop",
    title="Backpropagation is the chain rule",
    claim="The chain rule by hand — the Jacobian products of the course — gives the same "
    "gradients as autograd for a small MLP, and both match finite differences.",
    setup="A 64-16-12-10 tanh MLP on 32 digits in float64; the backward pass written out layer "
    "by layer (δ = (softmax − onehot)/N, ∂W = aᵀδ, δ ← δWᵀ ⊙ (1 − a²)); central differences "
    "(h = 1e-6) on 40 random weights.",
    seconds=(1.0, 2.0),
)
def backprop(ctx: Context) -> Trial:
    data = digits()
    generator = torch.Generator().manual_seed(ctx.seed)
    index = torch.randperm(len(data.train), generator=generator)[:32]
    x = data.train.inputs[0][index].double()
    y = data.train.targets[index]
    sizes = [x.shape[1], 16, 12, 10]
    weights = [
        (
            torch.randn(a, b, generator=generator, dtype=torch.float64) / math.sqrt(a)
        ).requires_grad_()
        for a, b in itertools.pairwise(sizes)
    ]
    biases = [torch.zeros(b, dtype=torch.float64, requires_grad=True) for b in sizes[1:]]

    def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
        acts = [x]
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = acts[-1] @ w + b
            acts.append(z if i == len(weights) - 1 else torch.tanh(z))
        return F.cross_entropy(acts[-1], y), acts

    loss, acts = forward()
    loss.backward()
    with torch.no_grad():
        n = x.shape[0]
        delta = (acts[-1].softmax(dim=1) - F.one_hot(y, 10).double()) / n
        hand_w: list[torch.Tensor] = []
        hand_b: list[torch.Tensor] = []
        for layer in range(len(weights) - 1, -1, -1):
            hand_w.insert(0, acts[layer].T @ delta)
            hand_b.insert(0, delta.sum(dim=0))
            if layer > 0:
                delta = (delta @ weights[layer].T) * (1 - acts[layer] ** 2)
    autograd_w = [w.grad for w in weights]
    found = [*autograd_w, *(b.grad for b in biases)]
    diff = max(
        float((h - a).abs().max() / a.abs().max())
        for h, a in zip(hand_w + hand_b, found, strict=True)
        if a is not None
    )
    # Finite differences on random weights.
    worst = 0.0
    picks = []
    with torch.no_grad():
        for _ in range(ctx.pick(10, 40)):
            layer = int(torch.randint(len(weights), (1,), generator=generator))
            w = weights[layer]
            i = int(torch.randint(w.shape[0], (1,), generator=generator))
            j = int(torch.randint(w.shape[1], (1,), generator=generator))
            h = 1e-6
            w[i, j] += h
            up = float(forward()[0])
            w[i, j] -= 2 * h
            down = float(forward()[0])
            w[i, j] += h
            numeric = (up - down) / (2 * h)
            analytic = float(hand_w[layer][i, j])
            picks.append((numeric, analytic))
            worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-8))
    measured = {"hand_vs_autograd_max_rel": diff, "hand_vs_finite_diff_max_rel": worst}
    checks = [
        check("largest relative difference, chain rule by hand vs autograd", diff,
              less_than=1e-10),
        check("largest relative difference, chain rule vs finite differences", worst,
              less_than=1e-5),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=4.6, height=4.2)
        numbers = np.asarray(picks)
        ax.plot(numbers[:, 0], numbers[:, 1], "o", ms=4)
        low, high = float(numbers.min()), float(numbers.max())
        ax.plot([low, high], [low, high], "--", color="0.5", lw=1)
        ax.set_xlabel("finite difference")
        ax.set_ylabel("chain rule by hand")
        ax.set_title("∂loss/∂w for random weights", fontsize=9)
        figures["Chain rule against finite differences"] = fig
    return Trial(measured, checks, figures)
