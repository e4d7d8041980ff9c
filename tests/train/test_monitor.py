"""Monitor owns "is this an improvement": scripted sequences through it and its subclasses,
"auto" resolution, the fit's verdict and resume of the monitored state."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.errors import ConfigError
from skier.train import Checkpoint, EarlyStopping, Monitor, TrainState, fit, load_checkpoint
from skier.train.callbacks.monitor import verdict

MakeState = Callable[..., TrainState]
Values = Sequence[float | None]

# (key, mode, min_delta, values, the epochs that improve, best, best epoch)
SEQUENCES = [
    # min: ties (0.8 at epoch 3) do not improve; None (no check) and non-finite are skipped
    ("val_loss", "auto", 0.0, [1.0, 0.8, 0.8, None, math.nan, 0.7, math.inf],
     [1, 2, 6], 0.7, 6),
    # max by name: an accuracy, a tie at the top is not an improvement
    ("val_accuracy", "auto", 0.0, [0.5, 0.7, 0.6, 0.7, 0.9], [1, 2, 5], 0.9, 5),
    # explicit max on a loss-like name
    ("val_score", "max", 0.0, [1.0, 2.0, 1.5, 3.0], [1, 2, 4], 3.0, 4),
    # explicit min on an accuracy
    ("val_accuracy", "min", 0.0, [0.5, 0.7, 0.4], [1, 3], 0.4, 3),
    # min_delta: an improvement must be larger than it (0.25 exactly is not), measured from
    # the best, not the last value
    ("val_loss", "min", 0.25, [2.0, 1.75, 1.8, 1.7, 1.5], [1, 4], 1.7, 4),
    ("val_accuracy", "max", 0.1, [0.5, 0.55, 0.6, 0.65], [1, 4], 0.65, 4),
]  # fmt: skip
IDS = ["min-ties", "max-by-name", "max", "min-on-accuracy", "min_delta-min", "min_delta-max"]


def _rows(key: str, values: Values) -> list[dict[str, float]]:
    return [{"loss": 1.0} if v is None else {"loss": 1.0, key: v} for v in values]


@pytest.mark.parametrize(("key", "mode", "delta", "values", "better", "best", "at"), SEQUENCES,
                         ids=IDS)  # fmt: skip
def test_monitor_update_says_which_values_improve(
    key: str, mode: Any, delta: float, values: Values, better: list[int], best: float, at: int
) -> None:
    m = Monitor(key, mode=mode, min_delta=delta)
    got = [e for e, v in enumerate(values, start=1) if m.update(v, e)]
    assert got == better
    assert (m.best, m.best_epoch) == (best, at)


@pytest.mark.parametrize(("key", "mode", "delta", "values", "better", "best", "at"), SEQUENCES,
                         ids=IDS)  # fmt: skip
def test_early_stopping_keeps_the_monitors_best(
    make_state: MakeState,
    key: str, mode: Any, delta: float, values: Values, better: list[int], best: float, at: int,
) -> None:  # fmt: skip
    state = make_state(keys=frozenset({"loss", key}))
    es = EarlyStopping(key, mode=mode, min_delta=delta, patience=100, restore_best=False)
    es.on_fit_start(state)
    improved, waits = [], []
    for epoch, row in enumerate(_rows(key, values), start=1):
        state.epoch = epoch
        before = es.best_epoch
        es.on_epoch_end(state, row)
        if es.best_epoch != before:
            improved.append(epoch)
        waits.append(es.wait)
    assert improved == better
    assert (es.best, es.best_epoch) == (best, at)
    # patience counts the checks since the last improvement (a missing value is no check)
    checks = [e for e, v in enumerate(values, start=1) if v is not None and math.isfinite(v)]
    assert waits[-1] == len([e for e in checks if e > at])


@pytest.mark.parametrize(("key", "mode", "delta", "values", "better", "best", "at"), SEQUENCES,
                         ids=IDS)  # fmt: skip
def test_checkpoint_writes_best_exactly_on_improvements(
    make_state: MakeState, tmp_path: Path,
    key: str, mode: Any, delta: float, values: Values, better: list[int], best: float, at: int,
) -> None:  # fmt: skip
    state = make_state(keys=frozenset({"loss", key}))
    ck = Checkpoint(tmp_path, monitor=key, mode=mode, min_delta=delta)
    ck.on_fit_start(state)
    wrote_best = []
    for epoch, row in enumerate(_rows(key, values), start=1):
        state.epoch = epoch
        ck.on_epoch_end(state, row)
        tags = [r.tag for r in state.requests.checkpoints]
        assert tags.count("last") == 1  # every=1
        if "best" in tags:
            wrote_best.append(epoch)
        state.requests.checkpoints.clear()
    assert wrote_best == better
    assert (ck.best, ck.best_epoch) == (best, at)


def test_checkpoint_keep_best_off_tracks_nothing(make_state: MakeState, tmp_path: Path) -> None:
    state = make_state()
    ck = Checkpoint(tmp_path, keep_best=False)
    ck.on_fit_start(state)
    state.epoch = 1
    ck.on_epoch_end(state, {"val_loss": 0.5})
    assert ck.best_epoch is None and [r.tag for r in state.requests.checkpoints] == ["last"]


# --- "auto" --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Checkpoint("c"), lambda: EarlyStopping("auto")])
def test_auto_resolves_at_fit_start_and_keeps_the_argument(
    make_state: MakeState, make: Callable[[], Monitor]
) -> None:
    cb = make()
    assert cb.monitored_keys() == []  # nothing for the loop to check: auto always resolves
    cb.on_fit_start(make_state(keys=frozenset({"loss", "val_loss"})))
    assert (cb.monitor, cb.key) == ("auto", "val_loss")
    # the same callback in a fresh fit without validation data resolves again
    cb.on_fit_start(make_state(keys=frozenset({"loss"})))
    assert (cb.monitor, cb.key) == ("auto", "loss")
    assert cb.monitored_keys() == []


def test_a_reused_checkpoint_starts_a_fresh_fit_without_a_best(
    make_state: MakeState, tmp_path: Path
) -> None:
    # Both monitors reset on a fresh fit (Checkpoint used to keep the first fit's best, so a
    # second, worse fit never wrote best.pt).
    ck = Checkpoint(tmp_path)
    for value in (0.1, 0.9):
        state = make_state()
        ck.on_fit_start(state)
        state.epoch = 1
        ck.on_epoch_end(state, {"val_loss": value})
        assert "best" in [r.tag for r in state.requests.checkpoints]
        assert (ck.best, ck.best_epoch) == (value, 1)


def test_auto_works_through_fit(tmp_path: Path) -> None:
    x, y = torch.randn(32, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(32, 1)
    ck = Checkpoint(tmp_path)
    result = fit(torch.nn.Linear(3, 1), (x, y), epochs=2, batch_size=16, callbacks=[ck])
    assert (ck.monitor, ck.key) == ("auto", "loss")  # no validation data
    assert ck.best_epoch is not None and result.checkpoints["best"] == ck.best_path


# --- the fit's verdict ---------------------------------------------------------------------


class HighestLoss(Monitor):
    """A user's monitor: the epoch with the largest training loss is "best"."""

    def __init__(self) -> None:
        super().__init__("loss", mode="max")
        self.seen: list[float] = []

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.seen.append(logs["loss"])
        super().on_epoch_end(state, logs)


def _fit_with(callbacks: list[Any]) -> Any:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.randn(4, 1, generator=g)
    return fit(torch.nn.Linear(4, 1), (x, y), (x[:16], y[:16]), optimizer="sgd", lr=0.05,
               epochs=5, batch_size=16, seed=0, device="cpu", callbacks=callbacks)  # fmt: skip


def test_a_custom_monitor_supplies_the_fit_verdict() -> None:
    mine = HighestLoss()
    result = _fit_with([mine])
    losses = [row["loss"] for row in result.history.rows]
    assert losses == mine.seen and losses[-1] < losses[0]  # it learns: min and max differ
    worst = max(range(len(losses)), key=losses.__getitem__)
    assert (result.monitor, result.best_epoch, result.best_value) == (
        "loss",
        worst + 1,
        max(losses),
    )
    # without it, the loop judges the history: the lowest validation loss
    plain = _fit_with([])
    val = [row["val_loss"] for row in plain.history.rows]
    assert (plain.monitor, plain.best_value) == ("val_loss", min(val))


def test_the_restored_monitor_wins_the_verdict_else_the_first() -> None:
    restoring = EarlyStopping("val_loss", patience=100, restore_best=True)
    result = _fit_with([HighestLoss(), restoring])
    assert (result.monitor, result.best_epoch) == ("val_loss", restoring.best_epoch)
    assert result.best_value == restoring.best
    not_restoring = EarlyStopping("val_loss", patience=100, restore_best=False)
    result = _fit_with([HighestLoss(), not_restoring])
    assert result.monitor == "loss"


def test_verdict_skips_checkpoint_and_monitors_without_a_value(tmp_path: Path) -> None:
    ck, quiet, seen = Checkpoint(tmp_path), Monitor("val_loss"), Monitor("loss")
    ck.update(0.5, 1)
    assert verdict([ck, quiet]) is None
    seen.update(0.5, 2)
    assert verdict([ck, quiet, seen]) is seen


# --- state for an exact resume --------------------------------------------------------------


def _drive(cb: Monitor, state: TrainState, key: str, values: Values, start: int) -> list[int]:
    better = []
    for epoch, v in enumerate(values, start=start):
        state.epoch = epoch
        before = cb.best_epoch
        cb.on_epoch_end(state, {} if v is None else {key: v})
        if cb.best_epoch != before:
            better.append(epoch)
    return better


@pytest.mark.parametrize("make", [
    lambda d: Monitor("auto", min_delta=0.05),
    lambda d: EarlyStopping("auto", min_delta=0.05, patience=100, restore_best=False),
    lambda d: Checkpoint(d, min_delta=0.05),
])  # fmt: skip
def test_state_round_trip_continues_identically(
    make_state: MakeState, tmp_path: Path, make: Callable[[Path], Monitor]
) -> None:
    values = [1.0, 0.9, 0.88, 0.7, 0.72, 0.6, 0.58, 0.5]
    keys = frozenset({"loss", "val_loss"})
    ref = make(tmp_path)
    ref.on_fit_start(make_state(keys=keys))
    ref_better = _drive(ref, make_state(keys=keys), "val_loss", values, 1)

    first = make(tmp_path)
    first.on_fit_start(make_state(keys=keys))
    head = _drive(first, make_state(keys=keys), "val_loss", values[:4], 1)
    saved = first.state_dict()
    assert saved["monitor"] == "val_loss"  # the resolved key, as Checkpoint always saved it

    second = make(tmp_path)
    second.load_state_dict(saved)
    resumed = make_state(keys=keys)
    resumed.epoch = 4  # a resumed fit: on_fit_start keeps the loaded state
    second.on_fit_start(resumed)
    tail = _drive(second, resumed, "val_loss", values[4:], 5)
    assert head + tail == ref_better == [1, 2, 4, 6, 8]
    assert second.state_dict() == ref.state_dict()
    assert (second.monitor, second.key) == ("auto", "val_loss")


def test_checkpoints_older_state_loads(make_state: MakeState, tmp_path: Path) -> None:
    # Checkpoint's state before Monitor: NaN for "no best yet", the resolved key as "monitor".
    ck = Checkpoint(tmp_path)
    ck.load_state_dict({"best": math.nan, "best_epoch": None, "monitor": "val_loss"})
    state = make_state(keys=frozenset({"loss"}))  # the saved key wins on a resume
    state.epoch = 2
    ck.on_fit_start(state)
    assert ck.key == "val_loss" and ck.best == math.inf
    state.epoch = 3
    ck.on_epoch_end(state, {"val_loss": 5.0})
    assert (ck.best, ck.best_epoch) == (5.0, 3)


def test_early_stoppings_older_state_loads(make_state: MakeState) -> None:
    # EarlyStopping's state before Monitor had no "monitor": the argument is the key.
    es = EarlyStopping("val_accuracy", patience=2, restore_best=False)
    es.load_state_dict({"best": 0.8, "best_epoch": 2, "wait": 1, "checks": [0.7, 0.8, 0.75],
                        "stopped_epoch": None, "best_weights": None})  # fmt: skip
    state = make_state()
    state.epoch = 3
    es.on_fit_start(state)
    assert (es.key, es.resolved_mode) == ("val_accuracy", "max")
    state.epoch = 4
    es.on_epoch_end(state, {"val_accuracy": 0.79})
    assert state.stop_requested and es.wait == 2 and es.best_epoch == 2


def test_fit_checkpoint_holds_the_monitor_state(tmp_path: Path) -> None:
    result = _fit_with([EarlyStopping(patience=100), Checkpoint(tmp_path)])
    saved = load_checkpoint(result.checkpoints["last"])
    es_state, ck_state = (c["state"] for c in saved["callbacks"])
    assert es_state["monitor"] == ck_state["monitor"] == "val_loss"
    assert ck_state["best_epoch"] == es_state["best_epoch"] == result.best_epoch


# --- arguments -------------------------------------------------------------------------------


def test_bad_monitor_settings_are_listed_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="3 problems") as info:
        Checkpoint(tmp_path, every=0, mode="up", min_delta=-0.1)  # type: ignore[arg-type]
    text = str(info.value)
    for name in ("every", "mode", "min_delta"):
        assert f"checkpoint.{name} must be" in text
    with pytest.raises(ConfigError, match=r"monitor\.min_delta must be >= 0; got nan"):
        Monitor(min_delta=math.nan)
