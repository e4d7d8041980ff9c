"""Cross-validation and search results as tables: HTML for a notebook, a short line for a
terminal, a DataFrame for pandas. Each reads the run's summary (its ``result.json``), so a
result in memory and a finished run read back show the same.

>>> summary = {"name": "digits-cv", "plan": "2-fold", "metric": "val_loss", "status": "completed",
...            "value": 0.3, "std": 0.1, "median_epoch": 2, "mean": {"val_loss": 0.3},
...            "std_by_metric": {"val_loss": 0.1}, "folds": [
...     {"number": 1, "repeat": 1, "fold": 1, "run_id": "a", "status": "completed",
...      "epochs_done": 2, "chosen_epoch": 2, "val_loss": 0.2},
...     {"number": 2, "repeat": 1, "fold": 2, "run_id": "b", "status": "completed",
...      "epochs_done": 2, "chosen_epoch": 1, "val_loss": 0.4}]}
>>> cv_text(summary)
'digits-cv: 2-fold, val_loss 0.3 ± 0.1 over 2 folds, median epoch 2 (completed)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from skier._html import cell_text, data_frame, html_table

__all__ = ["cv_frame", "cv_html", "cv_text", "trials_frame", "tune_html", "tune_text"]

# A notebook shows the best trials of a long search, not all of them (to_pandas has them all).
_TRIALS_SHOWN = 25
_LEFT_OUT = ("epoch", "epoch_time", "lr", "penalty")


def _number(value: Any) -> str:
    return "" if value is None else cell_text(float(value)) if _finite(value) else "nan"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def _cv_keys(summary: Mapping[str, Any]) -> list[str]:
    """The metrics the folds logged: validation ones first, the cv metric leading."""
    found = [k for k in summary.get("mean") or {} if k not in _LEFT_OUT and "grad" not in k]
    metric = summary.get("metric")
    first = [metric] if metric in found else []
    rest = [k for k in found if k not in first]
    return (
        first
        + [k for k in rest if k.startswith("val_")]
        + [k for k in rest if not k.startswith("val_")]
    )


def cv_text(summary: Mapping[str, Any]) -> str:
    """One line: the plan, the metric's mean ± std over the folds, the median chosen epoch."""
    folds = len(summary.get("folds") or [])
    found = (
        f"{summary.get('metric')} {_number(summary.get('value'))} ± "
        f"{_number(summary.get('std'))} over {folds} fold{'' if folds == 1 else 's'}"
    )
    text = f"{summary.get('name', 'cv')}: {summary.get('plan', '')}, {found}"
    if summary.get("median_epoch") is not None:
        text += f", median epoch {summary['median_epoch']}"
    return text + f" ({summary.get('stop_reason') or summary.get('status', 'unknown')})"


def cv_html(summary: Mapping[str, Any]) -> str:
    """What the cross-validation found, then one row per fold and their mean ± std."""
    keys = _cv_keys(summary)
    mean, std = summary.get("mean") or {}, summary.get("std_by_metric") or {}
    facts: list[list[object]] = [
        ["plan", summary.get("plan", "")],
        [f"{summary.get('metric')} (mean ± std)",
         f"{_number(summary.get('value'))} ± {_number(summary.get('std'))}"],
        ["median chosen epoch", summary.get("median_epoch")],
        ["status", summary.get("stop_reason") or summary.get("status", "")],
    ]  # fmt: skip
    refit = summary.get("refit") or {}
    if refit:
        facts.append(["refit", f"run {refit.get('run_id')}, {refit.get('epochs')} epochs"])
        facts += [[k, v] for k, v in (refit.get("test_metrics") or {}).items()]
    if summary.get("run_id"):
        facts.append(["run", summary["run_id"]])
    head = ["fold", "run", "status", "epochs", "chosen epoch", *keys]
    rows: list[list[object]] = [
        [f"{r.get('repeat', 1)}.{r.get('fold', r.get('number'))}", r.get("run_id"),
         r.get("status"), r.get("epochs_done"), r.get("chosen_epoch"),
         *[r.get(k) for k in keys]]
        for r in summary.get("folds") or []
    ]  # fmt: skip
    total: list[object] = ["mean ± std", "", "", "", f"median {summary.get('median_epoch')}"]
    rows.append(total + [f"{_number(mean.get(k))} ± {_number(std.get(k))}" for k in keys])
    caption = f"Cross-validation {summary.get('name', '')}"
    return html_table([caption, ""], facts) + html_table(head, rows, caption="Folds")


def cv_frame(summary: Mapping[str, Any]) -> Any:
    """One row per fold (its run, status, epochs, chosen epoch and metrics), as a DataFrame."""
    return data_frame(summary.get("folds") or [], None, owner="the cv result's to_pandas")


def _best_first(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    sign = 1.0 if summary.get("direction", "minimize") == "minimize" else -1.0
    complete = [t for t in summary["trials"] if t["state"] == "complete" and _finite(t["value"])]
    complete.sort(key=lambda t: sign * float(t["value"]))
    rest = [t for t in summary["trials"] if t not in complete]
    return complete + rest


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={cell_text(v)}" for k, v in params.items())


def tune_text(summary: Mapping[str, Any]) -> str:
    """One line: how many trials in which states, the best value and its parameters."""
    counts = ", ".join(f"{n} {s}" for s, n in (summary.get("counts") or {}).items())
    trials = len(summary.get("trials") or [])
    text = f"{summary.get('name', summary.get('study', 'search'))}: {trials} trials"
    text += f" ({counts})" if counts else ""
    best = summary.get("best")
    if best:
        text += (
            f", best {summary.get('metric', 'value')} {_number(best.get('value'))} at trial "
            f"{best.get('number')} ({_params_text(best.get('params') or {})})"
        )
    return text


def _param_names(summary: Mapping[str, Any]) -> list[str]:
    names = list(summary.get("space") or {})
    for t in summary.get("trials") or []:
        names += [n for n in t.get("params") or {} if n not in names]
    return names


def tune_html(summary: Mapping[str, Any]) -> str:
    """The search's best trial and settings, then its trials, best first."""
    best = summary.get("best") or {}
    counts = ", ".join(f"{n} {s}" for s, n in (summary.get("counts") or {}).items())
    facts: list[list[object]] = [
        ["objective", f"{summary.get('metric', 'value')} ({summary.get('direction', '')})"],
        ["trials", counts],
        ["best trial", best.get("number")],
        [f"best {summary.get('metric', 'value')}", best.get("value")],
        ["best params", _params_text(best.get("params") or {})],
    ]
    importances = summary.get("importances") or {}
    if importances:
        facts.append(["importances", ", ".join(f"{k} {v:.2f}" for k, v in importances.items())])
    trained = summary.get("trained") or {}
    facts += [[k, v] for k, v in (trained.get("test_metrics") or {}).items()]
    if summary.get("run_id"):
        facts.append(["run", summary["run_id"]])
    names = _param_names(summary)
    ordered = _best_first(summary)
    caption = f"Trials, best first ({len(ordered)})"
    if len(ordered) > _TRIALS_SHOWN:
        caption = f"Trials: the best {_TRIALS_SHOWN} of {len(ordered)} (to_pandas() has all)"
    head = ["trial", "state", "value", *names, "epochs", "note"]
    rows: list[list[object]] = [
        [t["number"], t["state"] + (" (best)" if t["number"] == best.get("number") else ""),
         t.get("value"), *[t["params"].get(n) for n in names], t.get("epochs"), t.get("note")]
        for t in ordered[:_TRIALS_SHOWN]
    ]  # fmt: skip
    title = f"Search {summary.get('name', summary.get('study', ''))}"
    return html_table([title, ""], facts) + html_table(head, rows, caption=caption)


def trials_frame(summary: Mapping[str, Any]) -> Any:
    """One row per trial (number, state, value, each parameter, epochs, ...), as a DataFrame."""
    names = _param_names(summary)
    rows = [
        {"number": t["number"], "state": t["state"], "value": t.get("value"),
         **{n: t["params"].get(n) for n in names},
         **{k: t.get(k) for k in ("epochs", "duration_s", "run_id", "note")}}
        for t in summary.get("trials") or []
    ]  # fmt: skip
    head: Sequence[str] = ["number", "state", "value", *names, "epochs", "duration_s", "run_id",
                           "note"]  # fmt: skip
    return data_frame(rows, head, owner="the tune result's to_pandas")
