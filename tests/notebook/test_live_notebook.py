"""Live training in a cell, in a real Jupyter kernel (nbclient + ipykernel): ``fit`` and the LR
range test each show ONE output, updated in place (a display id), that ends with the figure
and the last numbers; ``progress="off"`` shows nothing; nothing is written to stderr. And a
script whose output is a pipe shows nothing at all.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the dev extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the dev extra)")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

SETUP = """\
import torch
from skier.config import load_config
from skier.data import load_data
from skier.models import build_model
from skier.train import LiveDisplay, fit
from skier.diagnostics import lr_range_test

cfg = load_config("examples/digits_mlp.yaml")
data = load_data(cfg.data)
torch.manual_seed(0)
model = build_model(cfg.model, input_shape=data.input_shape, output_size=data.output_size)"""

SEARCH = """\
import tempfile
from skier.config.search import CrossValidationConfig, TuneConfig, parse_space
from skier.runner.cv import run_cv
from skier.runner.tune import run_tune

out = tempfile.mkdtemp()
small = load_config(None, ["data.name=synthetic", "data.samples=240", "model.hidden_sizes=[8]",
                           "train.epochs=2", "checkpoint.enabled=False", "record.report=False",
                           "record.plots=False"])
"""

CELLS = [
    SETUP,
    # 1: the default (progress="auto") in a kernel: the live display, by itself
    "result = fit(model, data, lr=1e-3, epochs=3, batch_size=64)",
    "print(f\"{result.history.rows[-1]['val_loss']:.4g}\")",
    # 3: no throttle: every epoch updates the same output
    "fast = fit(model, data, lr=1e-3, epochs=5, batch_size=64,\n"
    "           callbacks=[LiveDisplay(text_every_s=0, figure_every_s=0)])",
    "found = lr_range_test(model, data, settings={'num_steps': 30})",
    "quiet = fit(model, data, lr=1e-3, epochs=2, batch_size=64, progress='off')",
    # 6, 7: cross-validation and tuning, folds and trials as they finish
    SEARCH + "folds = run_cv(small, cv=CrossValidationConfig(folds=2, workers=1), out_dir=out)",
    "space = parse_space({'optim.lr': {'type': 'categorical', 'choices': [0.05, 0.01]}})\n"
    "found_lr = run_tune(small, space, tune=TuneConfig(trials=2, workers=1, prune='none'),\n"
    "                    out_dir=out)",
]


class CountingClient(nbclient.NotebookClient):  # type: ignore[misc]
    """Counts, per cell, the display messages that carry a display id, by type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: dict[int, Counter[str]] = {}

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        transient = msg["content"].get("transient") or {}
        if transient.get("display_id"):
            self.messages.setdefault(cell_index, Counter())[msg["msg_type"]] += 1
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, CountingClient]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = CountingClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    saved = tmp_path_factory.mktemp("live") / "live.ipynb"
    nbformat.write(notebook, saved)
    notebook = nbformat.read(saved, as_version=4)
    nbformat.validate(notebook)
    return notebook, client


def _one_live_output(cell: Any) -> Any:
    assert [o.output_type for o in cell.outputs] == ["display_data"], cell.outputs
    return cell.outputs[0].data


def test_no_cell_errs_or_writes_to_stderr(executed: tuple[Any, CountingClient]) -> None:
    notebook, _ = executed
    for i, cell in enumerate(notebook.cells):
        for out in cell.outputs:
            assert out.output_type != "error", f"cell {i}: {out.ename}: {out.evalue}"
            assert not (out.output_type == "stream" and out.name == "stderr"), (i, out.text)


def test_fit_shows_one_output_that_ends_with_the_curves_and_the_last_epoch(
    executed: tuple[Any, CountingClient],
) -> None:
    notebook, client = executed
    data = _one_live_output(notebook.cells[1])
    val_loss = notebook.cells[2].outputs[0].text.strip()
    assert data["text/plain"].startswith("epoch 3/3")
    assert f"val_loss {val_loss}" in data["text/plain"]
    assert data["image/png"] and "data:image/png;base64," in data["text/html"]
    assert "<table>" in data["text/html"]
    assert client.messages[1]["display_data"] == 1
    assert client.messages[1]["update_display_data"] >= 1  # at least the end


def test_every_epoch_updates_the_same_output_rather_than_adding_one(
    executed: tuple[Any, CountingClient],
) -> None:
    notebook, client = executed
    data = _one_live_output(notebook.cells[3])
    assert data["text/plain"].startswith("epoch 5/5")
    assert client.messages[3]["display_data"] == 1
    assert client.messages[3]["update_display_data"] >= 5  # each epoch, then the end


def test_the_lr_range_test_shows_its_curve_in_one_output(
    executed: tuple[Any, CountingClient],
) -> None:
    notebook, client = executed
    data = _one_live_output(notebook.cells[4])
    assert "30 steps" in data["text/plain"] or "diverged" in data["text/plain"]
    assert "suggested lr" in data["text/plain"]
    assert data["image/png"]
    assert client.messages[4]["display_data"] == 1


def test_progress_off_shows_nothing(executed: tuple[Any, CountingClient]) -> None:
    notebook, client = executed
    assert notebook.cells[5].outputs == []
    assert 5 not in client.messages


def test_cv_and_tune_show_folds_and_trials_in_one_output(
    executed: tuple[Any, CountingClient],
) -> None:
    notebook, client = executed
    for index, first in ((6, "2/2 folds"), (7, "2/2 trials")):
        data = _one_live_output(notebook.cells[index])
        assert data["text/plain"].startswith(first) and data["text/plain"].endswith("done")
        assert data["image/png"]
        assert client.messages[index]["display_data"] == 1
        assert client.messages[index]["update_display_data"] >= 2


def test_a_script_with_its_output_in_a_pipe_shows_nothing(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        SETUP.replace('"examples/', f'"{ROOT}/examples/')
        + "\nfit(model, data, lr=1e-3, epochs=2, batch_size=64)"
        + "\nlr_range_test(model, data, settings={'num_steps': 10})\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
