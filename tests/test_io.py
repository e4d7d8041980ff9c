"""Atomic writes and the background writer that checkpoints go through."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from skier._io import BackgroundWriter
from skier.errors import WriteError


def test_background_writes_land_in_order_and_close_waits(tmp_path: Path) -> None:
    with BackgroundWriter() as writer:
        for i in range(20):
            writer.write(tmp_path / "last.pt", f"epoch {i}".encode())
        writer.write(tmp_path / "best.pt", b"best")
    assert (tmp_path / "last.pt").read_bytes() == b"epoch 19"
    assert (tmp_path / "best.pt").read_bytes() == b"best"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_write_is_raised_by_the_next_write_and_later_ones_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    failed = threading.Event()

    def full(src: Any, dst: Any) -> None:
        if str(dst).endswith("2.pt"):
            failed.set()
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    writer = BackgroundWriter()
    writer.write(tmp_path / "1.pt", b"one")
    writer.write(tmp_path / "2.pt", b"two")
    assert failed.wait(10)
    with pytest.raises(WriteError, match=r"2\.pt' must be writable; got 'No space left"):
        writer.write(tmp_path / "3.pt", b"three")  # queued (and dropped) or refused ...
        writer.write(tmp_path / "4.pt", b"four")
        writer.close()  # ... the error is raised by one of them
    writer.close()  # nothing left to report
    assert (tmp_path / "1.pt").read_bytes() == b"one"
    assert not (tmp_path / "3.pt").exists() and not (tmp_path / "4.pt").exists()


def test_an_exception_on_its_way_out_still_waits_for_the_queued_writes(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), BackgroundWriter() as writer:
        writer.write(tmp_path / "last.pt", b"x" * 1_000_000)
        raise KeyboardInterrupt
    assert (tmp_path / "last.pt").stat().st_size == 1_000_000
