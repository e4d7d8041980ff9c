from __future__ import annotations

import base64
import math
from pathlib import Path

from skier.history import History
from skier.report import render_report, write_report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PNG = b"\x89PNG\r\n\x1a\n" + b"fake image bytes"


def _history() -> History:
    history = History()
    history.extend(
        [
            {"epoch": 1, "loss": 1.25, "error": 0.5, "val_loss": 1.5, "val_error": 0.6},
            {"epoch": 2, "loss": 0.75, "error": 0.25, "val_loss": math.nan},
            {"epoch": 3, "loss": 0.5, "error": 0.125, "val_loss": 0.875, "val_error": 0.3125},
        ]
    )
    return history


def _result(**extra: object) -> dict[str, object]:
    return {
        "run_id": "20261121-215501-3fa2c1",
        "status": "stopped",
        "stop_reason": "early stopping",
        "best_epoch": 3,
        "monitor": "val_loss",
        "best_value": 0.875,
        "test_metrics": {"test_loss": 0.9375, "test_accuracy": 0.6875},
        **extra,
    }


def test_report_embeds_figures_and_shows_metrics(tmp_path: Path) -> None:
    png_file = tmp_path / "curves.png"
    png_file.write_bytes(PNG)
    page = render_report(
        title="digits-mlp",
        config={"optim": {"name": "sgd", "lr": 0.1}, "path": tmp_path},
        result=_result(),
        figures={"learning curves": png_file, "other": PNG},
        history=_history(),
    )
    encoded = base64.b64encode(PNG).decode()
    assert page.count(f'src="data:image/png;base64,{encoded}"') == 2
    assert "<figcaption>learning curves</figcaption>" in page
    # metrics table: final, best-epoch and test values
    assert "<td>0.9375</td>" in page and "<td>0.6875</td>" in page and "<td>0.875</td>" in page
    assert "<td>accuracy</td>" in page
    assert "<details><summary>Per-epoch metrics (3 epochs)</summary>" in page
    assert '<tr class="best"><td>3</td>' in page
    assert 'status status-stopped">stopped' in page and "early stopping" in page
    assert "lr: 0.1" in page and "name: sgd" in page
    # self-contained: no external resources
    for external in ("http://", "https://", "<link", "<script"):
        assert external not in page


def test_every_user_string_is_escaped() -> None:
    history = History()
    history.append({"epoch": 1, EVIL: 1.0})
    page = render_report(
        title=EVIL,
        config={EVIL: EVIL, "data": {"path": EVIL}},
        result=_result(run_id=EVIL, status=EVIL, stop_reason=EVIL, monitor=EVIL),
        figures={EVIL: PNG},
        history=history,
    )
    assert "<script" not in page
    assert ESCAPED in page
    assert "status-&lt;" not in page and "status status-" not in page  # unknown status: no class


def test_write_report_is_atomic(tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "run" / "report.html",
        title="t",
        config={},
        result={},
        figures={},
        history=None,
    )
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_the_averaged_weights_row_shows_their_test_value() -> None:
    history = History()
    history.extend([{"epoch": 1, "loss": 1.0, "val_loss": 1.25, "val_ema_loss": 1.125}])
    result = _result(best_epoch=1, test_metrics={"test_loss": 0.5, "test_ema_loss": 0.4375})
    page = render_report(title="t", config={}, result=result, figures={}, history=history)
    row = page.split("<td>val_ema_loss</td>")[1].split("</tr>")[0]
    assert row.endswith("<td>0.4375</td>")
    val_row = page.split("<td>val_loss</td>")[1].split("</tr>")[0]
    assert "0.5" not in val_row and "0.4375" not in val_row
