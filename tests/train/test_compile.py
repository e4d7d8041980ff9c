"""``train.compile``: torch.compile of the module that trains, on the CPU (inductor, g++).

The compiled runs are slow (torch.compile takes seconds on 2 cores), so they are marked slow;
the refusals are fast. Oracle: the same run uncompiled, and torch.load of the checkpoint file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.config import TrainConfig
from skier.errors import ConfigError
from skier.train import Checkpoint, fit, load_checkpoint
from skier.train.compiled import compile_mode, compile_module, uncompiled

Data = tuple[torch.Tensor, torch.Tensor]
SETTINGS: dict[str, Any] = {
    "epochs": 4, "batch_size": 40, "lr": 0.01, "seed": 3, "device": "cpu", "progress": "off",
}  # fmt: skip


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


def test_compile_values_are_checked() -> None:
    assert TrainConfig(compile="max-autotune").compile == "max-autotune"
    with pytest.raises(ConfigError, match=r"train\.compile.*'default', 'reduce-overhead'"):
        fit(_model(), (torch.randn(8, 12), torch.zeros(8, dtype=torch.long)), compile="fast")
    assert compile_mode(True) == "default" and compile_mode(False) is None


def test_no_cxx_compiler_is_one_line_naming_train_compile(clf_data: Data) -> None:
    import torch._inductor.config as inductor

    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    message = r"^train\.compile must be false on the CPU without a C\+\+ compiler"
    with (
        inductor.patch({"cpp.cxx": ("skier-test-no-such-compiler++",)}),
        pytest.raises(ConfigError, match=message) as caught,
    ):
        fit(model, clf_data, **{**SETTINGS, "compile": True})
    assert "\n" not in str(caught.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # unchanged


def test_off_leaves_the_module_as_it_is() -> None:
    model = _model()
    assert compile_module(model, False) is model
    assert uncompiled(model) is model


# torch's inductor imports torch.utils.mkldnn, whose torch.jit.script_method warns (torch's own)
TORCH_OWN = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCH_OWN)
def test_compiled_run_matches_and_checkpoints_resume_both_ways(
    clf_data: Data, clf_val: Data, tmp_path: Path
) -> None:
    plain = fit(_model(), clf_data, clf_val, callbacks=[Checkpoint(tmp_path / "p", every=1)],
                **SETTINGS)  # fmt: skip
    model = _model()
    compiled = fit(model, clf_data, clf_val, callbacks=[Checkpoint(tmp_path / "c", every=1)],
                   **{**SETTINGS, "compile": True})  # fmt: skip
    # the caller's module, not the compiled wrapper; the same training up to kernel rounding
    assert compiled.model is model and uncompiled(model) is model
    for a, b in zip(plain.history.rows, compiled.history.rows, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    saved = load_checkpoint(compiled.checkpoints["last"])  # skier's reader (torch.load inside)
    assert set(saved["model"]) == set(model.state_dict())  # no "_orig_mod." prefixes
    assert not any("_orig_mod" in k for k in saved["model"])
    # Compiled and plain checkpoints resume either way, and the runs continue as before.
    # (A run resumed at its last epoch trains no more: resume from epoch 2 by a shorter run.)
    short = {**SETTINGS, "epochs": 2}
    fit(_model(), clf_data, clf_val, callbacks=[Checkpoint(tmp_path / "c2", every=1)],
        **{**short, "compile": True})  # fmt: skip
    fit(_model(), clf_data, clf_val, callbacks=[Checkpoint(tmp_path / "p2", every=1)], **short)

    def resumed(saved: str, **extra: Any) -> Any:
        again = [Checkpoint(tmp_path / f"from-{saved}-{len(extra)}", every=1)]
        return fit(_model(), clf_data, clf_val, callbacks=again,
                   resume=tmp_path / saved / "last.pt", **{**SETTINGS, **extra})  # fmt: skip

    plain_from_compiled = resumed("c2")
    compiled_from_plain = resumed("p2", compile=True)
    compiled_from_compiled = resumed("c2", compile=True)
    for run in (plain_from_compiled, compiled_from_plain):
        assert run.history.rows[-1]["loss"] == pytest.approx(
            plain.history.rows[-1]["loss"], rel=1e-4
        )
    # exact resume with compile on both sides: the same as the uninterrupted compiled run
    assert compiled_from_compiled.history.rows[-1]["loss"] == compiled.history.rows[-1]["loss"]
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            compiled.model.state_dict().values(),  # type: ignore[union-attr]
            compiled_from_compiled.model.state_dict().values(),  # type: ignore[union-attr]
            strict=True,
        )
    )


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCH_OWN)
def test_a_model_the_caller_compiled_checkpoints_its_plain_module(
    clf_data: Data, tmp_path: Path
) -> None:
    plain = _model()
    compiled = torch.compile(plain)
    result = fit(compiled, clf_data, callbacks=[Checkpoint(tmp_path, every=1)], **SETTINGS)
    assert result.model is plain  # the module inside the caller's wrapper
    saved = load_checkpoint(tmp_path / "last.pt")
    assert set(saved["model"]) == set(_model().state_dict())  # no "_orig_mod." prefixes
    reference = fit(_model(), clf_data, **SETTINGS)
    assert result.history.rows[-1]["loss"] == pytest.approx(
        reference.history.rows[-1]["loss"], rel=1e-4
    )


def _compiled_ddp_worker(rank: int, init: str, out: str) -> None:
    import warnings

    from tests.train.test_distributed import _session

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch's own, as above
    x, y = _ddp_data()
    with _session(rank, init) as group:
        model = _model()
        result = fit(model, (x, y), distributed=group,
                     callbacks=[Checkpoint(Path(out) / "ckpt", every=1)],
                     **{**SETTINGS, "compile": True})  # fmt: skip
    rows = [r["loss"] for r in result.history.rows]
    torch.save((rows, model.state_dict()), Path(out) / f"rank{rank}.pt")


def _ddp_data() -> Data:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(160, 12, generator=g)
    return x, (x @ torch.randn(12, 3, generator=g)).argmax(dim=1)


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCH_OWN)
def test_compiled_ddp_matches_one_plain_process(tmp_path: Path) -> None:
    from tests.train.test_distributed import _spawn

    _spawn(_compiled_ddp_worker, tmp_path)
    single = fit(_model(), _ddp_data(), **SETTINGS)  # one process, not compiled
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rows, weights in ranks:
        assert rows == pytest.approx([r["loss"] for r in single.history.rows], rel=1e-4)
        for key, w in single.model.state_dict().items():  # type: ignore[union-attr]
            torch.testing.assert_close(weights[key], w, rtol=1e-4, atol=1e-5)
    saved = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert set(saved["model"]) == set(_model().state_dict())  # not DDP's "module." either
