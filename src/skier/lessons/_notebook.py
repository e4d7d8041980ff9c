"""A lesson as a runnable Jupyter notebook: its claim and set-up, its experiment as code a
student can read and edit, the run, the checks and the figures.

The notebook is plain nbformat 4 JSON written with the standard library (nbformat itself is
only a test dependency). The experiment is the lesson's own source: the registered function
(without its ``@lesson`` registration) and the module's helper functions it calls, with
imports for every other name they use, so the notebook runs the code skier runs.

>>> from skier.lessons import lesson_notebook
>>> notebook = lesson_notebook("downhill")
>>> notebook["nbformat"], [cell["cell_type"] for cell in notebook["cells"]][:3]
(4, ['markdown', 'code', 'markdown'])
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from skier._io import atomic_write_text
from skier.errors import ConfigError, problem
from skier.lessons.base import Lesson, get_lesson

__all__ = ["lesson_notebook", "write_lesson_notebook"]

_ALWAYS = ("Context", "Trial", "run")  # the notebook's own first import


def _names_used(source: str) -> set[str]:
    """Every name the code reads (annotations and decorators included)."""
    tree = ast.parse(textwrap.dedent(source))
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _defined_here(obj: object, module: ModuleType) -> bool:
    return inspect.isfunction(obj) and obj.__module__ == module.__name__


def _import_line(name: str, obj: object, module: ModuleType) -> tuple[str, str]:
    """(module to import from, the import statement) for one global name of the lesson."""
    if inspect.ismodule(obj):
        full = obj.__name__
        if full == name:
            return full, f"import {full}"
        parent, _, last = full.rpartition(".")
        if last == name:
            return full, f"from {parent} import {name}"
        return full, f"import {full} as {name}"
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str):
        return module.__name__, name
    # The shortest public subpackage that names it (skier.train, not skier.train.loop), else where
    # it is defined when it is reachable there under the same name, else the lesson's module.
    parts = home.split(".")
    for i in range(2, len(parts)):
        package = sys.modules.get(".".join(parts[:i]))
        if name in getattr(package, "__all__", ()) and getattr(package, name, None) is obj:
            return ".".join(parts[:i]), name
    if getattr(sys.modules.get(home), name, None) is obj:
        return home, name
    return module.__name__, name


def _imports(names: set[str], module: ModuleType) -> list[str]:
    plain: list[str] = []
    grouped: dict[str, list[str]] = {"skier.lessons": list(_ALWAYS)}
    for name in sorted(names):
        where, line = _import_line(name, vars(module)[name], module)
        if line.startswith(("import ", "from ")):
            plain.append(line)
        else:
            grouped.setdefault(where, []).append(line)
    froms = [f"from {where} import {', '.join(found)}" for where, found in grouped.items()]
    # skier's imports first: they import optuna without tqdm's "IProgress not found" warning (a
    # kernel without ipywidgets) before a lesson's own `import optuna` could.
    ours = sorted(line for line in froms if line.startswith("from skier."))
    return [*ours, *sorted(plain), *sorted(set(froms) - set(ours))]


def _experiment_code(item: Lesson) -> tuple[str, str, str]:
    """(imports, helper functions, experiment) as source text."""
    experiment = inspect.unwrap(item.experiment)
    module = sys.modules[experiment.__module__]
    lines = inspect.getsource(experiment).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    main = "\n".join(lines[start:])
    helpers: dict[str, str] = {}
    imported: set[str] = set()
    pending = [main]
    while pending:
        for name in _names_used(pending.pop()):
            if name not in vars(module) or name in helpers or name == experiment.__name__:
                continue  # a builtin, a local, or already seen
            obj = vars(module)[name]
            if _defined_here(obj, module):
                helpers[name] = inspect.getsource(obj)
                pending.append(helpers[name])
            elif name not in _ALWAYS:
                imported.add(name)
    # Helpers in the order the module defines them.
    order = sorted(helpers, key=lambda n: inspect.getsourcelines(vars(module)[n])[1])
    imports = _imports(imported, module)
    body = "\n\n\n".join(helpers[n].rstrip() for n in order)
    return "\n".join(imports), body, main.rstrip()


def _cell(kind: str, source: str, index: int) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": kind,
        "id": f"{kind}-{index}",
        "metadata": {},
        "source": source.splitlines(keepends=True),
    }
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def lesson_notebook(name: str) -> dict[str, Any]:
    """Lesson ``name`` as an nbformat 4 notebook (a JSON-ready dict), stored without outputs."""
    item = get_lesson(name)
    imports, helpers, main = _experiment_code(item)
    function = inspect.unwrap(item.experiment).__name__
    quick, full = item.seconds
    texts: list[tuple[str, str]] = [
        ("markdown", f"# {item.number}. {item.title}\n\n"
                     f"**Claim.** {item.claim}\n\n"
                     f"**Set-up.** {item.setup}\n\n"
                     f"Written by `skier lesson notebook {item.name}`. Run it top to bottom "
                     f"(the quick version takes about {quick:.0f} s on 2 CPU cores, the full one "
                     f"about {full:.0f} s a seed), then edit the experiment and run it again. "
                     f"`skier lesson run {item.name}` runs the same lesson into a run directory "
                     "and the run store."),
        ("code", imports),
        ("markdown", "## The experiment\n\n"
                     f"`{function}` runs once per seed and returns a `Trial`: what it measured, "
                     "the checks of the claim (each a stated inequality on a measured number) "
                     "and, for the first seed (`ctx.draw`), the figures. `ctx.pick(quick, full)` "
                     "chooses the small or the full version of a setting."),
    ]  # fmt: skip
    if helpers:
        texts.append(("code", helpers))
    texts += [
        ("code", main),
        ("markdown", "## Run it\n\n"
                     "`quick=True` runs the small version on one seed; `quick=False` runs the "
                     "full one on seeds 0, 1 and 2 (or pass `seeds=[...]`). `experiment=` runs "
                     "the function above, with your edits, in place of the lesson's own."),
        ("code", f"result = run({item.name!r}, quick=True, seeds=[0], experiment={function})\n"
                 "result.measurements"),
        ("markdown", "## The checks\n\n"
                     "Each check is a measured value against its bound; the margin says how far "
                     "inside the bound the value is (negative: the check did not hold)."),
        ("code", "for seed, trial in zip(result.seeds, result.trials):\n"
                 "    print(f\"seed {seed}:\")\n"
                 "    for c in trial.checks:\n"
                 "        print(\"  \", c.line())\n"
                 "verdict = \"held\" if result.held else \"did NOT hold\"\n"
                 "print(f\"The claim {verdict} (smallest margin {result.margin:+.0%}).\")"),
        ("markdown", "## The figure"),
        ("code", "result.plot()"),
        ("code", "# any other figure the lesson drew\n"
                 "for other in list(result.figures)[1:]:\n"
                 "    display(result.plot(other))"),
    ]  # fmt: skip
    return {
        "cells": [_cell(kind, text, i) for i, (kind, text) in enumerate(texts)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "skier": {"lesson": item.name},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_lesson_notebook(name: str, path: str | Path, *, force: bool = False) -> Path:
    """Write lesson ``name`` as a notebook to ``path`` (atomically); an existing file is kept
    unless ``force``."""
    notebook = lesson_notebook(name)  # an unknown name fails before anything is written
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(
            problem("the notebook path", "a file that does not exist yet", str(path),
                    "Pass --force to overwrite it, or -o another path.")
        )  # fmt: skip
    if path.is_dir():
        raise ConfigError(problem("the notebook path", "a file, not a folder", str(path)))
    return atomic_write_text(path, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
