"""Everything known about a run, gathered from the store and its run directory (read side).

A :class:`RunView` is what ``skier show``, ``skier report``, ``skier compare`` and the dashboard
read: the store row (status, best epoch, test metrics), the per-epoch metrics, the files of its
run directory (``result.json``, ``config.yaml``, ``lr.csv``, figures) and the runs that belong to
it or looked at it (diagnostics, CV folds, trials). No torch here.

>>> import tempfile
>>> from skier.record import RunStore, default_store_url
>>> with RunStore(default_store_url(tempfile.mkdtemp())) as store:
...     run_id = store.create_run("digits", {"optim": {"lr": 0.1}}, None)
...     store.log_epoch(run_id, 1, {"loss": 0.5})
...     view = load_view(run_id, store=store)
>>> view.name, view.status, view.history.column("loss")
('digits', 'running', [0.5])
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skier.errors import StoreError, problem
from skier.history import History
from skier.record import RunDir, RunFiles, RunRecord, RunStore, flatten_config
from skier.record.kinds import DIAGNOSTIC_KINDS, RUN_KINDS

__all__ = [
    "DIAGNOSTIC_KINDS",
    "RunView",
    "config_differences",
    "export_csv",
    "export_json",
    "load_view",
    "resolve_run",
]

# DIAGNOSTIC_KINDS (runs that look at another run and are shown in its report) comes from the
# registry of run kinds, skier.record.kinds.


@dataclass
class RunView:
    """One run as the read side sees it. ``record`` is None for a run directory outside any
    store; ``run_dir`` is None for a store row whose folder is gone."""

    id: str
    record: RunRecord | None
    run_dir: Path | None
    result: dict[str, Any]
    config: dict[str, Any]
    history: History
    children: list[RunRecord] = field(default_factory=list)
    parent: RunRecord | None = None
    diagnostics: list[RunView] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.record is not None:
            return self.record.name
        return str(self.result.get("name") or self.id)

    @property
    def kind(self) -> str:
        if self.record is not None:
            return self.record.kind
        return str(self.result.get("kind") or "train")

    @property
    def status(self) -> str:
        # result.json is written before the store row is finished: prefer the file's word.
        found = self.result.get("status")
        if isinstance(found, str) and found:
            return found
        return self.record.status if self.record is not None else "unknown"

    @property
    def summary(self) -> dict[str, Any]:
        """What a diagnostic, CV or search run found (result.json's ``summary`` or the store's)."""
        nested = self.result.get("summary")
        if isinstance(nested, Mapping):
            return dict(nested)
        if self.record is not None and self.record.summary:
            return self.record.summary
        # a search's (and a group's) result.json holds its summary at the top level
        known = RUN_KINDS.get(self.kind)
        return dict(self.result) if known is not None and known.role in ("search", "group") else {}

    @property
    def test_metrics(self) -> dict[str, float]:
        found = self.result.get("test_metrics")
        if isinstance(found, Mapping) and found:
            return {str(k): float(v) for k, v in found.items() if isinstance(v, int | float)}
        return self.record.test_metrics if self.record is not None else {}

    def get(self, key: str) -> Any:
        """A fact from result.json, else from the store row (``best_epoch``, ``stop_reason``...)."""
        if self.result.get(key) is not None:
            return self.result[key]
        return getattr(self.record, key, None) if self.record is not None else None

    def file(self, name: str) -> Path | None:
        """``run_dir/name`` if it exists."""
        if self.run_dir is None:
            return None
        path = self.run_dir / name
        return path if path.is_file() else None

    def lr_steps(self) -> list[float]:
        """The lr of every optimizer step (``lr.csv``), empty when not recorded."""
        path = self.file(RunFiles.LR_CSV)
        if path is None:
            return []
        values = []
        for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
            try:
                values.append(float(row["lr"]))
            except (KeyError, TypeError, ValueError):
                continue
        return values

    def figures(self) -> list[Path]:
        """The PNG files of the run directory, by name."""
        if self.run_dir is None or not self.run_dir.is_dir():
            return []
        return sorted(self.run_dir.glob("*.png"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_run(ref: str, store: RunStore | None) -> tuple[RunRecord | None, Path | None]:
    """What ``ref`` names: a run id, a unique id prefix, a run name (the newest run of that
    name) or a run directory. :class:`StoreError` when it names nothing or several runs.

    >>> resolve_run("nothing-here", None)
    Traceback (most recent call last):
    skier.errors.StoreError: run must be a run id, id prefix, name or run directory; got 'nothing-here'. List the runs with `skier runs`.
    """  # noqa: E501
    path = Path(ref)
    if path.is_dir() and ((path / RunFiles.RESULT).is_file() or (path / RunFiles.CONFIG).is_file()):
        record = None
        if store is not None:
            found = [r for r in store.find_runs(path.name) if r.id == path.name]
            record = found[0] if found else None
        return record, path
    if store is not None:
        found = store.find_runs(ref)
        if found:
            if len(found) > 1 and all(r.id != ref for r in found):
                by_name = all(r.name == ref for r in found)
                if not by_name:
                    ids = ", ".join(r.id for r in found[:5])
                    raise StoreError(
                        problem(
                            "run",
                            "one run",
                            ref,
                            f"It starts {len(found)} run ids ({ids}); give more of the id.",
                        )
                    )
            record = found[0]
            folder = Path(record.run_dir) if record.run_dir else None
            return record, folder
    raise StoreError(
        problem(
            "run",
            "a run id, id prefix, name or run directory",
            ref,
            "List the runs with `skier runs`.",
        )
    )


def _sources_beside(run_dir: Path, run_id: str) -> list[Path]:
    """Diagnostic run directories beside ``run_dir`` whose result.json names it as source."""
    found: list[Path] = []
    parent = run_dir.parent
    if not parent.is_dir():
        return found
    for other in sorted(parent.iterdir()):
        result = other / RunFiles.RESULT
        if other == run_dir or not result.is_file():
            continue
        data = _read_json(result)
        if data.get("source_run") == run_id and data.get("kind") in DIAGNOSTIC_KINDS:
            found.append(other)
    return found


def load_view(
    ref: str | Path,
    *,
    store: RunStore | None = None,
    related: bool = True,
) -> RunView:
    """The :class:`RunView` of ``ref`` (id, id prefix, name or run directory).

    ``related=False`` skips the runs that belong to it or looked at it (cheaper, e.g. for the
    dashboard's list).
    """
    record, run_dir = resolve_run(str(ref), store)
    run_id = record.id if record is not None else (run_dir.name if run_dir else str(ref))
    result: dict[str, Any] = {}
    config: dict[str, Any] = {}
    history: History | None = None
    if run_dir is not None and run_dir.is_dir():
        folder = RunDir(run_dir)
        if folder.result_json.is_file():
            result = _read_json(folder.result_json)
        if folder.config_path.is_file():
            config = _read_yaml(folder.config_path)
    if record is not None and store is not None:
        history = store.metrics(record.id)
        if not config:
            config = record.config
    if (history is None or not len(history)) and run_dir is not None:
        csv_path = run_dir / RunFiles.METRICS
        if csv_path.is_file():
            history = History.from_csv(csv_path)
    view = RunView(run_id, record, run_dir, result, config, history or History())
    if not related:
        return view
    seen: set[str] = set()
    if store is not None and record is not None:
        view.children = store.list_runs(limit=100_000, parent_id=record.id)
        if record.parent_id:
            found = store.find_runs(record.parent_id)
            view.parent = found[0] if found and found[0].id == record.parent_id else None
        for child in view.children:
            if child.kind in DIAGNOSTIC_KINDS:
                view.diagnostics.append(load_view(child.id, store=store, related=False))
                seen.add(child.id)
    if run_dir is not None and (store is None or record is None):
        # Outside a store (or a store that does not know the run): diagnostics beside it.
        for other in _sources_beside(run_dir, run_id):
            if other.name not in seen:
                view.diagnostics.append(load_view(str(other), store=None, related=False))
                seen.add(other.name)
    view.diagnostics.sort(key=lambda v: v.id)
    return view


def config_differences(configs: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The settings whose values differ between runs: (dotted key, one value per run).

    >>> config_differences({"a": {"optim": {"lr": 0.1, "name": "sgd"}},
    ...                     "b": {"optim": {"lr": 0.01, "name": "sgd"}}})
    [('optim.lr', ['0.1', '0.01'])]
    """
    flat = [flatten_config(c) for c in configs.values()]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    out = []
    for key in sorted(keys):
        values = [f.get(key, "—") for f in flat]
        if len(set(values)) > 1:
            out.append((key, values))
    return out


def _plain(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def export_csv(views: Sequence[RunView]) -> str:
    """One row per run and epoch: ``run_id,name,epoch,<metric>...`` (empty where missing).

    >>> h = History(); h.append({"epoch": 1, "loss": 0.5})
    >>> print(export_csv([RunView("r1", None, None, {}, {}, h)]), end="")
    run_id,name,epoch,loss
    r1,r1,1,0.5
    """
    keys: list[str] = []
    for view in views:
        keys += [k for k in view.history.keys if k != "epoch" and k not in keys]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run_id", "name", "epoch", *keys])
    for view in views:
        for row in view.history.rows:
            epoch = row.get("epoch")
            cells = [
                "" if row.get(k) is None or math.isnan(row[k]) else repr(float(row[k]))
                for k in keys
            ]
            shown = "" if epoch is None or math.isnan(epoch) else int(epoch)
            writer.writerow([view.id, view.name, shown, *cells])
    return buf.getvalue()


def export_json(views: Sequence[RunView]) -> str:
    """Every run as a JSON object: facts, config, summary, test metrics and per-epoch rows."""
    out = []
    for view in views:
        record = view.record
        out.append(
            {
                "run_id": view.id,
                "name": view.name,
                "kind": view.kind,
                "status": view.status,
                "parent_id": record.parent_id if record else None,
                "created_at": record.created_at.isoformat() if record else None,
                "run_dir": str(view.run_dir) if view.run_dir else None,
                "epochs_done": view.get("epochs_done"),
                "best_epoch": view.get("best_epoch"),
                "monitor": view.get("monitor"),
                "best_value": view.get("best_value"),
                "stop_reason": view.get("stop_reason"),
                "duration_s": view.get("duration_s"),
                "test_metrics": view.test_metrics,
                "summary": view.summary,
                "config": view.config,
                "metrics": [{k: _plain(v) for k, v in row.items()} for row in view.history.rows],
            }
        )
    return json.dumps(out, indent=2, default=str, allow_nan=False) + "\n"
