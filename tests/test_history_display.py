"""History reads as a short line in a terminal and as a table in a notebook."""

from __future__ import annotations

import builtins
import math

import pytest

from skier.history import History


def _history(epochs: int) -> History:
    h = History()
    h.extend({"epoch": e, "loss": 1.0 / e, "val_loss": math.nan if e % 2 else 2.0 / e}
             for e in range(1, epochs + 1))  # fmt: skip
    h.add_step("lr", 0.1)
    return h


def test_repr_is_one_short_line_whatever_the_length() -> None:
    assert repr(_history(500)) == "History(500 epochs: epoch, loss, val_loss; per-step: lr)"
    assert repr(History()) == "History(0 epochs: no keys)"


def test_html_is_a_table_of_every_epoch_when_short() -> None:
    page = _history(3)._repr_html_()
    assert page.startswith("<table><caption>History: 3 epochs; per-step series: lr (1)</caption>")
    assert "<th>epoch</th><th>loss</th><th>val_loss</th>" in page
    assert page.count("<tr>") == 4  # the head and 3 epochs
    assert "<td>1</td><td>1</td><td></td>" in page  # an epoch without validation: empty


def test_html_of_a_long_history_shows_its_first_and_last_epochs() -> None:
    page = _history(60)._repr_html_()
    assert "(the first 10 and the last 10)" in page
    assert page.count("<tr>") == 1 + 10 + 1 + 10
    assert "<td>60</td>" in page and "<td>30</td>" not in page


def test_html_escapes_keys() -> None:
    h = History(rows=[{"<script>alert(1)</script>": 1.0}])
    assert "<script>" not in h._repr_html_()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in h._repr_html_()


def test_to_pandas_has_a_column_per_key() -> None:
    pytest.importorskip("pandas", reason="pandas is not installed")
    frame = _history(4).to_pandas()
    assert frame.columns.tolist() == ["epoch", "loss", "val_loss"]
    assert len(frame) == 4 and math.isnan(frame["val_loss"][0])


def test_to_pandas_without_pandas_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pandas(name: str, *args: object, **kwargs: object) -> object:
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"needs pandas.*pip install 'skier\[notebook\]'"):
        _history(2).to_pandas()
