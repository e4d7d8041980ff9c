"""The README's lesson table, made from the stored lesson sweeps (bench/lesson_sweep.py).

    python bench/lesson_table.py bench/results/DATE-lessons-quick.json \\
        bench/results/DATE-lessons-full.json

prints a Markdown table: per lesson, how many (seed, thread count) trials held and the smallest
margin of any check, for each sweep given (the quick versions the tests run, the full course).
A lesson added after a sweep is swept on its own and joined to it: ``A.json+B.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _label(payload: dict) -> str:
    kind = "quick" if payload["quick"] else "full"
    seeds = payload["seeds"]
    span = f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds
    threads = ", ".join(map(str, payload["threads"]))
    unit = "thread" if payload["threads"] == [1] else "threads"
    return f"{kind}: seeds {span} × {threads} {unit}"


def _merged(paths: list[Path]) -> dict:
    """One sweep from several of the same kind (a lesson added later is swept on its own)."""
    sweeps = [json.loads(p.read_text()) for p in paths]
    merged = dict(sweeps[0])
    for later in sweeps[1:]:
        for key in ("quick", "seeds", "threads"):
            if later[key] != merged[key]:
                raise SystemExit(f"{key} differs between the sweeps joined with '+': "
                                 f"{merged[key]!r} and {later[key]!r}")  # fmt: skip
        merged["runs"] = merged["runs"] + later["runs"]
        merged["summary"] = {**merged["summary"], **later["summary"]}
    return merged


def table(paths: list[list[Path]]) -> str:
    """The table of the sweeps ``paths``, each a list of files of one kind to join."""
    sweeps = [_merged(p) for p in paths]
    names: list[str] = []
    rows: dict[str, dict] = {}
    for sweep in sweeps:
        for run in sweep["runs"]:
            if run["lesson"] not in rows:
                names.append(run["lesson"])
                rows[run["lesson"]] = {"number": run["number"], "title": run["title"]}
    head = "| # | lesson | title | " + " | ".join(
        f"{_label(s)}: held | smallest margin" for s in sweeps
    )
    lines = [head + " |", "| --- " * (3 + 2 * len(sweeps)) + "|"]
    for name in sorted(names, key=lambda n: rows[n]["number"]):
        cells = [str(rows[name]["number"]), name, rows[name]["title"]]
        for sweep in sweeps:
            summary = sweep["summary"].get(name)
            if summary is None:
                cells += ["—", "—"]
                continue
            margin = summary["smallest_margin"]
            cells.append(f"{summary['held']} of {summary['trials']}")
            cells.append("—" if margin is None else f"{margin:+.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    held = [sum(s["held_everywhere"] for s in sw["summary"].values()) for sw in sweeps]
    lines.append("")
    verdicts = [
        f"{_label(sweep)}: {count} of {len(sweep['summary'])} lessons held on every trial"
        for sweep, count in zip(sweeps, held, strict=True)
    ]
    lines.append("; ".join(verdicts) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    # Each argument is a sweep, or several of the same kind joined with '+'.
    print(table([[Path(p) for p in arg.split("+")] for arg in sys.argv[1:]]))
