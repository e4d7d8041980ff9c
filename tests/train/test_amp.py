"""``train.amp`` on the CPU: bfloat16 autocast (what ``true`` means there), measured against
float32 on digits; float16 refused with one line naming the field; the default path untouched."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skier.config import DataConfig, ModelConfig, config_from_mapping
from skier.data import DataBundle, load_data
from skier.errors import ConfigError
from skier.models import build_model
from skier.train import Checkpoint, fit
from skier.train.device import amp_dtype, amp_problems
from skier.train.step import OptimizerStep

QUIET: dict[str, Any] = {"device": "cpu", "progress": "off"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two threads contend (several-fold slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_data(DataConfig(name="digits"))


def _mlp(data: DataBundle, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(hidden_sizes=[128])
    return build_model(config, input_shape=data.input_shape, output_size=data.output_size)


class _Dtypes:
    """The dtypes of a module's outputs, as a forward hook sees them."""

    def __init__(self, module: nn.Module) -> None:
        self.seen: set[torch.dtype] = set()
        module.register_forward_hook(lambda _m, _i, out: self.seen.add(out.dtype))


def test_bf16_on_the_cpu_reaches_the_float32_accuracy_on_digits(digits: DataBundle) -> None:
    # Measured (3 seeds, 20 epochs, Adam 1e-3, batch 64): the same test accuracy to the example
    # (0.969, 0.969, 0.964 both ways), test losses within 1e-3. The margin asserted: 0.02.
    settings: dict[str, Any] = {"epochs": 20, "batch_size": 64, "lr": 1e-3, "seed": 0, **QUIET}
    full = fit(_mlp(digits), digits, **settings)
    model = _mlp(digits)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    dtypes = _Dtypes(first)
    mixed = fit(model, digits, amp=True, **settings)
    assert torch.bfloat16 in dtypes.seen  # autocast ran: not silently ignored
    assert torch.float32 in dtypes.seen  # evaluation stays in full precision
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    a, b = full.test_metrics["test_accuracy"], mixed.test_metrics["test_accuracy"]
    assert a > 0.93 and b > 0.93
    assert abs(a - b) <= 0.02, (a, b)
    assert abs(full.test_metrics["test_loss"] - mixed.test_metrics["test_loss"]) < 0.05


def test_bf16_is_what_true_means_on_the_cpu_and_the_default_is_full_precision(
    digits: DataBundle,
) -> None:
    cpu = torch.device("cpu")
    assert amp_dtype(True, cpu) == amp_dtype("bf16", cpu) == torch.bfloat16
    assert amp_dtype(False, cpu) is None
    model = _mlp(digits)
    dtypes = _Dtypes(next(m for m in model.modules() if isinstance(m, nn.Linear)))
    fit(model, digits, epochs=1, **QUIET)  # train.amp defaults to false
    assert dtypes.seen == {torch.float32}
    step = OptimizerStep(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    assert step.autocast_dtype is None and step.scaler is None


def test_bf16_regression_trains_like_float32() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = x @ torch.randn(8, 2, generator=g) + 0.05 * torch.randn(400, 2, generator=g)
    losses = []
    for amp in (False, "bf16"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
        result = fit(model, (x, y), (x, y), epochs=30, lr=1e-2, batch_size=50, amp=amp, **QUIET)
        losses.append(result.history.rows[-1]["val_loss"])
    assert losses[0] < 0.05 and abs(losses[0] - losses[1]) < 0.02, losses


def test_fp16_on_the_cpu_is_one_line_naming_the_field(digits: DataBundle) -> None:
    model = _mlp(digits)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=r"^train\.amp must be true, 'bf16' or false on the "
                       r"CPU; got 'fp16'\. .*use 'bf16'") as caught:  # fmt: skip
        fit(model, digits, amp="fp16", epochs=1, **QUIET)
    assert len(caught.value.problems) == 1 and "\n" not in str(caught.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_bad_amp_value_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"train\.amp must be true, false, 'fp16' or 'bf16'; "
                       r"got 'fp32'\.") as caught:  # fmt: skip
        config_from_mapping({"train": {"amp": "fp32"}}, "cfg.yaml")
    assert len(caught.value.problems) == 1
    assert config_from_mapping({"train": {"amp": "bf16"}}).train.amp == "bf16"
    assert config_from_mapping({"train": {"amp": True}}).train.amp is True


def test_amp_off_the_cpu_and_cuda_is_refused() -> None:
    (line,) = amp_problems(True, torch.device("mps"))
    assert line.startswith("train.amp must be false on mps; got True.")
    assert amp_problems(False, torch.device("mps")) == []


@pytest.mark.parametrize("amp", [True, "bf16"])
def test_bf16_with_a_closure_optimizer_stays_refused(amp: Any) -> None:
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    shown = "true" if amp is True else "'bf16'"
    with pytest.raises(ConfigError, match=rf"train\.amp must be false .*LBFGS.*got {shown}\."):
        fit(nn.Linear(4, 2), (x, y), optimizer="lbfgs", amp=amp, epochs=1, **QUIET)
    with pytest.raises(ConfigError, match=r"train\.amp must be false .*SAM"):
        fit(nn.Linear(4, 2), (x, y), optimizer="sgd", sam=0.05, amp=amp, epochs=1, **QUIET)


def test_bf16_resume_on_the_cpu_is_exact(digits: DataBundle, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"epochs": 4, "batch_size": 64, "seed": 3, "amp": True, **QUIET}
    full = fit(_mlp(digits), digits, callbacks=[Checkpoint(tmp_path / "a")], **settings)
    short = {**settings, "epochs": 2}
    fit(_mlp(digits), digits, callbacks=[Checkpoint(tmp_path / "b")], **short)
    resumed = fit(_mlp(digits), digits, callbacks=[Checkpoint(tmp_path / "b")],
                  resume=tmp_path / "b" / "last.pt", **settings)  # fmt: skip
    drop = "epoch_time"
    rows = [[{k: v for k, v in r.items() if k != drop} for r in f.history.rows]
            for f in (full, resumed)]  # fmt: skip
    assert rows[0] == rows[1]


@pytest.mark.parametrize("parts", [1, 2])
def test_the_float16_scaler_step_of_cuda_runs_on_the_cpu_like_float32(parts: int) -> None:
    # The CUDA AMP step (autocast float16, GradScaler: scale → backward → unscale → clip → step
    # → update) on the CPU's own float16 autocast and scaler: the step mechanics are checked here,
    # without a GPU. Clipping scaled gradients (unscale after clip) would shrink every update by
    # the scale (4096): the weights would not follow float32's.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = x[:, :3].argmax(dim=1)
    torch.manual_seed(0)
    start = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    weights, scales = {}, {}
    for name in ("float32", "float16"):
        model = copy.deepcopy(start)
        dtypes = _Dtypes(model[0])
        amp: dict[str, Any] = {}
        if name == "float16":
            scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
            amp = {"scaler": scaler, "autocast_dtype": torch.float16}
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = OptimizerStep(opt, model.parameters(), grad_clip=0.5, device_type="cpu", **amp)
        for lo in range(0, 256, 32):
            halves = [(x[a : a + 32 // parts], y[a : a + 32 // parts])
                      for a in range(lo, lo + 32, 32 // parts)]  # fmt: skip
            step.accumulate([lambda a=a, b=b, m=model: (F.cross_entropy(m(a), b) / parts, None)
                             for a, b in halves])  # fmt: skip
        assert dtypes.seen == {getattr(torch, name)}
        weights[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
        scales[name] = step.scaler.get_scale() if step.scaler is not None else None
    moved = (weights["float32"] - torch.cat([p.flatten() for p in start.parameters()])).abs()
    assert moved.max() > 0.03
    torch.testing.assert_close(weights["float16"], weights["float32"], atol=1e-3, rtol=0)
    assert scales["float16"] == 2.0**12  # no overflow: no step skipped
