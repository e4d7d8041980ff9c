"""The LR range test shown live in a notebook cell: its curve redrawn in one output.

See :mod:`skier._live` for the output and its throttle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from skier._live import LiveOutput, duration_text, status_html

__all__ = ["LiveCurve"]


class LiveCurve:
    """Step, lr, smoothed loss, elapsed time and the loss-vs-lr curve so far, in one output.

    ``step`` is cheap when nothing is due (one clock read); the result it is given is built
    only when an update is shown. ``finish`` shows the whole result, with its suggestion.
    """

    def __init__(self, total_steps: int, output: LiveOutput | None = None) -> None:
        self.total_steps = total_steps
        self.output = output if output is not None else LiveOutput()
        self._started = time.monotonic()

    def step(self, done: int, lr: float, loss: float, result: Callable[[], Any]) -> None:
        if self.output.due():
            facts = [f"step {done}/{self.total_steps}", f"lr {lr:.3g}", f"loss {loss:.4g}"]
            self._show(facts, result)

    def finish(self, result: Any) -> None:
        if not result.lrs:
            facts = ["no steps"]
        else:
            chosen = "none" if result.lr is None else f"{result.lr:.3g}"
            best = result.best_loss
            facts = [
                f"{len(result.lrs)} steps",
                f"suggested lr ({result.suggestion}) {chosen}",
                f"best loss {best:.4g}" if math.isfinite(best) else "no finite loss",
            ]
            facts += ["diverged"] if result.diverged else []
        self._show(facts, lambda: result, final=True)

    def _show(self, facts: list[str], result: Callable[[], Any], final: bool = False) -> None:
        facts = [*facts, f"elapsed {duration_text(time.monotonic() - self._started)}"]
        self.output.update(status_html("lr range test", facts), ", ".join(facts),
                           lambda: result().plot(), final=final)  # fmt: skip
