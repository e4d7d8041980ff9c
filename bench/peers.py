"""The peers of the suite: the same workload, data and torch model trained by PyTorch Lightning,
skorch, Keras 3 (torch backend, the model wrapped by ``TorchModuleWrapper``) and fastai.

Run by ``suite.py --child`` inside the environment ``setup_peers.sh`` makes (never skier's own).
Each peer runs twice: ``lean`` turns its overhead-relevant extras off (progress output, logging,
checkpoints, model summaries, metrics), ``defaults`` runs it as a user would (its own progress
output, logger and checkpoints where it has them, an accuracy metric where it asks for one).

Every peer trains the same training split with Adam at lr 1e-3 and the workload's batch size. With
``defaults`` every peer is also given the same validation split, which each then evaluates every
epoch, as skier's ``defaults`` does (skorch's own hold-out is replaced by that split, so all train
the same examples); ``lean`` validates nothing, except fastai, whose ``fit`` always validates. An
epoch's time is the wall time from one epoch's start to the next one's (the last: to the end of
training), so whatever a peer does between epochs — checkpoints, logs, validation — is counted.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

PEERS = ("lightning", "skorch", "keras", "fastai")
MODES = ("lean", "defaults")

# (model, x, y, x_val, y_val, batch, epochs, lr) -> (epoch times, per-epoch losses or [])
Trainer = Callable[..., tuple[list[float], list[float]]]


def _epoch_times(marks: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(marks)]


def lightning(model: Any, x: Any, y: Any, x_val: Any, y_val: Any, batch: int, epochs: int,
              lr: float, defaults: bool) -> tuple[list[float], list[float]]:  # fmt: skip
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def training_step(self, batch: Any, _index: int) -> Any:
            xb, yb = batch
            loss = F.cross_entropy(self.net(xb), yb)
            if defaults:  # what the Lightning docs' first example does
                self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch: Any, _index: int) -> None:
            xb, yb = batch
            out = self.net(xb)
            self.log("val_loss", F.cross_entropy(out, yb), prog_bar=True)
            self.log("val_acc", (out.argmax(1) == yb).float().mean(), prog_bar=True)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=lr)

    marks: list[float] = []

    class Clock(L.Callback):
        def on_train_epoch_start(self, *_: Any) -> None:
            marks.append(time.perf_counter())

        def on_train_end(self, *_: Any) -> None:
            marks.append(time.perf_counter())

    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    with tempfile.TemporaryDirectory() as root:
        options: dict[str, Any] = {"default_root_dir": root}
        if not defaults:
            options |= {
                "enable_progress_bar": False, "enable_checkpointing": False, "logger": False,
                "enable_model_summary": False,
            }  # fmt: skip
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[Clock()],
                            **options)  # fmt: skip
        val = DataLoader(TensorDataset(x_val, y_val), batch_size=batch) if defaults else None
        trainer.fit(Module(), loader, val)
    return _epoch_times(marks), []


def skorch(model: Any, x: Any, y: Any, x_val: Any, y_val: Any, batch: int, epochs: int,
           lr: float, defaults: bool) -> tuple[list[float], list[float]]:  # fmt: skip
    import torch
    from skorch import NeuralNetClassifier
    from skorch.callbacks import Callback
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    marks: list[float] = []

    class Clock(Callback):
        def on_epoch_begin(self, *_: Any, **__: Any) -> None:
            marks.append(time.perf_counter())

        def on_train_end(self, *_: Any, **__: Any) -> None:
            marks.append(time.perf_counter())

    net = NeuralNetClassifier(
        model, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=lr,
        batch_size=batch, max_epochs=epochs, iterator_train__shuffle=True,
        train_split=predefined_split(Dataset(x_val, y_val)) if defaults else None,
        callbacks=[("clock", Clock())], verbose=1 if defaults else 0, device="cpu",
    )  # fmt: skip
    if not defaults:  # skorch's own callbacks off: epoch timer, loss scoring, printed log
        net.initialize()
        net.set_params(**{f"callbacks__{name}": None for name, _ in net.get_default_callbacks()})
    net.fit(x, y)
    losses = [float(h["train_loss"]) for h in net.history if "train_loss" in h]
    return _epoch_times(marks), losses


def keras(model: Any, x: Any, y: Any, x_val: Any, y_val: Any, batch: int, epochs: int,
          lr: float, defaults: bool) -> tuple[list[float], list[float]]:  # fmt: skip
    os.environ["KERAS_BACKEND"] = "torch"
    import keras as K

    marks: list[float] = []

    class Clock(K.callbacks.Callback):
        def on_epoch_begin(self, *_: Any, **__: Any) -> None:
            marks.append(time.perf_counter())

        def on_train_end(self, *_: Any, **__: Any) -> None:
            marks.append(time.perf_counter())

    inputs = K.Input(shape=tuple(x.shape[1:]))
    layer = K.layers.TorchModuleWrapper(model, output_shape=(None, int(y.max()) + 1))
    wrapped = K.Model(inputs, layer(inputs))
    wrapped.compile(
        optimizer=K.optimizers.Adam(learning_rate=lr),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"] if defaults else None,
    )
    validation = (x_val.numpy(), y_val.numpy()) if defaults else None
    history = wrapped.fit(x.numpy(), y.numpy(), batch_size=batch, epochs=epochs, shuffle=True,
                          validation_data=validation, verbose="auto" if defaults else 0,
                          callbacks=[Clock()])  # fmt: skip
    return _epoch_times(marks), [float(v) for v in history.history["loss"]]


def fastai(model: Any, x: Any, y: Any, x_val: Any, y_val: Any, batch: int, epochs: int,
           lr: float, defaults: bool) -> tuple[list[float], list[float]]:  # fmt: skip
    import contextlib

    import fastai.callback.progress  # noqa: F401 - the progress bar a user gets (and no_bar)
    import torch.nn.functional as F
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam
    from torch.utils.data import TensorDataset

    marks: list[float] = []

    class Clock(Callback):  # type: ignore[misc]
        def before_epoch(self) -> None:
            marks.append(time.perf_counter())

        def after_fit(self) -> None:
            marks.append(time.perf_counter())

    dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x_val, y_val), bs=batch,
                                 device="cpu")  # fmt: skip
    learn = Learner(dls, model, loss_func=F.cross_entropy, opt_func=Adam, lr=lr, cbs=[Clock()],
                    metrics=[accuracy] if defaults else [])  # fmt: skip
    quiet = contextlib.ExitStack()
    if not defaults:
        quiet.enter_context(learn.no_bar())
        quiet.enter_context(learn.no_logging())
    with quiet:
        learn.fit(epochs, lr)
    losses = [float(row[0]) for row in learn.recorder.values]
    return _epoch_times(marks), losses


def train(peer: str, mode: str, **workload: Any) -> tuple[list[float], list[float]]:
    """Train ``workload`` with ``peer`` in ``mode``; (epoch times, per-epoch training losses)."""
    trainer: Trainer = {"lightning": lightning, "skorch": skorch, "keras": keras,
                        "fastai": fastai}[peer]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each peer's advice (workers, logging) is not a result
        return trainer(**workload, defaults=mode == "defaults")
