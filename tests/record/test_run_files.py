"""RunFiles owns every file name of a run directory: no other module of skier spells one out."""

from __future__ import annotations

import ast
from pathlib import Path

import skier
from skier.record import RunDir, RunFiles

SRC = Path(skier.__file__).parent
OWNER = SRC / "record" / "rundir.py"


def spelt_names(source: str, names: frozenset[str]) -> list[tuple[int, str]]:
    """(line, name) for each string constant of ``source`` that is exactly a run-file name.

    f-strings count too: their fixed parts are constants, so ``f"{x}/report.html"`` is caught
    through its tail, ``"/report.html"``, ending in a name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text in names or any(text.endswith(f"/{name}") for name in names):
                found.append((node.lineno, text))
    return sorted(found)


def test_no_module_but_rundir_spells_a_run_file_name() -> None:
    names = RunFiles.names()
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {text!r}"
        for path in sorted(SRC.rglob("*.py"))
        if path != OWNER
        for line, text in spelt_names(path.read_text(encoding="utf-8"), names)
    ]
    assert not offenders, "use skier.record.RunFiles instead of:\n" + "\n".join(offenders)


def test_the_scan_finds_a_spelt_name() -> None:
    source = 'path = run / "lr_find.json"\nother = f"{run}/report.html"\nok = "lr_find"\n'
    assert spelt_names(source, RunFiles.names()) == [(1, "lr_find.json"), (2, "/report.html")]


def test_names_cover_the_rundir_paths(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for path in (run.config_path, run.metrics_csv, run.result_json, run.report_html,
                 run.learning_curves_png):  # fmt: skip
        assert path.name in RunFiles.names()
    assert run.file(RunFiles.LR_FIND_JSON) == tmp_path / "lr_find.json"
    assert RunFiles.settings("landscape") == "landscape.yaml"
    assert len(RunFiles.names()) == len(
        [k for k, v in vars(RunFiles).items() if k.isupper() and "." in str(v)]
    )
