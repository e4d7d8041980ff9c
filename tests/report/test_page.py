"""One page renderer: every HTML page skier writes starts in skier.report.page."""

from __future__ import annotations

import ast
from pathlib import Path

import skier
from skier.report import render_page, render_report

SRC = Path(skier.__file__).parent


def test_render_page_escapes_the_title_and_adds_the_page_css() -> None:
    page = render_page("<script>x</script>", "<p>ok</p>", css=".own{color:red}")
    assert "<title>&lt;script&gt;x&lt;/script&gt;</title>" in page
    assert "<script>" not in page
    assert ".own{color:red}" in page and "<p>ok</p>" in page


def test_only_the_page_module_writes_a_page_head() -> None:
    writers = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if any(
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.lstrip().lower().startswith("<!doctype")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert writers == ["report/page.py"], writers


def test_the_training_report_goes_through_the_page_renderer() -> None:
    page = render_report(title="t", config={}, result={}, figures={}, history=None)
    assert page.startswith(render_page("t", "").split("<body>")[0])
