"""Exact resume from a checkpoint, and the checkpoint file's safety checks."""

from __future__ import annotations

import io
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.errors import CheckpointError
from skier.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    FitResult,
    TrainState,
    fit,
    load_checkpoint,
    save_checkpoint,
)

Data = tuple[torch.Tensor, torch.Tensor]


class InterruptOnce(Callback):
    """Raise KeyboardInterrupt at the end of ``at_epoch`` (None: never), like a Ctrl-C."""

    def __init__(self, at_epoch: int | None = None) -> None:
        self.at_epoch = at_epoch

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if state.epoch == self.at_epoch:
            raise KeyboardInterrupt


SETTINGS: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 32,
    "lr": 0.05,
    "momentum": 0.9,
    "seed": 7,
    "device": "cpu",
}


def _callbacks(directory: Path, interrupt_at: int | None = None) -> list[Callback]:
    return [
        # restore_best off: the final weights must be the last epoch's, not a restored copy
        EarlyStopping(patience=50, restore_best=False),
        Checkpoint(directory, every=1),
        InterruptOnce(interrupt_at),
    ]


def _fit(
    model: nn.Module, data: Data, val: Data, callbacks: list[Callback], **kw: Any
) -> FitResult:
    return fit(
        model, data, val, optimizer="sgd", schedule="cosine", callbacks=callbacks, **SETTINGS, **kw
    )


def _rows(result: FitResult) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in result.history.rows]


@pytest.fixture(scope="module")
def _interrupted_run(
    tmp_path_factory: pytest.TempPathFactory, make_mlp: Any, clf_data: Data, clf_val: Data
) -> Path:
    directory = tmp_path_factory.mktemp("interrupted")
    model = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    with pytest.raises(KeyboardInterrupt):
        _fit(model, clf_data, clf_val, _callbacks(directory, interrupt_at=4))
    return directory


@pytest.fixture
def interrupted(tmp_path: Path, _interrupted_run: Path) -> Path:
    """A run stopped by KeyboardInterrupt at epoch 4's end: last.pt holds epoch 3 (a copy)."""
    directory = tmp_path / "interrupted"
    shutil.copytree(_interrupted_run, directory)
    assert load_checkpoint(directory / "last.pt")["epoch"] == 3
    return directory


def test_resume_is_exact(
    tmp_path: Path, interrupted: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    full_model = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    full = _fit(full_model, clf_data, clf_val, _callbacks(tmp_path / "full"))

    resumed_model = make_mlp(seed=99, dropout=0.3, batch_norm=True)  # weights come from the file
    resumed = _fit(
        resumed_model,
        clf_data,
        clf_val,
        _callbacks(interrupted),
        resume=interrupted / "last.pt",
    )
    assert resumed.epochs_done == full.epochs_done == 6
    full_sd, resumed_sd = full_model.state_dict(), resumed_model.state_dict()
    assert full_sd.keys() == resumed_sd.keys()
    for key in full_sd:
        assert torch.equal(full_sd[key], resumed_sd[key]), key
    assert _rows(resumed) == _rows(full)
    assert [r["epoch"] for r in _rows(resumed)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert resumed.restored == full.restored
    assert resumed.best_epoch == full.best_epoch
    # the final checkpoints hold the same training state too
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert a["step"] == b["step"] == 6 * 8
    assert a["callbacks"][0]["state"]["checks"] == b["callbacks"][0]["state"]["checks"]


def test_resume_without_rng_restore_would_differ(
    tmp_path: Path, interrupted: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    # Guard against a vacuous exact-resume test: continuing from the epoch-3 weights with fresh
    # RNG streams (a new run seeded differently) must not reproduce the full run.
    full_model = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    _fit(full_model, clf_data, clf_val, _callbacks(tmp_path / "full"))
    state = load_checkpoint(interrupted / "last.pt")
    state["rng"]["shuffle"] = torch.Generator().manual_seed(12345).get_state()
    state["rng"]["torch"] = torch.Generator().manual_seed(54321).get_state()
    save_checkpoint(tmp_path / "other.pt", state)
    other = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    _fit(other, clf_data, clf_val, _callbacks(tmp_path / "o"), resume=tmp_path / "other.pt")
    assert not all(
        torch.equal(a, b)
        for a, b in zip(full_model.state_dict().values(), other.state_dict().values(), strict=True)
    )


def test_resume_with_other_callbacks_is_refused_before_touching_the_model(
    interrupted: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=5, dropout=0.3, batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="callbacks must match"):
        _fit(
            model,
            clf_data,
            clf_val,
            [
                Checkpoint(interrupted),
                EarlyStopping(patience=50, restore_best=False),
                InterruptOnce(),
            ],
            resume=interrupted / "last.pt",
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_into_a_model_of_another_shape(
    interrupted: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=5, hidden=24, dropout=0.3, batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not match this model"):
        _fit(model, clf_data, clf_val, _callbacks(interrupted), resume=interrupted / "last.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_with_another_optimizer_is_refused(
    interrupted: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    model = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    settings = {k: v for k, v in SETTINGS.items() if k != "momentum"}  # adam takes none
    with pytest.raises(CheckpointError, match="optimizer"):
        fit(
            model,
            clf_data,
            clf_val,
            optimizer="adam",
            schedule="cosine",
            callbacks=_callbacks(interrupted),
            resume=interrupted / "last.pt",
            **settings,
        )


def test_missing_checkpoint(tmp_path: Path, make_mlp: Any, clf_data: Data) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        fit(make_mlp(), clf_data, epochs=1, device="cpu", resume=tmp_path / "nope.pt")


def _flip(path: Path, at: float) -> None:
    raw = bytearray(path.read_bytes())
    i = int(len(raw) * at)
    for j in range(i, i + 16):
        raw[j] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("at", [0.3, 0.5, 0.7])
def test_flipped_bytes_are_detected(interrupted: Path, at: float) -> None:
    path = interrupted / "last.pt"
    _flip(path, at)
    with pytest.raises(CheckpointError, match=r"corrupt|could not be read"):
        load_checkpoint(path)


def test_flipped_payload_bytes_fail_the_checksum(tmp_path: Path) -> None:
    # rebuild the outer file by hand so that only the payload changes, not the zip around it
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"epoch": 3, "w": torch.arange(1000.0)})
    outer = torch.load(path, weights_only=True)
    payload = bytearray(outer["payload"])
    payload[len(payload) // 2] ^= 0x01
    outer["payload"] = bytes(payload)
    torch.save(outer, path)
    with pytest.raises(CheckpointError, match="corrupt: its checksum does not match"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_file(interrupted: Path, keep: float) -> None:
    path = interrupted / "last.pt"
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(CheckpointError, match=r"corrupt|could not be read"):
        load_checkpoint(path)


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled arbitrary code",))


def test_arbitrary_pickled_object_fails_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"skier_checkpoint": 1, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="could not be read safely"):
        load_checkpoint(path)
    assert "unpickled" not in capsys.readouterr().out


def test_arbitrary_object_inside_a_valid_envelope_fails_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    buffer = io.BytesIO()
    torch.save({"model": Evil()}, buffer)
    payload = buffer.getvalue()
    path = tmp_path / "evil.pt"
    envelope = {
        "skier_checkpoint": 1,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": payload,
    }
    torch.save(envelope, path)
    with pytest.raises(CheckpointError, match="could not be read safely"):
        load_checkpoint(path)
    assert "unpickled" not in capsys.readouterr().out


def test_plain_pickle_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=r"could not be read safely|not a skier checkpoint"):
        load_checkpoint(path)


def test_state_dict_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 1).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a skier checkpoint"):
        load_checkpoint(path)


def test_a_format_1_checkpoint_still_loads(tmp_path: Path) -> None:
    # Format 1 held the payload as bytes (slow to pickle); files written by it must still resume.
    import hashlib

    state = {"epoch": 4, "w": torch.arange(10.0)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path = tmp_path / "old.pt"
    envelope = {"skier_checkpoint": 1, "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": payload}  # fmt: skip
    torch.save(envelope, path)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 4 and torch.equal(loaded["w"], state["w"])


def test_the_payload_is_stored_as_a_tensor(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "new.pt", {"epoch": 1, "w": torch.ones(3)})
    outer = torch.load(path, weights_only=True)
    assert outer["skier_checkpoint"] == 2 and outer["payload"].dtype == torch.uint8
    assert load_checkpoint(path)["epoch"] == 1
