"""Time-throttled checkpoints (``Checkpoint(every_s=...)``): which epochs reach the disk, that
the best epoch is never lost, that a failure writes the held position, and that a resume from a
throttled checkpoint is exact. Time is a fake clock moved by a callback, so the test does not
depend on the machine's speed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import skier.train.checkpoint as checkpoint_module
from skier.errors import ConfigError
from skier.train import Callback, Checkpoint, FitResult, TrainState, fit, load_checkpoint

Data = tuple[torch.Tensor, torch.Tensor]
SETTINGS: dict[str, Any] = {"epochs": 10, "batch_size": 32, "lr": 0.05, "seed": 3, "device": "cpu"}


class Clock(Callback):
    """A fake clock that moves ``step`` seconds at the end of every epoch (before the
    checkpoint callback looks at it); raises ``error`` at the end of epoch ``fail_at``."""

    stateful = False

    def __init__(self, step: float, fail_at: int | None = None, error: type = RuntimeError):
        self.now, self.step, self.fail_at, self.error = 0.0, step, fail_at, error
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self) -> float:
        return self.now

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self.now += self.step
        self.weights[state.epoch] = {
            k: v.detach().clone() for k, v in state.measured_model().state_dict().items()
        }
        if state.epoch == self.fail_at:
            raise self.error("stopped by the test")


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The epoch of every checkpoint encoded (the real encoder, watched)."""
    epochs: list[int] = []
    real = checkpoint_module.encode_checkpoint

    def watched(state: dict[str, Any]) -> bytes:
        epochs.append(int(state["epoch"]))
        return real(state)

    monkeypatch.setattr(checkpoint_module, "encode_checkpoint", watched)
    return epochs


def _fit(
    model: nn.Module,
    data: Data,
    val: Data,
    directory: Path,
    clock: Clock,
    every_s: float,
    **kw: Any,
) -> FitResult:
    ckpt = Checkpoint(directory, every=1, every_s=every_s, clock=clock)
    return fit(model, data, val, callbacks=[clock, ckpt], **{**SETTINGS, **kw})


def test_epochs_faster_than_every_s_are_written_every_every_s_and_at_the_end(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data, encoded: list[int]
) -> None:
    clock = Clock(step=3.0)  # 3 s an epoch, a checkpoint at most every 10 s
    result = _fit(make_mlp(seed=1), clf_data, clf_val, tmp_path, clock, every_s=10.0)
    last_epochs = sorted(set(encoded))
    # 12 s (epoch 4), 24 s (8), then the last epoch; best.pt's epochs go with them
    assert {4, 8, 10} <= set(last_epochs)
    assert all(e in (4, 8, 10) or e == result.best_epoch for e in last_epochs)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 10


def test_every_s_zero_writes_every_epoch(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data, encoded: list[int]
) -> None:
    _fit(make_mlp(seed=1), clf_data, clf_val, tmp_path, Clock(step=0.001), every_s=0.0)
    assert sorted(set(encoded)) == list(range(1, 11))


def test_the_best_epoch_is_held_until_written_and_never_lost(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    clock = Clock(step=1.0)  # nothing is due before the end: every best epoch is held
    result = _fit(make_mlp(seed=1), clf_data, clf_val, tmp_path, clock, every_s=1e6, lr=0.5)
    history = result.history.column("val_loss")
    best_epoch = 1 + min(range(len(history)), key=history.__getitem__)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == best_epoch
    for key, tensor in clock.weights[best_epoch].items():
        assert torch.equal(best["model"][key], tensor), key


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_writes_the_held_position_and_a_resume_from_it_is_exact(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data, error: type
) -> None:
    full_model = make_mlp(seed=1, dropout=0.3)
    full = _fit(full_model, clf_data, clf_val, tmp_path / "full", Clock(step=3.0), every_s=10.0)

    failed = tmp_path / "failed"
    with pytest.raises(error, match="stopped by the test"):
        # epoch 4 was written (12 s), 5 and 6 held; epoch 7 fails before its checkpoint
        _fit(make_mlp(seed=1, dropout=0.3), clf_data, clf_val, failed,
             Clock(step=3.0, fail_at=7, error=error), every_s=10.0)  # fmt: skip
    saved = load_checkpoint(failed / "last.pt")
    assert saved["epoch"] == 6  # the last finished epoch, as with a checkpoint every epoch

    resumed_model = make_mlp(seed=5, dropout=0.3)  # the weights come from the file
    resumed = _fit(resumed_model, clf_data, clf_val, failed, Clock(step=3.0), every_s=10.0,
                   resume=failed / "last.pt")  # fmt: skip
    drop = ("epoch_time",)
    rows = [[(k, v) for k, v in r.items() if k not in drop] for r in resumed.history.rows]
    assert rows == [[(k, v) for k, v in r.items() if k not in drop] for r in full.history.rows]
    for key, tensor in full_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], tensor), key


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "10"])
def test_every_s_must_be_a_number_of_seconds(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"checkpoint\.every_s must be a number of seconds >= 0"):
        Checkpoint(tmp_path, every_s=bad)


def test_a_history_view_holds_the_past_while_training_appends() -> None:
    from skier.history import History

    history = History()
    history.append({"epoch": 1.0, "loss": 0.5})
    history.add_step("lr", 0.1)
    then = history.to_dict()
    view = history.at_now()
    history.append({"epoch": 2.0, "loss": float("nan")})
    history.add_step("lr", 0.05)
    history.add_step("grad_norm", 1.0)
    assert view.to_dict() == then
