"""Everything fit checks before the first step: wrong settings fail fast and change nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from skier.errors import ConfigError, DataError, ModelError
from skier.train import Callback, Checkpoint, EarlyStopping, TrainState, check_fit, fit

Data = tuple[torch.Tensor, torch.Tensor]
CPU: dict[str, Any] = {"device": "cpu"}


class CountSteps(torch.optim.SGD):
    def __init__(self, params: Any) -> None:
        super().__init__(params, lr=0.1)
        self.steps = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.steps += 1
        return super().step(closure)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_misspelt_monitor_lists_valid_keys(make_mlp: Any, clf_data: Data, clf_val: Data) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'val_loss'") as info:
        fit(make_mlp(), clf_data, clf_val, callbacks=[EarlyStopping(monitor="val_los")], **CPU)
    text = str(info.value)
    assert "EarlyStopping.monitor must be a key the loop produces; got 'val_los'" in text
    for key in ("epoch", "loss", "error", "accuracy", "lr", "val_loss", "val_error"):
        assert key in text.split("Valid keys:")[1]


def test_val_monitor_without_val_data(make_mlp: Any, clf_data: Data) -> None:
    with pytest.raises(ConfigError, match=r"Validation keys need validation data") as info:
        fit(make_mlp(), clf_data, callbacks=[EarlyStopping(monitor="val_loss")], **CPU)
    assert "val_loss" not in str(info.value).split("Valid keys:")[1]


def test_regression_has_no_error_key_to_monitor(make_mlp: Any, reg_data: Data) -> None:
    with pytest.raises(ConfigError, match="got 'val_error'"):
        fit(
            make_mlp(out=1),
            reg_data,
            reg_data,
            callbacks=[EarlyStopping(monitor="val_error")],
            **CPU,
        )


def test_every_callback_problem_is_reported_at_once(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    callbacks: list[Any] = [
        EarlyStopping(monitor="val_los"),
        Checkpoint("unused", monitor="accuracyy"),
        "not a callback",
    ]
    with pytest.raises(ConfigError, match="3 problems") as info:
        fit(make_mlp(), clf_data, clf_val, callbacks=callbacks, **CPU)
    assert "callbacks[2] must be a skier Callback; got str" in str(info.value)


def test_unknown_fit_keyword(make_mlp: Any, clf_data: Data) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'epochz'\. Did you mean 'epochs'\?"):
        fit(make_mlp(), clf_data, epochz=3, **CPU)


def test_all_bad_settings_at_once(make_mlp: Any, clf_data: Data) -> None:
    with pytest.raises(ConfigError, match="problems") as info:
        fit(make_mlp(), clf_data, lr=0, epochs=0, batch_size=-1, **CPU)
    text = str(info.value)
    assert "optim.lr must be greater than 0" in text
    assert "train.epochs must be greater than or equal to 1" in text
    assert "train.batch_size" in text


@pytest.mark.parametrize("lr", [0, -0.1])
def test_non_positive_lr(make_mlp: Any, clf_data: Data, lr: float) -> None:
    with pytest.raises(ConfigError, match=r"optim.lr must be greater than 0; got"):
        fit(make_mlp(), clf_data, lr=lr, **CPU)


def test_wrong_output_width_fails_before_any_step(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp(out=5)  # 3 classes
    before = _snapshot(model)
    opt = CountSteps(model.parameters())
    with pytest.raises(ModelError, match=r"shape \(batch, 3\).*got \(4, 5\)"):
        fit(
            model,
            clf_data,
            optimizer=opt,
            schedule={"name": "cosine", "warmup_epochs": 2},
            epochs=3,
            **CPU,
        )
    assert opt.steps == 0
    assert opt.param_groups[0]["lr"] == 0.1  # no warm-up ramp was set up on it
    assert _unchanged(model, before)


def test_check_fit_raises_the_same_and_trains_nothing(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp(batch_norm=True)
    before = _snapshot(model)
    check_fit(model, clf_data, epochs=3, **CPU)  # fine: no error
    assert _unchanged(model, before)  # batch-norm statistics included
    with pytest.raises(ModelError):
        check_fit(make_mlp(out=2), clf_data, **CPU)


def test_check_fit_leaves_a_given_optimizer_alone(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    check_fit(
        model,
        clf_data,
        optimizer=opt,
        schedule={"name": "cosine", "warmup_epochs": 2},
        epochs=5,
        **CPU,
    )
    assert opt.param_groups[0]["lr"] == 0.3


def test_regression_output_must_be_two_dimensional(reg_data: Data) -> None:
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(12, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x).squeeze(1)

    with pytest.raises(ModelError, match=r"\(batch, 1\)"):
        fit(Flat(), reg_data, **CPU)


class Needy(Callback):
    requires = (EarlyStopping,)


def test_missing_required_callback(make_mlp: Any, clf_data: Data, clf_val: Data) -> None:
    with pytest.raises(ConfigError, match="Needy needs a EarlyStopping callback before it"):
        fit(make_mlp(), clf_data, clf_val, callbacks=[Needy()], **CPU)
    with pytest.raises(ConfigError, match="Needy needs a EarlyStopping"):  # order matters
        fit(make_mlp(), clf_data, clf_val, callbacks=[Needy(), EarlyStopping()], **CPU)
    fit(make_mlp(), clf_data, clf_val, callbacks=[EarlyStopping(), Needy()], epochs=1, **CPU)


def test_loss_that_does_not_fit_the_task(make_mlp: Any, reg_data: Data) -> None:
    # Float targets with cross-entropy: the loss says classification, the targets do not fit.
    with pytest.raises(DataError, match=r"'cross_entropy' needs integer class labels.*float32"):
        fit(make_mlp(out=1), reg_data, loss="cross_entropy", **CPU)
    with pytest.raises(ConfigError, match=r"train\.loss must be a loss for regression"):
        fit(make_mlp(out=1), reg_data, loss="cross_entropy", task="regression", **CPU)


def test_bad_data(make_mlp: Any, clf_data: Data) -> None:
    x, y = clf_data
    with pytest.raises(DataError, match=r"inputs\[0\] must have as many rows as targets"):
        fit(make_mlp(), (x[:10], y), **CPU)
    with pytest.raises(DataError, match="train must be a Split"):
        fit(make_mlp(), "data.csv", **CPU)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="at least one example"):
        fit(make_mlp(), (x[:0], y[:0]), **CPU)


def test_not_a_model(clf_data: Data) -> None:
    with pytest.raises(ConfigError, match=r"model must be a torch\.nn\.Module; got str"):
        fit("mlp", clf_data, **CPU)  # type: ignore[arg-type]


def test_unavailable_device(make_mlp: Any, clf_data: Data) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match=r"train\.device must be an available device"):
        fit(make_mlp(), clf_data, device="cuda")


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, state: TrainState) -> None:
        self.events.append("start")

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.events.append(f"epoch{state.epoch}")

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.events.append("end")


def test_callback_hooks_run_in_order_and_a_stop_request_ends_the_fit(
    make_mlp: Any, clf_data: Data
) -> None:
    class StopAt2(Callback):
        def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
            if state.epoch == 2:
                state.request_stop("enough")
                state.request_stop("ignored: the first reason wins")

    recorder = Recorder()
    result = fit(make_mlp(), clf_data, callbacks=[StopAt2(), recorder], epochs=5, **CPU)
    assert recorder.events == ["start", "epoch1", "epoch2", "end"]
    assert result.stop_reason == "enough"
    assert result.epochs_done == 2 and len(result.history) == 2


def test_early_stopping_in_a_real_fit_restores_the_best(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp()
    # a large lr with momentum overfits/oscillates quickly on 240 examples
    result = fit(
        model,
        clf_data,
        clf_val,
        optimizer="sgd",
        lr=0.5,
        momentum=0.9,
        epochs=40,
        batch_size=16,
        callbacks=[EarlyStopping(patience=3)],
        **CPU,
    )
    assert result.stop_reason is not None and result.stop_reason.startswith("early stopping")
    val = result.history.column("val_loss")
    best = min(range(len(val)), key=val.__getitem__) + 1
    assert result.restored == f"restored the weights of epoch {best}"
    from skier.train import evaluate

    assert evaluate(model, clf_val)["loss"] == pytest.approx(val[best - 1], rel=1e-6)
