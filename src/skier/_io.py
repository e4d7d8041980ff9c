"""Atomic file writes (temp file in the same directory + ``os.replace``). Standard library only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from skier.errors import WriteError

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

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


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
