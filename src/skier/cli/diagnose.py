"""``skier`` verbs that look at training: ``lr-find``, ``landscape``, ``sharpness``, ``connect``.

Each takes SOURCE, a finished run directory or a config file. From a config, ``lr-find`` looks at
the model as it starts; ``landscape`` and ``sharpness`` first train the run the config describes
(unless ``--weights init``) and then look at its weights. Every call writes a run directory with
the figures, the values and a report, and a row in the store.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from skier.cli.common import progress_mode, quiet_option, set_option, store_option
from skier.record.rundir import RunFiles

__all__ = ["register"]

_source = click.argument("source", required=False, type=click.Path(exists=False))
_out = click.option(
    "--out", default=None, help="Folder for the run directory (default: beside the source run)."
)
_weights = click.option(
    "--weights",
    type=click.Choice(["final", "best", "last", "init"]),
    default="final",
    show_default=True,
    help="Which weights of a run: what it ended with, its best or last checkpoint, or its start.",
)
_average = click.option(
    "--average/--raw",
    default=None,
    help="For a run that kept a weight average (train.ema / train.swa_start): the averaged or "
    "the raw weights [default: the ones the run selected, train.average_select].",
)
_split = click.option(
    "--split", type=click.Choice(["train", "val", "test"]), default=None, help="Data measured on."
)
_subset = click.option(
    "--subset", type=int, default=None, help="A fixed seeded subset of N examples (faster)."
)
_seed = click.option("--seed", type=int, default=None, help="Seed of directions / probes.")


def _given(**options: Any) -> dict[str, Any]:
    """Only the options the user gave: the rest keep the schema's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def _bars(quiet: bool) -> bool:
    return progress_mode(quiet) is not False and sys.stderr.isatty()


def _source_of(
    source: str | None,
    overrides: tuple[str, ...],
    weights: str,
    average: bool | None,
    *,
    train_first: bool,
    store: str | None,
    quiet: bool,
) -> Any:
    from skier.config import load_config
    from skier.runner.diagnose import load_source

    if source is not None and not Path(source).exists():
        from skier.errors import ConfigError

        raise ConfigError(
            f"source must be a run directory or a config file; got {source!r}, which does not "
            "exist."
        )
    is_run = source is not None and Path(source).is_dir()
    if is_run or not train_first or weights == "init":
        return load_source(source or load_config(None, overrides), weights=weights,  # type: ignore[arg-type]
                           average=average, overrides=overrides if source else ())  # fmt: skip
    # A config: train the run it describes first, then look at its weights.
    from skier.runner import run_training

    config = load_config(source, overrides)
    base = Path(source).resolve().parent if source else None
    click.echo("training the run first (give a run directory to skip this):")
    outcome = run_training(
        config,
        base_dir=base,
        store_url=store,
        progress=progress_mode(quiet),
        echo=click.echo,
        epoch_lines=not quiet,
    )
    click.echo(f"trained: {outcome.run_dir} ({outcome.status})")
    return load_source(outcome.run_dir, weights=weights, average=average)  # type: ignore[arg-type]


def _where(outcome: Any) -> None:
    click.echo(f"run directory: {outcome.run_dir}")
    click.echo(f"report: {outcome.run_dir / RunFiles.REPORT}")
    click.echo(f"store: {outcome.store_url} (run {outcome.run_id})")


@click.command("lr-find")
@_source
@set_option
@click.option("--start-lr", type=float, default=None, help="lr of the first step [1e-7].")
@click.option("--end-lr", type=float, default=None, help="lr of the last step [10].")
@click.option("--steps", "num_steps", type=int, default=None, help="Mini-batches [100].")
@click.option("--mode", type=click.Choice(["exponential", "linear"]), default=None)
@click.option("--beta", type=float, default=None, help="Loss smoothing [0.98].")
@click.option("--divergence-factor", type=float, default=None, help="Stop at this x best [4].")
@click.option(
    "--suggestion", type=click.Choice(["valley", "steepest", "minimum"]), default=None,
    help="The rule whose lr is reported first [valley].",
)  # fmt: skip
@_out
@store_option
@quiet_option
def lr_find(
    source: str | None,
    overrides: tuple[str, ...],
    out: str | None,
    store: str | None,
    quiet: bool,
    **settings: Any,
) -> None:
    """LR range test (Smith 2017): train briefly while the lr grows and watch the loss.

    SOURCE is a config file or a run directory (its config; the model at its initial weights);
    without SOURCE, the defaults. Settings not given come from the config's lr_find section.
    """
    from skier.runner.diagnose import run_lr_find

    src = _source_of(source, overrides, "init", None, train_first=False, store=store, quiet=quiet)
    merged = {**src.config.lr_find.model_dump(), **_given(**settings)}
    outcome = run_lr_find(
        src, merged, out_dir=out, store_url=store, progress=_bars(quiet), echo=click.echo
    )
    found = outcome.result
    others = ", ".join(
        f"{k} {v:.3g}"
        for k, v in found.suggestions.items()
        if v is not None and k != found.suggestion
    )
    chosen = f"{found.lr:.3g}" if found.lr is not None else "none (curve too short)"
    click.echo(f"lr-find: {found.suggestion} {chosen}" + (f" ({others})" if others else ""))
    if found.diverged:
        click.echo(f"stopped at step {found.stop_step}: the loss diverged (lr {found.lrs[-1]:.3g})")
    if found.lr is not None:
        click.echo(f"use it: skier train ... --set optim.lr={found.lr:.3g}  (or optim.lr: auto)")
    _where(outcome)


def _pair(value: str | None, name: str) -> list[float] | None:
    if value is None:
        return None
    from skier.errors import ConfigError

    parts = value.replace(":", ",").split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--{name} must be LOW,HIGH (two numbers); got {value!r}.") from None
    return [low, high]


@click.command()
@_source
@set_option
@click.option("--dims", type=click.Choice(["1", "2"]), default=None, help="Curve or surface [2].")
@click.option(
    "--direction", type=click.Choice(["random", "hessian", "init", "run"]), default=None,
    help="random (filter-normalized), hessian eigenvectors, init -> final, or to --to's run.",
)  # fmt: skip
@click.option("--to", "other", default=None, help="Another run directory: the line between them.")
@click.option("--points", type=int, default=None, help="Points along alpha [51].")
@click.option("--points-y", type=int, default=None, help="Points along beta [--points].")
@click.option("--range", "xrange", default=None, help="alpha range LOW,HIGH [-1,1].")
@click.option("--yrange", default=None, help="beta range LOW,HIGH [-1,1].")
@click.option("--normalization", type=click.Choice(["filter", "layer", "none"]), default=None)
@click.option("--ignore", type=click.Choice(["biasbn", "none"]), default=None)
@_split
@_subset
@click.option("--per-batch", is_flag=True, default=None, help="Also on two mini-batches.")
@click.option("--batch-size", type=int, default=None, help="Per-batch mini-batch size.")
@click.option(
    "--no-recompute-bn", "recompute_bn", flag_value=False, default=None,
    help="Interpolate batch-norm statistics instead of re-estimating them.",
)  # fmt: skip
@_seed
@click.option("--log", "log_scale", is_flag=True, help="Also log-scale figures.")
@_weights
@_average
@click.option(
    "--resume", "resume_dir", default=None, type=click.Path(file_okay=False),
    help="Continue a stopped landscape run directory where it stopped.",
)  # fmt: skip
@_out
@store_option
@quiet_option
def landscape(
    source: str | None,
    overrides: tuple[str, ...],
    other: str | None,
    xrange: str | None,
    yrange: str | None,
    dims: str | None,
    log_scale: bool,
    weights: str,
    average: bool | None,
    resume_dir: str | None,
    out: str | None,
    store: str | None,
    quiet: bool,
    **settings: Any,
) -> None:
    """Loss landscape (Li et al. 2018) around SOURCE's weights: a curve or a surface.

    SOURCE is a finished run directory, or a config file (trained first). --direction init
    draws the line from the run's initial to its final weights; --to OTHER_RUN the line between
    two runs (batch-norm statistics re-estimated at each point).
    """
    from skier.runner.diagnose import load_source, run_landscape, saved_landscape_settings

    values = _given(
        **settings, dims=int(dims) if dims else None, xrange=_pair(xrange, "range"),
        yrange=_pair(yrange, "yrange"),
    )  # fmt: skip
    if other is not None:
        values.setdefault("direction", "run")
        values.setdefault("dims", 1)
    if resume_dir is not None:
        saved_source, saved_weights, saved_average, saved = saved_landscape_settings(resume_dir)
        src = load_source(saved_source, weights=saved_weights, average=saved_average)
        values = saved
    else:
        src = _source_of(source, overrides, weights, average, train_first=True, store=store,
                         quiet=quiet)  # fmt: skip
    other_src = (
        load_source(other, weights=weights, average=average)  # type: ignore[arg-type]
        if other is not None else None
    )  # fmt: skip
    outcome = run_landscape(
        src, values, other=other_src, out_dir=out, store_url=store, resume_dir=resume_dir,
        progress=_bars(quiet), log_scale=log_scale, echo=click.echo,
    )  # fmt: skip
    found = outcome.result
    best = found.minimum
    where = ", ".join(f"{k} {v:.3g}" for k, v in best.items() if k != "loss")
    click.echo(
        f"landscape: {found.loss.size} points in {found.seconds:.1f} s; "
        f"lowest loss {best['loss']:.4g} at {where}"
        + (f"; at the model {found.center_loss:.4g}" if found.center_loss is not None else "")
    )
    _where(outcome)


@click.command()
@_source
@set_option
@click.option("--top-k", type=int, default=None, help="Eigenvalues to find [1].")
@click.option(
    "--method", type=click.Choice(["lanczos", "power"]), default=None,
    help="Lanczos (all k at once) or power iteration with deflation [lanczos].",
)  # fmt: skip
@click.option(
    "--max-iterations", type=int, default=None, help="Hessian-vector products per eigenvalue [100]."
)
@click.option(
    "--tolerance", type=float, default=None,
    help="Stop when each residual (lanczos) or change (power) is below this, relative [1e-4].",
)  # fmt: skip
@click.option("--trace/--no-trace", default=None, help="The Hessian trace [on].")
@click.option("--trace-samples", type=int, default=None, help="Probes for the trace [100].")
@click.option(
    "--trace-basis", type=int, default=None,
    help="Krylov vectors deflated out of the trace's probes; 0: plain Hutchinson [20].",
)  # fmt: skip
@click.option(
    "--trace-method", type=click.Choice(["auto", "exact", "hutchinson"]), default=None,
    help="exact: the Gauss-Newton trace of a net piecewise-linear in each weight (ReLU MLPs), "
    "an error elsewhere; hutchinson: the deflated estimate; auto: exact where it applies [auto].",
)  # fmt: skip
@_split
@_subset
@click.option("--batch-size", type=int, default=None, help="Examples per HVP batch [2048].")
@_seed
@_weights
@_average
@_out
@store_option
@quiet_option
def sharpness(
    source: str | None,
    overrides: tuple[str, ...],
    weights: str,
    average: bool | None,
    out: str | None,
    store: str | None,
    quiet: bool,
    **settings: Any,
) -> None:
    """Sharpness of SOURCE's minimum: top Hessian eigenvalues and the Hessian trace.

    SOURCE is a finished run directory, or a config file (trained first).
    """
    from skier.runner.diagnose import run_sharpness

    src = _source_of(source, overrides, weights, average, train_first=True, store=store,
                     quiet=quiet)  # fmt: skip
    outcome = run_sharpness(
        src, _given(**settings), out_dir=out, store_url=store, progress=_bars(quiet),
        echo=click.echo,
    )  # fmt: skip
    found = outcome.result
    values = ", ".join(f"{v:.4g}" for v in found.eigenvalues)
    line = f"sharpness: top eigenvalues {values}"
    if found.trace is not None:
        line += f"; trace {found.trace:.4g}"
        line += (
            " (exact)"
            if found.trace_method == "exact"
            else f" ± {found.trace_std_error or 0.0:.2g}"
        )
    click.echo(line + f" ({found.examples} examples)")
    if not all(found.converged):
        click.echo("note: not every eigenvalue converged (raise --max-iterations or --tolerance)")
    _where(outcome)


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@set_option
@click.option("--curve", type=click.Choice(["bezier", "polychain"]), default=None)
@click.option("--bends", type=int, default=None, help="Trained control points [1].")
@click.option("--epochs", type=int, default=None, help="Epochs of curve training [30].")
@click.option(
    "--schedule", type=click.Choice(["reference", "config"]), default=None,
    help="reference: constant, then linear decay to 1%; config: the config's schedule.",
)  # fmt: skip
@click.option("--points", type=int, default=None, help="t values evaluated [61].")
@click.option("--ensemble-points", type=int, default=None, help="Models in the ensemble [11].")
@click.option("--plane-points", type=int, default=None, help="Plane grid size, 0: none [21].")
@_seed
@_weights
@_average
@_out
@store_option
@quiet_option
def connect(
    sources: tuple[str, ...],
    overrides: tuple[str, ...],
    weights: str,
    average: bool | None,
    out: str | None,
    store: str | None,
    quiet: bool,
    **settings: Any,
) -> None:
    """Mode connectivity (Garipov et al. 2018): a low-loss curve between two minima.

    SOURCES: RUN_A RUN_B (two finished runs of the same model and data), RUN_A RUN_B CONFIG
    (the curve is trained with CONFIG's optim, train and schedule sections), or just CONFIG
    (two runs are trained first, with train.seed and train.seed + 1).
    """
    from skier.config import load_config
    from skier.errors import ConfigError
    from skier.runner.diagnose import load_source, run_connect

    for path in sources:
        if not Path(path).exists():
            raise ConfigError(
                f"sources must be run directories or a config file; got {path!r}, which does "
                "not exist."
            )
    if len(sources) > 3:
        raise ConfigError(f"sources must be RUN_A RUN_B [CONFIG] or CONFIG; got {len(sources)}.")
    training = None
    if len(sources) == 1:
        if Path(sources[0]).is_dir():
            raise ConfigError(
                f"sources must be two runs or a config; got one run {sources[0]!r}. "
                "Add the second run directory."
            )
        runs = _train_pair(sources[0], overrides, store, quiet)
        training = load_config(sources[0], overrides)
    else:
        runs = [Path(p) for p in sources[:2]]
        for run in runs:
            if not run.is_dir():
                raise ConfigError(
                    f"RUN_A and RUN_B must be run directories; got {str(run)!r}, a file."
                )
        if len(sources) == 3:
            training = load_config(sources[2], overrides)
    a = load_source(runs[0], weights=weights, average=average)  # type: ignore[arg-type]
    b = load_source(runs[1], weights=weights, average=average)  # type: ignore[arg-type]
    outcome = run_connect(
        a, b, _given(**settings), config=training, out_dir=out, store_url=store,
        progress=_bars(quiet), echo=click.echo,
    )  # fmt: skip
    summary = outcome.summary
    reduction = summary["barrier_reduction"]
    click.echo(
        f"connect: train-loss barrier {summary['line_train_loss_barrier']:.4g} on the line, "
        f"{summary['curve_train_loss_barrier']:.4g} on the curve"
        + (f" ({reduction:.0%} lower)" if reduction is not None else "")
    )
    ens = summary["ensemble"]
    click.echo(
        f"ensemble {ens['metric']}: curve {ens['curve_ensemble']:.4f}, endpoints "
        f"{ens['start']:.4f} / {ens['end']:.4f}, both {ens['endpoints_ensemble']:.4f}"
    )
    _where(outcome)


def _train_pair(
    config_path: str, overrides: tuple[str, ...], store: str | None, quiet: bool
) -> list[Path]:
    from skier.config import load_config
    from skier.runner import run_training

    config = load_config(config_path, overrides)
    runs = []
    for offset in (0, 1):
        seeded = config.model_copy(
            update={"train": config.train.model_copy(update={"seed": config.train.seed + offset})}
        )
        click.echo(f"training endpoint {offset + 1} of 2 (train.seed {seeded.train.seed}):")
        outcome = run_training(
            seeded,
            base_dir=Path(config_path).resolve().parent,
            store_url=store,
            progress=progress_mode(quiet),
            echo=click.echo,
            epoch_lines=not quiet,
        )
        runs.append(outcome.run_dir)
    return runs


def register(group: click.Group) -> None:
    """Add ``lr-find``, ``landscape``, ``sharpness`` and ``connect`` to the ``skier`` group."""
    group.add_command(lr_find)
    group.add_command(landscape)
    group.add_command(sharpness)
    group.add_command(connect)
