"""A train.metrics key is monitorable everywhere: early stopping, checkpoint best, plateau
schedules, the config's pre-flight check, ``skier tune --objective`` and ``skier runs --sort``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skier.config import RunConfig, ScheduleConfig
from skier.config.search import TuneConfig
from skier.errors import ConfigError
from skier.history import higher_is_better
from skier.optim.schedules import build_schedule
from skier.runner.preflight import check_run_config
from skier.runner.tune import _check_objective
from skier.train.callbacks import Checkpoint
from skier.train.loop import fit


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=g)
    return x, (x[:, 0] + 0.5 * torch.randn(120, generator=g) > 0).long()


def test_checkpoint_best_follows_a_metric_that_is_maximised(tmp_path: Path) -> None:
    x, y = _data()
    torch.manual_seed(0)
    best = Checkpoint(tmp_path, monitor="val_auroc")
    result = fit(torch.nn.Linear(4, 2), (x, y), (x, y), epochs=6, lr=0.05, progress="off",
                 metrics=["auroc"], callbacks=[best])  # fmt: skip
    values = result.history.column("val_auroc")
    assert result.monitor == "val_auroc"
    assert result.best_value == max(values)
    assert result.best_epoch == values.index(max(values)) + 1


def test_a_plateau_schedule_on_a_metric_maximises_it() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    for monitor, mode in (("val_f1_macro", "max"), ("val_rmse", "min")):
        cfg = ScheduleConfig(name="plateau", monitor=monitor)
        schedule = build_schedule(opt, cfg, epochs=3, steps_per_epoch=1)
        assert schedule.scheduler.mode == mode  # type: ignore[attr-defined]
    x, y = _data()
    fit(torch.nn.Linear(4, 2), (x, y), (x, y), epochs=2, progress="off", metrics=["f1"],
        schedule={"name": "plateau", "monitor": "val_f1"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"schedule\.monitor .*Valid keys: .*val_f1"):
        fit(torch.nn.Linear(4, 2), (x, y), (x, y), epochs=2, progress="off", metrics=["f1"],
            schedule={"name": "plateau", "monitor": "val_f2"})  # fmt: skip


def test_the_config_preflight_knows_the_metrics() -> None:
    raw = {"train": {"metrics": ["f1_macro"]},
           "early_stopping": {"enabled": True, "monitor": "val_f1_macro"}}  # fmt: skip
    assert check_run_config(raw).train.metrics == ["f1_macro"]
    raw["train"] = {"metrics": []}
    with pytest.raises(ConfigError, match="val_f1_macro"):
        check_run_config(raw)


def test_tune_objective_and_runs_sort_accept_a_metric() -> None:
    config = RunConfig.model_validate({"train": {"metrics": ["balanced_accuracy", "r2"]}})
    _check_objective(TuneConfig(objective="val_balanced_accuracy"), "classification", config)
    with pytest.raises(ConfigError, match=r"--objective must be .*val_balanced_accuracy.*got"):
        _check_objective(TuneConfig(objective="val_auroc"), "classification", config)
    assert higher_is_better("val_balanced_accuracy") and higher_is_better("val_r2")
    assert not higher_is_better("val_mae") and not higher_is_better("val_hamming_loss")
