"""`skier lesson notebook NAME`: every lesson becomes a valid notebook whose code is the lesson's
own; written through the CLI, a quick lesson's notebook runs in a real kernel and shows its
checks and its figure; a wrong name or an existing file is one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skier.cli.main import main
from skier.lessons import lesson_notebook, lessons

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the dev extra)")
pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the dev extra)")

from .kernel import execute, images, problems, round_trip  # noqa: E402

NAMES = [item.name for item in lessons()]


def skier(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``skier ARGS`` in this process (the entry point's error handling included)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def code_of(notebook: dict[str, object]) -> list[str]:
    cells = notebook["cells"]
    assert isinstance(cells, list)
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", NAMES)
def test_every_lesson_is_a_valid_notebook_whose_definitions_run(name: str) -> None:
    """nbformat validates it; its imports, helpers and experiment run as written (no name is
    missing), and the experiment it defines is the lesson's own code."""
    notebook = lesson_notebook(name)
    nbformat.validate(nbformat.reads(json.dumps(notebook), as_version=4))
    code = code_of(notebook)
    namespace: dict[str, object] = {}
    definitions = code[: code.index(next(c for c in code if c.startswith("result = run(")))]
    for source in definitions:
        exec(compile(source, f"<{name} notebook>", "exec"), namespace)
    run_cell = next(c for c in code if c.startswith("result = run("))
    function = run_cell.split("experiment=")[1].split(")")[0]
    assert callable(namespace[function]) and f"run({name!r}, quick=True" in run_cell


def test_the_notebook_shows_the_lesson_and_its_checks() -> None:
    notebook = lesson_notebook("mean-vs-sum")
    text = "".join("".join(c["source"]) for c in notebook["cells"])
    item = next(i for i in lessons() if i.name == "mean-vs-sum")
    assert item.claim in text and item.setup in text and "skier lesson notebook mean-vs-sum" in text
    assert "@lesson" not in text  # the registration is left out: the notebook defines a function
    assert "c.line()" in text and "result.plot()" in text
    assert all(c.get("outputs", []) == [] for c in notebook["cells"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mean-vs-sum", "momentum"])
def test_written_by_the_cli_it_runs_in_a_kernel(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = skier("lesson", "notebook", name, capsys=capsys)
    assert code == 0, err
    path = tmp_path / f"{name}.ipynb"
    assert out.strip() == f"notebook: {name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    execute(notebook, tmp_path)
    saved = round_trip(notebook, tmp_path / "executed.ipynb")
    found = problems(saved)
    assert not found, "\n".join(found)
    assert images(saved) >= 1
    printed = "".join(
        out.get("text", "")
        for cell in saved.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "expected" in printed and "margin" in printed and "The claim held" in printed


def test_wrong_name_and_existing_file_exit_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = skier("lesson", "notebook", "downhil", capsys=capsys)
    assert code == 2 and err.startswith("skier: error:") and "Did you mean 'downhill'" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())

    (tmp_path / "mine.ipynb").write_text("my notes")
    code, _, err = skier("lesson", "notebook", "downhill", "-o", "mine.ipynb", capsys=capsys)
    assert code == 2 and "--force" in err, err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "mine.ipynb").read_text() == "my notes"

    code, _, err = skier("lesson", "notebook", "downhill", "-o", "mine.ipynb", "--force",
                         capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert nbformat.read(tmp_path / "mine.ipynb", as_version=4).metadata.skier.lesson == "downhill"
