"""Every diagnostic measures the run's loss (issue 20): a landscape point, the Hessian's
eigenvalues and products, the connectivity paths and sharpness during training, each checked
against torch.nn.functional (and a dense autograd Hessian) at the same weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skier.data.types import DataBundle, Split
from skier.diagnostics import connect, interpolate, landscape, lr_range_test, sharpness
from skier.diagnostics.sharpness import hessian_vector_product
from skier.errors import ConfigError, DataError
from skier.train import SharpnessTracker, fit
from skier.train.losses import build_loss

WEIGHTS = [2.0, 0.5, 1.0]  # class weights of the weighted cross-entropy


def _model(
    inputs: int, outputs: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 5), nn.Tanh(), nn.Linear(5, outputs)).to(dtype)


def _data(kind: str, n: int = 60, dtype: torch.dtype = torch.float32, seed: int = 1) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=dtype)
    if kind == "regression":  # large targets, so Huber's linear part is used
        y = (3 * x[:, :2] + torch.randn(n, 2, generator=g, dtype=dtype)).to(dtype)
    elif kind == "multilabel":
        y = (torch.rand(n, 3, generator=g) < 0.4).to(dtype)
    else:
        y = torch.randint(0, 3, (n,), generator=g)
    return Split((x,), y)


# name, train.loss options, data kind, outputs, oracle(out, y)
CASES: list[tuple[str, dict, str, int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [
    ("huber", {"huber_delta": 0.5}, "regression", 2,
     lambda out, y: F.huber_loss(out, y, delta=0.5)),
    ("binary_cross_entropy", {}, "multilabel", 3,
     lambda out, y: F.binary_cross_entropy_with_logits(out, y)),
    ("cross_entropy", {"class_weights": WEIGHTS}, "classes", 3,
     lambda out, y: F.cross_entropy(out, y, weight=torch.tensor(WEIGHTS, dtype=out.dtype))),
]  # fmt: skip
IDS = ["huber", "bce-multilabel", "weighted-ce"]


@pytest.mark.parametrize(("name", "options", "kind", "outputs", "oracle"), CASES, ids=IDS)
@pytest.mark.parametrize("batch_points", [1, 8])  # one point per pass, and the vmap'd pass
def test_a_landscape_point_is_the_runs_loss_at_those_weights(
    name: str, options: dict, kind: str, outputs: int, oracle: Callable, batch_points: int
) -> None:
    split = _data(kind)
    model = _model(4, outputs)
    loss = build_loss(name, options=options)
    result = landscape(
        model, split, {"dims": 1, "points": 5, "eval_batch_size": 16}, loss=loss,
        batch_points=batch_points,
    )  # fmt: skip
    (direction,) = result.directions
    params = list(model.parameters())
    for i, alpha in enumerate(result.alphas):
        moved = _model(4, outputs)
        with torch.no_grad():
            for p, w, d in zip(moved.parameters(), params, direction, strict=True):
                p.copy_(w + float(alpha) * d)
            expected = float(oracle(moved(split.inputs[0]), split.targets))
        assert result.surface.loss[i] == pytest.approx(expected, rel=1e-5)
    # The line between two models measures the same loss at both ends.
    other = _model(4, outputs, seed=3)
    line = interpolate(model, other, split, {"points": 3, "xrange": (0.0, 1.0)}, loss=loss)
    with torch.no_grad():
        ends = [float(oracle(m(split.inputs[0]), split.targets)) for m in (model, other)]
    assert [line.surface.loss[0], line.surface.loss[-1]] == pytest.approx(ends, rel=1e-5)


def _dense_hessian(model: nn.Module, split: Split, oracle: Callable) -> torch.Tensor:
    """The Hessian of the oracle loss in the flattened trainable parameters, by autograd."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
        return oracle(functional_call(model, params, split.inputs), split.targets)

    return torch.autograd.functional.hessian(loss_of, flat)


@pytest.mark.parametrize(("name", "options", "kind", "outputs", "oracle"), CASES, ids=IDS)
def test_hessian_eigenvalues_and_products_are_those_of_the_runs_loss(
    name: str, options: dict, kind: str, outputs: int, oracle: Callable
) -> None:
    split = _data(kind, dtype=torch.float64)
    model = _model(4, outputs, dtype=torch.float64)
    hessian = _dense_hessian(model, split, oracle)
    exact = torch.linalg.eigvalsh(hessian)
    top = exact[exact.abs().argsort(descending=True)][:2]
    loss = build_loss(name, options=options)
    result = sharpness(
        model, split, loss=loss,
        settings={"top_k": 2, "tolerance": 1e-10, "max_iterations": 200, "trace": False},
    )  # fmt: skip
    assert result.eigenvalues == pytest.approx(top.tolist(), rel=1e-5, abs=1e-8)
    # A product over several batches (weighted means: the whole split's total weight divides).
    vector = [torch.randn(p.shape, dtype=p.dtype) for p in model.parameters()]
    product = hessian_vector_product(
        model, split, vector, classification=kind == "classes", batch_size=7, loss=loss
    )
    flat = torch.cat([v.reshape(-1) for v in vector])
    got = torch.cat([h.reshape(-1) for h in product])
    torch.testing.assert_close(got, hessian @ flat, rtol=1e-9, atol=1e-12)


def test_a_callable_loss_is_measured_with_or_without_a_reduction_argument() -> None:
    split = _data("regression")
    model = _model(4, 2)

    def cubic(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        per = (out - y).abs().pow(3).mean(dim=1)
        return per if reduction == "none" else per.mean()

    def plain(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out - y).abs().pow(3).mean()

    with torch.no_grad():
        expected = float(plain(model(split.inputs[0]), split.targets))
    settings = {"dims": 1, "points": 3, "eval_batch_size": 16}
    for fn in (cubic, plain):
        result = landscape(model, split, settings, loss=fn)
        assert result.center_loss == pytest.approx(expected, rel=1e-5)
    hessian = _dense_hessian(model.double(), _data("regression", dtype=torch.float64), plain)
    top = float(torch.linalg.eigvalsh(hessian).abs().max())
    found = sharpness(
        model,
        _data("regression", dtype=torch.float64),
        loss=plain,
        settings={"tolerance": 1e-10, "max_iterations": 200, "trace": False},
    )
    assert abs(found.top_eigenvalue) == pytest.approx(top, rel=1e-5)


def test_a_loss_that_cannot_be_used_is_one_clear_line_naming_train_loss() -> None:
    split = _data("regression")
    model = _model(4, 2)
    settings = {"dims": 1, "points": 3}

    def elementwise(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out - y) ** 2  # no reduction: not the batch's mean

    def wrong_shape(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        values = (out - y) ** 2
        return values if reduction == "none" else values.mean()  # N x 2, not one per example

    with pytest.raises(ConfigError, match=r"^train\.loss must be a function that returns the "
                       r"batch's mean loss \(a scalar\); got 'elementwise returning shape "
                       r"\(60, 2\)'") as caught:  # fmt: skip
        landscape(model, split, settings, loss=elementwise, batch_points=1)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"^train\.loss must be a function whose reduction="):
        sharpness(model, split, loss=wrong_shape, settings={"trace": False})
    with pytest.raises(DataError, match=r"train\.loss 'cross_entropy' needs integer class"):
        landscape(model, split, settings, loss="cross_entropy")
    with pytest.raises(ConfigError, match=r"train\.loss must be a loss for regression"):
        sharpness(model, split, loss="nll", task="regression")


def _bundle(kind: str, outputs: int) -> DataBundle:
    train, test = _data(kind, n=48, seed=1), _data(kind, n=24, seed=2)
    if kind == "regression":
        return DataBundle(train, None, test, task="regression", num_targets=outputs)
    return DataBundle(train, None, test, task="multilabel", num_targets=outputs)


@pytest.mark.parametrize(("name", "options", "kind", "outputs", "oracle"), CASES[:2], ids=IDS[:2])
def test_connectivity_endpoints_are_the_runs_loss_at_each_model(
    name: str, options: dict, kind: str, outputs: int, oracle: Callable
) -> None:
    data = _bundle(kind, outputs)
    a, b = _model(4, outputs, seed=0), _model(4, outputs, seed=5)
    result = connect(
        a, a.state_dict(), b.state_dict(), data,
        {"epochs": 1, "points": 3, "ensemble_points": 2, "plane_points": 0},
        optim_config={"name": "sgd", "lr": 0.01},
        train_config={"loss": name, "batch_size": 16, **options},
    )  # fmt: skip
    with torch.no_grad():
        for i, m in ((0, a), (-1, b)):
            for split, key in ((data.train, "train_loss"), (data.test, "test_loss")):
                expected = float(oracle(m(split.inputs[0]), split.targets))
                assert result.line[key][i] == pytest.approx(expected, rel=1e-5)
                assert result.curve[key][i] == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(result.epoch_losses).all()
    if kind == "multilabel":  # per-label probabilities, not a softmax over the labels
        assert 0.0 <= result.ensemble["curve_ensemble"] <= 1.0


def test_sharpness_during_training_is_that_of_the_fits_loss() -> None:
    split = _data("multilabel", dtype=torch.float64)
    model = _model(4, 3, dtype=torch.float64)
    tracker = SharpnessTracker(split, every=1, subset=None, max_iterations=300,
                               warm_iterations=300, tolerance=1e-12)  # fmt: skip
    fit(model, split, loss="binary_cross_entropy", epochs=1, batch_size=60, lr=0.1,
        optimizer="sgd", callbacks=[tracker], progress="off")  # fmt: skip
    # One full-batch step: the record is λ1 at the weights after it, the model's final ones.
    (recorded,) = tracker.series["sharpness"]
    hessian = _dense_hessian(model, split, lambda o, y: F.binary_cross_entropy_with_logits(o, y))
    exact = torch.linalg.eigvalsh(hessian)
    assert recorded == pytest.approx(float(exact[exact.abs().argmax()]), rel=1e-5)


@pytest.mark.parametrize(("name", "kind", "outputs"), [("cross_entropy", "classes", 3),
                                                       ("mse", "regression", 2)])  # fmt: skip
def test_the_default_losses_give_the_numbers_they_gave_before(
    name: str, kind: str, outputs: int
) -> None:
    # Without loss= the diagnostics take the path they always took; the run's built loss of
    # the same name (what a CLI run passes now) agrees with it to rounding (evaluation sums
    # float32 outputs, in another order for MSE).
    split = _data(kind, dtype=torch.float64)
    model = _model(4, outputs, dtype=torch.float64)
    settings = {"dims": 1, "points": 5}
    before = landscape(model, split, settings).surface.loss
    np.testing.assert_allclose(landscape(model, split, settings, loss=name).surface.loss, before,
                               rtol=1e-6)  # fmt: skip
    quick = {"top_k": 2, "trace_samples": 5, "tolerance": 1e-10, "max_iterations": 200}
    plain, built = sharpness(model, split, settings=quick), sharpness(model, split, loss=name,
                                                                      settings=quick)  # fmt: skip
    assert built.eigenvalues == pytest.approx(plain.eigenvalues, rel=1e-9)
    assert built.trace == pytest.approx(plain.trace, rel=1e-9)


def test_the_lr_range_test_takes_a_multilabel_runs_loss() -> None:
    data = _bundle("multilabel", 3)
    model = _model(4, 3)
    with torch.no_grad():
        first = float(F.binary_cross_entropy_with_logits(model(data.train.inputs[0]),
                                                         data.train.targets))  # fmt: skip
    result = lr_range_test(model, data, train_config={"batch_size": 48},
                           settings={"num_steps": 5}, progress="off")  # fmt: skip
    # One batch is the whole split: the first step's loss is BCE at the initial weights.
    assert result.losses[0] == pytest.approx(first, rel=1e-5)


def test_the_lr_range_test_takes_one_logit_for_binary_cross_entropy_on_two_classes() -> None:
    # fit builds one output for binary cross-entropy on classes 0/1; the test checks the same
    split = _data("classes")
    split = Split(split.inputs, (split.targets > 0).long())
    model = _model(4, 1)
    with torch.no_grad():
        logits = model(split.inputs[0])[:, 0]
        first = float(F.binary_cross_entropy_with_logits(logits, split.targets.float()))
    result = lr_range_test(model, split, train_config={"batch_size": 60,
                                                       "loss": "binary_cross_entropy"},
                           settings={"num_steps": 5}, progress="off")  # fmt: skip
    assert result.losses[0] == pytest.approx(first, rel=1e-5)


def test_a_stopped_grid_resumes_only_onto_the_same_loss_and_options() -> None:
    split = _data("regression")
    model = _model(4, 2)
    settings = {"dims": 2, "points": 3, "points_y": 4}
    saved: list[dict] = []

    def stop_after_one_row(partial: dict) -> None:
        saved.append(partial)
        raise KeyboardInterrupt

    huber = build_loss("huber", options={"huber_delta": 0.5})
    with pytest.raises(KeyboardInterrupt):
        landscape(model, split, settings, loss=huber, on_row=stop_after_one_row)
    full = landscape(model, split, settings, loss=huber)
    resumed = landscape(model, split, settings, loss=huber, resume=saved[-1])
    np.testing.assert_array_equal(resumed.surface.loss, full.surface.loss)
    for other in (build_loss("huber", options={"huber_delta": 2.0}), build_loss("mse"),
                  build_loss("huber", options={"huber_delta": 0.5}, reduction="sum")):  # fmt: skip
        with pytest.raises(ConfigError, match="same model and settings"):
            landscape(model, split, settings, loss=other, resume=saved[-1])
