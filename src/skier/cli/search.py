"""``skier`` verbs of model selection: ``skier cv`` and ``skier tune``.

::

    skier cv examples/digits_mlp.yaml --folds 5 --workers 2
    skier tune examples/digits_cnn_cv.yaml --space examples/space_digits.yaml \\
        --method bayes --trials 30 --workers 2 --prune median
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from skier.cli.common import base_dir_of, load, quiet_option, set_option, store_option
from skier.errors import ConfigError, did_you_mean
from skier.record.rundir import RunFiles

__all__ = ["register"]

_OBJECTIVES = ("val_loss", "val_error", "val_accuracy", "cv_mean")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return "-" if value is None else str(value)


def _settings(model: Any, values: dict[str, Any], flag_names: dict[str, str]) -> Any:
    """Validated settings from the options given; errors name the flags."""
    from pydantic import ValidationError

    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            key = str(err["loc"][0]) if err["loc"] else "option"
            flag = flag_names.get(key, f"--{key.replace('_', '-')}")
            msg = str(err["msg"]).replace("Input should be", "must be")
            problems.append(f"{flag} {msg}; got {err.get('input')!r}.")
        raise ConfigError(problems) from None


def _quiet_optuna() -> None:
    # Optuna logs a line per trial at INFO; skier prints its own lines.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@click.command("cv")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--folds", type=click.IntRange(min=1), default=5, show_default=True,
              help="k for k-fold; 1 for a hold-out split.")  # fmt: skip
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Re-draw the folds this many times (repeated k-fold / hold-out).")  # fmt: skip
@click.option("--holdout-fraction", type=float, default=0.2, show_default=True,
              help="Validation share of a hold-out split (--folds 1).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Fold processes at once (default: CPU cores).")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Fold shuffle seed (default: data.seed).")
@click.option("--no-stratify", is_flag=True, help="Plain shuffled folds even for class labels.")
@click.option("--metric", default="val_loss", show_default=True,
              help="Validation metric summarized (val_loss, val_error, val_accuracy).")  # fmt: skip
@click.option("--refit", is_flag=True,
              help="Then train on all non-test data for the median chosen epochs.")  # fmt: skip
@click.option("--seeds", default=None, metavar="0,1,2",
              help="Train every fold once per train.seed given; the mean is over all.")  # fmt: skip
@set_option
@click.option("--out", default=None, help="Folder for run directories (default: record.dir).")
@store_option
@quiet_option
def cv_command(
    config: str | None,
    folds: int,
    repeats: int,
    holdout_fraction: float,
    workers: int | None,
    seed: int | None,
    no_stratify: bool,
    metric: str,
    refit: bool,
    seeds: str | None,
    overrides: tuple[str, ...],
    out: str | None,
    store: str | None,
    quiet: bool,
) -> None:
    """Cross-validate the run CONFIG describes: one recorded run per fold, in parallel.

    The test split (data.test_fraction) is set aside first and never enters a fold; the
    rest is split into folds, stratified for classification, seeded.
    """
    from skier.config.search import CrossValidationConfig, parse_seeds
    from skier.runner.cv import run_cv

    chosen_seeds = parse_seeds(seeds, "--seeds") if seeds is not None else None
    cfg = load(config, overrides)
    settings = _settings(
        CrossValidationConfig,
        {
            "folds": folds,
            "repeats": repeats,
            "holdout_fraction": holdout_fraction,
            "workers": workers,
            "seed": seed,
            "stratify": not no_stratify,
            "metric": metric,
            "refit": refit,
            "seeds": chosen_seeds,
        },
        {"stratify": "--no-stratify"},
    )
    outcome = run_cv(
        cfg,
        cv=settings,
        base_dir=base_dir_of(config),
        out_dir=out,
        store_url=store,
        echo=None if quiet else click.echo,
    )
    s = outcome.summary
    shown = [settings.metric] + [k for k in ("val_accuracy",) if k != settings.metric]
    parts = [
        f"{k} {_fmt(s['mean'][k])} ± {_fmt(s['std_by_metric'][k])}" for k in shown if k in s["mean"]
    ]
    runs = "runs" if chosen_seeds else "folds"
    click.echo(f"done: {len(outcome.folds)} {runs} ({s['plan']}), " + ", ".join(parts))
    chosen = ", ".join(str(e) for e in s["chosen_epochs"])
    click.echo(f"chosen epochs per fold: {chosen} (median {s['median_epoch']})")
    if outcome.refit:
        tm = outcome.refit["test_metrics"]
        test = tm.get("test_accuracy", tm.get("test_loss"))
        name = "test accuracy" if "test_accuracy" in tm else "test loss"
        click.echo(
            f"refit: {outcome.refit['epochs']} epochs on all non-test data, {name} {_fmt(test)} "
            f"(run {outcome.refit['run_id']})"
        )
    click.echo(f"run directory: {outcome.run_dir}")
    click.echo(f"report: {outcome.run_dir / RunFiles.REPORT}")
    click.echo(f"store: {outcome.store_url} (cv run {outcome.run_id}, folds are its children)")


def _check_objective(objective: str, metrics: list[str]) -> None:
    """The objective is a validation key the loop logs: its own or one of ``train.metrics``."""
    known = (*_OBJECTIVES, *(f"val_{m.rpartition(':')[2]}" for m in metrics))
    hint = did_you_mean(objective, known)
    # Other val_ keys are allowed (the runner checks them against what it logs); a near miss
    # of a known one is a typo.
    if objective not in known and (hint or not objective.startswith("val_")):
        raise ConfigError(
            f"--objective must be one of {', '.join(known)} (or another val_ metric); "
            f"got {objective!r}.{hint}"
        )


@click.command("tune")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--space", "space_path", default=None, type=click.Path(dir_okay=False),
              help="Search space YAML: config key -> {type, low, high, log, ...}.")  # fmt: skip
@click.option("--method", type=click.Choice(["grid", "random", "bayes"]), default="bayes",
              show_default=True, help="grid, random or bayes (TPE; --sampler gp).")  # fmt: skip
@click.option("--sampler", type=click.Choice(["auto", "tpe", "gp"]), default="auto",
              show_default=True, help="bayes: TPE (auto) or a Gaussian process.")  # fmt: skip
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Trials this command runs (default: grid size for grid, else 20).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU cores).")  # fmt: skip
@click.option("--storage", default=None,
              help="Study storage: postgresql://..., sqlite:///..., redis://... or a journal "
              "file; default RUN_DIR/study.journal.")  # fmt: skip
@click.option("--study", default=None,
              help="Study name; an existing one is resumed (default: a new name).")  # fmt: skip
@click.option("--prune", type=click.Choice(["auto", "median", "hyperband", "none"]),
              default="auto", show_default=True,
              help="Stop poor trials early (auto: median, none for grid).")  # fmt: skip
@click.option("--prune-startup", type=click.IntRange(min=0), default=5, show_default=True,
              help="median: finished trials before any is pruned.")  # fmt: skip
@click.option("--objective", default="val_loss", show_default=True,
              help="val_loss, val_error, val_accuracy (best in the run), or cv_mean.")  # fmt: skip
@click.option("--metric", default="val_loss", show_default=True,
              help="cv_mean: the metric averaged over the folds.")  # fmt: skip
@click.option("--direction", type=click.Choice(["auto", "minimize", "maximize"]),
              default="auto", show_default=True)  # fmt: skip
@click.option("--folds", type=click.IntRange(min=2), default=3, show_default=True,
              help="cv_mean: folds per trial.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sampler seed (grid: the same in every worker and machine).")  # fmt: skip
@click.option("--seeds", default=None, metavar="0,1,2",
              help="Score each trial by its mean over these train.seed values (a group of "
              "runs per trial).")  # fmt: skip
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Stop starting new trials after this many seconds.")  # fmt: skip
@click.option("--train-best", is_flag=True, help="Then train the best config (skier train).")
@click.option("--resume", "resume_dir", default=None, type=click.Path(file_okay=False),
              help="Go on with the study of an earlier `skier tune` run directory (its config, "
              "space, storage, study and settings, unless given here).")  # fmt: skip
@set_option
@click.option("--out", default=None, help="Folder for run directories (default: record.dir).")
@store_option
@quiet_option
def tune_command(
    config: str | None,
    space_path: str | None,
    method: str,
    sampler: str,
    trials: int | None,
    workers: int | None,
    storage: str | None,
    study: str | None,
    prune: str,
    prune_startup: int,
    objective: str,
    metric: str,
    direction: str,
    folds: int,
    seed: int,
    seeds: str | None,
    timeout_s: float | None,
    train_best: bool,
    resume_dir: str | None,
    overrides: tuple[str, ...],
    out: str | None,
    store: str | None,
    quiet: bool,
) -> None:
    """Search hyper-parameters of the run CONFIG describes with Optuna; each trial is a run.

    Several machines can share one study: run the same command on each with
    --storage postgresql://... (or redis://...) and the same --study. An existing study is
    resumed; --resume RUN_DIR does it for an earlier run directory.
    """
    from skier.config.search import TuneConfig, load_space, parse_seeds

    values: dict[str, Any] = {
        "method": method,
        "sampler": sampler,
        "trials": trials,
        "workers": workers,
        "storage": storage,
        "study": study,
        "prune": prune,
        "prune_startup": prune_startup,
        "objective": objective,
        "metric": metric,
        "direction": direction,
        "folds": folds,
        "seed": seed,
        "seeds": parse_seeds(seeds, "--seeds") if seeds is not None else None,
        "timeout_s": timeout_s,
        "train_best": train_best,
    }
    base_dir = base_dir_of(config)
    if resume_dir is not None:
        config, space_path, base_dir = _resumed(resume_dir, config, space_path, values)
    if space_path is None:
        raise ConfigError("--space must name a search space file; got none. Or use --resume.")
    cfg = load(config, overrides)
    _check_objective(values["objective"], cfg.train.metrics)
    space = load_space(space_path, base=cfg)
    settings = _settings(TuneConfig, values, {"timeout_s": "--timeout"})
    from skier.runner.tune import run_tune  # torch and Optuna: only once the input is good

    _quiet_optuna()
    outcome = run_tune(
        cfg,
        space,
        tune=settings,
        base_dir=base_dir,
        out_dir=out,
        store_url=store,
        echo=None if quiet else click.echo,
    )
    _report_tune(outcome)


def _resumed(
    resume_dir: str, config: str | None, space_path: str | None, values: dict[str, Any]
) -> tuple[str, str, Path | None]:
    """Fill what ``--resume RUN_DIR`` implies: the run's config, space, study and settings.

    Options given on the command line win over the saved ones.
    """
    import json

    ctx = click.get_current_context()
    run = Path(resume_dir)
    record_path = run / RunFiles.STUDY_JSON
    if not record_path.is_file():
        raise ConfigError(
            f"--resume must be a `skier tune` run directory; got {resume_dir!r}, which has no "
            "study.json."
        )
    saved = json.loads(record_path.read_text())
    for key, value in saved.get("tune", {}).items():
        source = ctx.get_parameter_source(key if key != "timeout_s" else "timeout_s")
        if key in values and source in (None, click.core.ParameterSource.DEFAULT):
            values[key] = value
    if values["storage"] is None:
        if "***" in saved["storage"]:
            raise ConfigError(
                f"--storage must be given with --resume {resume_dir!r}: the saved URL "
                f"{saved['storage']!r} hides its password."
            )
        values["storage"] = saved["storage"]
    values["study"] = values["study"] or saved["study"]
    base_dir = base_dir_of(config) if config is not None else None
    return (
        config or str(run / RunFiles.CONFIG),
        space_path or str(run / RunFiles.SPACE_YAML),
        base_dir,
    )


def _report_tune(outcome: Any) -> None:
    s = outcome.summary
    best = s["best"]
    counts = ", ".join(f"{n} {state}" for state, n in s["counts"].items())
    click.echo(
        f"done: {len(s['trials'])} trials in the study ({counts}), {s['epochs_run']} epochs, "
        f"{s['duration_s']:.1f} s"
    )
    for note in s.get("notes", []):
        click.echo(f"note: {note}")
    click.echo(f"best trial {best['number']}: {s['metric']} {_fmt(best['value'])}")
    for key, value in best["params"].items():
        click.echo(f"  {key}: {_fmt(value)}")
    if s["importances"]:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in s["importances"].items())
        click.echo(f"importance: {shown}")
    rows = [t for t in s["trials"] if t["value"] is not None and t["state"] == "complete"]
    rows.sort(key=lambda t: t["value"] if s["direction"] == "minimize" else -t["value"])
    names = list(best["params"])
    click.echo("top trials:")
    click.echo("  " + "  ".join(["trial", "value".rjust(9), *names]))
    for t in rows[:5]:
        click.echo(
            "  "
            + "  ".join(
                [str(t["number"]).rjust(5), _fmt(t["value"]).rjust(9)]
                + [_fmt(t["params"].get(n)) for n in names]
            )
        )
    if outcome.trained is not None:
        tm = outcome.trained.result.test_metrics
        test = tm.get("test_accuracy", tm.get("test_loss"))
        click.echo(f"trained the best config: run {outcome.trained.run_id}, test {_fmt(test)}")
    click.echo(f"best config: {outcome.best_config_path}")
    click.echo(f"train it: skier train {outcome.best_config_path}")
    click.echo(f"run directory: {outcome.run_dir}")
    click.echo(f"report: {Path(outcome.run_dir) / RunFiles.REPORT}")
    click.echo(f"study: {outcome.study_name!r} in {outcome.storage}")
    click.echo(f"store: {outcome.store_url} (tune run {outcome.run_id}, trials are its children)")


def register(group: click.Group) -> None:
    """Add this module's commands to the ``skier`` group."""
    group.add_command(cv_command)
    group.add_command(tune_command)
