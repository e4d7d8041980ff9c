"""A time throttle: whether ``every_s`` seconds have passed since the work was last done. One
helper for the writers that save by time rather than by epoch: checkpoints
(``checkpoint.every_s``), the run record (``record.flush_every_s``) and the experiment trackers
(``flush_every_s``).

>>> ticks = iter([0.0, 0.5, 1.0, 1.5])
>>> throttle = Throttle(1.0, clock=lambda: next(ticks))
>>> throttle.mark()  # done at 0.0
>>> throttle.due(), throttle.due()  # at 0.5, then at 1.0
(False, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """Due once ``every_s`` seconds (0: always) have passed on ``clock`` since :meth:`mark`;
    due from the start until it is first marked. Both take the time read by the caller
    (``now``), so one clock reading can decide and mark; ``clock`` is for tests."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._marked_at = -math.inf

    def due(self, now: float | None = None) -> bool:
        """Whether ``every_s`` seconds have passed since the last mark."""
        return (self.clock() if now is None else now) - self._marked_at >= self.every_s

    def mark(self, now: float | None = None) -> None:
        """The work was done now (or at ``now``): the next is due ``every_s`` after it."""
        self._marked_at = self.clock() if now is None else now
