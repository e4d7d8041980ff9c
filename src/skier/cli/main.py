"""The ``skier`` command. The only place that reads argv, files and environment variables.

Exit status: 0 success, 2 bad input (one line per problem, no traceback), 1 failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from skier import __version__
from skier.cli.common import (
    CONTEXT,
    fail,
    load,
    progress_mode,
    quiet_option,
    set_option,
    store_option,
)
from skier.errors import SkierError


def _report(outcome: Any) -> None:
    result = outcome.result
    tm = result.test_metrics
    parts = [f"status {outcome.status}", f"{result.epochs_done} epochs"]
    if result.best_epoch is not None:
        parts.append(f"best {result.monitor} {result.best_value:.4g} at epoch {result.best_epoch}")
    if "test_accuracy" in tm:
        parts.append(f"test accuracy {tm['test_accuracy']:.4f}")
    elif "test_loss" in tm:
        parts.append(f"test loss {tm['test_loss']:.4g}")
    parts.append(f"{result.duration_s:.1f} s")
    click.echo("done: " + ", ".join(parts))
    if result.stop_reason:
        click.echo(f"stopped: {result.stop_reason}")
    click.echo(f"run directory: {outcome.run_dir}")
    click.echo(f"report: {outcome.run_dir / 'report.html'}")
    click.echo(f"store: {outcome.store_url} (run {outcome.run_id})")


def _train(
    config: Any,
    *,
    base_dir: Path | None,
    out: str | None,
    resume: str | None,
    store: str | None,
    quiet: bool,
) -> None:
    from skier.runner import run_training

    outcome = run_training(
        config,
        base_dir=base_dir,
        out_dir=out,
        resume_dir=resume,
        store_url=store,
        progress=progress_mode(quiet),
        echo=click.echo,
        epoch_lines=not quiet,
    )
    _report(outcome)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="skier")
def cli() -> None:
    """skier: train deep nets with PyTorch and see what training does."""


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@set_option
@click.option("--out", default=None, help="Folder for run directories (default: record.dir).")
@click.option(
    "--resume",
    default=None,
    type=click.Path(file_okay=False),
    help="Continue an interrupted run from its last checkpoint.",
)
@store_option
@quiet_option
def train(
    config: str | None,
    overrides: tuple[str, ...],
    out: str | None,
    resume: str | None,
    store: str | None,
    quiet: bool,
) -> None:
    """Train a model as CONFIG (YAML) says; without CONFIG, the defaults (digits, MLP).

    With --resume RUN_DIR, CONFIG may be left out: the run's saved config is used, and only
    train.epochs may change.
    """
    if resume is not None and config is None:
        from skier.config import load_config

        cfg = load_config(Path(resume) / "config.yaml", overrides) if overrides else None
    else:
        cfg = load(config, overrides)
    base = Path(config).resolve().parent if config else None
    _train(cfg, base_dir=base, out=out, resume=resume, store=store, quiet=quiet)


@cli.command()
@click.option("--out", default=None, help="Folder for run directories (default: runs).")
@store_option
@quiet_option
def demo(out: str | None, store: str | None, quiet: bool) -> None:
    """Train the demo: a small CNN on scikit-learn's 8x8 digits (no download)."""
    from skier.config import demo_config

    _train(demo_config(), base_dir=None, out=out, resume=None, store=store, quiet=quiet)


@cli.command()
@click.option("--dir", "runs_dir", default="runs", show_default=True, help="Runs folder.")
@store_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--kind", default=None, help="Only runs of this kind: train, landscape, lr_find, ...")
def runs(
    runs_dir: str, store: str | None, limit: int, status: str | None, kind: str | None
) -> None:
    """List runs from the store: id, kind, name, status, epochs, best val metric, test metric,
    time."""
    from skier.record import RunStore, default_store_url

    url = store or default_store_url(runs_dir)
    if store is None and not (Path(runs_dir) / "skier.db").is_file():
        click.echo(f"no runs yet: {Path(runs_dir) / 'skier.db'} does not exist.")
        return
    with RunStore(url) as st:
        records = st.list_runs(limit=limit, status=status, kind=kind)
    if not records:
        click.echo("no runs.")
        return
    click.echo(
        f"{'id':<24} {'kind':<10} {'name':<28} {'status':<11} {'epochs':>6}  "
        f"{'best':<22} {'test':<20} {'time':>8}"
    )
    for r in records:
        best = f"{r.monitor}={r.best_value:.4g}" if r.best_value is not None else "-"
        if r.test_metric_name and r.test_metric_value is not None:
            test = f"{r.test_metric_name}={r.test_metric_value:.4f}"
        elif r.test_loss is not None:
            test = f"loss={r.test_loss:.4g}"
        else:
            test = "-"
        secs = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        click.echo(
            f"{r.id:<24} {r.kind[:10]:<10} {r.name[:28]:<28} {r.status:<11} "
            f"{r.epochs_done or 0:>6}  "
            f"{best[:22]:<22} {test[:20]:<20} {secs:>8}"
        )


@cli.group()
def config() -> None:
    """Show and check configs."""


@config.command("show")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@set_option
def config_show(config_file: str | None, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config (defaults filled in)."""
    from skier.config import config_to_yaml

    click.echo(config_to_yaml(load(config_file, overrides)), nl=False)


@cli.group("schedule")
def schedule_group() -> None:
    """Look at learning-rate schedules before training."""


def _steps_per_epoch(cfg: Any, base_dir: Path | None) -> int:
    """Optimizer steps per epoch, as the train loop will batch the training split."""
    import math

    from skier.data import load_data

    n = len(load_data(cfg.data, base_dir=base_dir).train)
    batch = n if cfg.train.batch_size == "full" else min(int(cfg.train.batch_size), n)
    return max(n // batch if cfg.train.drop_last else math.ceil(n / batch), 1)


@schedule_group.command("plot")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@set_option
@click.option(
    "--out", default="schedule.png", show_default=True, type=click.Path(dir_okay=False),
    help="PNG file to write.",
)  # fmt: skip
@click.option(
    "--steps-per-epoch", type=click.IntRange(min=1), default=None,
    help="Optimizer steps per epoch (default: from the data's training split and batch size).",
)  # fmt: skip
@click.option("--log", "log_scale", is_flag=True, help="Log-scale lr axis.")
def schedule_plot(
    config_file: str | None,
    overrides: tuple[str, ...],
    out: str,
    steps_per_epoch: int | None,
    log_scale: bool,
) -> None:
    """Draw the learning rate of every step of the run CONFIG describes, without training."""
    import torch

    from skier.optim import build_optimizer
    from skier.optim.schedules import lr_curve
    from skier.plots import save_figure
    from skier.plots.schedule import plot_lr_curve

    cfg = load(config_file, overrides)
    base = Path(config_file).resolve().parent if config_file else None
    spe = steps_per_epoch or _steps_per_epoch(cfg, base)
    # The real optimizer's momentum decides whether cyclical schedules cycle it.
    group = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.optim).param_groups[0]
    curve = lr_curve(
        cfg.schedule, lr=cfg.optim.lr, epochs=cfg.train.epochs, steps_per_epoch=spe,
        momentum=group.get("momentum"),
    )  # fmt: skip
    ax = plot_lr_curve(curve, log_scale=log_scale)
    path = save_figure(ax.figure, out)
    click.echo(curve.summary())
    for note in curve.notes:
        click.echo(f"note: {note}")
    click.echo(f"plot: {path.resolve()}")


def _register_verbs() -> None:
    # Verbs that live in their own modules; each adds its commands to the group.
    from skier.cli import diagnose, search

    diagnose.register(cli)
    search.register(cli)


_register_verbs()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning skier's errors into one line and an exit status."""
    try:
        cli.main(args=argv, prog_name="skier", standalone_mode=False)
    except SkierError as exc:
        fail(exc)
    except click.exceptions.Abort:
        click.echo("skier: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("skier: interrupted; the last checkpoint and the record are kept", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
