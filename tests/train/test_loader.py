"""A Dataset given to fit: seeded order and examples, worker processes, exact resume."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from skier.errors import ConfigError
from skier.train import Callback, Checkpoint, FitResult, fit, load_checkpoint
from skier.train.loader import LoaderBatches, example_seed

Data = tuple[torch.Tensor, torch.Tensor]

SETTINGS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 32,
    "seed": 7,
    "device": "cpu",
    "progress": "off",
}


class Augmented(Dataset[Any]):
    """Random augmentation inside ``__getitem__`` from all three global RNGs: torch's,
    numpy's and Python's."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.3 * torch.randn(self.x.shape[1])
        scale = 1.0 + 0.2 * float(np.random.rand()) - 0.1 * random.random()
        return self.x[i] * scale + noise, self.y[i]


def _rows(result: FitResult) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in result.history.rows]


def _weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_a_tensor_dataset_trains_exactly_as_its_tensors(
    make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    # Same permutation from the shuffle generator, same dropout draws: bit-identical.
    memory, loaded = make_mlp(seed=1, dropout=0.3), make_mlp(seed=1, dropout=0.3)
    a = fit(memory, clf_data, clf_val, epochs=3, **SETTINGS)
    b = fit(loaded, TensorDataset(*clf_data), clf_val, epochs=3, **SETTINGS)
    assert _rows(a) == _rows(b)
    assert _weights_equal(memory, loaded)


@pytest.mark.parametrize("seed", [7, pytest.param(8, marks=pytest.mark.slow)])
def test_augmented_dataset_is_the_same_with_and_without_workers(
    make_mlp: Any, clf_data: Data, clf_val: Data, seed: int
) -> None:
    settings = {**SETTINGS, "seed": seed}
    results, models = [], []
    for workers in (0, 2):
        model = make_mlp(seed=1, dropout=0.3)
        data = Augmented(*clf_data)
        results.append(fit(model, data, clf_val, epochs=3, num_workers=workers, **settings))
        models.append(model)
    assert _rows(results[0]) == _rows(results[1])
    assert _weights_equal(models[0], models[1])
    # not vacuous: the augmentation changes training, and another seed draws other numbers
    plain = fit(make_mlp(seed=1, dropout=0.3), TensorDataset(*clf_data), clf_val, epochs=3,
                **settings)  # fmt: skip
    other = fit(make_mlp(seed=1, dropout=0.3), Augmented(*clf_data), clf_val, epochs=3,
                num_workers=2, **{**settings, "seed": seed + 100})  # fmt: skip
    assert _rows(plain) != _rows(results[0])
    assert _rows(other)[0]["loss"] != _rows(results[0])[0]["loss"]


def test_each_epoch_reads_an_example_with_other_numbers(clf_data: Data) -> None:
    batches = LoaderBatches(
        Augmented(*clf_data), torch.device("cpu"), batch_size=240, shuffle=False, seed=3
    )
    first, second = (next(iter(batches))[0][0] for _ in range(2))
    assert not torch.equal(first, second)
    assert example_seed(3, 1, 0) != example_seed(3, 2, 0) != example_seed(3, 1, 1)


def test_reading_examples_leaves_the_main_process_rng_alone(clf_data: Data) -> None:
    shuffle = torch.Generator().manual_seed(0)  # fit's own; none would draw from torch's RNG
    batches = LoaderBatches(
        Augmented(*clf_data), torch.device("cpu"), batch_size=50, seed=0, generator=shuffle
    )
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    for _ in batches:
        pass
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all()
    assert random.getstate() == before[2]


def _resumable_fit(
    model: torch.nn.Module, data: Data, val: Data, directory: Path, *more: Callback, **kw: Any
) -> FitResult:
    return fit(
        model, Augmented(*data), val, epochs=5, num_workers=2, schedule="cosine",
        callbacks=[Checkpoint(directory, every=1), *more], **SETTINGS, **kw,
    )  # fmt: skip


def test_resume_with_workers_is_exact(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data, interrupt_at: Any
) -> None:
    full_model = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    full = _resumable_fit(full_model, clf_data, clf_val, tmp_path / "full")

    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _resumable_fit(
            make_mlp(seed=1, dropout=0.3, batch_norm=True), clf_data, clf_val, stopped,
            interrupt_at(3),
        )  # fmt: skip
    saved = load_checkpoint(stopped / "last.pt")
    assert saved["epoch"] == 2 and int(saved["sampler"]["epoch"]) == 2
    kept = tmp_path / "kept"
    shutil.copytree(stopped, kept)

    resumed_model = make_mlp(seed=99, dropout=0.3, batch_norm=True)
    resumed = _resumable_fit(resumed_model, clf_data, clf_val, stopped, resume=stopped / "last.pt")
    assert _rows(resumed) == _rows(full)
    assert _weights_equal(resumed_model, full_model)

    # not vacuous: resuming at the wrong epoch reads other augmentations and differs
    state = load_checkpoint(kept / "last.pt")
    state["sampler"]["epoch"] = torch.tensor(0)
    from skier.train import save_checkpoint

    save_checkpoint(kept / "wrong.pt", state)
    wrong = _resumable_fit(
        make_mlp(seed=1, dropout=0.3, batch_norm=True), clf_data, clf_val, kept,
        resume=kept / "wrong.pt",
    )  # fmt: skip
    assert _rows(wrong)[2:] != _rows(full)[2:]


@pytest.mark.parametrize(
    ("train", "settings", "match"),
    [
        ("memory", {"num_workers": 2}, "train.num_workers must be 0 when train is in-memory data"),
        ("loader", {"num_workers": 2}, "train.num_workers must be 0 when train is a DataLoader"),
        ("loader", {"prefetch_factor": 4}, "train.prefetch_factor must be null when train is a"),
        ("dataset", {"prefetch_factor": 4}, "train.prefetch_factor must be null when train.num_"),
    ],
)
def test_loader_settings_that_cannot_apply_are_refused(
    make_mlp: Any, clf_data: Data, train: str, settings: dict[str, Any], match: str
) -> None:
    data: Any = {
        "memory": clf_data,
        "dataset": TensorDataset(*clf_data),
        "loader": DataLoader(TensorDataset(*clf_data), batch_size=16),
    }[train]
    with pytest.raises(ConfigError, match=match):
        fit(make_mlp(), data, epochs=1, device="cpu", **settings)


def test_prefetch_and_pinning_settings_train(make_mlp: Any, clf_data: Data) -> None:
    result = fit(make_mlp(), Augmented(*clf_data), epochs=2, num_workers=2, prefetch_factor=3,
                 persistent_workers=False, pin_memory=False, **SETTINGS)  # fmt: skip
    assert result.epochs_done == 2


def test_the_loader_skier_builds_takes_the_settings(clf_data: Data) -> None:
    # Built only (nothing is read): pinning follows the device; workers persist and read ahead.
    def loader(device: str, **kw: Any) -> DataLoader[Any]:
        return LoaderBatches(TensorDataset(*clf_data), torch.device(device), **kw).loader

    assert loader("cpu").pin_memory is False and loader("cuda").pin_memory is True
    assert loader("cuda", pin_memory=False).pin_memory is False
    two = loader("cpu", num_workers=2, prefetch_factor=4)
    assert (two.num_workers, two.persistent_workers, two.prefetch_factor) == (2, True, 4)
    assert loader("cpu", num_workers=2, persistent_workers=False).persistent_workers is False
    assert loader("cpu").persistent_workers is False  # no workers to keep
