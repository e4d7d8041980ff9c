"""Training on CUDA against the CPU: float32, float16 with the gradient scaler, bfloat16 autocast,
and checkpoints carried from the GPU to the CPU and back.

Every run is digits with the W3 model (MLP 64-128-10, Adam 1e-3, batch 64, 20 epochs, seed 0):
on the CPU its test accuracy is about 0.97 (``tests/train/test_amp.py`` measured bf16 there).
``train.compile`` on CUDA (inductor, Triton kernels) is checked against the CPU run too, with its
checkpoint resumed without compile on the CPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.data import DataBundle
from skier.train import Checkpoint, FitResult, fit, load_checkpoint

from .conftest import digits_mlp

pytestmark = pytest.mark.cuda

SETTINGS: dict[str, Any] = {"epochs": 20, "batch_size": 64, "lr": 1e-3, "seed": 0,
                            "progress": "off"}  # fmt: skip
MARGIN = 0.02  # test accuracy, CUDA against the CPU: 7 of digits' 360 test examples
MIXED_MARGIN = 0.03  # float16 / bfloat16 against the CPU's float32


def _fit(data: DataBundle, device: str, **extra: Any) -> tuple[FitResult, nn.Module, set[Any]]:
    """A fit on ``device``; the dtypes the first layer's outputs had while training."""
    model = digits_mlp(data)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    seen: set[Any] = set()
    first.register_forward_hook(lambda _m, _i, out: seen.add((out.dtype, out.device.type)))
    result = fit(model, data, device=device, **{**SETTINGS, **extra})
    return result, model, seen


def _finite(result: FitResult) -> bool:
    return all(math.isfinite(v) for row in result.history.rows for v in row.values())


@pytest.fixture(scope="module")
def cpu_run(digits: DataBundle) -> FitResult:
    return _fit(digits, "cpu")[0]


def test_training_on_cuda_matches_the_cpu(digits: DataBundle, cpu_run: FitResult) -> None:
    result, model, seen = _fit(digits, "cuda")
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert (torch.float32, "cuda") in seen and _finite(result)
    cpu, gpu = cpu_run.test_metrics["test_accuracy"], result.test_metrics["test_accuracy"]
    assert cpu > 0.93 and abs(gpu - cpu) <= MARGIN, (cpu, gpu)
    # float32 on both: the same run up to summation order
    assert result.history.rows[-1]["loss"] == pytest.approx(cpu_run.history.rows[-1]["loss"],
                                                            rel=0.1)  # fmt: skip


def test_fp16_with_the_grad_scaler_reaches_the_cpu_accuracy(
    digits: DataBundle, cpu_run: FitResult, tmp_path: Path
) -> None:
    result, _, seen = _fit(digits, "cuda", amp=True, callbacks=[Checkpoint(tmp_path)])
    assert (torch.float16, "cuda") in seen and _finite(result)
    scaler = load_checkpoint(tmp_path / "last.pt")["scaler"]  # the scaler ran and was saved
    assert scaler is not None and math.isfinite(scaler["scale"]) and scaler["scale"] > 0
    cpu, gpu = cpu_run.test_metrics["test_accuracy"], result.test_metrics["test_accuracy"]
    assert gpu >= cpu - MIXED_MARGIN, (cpu, gpu)


def test_bf16_autocast_on_cuda_reaches_the_cpu_accuracy(
    digits: DataBundle, cpu_run: FitResult, tmp_path: Path
) -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 (train.amp: 'bf16' is refused on it)")
    result, _, seen = _fit(digits, "cuda", amp="bf16", callbacks=[Checkpoint(tmp_path)])
    assert (torch.bfloat16, "cuda") in seen and _finite(result)
    assert load_checkpoint(tmp_path / "last.pt")["scaler"] is None  # bfloat16 needs no scaling
    cpu, gpu = cpu_run.test_metrics["test_accuracy"], result.test_metrics["test_accuracy"]
    assert gpu >= cpu - MIXED_MARGIN, (cpu, gpu)


def test_checkpoints_move_from_the_gpu_to_the_cpu_and_back(
    digits: DataBundle, tmp_path: Path
) -> None:
    steps = math.ceil(len(digits.train) / SETTINGS["batch_size"])
    short = {**SETTINGS, "epochs": 3}
    gpu_dir, cpu_dir, back_dir = tmp_path / "gpu", tmp_path / "cpu", tmp_path / "back"
    # 1. three epochs on the GPU with AMP (float16: the scaler's state is saved too)
    first = fit(digits_mlp(digits), digits, device="cuda", amp=True,
                callbacks=[Checkpoint(gpu_dir)], **short)  # fmt: skip
    saved = load_checkpoint(gpu_dir / "last.pt")
    assert (saved["epoch"], saved["step"]) == (3, 3 * steps)
    assert saved["scaler"] is not None
    assert all(t.device.type == "cpu" for t in saved["model"].values())  # loads on any machine
    # 2. on the CPU, two more epochs from there (no AMP: the scaler's state is not needed)
    model = digits_mlp(digits, seed=1)  # other initial weights: the checkpoint's must win
    on_cpu = fit(model, digits, device="cpu", callbacks=[Checkpoint(cpu_dir)],
                 resume=gpu_dir / "last.pt", **{**SETTINGS, "epochs": 5})  # fmt: skip
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert on_cpu.history.rows[:3] == first.history.rows  # the GPU's epochs, as recorded
    assert [r["epoch"] for r in on_cpu.history.rows] == [1, 2, 3, 4, 5] and _finite(on_cpu)
    # it went on from epoch 3's weights: epoch 4 trains better than a fresh epoch 1
    assert on_cpu.history.rows[3]["loss"] < 0.7 * first.history.rows[0]["loss"]
    moved = load_checkpoint(cpu_dir / "last.pt")
    assert (moved["epoch"], moved["step"]) == (5, 5 * steps)
    # 3. back on the GPU, with AMP again (a fresh scaler: the CPU's checkpoint has none)
    model = digits_mlp(digits, seed=2)
    back = fit(model, digits, device="cuda", amp=True, callbacks=[Checkpoint(back_dir)],
               resume=cpu_dir / "last.pt", **{**SETTINGS, "epochs": 7})  # fmt: skip
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert back.history.rows[:5] == on_cpu.history.rows and _finite(back)
    end = load_checkpoint(back_dir / "last.pt")
    assert (end["epoch"], end["step"]) == (7, 7 * steps)
    assert back.test_metrics["test_accuracy"] > 0.9


# torch's inductor imports torch.utils.mkldnn, whose torch.jit.script_method warns (torch's own)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_on_cuda_matches_the_cpu_and_resumes_without_it(
    digits: DataBundle, cpu_run: FitResult, tmp_path: Path
) -> None:
    result, model, _ = _fit(digits, "cuda", compile=True, callbacks=[Checkpoint(tmp_path)])
    assert result.model is model and not hasattr(model, "_orig_mod")  # the plain module back
    assert _finite(result)
    cpu, gpu = cpu_run.test_metrics["test_accuracy"], result.test_metrics["test_accuracy"]
    assert cpu > 0.93 and abs(gpu - cpu) <= MARGIN, (cpu, gpu)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert not any("_orig_mod" in k for k in saved["model"])  # the module's own state_dict
    # resumed on the CPU without compile: the weights load, and two more epochs train
    again = fit(digits_mlp(digits, seed=1), digits, device="cpu", resume=tmp_path / "last.pt",
                callbacks=[Checkpoint(tmp_path / "cpu")], **{**SETTINGS, "epochs": 22})  # fmt: skip
    assert again.history.rows[:20] == result.history.rows and _finite(again)
