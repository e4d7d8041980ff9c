"""Adam and AdamW take torch's fused step by default (one kernel per parameter): it matches the
for-loop step (torch's CPU default, what a hand-written loop gets) within float rounding, and
it is bit-identical from run to run and across a resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.config import OptimConfig
from skier.optim import build_optimizer
from skier.train import Callback, Checkpoint, fit

Data = tuple[torch.Tensor, torch.Tensor]


def _implementation(opt: torch.optim.Optimizer) -> tuple[Any, Any]:
    group = opt.param_groups[0]
    return group["fused"], group["foreach"]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_and_adamw_are_fused_unless_extra_chooses(name: str) -> None:
    params = list(nn.Linear(3, 2).parameters())
    assert _implementation(build_optimizer(params, OptimConfig(name=name))) == (True, None)
    off = OptimConfig(name=name, extra={"fused": False})
    assert _implementation(build_optimizer(params, off)) == (False, None)
    foreach = OptimConfig(name=name, extra={"foreach": True})
    assert _implementation(build_optimizer(params, foreach)) == (None, True)
    groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.1}]  # param groups too
    assert all(g["fused"] for g in build_optimizer(groups, OptimConfig(name=name)).param_groups)


def test_sgd_and_the_scratch_twins_keep_their_steps() -> None:
    params = list(nn.Linear(3, 2).parameters())
    assert not build_optimizer(params, OptimConfig(name="sgd", lr=0.1)).param_groups[0]["fused"]
    scratch = build_optimizer(params, OptimConfig(name="scratch_adam"))
    assert "fused" not in scratch.param_groups[0]


@pytest.mark.parametrize(
    ("name", "settings"),
    [("adam", {}), ("adam", {"weight_decay": 0.01, "amsgrad": True}), ("adamw", {})],
)
def test_the_fused_step_matches_the_for_loop_step(
    name: str, settings: dict[str, Any], make_mlp: Any, clf_data: Data
) -> None:
    x, y = clf_data
    models = [make_mlp(seed=3), make_mlp(seed=3)]
    opts = [
        build_optimizer(models[0].parameters(), OptimConfig(name=name, lr=1e-2, **settings)),
        build_optimizer(
            models[1].parameters(),
            OptimConfig(name=name, lr=1e-2, extra={"fused": False}, **settings),
        ),
    ]
    for step in range(30):
        for model, opt in zip(models, opts, strict=True):
            opt.zero_grad()
            at = slice(8 * step % 240, 8 * step % 240 + 8)
            nn.functional.cross_entropy(model(x[at]), y[at]).backward()
            opt.step()
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    start = make_mlp(seed=3).parameters()
    moved = [(p - q).abs().max() for p, q in zip(models[0].parameters(), start, strict=True)]
    assert max(moved) > 0.05  # the steps moved the weights: the comparison is not vacuous


def _fit_adam(
    model: nn.Module, data: Data, directory: Path, stop: Callback | None = None, **kw: Any
) -> Any:
    callbacks = [Checkpoint(directory, every=1)] + ([stop] if stop else [])
    return fit(model, data, epochs=4, batch_size=32, lr=1e-2, seed=5, callbacks=callbacks, **kw)


def test_fused_adam_reruns_and_resumes_bit_identically(
    tmp_path: Path, make_mlp: Any, clf_data: Data, interrupt_at: Any
) -> None:
    first, again = make_mlp(seed=1, dropout=0.3), make_mlp(seed=1, dropout=0.3)
    _fit_adam(first, clf_data, tmp_path / "a")
    _fit_adam(again, clf_data, tmp_path / "b")
    resumed = make_mlp(seed=9, dropout=0.3)  # its weights come from the checkpoint
    with pytest.raises(KeyboardInterrupt):
        _fit_adam(make_mlp(seed=1, dropout=0.3), clf_data, tmp_path / "c", stop=interrupt_at(3))
    result = _fit_adam(resumed, clf_data, tmp_path / "c", resume=tmp_path / "c" / "last.pt")
    assert result.epochs_done == 4
    for a, b, c in zip(first.parameters(), again.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_a_for_loop_checkpoint_resumes_with_the_for_loop_step() -> None:
    # A checkpoint written before the fused default (or with extra.fused false) keeps its step,
    # so resuming it goes on with the same bits.
    params = list(nn.Linear(3, 2).parameters())
    old = build_optimizer(params, OptimConfig(name="adam", extra={"fused": False}))
    new = build_optimizer(params, OptimConfig(name="adam"))
    new.load_state_dict(old.state_dict())
    assert not new.param_groups[0]["fused"]
