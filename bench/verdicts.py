"""Every target of one or more stored suite runs, side by side, with the verdict each run's
``bench/suite.py`` computed (never re-judged here).

    python bench/verdicts.py bench/results/2026-11-22-suite.json \\
        bench/results/2026-11-22-suite-5rounds-W1W3W4.json

prints a Markdown table: one row per target, for each run its value, limit and verdict (``met``
or ``NOT met``; ``—`` where that run did not measure it), and a last column saying whether the
runs agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _label(path: Path, payload: dict) -> str:
    return f"{path.stem} ({payload['rounds']} rounds)"


def table(paths: list[Path]) -> str:
    runs = [json.loads(p.read_text()) for p in paths]
    order: list[str] = []
    found: list[dict[str, dict]] = []
    for run in runs:
        mine = {}
        for item in run["targets"]:
            mine[item["target"]] = item
            if item["target"] not in order:
                order.append(item["target"])
        found.append(mine)
    head = ["target", *[_label(p, r) for p, r in zip(paths, runs, strict=True)], "runs agree"]
    lines = ["| " + " | ".join(head) + " |", "| --- " * len(head) + "|"]
    for name in order:
        cells, verdicts = [name], []
        for mine in found:
            item = mine.get(name)
            if item is None:
                cells.append("—")
                continue
            verdicts.append(item["met"])
            mark = "met" if item["met"] else "**NOT met**"
            cells.append(f"{item['value']:.4g} (limit {item['limit']:.4g}): {mark}")
        if len(verdicts) < 2:
            cells.append("one run")
        else:
            cells.append("yes" if len(set(verdicts)) == 1 else "**no**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([Path(p) for p in sys.argv[1:]]))
