"""The evaluation pass's per-batch sums against torch's own losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from skier.train.metrics import batch_sums


@pytest.mark.parametrize("classes", [3, 10, 16, 40])
def test_summed_cross_entropy_is_torchs(classes: int) -> None:
    # Fewer than 16 classes on the CPU are padded with -inf columns (a faster kernel); the
    # losses must stay torch's, ignored targets included.
    g = torch.Generator().manual_seed(classes)
    out = 4 * torch.randn(900, classes, generator=g)
    y = torch.randint(0, classes, (900,), generator=g)
    y[::7] = -100
    loss, wrong = batch_sums(out, y, classification=True)
    want = F.cross_entropy(out, y, reduction="sum")
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=0)
    assert int(wrong) == int((out.argmax(1) != y).sum())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("classes", [3, 10, 16])
def test_the_runs_cross_entropy_sums_are_torchs(classes: int, smoothing: float) -> None:
    # The run's built loss (what fit's validation pass and the CLI diagnostics evaluate) takes
    # the same padded kernel where it may (no smoothing, no class weights).
    from skier.train.losses import build_loss

    g = torch.Generator().manual_seed(classes)
    out = 4 * torch.randn(900, classes, generator=g)
    y = torch.randint(0, classes, (900,), generator=g)
    loss = build_loss("cross_entropy", options={"label_smoothing": smoothing})
    total, _ = batch_sums(out, y, classification=True, loss=loss)
    want = F.cross_entropy(out, y, reduction="sum", label_smoothing=smoothing)
    torch.testing.assert_close(total, want, rtol=1e-6, atol=0)
