"""Gradient accumulation (``train.accumulate``): k micro-batches per optimizer step are one step
on the k-times larger batch, whatever the last step's size; what it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from skier.errors import ConfigError
from skier.train import Callback, Checkpoint, FitResult, TrainState, fit
from skier.train.batches import micro_batches
from skier.train.step import OptimizerStep

D = 6


def _data(n: int, *, regression: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(D, 3, generator=torch.Generator().manual_seed(1))
    x = torch.randn(n, D, generator=g)
    if regression:
        return x, x @ teacher[:, :2] + 0.1 * torch.randn(n, 2, generator=g)
    return x, (x @ teacher).argmax(dim=1)


def _net(out: int = 3, *, dropout: float = 0.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(D, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(16, out))


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(
    n: int, batch_size: int, accumulate: int, *, regression: bool = False, **kw: Any
) -> tuple[dict[str, torch.Tensor], FitResult]:
    model = _net(2 if regression else 3)
    settings: dict[str, Any] = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 3,
                                "seed": 3, "device": "cpu", "progress": "off", **kw}  # fmt: skip
    result = fit(model, _data(n, regression=regression), batch_size=batch_size,
                 accumulate=accumulate, **settings)  # fmt: skip
    return _weights(model), result


# Each case: the step of 4 x 8 = 32 examples over 107 (or 90) examples, so every epoch ends on a
# shorter step (11 examples: micro-batches of 3, 3, 3, 2), with the settings it must get right.
CASES: dict[str, dict[str, Any]] = {
    "mean": {},
    "sum": {"reduction": "sum", "lr": 0.002},
    "regression_mean": {"regression": True, "optimizer": "adam", "lr": 0.01, "momentum": None},
    "regression_sum": {"regression": True, "reduction": "sum", "lr": 0.001},
    "informative_weights": {"sampling": "informative"},
    "balanced": {"sampling": "balanced"},
    "l1_l2_penalty": {"l1": 1e-3, "l2": 1e-2},
    "clip_norm": {"grad_clip": 0.05},
    "clip_value": {"grad_clip": 0.01, "grad_clip_mode": "value"},
    "per_step_schedule": {"schedule": "one_cycle"},
    "drop_last": {"drop_last": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_accumulating_k_micro_batches_is_one_step_on_k_times_the_batch(case: str) -> None:
    kw = dict(CASES[case])
    n = 90 if kw.get("regression") else 107
    big_w, big = _train(n, 32, 1, **kw)
    acc_w, acc = _train(n, 8, 4, **kw)
    for key, w in big_w.items():
        torch.testing.assert_close(acc_w[key], w, rtol=1e-5, atol=1e-6, msg=key)
    assert big_w["0.weight"].ne(_net().state_dict()["0.weight"]).any()  # it did train
    for a, b in zip(acc.history.rows, big.history.rows, strict=True):
        for key in ("loss", "error", "penalty", "lr"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5), key
    assert acc.history.steps["lr"] == pytest.approx(big.history.steps["lr"])
    steps = 3 * (n // 32 if kw.get("drop_last") else -(-n // 32))
    assert len(acc.history.steps["lr"]) == steps  # optimizer steps, not micro-batches


def test_the_micro_batches_and_the_step_counter() -> None:
    class Count(Callback):
        def __init__(self) -> None:
            self.calls: list[int] = []

        def on_batch_end(self, state: TrainState) -> None:
            self.calls.append(state.step)

    seen: list[int] = []
    model = _net()
    original = model.forward
    model.forward = lambda x: (seen.append(len(x)), original(x))[1]  # type: ignore[method-assign]
    counter = Count()
    fit(model, _data(107), batch_size=8, accumulate=4, epochs=1, callbacks=[counter],
        device="cpu", progress="off", shuffle=False)  # fmt: skip
    assert seen[-16:] == [8] * 12 + [3, 3, 3, 2]  # (before them: the output-shape probe)
    assert counter.calls == [1, 2, 3, 4]  # once per optimizer step
    x, y = torch.arange(5.0).unsqueeze(1), torch.arange(5)
    assert [len(b[1]) for b in micro_batches(((x,), y, None), 8)] == [1] * 5
    assert [len(b[1]) for b in micro_batches(((x[:0],), y[:0], None), 3)] == [0]


def test_only_the_last_micro_batch_synchronises() -> None:
    entered: list[int] = []

    class Spy:
        def __enter__(self) -> None:
            entered.append(1)

        def __exit__(self, *exc: object) -> None:
            return None

    model = nn.Linear(2, 1)
    step = OptimizerStep(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    x = torch.ones(3, 2)
    forwards = [lambda: (model(x).sum(), None)] * 3
    assert step.accumulate(forwards, no_sync=Spy) == [None] * 3
    assert len(entered) == 2


def test_resume_with_accumulation_is_bit_identical(tmp_path: Path, interrupt_at: Any) -> None:
    settings: dict[str, Any] = {"optimizer": "adam", "lr": 0.01, "batch_size": 8,
                                "accumulate": 3, "seed": 5, "device": "cpu", "progress": "off",
                                "schedule": "one_cycle", "l2": 1e-3, "epochs": 4}  # fmt: skip
    data, val = _data(107), _data(30, seed=4)
    full = _net(dropout=0.2)
    full_result = fit(full, data, val, **settings)
    stop = interrupt_at(3)  # before epoch 3's checkpoint: last.pt holds epoch 2
    with pytest.raises(KeyboardInterrupt):
        fit(_net(dropout=0.2), data, val, callbacks=[Checkpoint(tmp_path), stop], **settings)
    resumed = _net(dropout=0.2, seed=9)
    result = fit(resumed, data, val, resume=tmp_path / "last.pt",
                 callbacks=[Checkpoint(tmp_path)], **settings)  # fmt: skip
    for key, w in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], w), key
    drop = ("epoch_time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in result.history.rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in full_result.history.rows
    ]
    assert result.history.steps["lr"] == full_result.history.steps["lr"]


def test_batch_norm_sees_micro_batches() -> None:
    # Stated, not hidden: batch norm normalizes each micro-batch by its own statistics, so the
    # accumulated step is not the big batch's step (the running statistics differ too).
    def bn_net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    out = []
    for batch_size, accumulate in ((32, 1), (8, 4)):
        model = bn_net()
        fit(model, _data(96), optimizer="sgd", lr=0.1, epochs=1, batch_size=batch_size,
            accumulate=accumulate, device="cpu", progress="off")  # fmt: skip
        out.append(model.state_dict()["1.running_var"])
    assert not torch.allclose(out[0], out[1])


def test_what_accumulation_refuses() -> None:
    x, y = _data(40)
    with pytest.raises(ConfigError, match=r"train.batch_size must be a number with train.acc"):
        fit(_net(), (x, y), batch_size="full", accumulate=2, epochs=1, progress="off")
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.raises(ConfigError, match=r"train.accumulate must be 1 when train is a DataLoader"):
        fit(_net(), loader, accumulate=2, epochs=1, progress="off", task="classification")
    with pytest.raises(ConfigError, match=r"train.accumulate must be"):
        fit(_net(), (x, y), accumulate=0, epochs=1, progress="off")


def test_a_dataset_is_batched_as_the_step_and_cut_into_micro_batches() -> None:
    x, y = _data(64)
    weights = []
    for batch_size, accumulate in ((32, 1), (8, 4)):
        model = _net()
        fit(model, TensorDataset(x, y), batch_size=batch_size, accumulate=accumulate, epochs=2,
            shuffle=False, optimizer="sgd", lr=0.1, device="cpu", progress="off",
            task="classification")  # fmt: skip
        weights.append(_weights(model))
    for key, w in weights[0].items():
        torch.testing.assert_close(weights[1][key], w, rtol=1e-5, atol=1e-6)


def test_lbfgs_with_accumulation_sees_the_whole_step() -> None:
    # The closure runs every micro-batch: L-BFGS's line search sees the whole step's loss. (Few
    # iterations: L-BFGS amplifies float-rounding differences from one iteration to the next.)
    x, y = _data(64)
    weights = []
    for batch_size, accumulate in ((64, 1), (16, 4)):
        model = _net()
        fit(model, (x, y), optimizer="lbfgs", lr=0.5, max_iter=2, epochs=2,
            batch_size=batch_size, accumulate=accumulate, device="cpu", progress="off")  # fmt: skip
        weights.append(_weights(model))
    for key, w in weights[0].items():
        torch.testing.assert_close(weights[1][key], w, rtol=1e-4, atol=1e-5)


# --- data-parallel: 2 gloo processes, against one process ----------------------------------------
_DDP_SETTINGS: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 2, "batch_size": 10,
    "accumulate": 3, "grad_clip": 1.0, "l2": 1e-3, "seed": 3, "device": "cpu", "progress": "off",
}  # fmt: skip


def _ddp_worker(rank: int, init: str, out: str) -> None:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from skier.train.distributed import LaunchInfo, distributed_session

    torch.set_num_threads(1)
    launch = LaunchInfo(rank, 2, init_method=f"file://{init}", timeout_s=60)
    reduces: list[int] = []

    def counting(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations
        reduces.append(1)
        return allreduce_hook(state, bucket)

    with distributed_session(launch, "cpu") as group:
        wrap = group.wrap

        def wrap_counting(model: nn.Module) -> Any:
            ddp = wrap(model)
            ddp.register_comm_hook(None, counting)
            return ddp

        group.wrap = wrap_counting  # type: ignore[method-assign]
        model = _net()
        result = fit(model, _data(107), distributed=group, **_DDP_SETTINGS)
        sam = _net()
        fit(sam, _data(107), distributed=group, **_DDP_SETTINGS, sam=0.1)
    steps = len(result.history.steps["lr"])
    found = (_weights(model), len(reduces), steps, _weights(sam))
    torch.save(found, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_ranks_accumulate_like_one_process_and_all_reduce_once_a_step(tmp_path: Path) -> None:
    # ... and SAM with accumulation on two ranks is SAM on one process (two all-reduces a step).
    import torch.multiprocessing as mp

    mp.start_processes(_ddp_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)),
                       nprocs=2, start_method="spawn")  # fmt: skip
    model, sam = _net(), _net()
    fit(model, _data(107), **_DDP_SETTINGS)
    fit(sam, _data(107), **_DDP_SETTINGS, sam=0.1)  # SAM too: both passes all-reduced
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for weights, reduces, steps, sam_weights in ranks:
        assert steps == 2 * 4  # 107 examples in steps of 30
        # one all-reduce a step (one bucket), none per micro-batch; SAM's steps came after
        assert reduces == steps + 2 * steps
        for key, w in model.state_dict().items():
            torch.testing.assert_close(weights[key], w, rtol=1e-4, atol=1e-5)
        for key, w in sam.state_dict().items():
            torch.testing.assert_close(sam_weights[key], w, rtol=1e-4, atol=1e-5)
    for key, w in ranks[0][0].items():
        assert torch.equal(ranks[1][0][key], w) and torch.equal(ranks[1][3][key], ranks[0][3][key])


@pytest.mark.parametrize("average", [{"ema": 0.9}, {"swa_start": 2}])
def test_weight_averages_follow_optimizer_steps_not_micro_batches(average: dict[str, Any]) -> None:
    # EMA updates once per optimizer step and SWA once per epoch, so accumulating 4 micro-batches
    # of 8 gives the same average as steps of 32.
    _, big = _train(107, 32, 1, **average)
    _, acc = _train(107, 8, 4, **average)
    assert big.averaged_model is not None and acc.averaged_model is not None
    ours, theirs = acc.averaged_model.state_dict(), big.averaged_model.state_dict()
    for key, value in theirs.items():
        if value.is_floating_point():
            torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-6, msg=key)
