"""EarlyStopping driven by scripted metric sequences: no training, a bare TrainState."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch

from skier.errors import ConfigError
from skier.train import EarlyStopping, TrainState

Logs = dict[str, float]


def drive(cb: EarlyStopping, state: TrainState, logs: Sequence[Logs], start: int = 1) -> int | None:
    """Feed ``logs`` as epochs ``start, start+1, ...``; return the epoch a stop was asked at."""
    cb.on_fit_start(state)
    for epoch, row in enumerate(logs, start=start):
        state.epoch = epoch
        cb.on_epoch_end(state, row)
        if state.stop_requested:
            return epoch
    return None


def losses(*values: float) -> list[Logs]:
    return [{"val_loss": v} for v in values]


MakeState = Callable[..., TrainState]


# --- patience --------------------------------------------------------------------------------


def test_patience_stops_after_patience_checks_without_improvement(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=2, restore_best=False)
    assert drive(cb, state, losses(1.0, 0.8, 0.9, 0.85, 0.7)) == 4
    assert state.stop_reason is not None
    assert "early stopping" in state.stop_reason and "val_loss" in state.stop_reason
    assert cb.best == 0.8 and cb.best_epoch == 2 and cb.stopped_epoch == 4


def test_patience_is_reset_by_an_improvement(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=2, restore_best=False)
    assert drive(cb, state, losses(1.0, 1.1, 0.9, 1.0, 0.95)) == 5


def test_epochs_without_the_monitored_key_do_not_count(make_state: MakeState) -> None:
    # validation every other epoch: the rows between hold no val_loss
    rows: list[Logs] = []
    for v in (1.0, 1.1, 1.2, 1.3):
        rows += [{"loss": 0.5}, {"loss": 0.5, "val_loss": v}]
    state = make_state()
    cb = EarlyStopping(patience=3, restore_best=False)
    # checks at epochs 2, 4, 6, 8; the third check without improvement is epoch 8
    assert drive(cb, state, rows) == 8
    assert cb.wait == 3


def test_non_finite_values_are_ignored(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=1, restore_best=False)
    assert drive(cb, state, losses(1.0, math.nan, math.inf, 0.5)) is None
    assert cb.best == 0.5 and cb.best_epoch == 4


def test_min_delta_small_improvement_is_not_an_improvement(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=2, min_delta=0.1, restore_best=False)
    # 0.95 and 0.91 improve by less than 0.1: two checks without improvement
    assert drive(cb, state, losses(1.0, 0.95, 0.91)) == 3
    assert cb.best == 1.0 and cb.best_epoch == 1


def test_min_delta_large_improvement_counts(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=2, min_delta=0.1, restore_best=False)
    assert drive(cb, state, losses(1.0, 0.95, 0.8, 0.75, 0.72)) == 5
    assert cb.best == 0.8 and cb.best_epoch == 3


def test_warmup_epochs_are_excluded_entirely(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=2, warmup_epochs=3)
    # a great value during warm-up must not become the best, nor count toward patience
    stopped = drive(cb, state, losses(0.01, 5.0, 6.0, 1.0, 0.9, 0.95, 0.96))
    assert stopped == 7
    assert cb.best == 0.9 and cb.best_epoch == 5
    assert cb.checks == [1.0, 0.9, 0.95, 0.96]


def test_warmup_counts_epochs_not_checks(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=1, warmup_epochs=2, restore_best=False)
    rows = [{"loss": 1.0}, {"val_loss": 0.1}, {"loss": 1.0}, {"val_loss": 2.0}, {"val_loss": 3.0}]
    assert drive(cb, state, rows) == 5
    assert cb.best_epoch == 4


@pytest.mark.parametrize("mode", ["max", "auto"])
def test_accuracy_is_maximised(make_state: MakeState, mode: str) -> None:
    state = make_state()
    cb = EarlyStopping(monitor="val_accuracy", mode=mode, patience=2, restore_best=False)  # type: ignore[arg-type]
    rows = [{"val_accuracy": v} for v in (0.5, 0.7, 0.6, 0.65, 0.9)]
    assert drive(cb, state, rows) == 4
    assert cb.best == 0.7 and cb.best_epoch == 2


def test_mode_min_on_accuracy_is_respected(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(monitor="val_accuracy", mode="min", patience=1, restore_best=False)
    rows = [{"val_accuracy": v} for v in (0.5, 0.7)]
    assert drive(cb, state, rows) == 2
    assert cb.best == 0.5


# --- criterion "up" --------------------------------------------------------------------------


def test_up_stops_exactly_when_worse_than_strips_checks_ago(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(criterion="up", strips=2, patience=100, restore_best=False)
    # v5 - v3 = 1.0 - 0.9 > 0 fires; before that v4 - v2 = 0.95 - 0.95 == 0 does not
    values = (1.0, 0.95, 0.9, 0.95, 1.0)
    assert drive(cb, state, losses(*values)) == 5
    assert state.stop_reason is not None and "worse over 2" in state.stop_reason


def test_up_needs_more_than_min_delta(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(criterion="up", strips=1, min_delta=0.25, restore_best=False)
    # rises of 0.25 (exactly min_delta) do not fire; 0.5 does
    assert drive(cb, state, losses(1.0, 1.25, 1.5, 2.0)) == 4


def test_up_compares_with_the_value_strips_checks_ago_not_the_best(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(criterion="up", strips=3, patience=100, restore_best=False)
    # one-step differences: +1, -0.5, -0.25 → cumulative +0.25 > 0 at the 4th check
    assert drive(cb, state, losses(1.0, 2.0, 1.5, 1.25)) == 4


def test_up_does_not_fire_when_not_enough_checks(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(criterion="up", strips=3, restore_best=False)
    assert drive(cb, state, losses(1.0, 2.0, 3.0)) is None


def test_up_for_accuracy_means_going_down(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(monitor="val_accuracy", criterion="up", strips=1, restore_best=False)
    rows = [{"val_accuracy": v} for v in (0.5, 0.6, 0.7, 0.65)]
    assert drive(cb, state, rows) == 4


# --- criterion "generalization_loss" ---------------------------------------------------------


def test_generalization_loss_fires_above_threshold_not_at_it(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(
        criterion="generalization_loss", threshold=6.25, patience=100, restore_best=False
    )
    # best 2.0; 2.125 is exactly 6.25 % worse (exact in binary); 2.25 is 12.5 % worse
    assert drive(cb, state, losses(3.0, 2.0, 2.125, 2.125, 2.25)) == 5
    assert state.stop_reason is not None and "12.5% worse" in state.stop_reason


def test_generalization_loss_is_relative_to_the_best_not_the_last(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(criterion="generalization_loss", threshold=10.0, restore_best=False)
    # each step is < 10 % worse than the previous one, but 1.21 is 21 % worse than the best
    assert drive(cb, state, losses(1.0, 1.05, 1.1, 1.15, 1.21)) == 3


# --- restore_best ----------------------------------------------------------------------------


def test_restore_best_requests_the_best_epochs_weights(make_state: MakeState) -> None:
    state = make_state()
    model = state._model
    cb = EarlyStopping(patience=2)
    cb.on_fit_start(state)
    best_weights = None
    for epoch, v in enumerate((1.0, 0.5, 0.7, 0.8), start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))  # weights that say which epoch they come from
        state.epoch = epoch
        cb.on_epoch_end(state, {"val_loss": v})
        if epoch == 2:
            best_weights = state.capture_weights()
    cb.on_fit_end(state, {"val_loss": 0.8})
    assert state.requests.restore is not None and best_weights is not None
    assert all(torch.equal(state.requests.restore[k], best_weights[k]) for k in best_weights)
    assert all(float(t.flatten()[0]) == 2.0 for t in state.requests.restore.values())
    assert "epoch 2" in state.requests.restore_reason


def test_no_restore_when_the_best_is_the_last_epoch(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=2)
    drive(cb, state, losses(1.0, 0.9, 0.8))
    cb.on_fit_end(state, {"val_loss": 0.8})
    assert state.requests.restore is None


def test_no_restore_when_disabled(make_state: MakeState) -> None:
    state = make_state()
    cb = EarlyStopping(patience=1, restore_best=False)
    drive(cb, state, losses(0.5, 0.9))
    cb.on_fit_end(state, {"val_loss": 0.9})
    assert state.requests.restore is None


# --- state ---------------------------------------------------------------------------------


def test_state_dict_round_trip_continues_identically(make_state: MakeState) -> None:
    values = (1.0, 0.8, 0.9, 0.85, 0.95, 0.99, 1.2)
    reference = EarlyStopping(patience=5, min_delta=0.01, warmup_epochs=1)
    ref_state = make_state()
    ref_stop = drive(reference, ref_state, losses(*values))
    assert ref_stop == 7

    first, first_state = EarlyStopping(patience=5, min_delta=0.01, warmup_epochs=1), make_state()
    assert drive(first, first_state, losses(*values[:4])) is None
    saved = first.state_dict()

    second, second_state = EarlyStopping(patience=5, min_delta=0.01, warmup_epochs=1), make_state()
    second.load_state_dict(saved)
    second_state.epoch = 4  # a resumed fit: on_fit_start must keep the loaded state
    assert drive(second, second_state, losses(*values[4:]), start=5) == ref_stop
    assert second_state.stop_reason == ref_state.stop_reason
    assert second.state_dict()["best"] == reference.state_dict()["best"]
    assert second.state_dict()["checks"] == reference.state_dict()["checks"]
    assert second.best_epoch == reference.best_epoch == 2


def test_a_fresh_fit_resets_the_state(make_state: MakeState) -> None:
    cb = EarlyStopping(patience=1)
    drive(cb, make_state(), losses(0.1, 0.5))
    state = make_state()
    assert drive(cb, state, losses(1.0, 0.9)) is None
    assert cb.best == 0.9


# --- arguments -------------------------------------------------------------------------------


def test_invalid_arguments_list_every_problem() -> None:
    with pytest.raises(ConfigError, match="5 problems") as info:
        EarlyStopping(
            patience=0,
            min_delta=-0.1,
            warmup_epochs=-1,
            strips=0,
            criterion="later",  # type: ignore[arg-type]
        )
    text = str(info.value)
    for name in ("patience", "min_delta", "warmup_epochs", "strips", "criterion"):
        assert f"early_stopping.{name} must be" in text
    assert "got 'later'" in text


def test_invalid_mode_and_threshold_are_rejected() -> None:
    with pytest.raises(ConfigError, match="2 problems") as info:
        EarlyStopping(mode="maximum", threshold=-1.0)  # type: ignore[arg-type]
    assert "early_stopping.mode must be" in str(info.value)
    assert "early_stopping.threshold must be" in str(info.value)
