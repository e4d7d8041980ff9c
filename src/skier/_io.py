"""Atomic file writes (temp file in the same directory + ``os.replace``). Standard library only."""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from skier.errors import WriteError

__all__ = ["BackgroundWriter", "atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | Path, data: bytes, *, sync: bool = True) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    ``sync`` also flushes the data to the disk before the rename, so that the new file survives
    a power cut, not only a crash of the process; ``sync=False`` is for files rewritten often
    whose content is kept elsewhere too (``metrics.csv``: the store holds every epoch).

    A failing write (disk full, no permission) raises :class:`~skier.errors.WriteError` naming
    the file; the file that was there before is left as it was.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WriteError(
            f"file {str(path)!r} must be writable; got {reason!r}. Free some space or fix the "
            "permissions; the previous version of the file is intact."
        ) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, sync: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), sync=sync)


class BackgroundWriter:
    """Atomic writes done in order on one background thread while the caller goes on.

    Training hands each checkpoint's bytes here and starts the next epoch while the file is
    written and synced. At most ``pending`` writes wait (then :meth:`write` blocks), so memory stays
    bounded when the disk is slower than training. A failed write is raised, as the same
    :class:`~skier.errors.WriteError`, by the next :meth:`write` or by :meth:`close`; writes queued
    after it are dropped, so the last file that was written stays the last good one. Leaving the
    ``with`` block waits for every queued write, also when an exception is on its way out.
    """

    def __init__(self, pending: int = 4) -> None:
        self._queue: queue.Queue[tuple[Path, bytes] | None] = queue.Queue(maxsize=pending)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, path: str | Path, data: bytes) -> None:
        self._raise_pending()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="skier-writer", daemon=True)
            self._thread.start()
        self._queue.put((Path(path), data))

    def close(self) -> None:
        """Wait for every queued write; raise the first that failed."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    atomic_write_bytes(*item)
                except BaseException as exc:  # handed to the training thread
                    self._error = exc

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
            return
        # An exception is on its way out: still finish the writes; it is the one to report.
        with contextlib.suppress(BaseException):
            self.close()
