"""README's Python examples as a notebook, run by a real Jupyter kernel (nbclient + ipykernel).

A new user's first notebook: load digits, fit, look at the history, the learning curves, an LR
range test and a small landscape. Every figure must be in the saved notebook as an image (skier
draws without pyplot, so nothing else would put it there), the history and the data as tables,
and no cell may print an error or a warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the dev extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the dev extra)")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# (tag, source): "figure" cells must end in an image, "table" cells in an HTML table.
CELLS = [
    ("table", """\
import torch
from skier.config import load_config
from skier.data import load_data
from skier.models import build_model
from skier.train import EarlyStopping, fit

cfg = load_config("examples/digits_mlp.yaml")
data = load_data(cfg.data)
data"""),
    ("table", """\
torch.manual_seed(0)
model = build_model(cfg.model, input_shape=data.input_shape, output_size=data.output_size)
result = fit(model, data, optimizer="adam", lr=1e-3, epochs=6, batch_size=64,
             callbacks=[EarlyStopping(monitor="val_loss", patience=10)])
result.history"""),
    ("text", 'print(result.best_epoch, result.stop_reason, result.test_metrics["test_accuracy"])'),
    ("figure", """\
from skier.plots import plot_landscape_figure, plot_learning_curves, plot_learning_figure

plot_learning_curves(result.history)"""),
    ("figure", "plot_learning_figure(result)"),
    ("table", "result"),
    ("figure", "result.plot()"),
    ("figure", """\
from skier.diagnostics import landscape, lr_range_test

found = lr_range_test(model, data, settings={"num_steps": 30})
found.plot()"""),
    ("figure", """\
surface = landscape(model, data, {"dims": 2, "points": 7})
plot_landscape_figure(surface, log_scale=True)"""),
    ("figure", "surface.plot()"),
]  # fmt: skip

# Results of whole runs: a cross-validation, the store's run list, a comparison, a lesson.
RESULT_CELLS = [
    ("table", """\
import tempfile
from skier.config import load_config
from skier.config.search import CrossValidationConfig
from skier.runner.cv import run_cv

runs = tempfile.mkdtemp()
cfg = load_config("examples/digits_mlp.yaml", [
    "train.epochs=2", "model.hidden_sizes=[32]", "checkpoint.enabled=false",
    "record.report=false", "record.plots=false"])
cv = run_cv(cfg, cv=CrossValidationConfig(folds=2, workers=1), out_dir=runs)
cv"""),
    ("figure", "cv.plot()"),
    ("text", "print(repr(cv))"),
    ("table", """\
from skier.record import RunStore, default_store_url
from skier.report import compare_runs

with RunStore(default_store_url(runs)) as store:
    listed = store.list_runs()
    folds = compare_runs([f.run_id for f in cv.folds], store=store)
listed"""),
    ("table", "folds"),
    ("figure", "folds.plot()"),
    ("figure", """\
from skier.plots.search import plot_cv_figure

plot_cv_figure(cv.run_dir)"""),
    ("table", """\
from skier.lessons import run

lesson = run("momentum", quick=True)
lesson"""),
]  # fmt: skip


def _notebook(cells_in: list[tuple[str, str]]) -> object:
    cells = []
    for tag, source in cells_in:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = [tag]
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def _problems(cells: list[tuple[str, str]], tmp_path: Path) -> list[str]:
    """Run ``cells`` in a real kernel; what is wrong with what they show."""
    notebook = _notebook(cells)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    saved = tmp_path / "readme.ipynb"
    nbformat.write(notebook, saved)
    notebook = nbformat.read(saved, as_version=4)
    nbformat.validate(notebook)

    problems = []
    for i, cell in enumerate(notebook.cells):
        tag = cell.metadata["tags"][0]
        outputs = cell.outputs
        for out in outputs:
            if out.output_type == "error":
                problems.append(f"cell {i}: {out.ename}: {out.evalue}")
            if out.output_type == "stream" and out.name == "stderr":
                problems.append(f"cell {i} wrote to stderr: {out.text.strip()[:300]}")
        shown = [out.data for out in outputs if out.output_type == "execute_result"]
        if tag == "figure" and not (shown and shown[-1].get("image/png")):
            problems.append(f"cell {i} ends in a figure but shows no image/png: {outputs}")
        if tag == "table" and not (shown and "<table>" in shown[-1].get("text/html", "")):
            problems.append(f"cell {i} should show an HTML table; it shows {outputs}")
        if tag == "text" and not any(out.output_type == "stream" for out in outputs):
            problems.append(f"cell {i} printed nothing")
    return problems


def test_readme_examples_in_a_notebook_show_every_figure_and_table(tmp_path: Path) -> None:
    problems = _problems(CELLS, tmp_path)
    assert not problems, "\n".join(problems)


def test_results_of_whole_runs_show_as_tables_and_figures(tmp_path: Path) -> None:
    problems = _problems(RESULT_CELLS, tmp_path)
    assert not problems, "\n".join(problems)
