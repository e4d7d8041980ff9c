"""Data-parallel training on 2 gloo processes (CPU), against the single-process run.

Each test spawns two processes with torch.multiprocessing (a file rendezvous in tmp_path); a
worker writes what it saw with torch.save and the test compares.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from skier.errors import ConfigError
from skier.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    TrainState,
    check_fit,
    fit,
    load_checkpoint,
)
from skier.train.distributed import (
    Distributed,
    LaunchInfo,
    ShardedBatches,
    check_settings,
    distributed_session,
    shard_bounds,
)
from skier.train.group import ProcessGroup

WORLD = 2
D = 12


def _data(n: int, seed: int, *, regression: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(D, 3, generator=torch.Generator().manual_seed(1))
    x = torch.randn(n, D, generator=g)
    if regression:
        return x, (x @ teacher[:, :2]) + 0.1 * torch.randn(n, 2, generator=g)
    return x, (x @ teacher).argmax(dim=1)


def _model(seed: int, out: int = 3, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(D, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(16, out))


# Each case: data (n, regression), fit settings. Batch sizes are chosen so that the ranks'
# shares differ (51 → 26 + 25), and so that the last batch is a single example (an empty share).
CASES: dict[str, dict[str, Any]] = {
    "mean_l2_clip_uneven": {
        "n": 230, "regression": False,
        "fit": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 51, "l2": 1e-3,
                "grad_clip": 1.0, "schedule": "cosine", "epochs": 4,
                "metrics": ["f1_macro", "auroc", "top_2_accuracy"]},
    },
    "regression_mean_empty_share": {
        "n": 100, "regression": True,
        "fit": {"optimizer": "adam", "lr": 0.01, "batch_size": 33, "epochs": 3,
                "metrics": ["r2", "mae"]},
    },
    "sum_exact_train_error": {
        "n": 160, "regression": False,
        "fit": {"optimizer": "sgd", "lr": 0.002, "batch_size": 40, "reduction": "sum",
                "exact_train_error": True, "sampling": "balanced", "epochs": 3,
                "metrics": ["balanced_accuracy"]},
    },
}  # fmt: skip


def _fit_case(name: str, group: Distributed | None) -> tuple[list[dict[str, float]], Any]:
    case = CASES[name]
    data = _data(case["n"], 2, regression=case["regression"])
    val = _data(45, 3, regression=case["regression"])
    model = _model(0, out=2 if case["regression"] else 3)
    result = fit(model, data, val, test=val, seed=5, device="cpu", progress="off",
                 distributed=group, **case["fit"])  # fmt: skip
    rows = [{k: v for k, v in r.items() if k != "epoch_time"} for r in result.history.rows]
    rows.append(result.test_metrics)
    return rows, {k: v.clone() for k, v in model.state_dict().items()}


def _spawn(worker: Callable[..., None], tmp_path: Path, *args: Any) -> None:
    init = tmp_path / f"rendezvous-{worker.__name__}"  # a fresh file store per job
    mp.start_processes(
        worker, args=(str(init), str(tmp_path), *args), nprocs=WORLD, start_method="spawn"
    )


def _session(rank: int, init: str) -> Any:
    torch.set_num_threads(1)  # two processes on two cores
    return distributed_session(
        LaunchInfo(rank, WORLD, init_method=f"file://{init}", timeout_s=60), "cpu"
    )


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two jobs of 2 ranks: one SIGKILLed at epoch 3, then one that runs every case, an
    uninterrupted run and the resume of the killed one (one job: each start costs seconds)."""
    out = tmp_path_factory.mktemp("ddp")
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        _spawn(_killed_worker, out)
    _spawn(_main_worker, out)
    return out


@pytest.mark.slow
def test_two_ranks_match_one_process_and_each_other(two_ranks: Path) -> None:
    ranks = [torch.load(two_ranks / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for name in CASES:
        rows, weights = _fit_case(name, None)
        dist_rows, dist_weights = ranks[0][name]
        assert len(dist_rows) == len(rows), name
        for single, multi in zip(rows, dist_rows, strict=True):
            assert single.keys() == multi.keys(), name
            for key in single:
                assert _close(single[key], multi[key]), (name, key, single[key], multi[key])
        for key, w in weights.items():  # the same weights, up to float32 summation order
            torch.testing.assert_close(dist_weights[key], w, rtol=1e-4, atol=1e-5)
        for key, w in dist_weights.items():  # ranks end bit-identical
            assert torch.equal(ranks[1][name][1][key], w), (name, key)
        assert ranks[1][name][0] == dist_rows, name  # and log the same all-reduced metrics


@pytest.mark.slow
def test_distributed_metrics_equal_sklearn_on_the_final_model(two_ranks: Path) -> None:
    # train.metrics under DDP: each rank scores its share, rank 0 merges the states.
    from sklearn import metrics as skm

    rows, weights = torch.load(two_ranks / "rank0.pt", weights_only=False)["mean_l2_clip_uneven"]
    model = _model(0)
    model.load_state_dict(weights)
    x, y = _data(45, 3)  # the test split (= val) of every case
    with torch.no_grad():
        proba = model(x).softmax(dim=1)
    test = rows[-1]
    assert test["test_f1_macro"] == pytest.approx(
        skm.f1_score(y, proba.argmax(1), average="macro"), rel=1e-6
    )
    assert test["test_auroc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr"), rel=1e-6
    )
    assert test["test_top_2_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, proba, k=2), rel=1e-6
    )
    assert all("val_f1_macro" in r for r in rows[:-1])


class _TwoRanks(ProcessGroup):
    world_size = 2  # only what set-up asks before training: no process is started


def test_a_metric_object_is_refused_in_a_distributed_run() -> None:
    class Running:
        def update(self, out: torch.Tensor, y: torch.Tensor) -> None: ...

        def compute(self) -> float:
            return 0.0

    x, y = _data(40, 0)
    with pytest.raises(ConfigError, match=r"train\.metrics must be built-in names or plain "):
        check_fit(_model(0), (x, y), (x, y), metrics=["f1_macro", Running()], device="cpu",
                  distributed=_TwoRanks())  # fmt: skip


class _KillAt(Callback):
    """SIGKILL this process at the end of ``epoch`` (before that epoch's checkpoint)."""

    stateful = False

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if state.epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def _resume_fit(group: Distributed, directory: Path, extra: list[Callback], resume: Any) -> Any:
    data, val = _data(200, 2), _data(45, 3)
    callbacks = [EarlyStopping(patience=50, restore_best=False), Checkpoint(directory), *extra]
    settings: dict[str, Any] = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 5,
                                "batch_size": 32, "seed": 7, "schedule": "cosine"}  # fmt: skip
    return fit(_model(1, dropout=0.3), data, val, device="cpu", progress="off",
               callbacks=callbacks, distributed=group, resume=resume, **settings)  # fmt: skip


def _killed_worker(rank: int, init: str, out: str) -> None:
    with _session(rank, init) as group:
        _resume_fit(group, Path(out) / "killed", [_KillAt(3)], None)


def _loggers(out: Path) -> list[Callback]:
    """TensorBoard into one folder and MLflow into one store, which both ranks are given:
    rank 0 alone may write."""
    import importlib.util

    loggers: list[Callback] = []
    if importlib.util.find_spec("tensorboard") is not None:
        from skier.train import TensorBoardLogger

        loggers.append(TensorBoardLogger(out / "tb", flush_every_s=0.0))
    if importlib.util.find_spec("mlflow") is not None:
        from skier.train import MLflowLogger

        loggers.append(MLflowLogger(f"sqlite:///{out / 'mlflow.db'}", flush_every_s=0.0,
                                    position_file=out / "mlflow.json", log_steps=True))  # fmt: skip
    return loggers


def _main_worker(rank: int, init: str, out: str) -> None:
    with _session(rank, init) as group:
        results = {name: _fit_case(name, group) for name in CASES}
        full = _resume_fit(group, Path(out) / "full", _loggers(Path(out)), None)
        resumed = _resume_fit(group, Path(out) / "killed", [], Path(out) / "killed" / "last.pt")
    torch.save(results, Path(out) / f"rank{rank}.pt")
    rows = [
        [{k: v for k, v in r.items() if k != "epoch_time"} for r in res.history.rows]
        for res in (full, resumed)
    ]
    torch.save(rows, Path(out) / f"rows{rank}.pt")


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(two_ranks: Path) -> None:
    saved = load_checkpoint(two_ranks / "full" / "last.pt")
    assert saved["world_size"] == WORLD and len(saved["rng_ranks"]) == WORLD
    for rank in range(WORLD):
        full, resumed = torch.load(two_ranks / f"rows{rank}.pt", weights_only=False)
        assert len(full) == 5
        assert resumed == full  # bit-identical: each rank's RNG (dropout) restored


def test_shard_bounds_cover_every_example_once() -> None:
    for n in (0, 1, 5, 51, 100):
        for world in (1, 2, 3, 7):
            parts = [shard_bounds(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1


def test_sharded_batches_split_the_same_permutation() -> None:
    from skier.data.types import Split
    from skier.train.batches import TensorBatches

    x, y = torch.arange(11.0).unsqueeze(1), torch.arange(11)
    seen = []
    for rank in range(WORLD):
        source = TensorBatches(Split((x,), y), 4, generator=torch.Generator().manual_seed(3))
        shard = ShardedBatches(source, rank, WORLD, reduction="mean")
        seen.append([(b[1].tolist(), shard.data_scale) for b in shard])
    whole = [b[1].tolist() for b in TensorBatches(
        Split((x,), y), 4, generator=torch.Generator().manual_seed(3))]  # fmt: skip
    assert [a + b for (a, _), (b, _) in zip(seen[0], seen[1], strict=True)] == whole
    assert [s for _, s in seen[0]] == [0.5, 0.5, 2 / 3]  # world / global batch size


def test_settings_a_distributed_run_cannot_take_are_listed() -> None:
    problems = check_settings(world_size=4, sampling="informative", batch_size=2,
                              device="cuda:1", in_memory=False, line_search=True)  # fmt: skip
    assert len(problems) == 5
    assert any(p.startswith("train.batch_size must be at least the number") for p in problems)
    with pytest.raises(ConfigError, match="rank must be in"):
        from skier.train.distributed import init_distributed

        init_distributed(LaunchInfo(rank=2, world_size=2), "cpu")


def test_a_single_process_fit_never_starts_a_process_group() -> None:
    import torch.distributed as dist

    fit(_model(0), _data(40, 2), epochs=1, batch_size=8, device="cpu", progress="off")
    assert not dist.is_initialized()


@pytest.mark.slow
def test_rank_zero_alone_logs_to_a_tracker(two_ranks: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list((two_ranks / "tb").glob("events.out.tfevents.*"))) == 1  # one writer
    acc = EventAccumulator(str(two_ranks / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    full, _ = torch.load(two_ranks / "rows0.pt", weights_only=False)
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2, 3, 4, 5]  # each epoch once
    assert [e.value for e in acc.Scalars("loss/val")] == pytest.approx(
        [r["val_loss"] for r in full], rel=1e-6
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MLflow's SQL store, read back
def test_rank_zero_alone_logs_to_mlflow(two_ranks: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{two_ranks / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("skier")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])  # one run: rank 1 made none
    assert run.info.status == "FINISHED"
    full, _ = torch.load(two_ranks / "rows0.pt", weights_only=False)
    for key in ("loss", "val_loss", "val_accuracy"):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in points] == [1, 2, 3, 4, 5], key  # each epoch once
        assert [v for _, v in points] == pytest.approx([r[key] for r in full], rel=1e-6), key
    lr_steps = [m.step for m in client.get_metric_history(run.info.run_id, "lr_step")]
    assert sorted(lr_steps) == list(range(1, len(lr_steps) + 1))  # every optimizer step once
    assert len(lr_steps) == 5 * -(-200 // 32)  # 5 epochs of 200 examples in global batches of 32
