"""Running a notebook in a real Jupyter kernel (nbclient + ipykernel) and judging what it left.

Shared by the notebook tests and the browser test: a cell that ends in a figure must have left
an image, and no cell may have left an error or anything on stderr (a warning counts).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbclient
import nbformat

# A code cell "makes a figure" when its last line is a figure: `fig`, or a `.plot(...)` call.
FIGURE_LINE = re.compile(r"fig|[\w.\[\]\"']+\.plot\(.*\)")


def execute(notebook: Any, where: Path, timeout: int = 300) -> Any:
    """Run every cell of ``notebook`` with ``where`` as the kernel's working folder."""
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(where)}},
    )
    client.execute()
    return notebook


def makes_figure(cell: Any) -> bool:
    lines = [line for line in cell.source.strip().splitlines() if line.strip()]
    return bool(lines) and FIGURE_LINE.fullmatch(lines[-1].strip()) is not None


def problems(notebook: Any) -> list[str]:
    """Errors, stderr output, and figure cells without an image/png, one line each."""
    found = []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if out.output_type == "error":
                found.append(f"cell {i}: {out.ename}: {out.evalue}")
            if out.output_type == "stream" and out.name == "stderr":
                found.append(f"cell {i} wrote to stderr: {out.text.strip()[:300]}")
        if makes_figure(cell):
            shown = [
                o.data for o in cell.outputs if o.output_type in ("execute_result", "display_data")
            ]
            if not any("image/png" in data for data in shown):
                found.append(
                    f"cell {i} ends in a figure but shows no image/png: {cell.source[-80:]!r}"
                )
    return found


def images(notebook: Any) -> int:
    """How many PNG images the notebook's outputs hold."""
    return sum(
        "image/png" in out.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def round_trip(notebook: Any, path: Path) -> Any:
    """Save and read back (what a user's saved notebook holds), validated."""
    nbformat.write(notebook, path)
    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)
    return saved
