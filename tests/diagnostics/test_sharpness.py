"""Sharpness against the exact Hessian of tiny models (torch.autograd.functional.hessian)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from skier.config import DataConfig, ModelConfig, SharpnessConfig
from skier.data import load_data
from skier.data.types import DataBundle, Split
from skier.diagnostics.sharpness import SharpnessResult, hessian_vector_product, sharpness
from skier.errors import ConfigError, DataError, ModelError
from skier.models import build_model
from skier.train import fit

EXACT = SharpnessConfig(top_k=3, max_iterations=2000, tolerance=1e-10, trace=False)


def _tiny_mlp(*, batch_norm: bool = False, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(3, 5)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(5))
    layers += [nn.Tanh(), nn.Dropout(dropout), nn.Linear(5, 3)]
    model = nn.Sequential(*layers).double()
    if batch_norm:  # running statistics unlike a fresh layer's, and a model left in train mode
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model.train()
    return model


def _classes(n: int = 40, seed: int = 1) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return Split((x,), torch.randint(0, 3, (n,), generator=g))


def _exact_hessian(model: nn.Module, split: Split, *, classification: bool = True) -> torch.Tensor:
    """The Hessian of the mean loss in eval mode, on the flattened trainable parameters."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    flat = torch.cat([p.detach().flatten() for _, p in named])
    was_training = model.training
    model.eval()

    def loss(w: torch.Tensor) -> torch.Tensor:
        pieces, i = {}, 0
        for name, p in named:
            pieces[name] = w[i : i + p.numel()].view(p.shape)
            i += p.numel()
        out = functional_call(model, pieces, split.inputs)
        if classification:
            return F.cross_entropy(out, split.targets)
        return F.mse_loss(out, split.targets.reshape(out.shape))

    try:
        return torch.autograd.functional.hessian(loss, flat)
    finally:
        model.train(was_training)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def _by_magnitude(hessian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(hessian)
    order = values.abs().argsort(descending=True)
    return values[order], vectors[:, order]


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, Split, torch.Tensor]:
    model, split = _tiny_mlp(), _classes()
    return model, split, _exact_hessian(model, split)


@pytest.fixture(scope="module")
def tiny_result(tiny) -> SharpnessResult:
    model, split, _ = tiny
    return sharpness(model, split, settings=EXACT)  # ~280 products: shared by the tests


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "rng": torch.get_rng_state(),
        "ids": [id(p) for p in model.parameters()],
    }


def _bits(t: torch.Tensor) -> bytes:
    """The raw bytes: bit-for-bit equality, NaN included (``torch.equal`` says NaN != NaN)."""
    return t.detach().cpu().contiguous().numpy().tobytes()


def _assert_same(model: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert _bits(after["state"][key]) == _bits(value), key
    for a, b in zip(after["grads"], before["grads"], strict=True):
        assert (a is None and b is None) or _bits(a) == _bits(b)
    for key in ("modes", "flags", "ids"):
        assert after[key] == before[key], key
    assert _bits(after["rng"]) == _bits(before["rng"])


# --- against the exact Hessian -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_both_methods_find_the_exact_top_eigenpairs(tiny, method: str) -> None:
    model, split, hessian = tiny
    settings = EXACT.model_copy(update={"method": method})
    result = sharpness(model, split, settings=settings)
    exact, vectors = _by_magnitude(hessian)
    assert result.eigenvalues == pytest.approx(exact[:3].tolist(), rel=1e-6)
    assert all(result.converged)
    for i in range(3):  # unit eigenvectors, up to sign
        found = _flat(result.eigenvectors[i])
        assert abs(float(found @ vectors[:, i])) == pytest.approx(1.0, abs=1e-6)


def test_lanczos_reaches_power_iterations_accuracy_in_far_fewer_products() -> None:
    """A trained digits MLP (float32, 2,890 weights): at the default tolerance, Lanczos's top-3
    are as close to a tightly converged answer as power iteration's, from fewer products."""
    data = load_data(DataConfig())
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_sizes=[32]), input_shape=(64,), output_size=10)
    fit(model, data, epochs=3, progress="off")
    base = {"top_k": 3, "trace": False, "subset": 500}
    reference = sharpness(model, data, settings={**base, "tolerance": 1e-7,
                                                 "max_iterations": 400})  # fmt: skip
    lanczos = sharpness(model, data, settings=base)
    power = sharpness(model, data, settings={**base, "method": "power"})
    truth = reference.eigenvalues
    assert all(lanczos.converged) and all(power.converged)

    def error(values: list[float]) -> float:
        return max(abs(a - b) / abs(b) for a, b in zip(values, truth, strict=True))

    lanczos_error, power_error = error(lanczos.eigenvalues), error(power.eigenvalues)
    assert lanczos_error <= max(power_error, 1e-5)
    assert 3 * lanczos.iterations[0] <= sum(power.iterations)


def test_top_eigenvalues_match_the_exact_hessian(tiny, tiny_result) -> None:
    _, _, hessian = tiny
    result = tiny_result
    exact, _ = _by_magnitude(hessian)
    assert result.eigenvalues == pytest.approx(exact[:3].tolist(), rel=1e-3)
    assert all(result.converged)
    assert [len(h) for h in result.histories] == result.iterations
    assert [h[-1] for h in result.histories] == result.eigenvalues
    magnitudes = [abs(v) for v in result.eigenvalues]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert result.trace is None and result.trace_std_error is None and result.trace_samples == 0
    assert result.examples == 40 and result.split == "train"
    assert result.parameter_names == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_eigenvectors_match_up_to_sign_and_are_orthonormal(tiny, tiny_result) -> None:
    model, _, hessian = tiny
    result = tiny_result
    _, vectors = _by_magnitude(hessian)
    found = [_flat(v) for v in result.eigenvectors]
    for i, v in enumerate(found):
        assert abs(float(v @ vectors[:, i])) == pytest.approx(1.0, abs=1e-6)
    gram = torch.stack(found) @ torch.stack(found).T
    assert torch.allclose(gram, torch.eye(3, dtype=gram.dtype), atol=1e-8)
    shapes = [tuple(p.shape) for p in model.parameters()]
    for vector in result.eigenvectors:
        assert [tuple(t.shape) for t in vector] == shapes
        assert all(t.device.type == "cpu" and not t.requires_grad for t in vector)


def test_hessian_vector_product_is_exact(tiny) -> None:
    model, split, hessian = tiny
    g = torch.Generator().manual_seed(3)
    vector = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    product = hessian_vector_product(model, split, vector, classification=True)
    assert torch.allclose(_flat(product), hessian @ _flat(vector), rtol=0, atol=1e-6)


def test_hutchinson_trace_is_unbiased_with_the_right_error(tiny) -> None:
    model, split, hessian = tiny
    exact = float(hessian.trace())
    # Plain Hutchinson (no deflation; the deflated estimator: test_sharpness_trace.py).
    settings = SharpnessConfig(top_k=1, max_iterations=3, trace_samples=1000, trace_basis=0, seed=5,
                               trace_method="hutchinson")  # fmt: skip
    result = sharpness(model, split, settings=settings)
    assert result.trace_samples == 1000 and result.trace_std_error is not None
    assert abs(result.trace - exact) < 3 * result.trace_std_error
    assert result.trace == pytest.approx(exact, rel=0.1)
    # Rademacher probes: Var(vᵀHv) = 2 Σ_{i≠j} H_ij², so the standard error is known exactly.
    off_diagonal = float((hessian**2).sum() - (hessian.diagonal() ** 2).sum())
    assert result.trace_std_error == pytest.approx(math.sqrt(2 * off_diagonal / 1000), rel=0.15)


def test_a_negative_eigenvalue_is_found_first_when_it_is_largest_in_magnitude() -> None:
    class SaddleModel(nn.Module):  # y = a²x + bx at a = b = 0 with target x: H = diag(-4m, 2m)
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Parameter(torch.zeros((), dtype=torch.float64))
            self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a**2 * x + self.b * x

    x = torch.linspace(-1, 1, 11, dtype=torch.float64).unsqueeze(1)
    mean_square = float((x**2).mean())
    settings = SharpnessConfig(top_k=2, tolerance=1e-8, trace_samples=2)
    result = sharpness(SaddleModel(), (x, x.clone()), settings=settings)
    assert result.eigenvalues == pytest.approx([-4 * mean_square, 2 * mean_square], rel=1e-6)
    assert result.trace == pytest.approx(-2 * mean_square)  # diagonal: every probe is exact


def test_regression_uses_mean_squared_error_over_every_target() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(4)
    split = Split(
        (torch.randn(30, 3, generator=g, dtype=torch.float64),),
        torch.randn(30, 2, generator=g, dtype=torch.float64),
    )
    hessian = _exact_hessian(model, split, classification=False)
    vector = [torch.ones_like(p) for p in model.parameters()]
    for batch_size in (30, 7):
        product = hessian_vector_product(
            model, split, vector, classification=False, batch_size=batch_size
        )
        assert torch.allclose(_flat(product), hessian @ _flat(vector), rtol=0, atol=1e-10)


# --- batching and eval-mode semantics ------------------------------------------------------------


def test_batch_size_does_not_change_the_product() -> None:
    # float32, as models are trained: a sum of batch means would be ~6x the whole-set product.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
    split = Split((_classes(50).inputs[0].float(),), _classes(50).targets)
    vector = [torch.randn_like(p) for p in model.parameters()]
    whole = hessian_vector_product(model, split, vector, classification=True, batch_size=4096)
    batched = hessian_vector_product(model, split, vector, classification=True, batch_size=7)
    for a, b in zip(whole, batched, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-5)
    settings = SharpnessConfig(top_k=2, tolerance=1e-6, trace_samples=5)
    one = sharpness(model, split, settings=settings)
    many = sharpness(model, split, settings=settings.model_copy(update={"batch_size": 7}))
    assert many.eigenvalues == pytest.approx(one.eigenvalues, rel=1e-4)
    assert many.trace == pytest.approx(one.trace, rel=1e-4)


def test_batch_norm_and_dropout_models_use_eval_mode() -> None:
    model, split = _tiny_mlp(batch_norm=True, dropout=0.5), _classes()
    hessian = _exact_hessian(model, split)  # eval mode: running statistics, no dropout
    vector = [torch.ones_like(p) for p in model.parameters()]
    for batch_size in (40, 7):  # train-mode batch statistics would depend on the batch size
        product = hessian_vector_product(model, split, vector, classification=True,
                                         batch_size=batch_size)  # fmt: skip
        assert torch.allclose(_flat(product), hessian @ _flat(vector), rtol=0, atol=1e-10)
    settings = SharpnessConfig(top_k=1, max_iterations=500, tolerance=1e-8, trace=False)
    result = sharpness(model, split, settings=settings)
    exact, _ = _by_magnitude(hessian)
    assert result.eigenvalues[0] == pytest.approx(float(exact[0]), rel=1e-3)
    assert model.training  # handed back in train mode


# --- the caller's model is left alone ------------------------------------------------------------


def _used_model() -> nn.Module:
    model = _tiny_mlp(batch_norm=True, dropout=0.3)
    model[0].weight.grad = torch.full_like(model[0].weight, 0.25)  # a half-done training step
    model[4].bias.requires_grad_(False)  # a frozen parameter is not part of the Hessian
    model[1].eval()  # mixed modes come back mixed
    return model


def test_the_model_is_unchanged_bit_for_bit() -> None:
    model, split = _used_model(), _classes()
    torch.manual_seed(123)
    before = _snapshot(model)
    result = sharpness(model, split, settings=SharpnessConfig(top_k=2, trace_samples=3))
    _assert_same(model, before)
    assert result.parameter_names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight"]
    assert len(result.eigenvectors[0]) == 5


def test_the_model_is_unchanged_when_an_error_is_raised_midway() -> None:
    class FailsLater(nn.Module):
        """Moves its own buffer on every forward pass and fails on the fourth."""

        def __init__(self) -> None:
            super().__init__()
            self.net = _tiny_mlp(batch_norm=True)
            self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            self.net[0].weight.data.mul_(2.0)
            if int(self.calls) >= 4:
                raise RuntimeError("out of memory, say")
            return self.net(x)

    model, split = FailsLater(), _classes()
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="out of memory"):
        sharpness(model, split, settings=SharpnessConfig(batch_size=7))
    _assert_same(model, before)


def test_a_non_finite_loss_is_an_error_and_the_model_is_restored() -> None:
    model, split = _tiny_mlp(), _classes()
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    before = _snapshot(model)
    with pytest.raises(ModelError, match="Hessian-vector product must be finite"):
        sharpness(model, split)
    _assert_same(model, before)


# --- seeds, subsets, records, errors -----------------------------------------------------------


def test_a_seeded_subset_gives_the_same_result_every_time() -> None:
    model, split = _tiny_mlp(), _classes(200)
    settings = SharpnessConfig(top_k=2, subset=50, trace_samples=20, seed=7)
    first = sharpness(model, split, settings=settings)
    again = sharpness(model, split, settings=settings)
    other = sharpness(model, split, settings=settings.model_copy(update={"seed": 8}))
    assert first.examples == 50
    assert first.histories == again.histories and first.trace == again.trace
    assert all(
        torch.equal(a, b) for a, b in zip(first.eigenvectors[0], again.eigenvectors[0], strict=True)
    )
    assert other.eigenvalues[0] != pytest.approx(first.eigenvalues[0], rel=1e-6)


def test_works_inside_no_grad_as_outside(tiny) -> None:
    model, split, _ = tiny
    settings = SharpnessConfig(top_k=1, max_iterations=5, trace_samples=3)
    outside = sharpness(model, split, settings=settings)
    with torch.no_grad():  # e.g. called from an evaluation callback
        inside = sharpness(model, split, settings=settings)
    assert inside.histories == outside.histories and inside.trace == outside.trace


def test_to_dict_is_json_without_tensors(tiny) -> None:
    model, split, _ = tiny
    result = sharpness(model, split, settings=SharpnessConfig(top_k=2, trace_samples=4))
    assert isinstance(result, SharpnessResult)
    record = json.loads(json.dumps(result.to_dict()))
    assert "eigenvectors" not in record
    assert record["eigenvalues"] == result.eigenvalues and record["trace_samples"] == 4
    assert record["settings"]["top_k"] == 2 and record["seconds"] >= 0
    assert result.top_eigenvalue == result.eigenvalues[0]


def test_a_progress_bar_only_when_asked(tiny, capsys) -> None:
    model, split, _ = tiny
    settings = SharpnessConfig(max_iterations=5, trace_samples=2)
    sharpness(model, split, settings=settings)
    assert capsys.readouterr().err == ""
    sharpness(model, split, settings=settings, progress=True)
    assert "sharpness" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("settings", "kwargs", "error", "match"),
    [
        (SharpnessConfig(top_k=41), {}, ConfigError,
         r"sharpness.top_k must be at most the number of trainable parameters \(38\); got 41"),
        (SharpnessConfig(split="val"), {}, DataError, "split must be one the data has"),
        (SharpnessConfig(), {"task": "ranking"}, ConfigError,
         "task must be 'classification', 'regression' or 'multilabel'; got 'ranking'"),
        ({"top_kk": 2}, {}, ConfigError, "sharpness.top_kk is not a known setting"),
        ([2], {}, ConfigError, "settings must be a SharpnessConfig or a mapping; got 'list'"),
        (SharpnessConfig(), {"task": "regression", "data": "empty"}, DataError,
         r"number of examples in data.train must be at least 1; got 0"),
        (SharpnessConfig(), {"task": "classification", "data": "float"}, DataError,
         "targets must be integer class labels"),
    ],
)  # fmt: skip
def test_bad_inputs_are_clear_errors_before_anything_runs(settings, kwargs, error, match) -> None:
    model = _tiny_mlp()
    kind = kwargs.pop("data", "bundle")
    split = _classes()
    if kind == "empty":
        split = Split((torch.zeros(0, 3, dtype=torch.float64),), torch.zeros(0, 3))
    elif kind == "float":
        split = Split(split.inputs, split.targets.double())
    data = DataBundle(split, None, None, task="classification", num_classes=3)
    before = _snapshot(model)
    with pytest.raises(error, match=match):
        sharpness(model, data if kind == "bundle" else split, settings=settings, **kwargs)
    _assert_same(model, before)


def test_product_argument_errors(tiny) -> None:
    model, split, _ = tiny
    with pytest.raises(ConfigError, match=r"vector must be one tensor per trainable parameter"):
        hessian_vector_product(model, split, [torch.zeros(5, 3)], classification=True)
    vector = [torch.zeros(2, 2) for _ in model.parameters()]
    with pytest.raises(ConfigError, match=r"4 problems:\n  - vector\[0\] must be a tensor"):
        hessian_vector_product(model, split, vector, classification=True)
    frozen = nn.Linear(3, 3).requires_grad_(False)
    with pytest.raises(ModelError, match="model must have trainable parameters"):
        sharpness(frozen, split)


# --- a realistic check -------------------------------------------------------------------------


def test_a_briefly_trained_digits_mlp_has_a_clear_top_eigenvalue() -> None:
    data = load_data(DataConfig())
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_sizes=[32]), input_shape=data.input_shape,
                        output_size=10)  # fmt: skip
    fit(model, data.train, epochs=5, optimizer="sgd", lr=0.1, batch_size=64, seed=0)
    settings = SharpnessConfig(top_k=2, subset=300, trace_samples=20)
    result = sharpness(model, data, settings=settings)
    first, second = result.eigenvalues
    assert first > 0 and first > abs(second)
    assert result.trace is not None and result.trace > first  # the trace sums every eigenvalue
    assert result.examples == 300 and all(result.converged)
