"""GradientFlow: per-layer gradient norms and update ratios, checked against torch by hand."""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.train import (
    Callback,
    Checkpoint,
    FitResult,
    GradientFlow,
    TrainState,
    fit,
    load_checkpoint,
)

Data = tuple[torch.Tensor, torch.Tensor]
SETTINGS: dict[str, Any] = {"batch_size": 32, "seed": 7, "device": "cpu"}  # 240 rows: 8 steps


def _deep(activation: type[nn.Module], *, he: bool, depth: int = 8, width: int = 32) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    size = 12
    for _ in range(depth):
        linear = nn.Linear(size, width)
        if he:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
        size = width
    layers.append(nn.Linear(size, 3))
    return nn.Sequential(*layers)


class Spy(Callback):
    """After GradientFlow: the gradient norms and the weights at each step, measured by hand."""

    def __init__(self) -> None:
        self.grads: dict[int, dict[str, float]] = {}
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_batch_end(self, state: TrainState) -> None:
        params = list(state.named_parameters())
        self.grads[state.step] = {n: float(p.grad.norm()) for n, p in params if p.grad is not None}
        self.weights[state.step] = {n: p.detach().clone() for n, p in params}


def _flow(result: FitResult) -> dict[str, list[float]]:
    """The history's gradient flow series (the loop may keep others there, e.g. ``lr``)."""
    metrics = ("grad_norm", "weight_norm", "update_ratio")
    return {
        k: v
        for k, v in result.history.steps.items()
        if k == "grad_flow_step" or k.split("/")[0] in metrics
    }


def _first_grad_norms(result: FitResult) -> list[float]:
    steps = result.history.steps
    return [v[0] for k, v in steps.items() if k.startswith("grad_norm/")]


def test_deep_sigmoid_gradients_vanish_and_relu_with_he_init_does_not(clf_data: Data) -> None:
    runs = {}
    for name, act, he in (("sigmoid", nn.Sigmoid, False), ("relu", nn.ReLU, True)):
        result = fit(
            _deep(act, he=he), clf_data, callbacks=[GradientFlow(every=1)], epochs=1,
            optimizer="adam", lr=0.01, **SETTINGS,
        )  # fmt: skip
        norms = _first_grad_norms(result)
        assert len(norms) == 9  # 8 hidden layers + the output layer, weights only
        runs[name] = norms[-1] / norms[0]  # last layer's gradient norm / first layer's
    assert runs["sigmoid"] > 1e3  # vanishing: orders of magnitude between first and last
    assert runs["relu"] < 30
    assert runs["sigmoid"] > 100 * runs["relu"]


def test_recorded_norms_and_update_ratios_equal_those_measured_by_hand(
    make_mlp: Any, clf_data: Data
) -> None:
    spy = Spy()
    model = make_mlp(seed=1)
    result = fit(
        model, clf_data, callbacks=[GradientFlow(every=3, layers="all"), spy], epochs=2,
        optimizer="adam", lr=0.01, **SETTINGS,
    )  # fmt: skip
    steps = _flow(result)
    recorded = [int(s) for s in steps["grad_flow_step"]]
    assert recorded == [3, 6, 9, 12, 15]
    names = [n for n, _ in model.named_parameters()]
    assert {k for k in steps if k != "grad_flow_step"} == {
        f"{m}/{n}" for m in ("grad_norm", "weight_norm", "update_ratio") for n in names
    }
    for i, step in enumerate(recorded):
        for name in names:
            after, before = spy.weights[step][name], spy.weights[step - 1][name]
            by_hand = float((after - before).norm() / before.norm())
            assert steps[f"grad_norm/{name}"][i] == pytest.approx(spy.grads[step][name], rel=1e-6)
            assert steps[f"weight_norm/{name}"][i] == pytest.approx(float(after.norm()), rel=1e-6)
            assert steps[f"update_ratio/{name}"][i] == pytest.approx(by_hand, rel=1e-5)
            assert by_hand > 0


def test_every_one_records_each_step_and_the_first_update_against_the_start(
    make_mlp: Any, clf_data: Data
) -> None:
    model = make_mlp(seed=1)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    spy = Spy()
    result = fit(
        model, clf_data, callbacks=[GradientFlow(every=1), spy], epochs=1, optimizer="adam",
        lr=0.1, **SETTINGS,
    )  # fmt: skip
    steps = _flow(result)
    assert steps["grad_flow_step"] == [float(s) for s in range(1, 9)]
    assert sorted(k.split("/")[1] for k in steps if k.startswith("grad_norm/")) == [
        "0.weight",
        "2.weight",
    ]  # the default tracks weight matrices, not biases
    first = spy.weights[1]["0.weight"]
    expected = float((first - start["0.weight"]).norm() / start["0.weight"].norm())
    assert steps["update_ratio/0.weight"][0] == pytest.approx(expected, rel=1e-5)


def test_records_happen_exactly_every_n_steps_and_only_then(make_mlp: Any, clf_data: Data) -> None:
    flow = GradientFlow(every=5)
    result = fit(make_mlp(seed=1), clf_data, callbacks=[flow], epochs=3, **SETTINGS)
    steps = _flow(result)
    assert steps["grad_flow_step"] == [5.0, 10.0, 15.0, 20.0]
    assert all(len(v) == 4 for v in steps.values())
    assert flow.series == steps  # the callback keeps what it wrote (for exact resume)
    big = fit(make_mlp(seed=1), clf_data, callbacks=[GradientFlow(every=100)], epochs=1, **SETTINGS)
    assert _flow(big) == {}


def test_off_means_nothing_per_batch(make_mlp: Any, clf_data: Data) -> None:
    # Without the callback no on_batch_end hook exists: the loop calls nothing per batch.
    plain = fit(make_mlp(seed=1), clf_data, epochs=1, **SETTINGS)
    assert _flow(plain) == {}


class CountSteps(Callback):
    stateful = False

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.seen.append(len(state.history.steps.get("grad_flow_step", [])))


def test_records_reach_the_history_by_each_epoch_end(make_mlp: Any, clf_data: Data) -> None:
    counter = CountSteps()
    fit(
        make_mlp(seed=1), clf_data, callbacks=[GradientFlow(every=2), counter], epochs=3, **SETTINGS
    )
    assert counter.seen == [4, 8, 12]


@pytest.mark.parametrize("every", [3, 1])
def test_resume_is_exact_with_gradient_flow(
    tmp_path: Path, make_mlp: Any, clf_data: Data, every: int, interrupt_at: Any
) -> None:
    # every=3: epoch 1 ends at step 8, just before the record at step 9, so the checkpoint
    # must carry the weights snapshot for the update ratio of step 9.
    def run(directory: Path, stop: int | None, resume: Path | None = None) -> tuple[Any, Any]:
        model = make_mlp(seed=3 if resume is None else 99)
        callbacks = [GradientFlow(every=every), Checkpoint(directory, every=1), interrupt_at(stop)]
        result = fit(
            model, clf_data, callbacks=callbacks, epochs=4, optimizer="adam", lr=0.01,
            resume=resume, **SETTINGS,
        )  # fmt: skip
        return model, result

    full_model, full = run(tmp_path / "full", None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", stop=2)  # last.pt holds epoch 1
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert saved["step"] == 8 and saved["callbacks"][0]["state"]["snapshot"] is not None
    shutil.copy(tmp_path / "cut" / "last.pt", tmp_path / "resume.pt")
    resumed_model, resumed = run(tmp_path / "cut", None, resume=tmp_path / "resume.pt")
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    assert _flow(resumed) == _flow(full)
    assert len(_flow(full)["grad_flow_step"]) == 32 // every
    assert all(math.isfinite(v) for vs in _flow(full).values() for v in vs)


def test_state_dict_round_trip_keeps_the_pending_snapshot(make_state: Any) -> None:
    state = make_state()
    flow = GradientFlow(every=2)
    flow.on_fit_start(state)
    state.step = 1
    flow.on_batch_end(state)  # step 1: the step before a record takes a snapshot
    saved = flow.state_dict()
    assert saved["snapshot"] is not None and set(saved["snapshot"]) == {"weight"}
    other = GradientFlow(every=2)
    other.load_state_dict(saved)
    assert torch.equal(other.state_dict()["snapshot"]["weight"], saved["snapshot"]["weight"])
    with pytest.raises(ValueError, match="every=2"):
        GradientFlow(every=3).load_state_dict(saved)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every": 0}, "every must be a whole number of steps ≥ 1; got 0"),
        ({"every": 2.5}, "every must be"),
        ({"every": 2, "layers": "bias"}, "layers must be 'weights' or 'all'; got 'bias'"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GradientFlow(**kwargs)
