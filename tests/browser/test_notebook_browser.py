"""An executed course notebook, as nbconvert's HTML, in headless Chromium: every figure the
kernel left in the outputs loads as an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the dev extra)")
pytest.importorskip("nbclient", reason="nbclient is not installed (the dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the dev extra)")
nbconvert = pytest.importorskip("nbconvert", reason="nbconvert is not installed (the dev extra)")

from tests.notebook.kernel import execute, images, problems  # noqa: E402

pytestmark = pytest.mark.slow

NOTEBOOK = (
    Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "01_gradient_descent.ipynb"
)

LOADED = (
    "return [...document.images].map(i => (i.complete && i.naturalWidth > 0) ? i.naturalWidth : 0)"
)


def test_executed_notebook_shows_every_figure(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    notebook = execute(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.parent)
    assert problems(notebook) == []
    figures = images(notebook)
    assert figures >= 3
    # Nothing from the network: no MathJax or require.js from a CDN (the test machine is offline).
    exporter = nbconvert.HTMLExporter(embed_images=True, mathjax_url="", require_js_url="")
    html, _ = exporter.from_notebook_node(notebook)
    page = tmp_path / "notebook.html"
    page.write_text(html, encoding="utf-8")

    browser.get(page.as_uri())
    widths = browser.execute_script(LOADED)
    assert len(widths) == figures, f"{figures} images in the outputs, {len(widths)} on the page"
    assert all(w > 0 for w in widths), f"images that did not load: {widths}"
    assert "Gradient descent" in browser.find_element("tag name", "h1").text
    browser.save_screenshot(str(artifacts / "notebook.png"))
