"""Training history: one row of floats per epoch, plus optional per-step series.

Standard library only, so the read side (record, report, plots) never imports torch.

>>> h = History()
>>> h.append({"epoch": 1, "loss": 0.5, "val_loss": 0.6})
>>> h.column("loss")
[0.5]
>>> h
History(1 epoch: epoch, loss, val_loss)

In a notebook a History shows as a table (``_repr_html_``); ``to_pandas()`` gives a DataFrame.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skier._html import data_frame, html_table

__all__ = ["History", "HistoryAt", "higher_is_better"]

# Words of a logged key that mean "more is better" (accuracies, F1, precision, recall, AUROC,
# R²); everything else (losses, errors, mae, rmse, hamming_loss) is minimised.
_MAXIMISED = ("acc", "f1", "precision", "recall", "auroc", "auc", "r2")


def higher_is_better(key: str) -> bool:
    """Whether a larger value of a logged key is better: the one rule early stopping,
    checkpoints, plateau schedules, ``skier tune`` and ``skier runs --sort`` share.

    >>> [higher_is_better(k) for k in ("val_f1_macro", "val_top_5_accuracy", "val_rmse", "loss")]
    [True, True, False, False]
    """
    return any(part.startswith(_MAXIMISED) for part in key.split("_"))


# A notebook shows a long history's first and last rows, not all of them.
_HTML_HEAD_ROWS = 10
_HTML_TAIL_ROWS = 10


def _clean(value: float) -> float | None:
    """JSON has no NaN or infinity: they become null."""
    return None if value is None or not math.isfinite(value) else value


@dataclass
class History:
    """Per-epoch rows (``epoch`` first, then ``loss``, ``error``, ``val_loss``, ...)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)

    def append(self, row: Mapping[str, float]) -> None:
        self.rows.append({k: float(v) for k, v in row.items()})

    def add_step(self, key: str, value: float) -> None:
        self.steps.setdefault(key, []).append(float(value))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        n = len(self.rows)
        text = f"History({n} epoch{'' if n == 1 else 's'}: {', '.join(self.keys) or 'no keys'}"
        if self.steps:
            text += f"; per-step: {', '.join(self.steps)}"
        return text + ")"

    def _repr_html_(self) -> str:
        keys = self.keys
        rows: list[list[object]] = [[row.get(k, math.nan) for k in keys] for row in self.rows]
        caption = f"History: {len(rows)} epoch{'' if len(rows) == 1 else 's'}"
        if len(rows) > _HTML_HEAD_ROWS + _HTML_TAIL_ROWS + 1:
            caption += f" (the first {_HTML_HEAD_ROWS} and the last {_HTML_TAIL_ROWS})"
            rows = [*rows[:_HTML_HEAD_ROWS], ["⋯"] * len(keys), *rows[-_HTML_TAIL_ROWS:]]
        if self.steps:
            series = ", ".join(f"{k} ({len(v)})" for k, v in self.steps.items())
            caption += f"; per-step series: {series}"
        return html_table(keys, rows, caption=caption)

    def to_pandas(self) -> Any:
        """The per-epoch rows as a ``pandas.DataFrame``, one column per key (NaN where missing).

        >>> History(rows=[{"epoch": 1.0, "loss": 0.5}]).to_pandas().columns.tolist()
        ['epoch', 'loss']
        """
        return data_frame(self.rows, self.keys, owner="History.to_pandas")

    @property
    def keys(self) -> list[str]:
        """Every key seen in any row, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def column(self, key: str) -> list[float]:
        """Values of ``key`` per epoch; ``nan`` where an epoch has none (e.g. no validation)."""
        return [row.get(key, math.nan) for row in self.rows]

    def last(self, key: str, default: float = math.nan) -> float:
        for row in reversed(self.rows):
            if key in row and not math.isnan(row[key]):
                return row[key]
        return default

    def truncate(self, epochs: int) -> None:
        """Keep the first ``epochs`` rows (used when resuming from a checkpoint)."""
        del self.rows[epochs:]

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {
            "rows": [{k: _clean(v) for k, v in r.items()} for r in self.rows],
            "steps": {k: [_clean(v) for v in vals] for k, vals in self.steps.items()},
        }

    def at_now(self) -> HistoryAt:
        """This history as it is now, without copying it (see :class:`HistoryAt`)."""
        return HistoryAt(self, len(self.rows), {k: len(v) for k, v in self.steps.items()})

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> History:
        rows_in = data.get("rows", [])
        steps_in = data.get("steps", {})
        if not isinstance(rows_in, list) or not isinstance(steps_in, dict):
            raise ValueError("history must hold a list 'rows' and a mapping 'steps'")
        rows = [{k: (math.nan if v is None else float(v)) for k, v in r.items()} for r in rows_in]
        steps = {
            str(k): [math.nan if x is None else float(x) for x in v] for k, v in steps_in.items()
        }
        return cls(rows=rows, steps=steps)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))

    def to_csv(self) -> str:
        """CSV with one row per epoch; empty cells where a key is missing."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.keys, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if math.isnan(v) else repr(v)) for k, v in row.items()})
        return out.getvalue()

    @classmethod
    def from_csv(cls, text: str | Path) -> History:
        if isinstance(text, Path):
            text = text.read_text()
        reader = csv.DictReader(io.StringIO(text))
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in reader]
        return cls(rows=rows)

    def extend(self, rows: Iterable[Mapping[str, float]]) -> None:
        for row in rows:
            self.append(row)


@dataclass(frozen=True)
class HistoryAt:
    """A history as it was when taken: its first ``rows`` rows and the first values of each
    per-step series. Training only appends to both (``append`` copies each row), so this
    holds the past without a copy; :meth:`to_dict` gives what ``History.to_dict`` gave then.
    A held checkpoint keeps one instead of a copy that would grow with every epoch."""

    history: History
    rows: int
    steps: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        h = self.history
        return {
            "rows": [{k: _clean(v) for k, v in r.items()} for r in h.rows[: self.rows]],
            "steps": {k: [_clean(v) for v in h.steps[k][:n]] for k, n in self.steps.items()},
        }
