"""What the loop does per epoch and per batch, checked against plain torch as the oracle."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from skier.data.types import Split
from skier.train import Callback, TrainState, evaluate, fit
from skier.train.batches import TensorBatches

Data = tuple[torch.Tensor, torch.Tensor]
CPU: dict[str, Any] = {"device": "cpu"}


class StepsPerEpoch(Callback):
    """Records ``state.step`` at each epoch end and counts on_batch_end calls."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.batches = 0

    def on_batch_end(self, state: TrainState) -> None:
        self.batches += 1

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.steps.append(state.step)


class RecordingSGD(torch.optim.SGD):
    """SGD that records the total gradient norm it is asked to step with."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.norms: list[float] = []
        self.first_grads: list[torch.Tensor] = []

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not self.first_grads:
            self.first_grads = [g.clone() for g in grads]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# --- batching --------------------------------------------------------------------------------


def test_full_batch_is_one_step_per_epoch_and_equals_plain_gd(
    make_mlp: Any, clf_data: Data
) -> None:
    x, y = clf_data
    model = make_mlp(seed=3)
    oracle = copy.deepcopy(model)
    counter = StepsPerEpoch()
    fit(
        model,
        clf_data,
        optimizer="sgd",
        lr=0.5,
        batch_size="full",
        epochs=5,
        callbacks=[counter],
        **CPU,
    )
    assert counter.steps == [1, 2, 3, 4, 5]
    assert counter.batches == 5

    opt = torch.optim.SGD(oracle.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(oracle(x), y).backward()
        opt.step()
    for p, q in zip(model.parameters(), oracle.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    assert not _same(model, make_mlp(seed=3))  # it did train


def test_batch_size_one_is_n_steps_per_epoch(make_mlp: Any, clf_data: Data) -> None:
    counter = StepsPerEpoch()
    fit(
        make_mlp(),
        clf_data,
        optimizer="sgd",
        lr=0.01,
        batch_size=1,
        epochs=1,
        callbacks=[counter],
        **CPU,
    )
    assert counter.steps == [len(clf_data[1])]


@pytest.mark.parametrize(("drop_last", "steps"), [(False, 5), (True, 4)])
def test_drop_last(make_mlp: Any, clf_data: Data, drop_last: bool, steps: int) -> None:
    counter = StepsPerEpoch()  # 240 examples in batches of 50: 4 full + one of 40
    fit(
        make_mlp(),
        clf_data,
        optimizer="sgd",
        lr=0.01,
        batch_size=50,
        epochs=2,
        drop_last=drop_last,
        callbacks=[counter],
        **CPU,
    )
    assert counter.steps == [steps, 2 * steps]


def test_tensor_batches_drop_last_sees_only_full_batches() -> None:
    split = Split((torch.arange(10.0).unsqueeze(1),), torch.arange(10))
    sizes = [len(y) for _, y, _ in TensorBatches(split, 4, drop_last=True)]
    assert sizes == [4, 4]
    sizes = [len(y) for _, y, _ in TensorBatches(split, 4, drop_last=False)]
    assert sizes == [4, 4, 2]


def _orders(seed: int, epochs: int = 2) -> list[torch.Tensor]:
    split = Split((torch.arange(100.0).unsqueeze(1),), torch.arange(100))
    batches = TensorBatches(split, 10, generator=torch.Generator().manual_seed(seed))
    return [torch.cat([y for _, y, _ in batches]) for _ in range(epochs)]


def test_permutation_differs_between_epochs_and_is_reproducible() -> None:
    first, second = _orders(seed=1)
    assert sorted(first.tolist()) == list(range(100))  # every example once per epoch
    assert not torch.equal(first, second)
    assert not torch.equal(first, torch.arange(100))
    again = _orders(seed=1)
    assert torch.equal(again[0], first) and torch.equal(again[1], second)
    assert not torch.equal(_orders(seed=2)[0], first)


def test_same_seed_same_weights_other_seed_other_weights(make_mlp: Any, clf_data: Data) -> None:
    def run(seed: int) -> nn.Module:
        model = make_mlp(seed=0, dropout=0.2)
        fit(model, clf_data, optimizer="sgd", lr=0.1, batch_size=16, epochs=2, seed=seed, **CPU)
        return model

    a, b, c = run(1), run(1), run(2)
    assert _same(a, b)
    assert not _same(a, c)


def test_no_shuffle_keeps_the_order() -> None:
    split = Split((torch.arange(20.0).unsqueeze(1),), torch.arange(20))
    batches = TensorBatches(split, 6, shuffle=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([y for _, y, _ in batches]), torch.arange(20))


def test_balanced_batches_sample_classes_about_equally() -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.cat([torch.zeros(540, dtype=torch.long), torch.ones(60, dtype=torch.long)])
    targets = targets[torch.randperm(600, generator=g)]
    split = Split((torch.randn(600, 3, generator=g),), targets)

    def counts(balanced: bool) -> torch.Tensor:
        batches = TensorBatches(split, 50, balanced=balanced, generator=g)
        seen = torch.cat([y for _, y, _ in batches])
        assert len(seen) == 600
        return torch.bincount(seen, minlength=2)

    plain, balanced = counts(False), counts(True)
    assert plain.tolist() == [540, 60]
    # binomial(600, 1/2): sd ~ 12; 60 is five sd
    assert abs(int(balanced[0]) - 300) < 60 and abs(int(balanced[1]) - 300) < 60


# --- loss, reduction and logged metrics ------------------------------------------------------


def test_reduction_sum_scales_the_gradient_by_the_batch_size(make_mlp: Any, clf_data: Data) -> None:
    def grads(reduction: str, batch_size: int) -> list[torch.Tensor]:
        model = make_mlp(seed=4)
        opt = RecordingSGD(model.parameters(), lr=1e-3)
        fit(
            model,
            clf_data,
            optimizer=opt,
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            reduction=reduction,
            **CPU,
        )
        return opt.first_grads

    for size in (240, 48):
        g_sum, g_mean = grads("sum", size), grads("mean", size)
        for a, b in zip(g_sum, g_mean, strict=True):
            torch.testing.assert_close(a, size * b, rtol=1e-4, atol=1e-6)
            assert b.abs().max() > 0


def test_logged_loss_is_the_sample_weighted_mean(make_mlp: Any, clf_data: Data) -> None:
    x, y = clf_data
    model = make_mlp(seed=5)
    with torch.no_grad():
        out = model(x)
        expected_loss = float(F.cross_entropy(out, y))
        expected_error = float((out.argmax(1) != y).double().mean())
    # batches of 100, 100 and 40; lr ~ 0 so the weights stay put during the epoch
    result = fit(model, clf_data, optimizer="sgd", lr=1e-12, batch_size=100, epochs=1, **CPU)
    row = result.history.rows[0]
    assert row["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert row["error"] == pytest.approx(expected_error, abs=1e-12)
    assert row["accuracy"] == pytest.approx(1 - expected_error, abs=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_logged_regression_loss_is_the_per_element_mean(
    make_mlp: Any, reg_data: Data, reduction: str
) -> None:
    x, y1 = reg_data
    y = torch.cat([y1, 2 * y1], dim=1)  # two targets: the mean is over examples and targets
    model = make_mlp(seed=6, out=2)
    with torch.no_grad():
        expected = float(F.mse_loss(model(x), y))
    result = fit(
        model,
        (x, y),
        optimizer="sgd",
        lr=1e-12,
        batch_size=64,
        epochs=1,
        reduction=reduction,
        **CPU,
    )
    assert result.history.rows[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert evaluate(model, (x, y))["loss"] == pytest.approx(expected, rel=1e-5)


def test_exact_train_error_is_evaluate_after_the_epoch(make_mlp: Any, clf_data: Data) -> None:
    def run(exact: bool) -> tuple[dict[str, float], nn.Module]:
        model = make_mlp(seed=7, dropout=0.5)
        result = fit(
            model,
            clf_data,
            optimizer="sgd",
            lr=0.5,
            batch_size=32,
            epochs=1,
            exact_train_error=exact,
            **CPU,
        )
        return result.history.rows[0], model

    row, model = run(True)
    after = evaluate(model, clf_data)
    assert row["loss"] == pytest.approx(after["loss"], rel=1e-6)
    assert row["error"] == pytest.approx(after["error"], abs=1e-12)
    running, _ = run(False)  # the running mean over the epoch, in train mode, is another number
    assert running["loss"] != pytest.approx(after["loss"], rel=1e-3)


def test_validation_only_on_val_every_epochs_and_the_last(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    result = fit(
        make_mlp(), clf_data, clf_val, optimizer="sgd", lr=0.1, epochs=7, val_every=3, **CPU
    )
    with_val = [int(r["epoch"]) for r in result.history.rows if "val_loss" in r]
    assert with_val == [3, 6, 7]
    for r in result.history.rows:
        assert ("val_error" in r) == ("val_loss" in r) == ("val_accuracy" in r)
    assert all(math.isnan(v) for v in result.history.column("val_loss")[:2])


def test_val_metrics_equal_evaluate_on_the_final_model(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(dropout=0.3, batch_norm=True)
    result = fit(model, clf_data, clf_val, optimizer="sgd", lr=0.1, epochs=2, **CPU)
    after = evaluate(model, clf_val)
    assert result.history.rows[-1]["val_loss"] == pytest.approx(after["loss"], rel=1e-6)
    assert result.history.rows[-1]["val_error"] == pytest.approx(after["error"])


# --- gradient clipping -----------------------------------------------------------------------


@pytest.mark.parametrize("clip", [None, 0.05])
def test_grad_clip_bounds_the_gradient_norm(make_mlp: Any, clf_data: Data, clip: Any) -> None:
    model = make_mlp(seed=8)
    opt = RecordingSGD(model.parameters(), lr=0.1)
    fit(model, clf_data, optimizer=opt, batch_size=16, epochs=1, grad_clip=clip, **CPU)
    assert len(opt.norms) == 15
    if clip is None:
        assert max(opt.norms) > 0.05  # the bound below would otherwise prove nothing
    else:
        assert max(opt.norms) <= clip * (1 + 1e-5)
        assert max(opt.norms) == pytest.approx(clip, rel=1e-4)  # it was actually clipped


# --- data forms ------------------------------------------------------------------------------


def test_numpy_arrays_train_like_tensors(make_mlp: Any, clf_data: Data) -> None:
    x, y = clf_data
    a, b = make_mlp(seed=9), make_mlp(seed=9)
    ra = fit(a, (x, y), optimizer="sgd", lr=0.1, batch_size=32, epochs=2, **CPU)
    rb = fit(b, (x.numpy(), y.numpy()), optimizer="sgd", lr=0.1, batch_size=32, epochs=2, **CPU)
    assert _same(a, b)
    assert ra.history.column("loss") == rb.history.column("loss")
    assert rb.task == "classification"


def test_float64_numpy_inputs_are_converted(make_mlp: Any, reg_data: Data) -> None:
    x, y = reg_data
    result = fit(
        make_mlp(out=1),
        (x.double().numpy(), y[:, 0].double().numpy()),
        optimizer="sgd",
        lr=0.01,
        epochs=1,
        **CPU,
    )
    assert result.task == "regression"


@pytest.mark.parametrize("kind", ["dataset", "loader"])
def test_dataset_and_dataloader_train(
    make_mlp: Any, clf_data: Data, clf_val: Data, kind: str
) -> None:
    x, y = clf_data
    reference = fit(
        make_mlp(), clf_data, clf_val, optimizer="sgd", lr=0.1, batch_size=40, epochs=2, **CPU
    )
    train: Any = TensorDataset(x, y)
    if kind == "loader":
        train = DataLoader(train, batch_size=40, shuffle=True)
    counter = StepsPerEpoch()
    result = fit(
        make_mlp(),
        train,
        clf_val,
        optimizer="sgd",
        lr=0.1,
        batch_size=40,
        epochs=2,
        callbacks=[counter],
        **CPU,
    )
    assert result.history.keys == reference.history.keys
    assert result.task == "classification"
    assert counter.steps == [6, 12]
    assert result.history.rows[-1]["loss"] < result.history.rows[0]["loss"] * 1.5


def test_dataset_without_in_memory_splits_trains(make_mlp: Any, clf_data: Data) -> None:
    # no val/test split to count the classes from: the loop must still train
    result = fit(
        make_mlp(),
        TensorDataset(*clf_data),
        optimizer="sgd",
        lr=0.1,
        batch_size=60,
        epochs=1,
        **CPU,
    )
    assert set(result.history.keys) >= {"loss", "error", "accuracy"}


@pytest.mark.parametrize(
    ("setting", "value", "match"),
    [
        ("sampling", "balanced", "train.sampling must be 'uniform' when train is a Data"),
        ("sampling", "informative", "train.sampling must be 'uniform' when train is a Data"),
        ("exact_train_error", True, "train.exact_train_error must be False when train is a Data"),
    ],
)
def test_in_memory_only_settings_refused_for_a_dataset(
    make_mlp: Any, clf_data: Data, setting: str, value: Any, match: str
) -> None:
    from skier.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        fit(make_mlp(), TensorDataset(*clf_data), epochs=1, **{setting: value}, **CPU)


def test_regression_uses_mse_and_logs_no_error(make_mlp: Any, reg_data: Data) -> None:
    x, y = reg_data
    model = make_mlp(seed=10, out=1)
    with torch.no_grad():
        expected = float(F.mse_loss(model(x), y))
    result = fit(
        model,
        (x.numpy(), y[:, 0].numpy()),
        (x[:50], y[:50]),
        optimizer="sgd",
        lr=1e-12,
        batch_size=50,
        epochs=1,
        **CPU,
    )
    row = result.history.rows[0]
    assert result.task == "regression"
    assert row["loss"] == pytest.approx(expected, rel=1e-5)
    assert not {"error", "accuracy", "val_error", "val_accuracy"} & set(row)
    assert "val_loss" in row


def test_regression_learns(make_mlp: Any, reg_data: Data) -> None:
    result = fit(
        make_mlp(out=1), reg_data, optimizer="adam", lr=0.01, batch_size=32, epochs=5, **CPU
    )
    losses = result.history.column("loss")
    assert losses[-1] < 0.5 * losses[0]


def test_classification_learns(make_mlp: Any, clf_data: Data, clf_val: Data) -> None:
    result = fit(
        make_mlp(), clf_data, clf_val, optimizer="adam", lr=0.02, batch_size=32, epochs=8, **CPU
    )
    assert result.history.rows[-1]["val_error"] < 0.35
    assert result.best_epoch is not None and result.monitor == "val_loss"


def test_lr_column_is_the_rate_the_epoch_trained_with(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    result = fit(
        model,
        clf_data,
        optimizer=opt,
        schedule={"name": "step", "step_size": 1, "gamma": 0.5},
        epochs=3,
        **CPU,
    )
    assert result.history.column("lr") == pytest.approx([0.2, 0.1, 0.05])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_progress_on_draws_epoch_bar_and_off_draws_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    fit(torch.nn.Linear(4, 2), (x, y), epochs=2, batch_size=16, progress="on", device="cpu")
    assert "epochs: 100%" in capsys.readouterr().err
    fit(torch.nn.Linear(4, 2), (x, y), epochs=2, batch_size=16, progress="off", device="cpu")
    assert capsys.readouterr().err == ""


def test_a_progress_bar_does_not_change_what_a_checkpoint_must_match(tmp_path: Path) -> None:
    from skier.train import Checkpoint, ProgressBar

    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    fit(
        torch.nn.Linear(4, 2), (x, y), epochs=2, device="cpu",
        callbacks=[Checkpoint(tmp_path), ProgressBar(False)],
    )  # fmt: skip
    result = fit(
        torch.nn.Linear(4, 2), (x, y), epochs=3, device="cpu",
        callbacks=[Checkpoint(tmp_path)], resume=tmp_path / "last.pt",
    )  # fmt: skip
    assert result.epochs_done == 3 and len(result.history) == 3


def test_the_batch_bar_is_redrawn_at_most_every_mininterval_over_fast_epochs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    t0 = time.perf_counter()
    fit(torch.nn.Linear(4, 2), (x, y), epochs=200, batch_size=64, progress="on", device="cpu")
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert "epochs: 100%" in err
    draws = err.count("batches:")  # before: a redraw every epoch, however short
    # at most one reset and one update due by mininterval each 0.1 s, and the last draws
    assert draws <= 5 + 2 * seconds / 0.1, (draws, seconds)
