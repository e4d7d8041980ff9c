"""Checkpoint owns the names of the files in a checkpoint folder: no other module spells them."""

from __future__ import annotations

import ast
from pathlib import Path

import skier
from skier.train import Checkpoint

SRC = Path(skier.__file__).parent
OWNER = SRC / "train" / "callbacks" / "checkpoint.py"


def _spelt(source: str, names: tuple[str, ...]) -> list[tuple[int, str]]:
    """String constants that mention a checkpoint file name, docstrings aside."""
    tree = ast.parse(source)
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
        and any(name in node.value for name in names)
    ]  # fmt: skip


def test_only_checkpoint_spells_the_checkpoint_file_names() -> None:
    names = (Checkpoint.LAST_FILE, Checkpoint.BEST_FILE)
    assert names == ("last.pt", "best.pt")
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {text!r}"
        for path in sorted(SRC.rglob("*.py"))
        if path != OWNER
        for line, text in _spelt(path.read_text(encoding="utf-8"), names)
    ]
    assert not offenders, "use Checkpoint.LAST_FILE / BEST_FILE instead of:\n" + "\n".join(
        offenders
    )
    assert _spelt('"""best.pt here is a docstring."""\nx = f"{d}/last.pt"\n', names) == [
        (2, "/last.pt")
    ]
