"""Weight averaging in fit: EMA and SWA against references, records, selection, resume, refusals."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from skier.errors import CheckpointError, ConfigError
from skier.train import Callback, Checkpoint, EarlyStopping, TrainState, fit
from skier.train.averaging import ema_decay, recompute_batch_norm

Data = tuple[torch.Tensor, torch.Tensor]
BASE: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 40, "seed": 3,
    "device": "cpu", "progress": "off",
}  # fmt: skip


class EveryStep(Callback):
    """Copies of the model's parameters and buffers after every optimizer step."""

    stateful = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_batch_end(self, state: TrainState) -> None:
        self.seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})


class EveryEpoch(EveryStep):
    def on_batch_end(self, state: TrainState) -> None:
        return None

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})


class TorchEma(EveryStep):
    """torch's own EMA (AveragedModel + get_ema_multi_avg_fn), updated after every step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model)
        self.ema = AveragedModel(
            copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )

    def on_batch_end(self, state: TrainState) -> None:
        self.ema.update_parameters(self.model)


def test_ema_decay_warmup_formula() -> None:
    assert ema_decay(0.99, 0, warmup=True) == pytest.approx(0.1)
    assert ema_decay(0.99, 5, warmup=True) == pytest.approx(6 / 15)
    assert ema_decay(0.99, 10_000, warmup=True) == 0.99
    assert ema_decay(0.99, 1, warmup=False) == 0.99


def test_ema_with_warmup_matches_a_hand_written_reference(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1)
    steps = EveryStep(model)
    result = fit(model, clf_data, clf_val, epochs=2, ema=0.95, callbacks=[steps], **BASE)
    reference = dict(steps.seen[0])  # the first update copies
    for t, weights in enumerate(steps.seen[1:], start=1):
        d = min(0.95, (1 + t) / (10 + t))
        reference = {k: d * reference[k] + (1 - d) * w for k, w in weights.items()}
    assert len(steps.seen) == 2 * 6
    assert result.averaged_model is not None
    for key, value in result.averaged_model.state_dict().items():
        torch.testing.assert_close(value, reference[key], atol=1e-6, rtol=0)


def test_ema_without_warmup_equals_torch_averaged_model(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1, batch_norm=True)
    oracle = TorchEma(model, 0.9)
    result = fit(
        model, clf_data, clf_val, epochs=2, ema=0.9, ema_warmup=False, callbacks=[oracle], **BASE
    )
    assert result.averaged_model is not None
    ours, theirs = result.averaged_model.state_dict(), oracle.ema.module.state_dict()
    for key in ours:
        if ours[key].is_floating_point():  # batch-norm statistics included
            torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0)
        else:  # torch averages batch counts too (as integers); skier copies them
            assert torch.equal(ours[key], model.state_dict()[key])


def test_swa_is_the_mean_of_the_epoch_weights_from_swa_start(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1)
    epochs = EveryEpoch(model)
    result = fit(model, clf_data, clf_val, epochs=5, swa_start=3, callbacks=[epochs], **BASE)
    assert result.averaged_model is not None
    for key, value in result.averaged_model.state_dict().items():
        mean = torch.stack([w[key] for w in epochs.seen[2:]]).mean(dim=0)
        torch.testing.assert_close(value, mean, atol=1e-6, rtol=0)
    rows = result.history.rows
    assert "val_swa_loss" not in rows[1] and "val_swa_loss" in rows[2]
    assert result.test_metrics == {}


def test_swa_recomputes_batch_norm_statistics_like_update_bn(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1, batch_norm=True)
    result = fit(model, clf_data, clf_val, epochs=4, swa_start=2, **BASE)
    assert result.averaged_model is not None
    by_hand = copy.deepcopy(result.averaged_model)
    x = clf_data[0]
    update_bn([x[i : i + 40] for i in range(0, len(x), 40)], by_hand)
    ours, theirs = result.averaged_model.state_dict(), by_hand.state_dict()
    assert any("running_mean" in k for k in ours)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0)
    # the average's statistics are not the raw model's running ones
    bn = next(k for k in ours if "running_var" in k)
    assert not torch.allclose(ours[bn], model.state_dict()[bn])


def test_recompute_batch_norm_takes_several_inputs() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(3)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.bn(a + b)

    a, b = torch.randn(20, 3), torch.randn(20, 3)
    model = Two()
    recompute_batch_norm(model, [(a[:10], b[:10]), (a[10:], b[10:])])
    torch.testing.assert_close(model.bn.running_mean, (a + b).mean(0))
    assert model.bn.momentum == 0.1 and model.training


def test_swa_lr_anneals_to_swa_lr_after_swa_start(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    result = fit(
        make_mlp(seed=1), clf_data, clf_val, epochs=6, swa_start=2, swa_lr=0.02,
        swa_anneal_epochs=2, swa_anneal_strategy="linear", schedule="cosine", **BASE,
    )  # fmt: skip
    lrs = result.history.column("lr")
    # epochs 1-2 follow the cosine schedule; from epoch 3 SWALR goes linearly to 0.02 in 2
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[3:] == pytest.approx([0.02, 0.02, 0.02])
    assert lrs[2] == pytest.approx((lrs[1] + 0.02) / 2)


def test_ema_keys_are_recorded_and_monitorable(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    stop = EarlyStopping(monitor="val_ema_loss", patience=10)
    result = fit(make_mlp(seed=1), clf_data, clf_val, test=clf_val, epochs=2, ema=0.9,
                 callbacks=[stop], **BASE)  # fmt: skip
    row = result.history.rows[-1]
    assert {"val_ema_loss", "val_ema_error", "val_ema_accuracy"} <= set(row)
    assert result.monitor == "val_ema_loss"
    assert {"test_loss", "test_ema_loss"} <= set(result.test_metrics)


def test_a_wrong_averaged_key_is_refused_listing_valid_ones(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    with pytest.raises(ConfigError, match=r"got 'val_swa_loss'.*Valid keys: .*val_ema_loss"):
        fit(make_mlp(seed=1), clf_data, clf_val, epochs=2, ema=0.9,
            callbacks=[EarlyStopping(monitor="val_swa_loss")], **BASE)  # fmt: skip


def test_average_select_returns_the_average_and_judges_best_on_it(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1)
    result = fit(model, clf_data, clf_val, epochs=3, ema=0.9, average_select="average", **BASE)
    assert result.monitor == "val_ema_loss"
    assert result.averaged_model is not None
    for key, value in result.averaged_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    # early stopping's best weights are the average's at its best epoch
    model = make_mlp(seed=1)
    stop = EarlyStopping(monitor="auto", patience=1)
    result = fit(model, clf_data, clf_val, epochs=3, swa_start=1, average_select="average",
                 callbacks=[stop], **BASE)  # fmt: skip
    assert stop.key == "val_swa_loss"


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"ema": 1.0}, r"train.ema must be less than 1; got 1.0"),
        ({"ema": 0.0}, r"train.ema must be greater than 0; got 0.0"),
        ({"ema": 0.9, "swa_start": 2}, r"swa_start must be unset when train.ema is set"),
        ({"swa_start": 9}, r"swa_start must be at most train.epochs \(3\); got 9"),
        ({"swa_lr": 0.1}, r"swa_lr must be unset unless train.swa_start is set"),
        ({"average_select": "average"}, r"average_select must be 'raw' unless train.ema"),
        ({"swa_start": 2, "swa_lr": 0.1, "schedule": "one_cycle"},
         r"train.swa_lr must be unset with schedule 'one_cycle'"),
    ],
)  # fmt: skip
def test_refused_settings(
    make_mlp: Any, clf_data: Data, clf_val: Data, settings: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        fit(make_mlp(seed=1), clf_data, clf_val, **{**BASE, "epochs": 3, **settings})


def test_swa_with_batch_norm_from_a_dataset_is_refused(make_mlp: Any, clf_data: Data) -> None:
    dataset = torch.utils.data.TensorDataset(*clf_data)
    with pytest.raises(ConfigError, match=r"swa_start must be unset for a batch-norm model"):
        fit(make_mlp(seed=1, batch_norm=True), dataset, epochs=3, swa_start=2, **BASE)


@pytest.mark.parametrize("technique", [{"ema": 0.9}, {"swa_start": 2, "swa_lr": 0.03,
                                                      "swa_anneal_epochs": 1}])  # fmt: skip
def test_resume_is_bit_identical(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data, technique: dict[str, Any]
) -> None:
    settings = {**BASE, **technique, "schedule": "cosine"}
    straight_model = make_mlp(seed=1, dropout=0.2, batch_norm=True)
    straight = fit(straight_model, clf_data, clf_val, epochs=4,
                   callbacks=[Checkpoint(tmp_path / "a")], **settings)  # fmt: skip
    first = make_mlp(seed=1, dropout=0.2, batch_norm=True)
    # the schedule's length is the run's: epochs=4, stopped after 2 by early stopping's cousin
    fit(first, clf_data, clf_val, epochs=4, callbacks=[Checkpoint(tmp_path / "b"), StopAt(2)],
        **settings)  # fmt: skip
    resumed_model = make_mlp(seed=5, dropout=0.2, batch_norm=True)
    resumed = fit(resumed_model, clf_data, clf_val, epochs=4,
                  callbacks=[Checkpoint(tmp_path / "b"), StopAt(None)],
                  resume=tmp_path / "b" / "last.pt", **settings)  # fmt: skip
    for a, b in (
        (straight_model, resumed_model),
        (straight.averaged_model, resumed.averaged_model),
    ):
        assert a is not None and b is not None
        sa, sb = a.state_dict(), b.state_dict()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    strip = [{k: v for k, v in r.items() if k != "epoch_time"} for r in straight.history.rows]
    assert strip == [{k: v for k, v in r.items() if k != "epoch_time"}
                     for r in resumed.history.rows]  # fmt: skip


class StopAt(Callback):
    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if state.epoch == self.epoch:
            state.request_stop("test")

    def state_dict(self) -> dict[str, Any]:
        return {}


def test_resume_with_other_averaging_is_refused(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    fit(make_mlp(seed=1), clf_data, clf_val, epochs=2, ema=0.9,
        callbacks=[Checkpoint(tmp_path)], **BASE)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"weight averaging must match the checkpoint's"):
        fit(make_mlp(seed=1), clf_data, clf_val, epochs=3, callbacks=[Checkpoint(tmp_path)],
            resume=tmp_path / "last.pt", **BASE)  # fmt: skip


def test_swa_start_as_a_fraction_of_the_epochs(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    result = fit(make_mlp(seed=1), clf_data, clf_val, epochs=4, swa_start=0.5, **BASE)
    assert ["val_swa_loss" in row for row in result.history.rows] == [False, False, True, True]


def test_best_weights_before_the_average_exists_are_the_raw_ones(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1)
    epochs = EveryEpoch(model)
    # mode max: the best is the first epoch (the loss falls), before the average exists
    stop = EarlyStopping(monitor="val_loss", mode="max", patience=10)
    fit(model, clf_data, clf_val, epochs=3, swa_start=3, average_select="average",
        callbacks=[epochs, stop], **BASE)  # fmt: skip
    assert stop.best_epoch == 1
    saved = stop.state_dict()["best_weights"]
    for key, value in epochs.seen[0].items():
        assert torch.equal(saved[key], value)


def test_swa_without_swa_lr_keeps_a_per_step_schedule(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    schedule = {"name": "cyclical", "max_lr": 0.2, "step_size_up": 3}
    plain = fit(make_mlp(seed=1), clf_data, clf_val, epochs=3, schedule=schedule, **BASE)
    swa = fit(make_mlp(seed=1), clf_data, clf_val, epochs=3, schedule=schedule, swa_start=2,
              **BASE)  # fmt: skip
    assert swa.history.steps["lr"] == plain.history.steps["lr"]
    assert "val_swa_loss" in swa.history.rows[-1]
