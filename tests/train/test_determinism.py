"""train.deterministic: torch's deterministic algorithms while training, without its filling of
uninitialized memory, which changes no bit of training (tested here) and costs time."""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.deterministic

from skier.train import Callback, TrainState, fit

Data = tuple[torch.Tensor, torch.Tensor]


def _fill() -> bool:
    return bool(getattr(torch.utils.deterministic, "fill_uninitialized_memory"))  # noqa: B009


class _Fill(Callback):
    """Notes the fill setting while training; ``turn_on``: fills memory from the start."""

    def __init__(self, turn_on: bool = False) -> None:
        self.turn_on, self.seen = turn_on, []

    def on_fit_start(self, state: TrainState) -> None:
        if self.turn_on:
            setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)  # noqa: B010

    def on_epoch_end(self, state: TrainState, logs: Any) -> None:
        self.seen.append((torch.are_deterministic_algorithms_enabled(), _fill()))


def _train(make_mlp: Any, data: Data, callback: _Fill, **kw: Any) -> torch.nn.Module:
    model = make_mlp(seed=2, dropout=0.2)
    fit(model, data, epochs=2, batch_size=16, lr=1e-2, seed=3, callbacks=[callback], **kw)
    return model


def test_deterministic_training_fills_no_memory_and_restores_the_setting(
    make_mlp: Any, clf_data: Data
) -> None:
    assert _fill() and not torch.are_deterministic_algorithms_enabled()
    off = _Fill()
    _train(make_mlp, clf_data, off)
    assert off.seen == [(True, False)] * 2
    assert _fill() and not torch.are_deterministic_algorithms_enabled()  # the caller's again
    untouched = _Fill()
    _train(make_mlp, clf_data, untouched, deterministic=False)
    assert untouched.seen == [(False, True)] * 2


def test_filling_uninitialized_memory_changes_no_bit(make_mlp: Any, clf_data: Data) -> None:
    filled = _Fill(turn_on=True)
    with_fill = _train(make_mlp, clf_data, filled)
    assert filled.seen == [(True, True)] * 2
    without = _train(make_mlp, clf_data, _Fill())
    for p, q in zip(with_fill.parameters(), without.parameters(), strict=True):
        assert torch.equal(p, q)
