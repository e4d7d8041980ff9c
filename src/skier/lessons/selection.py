"""Lessons on choosing a model: embeddings for categorical inputs, estimating performance by
cross-validation, and searching hyper-parameters at random rather than on a grid."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from skier.config import ModelConfig
from skier.data import DataBundle, Split
from skier.lessons._tools import axes, digits, mlp
from skier.lessons.base import Context, Trial, check, lesson
from skier.models import build_model, count_parameters
from skier.search.crossval import make_folds
from skier.train import EarlyStopping, evaluate, fit

if TYPE_CHECKING:
    # Imported where the search lesson runs: importing optuna imports tqdm.auto, which warns
    # in a notebook kernel without ipywidgets, and every lesson is registered on import.
    import optuna

__all__: list[str] = []


# --- 19 embeddings -----------------------------------------------------------------------------


def _shop_rows(
    rng: np.random.Generator, angle: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``rows`` rows of the shops table: numeric columns, shop index, label, and the noiseless
    score whose sign is the best any model can predict."""
    shop = rng.integers(0, len(angle), rows)
    x = rng.normal(size=(rows, 2)).astype(np.float32)
    score = x[:, 0] * np.cos(angle[shop]) + x[:, 1] * np.sin(angle[shop])
    y = (score + 0.25 * rng.normal(size=rows) > 0).astype(np.int64)
    return x, shop, y, score


def _shop_split(x: np.ndarray, shop: np.ndarray, y: np.ndarray) -> Split:
    # Codes are 1..categories: 0 is reserved for unseen values, as skier's preprocessing does.
    return Split((torch.from_numpy(x), torch.from_numpy(shop[:, None] + 1)), torch.from_numpy(y))


def _shops(seed: int, categories: int, rows: int) -> tuple[DataBundle, np.ndarray]:
    """A table: two numeric columns and a ``shop`` column with ``categories`` values; each shop
    has a hidden angle θ, and the label is whether (x₁, x₂) points along θ. The numeric columns
    alone say nothing about the label; the shop decides it."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * math.pi, categories)
    x, shop, y, _ = _shop_rows(rng, angle, rows)
    order = rng.permutation(rows)
    parts = np.split(order, [int(0.6 * rows), int(0.8 * rows)])
    train, val, test = (_shop_split(x[i], shop[i], y[i]) for i in parts)
    bundle = DataBundle(train, val, test, "classification", num_classes=2, name="shops",
                        feature_names=("x1", "x2"), class_names=("no", "yes"),
                        categorical_cardinalities=(categories + 1,))  # fmt: skip
    return bundle, angle


def _one_hot(split: Split, cardinality: int) -> Split:
    x_num, x_cat = split.inputs
    codes = F.one_hot(x_cat[:, 0], cardinality).float()
    return Split((torch.cat([x_num, codes], dim=1),), split.targets)


def _neighbour_angle(points: np.ndarray, angle: np.ndarray) -> float:
    """Mean difference in degrees between each shop's hidden angle and that of its nearest
    neighbour in the learned embedding: about 90 for a layout unrelated to the angles, small
    when shops that are near in the embedding mean nearly the same for the label."""
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    nearest = distance.argmin(axis=1)
    difference = np.abs(np.angle(np.exp(1j * (angle - angle[nearest]))))
    return float(np.degrees(difference.mean()))


@lesson(
    19,
    "embeddings",
    title="Embeddings for categorical inputs",
    claim="A high-cardinality categorical input goes into a net as well through a small "
    "learned embedding as through a one-hot vector, with several times fewer parameters: the "
    "embedding model is as accurate (within 1.5 points) and learns most of what can be learned, "
    "and its embedding lays the categories out by what they mean for the task.",
    setup="A generated table of 3,000 rows (seeded): two numeric columns and a shop "
    "column with 100 values, each shop with a hidden angle θ; the label is "
    "whether (x₁, x₂) points along the shop's θ (plus noise). 60/20/20 split. skier's "
    "tabular model (2-D embedding → MLP 64) against an MLP 64 on the numeric columns plus the "
    "one-hot shop; Adam lr 1e-2, batch 64, up to 100 epochs with early stopping on validation "
    "loss (patience 10, best weights restored). Accuracy on 20,000 fresh rows of the same "
    "shops (the 600 test rows alone give a standard error of 1.2 points, as large as the "
    "tolerance); 'learned': the share of the way from chance (0.5) to the best possible "
    "accuracy, that of the noiseless rule on the same rows. Layout: the mean angle between "
    "each shop's θ and that of its nearest neighbour in the embedding (chance: 90°). The "
    "parameter counts are reported, not checked: they follow from the two architectures.",
    seconds=(2.0, 6.5),
)
def embeddings(ctx: Context) -> Trial:
    categories, rows = 100, 3000
    data, angle = _shops(ctx.seed, categories, rows)
    cardinality = categories + 1
    settings: dict[str, Any] = {"optimizer": "adam", "lr": 1e-2, "epochs": 100, "batch_size": 64,
                "seed": ctx.seed, "progress": "off", "device": ctx.device}  # fmt: skip
    torch.manual_seed(ctx.seed)
    embedded = build_model(
        ModelConfig(name="tabular", hidden_sizes=[64], embedding_sizes=[2]),
        input_shape=(2,), output_size=2, categorical_cardinalities=[cardinality],
    )  # fmt: skip
    fit(embedded, data.train, data.val,
        callbacks=[EarlyStopping(patience=10, restore_best=True)], **settings)  # fmt: skip
    torch.manual_seed(ctx.seed)
    one_hot = build_model(ModelConfig(hidden_sizes=[64]), input_shape=(2 + cardinality,),
                          output_size=2)  # fmt: skip
    assert data.val is not None and data.test is not None
    fit(one_hot, _one_hot(data.train, cardinality), _one_hot(data.val, cardinality),
        callbacks=[EarlyStopping(patience=10, restore_best=True)], **settings)  # fmt: skip
    x, shop, y, score = _shop_rows(np.random.default_rng([ctx.seed, 1]), angle, 20_000)
    fresh = _shop_split(x, shop, y)
    acc_embedded = evaluate(embedded, fresh)["accuracy"]
    acc_one_hot = evaluate(one_hot, _one_hot(fresh, cardinality))["accuracy"]
    best_possible = float(np.mean((score > 0) == (y == 1)))
    learned = (acc_embedded - 0.5) / (best_possible - 0.5)
    table = embedded.embeddings[0].weight.detach()[1:].numpy()  # type: ignore[index,union-attr]
    layout = _neighbour_angle(table, angle)
    params_embedded, params_one_hot = count_parameters(embedded), count_parameters(one_hot)
    measured = {
        "embedding_accuracy": acc_embedded,
        "one_hot_accuracy": acc_one_hot,
        "best_possible_accuracy": best_possible,
        "embedding_share_learned": learned,
        "embedding_test_accuracy": evaluate(embedded, data.test)["accuracy"],
        "one_hot_test_accuracy": evaluate(one_hot, _one_hot(data.test, cardinality))["accuracy"],
        "embedding_parameters": float(params_embedded),
        "one_hot_parameters": float(params_one_hot),
        "parameter_ratio": params_one_hot / params_embedded,
        "embedding_neighbour_angle_degrees": layout,
    }
    checks = [
        check("accuracy on 20,000 fresh rows, embedding minus one-hot", acc_embedded - acc_one_hot,
              greater_than=-0.015),
        check("embedding: share of the way from chance (0.5) to the best possible accuracy",
              learned, greater_than=0.7),
        check("mean angle between a shop and its nearest embedding neighbour (chance: 90°)",
              layout, less_than=45.0),
    ]  # fmt: skip
    notes = [
        f"parameters (reported, not checked: fixed by the architectures): one-hot "
        f"{params_one_hot:,}, embedding {params_embedded:,}, ratio "
        f"{measured['parameter_ratio']:.1f}."
    ]
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2, width=4.6, height=4.2)
        shown = left.scatter(table[:, 0], table[:, 1], c=angle, cmap="hsv", s=14, vmin=0,
                             vmax=2 * math.pi)  # fmt: skip
        fig.colorbar(shown, ax=left, label="hidden angle θ of the shop")
        left.set_xlabel("embedding 1")
        left.set_ylabel("embedding 2")
        left.set_title(f"learned 2-D embedding of {categories} shops", fontsize=9)
        names = ["one-hot", "embedding"]
        right.bar(names, [acc_one_hot, acc_embedded], color=["tab:gray", "tab:blue"])
        for i, (acc, n) in enumerate(((acc_one_hot, params_one_hot),
                                      (acc_embedded, params_embedded))):  # fmt: skip
            right.text(i, acc, f"{acc:.3f}\n{n:,} parameters", ha="center", va="bottom",
                       fontsize=8)  # fmt: skip
        right.axhline(best_possible, color="0.5", ls="--", lw=1)
        right.set_ylim(0.5, 1.08)
        right.set_ylabel("accuracy on fresh rows (dashed: best possible)")
        right.set_title("accuracy and size", fontsize=9)
        figures["A categorical column: embedding against one-hot"] = fig
    return Trial(measured, checks, figures, notes)


# --- 20 cross-validation -----------------------------------------------------------------------


def _development(data: DataBundle) -> Split:
    """Training and validation rows together: what cross-validation splits."""
    assert data.val is not None
    return Split(
        tuple(torch.cat([a, b]) for a, b in zip(data.train.inputs, data.val.inputs, strict=True)),
        torch.cat([data.train.targets, data.val.targets]),
    )


def _score(rows: Split, train_index: np.ndarray, val_index: np.ndarray, *, seed: int,
           epochs: int, device: str) -> float:  # fmt: skip
    train = rows.take(torch.from_numpy(train_index))
    val = rows.take(torch.from_numpy(val_index))
    model = mlp(digits(), [32], seed=seed)
    fit(model, train, optimizer="adam", lr=3e-3, epochs=epochs, batch_size=64, seed=seed,
        progress="off", device=device)  # fmt: skip
    return evaluate(model, val)["accuracy"]


@lesson(
    20,
    "cross-validation",
    title="Cross-validation: an estimate and its spread",
    claim="k-fold cross-validation gives a mean and a spread; the estimate of a single 80/20 "
    "hold-out split is one draw of that spread: it moves with the split's seed by about the "
    "folds' standard deviation, around the k-fold mean, while the k-fold mean itself moves "
    "with its partition much less than one hold-out does.",
    setup="Digits' training and validation rows (1,437), an MLP 32 (Adam lr 3e-3, batch 64, "
    "8 epochs; quick: 5), validation accuracy. 5-fold cross-validation repeated 8 times "
    "(quick: 4; stratified, scikit-learn's RepeatedStratifiedKFold through "
    "skier.search.make_folds) against 40 single 80/20 hold-out splits with split seeds 0-39 "
    "(quick: 20; StratifiedShuffleSplit). 'About that spread': the ratio of the two standard "
    "deviations is within a factor 2.5 either way (each standard deviation of 20 discrete "
    "accuracies is itself uncertain by about 20%; with 20 of each, one seed of the full "
    "version came within 6% of the bound, hence 40). 'Much less': the standard deviation of "
    "the repetitions' 5-fold means, measured, under half the hold-outs' (with 4 values it is "
    "uncertain by about 40%). The standard error σ/√5 of the 5-fold mean is a formula: "
    "reported, not checked.",
    seconds=(4.0, 36.0),
)
def cross_validation(ctx: Context) -> Trial:
    rows = _development(digits())
    labels = rows.targets.numpy()
    epochs = ctx.pick(5, 8)
    folds = make_folds(labels, folds=5, repeats=ctx.pick(4, 8), seed=ctx.seed)
    fold_scores = [_score(rows, f.train_index, f.val_index, seed=ctx.seed, epochs=epochs,
                          device=ctx.device) for f in folds]  # fmt: skip
    holdout_scores = []
    for split_seed in range(ctx.pick(20, 40)):
        (one,) = make_folds(labels, folds=1, holdout_fraction=0.2, seed=100 * ctx.seed + split_seed)
        holdout_scores.append(
            _score(
                rows,
                one.train_index,
                one.val_index,
                seed=ctx.seed,
                epochs=epochs,
                device=ctx.device,
            )
        )
    fold_mean, fold_std = float(np.mean(fold_scores)), float(np.std(fold_scores, ddof=1))
    hold_mean, hold_std = float(np.mean(holdout_scores)), float(np.std(holdout_scores, ddof=1))
    repeats = sorted({f.repeat for f in folds})
    repeat_means = [float(np.mean([s for f, s in zip(folds, fold_scores, strict=True)
                                   if f.repeat == r])) for r in repeats]  # fmt: skip
    repeat_std = float(np.std(repeat_means, ddof=1))
    measured = {
        "kfold_mean_accuracy": fold_mean,
        "kfold_std_accuracy": fold_std,
        "kfold_standard_error": fold_std / math.sqrt(5),  # a formula: reported, not checked
        "kfold_repeat_means_std": repeat_std,
        "holdout_mean_accuracy": hold_mean,
        "holdout_std_accuracy": hold_std,
        "holdout_range": float(np.ptp(holdout_scores)),
        "spread_ratio": hold_std / fold_std,
    }
    checks = [
        check("hold-out spread over split seeds / k-fold spread", hold_std / fold_std,
              between=(0.4, 2.5)),
        check("|hold-out mean − k-fold mean| in k-fold standard deviations",
              abs(hold_mean - fold_mean) / fold_std, less_than=1.0),
        check(f"spread of the 5-fold mean over {len(repeats)} repetitions / hold-out spread",
              repeat_std / hold_std, less_than=0.5),
    ]  # fmt: skip
    figures = {}
    if ctx.draw:
        fig, (ax,) = axes(1, width=6.0)
        ax.plot(np.zeros(len(fold_scores)) + np.linspace(-0.08, 0.08, len(fold_scores)),
                fold_scores, "o", color="tab:blue", label="fold scores")  # fmt: skip
        ax.errorbar([0.3], [fold_mean], yerr=[fold_std], fmt="s", color="tab:blue", capsize=5,
                    label="k-fold mean ± std")  # fmt: skip
        ax.plot(np.full(len(repeat_means), 0.45), repeat_means, "_", ms=12, color="tab:blue",
                label="5-fold mean of each repetition")  # fmt: skip
        ax.plot(1 + np.linspace(-0.08, 0.08, len(holdout_scores)), holdout_scores, "o",
                color="tab:orange", label="80/20 hold-out, one per split seed")  # fmt: skip
        ax.errorbar([1.3], [hold_mean], yerr=[hold_std], fmt="s", color="tab:orange",
                    capsize=5, label="hold-out mean ± std")  # fmt: skip
        ax.set_xticks([0.1, 1.1], [f"5-fold × {len(repeats)}",
                                   f"hold-out × {len(holdout_scores)} seeds"])  # fmt: skip
        ax.set_xlim(-0.4, 1.7)
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"spread: folds {fold_std:.4f}, hold-outs {hold_std:.4f}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        figures["Cross-validation folds against hold-out splits"] = fig
    return Trial(measured, checks, figures)


# --- 21 search ---------------------------------------------------------------------------------

_LOW, _HIGH = -5.0, 1.0  # log10 of the lrs measured: every shifted search range lies inside


def _lr_curve(seed: int, points: int, epochs: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Validation loss of a real short training at ``points`` values of log10 lr."""
    data = digits()
    logs = np.linspace(_LOW, _HIGH, points)
    losses = []
    for log_lr in logs:
        model = mlp(data, [32], seed=seed)
        found = fit(model, data.train, data.val, optimizer="sgd", lr=float(10**log_lr),
                    epochs=epochs, batch_size=32, seed=seed, progress="off",
                    device=device)  # fmt: skip
        loss = found.history.rows[-1].get("val_loss", math.inf)
        losses.append(min(loss, 5.0) if math.isfinite(loss) else 5.0)  # diverged: capped
    return logs, np.asarray(losses)


def _search(
    sampler: optuna.samplers.BaseSampler, curve: tuple[np.ndarray, np.ndarray], low: float
) -> tuple[float, list[float]]:
    """Best objective of 9 trials over log10 lr in [low, low + 4] and u in [0, 1], and the
    log10 lrs tried."""
    from skier.search._optuna import optuna  # without tqdm's warning in a notebook

    logs, losses = curve

    def objective(trial: optuna.Trial) -> float:
        log_lr = trial.suggest_float("log_lr", low, low + 4.0)
        unimportant = trial.suggest_float("u", 0.0, 1.0)
        return float(np.interp(log_lr, logs, losses)) + 0.01 * unimportant

    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=9)
    return study.best_value, [t.params["log_lr"] for t in study.trials]


@lesson(
    21,
    "search",
    title="Random search beats grid search",
    claim="When one hyper-parameter matters much more than the other, random search finds a "
    "better setting than grid search with the same number of trials: over many searches its "
    "best is lower on average and in the median, and it lands near the optimum more often "
    "(the reason: a 3 × 3 grid tries only 3 values of the important one, 9 random trials try "
    "9; Bergstra and Bengio 2012).",
    setup="Objective: a response surface fitted to real training — the validation loss of an "
    "MLP 32 on digits after 4 epochs of SGD (batch 32; quick: 3 epochs) measured at 19 values "
    "of log10 lr in [−5, 1] (quick: 13) and interpolated linearly (a diverged run counts as "
    "5) — plus 0.01·u for an unimportant second parameter u ∈ [0, 1] (synthetic). 400 "
    "searches (quick: 200), each over log10 lr in a 4-decade range [L, L + 4] with L drawn "
    "uniformly from [−5, −3], one grid spacing (where the optimum falls relative to the grid "
    "is not known in advance), 9 trials each: Optuna's GridSampler on "
    "{L, L + 2, L + 4} × {0, 0.5, 1} against its RandomSampler (its own seed per search) on "
    "the same range. Checked over the searches: the mean and the median of the best objective "
    "found, random / grid, and the share of searches whose best is near-optimal (within 25% of "
    "the lowest loss on the curve), random − grid. The head-to-head share (random better in "
    "the same range) is reported: when the grid's top point lands in the good region the "
    "grid ties or wins, as it offers u = 0 exactly.",
    seconds=(2.5, 12.0),
)
def search(ctx: Context) -> Trial:
    from skier.search._optuna import optuna  # without tqdm's warning in a notebook

    curve = _lr_curve(ctx.seed, ctx.pick(13, 19), ctx.pick(3, 4), ctx.device)
    logs, losses = curve
    rng = np.random.default_rng(ctx.seed)
    runs = ctx.pick(200, 400)
    lows = rng.uniform(_LOW, _LOW + 2.0, runs)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        grid_runs, random_runs = [], []
        for s, low in enumerate(lows):
            grid = {"log_lr": [low, low + 2.0, low + 4.0], "u": [0.0, 0.5, 1.0]}
            grid_runs.append(_search(optuna.samplers.GridSampler(grid, seed=s), curve, low))
            sampler = optuna.samplers.RandomSampler(seed=1000 * ctx.seed + s)
            random_runs.append(_search(sampler, curve, low))
    finally:
        optuna.logging.set_verbosity(verbosity)
    grid_best = np.asarray([best for best, _ in grid_runs])
    random_best = np.asarray([best for best, _ in random_runs])
    difference = random_best - grid_best
    optimum = float(losses.min())
    near = 1.25 * optimum  # "near-optimal": within 25% of the best loss measured on the curve
    measured = {
        "grid_best_mean": float(grid_best.mean()),
        "random_best_mean": float(random_best.mean()),
        "grid_best_median": float(np.median(grid_best)),
        "random_best_median": float(np.median(random_best)),
        "median_difference": float(np.median(difference)),
        "grid_near_optimal_share": float(np.mean(grid_best <= near)),
        "random_near_optimal_share": float(np.mean(random_best <= near)),
        "random_wins_share": float(np.mean(difference < 0)),
        "measured_optimum": optimum,
        "best_log10_lr": float(logs[int(np.argmin(losses))]),
    }
    checks = [
        check(f"mean over {runs} searches of the best found, random / grid",
              measured["random_best_mean"] / measured["grid_best_mean"], less_than=1.0),
        check(f"median over {runs} searches of the best found, random / grid",
              measured["random_best_median"] / measured["grid_best_median"], less_than=1.0),
        check("share of searches that find a near-optimal lr, random − grid",
              measured["random_near_optimal_share"] - measured["grid_near_optimal_share"],
              greater_than=0.0),
    ]  # fmt: skip
    notes = [
        f"head to head (same range), random search found the better setting in "
        f"{measured['random_wins_share']:.0%} of the {runs} searches; when the grid's top "
        "point lands in the good region it is hard to beat."
    ]
    figures = {}
    if ctx.draw:
        fig, (left, right) = axes(2, width=4.8)
        low = float(lows[0])
        left.plot(logs, losses, "o-", color="0.4", label="measured (interpolated)")
        points = [low, low + 2.0, low + 4.0]
        left.plot(points, np.interp(points, logs, losses), "s", ms=9, color="tab:red",
                  label="grid's 3 lr values (search 1)")  # fmt: skip
        tried = random_runs[0][1]
        left.plot(tried, np.interp(tried, logs, losses), "^", color="tab:blue",
                  label="random's 9 (search 1)")  # fmt: skip
        left.set_xlabel("log10 lr")
        left.set_ylabel("validation loss")
        left.set_yscale("log")
        left.set_title("the important hyper-parameter", fontsize=9)
        left.legend(fontsize=7)
        top = float(max(grid_best.max(), random_best.max()))
        bottom = float(min(grid_best.min(), random_best.min()))
        right.plot([bottom, top], [bottom, top], "--", color="0.5", lw=1)
        right.plot(grid_best, random_best, "o", color="tab:blue", ms=4)
        right.set_xlabel("grid search: best of 9")
        right.set_ylabel("random search: best of 9")
        right.set_title(f"{runs} searches; random better in {measured['random_wins_share']:.0%}"
                        " (below the line)", fontsize=9)  # fmt: skip
        figures["Grid against random search, 9 trials each"] = fig
    return Trial(measured, checks, figures, notes)
