"""Schedules driven by the loop: per step or per epoch, the lr used recorded at every step."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from skier.config import ScheduleConfig
from skier.errors import ConfigError
from skier.optim.schedules import lr_curve
from skier.train import fit

CPU = {"device": "cpu", "progress": "off"}
Data = tuple[torch.Tensor, torch.Tensor]


@pytest.mark.parametrize(
    "schedule",
    [
        {"name": "one_cycle", "max_lr": 0.1},
        {"name": "cyclical", "base_lr": 0.001, "max_lr": 0.05, "step_size_up": 4},
        {"name": "cosine_restarts", "restart_epochs": 2},
        {"name": "cosine", "warmup_epochs": 1},
        {"name": "multistep", "milestones": [1, 3]},
    ],
)
def test_lr_recorded_every_step_equals_the_planned_curve(
    make_mlp: Any, clf_data: Data, schedule: dict[str, Any]
) -> None:
    # 240 examples, batch 50 -> 5 steps per epoch (the last one of 40).
    result = fit(make_mlp(seed=1), clf_data, optimizer="sgd", lr=0.05, batch_size=50,
                 epochs=4, schedule=schedule, **CPU)  # fmt: skip
    planned = lr_curve(ScheduleConfig(**schedule), lr=0.05, epochs=4, steps_per_epoch=5)
    used = result.history.steps["lr"]
    assert len(used) == 20
    assert all(
        math.isclose(a, b, rel_tol=0, abs_tol=1e-12) for a, b in zip(used, planned.lrs, strict=True)
    )
    # the per-epoch column is the lr at the start of each epoch
    assert result.history.column("lr") == [used[i * 5] for i in range(4)]


def test_plateau_lowers_the_lr_when_validation_stalls(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    result = fit(make_mlp(seed=2), clf_data, clf_val, optimizer="sgd", lr=0.5, batch_size=60,
                 epochs=12, schedule={"name": "plateau", "patience": 0, "factor": 0.5,
                                      "threshold": 0.5}, **CPU)  # fmt: skip
    lrs = result.history.column("lr")
    assert lrs[0] == 0.5 and lrs[-1] < 0.5
    assert all(b <= a for a, b in itertools.pairwise(lrs))


def test_plateau_monitor_must_be_a_logged_key(make_mlp: Any, clf_data: Data) -> None:
    with pytest.raises(ConfigError, match=r"schedule\.monitor must be a key .*got 'val_loss'"):
        fit(make_mlp(), clf_data, epochs=1, schedule={"name": "plateau"}, **CPU)


def test_per_step_lr_series_survives_a_resume(
    make_mlp: Any, clf_data: Data, tmp_path: Any, interrupt_at: Any
) -> None:
    import contextlib

    from skier.train import Checkpoint

    kw = {"optimizer": "sgd", "lr": 0.05, "batch_size": 50, "epochs": 4,
          "schedule": {"name": "one_cycle"}, **CPU}  # fmt: skip
    whole = fit(make_mlp(seed=1), clf_data, callbacks=[Checkpoint(tmp_path / "a")], **kw)
    with contextlib.suppress(KeyboardInterrupt):
        fit(
            make_mlp(seed=1),
            clf_data,
            callbacks=[Checkpoint(tmp_path / "b"), interrupt_at(3)],
            **kw,
        )
    resumed = fit(make_mlp(seed=1), clf_data, callbacks=[Checkpoint(tmp_path / "b")],
                  resume=tmp_path / "b" / "last.pt", **kw)  # fmt: skip
    assert len(resumed.history.steps["lr"]) == 20
    assert resumed.history.steps["lr"] == whole.history.steps["lr"]
