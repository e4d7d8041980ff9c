"""Run kinds are data: every kind the runner can write is registered in skier.record.kinds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import skier
from skier.errors import StoreError
from skier.record.kinds import DIAGNOSTIC_KINDS, RUN_KINDS, run_kind
from skier.record.rundir import RunFiles

RUNNER = Path(skier.__file__).parent / "runner"


def written_kinds(source: str) -> set[str]:
    """Kinds a runner module writes: ``kind="..."`` arguments, ``"kind": "..."`` entries and the
    first argument of ``Recorder("...", ...)`` (the diagnostics' recorder)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "kind" and isinstance(keyword.value, ast.Constant):
                    found.add(keyword.value.value)
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "Recorder" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (isinstance(key, ast.Constant) and key.value == "kind"
                        and isinstance(value, ast.Constant)):  # fmt: skip
                    found.add(value.value)
    return found


def test_every_kind_the_runner_writes_is_registered() -> None:
    kinds = set().union(*(written_kinds(p.read_text(encoding="utf-8"))
                          for p in sorted(RUNNER.rglob("*.py"))))  # fmt: skip
    # the scan must see the runner's kinds at all, or it proves nothing
    assert {"train", "cv", "tune", "lr_find", "landscape", "sharpness", "lesson"} <= kinds
    assert kinds - set(RUN_KINDS) == set()


def test_the_scan_finds_an_unregistered_kind() -> None:
    source = 'store.create_run(name, cfg, path, kind="distill")\nRecorder("prune", src, {})\n'
    assert written_kinds(source) - set(RUN_KINDS) == {"distill", "prune"}


def test_kinds_name_their_files_through_run_files() -> None:
    for kind in RUN_KINDS.values():
        assert kind.name and kind.title
        assert set(kind.files) <= RunFiles.names(), kind.name
    assert set(DIAGNOSTIC_KINDS) == {"lr_find", "landscape", "sharpness", "connect", "connectivity"}


def test_an_unknown_kind_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(StoreError, match=r"run kind must be one of .*got 'tunee'\. Did you mean"):
        run_kind("tunee")
