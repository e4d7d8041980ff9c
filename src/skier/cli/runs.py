"""``skier runs``, ``show``, ``compare``, ``export``, ``rm``, ``report`` and ``serve``: looking at
runs already recorded. Nothing here trains; only `export --to` imports torch.

RUN arguments are a run id, a unique id prefix, a run name (its newest run) or a run directory.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from skier.cli.common import store_option
from skier.errors import StoreError, did_you_mean, problem
from skier.history import higher_is_better
from skier.record.rundir import RunFiles

__all__ = ["register"]

dir_option = click.option(
    "--dir", "runs_dir", default="runs", show_default=True, help="Runs folder (its skier.db)."
)


@contextmanager
def _store(runs_dir: str, url: str | None, *, required: bool = False) -> Iterator[Any]:
    """The store at ``url`` or ``runs_dir/skier.db``; None when there is none (and not
    required), so that run directories still work on their own."""
    from skier.record import RunStore, default_store_url

    if url is None and not (Path(runs_dir) / "skier.db").is_file():
        if required:
            raise StoreError(
                problem(
                    "store",
                    "an existing store",
                    str(Path(runs_dir) / "skier.db"),
                    "Train a run first, or pass --dir RUNS_FOLDER or --store URL.",
                )
            )
        yield None
        return
    store = RunStore(url or default_store_url(runs_dir)).open()
    try:
        yield store
    finally:
        store.close()


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --- runs ------------------------------------------------------------------------------------
@click.command("runs")
@dir_option
@store_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--kind", default=None, help="Only runs of this kind: train, landscape, lr_find, ...")
@click.option(
    "--sort",
    "sort",
    default=None,
    metavar="METRIC",
    help="Order by a metric (val_error: its value at the best epoch, else the last) or a column "
    "(created_at, name, epochs, best_value, duration_s, test_loss, test_accuracy, ...); "
    "best first.",
)
@click.option("--reverse", is_flag=True, help="Reverse the --sort order.")
def runs_command(
    runs_dir: str,
    store: str | None,
    limit: int,
    status: str | None,
    kind: str | None,
    sort: str | None,
    reverse: bool,
) -> None:
    """List runs from the store: id, kind, name, status, epochs, best val metric, test metric,
    time (newest first, or best first with --sort)."""
    if store is None and not (Path(runs_dir) / "skier.db").is_file():
        click.echo(f"no runs yet: {Path(runs_dir) / 'skier.db'} does not exist.")
        return
    with _store(runs_dir, store, required=True) as st:
        if sort is None:
            ranked = [(r, None) for r in st.list_runs(limit=limit, status=status, kind=kind)]
        else:
            descending = _higher_is_better(sort) != reverse
            ranked = st.rank_runs(
                sort, descending=descending, limit=limit, status=status, kind=kind
            )
        unknown = sort is not None and not st.is_sort_column(sort)
        if unknown and ranked and all(value is None for _, value in ranked):
            known = st.sort_keys()
            listed = ", ".join(known) if known else "none yet"
            click.echo(
                f"note: no run listed has a value of {sort!r} (the runs' metrics: "
                f"{listed}).{did_you_mean(str(sort), known)}",
                err=True,
            )
    if not ranked:
        click.echo("no runs.")
        return
    extra = f" {sort[:14]:>14}" if sort else ""
    click.echo(
        f"{'id':<24} {'kind':<10} {'name':<28} {'status':<11} {'epochs':>6}  "
        f"{'best':<22} {'test':<20} {'time':>8}{extra}"
    )
    for r, value in ranked:
        best = f"{r.monitor}={r.best_value:.4g}" if r.best_value is not None else "-"
        if r.test_metric_name and r.test_metric_value is not None:
            test = f"{r.test_metric_name}={r.test_metric_value:.4f}"
        elif r.test_loss is not None:
            test = f"loss={r.test_loss:.4g}"
        else:
            test = "-"
        secs = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        tail = f" {_fmt(value):>14}" if sort else ""
        click.echo(
            f"{r.id:<24} {r.kind[:10]:<10} {r.name[:28]:<28} {r.status:<11} "
            f"{r.epochs_done or 0:>6}  "
            f"{best[:22]:<22} {test[:20]:<20} {secs:>8}{tail}"
        )


def _higher_is_better(key: str) -> bool:
    return higher_is_better(key)


# --- show ------------------------------------------------------------------------------------
def _view(ref: str, store: Any, *, related: bool = True) -> Any:
    from skier.report.views import load_view

    return load_view(ref, store=store, related=related)


@click.command("show")
@click.argument("run")
@dir_option
@store_option
@click.option("--config/--no-config", "with_config", default=True, help="Print the config too.")
def show_command(run: str, runs_dir: str, store: str | None, with_config: bool) -> None:
    """Show one RUN: what it is, how it ended, its final and test metrics, its files, its
    config."""
    import yaml

    with _store(runs_dir, store) as st:
        view = _view(run, st)
    echo = click.echo
    echo(f"run {view.id} · {view.name}")
    facts = [f"kind {view.kind}", f"status {view.status}"]
    if view.record is not None:
        facts.append(f"started {view.record.created_at:%Y-%m-%d %H:%M:%S} UTC")
    if view.get("duration_s") is not None:
        facts.append(f"{float(view.get('duration_s')):.1f} s")
    echo(" · ".join(facts))
    if view.get("stop_reason"):
        echo(f"stop reason: {view.get('stop_reason')}")
    if view.get("error"):
        echo(f"error: {str(view.get('error')).strip().splitlines()[-1]}")
    epochs = view.get("epochs_done")
    if view.get("best_epoch") is not None:
        echo(
            f"best: {view.get('monitor')} {_fmt(view.get('best_value'))} at epoch "
            f"{view.get('best_epoch')} (of {epochs})"
        )
    history = view.history
    if len(history):
        last = history.rows[-1]
        values = ", ".join(f"{k} {_fmt(v)}" for k, v in last.items() if k != "epoch")
        echo(f"final metrics (epoch {int(last.get('epoch', len(history)))}): {values}")
    if view.test_metrics:
        echo("test: " + ", ".join(f"{k} {_fmt(v)}" for k, v in view.test_metrics.items()))
    summary = view.summary
    if summary and view.kind not in ("cv", "tune"):
        echo("found: " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary.items()
                                   if not isinstance(v, dict | list)))  # fmt: skip
    elif view.kind == "cv":
        echo(
            f"cv: {summary.get('plan')}, {summary.get('metric')} {_fmt(summary.get('value'))} "
            f"± {_fmt(summary.get('std'))}, median epoch {summary.get('median_epoch')}"
        )
    elif view.kind == "tune" and summary.get("best"):
        best = summary["best"]
        echo(f"best trial {best.get('number')}: value {_fmt(best.get('value'))}, "
             f"params {best.get('params')}")  # fmt: skip
    if view.parent is not None:
        echo(f"part of: {view.parent.kind} run {view.parent.id} ({view.parent.name})")
    if view.children:
        kinds: dict[str, int] = {}
        for child in view.children:
            kinds[child.kind] = kinds.get(child.kind, 0) + 1
        echo("runs that belong to it: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    if view.run_dir is not None:
        echo(f"run directory: {view.run_dir}")
        if view.run_dir.is_dir():
            echo("files:")
            for path in sorted(view.run_dir.iterdir()):
                size = (
                    f"{path.stat().st_size:>10,} B"
                    if path.is_file()
                    else f"{len(list(path.iterdir())):>8} files"
                )
                echo(f"  {path.name + ('/' if path.is_dir() else ''):<28} {size}")
    if with_config and view.config:
        echo("config:")
        text = yaml.safe_dump(view.config, sort_keys=False, default_flow_style=False)
        for line in text.splitlines():
            echo(f"  {line}")


# --- compare ---------------------------------------------------------------------------------
@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@dir_option
@store_option
@click.option("--metric", default=None, help="Only this metric's curves (e.g. val_error).")
@click.option(
    "--out",
    default="compare.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="PNG file for the overlaid curves.",
)
def compare_command(
    runs: tuple[str, ...], runs_dir: str, store: str | None, metric: str | None, out: str
) -> None:
    """Compare RUNS: their metrics side by side, the config settings that differ, and their
    curves overlaid in one figure."""
    from skier.plots import save_figure
    from skier.plots.compare import plot_compare_figure
    from skier.report.comparison import RunComparison

    with _store(runs_dir, store) as st:
        views = [_view(ref, st, related=False) for ref in runs]
    comparison = RunComparison.of(views, metric)
    keys = comparison.metrics
    width = max(len(v.id) for v in views)
    cell = 20 if comparison.bands else 12  # a group's cells read "mean ± std"
    click.echo(f"{'run':<{width}}  {'name':<24} {'status':<11} {'epochs':>6}  "
               + " ".join(f"{k[:cell]:>{cell}}" for k in keys))  # fmt: skip
    columns = [comparison.cells(k) for k in keys]
    for i, v in enumerate(views):
        cells = " ".join(f"{_fmt(column[i]):>{cell}}" for column in columns)
        click.echo(
            f"{v.id:<{width}}  {v.name[:24]:<24} {v.status:<11} {len(v.history):>6}  {cells}"
        )
    note = "metric values at each run's best epoch, else its last"
    if comparison.bands:
        note += "; a group over seeds: mean ± std of its seeds' values, curves drawn as bands"
    click.echo(f"({note})")
    diffs = comparison.differences
    if diffs:
        click.echo("config differences:")
        kw = max(len(k) for k, _ in diffs)
        click.echo(f"  {'setting':<{kw}}  " + "  ".join(f"{v.id:<22}" for v in views))
        for setting, values in diffs:
            click.echo(f"  {setting:<{kw}}  " + "  ".join(f"{val[:22]:<22}" for val in values))
    else:
        click.echo("config differences: none")
    histories = {v.id: v.history for v in views}
    bands = {v.id: comparison.bands[label] for v, label in zip(views, comparison.labels,
             strict=True) if label in comparison.bands}  # fmt: skip
    path = save_figure(plot_compare_figure(histories, keys, bands=bands), out)
    click.echo(f"curves: {path.resolve()}")


# --- export ----------------------------------------------------------------------------------
@click.command("export")
@click.argument("runs", nargs=-1, required=True)
@dir_option
@store_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv: one row per run and epoch; json: every run with config, summary and metrics.",
)
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="File (default: stdout)."
)
@click.option(
    "--to",
    type=click.Choice(["tensorboard", "mlflow"]),
    default=None,
    help="Send the runs to a tracker instead, every epoch (mlflow: MLFLOW_TRACKING_URI or "
    "record.mlflow_uri, else mlflow.db beside the runs).",
)
def export_command(
    runs: tuple[str, ...],
    runs_dir: str,
    store: str | None,
    fmt: str,
    out: str | None,
    to: str | None,
) -> None:
    """Export RUNS' per-epoch metrics (and, as JSON, their configs and findings), or send them
    to TensorBoard or MLflow (--to)."""
    from skier._io import atomic_write_text
    from skier.report.views import export_csv, export_json

    with _store(runs_dir, store) as st:
        views = [_view(ref, st, related=False) for ref in runs]
    if to is not None:
        from skier.runner.trackers import export_to_tracker

        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
        for view in views:
            done = export_to_tracker(view, to, mlflow_uri=uri, echo=click.echo)[to]
            click.echo(f"{view.id}: {len(view.history)} epochs to {to}: {done}")
        return
    text = export_csv(views) if fmt == "csv" else export_json(views)
    if out is None:
        click.echo(text, nl=False)
    else:
        path = atomic_write_text(out, text)
        click.echo(f"wrote {len(views)} run(s) to {path}", err=True)


# --- rm --------------------------------------------------------------------------------------
def _removable(folder: Path | None, run_id: str) -> Path | None:
    """The run's folder, only when it looks like a run directory of that run."""
    if folder is None or not folder.is_dir() or folder.name != run_id:
        return None
    marks = (RunFiles.RESULT, RunFiles.CONFIG, RunFiles.METRICS)
    return folder if any((folder / m).is_file() for m in marks) else None


@click.command("rm")
@click.argument("runs", nargs=-1, required=True)
@dir_option
@store_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--keep-files", is_flag=True, help="Delete the store rows only, not the folders.")
def rm_command(
    runs: tuple[str, ...], runs_dir: str, store: str | None, yes: bool, keep_files: bool
) -> None:
    """Delete RUNS from the store (with the runs that belong to them: folds, trials,
    diagnostics) and their run directories. Asks first unless --yes."""
    with _store(runs_dir, store, required=True) as st:
        from skier.report.views import resolve_run

        targets = []
        for ref in runs:
            record, _folder = resolve_run(ref, st)
            if record is None:
                raise StoreError(problem("run", "a run in the store", ref, "See `skier runs`."))
            targets.append(record)
        everything = {r.id: r for r in targets}
        for record in targets:
            everything.update({d.id: d for d in st.descendants(record.id)})
        click.echo(f"to delete: {len(everything)} run(s)")
        for r in everything.values():
            where = "" if keep_files or not r.run_dir else f"  {r.run_dir}"
            click.echo(f"  {r.id}  {r.kind:<10} {r.name[:30]:<30} {r.status}{where}")
        if not yes:
            try:
                ok = click.confirm("delete them?", default=False)
            except click.exceptions.Abort:
                ok = False
            if not ok:
                click.echo("nothing deleted.")
                return
        deleted: list[str] = []
        for record in targets:
            if record.id not in deleted:
                deleted += st.delete_run(record.id)
    removed = 0
    if not keep_files:
        for r in everything.values():
            folder = _removable(Path(r.run_dir) if r.run_dir else None, r.id)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    click.echo(f"deleted {len(deleted)} run(s) from the store, {removed} run directories.")


# --- report ----------------------------------------------------------------------------------
@click.command("report")
@click.argument("runs", nargs=-1, required=True)
@dir_option
@store_option
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False),
    help="HTML file (default: the run's report.html; report.html here for several runs).",
)
@click.option("--metric", default=None, help="Several runs: overlay only this metric.")
def report_command(
    runs: tuple[str, ...], runs_dir: str, store: str | None, out: str | None, metric: str | None
) -> None:
    """Write one self-contained HTML report of RUNS (figures embedded, no network): config,
    metrics, curves, lr schedule, gradient flow and every diagnostic, CV and search recorded for
    them. Several runs: one page comparing them."""
    from skier.report.build import write_run_report

    with _store(runs_dir, store) as st:
        path = write_run_report(list(runs), store=st, out=out, metric=metric)
    click.echo(f"report: {path.resolve()}")


# --- serve -----------------------------------------------------------------------------------
@click.command("serve")
@dir_option
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
def serve_command(runs_dir: str, store: str | None, host: str, port: int) -> None:
    """A live dashboard of the store in the browser (read-only): runs and their status,
    learning curves that grow while a run trains, comparison of selected runs, and the report
    of each run."""
    from skier.record import default_store_url
    from skier.report.dashboard import serve

    url = store or default_store_url(runs_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can read every run.",
            err=True,
        )
    serve(url, host=host, port=port, echo=click.echo)


COMMANDS: Sequence[click.Command] = (
    runs_command,
    show_command,
    compare_command,
    export_command,
    rm_command,
    report_command,
    serve_command,
)


def register(group: click.Group) -> None:
    """Add ``runs``, ``show``, ``compare``, ``export``, ``rm``, ``report`` and ``serve``."""
    for command in COMMANDS:
        group.add_command(command)
