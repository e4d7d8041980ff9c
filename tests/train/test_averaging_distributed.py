"""EMA and SWA on 2 gloo processes (CPU): every rank holds the same average, and it is the
single-process run's (no batch norm); with batch norm the ranks still agree exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from skier.train import fit

D = 12
CASES: dict[str, dict[str, Any]] = {
    "ema": {"ema": 0.9},
    "swa": {"swa_start": 2, "swa_lr": 0.05, "average_select": "average"},
}
SETTINGS: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 4, "batch_size": 51, "seed": 5,
    "device": "cpu", "progress": "off",
}  # fmt: skip


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(D, 3, generator=torch.Generator().manual_seed(1))
    x = torch.randn(n, D, generator=g)
    return x, (x @ teacher).argmax(dim=1)


def _model(batch_norm: bool) -> nn.Module:
    torch.manual_seed(0)
    norm: list[nn.Module] = [nn.BatchNorm1d(16)] if batch_norm else []
    return nn.Sequential(nn.Linear(D, 16), *norm, nn.ReLU(), nn.Linear(16, 3))


def _run(case: str, batch_norm: bool, group: Any = None) -> dict[str, Any]:
    model = _model(batch_norm)
    val = _data(45, 3)
    result = fit(model, _data(230, 2), val, test=val, distributed=group, **SETTINGS,
                 **CASES[case])  # fmt: skip
    assert result.averaged_model is not None
    tag = "ema" if case == "ema" else "swa"
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "average": {k: v.clone() for k, v in result.averaged_model.state_dict().items()},
        "val": result.history.column(f"val_{tag}_loss"),
        "test": result.test_metrics[f"test_{tag}_loss"],
    }


def _worker(rank: int, init: str, out: str) -> None:
    from skier.train.distributed import LaunchInfo, distributed_session

    torch.set_num_threads(1)  # two processes on two cores
    launch = LaunchInfo(rank, 2, init_method=f"file://{init}", timeout_s=60)
    found = {}
    with distributed_session(launch, "cpu") as group:
        for case in CASES:
            for batch_norm in (False, True):
                found[case, batch_norm] = _run(case, batch_norm, group)
    torch.save(found, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_ranks_average_like_one_process_and_like_each_other(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2,
                       start_method="spawn")  # fmt: skip
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for key, found in ranks[0].items():
        other = ranks[1][key]
        for part in ("weights", "average"):  # bit for bit the same on both ranks
            for name, value in found[part].items():
                assert torch.equal(other[part][name], value), (key, part, name)
        assert torch.equal(
            torch.tensor(other["val"]).nan_to_num(-1.0), torch.tensor(found["val"]).nan_to_num(-1.0)
        )  # nan: SWA not begun
        assert other["test"] == found["test"]
    for case in CASES:  # without batch norm: the single-process run's average
        alone, ddp = _run(case, batch_norm=False), ranks[0][case, False]
        for part in ("weights", "average"):
            for name, value in alone[part].items():
                torch.testing.assert_close(ddp[part][name], value, rtol=1e-4, atol=1e-5,
                                           msg=f"{case} {part} {name}")  # fmt: skip
        assert ddp["val"] == pytest.approx(alone["val"], rel=1e-4, nan_ok=True)
        assert ddp["test"] == pytest.approx(alone["test"], rel=1e-4)
