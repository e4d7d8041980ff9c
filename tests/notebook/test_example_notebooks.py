"""The course notebooks in examples/notebooks/: stored without outputs, and each runs top to
bottom in a real Jupyter kernel with every figure in its saved outputs and nothing on stderr."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the dev extra)")
pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the dev extra)")

from .kernel import execute, images, makes_figure, problems, round_trip  # noqa: E402

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
TOPICS = [
    "gradient_descent", "batch_minibatch_sgd", "optimizers", "lr_range_test",
    "early_stopping_regularization", "landscapes_mode_connectivity", "cross_validation_search",
]  # fmt: skip


def test_one_notebook_per_topic_in_course_order() -> None:
    assert [p.stem for p in NOTEBOOKS] == [f"{i:02d}_{t}" for i, t in enumerate(TOPICS, 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_clean(path: Path) -> None:
    """Valid nbformat 4, no outputs or execution counts (a diff shows only the lesson), a
    markdown title first, a figure somewhere."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4 and notebook.metadata.kernelspec.name == "python3"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs; clear them before committing"
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    assert any(makes_figure(c) for c in code)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_with_every_figure(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    execute(notebook, FOLDER)
    seconds = time.perf_counter() - t0
    saved = round_trip(notebook, tmp_path / path.name)
    found = problems(saved)
    assert not found, "\n".join(found)
    figures = sum(makes_figure(c) for c in saved.cells if c.cell_type == "code")
    assert images(saved) >= figures > 0
    assert seconds < 120, f"{path.name} took {seconds:.0f} s; keep each notebook under a minute"
