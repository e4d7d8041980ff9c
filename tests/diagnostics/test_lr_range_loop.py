"""lr_range_test's loop against a hand-written one: the same batches, lrs and losses, bit for
bit, and the caller's model as it was afterwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skier.config import LRFindConfig, OptimConfig
from skier.diagnostics import _lr_batches
from skier.diagnostics._lr_batches import seeded_batches
from skier.diagnostics.lr_range import lr_ramp, lr_range_test
from skier.optim import build_optimizer

N, D, CLASSES = 100, 7, 3  # 7 features: batches that do not start on aligned addresses


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g)
    return x, (x @ torch.randn(D, CLASSES, generator=g)).argmax(dim=1)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, CLASSES))


def _hand_written(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: LRFindConfig, size: int, seed: int
) -> tuple[list[float], list[float]]:
    """The test as one would write it: a seeded randperm an epoch (the remainder skipped), each
    batch indexed on its own, the lr set, zero_grad → forward → loss → backward → step."""
    opt = build_optimizer(model.parameters(), OptimConfig(name="adam", lr=settings.start_lr))
    torch.manual_seed(seed)  # dropout's draws, as the test seeds them
    generator = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    lrs, losses = [], []
    model.train()
    for lr in lr_ramp(settings):
        if not batches:
            order = torch.randperm(len(y), generator=generator)
            batches = [order[s : s + size] for s in range(0, len(y) - size + 1, size)]
        index = batches.pop(0)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        opt.step()
        lrs.append(lr)
        losses.append(loss.item())
    return lrs, losses


@pytest.mark.parametrize("chunk_bytes", [None, 1, 3 * 12 * (D * 4 + 8) + 5])
@pytest.mark.parametrize("size", [12, 25])
def test_the_curve_is_the_hand_written_loops_bit_for_bit(
    size: int, chunk_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunks of one batch, of three (epochs of 8 or 4 batches end mid-chunk), of a whole epoch
    if chunk_bytes is not None:
        monkeypatch.setattr(_lr_batches, "CHUNK_BYTES", chunk_bytes)
    x, y = _data()
    settings = LRFindConfig(start_lr=1e-4, end_lr=0.05, num_steps=30)
    train = {"batch_size": size, "seed": 3}
    result = lr_range_test(
        _net(), (x, y), optim_config={"name": "adam"}, train_config=train, settings=settings
    )
    lrs, losses = _hand_written(_net(), x, y, settings, size, seed=3)
    assert not result.diverged
    assert result.lrs == lrs
    assert result.losses == losses


def test_seeded_batches_are_the_indexed_batches_in_order() -> None:
    x, y = _data()
    for chunk_bytes in (1, 100, 1000, None):
        got = list(seeded_batches((x, y), 16, torch.Generator().manual_seed(7), 20, chunk_bytes))
        generator = torch.Generator().manual_seed(7)
        want = []
        while len(want) < 20:  # 6 batches of 16 an epoch, the 4 left over skipped
            order = torch.randperm(N, generator=generator)
            want += [order[s : s + 16] for s in range(0, N - 15, 16)]
        assert len(got) == 20
        for (bx, by), index in zip(got, want[:20], strict=True):
            assert torch.equal(bx, x[index]) and torch.equal(by, y[index])


def test_a_built_optimizer_leaves_model_grads_flags_and_rng_as_they_were() -> None:
    model = _net()
    x, y = _data()
    F.cross_entropy(model(x), y).backward()  # gradients present
    model[2].eval()  # a mixed set of train/eval flags
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    result = lr_range_test(model, (x, y), optim_config={"name": "adam"},
                           settings={"end_lr": 10.0, "num_steps": 40})  # fmt: skip
    assert len(result.lrs) > 5  # it trained (and the weights moved) before restoring
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    after = [p.grad for p in model.parameters()]
    assert len(after) == len(grads) and all(
        g is not None and torch.equal(g, h) for g, h in zip(after, grads, strict=True)
    )
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
