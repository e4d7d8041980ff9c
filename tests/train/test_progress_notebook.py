"""In a Jupyter kernel without ipywidgets the progress bar is tqdm's text bar, with no warning."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pytest
from tqdm.std import tqdm as text_tqdm

from skier.train.callbacks.progress import progress_bar_class


def _kernel(monkeypatch: pytest.MonkeyPatch, *, widgets: bool) -> None:
    shell = SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        if name == "ipywidgets":
            return object() if widgets else None
        return real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_outside_a_kernel_the_text_bar() -> None:
    assert progress_bar_class() is text_tqdm


def test_a_kernel_without_ipywidgets_gets_the_text_bar_and_no_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _kernel(monkeypatch, widgets=False)
    bar_class = progress_bar_class()  # filterwarnings = error: a TqdmWarning would fail here
    assert bar_class is text_tqdm
    bar_class(total=2, disable=True).close()


def test_a_kernel_with_ipywidgets_gets_the_notebook_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    _kernel(monkeypatch, widgets=True)
    assert progress_bar_class().__module__ == "tqdm.notebook"
