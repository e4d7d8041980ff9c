"""Initialisation schemes against their formulas, the bias rule, pretrained loading, errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.config import InitConfig, config_from_mapping
from skier.errors import CheckpointError, ConfigError
from skier.models import MLP, SCHEMES, InitReport, TabularNet, initialize

# Weights of Linear(1000, 800): fan_in 1000, fan_out 800, 800 000 draws, so the sample variance
# is within ~0.3 % of the true one (3 standard errors); Conv2d(64, 128, 3): fan_in 64·9,
# fan_out 128·9, 73 728 draws, within ~1.5 %.
LAYERS: dict[str, tuple[Callable[[], nn.Module], int, int, float]] = {
    "linear": (lambda: nn.Linear(1000, 800), 1000, 800, 0.01),
    "conv": (lambda: nn.Conv2d(64, 128, 3), 64 * 9, 128 * 9, 0.03),
}
TANH_GAIN = 5.0 / 3.0  # torch.nn.init.calculate_gain("tanh")

VARIANCES: list[tuple[dict[str, Any], Callable[[int, int], float]]] = [
    ({"scheme": "uniform", "a": 0.1}, lambda fi, fo: 0.1**2 / 3),
    ({"scheme": "normal", "std": 0.02}, lambda fi, fo: 0.02**2),
    ({"scheme": "xavier_uniform"}, lambda fi, fo: 2 / (fi + fo)),
    ({"scheme": "xavier_uniform", "gain": 2.0}, lambda fi, fo: 4 * 2 / (fi + fo)),
    ({"scheme": "xavier_normal"}, lambda fi, fo: 2 / (fi + fo)),
    ({"scheme": "xavier_normal", "gain": 0.5}, lambda fi, fo: 0.25 * 2 / (fi + fo)),
    ({"scheme": "kaiming_uniform"}, lambda fi, fo: 2 / fi),
    ({"scheme": "kaiming_normal"}, lambda fi, fo: 2 / fi),
    ({"scheme": "kaiming_normal", "mode": "fan_out"}, lambda fi, fo: 2 / fo),
    ({"scheme": "kaiming_uniform", "mode": "fan_out"}, lambda fi, fo: 2 / fo),
    ({"scheme": "kaiming_normal", "nonlinearity": "tanh"}, lambda fi, fo: TANH_GAIN**2 / fi),
    ({"scheme": "kaiming_normal", "nonlinearity": "linear"}, lambda fi, fo: 1 / fi),
]


def _id(case: tuple[dict[str, Any], Any]) -> str:
    return "-".join(str(v) for v in case[0].values())


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("case", VARIANCES, ids=[_id(c) for c in VARIANCES])
def test_weight_variance_matches_the_formula(
    layer: str, case: tuple[dict[str, Any], Callable[[int, int], float]]
) -> None:
    settings, formula = case
    make, fan_in, fan_out, rel = LAYERS[layer]
    module = make()
    initialize(module, settings)
    weight = module.weight.detach().double()
    expected = formula(fan_in, fan_out)
    assert weight.var().item() == pytest.approx(expected, rel=rel)
    # Zero mean, to within a few standard errors of the mean.
    assert abs(weight.mean().item()) < 4 * math.sqrt(expected / weight.numel())


@pytest.mark.parametrize(
    ("shape", "gain"), [((800, 1000), 1.0), ((1000, 800), 1.0), ((300, 400), 1.5)]
)
def test_orthogonal_gives_orthonormal_rows_or_columns(shape: tuple[int, int], gain: float) -> None:
    module = nn.Linear(shape[1], shape[0])
    initialize(module, {"scheme": "orthogonal", "gain": gain})
    w = module.weight.detach().double()
    wide = shape[0] <= shape[1]
    gram = w @ w.T if wide else w.T @ w  # rows orthonormal when wide, columns when tall
    eye = torch.eye(min(shape), dtype=torch.float64)
    torch.testing.assert_close(gram, gain**2 * eye, atol=1e-4, rtol=0)


def test_orthogonal_conv_weight_is_orthogonal_as_a_matrix() -> None:
    conv = nn.Conv2d(16, 32, 3)  # 32 x (16·9 = 144): wide
    initialize(conv, {"scheme": "orthogonal"})
    w = conv.weight.detach().double().flatten(1)
    torch.testing.assert_close(w @ w.T, torch.eye(32, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("settings", "value"),
    [({"scheme": "zeros"}, 0.0), ({"scheme": "constant", "value": 0.3}, 0.3)],
)
def test_zeros_and_constant_make_every_hidden_unit_the_same(
    settings: dict[str, Any], value: float
) -> None:
    model = MLP(8, 3, hidden_sizes=(16, 16))
    report = initialize(model, settings)
    for name, param in model.named_parameters():
        expected = value if name.endswith("weight") else 0.0  # bias 'auto' is zeros here
        assert torch.all(param == expected), name
    assert report.bias == "zeros"


def _train_a_few_steps(model: nn.Module, steps: int = 25) -> list[float]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _rows_identical(weight: torch.Tensor) -> bool:
    return torch.allclose(weight, weight[:1].expand_as(weight), rtol=1e-5, atol=1e-7)


def test_the_symmetry_problem_constant_init_units_stay_identical_under_sgd() -> None:
    model = MLP(8, 3, hidden_sizes=(16, 16))
    initialize(model, {"scheme": "constant", "value": 0.1})
    losses = _train_a_few_steps(model)
    assert losses[-1] < losses[0]  # it learns something, but as if each layer had one unit
    for block in model.blocks:
        weight = block.linear.weight.detach()
        assert weight.abs().max() > 0 and not torch.all(weight == 0.1)  # the weights moved...
        assert _rows_identical(weight)  # ...yet every hidden unit still has the same weights
        assert _rows_identical(block.linear.bias.detach()[:, None])
    # The head's output units differ (their targets differ), but not in what they read.
    assert _rows_identical(model.head.weight.detach().T)

    # The same net with a random init breaks the symmetry from the start.
    control = MLP(8, 3, hidden_sizes=(16, 16))
    initialize(control, {"scheme": "kaiming_normal"})
    _train_a_few_steps(control)
    assert not _rows_identical(control.blocks[0].linear.weight.detach())


def test_bias_rules() -> None:
    layer = nn.Linear(2, 200_000)
    initialize(layer, {"scheme": "xavier_uniform", "bias": "constant", "bias_value": 0.25})
    assert torch.all(layer.bias == 0.25)
    initialize(layer, {"scheme": "xavier_uniform", "bias": "normal", "bias_std": 0.2})
    assert layer.bias.detach().double().std().item() == pytest.approx(0.2, rel=0.01)
    initialize(layer, {"scheme": "xavier_uniform", "bias": "zeros"})
    assert torch.all(layer.bias == 0)

    # 'default' keeps the layer's own bias; 'auto' zeroes it unless the scheme is 'default'.
    torch.manual_seed(5)
    reference = nn.Linear(20, 10)
    for settings, same_bias in [
        ({"scheme": "uniform", "bias": "default"}, True),
        ({"scheme": "uniform"}, False),
        ({"scheme": "default"}, True),
        ({"scheme": "default", "bias": "zeros"}, False),
    ]:
        torch.manual_seed(5)
        layer = nn.Linear(20, 10)
        report = initialize(layer, settings)
        assert torch.equal(layer.bias, reference.bias) is same_bias, settings
        assert report.bias == ("default" if same_bias else "zeros")
        if report.bias == "zeros":
            assert torch.all(layer.bias == 0)


def test_default_leaves_the_model_bitwise_unchanged_and_draws_nothing() -> None:
    model = TabularNet(3, [4, 6], 2, hidden_sizes=(8,), batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    report = initialize(model, InitConfig())
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert report.weights == () and report.biases == () and report.loaded == ()
    assert report.kept == tuple(name for name, _ in model.named_parameters())


def test_embeddings_and_normalization_layers_keep_their_init() -> None:
    model = TabularNet(3, [4, 6], 2, hidden_sizes=(8,), batch_norm=True)
    embeddings = [e.weight.detach().clone() for e in model.embeddings]
    report = initialize(model, {"scheme": "zeros"})
    for emb, saved in zip(model.embeddings, embeddings, strict=True):
        assert torch.equal(emb.weight, saved)
    norm = model.mlp.blocks[0].norm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert set(report.kept) == {
        "embeddings.0.weight",
        "embeddings.1.weight",
        "mlp.blocks.0.norm.weight",
        "mlp.blocks.0.norm.bias",
    }
    # batch_norm=True builds the hidden Linear without a bias: only the head has one.
    assert report.weights == ("mlp.blocks.0.linear.weight", "mlp.head.weight")
    assert report.biases == ("mlp.head.bias",)


def test_conv_transpose_and_1d_layers_are_covered_others_are_not() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ConvTranspose2d(4, 2, 3), nn.Bilinear(2, 3, 4))
    report = initialize(model, {"scheme": "zeros"})
    assert report.weights == ("0.weight", "1.weight")
    assert report.biases == ("0.bias", "1.bias")
    assert report.kept == ("2.weight", "2.bias")
    assert torch.all(model[1].weight == 0) and not torch.all(model[2].weight == 0)


def _initialised(seed: int, scheme: str = "xavier_normal") -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = MLP(16, 4, hidden_sizes=(12,))
    initialize(model, {"scheme": scheme, "bias": "normal"})
    return model.state_dict()


@pytest.mark.parametrize("scheme", ["uniform", "normal", "kaiming_uniform", "orthogonal"])
def test_seeded_runs_are_reproducible(scheme: str) -> None:
    first, again, other = _initialised(3, scheme), _initialised(3, scheme), _initialised(4, scheme)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["head.weight"], other["head.weight"])


def test_a_generator_replaces_the_global_rng() -> None:
    def draw(seed: int) -> torch.Tensor:
        model = nn.Linear(10, 10)
        initialize(model, {"scheme": "normal"}, generator=torch.Generator().manual_seed(seed))
        return model.weight.detach().clone()

    rng = torch.get_rng_state()
    first = draw(7)
    torch.manual_seed(123)  # the global state does not matter...
    assert torch.equal(draw(7), first)
    assert not torch.equal(draw(8), first)
    torch.set_rng_state(rng)
    nn.Linear(10, 10)  # (layer construction itself draws from the global RNG)
    rng = torch.get_rng_state()
    initialize(nn.Linear(10, 10).requires_grad_(False), {"scheme": "normal"}, generator=None)
    assert not torch.equal(torch.get_rng_state(), rng)  # ...and without one it is used


def test_every_scheme_runs_on_every_kind_of_model() -> None:
    models = [
        MLP(8, 3, hidden_sizes=(4,), batch_norm=True, residual=True),
        TabularNet(2, [3], 2, hidden_sizes=(4,)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
    ]
    for scheme in SCHEMES:
        for model in models:
            report = initialize(model, {"scheme": scheme})
            assert report.scheme == scheme
            assert all(torch.isfinite(p).all() for p in model.parameters())


# --- pretrained ---------------------------------------------------------------------------------


def test_pretrained_loads_matching_layers_and_leaves_a_new_head_to_the_scheme() -> None:
    source = MLP(64, 10, hidden_sizes=(32,))
    weights = source.state_dict()
    model = MLP(64, 5, hidden_sizes=(32,))  # another number of classes: a new head
    report = initialize(model, {"scheme": "constant", "value": 0.5}, pretrained=weights)
    assert report.loaded == ("blocks.0.linear.weight", "blocks.0.linear.bias")
    assert report.skipped_shape_mismatch == {
        "head.weight": ((5, 32), (10, 32)),
        "head.bias": ((5,), (10,)),
    }
    assert report.not_in_checkpoint == () and report.unused_checkpoint_keys == ()
    assert torch.equal(model.blocks[0].linear.weight, source.blocks[0].linear.weight)
    assert torch.equal(model.blocks[0].linear.bias, source.blocks[0].linear.bias)
    assert torch.all(model.head.weight == 0.5) and torch.all(model.head.bias == 0)
    # Pretrained tensors override the scheme: the report lists each tensor once.
    assert report.weights == ("head.weight",) and report.biases == ("head.bias",)
    assert report.kept == ()


def test_pretrained_reports_missing_and_unused_tensors_and_loads_buffers() -> None:
    source = MLP(8, 3, hidden_sizes=(6,), batch_norm=True)
    source.blocks[0].norm.running_mean.fill_(2.0)
    weights = {**source.state_dict(), "extra.weight": torch.ones(2)}
    model = MLP(8, 3, hidden_sizes=(6, 4), batch_norm=True)
    head_bias = model.head.bias.detach().clone()
    report = initialize(model, {"scheme": "default"}, pretrained=weights)
    assert "blocks.0.norm.running_mean" in report.loaded
    assert torch.all(model.blocks[0].norm.running_mean == 2.0)
    assert "blocks.1.linear.weight" in report.not_in_checkpoint
    assert "blocks.1.norm.running_var" in report.not_in_checkpoint
    assert report.unused_checkpoint_keys == ("extra.weight",)
    # head.weight is 3 x 4 here, 3 x 6 there: the whole head is skipped, its bias too.
    assert report.skipped_shape_mismatch == {
        "head.weight": ((3, 4), (3, 6)),
        "head.bias": ((3,), (3,)),
    }
    assert torch.equal(model.head.bias, head_bias)
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["skipped_shape_mismatch"]["head.weight"] == {"model": [3, 4], "checkpoint": [3, 6]}


def test_pretrained_that_matches_nothing_is_an_error_and_changes_nothing() -> None:
    model = nn.Linear(4, 2)
    saved = model.weight.detach().clone()
    weights = {"module.weight": torch.zeros(2, 4), "module.bias": torch.zeros(2)}
    with pytest.raises(
        CheckpointError, match=r"none of their 2 does\. The model has weight, bias; the"
    ):
        initialize(model, {"scheme": "zeros"}, pretrained=weights)
    assert torch.equal(model.weight, saved)
    with pytest.raises(
        CheckpointError, match=r"must be a state dict of tensors; got other values at weight\."
    ):
        initialize(model, {}, pretrained={"weight": [1.0]})  # type: ignore[dict-item]


# --- custom functions ---------------------------------------------------------------------------

CUSTOM = """
import torch

CALLS = []

def quarter(weight):
    CALLS.append(torch.is_grad_enabled())
    weight.fill_(0.25)

def by_name(weight, *, name):
    weight.fill_(1.0 if name.startswith("head") else 2.0)

def broken(weight):
    raise ValueError("no luck")

def nan(weight):
    weight.fill_(float("nan"))

NOT_A_FUNCTION = 3
"""


@pytest.fixture
def custom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "skier_init_custom.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "skier_init_custom", raising=False)
    return "skier_init_custom"


def test_custom_function_is_called_on_each_weight_without_grad(custom: str) -> None:
    model = MLP(4, 2, hidden_sizes=(3,))
    report = initialize(model, {"scheme": f"{custom}:quarter"})
    assert torch.all(model.blocks[0].linear.weight == 0.25) and torch.all(model.head.weight == 0.25)
    assert torch.all(model.head.bias == 0)  # bias 'auto' → zeros
    module = __import__(custom)
    assert module.CALLS == [False, False]
    assert report.scheme == f"{custom}:quarter" and report.weights == (
        "blocks.0.linear.weight",
        "head.weight",
    )


def test_custom_function_may_take_the_weights_name(custom: str) -> None:
    model = MLP(4, 2, hidden_sizes=(3,))
    initialize(model, {"scheme": f"{custom}:by_name", "bias": "default"})
    assert torch.all(model.head.weight == 1.0) and torch.all(model.blocks[0].linear.weight == 2.0)


def test_torch_init_functions_fit_the_contract() -> None:
    layer = nn.Linear(3, 3)
    initialize(layer, {"scheme": "torch.nn.init:ones_"})
    assert torch.all(layer.weight == 1)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("skier_no_such_module:f", r"importable module; got 'skier_no_such_module:f'\. No module"),
        ("{m}:quartre", r"has no attribute 'quartre'\. Did you mean 'quarter'\?"),
        ("{m}:NOT_A_FUNCTION", r"must be a reference to a function.*is a int"),
        ("{m}:broken", r"raised ValueError on 'blocks\.0\.linear\.weight': no luck\. It is called"),
        ("{m}:nan", r"must be a function that leaves finite weights.*NaN or infinite values in"),
    ],
)
def test_custom_function_errors(custom: str, ref: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        initialize(MLP(4, 2, hidden_sizes=(3,)), {"scheme": ref.format(m=custom)})


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "hint"),
    [
        ("xavier_unifrom", "Did you mean 'xavier_uniform'?"),
        ("kaiming", "Did you mean 'kaiming_normal'?"),
        ("he_normal", "Did you mean 'kaiming_normal'?"),
        ("glorot_uniform", "Did you mean 'xavier_uniform'?"),
    ],
)
def test_unknown_scheme_lists_the_valid_ones_with_did_you_mean(scheme: str, hint: str) -> None:
    listing = ", ".join(SCHEMES)
    expected = rf"init\.scheme must be one of {listing}, or a 'package\.module:function' reference"
    got = rf"; got {scheme!r}\. "
    with pytest.raises(ConfigError, match=expected + got + hint.replace("?", r"\?")):
        config_from_mapping({"init": {"scheme": scheme}})
    with pytest.raises(ConfigError, match=hint.replace("?", r"\?")):
        initialize(nn.Linear(2, 2), {"scheme": scheme})


def test_every_bad_parameter_is_reported_at_once() -> None:
    bad = {
        "scheme": "uniform",
        "a": 0,
        "std": -1.0,
        "gain": float("inf"),
        "mode": "fanin",
        "nonlinearity": "rleu",
        "bias": "zero",
        "bias_std": 0,
        "value": float("nan"),
        "pretrained": " ",
    }
    with pytest.raises(ConfigError, match=r"^9 problems:") as info:
        config_from_mapping({"init": bad})
    problems = "\n".join(info.value.problems)
    for fragment in (
        "init.a must be greater than 0; got 0.",
        "init.std must be greater than 0; got -1.0.",
        "init.gain must be a finite number; got inf.",
        "init.mode must be 'fan_in' or 'fan_out'; got 'fanin'.",
        "init.nonlinearity must be 'relu', 'leaky_relu', 'tanh', 'sigmoid', 'selu' or 'linear'",
        "init.bias must be 'auto', 'default', 'zeros', 'constant' or 'normal'; got 'zero'.",
        "init.bias_std must be greater than 0; got 0.",
        "init.value must be a finite number; got nan.",
        "init.pretrained must be a file path (or null for none); got ' '.",
    ):
        assert fragment in problems


def test_initialize_validates_configs_built_without_validation() -> None:
    layer = nn.Linear(2, 2)
    saved = layer.weight.detach().clone()
    unchecked = InitConfig.model_construct(scheme="normal", std=-1.0, mode="fan_both")
    with pytest.raises(ConfigError, match=r"^2 problems:\n  - init\.std must be greater than 0"):
        initialize(layer, unchecked)
    assert torch.equal(layer.weight, saved)
    with pytest.raises(ConfigError, match=r"init\.sceme is not a known setting\. Did you mean"):
        initialize(layer, {"sceme": "normal"})
    with pytest.raises(ConfigError, match=r"init must be an InitConfig or a mapping"):
        initialize(layer, "normal")  # type: ignore[arg-type]


def test_report_is_a_frozen_json_safe_record() -> None:
    report = initialize(MLP(4, 2, hidden_sizes=(3,)), {"scheme": "orthogonal"})
    assert isinstance(report, InitReport)
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["scheme"] == "orthogonal" and data["pretrained"] is None
