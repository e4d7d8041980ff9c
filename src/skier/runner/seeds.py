"""Runs over seeds: one config trained once per ``train.seed``, recorded as one group.

``skier train CONFIG --seeds 0,1,2`` calls :func:`run_seeds`. The group is a run of kind
``seeds`` with one training run of kind ``seed`` per seed under it (``parent_id``), each the
very run ``skier train`` would make with that ``train.seed`` (only ``train.seed`` and the run's
name differ; the data split, drawn from ``data.seed``, is the same for all). The group records
every metric's mean ± std over the seeds per epoch (``seed_bands.csv``, its store metrics are
the mean curves), each seed's values at its best epoch and their mean ± std (``seeds.csv``),
the band figure and its report::

    from skier.config import load_config
    from skier.runner import run_seeds
    group = run_seeds(load_config("examples/digits_mlp.yaml"), seeds=[0, 1, 2])
    print(group.summary["final"]["val_loss"])   # {'mean': ..., 'std': ...}
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from skier import __version__
from skier._io import atomic_write_text
from skier.config import RunConfig, config_from_mapping, config_to_yaml
from skier.config.search import parse_seeds, set_config_values
from skier.data import DataBundle, load_data
from skier.history import History
from skier.record import (
    SCHEMA_VERSION,
    RunDir,
    RunStore,
    capture_environment,
    new_run_id,
)
from skier.record.groups import SeedBands, mean_std, seed_bands
from skier.record.rundir import RunFiles
from skier.report import write_run_report
from skier.runner._search import _annotate
from skier.runner.lifecycle import resolve_store_url, run_ending, run_name
from skier.runner.preflight import config_sections, preflight, raise_problems
from skier.runner.trackers import (
    close_group_tracker,
    group_run_id,
    open_group_tracker,
    trackers_ending,
)
from skier.runner.training import RunOutcome, run_training
from skier.search.crossval import chosen_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SeedsOutcome", "run_seeds", "seed_config"]


@dataclass
class SeedsOutcome:
    """Where a group of runs over seeds was written and what it found (``summary`` is its
    result.json): ``runs`` are the seeds' runs in order, ``bands`` every metric's mean ± std."""

    run_id: str
    run_dir: Path
    store_url: str
    status: str
    summary: dict[str, Any]
    runs: list[RunOutcome] = field(default_factory=list)
    bands: SeedBands = field(default_factory=lambda: SeedBands([]))
    stop_reason: str | None = None

    def plot(self, metrics: Sequence[str] | None = None) -> Figure:
        """Every metric (or ``metrics``) as mean ± std bands over the seeds
        (:func:`skier.plots.seeds.plot_seed_bands_figure`); a notebook shows the figure.

        >>> group.plot(["val_loss"])   # doctest: +SKIP
        """
        from skier.plots.seeds import plot_seed_bands_figure

        return plot_seed_bands_figure(self.bands, metrics)

    def __repr__(self) -> str:
        final = self.summary.get("final") or {}
        keys = [k for k in ("val_loss", "val_error", "val_accuracy") if k in final] or list(final)
        shown = ", ".join(
            f"{k} {final[k]['mean']:.4g} ± {final[k]['std']:.4g}" for k in keys[:3]
            if isinstance(final[k], Mapping) and final[k].get("mean") is not None
            and final[k].get("std") is not None
        )  # fmt: skip
        seeds = ",".join(str(s) for s in self.summary.get("seeds", []))
        return f"SeedsOutcome(seeds {seeds}: {shown or self.status}; {self.run_dir})"

    def _repr_html_(self) -> str:
        """One row per seed (values at its best epoch), then their mean ± std (notebooks)."""
        from skier._html import html_table

        final = self.summary.get("final") or {}
        keys = [k for k in ("val_loss", "val_error", "val_accuracy") if k in final]
        rows: list[list[object]] = [
            [r["seed"], r["run_id"], r["status"], r["epochs_done"], r["best_epoch"],
             *[r["metrics"].get(k) for k in keys]]
            for r in self.summary.get("runs", [])
        ]  # fmt: skip
        spread = [f"{final[k]['mean']:.4g} ± {final[k]['std']:.4g}" for k in keys]
        rows.append(["mean ± std", "", "", "", "", *spread])
        head = ["seed", "run", "status", "epochs", "best epoch", *keys]
        caption = f"Runs over seeds ({self.status}): {self.run_dir}"
        return html_table(head, rows, caption=caption)


def seed_config(config: RunConfig, seed: int, name: str | None = None) -> RunConfig:
    """``config`` with ``train.seed`` set to ``seed`` (and the run named ``NAME-seedSEED``).

    >>> seed_config(RunConfig(), 3).train.seed, seed_config(RunConfig(), 3, "mine").record.name
    (3, 'mine-seed3')
    """
    values: dict[str, Any] = {"train.seed": int(seed)}
    if name is not None:
        values["record.name"] = f"{name}-seed{seed}"
    return config_from_mapping(
        set_config_values(config.model_dump(mode="json"), values), f"seed {seed} config"
    )


def run_seeds(
    config: RunConfig,
    seeds: Sequence[int] | str,
    *,
    base_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    progress: bool | Literal["auto"] = "auto",
    echo: Callable[[str], None] | None = None,
    epoch_lines: bool = False,
    data: DataBundle | None = None,
    parent_id: str | None = None,
    should_stop: Callable[[list[RunOutcome]], str | None] | None = None,
    plots: bool = True,
    tracker_parent: str | None = None,
) -> SeedsOutcome:
    """Train ``config`` once per seed in ``seeds`` and record them as one group.

    The group gets ``OUT/<id>/`` (``config.yaml``, ``metrics.csv`` with the mean curves,
    ``seed_bands.csv``, ``seeds.csv``, ``seed_bands.png``, ``result.json``, ``report.html``);
    the seeds' runs go to ``OUT/<id>/seeds/<run id>/``, all in one store. ``should_stop(runs so
    far)`` may return a reason to stop before the next seed (tuning prunes with it); the group
    then ends ``stopped``. Everything is checked before anything is written. With
    ``record.loggers: [mlflow]`` the group is an MLflow run (under ``tracker_parent`` if given)
    with the seeds' mean of each final metric, and each seed's MLflow run is nested under it.

    >>> group = run_seeds(config, [0, 1, 2], out_dir="runs")   # doctest: +SKIP
    """
    seeds = parse_seeds(seeds, "seeds")
    say = echo or (lambda _m: None)
    base = Path(base_dir) if base_dir is not None else None
    root = Path(out_dir) if out_dir is not None else Path(config.record.dir)
    url = resolve_store_url(store_url, config.record.store, root)
    if data is None:
        raise_problems([], *preflight(config_sections(config), base, resuming=False))
        data = load_data(config.data, base_dir=base)  # once: every seed trains on the same split
    name = run_name(config, "seeds")
    run_id = new_run_id()
    run_dir = RunDir.create(root, run_id)
    run_dir.checkpoints.rmdir()  # the seeds' runs keep their own; the group has none
    run_dir.write_config(config_to_yaml(config))
    with RunStore(url) as store:
        store.create_run(
            name,
            config.model_dump(mode="json") | {"seeds": seeds},
            run_dir.path,
            kind="seeds",
            task=data.task,
            run_id=run_id,
            parent_id=parent_id,
        )
    say(f"seeds {run_id} → {run_dir.path} (seeds {', '.join(map(str, seeds))})")
    group = open_group_tracker(
        config,
        run_dir,
        run_id=run_id,
        kind="seeds",
        name=name,
        task=data.task,
        store_url=url,
        mlflow_parent=tracker_parent,
        echo=say,
    )
    runs: list[RunOutcome] = []
    stop_reason = None
    started = time.perf_counter()
    with run_ending(url, run_id, started=started), trackers_ending([group], run_dir):
        for seed in seeds:
            outcome = run_training(
                seed_config(config, seed, run_name(config)),
                base_dir=base,
                out_dir=run_dir.path / RunFiles.SEEDS,
                store_url=url,
                progress=progress,
                echo=echo,
                epoch_lines=epoch_lines,
                data=data,
                kind="seed",
                parent_id=run_id,
                tracker_parent=group_run_id(group),
            )
            runs.append(outcome)
            _annotate(url, outcome, {"group_run_id": run_id, "seed": seed})
            say(_seed_line(seed, outcome))
            stop_reason = should_stop(runs) if should_stop is not None else None
            if stop_reason:
                break
    bands = seed_bands({seed: o.result.history for seed, o in zip(seeds, runs, strict=False)})
    summary = _summary(name, run_id, seeds, runs, bands, stop_reason)
    summary["duration_s"] = time.perf_counter() - started
    _write_outputs(config, run_dir, url, summary, bands, plots)
    mean_rows = bands.mean_rows()
    last = mean_rows[-1] if mean_rows else {}
    close_group_tracker(
        group,
        run_dir,
        summary["status"],
        stop_reason=stop_reason,
        metrics={f"mean_{k}": v for k, v in last.items() if k != "epoch"},
    )
    return SeedsOutcome(
        run_id, run_dir.path, url, summary["status"], summary, runs, bands, stop_reason
    )


def _seed_line(seed: int, outcome: RunOutcome) -> str:
    result = outcome.result
    best = ""
    if result.best_epoch is not None and result.best_value is not None:
        best = f", best {result.monitor} {result.best_value:.4g} at epoch {result.best_epoch}"
    return (
        f"seed {seed}: {outcome.status}, {result.epochs_done} epochs{best} (run {outcome.run_id})"
    )


def _summary(
    name: str,
    run_id: str,
    seeds: list[int],
    runs: Sequence[RunOutcome],
    bands: SeedBands,
    stop_reason: str | None,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for seed, outcome in zip(seeds, runs, strict=False):
        result = outcome.result
        rows.append(
            {
                "seed": seed,
                "run_id": outcome.run_id,
                "run_dir": str(outcome.run_dir),
                "status": outcome.status,
                "epochs_done": result.epochs_done,
                "best_epoch": result.best_epoch,
                "best_value": result.best_value,
                "metrics": chosen_metrics(result.history.rows, result.best_epoch),
                "test_metrics": dict(result.test_metrics),
            }
        )
    statuses = [r["status"] for r in rows]
    status = "failed" if "failed" in statuses else "stopped" if stop_reason else "completed"
    monitors = {o.result.monitor for o in runs}
    return {
        "run_id": run_id,
        "name": name,
        "kind": "seeds",
        "status": status,
        "stop_reason": stop_reason,
        "seeds": seeds,
        "seeds_done": [r["seed"] for r in rows],
        "monitor": monitors.pop() if len(monitors) == 1 else None,
        "best_value": mean_std(r["best_value"] for r in rows)[0] if rows else None,
        "epochs_done": max((r["epochs_done"] for r in rows), default=0),
        "final": _spread([r["metrics"] for r in rows]),
        "test": _spread([r["test_metrics"] for r in rows]),
        "runs": rows,
        "bands": bands.to_dict()["bands"],
        "skier_version": __version__,
        "schema_version": SCHEMA_VERSION,
    }


def _spread(values: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Each key's mean and std over the seeds (values at each run's best epoch, or its test)."""
    keys: list[str] = []
    for row in values:
        keys += [k for k in row if k not in keys and k not in ("epoch", "epoch_time")]
    out = {}
    for key in keys:
        mean, std = mean_std(row.get(key) for row in values)
        count = sum(1 for row in values if math.isfinite(row.get(key, math.nan)))
        out[key] = {"mean": mean, "std": std, "n": count}
    return out


def _seeds_csv(summary: Mapping[str, Any]) -> str:
    rows = summary["runs"]
    keys = list(summary["final"])
    tests = [k if k.startswith("test_") else f"test_{k}" for k in summary["test"]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["seed", "run_id", "status", "epochs_done", "best_epoch", *keys, *tests])
    for row in rows:
        test = [row["test_metrics"].get(k) for k in summary["test"]]
        writer.writerow(
            [row["seed"], row["run_id"], row["status"], row["epochs_done"],
             "" if row["best_epoch"] is None else row["best_epoch"],
             *["" if row["metrics"].get(k) is None else repr(row["metrics"][k]) for k in keys],
             *["" if v is None else repr(v) for v in test]]
        )  # fmt: skip
    for stat in ("mean", "std"):
        cells = [summary["final"][k][stat] for k in keys] + [
            summary["test"][k][stat] for k in summary["test"]
        ]
        writer.writerow([stat, "", "", "", "", *["" if not math.isfinite(v) else repr(v)
                                                  for v in cells]])  # fmt: skip
    return buf.getvalue()


def _write_outputs(
    config: RunConfig,
    run_dir: RunDir,
    url: str,
    summary: dict[str, Any],
    bands: SeedBands,
    plots: bool,
) -> None:
    run_id = run_dir.run_id
    mean = History(rows=bands.mean_rows())
    run_dir.write_metrics(mean)
    atomic_write_text(run_dir.path / RunFiles.SEED_BANDS_CSV, bands.to_csv())
    atomic_write_text(run_dir.path / RunFiles.SEEDS_CSV, _seeds_csv(summary))
    test = {k: v["mean"] for k, v in summary["test"].items() if math.isfinite(v["mean"])}
    run_dir.write_result(summary | {"test_metrics": test, "environment": capture_environment()})
    written = [
        (RunFiles.CONFIG, run_dir.config_path, "config"),
        (RunFiles.METRICS, run_dir.metrics_csv, "csv"),
        (RunFiles.SEED_BANDS_CSV, run_dir.path / RunFiles.SEED_BANDS_CSV, "csv"),
        (RunFiles.SEEDS_CSV, run_dir.path / RunFiles.SEEDS_CSV, "csv"),
        (RunFiles.RESULT, run_dir.result_json, "json"),
    ]
    if plots and config.record.plots and bands.bands:
        from skier.plots import save_figure
        from skier.plots.seeds import plot_seed_bands_figure

        png = run_dir.path / RunFiles.SEED_BANDS_PNG
        save_figure(plot_seed_bands_figure(bands), png)
        written.append((RunFiles.SEED_BANDS_PNG, png, "figure"))
    with RunStore(url) as store:
        for row in mean.rows:
            store.log_epoch(run_id, int(row["epoch"]), row)
        for file_name, path, kind in written:
            store.add_artifact(run_id, file_name, path, kind)
        best = summary["best_value"]
        store.finish_run(
            run_id,
            summary["status"],
            epochs_done=summary["epochs_done"],
            monitor=summary["monitor"],
            best_value=best if best is not None and math.isfinite(best) else None,
            stop_reason=summary["stop_reason"],
            duration_s=summary["duration_s"],
            test_metrics=test,
            summary=summary,
        )
        if config.record.report:
            write_run_report(run_dir.path, store=store)
            store.add_artifact(run_id, RunFiles.REPORT, run_dir.report_html, "report")
