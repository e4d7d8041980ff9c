"""The flattened forward (skier.models.flat): ``fit`` trains through it where it is safe, and a
run with it is bit-identical to the same run through the module (losses, gradients, weights),
dropout's random numbers included; a model it cannot flatten, a hook registered mid-run and a
structure changed between epochs all fall back to the module call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import skier.train.loop as loop
from skier.diagnostics import lr_range_test
from skier.models import CNN, MLP
from skier.models import flat as flat_module
from skier.models.flat import FlatForward, flat_forward, training_forward
from skier.train import Callback, TrainState, fit

D, CLASSES = 12, 3


def _data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, D, generator=g)
    y = (x[:, :CLASSES] + 0.3 * torch.randn(n, CLASSES, generator=g)).argmax(dim=1)
    return x, y


class _Record(Callback):
    """Every step's gradients (after the step: set to None only by the next one)."""

    def __init__(self) -> None:
        self.grads: list[list[torch.Tensor]] = []

    def on_batch_end(self, state: TrainState) -> None:
        self.grads.append([p.grad.clone() for _, p in state.named_parameters()])  # type: ignore[union-attr]


Build = Callable[[], nn.Module]

# fmt: off
MODELS: dict[str, Build] = {
    "mlp": lambda: MLP(D, CLASSES, hidden_sizes=(16, 16)),
    "residual": lambda: MLP(D, CLASSES, hidden_sizes=(16, 8), residual=True),
    "dropout": lambda: MLP(D, CLASSES, hidden_sizes=(16, 16), dropout=0.3),
    "tanh": lambda: MLP(D, CLASSES, hidden_sizes=(16,), activation="tanh", dropout=0.1),
    "batch_norm": lambda: MLP(D, CLASSES, hidden_sizes=(16,), batch_norm=True, dropout=0.2),
    "sequential": lambda: nn.Sequential(
        nn.Linear(D, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 16), nn.LeakyReLU(0.1),
        nn.Linear(16, CLASSES),
    ),
    "cnn": lambda: CNN(input_shape=(1, 3, 4), output_size=CLASSES, channels=(4,)),
}
# fmt: on
REFUSED = {"cnn"}  # its forward branches on the input's shape: fx cannot trace it


def _run(
    build: Build, enabled: bool, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> tuple[Any, _Record, list[Callable[..., Any]]]:
    monkeypatch.setattr(flat_module, "ENABLED", enabled)
    chosen: list[Callable[..., Any]] = []

    def spy(model: nn.Module, trained: Any, current: Any = None) -> Callable[..., Any]:
        chosen.append(training_forward(model, trained, current))
        return chosen[-1]

    monkeypatch.setattr(loop, "training_forward", spy)
    torch.manual_seed(7)
    model = build()
    record = _Record()
    callbacks = [record, *kw.pop("callbacks", [])]
    settings = {"epochs": 3, "batch_size": 32, "lr": 1e-2, "seed": 3, **kw}
    result = fit(model, _data(), _data(60), callbacks=callbacks, **settings)
    return result, record, chosen


def _assert_same(a: tuple[Any, _Record, Any], b: tuple[Any, _Record, Any]) -> None:
    assert [r["loss"] for r in a[0].history.rows] == [r["loss"] for r in b[0].history.rows]
    assert [r["val_loss"] for r in a[0].history.rows] == [r["val_loss"] for r in b[0].history.rows]
    assert len(a[1].grads) == len(b[1].grads) > 0
    for ga, gb in zip(a[1].grads, b[1].grads, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(ga, gb, strict=True))
    wa, wb = a[0].model.state_dict(), b[0].model.state_dict()
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("name", list(MODELS))
def test_fit_through_the_flat_forward_is_bit_identical(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = _run(MODELS[name], True, monkeypatch)
    off = _run(MODELS[name], False, monkeypatch)
    _assert_same(on, off)
    assert isinstance(on[2][0], FlatForward) is (name not in REFUSED)  # taken where it can be
    assert not any(isinstance(f, FlatForward) for f in off[2])
    first = off[1].grads[0][0]
    assert not torch.equal(first, off[1].grads[-1][0])  # the steps moved: not vacuous


def test_dropout_draws_the_same_random_numbers_and_reads_p_at_call_time() -> None:
    model = MLP(D, CLASSES, hidden_sizes=(32,), dropout=0.5)
    flat = flat_forward(model)
    assert flat is not None
    x = _data(16)[0]
    for p in (0.5, 0.1):
        model.blocks[0].drop.p = p
        torch.manual_seed(1)
        expected = model(x)
        torch.manual_seed(1)
        assert torch.equal(flat(x), expected)
    torch.manual_seed(1)
    dropped = flat(x)
    model.eval()  # training read at call time: no dropout now
    assert torch.equal(flat(x), model(x)) and not torch.equal(flat(x), dropped)


class _HookAt(Callback):
    """Registers a forward hook on the head (or a global module hook) after step ``at``; it
    counts its calls and doubles the head's output, so a hook that did not run shows."""

    def __init__(self, at: int, *, globally: bool = False) -> None:
        self.at, self.globally, self.calls, self.handle = at, globally, 0, None

    def hook(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
        if self.globally and not isinstance(module, nn.Linear):
            return None
        self.calls += 1
        return out * 2 if module is self.head else None

    def on_batch_end(self, state: TrainState) -> None:
        if state.step == self.at:
            self.head = state.measured_model().head
            register = nn.modules.module.register_module_forward_hook
            target = self.head.register_forward_hook
            self.handle = register(self.hook) if self.globally else target(self.hook)

    def on_fit_end(self, state: TrainState, logs: Any) -> None:
        if self.handle is not None:
            self.handle.remove()


@pytest.mark.parametrize("globally", [False, True])
def test_a_hook_registered_mid_run_fires(globally: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    for enabled in (True, False):
        hook = _HookAt(4, globally=globally)
        runs.append((_run(MODELS["dropout"], enabled, monkeypatch, callbacks=[hook]), hook))
    (on, hook_on), (off, hook_off) = runs
    steps = len(on[1].grads)  # 7 steps an epoch, 3 epochs; evaluation calls the module too
    assert hook_on.calls == hook_off.calls >= (steps - 4) * (3 if globally else 1)
    assert isinstance(on[2][0], FlatForward)
    _assert_same(on, off)


class _SwapActivation(Callback):
    """After the first epoch, the first block's activation becomes a tanh (no parameters)."""

    def on_epoch_end(self, state: TrainState, logs: Any) -> None:
        if state.epoch == 1:
            state.measured_model().blocks[0].act = nn.Tanh()  # type: ignore[index]


def test_a_structure_changed_between_epochs_drops_the_flat_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on = _run(MODELS["mlp"], True, monkeypatch, callbacks=[_SwapActivation()])
    off = _run(MODELS["mlp"], False, monkeypatch, callbacks=[_SwapActivation()])
    _assert_same(on, off)
    assert isinstance(on[2][1], FlatForward)  # epoch 1
    assert on[2][2] is on[0].model  # epoch 2 on: the module


def test_only_the_plain_module_is_flattened() -> None:
    model = MLP(D, CLASSES, hidden_sizes=(8,))
    wrapper = nn.Sequential(model)  # a stand-in for DDP's wrapper or torch.compile's
    assert training_forward(model, wrapper) is wrapper
    assert isinstance(training_forward(model, model), FlatForward)

    class Custom(nn.Module):  # a user's class: its forward may read what a trace freezes
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.scale = nn.Linear(D, CLASSES), 2.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * self.scale

    assert flat_forward(Custom()) is None
    model.blocks[0].act.register_forward_hook(lambda *a: None)
    assert isinstance(flat_forward(model), FlatForward)  # hooks: checked at every call
    flat = training_forward(model, model)
    assert isinstance(flat, FlatForward) and flat.valid()
    model.forward = lambda x: x  # type: ignore[method-assign]  # the traced forward is gone
    assert not flat.valid() and training_forward(model, model, flat) is model


def test_the_lr_range_test_is_the_same_through_the_flat_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    curves = []
    for enabled in (True, False):
        monkeypatch.setattr(flat_module, "ENABLED", enabled)
        torch.manual_seed(2)
        model = MLP(D, CLASSES, hidden_sizes=(16,), dropout=0.2)
        result = lr_range_test(model, _data(), settings={"num_steps": 30}, progress="off")
        curves.append(result.losses)
    assert curves[0] == curves[1] and len(set(curves[0])) > 10


def test_a_forward_set_on_the_instance_is_not_flattened() -> None:
    model = MLP(D, CLASSES, hidden_sizes=(8,))
    model.forward = lambda x: x  # type: ignore[method-assign]
    assert flat_forward(model) is None
    del model.forward
    model.blocks[0].forward = lambda x: x  # type: ignore[method-assign]
    assert flat_forward(model) is None


def test_a_trace_is_reused_for_the_same_structure_with_each_models_own_modules() -> None:
    x = _data(16)[0]
    first, second = MLP(D, CLASSES, hidden_sizes=(8,)), MLP(D, CLASSES, hidden_sizes=(8,))
    other = MLP(D, CLASSES, hidden_sizes=(8,), residual=True)
    flats = [flat_forward(m) for m in (first, second, other)]
    assert all(f is not None for f in flats)
    assert flats[0].source == flats[1].source != flats[2].source  # type: ignore[union-attr]
    for model, flat in zip((first, second, other), flats, strict=True):
        assert torch.equal(flat(x), model(x))  # type: ignore[misc]
    assert not torch.equal(flats[0](x), flats[1](x))  # type: ignore[misc]
    second.blocks[0].skip = nn.Linear(D, 8)  # what the trace read changed: a trace of its own
    changed = flat_forward(second)
    assert changed is not None and changed.source != flats[1].source  # type: ignore[union-attr]
    assert torch.equal(changed(x), second(x)) and not flats[1].valid()  # type: ignore[union-attr]


def test_each_functional_template_is_its_modules_forward_in_this_torch() -> None:
    import inspect

    for cls, template in flat_module._FUNCTIONAL.items():
        lines = [line.strip() for line in inspect.getsource(cls.forward).splitlines()]
        returned = next(line for line in reversed(lines) if line.startswith("return "))
        for name in ("weight", "bias"):  # Linear reads its parameters through __getattr__
            returned = returned.replace(f"self.{name}", f"self._parameters['{name}']")
        assert returned == "return " + template.format(m="self", x="input"), cls.__name__
