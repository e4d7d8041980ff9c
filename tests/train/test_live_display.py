"""The live display: which display a progress setting gets, the throttle, what it shows.

A fake target stands in for IPython's display here; tests/notebook/test_live_notebook.py runs
the real thing in a Jupyter kernel.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import skier._live as live
from skier._live import LiveOutput, display_mode
from skier.history import History
from skier.train import LiveDisplay, ProgressBar, TrainState, fit
from skier.train.setup import prepare


class FakeTarget:
    """Records what a kernel would show: the first bundle displayed, then updates."""

    def __init__(self) -> None:
        self.displayed: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []

    def display(self, bundle: dict[str, Any]) -> None:
        self.displayed.append(bundle)

    def update(self, bundle: dict[str, Any]) -> None:
        self.updated.append(bundle)

    @property
    def last(self) -> dict[str, Any]:
        return (self.displayed + self.updated)[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Drawing:
    """A 'figure' whose PNG is the number of times it was drawn."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> Any:
        self.count += 1
        png = b"png%d" % self.count
        return SimpleNamespace(_repr_mimebundle_=lambda: {"image/png": png})


def _kernel(monkeypatch: pytest.MonkeyPatch, target: FakeTarget | None = None) -> FakeTarget:
    monkeypatch.setattr(live, "in_jupyter_kernel", lambda: True)
    target = target or FakeTarget()
    monkeypatch.setattr(live, "_IPythonTarget", lambda: target)
    return target


def _tty(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    monkeypatch.setattr(sys, "stderr", SimpleNamespace(isatty=lambda: tty, write=print))


# --- selection ---------------------------------------------------------------------------------


def test_in_a_kernel_is_asked_of_a_running_ipython_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not live.in_jupyter_kernel()  # and IPython was not imported to find out
    assert "IPython" not in sys.modules
    shell = SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    assert live.in_jupyter_kernel()
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: None))
    assert not live.in_jupyter_kernel()


@pytest.mark.parametrize(
    ("progress", "kernel", "tty", "expected"),
    [
        ("auto", True, False, "live"),
        ("auto", False, True, "bar"),
        ("auto", False, False, "off"),  # pipes, scripts, CI
        ("on", True, False, "live"),
        ("on", False, False, "bar"),
        (True, False, False, "bar"),
        ("off", True, True, "off"),
        (False, True, True, "off"),
    ],
)
def test_display_mode(
    monkeypatch: pytest.MonkeyPatch, progress: Any, kernel: bool, tty: bool, expected: str
) -> None:
    if kernel:
        _kernel(monkeypatch)
    _tty(monkeypatch, tty)
    assert display_mode(progress) == expected


def _prepared(clf_data: Any, **settings: Any) -> list[Any]:
    model = nn.Linear(12, 3)
    return prepare(model, clf_data, None, None, optimizer="adam", scheduler=None, schedule=None,
                   callbacks=(), task=None, train_config=None, optim_config=None,
                   settings={"epochs": 1, **settings}, regularization=None,
                   distributed=None).callbacks  # fmt: skip


def test_fit_adds_the_live_display_in_a_kernel_the_bar_on_a_terminal_nothing_else(
    monkeypatch: pytest.MonkeyPatch, clf_data: Any
) -> None:
    _tty(monkeypatch, False)
    assert _prepared(clf_data) == []  # a script, a pipe: not even a disabled callback
    assert [type(c) for c in _prepared(clf_data, progress="on")] == [ProgressBar]
    _tty(monkeypatch, True)
    assert [type(c) for c in _prepared(clf_data)] == [ProgressBar]
    _kernel(monkeypatch)
    assert [type(c) for c in _prepared(clf_data)] == [LiveDisplay]
    assert [type(c) for c in _prepared(clf_data, progress="on")] == [LiveDisplay]
    assert _prepared(clf_data, progress="off") == []


# --- the throttle ------------------------------------------------------------------------------


def test_text_is_throttled_and_a_final_update_always_shows() -> None:
    clock, target = Clock(), FakeTarget()
    out = LiveOutput(target=target, text_every_s=1.0, clock=clock)
    assert out.update("a", "a")
    clock.now = 0.5
    assert not out.due()
    assert not out.update("b", "b")
    clock.now = 1.0
    assert out.due() and out.update("c", "c")
    assert out.update("d", "d", final=True)
    assert [b["text/plain"] for b in target.displayed] == ["a"]  # one output ...
    assert [b["text/plain"] for b in target.updated] == ["c", "d"]  # ... updated in place


def test_a_forced_update_sends_the_text_within_its_throttle_but_not_the_figure() -> None:
    clock, target = Clock(), FakeTarget()
    out = LiveOutput(target=target, text_every_s=1.0, figure_every_s=10.0, clock=clock)
    drawing = Drawing()
    assert out.update("a", "a", drawing)
    clock.now = 0.1
    assert not out.update("b", "b", drawing)
    assert out.update("c", "c", drawing, force=True)  # an event the user waits on
    assert [b["text/plain"] for b in target.updated] == ["c"]
    assert drawing.count == 1  # the figure kept its own throttle


def test_the_figure_waits_figure_every_s_and_keeps_its_share_of_time_small() -> None:
    clock, target, drawing = Clock(), FakeTarget(), Drawing()
    out = LiveOutput(target=target, text_every_s=0.0, figure_every_s=2.0, figure_share=0.02,
                     clock=clock)  # fmt: skip
    for t in (0.0, 1.0, 1.9, 2.0, 3.0):
        clock.now = t
        out.update("x", "x", drawing)
    assert drawing.count == 2  # at 0 and at 2: not at 1, 1.9 or 3
    assert target.last["image/png"] == "cG5nMg=="  # base64 of b"png2", shown with later text

    def slow() -> Any:  # a drawing that takes 1 s waits 1 / 0.02 = 50 s for the next
        clock.now += 1.0
        return drawing()

    clock.now = 10.0
    out.update("x", "x", slow)
    clock.now = 40.0
    out.update("x", "x", slow)
    assert drawing.count == 3
    clock.now = 61.0
    out.update("x", "x", slow)
    assert drawing.count == 4
    out.update("x", "x", drawing, final=True)  # the end is always drawn
    assert drawing.count == 5


def test_a_due_figure_goes_out_even_right_after_a_text_update() -> None:
    clock, target, drawing = Clock(), FakeTarget(), Drawing()
    out = LiveOutput(target=target, text_every_s=1.0, figure_every_s=2.0, clock=clock)
    out.update("start", "start")
    clock.now = 5.0
    assert out.update("batch", "batch")  # from a batch: text only
    clock.now = 5.1  # the epoch ends: the text is not due, the figure is
    assert out.update("epoch", "epoch", drawing)
    assert drawing.count == 1 and target.last["text/plain"] == "epoch"
    clock.now = 5.2  # neither is due
    assert not out.update("epoch", "epoch", drawing)


def test_the_html_is_escaped_and_the_figure_is_an_image() -> None:
    target = FakeTarget()
    out = LiveOutput(target=target)
    out.update(live.status_html("<fit>", ["a & b"]), "t", Drawing())
    html = target.last["text/html"]
    assert html.startswith("<div><b>&lt;fit&gt;</b> · a &amp; b</div>")
    assert '<img src="data:image/png;base64,cG5nMQ=="/>' in html


# --- the callback ------------------------------------------------------------------------------


def _state(epochs: int = 4, batches: int = 10) -> TrainState:
    return TrainState(nn.Linear(2, 2), epochs=epochs, task="classification", history=History(),
                      available_keys=frozenset(), batches_per_epoch=batches)  # fmt: skip


def test_live_display_within_and_after_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, target = Clock(), FakeTarget()
    figures: list[int] = []
    monkeypatch.setattr("skier.train.callbacks.live._figure", lambda s: figures.append(1) or
                        SimpleNamespace(_repr_mimebundle_=lambda: {"image/png": b"p"}))  # fmt: skip
    cb = LiveDisplay(target=target, clock=clock)
    state = _state()
    cb.on_fit_start(state)
    assert target.last["text/plain"].startswith("epoch 0/4")
    state.epoch = 1
    for i in range(10):  # a long epoch: the text moves on once a second, the figure not at all
        clock.now = 0.3 * (i + 1)
        cb.on_batch_end(state)
    assert len(target.updated) == 2  # at 1.2 s and 2.4 s
    assert "batch 4/10" in target.updated[0]["text/plain"]
    assert "left ~0:10" in target.updated[1]["text/plain"]  # 2.4 s for 8 of 40: 9.6 s left
    assert figures == []
    logs = {"epoch": 1.0, "loss": 0.5, "val_loss": 0.625, "lr": 0.1}
    state.history.append(logs)
    clock.now = 3.5
    cb.on_epoch_end(state, logs)
    assert figures == [1]
    assert "val_loss 0.625" in target.last["text/plain"]
    state.epoch = 2
    logs = {"epoch": 2.0, "loss": 0.25, "lr": 0.1}  # no validation this epoch
    state.history.append(logs)
    clock.now = 4.6
    cb.on_epoch_end(state, logs)  # text due, figure not (2 s after the last)
    assert figures == [1]
    assert "loss 0.25, val_loss 0.625" in target.last["text/plain"]  # the latest of each
    clock.now = 4.7
    cb.on_fit_end(state, logs)
    assert figures == [1, 1]  # the end is always drawn
    assert len(target.displayed) == 1
    assert target.last["text/plain"].startswith("epoch 2/4, elapsed 0:05, done")


def test_fit_in_a_kernel_shows_one_output_with_the_last_epoch(
    monkeypatch: pytest.MonkeyPatch, clf_data: Any, clf_val: Any
) -> None:
    target = _kernel(monkeypatch)
    result = fit(nn.Linear(12, 3), clf_data, clf_val, epochs=3, batch_size=60)
    assert len(target.displayed) == 1 and target.updated  # at least the final update
    last = target.last
    assert "epoch 3/3" in last["text/plain"]
    assert f"val_loss {result.history.rows[-1]['val_loss']:.4g}" in last["text/plain"]
    assert last["image/png"] and "data:image/png;base64," in last["text/html"]


def test_off_adds_nothing_and_calls_nothing_per_batch(
    monkeypatch: pytest.MonkeyPatch, clf_data: Any
) -> None:
    target = _kernel(monkeypatch)
    fit(nn.Linear(12, 3), clf_data, epochs=2, progress="off")
    assert target.displayed == [] and target.updated == []


def test_lr_range_test_redraws_its_curve_in_one_output(
    monkeypatch: pytest.MonkeyPatch, clf_data: Any
) -> None:
    from skier.diagnostics import lr_range_test

    target = _kernel(monkeypatch)
    result = lr_range_test(nn.Linear(12, 3), clf_data, settings={"num_steps": 20})
    assert len(target.displayed) == 1
    text = target.last["text/plain"]
    assert f"{len(result.lrs)} steps" in text and "suggested lr" in text
    assert target.last["image/png"]
    assert torch.isfinite(torch.tensor(result.losses)).all()
