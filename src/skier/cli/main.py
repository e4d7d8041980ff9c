"""The ``skier`` command. The only place that reads argv, files and environment variables.

Exit status: 0 success, 2 bad input (one line per problem, no traceback), 1 failure.
"""

from __future__ import annotations

import os
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
from skier.errors import ConfigError, SkierError, problem
from skier.record.rundir import RunFiles


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
    click.echo(f"report: {outcome.run_dir / RunFiles.REPORT}")
    click.echo(f"store: {outcome.store_url} (run {outcome.run_id})")


def _train(
    config: Any,
    *,
    base_dir: Path | None,
    out: str | None,
    resume: str | None,
    store: str | None,
    quiet: bool,
    distributed: Any = None,
    run_id: str | None = None,
) -> None:
    from skier.runner import run_training

    outcome = run_training(
        _with_tracking_uri(config),
        base_dir=base_dir,
        out_dir=out,
        resume_dir=resume,
        store_url=store,
        progress=progress_mode(quiet),
        echo=click.echo,
        epoch_lines=not quiet,
        distributed=distributed,
        run_id=run_id,
    )
    if distributed is None or distributed.is_main:
        _report(outcome)
    if outcome.status == "failed":  # the non-finite guard stopped it: a failure, exit 1
        sys.exit(1)


def _with_tracking_uri(config: Any) -> Any:
    """MLflow's own environment variable, MLFLOW_TRACKING_URI, when the config names no store
    (read here: the library reads no environment). The run's saved config then holds it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if config is None or not uri or config.record.mlflow_uri is not None:
        return config
    if "mlflow" not in config.record.loggers:
        return config
    record = config.record.model_copy(update={"mlflow_uri": uri})
    return config.model_copy(update={"record": record})


def _load_run_config(path: str | None, overrides: tuple[str, ...], base: Path | None) -> Any:
    """The config of a new run; one error lists the config's problems, then its data files',
    then its monitored keys', all found before any data is read."""
    from skier.config import read_config_mapping
    from skier.runner import check_run_config

    return check_run_config(read_config_mapping(path, overrides), path or "", base_dir=base)


# How gloo and NCCL say that another rank went away.
_LOST_PEER = ("Connection reset by peer", "Connection closed by peer", "NCCL", "Timed out")


def _launch_info() -> Any:
    """Where this worker sits in the job: the one place that reads what torchrun sets."""
    from skier.train.distributed import LaunchInfo

    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise ConfigError(
            "--distributed-worker must run under torchrun (RANK and WORLD_SIZE set); "
            "use skier train CONFIG --nproc N instead."
        ) from None
    return LaunchInfo(rank=rank, world_size=world, local_rank=local, init_method="env://")


def _check_launch(cfg: Any, nproc: int, nnodes: int, node_rank: int, endpoint: str | None) -> None:
    """Bad --nproc/--nnodes/--node-rank/--rdzv-endpoint, all at once, before launching."""
    problems = []
    if nproc < 1:
        problems.append(problem("--nproc", "an integer >= 1", nproc))
    if nnodes < 1:
        problems.append(problem("--nnodes", "an integer >= 1", nnodes))
    elif not 0 <= node_rank < nnodes:
        problems.append(problem("--node-rank", f"in [0, {nnodes})", node_rank))
    if nnodes > 1 and endpoint is None:
        problems.append(
            problem("--rdzv-endpoint", "HOST:PORT of node 0 when --nnodes > 1", endpoint)
        )
    host, _, port = (endpoint or "").rpartition(":")
    if endpoint is not None and not (host and port.isdigit()):
        problems.append(problem("--rdzv-endpoint", "HOST:PORT", endpoint))
    device = cfg.train.device
    if nproc >= 1 and (device.startswith("cuda") or device == "auto"):
        import torch

        gpus = torch.cuda.device_count()  # "auto" on a machine with GPUs means one per rank
        if gpus < nproc and (device.startswith("cuda") or gpus > 0):
            problems.append(
                problem("--nproc", f"at most the number of GPUs ({gpus}) with train.device "
                        f"{device!r}", nproc, "Or --set train.device=cpu.")
            )  # fmt: skip
    if problems:
        raise ConfigError(problems)


def _quiet_launcher_logs() -> None:
    """torchrun's agent logs every stop at WARNING/ERROR level; the failed rank is reported in
    one line instead (a rank's own error output is left as it is)."""
    import logging

    import torch.distributed.run  # noqa: F401 - creates the launcher's loggers

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _launch(
    cfg: Any,
    worker_args: list[str],
    *,
    root: Path,
    run_id: str,
    store: str | None,
    launch: tuple[int, int, int, str | None],
) -> None:
    """Start the ranks through torchrun; when one fails, mark the run failed and say so."""
    from skier.record import RunStore
    from skier.runner.launch import RankFailed
    from skier.runner.launch import launch as start
    from skier.runner.lifecycle import resolve_store_url
    from skier.train import Checkpoint

    nproc, nnodes, node_rank, endpoint = launch
    _quiet_launcher_logs()
    # A fair share of the cores for each rank (torch reads it when a rank starts).
    os.environ.setdefault("OMP_NUM_THREADS", str(max((os.cpu_count() or 1) // nproc, 1)))
    try:
        start(worker_args, nproc=nproc, nnodes=nnodes, node_rank=node_rank,
              rdzv_endpoint=endpoint)  # fmt: skip
    except RankFailed as exc:
        run_dir = root / run_id
        message = str(exc)
        if (run_dir / RunFiles.CHECKPOINTS / Checkpoint.LAST_FILE).is_file():
            message += " The last good checkpoint is kept: resume with skier train --resume "
            message += f"{run_dir} --nproc {nproc}."
        url = resolve_store_url(store, cfg.record.store, root)
        if node_rank == 0 and exc.exit_code == 1 and (run_dir / RunFiles.CONFIG).is_file():
            with RunStore(url) as st:  # rank 0 may have been stopped before it could say why
                if st.get_run(run_id).status in ("running", "failed"):
                    st.finish_run(run_id, "failed", error=message)
        raise RankFailed(message, rank=exc.rank, exit_code=exc.exit_code) from None


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
@click.option(
    "--nproc", type=int, default=None, metavar="N",
    help="Train data-parallel: N processes on this machine, through torchrun.",
)  # fmt: skip
@click.option("--nnodes", type=int, default=1, show_default=True, help="Machines in the job.")
@click.option("--node-rank", type=int, default=0, show_default=True, help="This machine's rank.")
@click.option("--rdzv-endpoint", default=None, help="HOST:PORT of node 0 (with --nnodes > 1).")
@click.option(
    "--seeds", default=None, metavar="0,1,2",
    help="Train once per train.seed given, as one group: every metric as mean ± std over them.",
)  # fmt: skip
@click.option("--distributed-worker", is_flag=True, hidden=True)
@click.option("--run-id", default=None, hidden=True)
def train(
    config: str | None,
    overrides: tuple[str, ...],
    out: str | None,
    resume: str | None,
    store: str | None,
    quiet: bool,
    nproc: int | None,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    seeds: str | None,
    distributed_worker: bool,
    run_id: str | None,
) -> None:
    """Train a model as CONFIG (YAML) says; without CONFIG, the defaults (digits, MLP).

    With --resume RUN_DIR, CONFIG may be left out: the run's saved config is used, and only
    train.epochs may change. With --nproc N, N processes train data-parallel through torchrun
    (gloo on CPU, NCCL on GPU); train.batch_size is the global batch. With --seeds 0,1,2 the
    config is trained once per seed, recorded as one group (a run of kind seeds) whose report
    draws every metric as mean ± std over the seeds.
    """
    from skier.config import load_config

    base = Path(config).resolve().parent if config else None
    if seeds is not None:
        _train_seeds(config, overrides, seeds, base=base, out=out, store=store, quiet=quiet,
                     others={"--resume": resume, "--nproc": nproc})  # fmt: skip
        return
    if resume is not None and config is None:
        cfg = load_config(Path(resume) / RunFiles.CONFIG, overrides) if overrides else None
    else:
        cfg = _load_run_config(config, overrides, base)
    if distributed_worker:  # a rank started by torchrun
        from skier.train.distributed import PeerLost, distributed_session

        device = (cfg or load_config(Path(resume or ".") / RunFiles.CONFIG)).train.device
        info = _launch_info()
        try:
            with distributed_session(info, device) as group:
                _train(cfg, base_dir=base, out=out, resume=resume, store=store, quiet=quiet,
                       distributed=group, run_id=run_id)  # fmt: skip
        except RuntimeError as exc:  # a peer died mid-collective: say so in one line
            if not any(k in str(exc) for k in _LOST_PEER):
                raise
            raise PeerLost(
                f"rank {info.rank} lost contact with another rank during training; the rank that "
                "failed first is named below."
            ) from None
        return
    if nproc is None and (nnodes != 1 or rdzv_endpoint is not None):
        raise ConfigError(problem("--nproc", "given with --nnodes and --rdzv-endpoint", None))
    if nproc is None:
        _train(cfg, base_dir=base, out=out, resume=resume, store=store, quiet=quiet)
        return
    from skier.record import new_run_id

    full = cfg or load_config(Path(resume or ".") / RunFiles.CONFIG)
    _check_launch(full, nproc, nnodes, node_rank, rdzv_endpoint)
    run_id = Path(resume).name if resume else new_run_id()
    root = Path(resume).parent if resume else Path(out or full.record.dir)
    args = ["train", *([config] if config else []), *(f"--set={o}" for o in overrides)]
    for flag, value in (("--out", out), ("--resume", resume), ("--store", store)):
        args += [flag, value] if value is not None else []
    args += ["--distributed-worker", "--run-id", run_id, *(["--quiet"] if quiet else [])]
    _launch(full, args, root=root, run_id=run_id, store=store,
            launch=(nproc, nnodes, node_rank, rdzv_endpoint))  # fmt: skip


def _train_seeds(
    config: str | None,
    overrides: tuple[str, ...],
    seeds: str,
    *,
    base: Path | None,
    out: str | None,
    store: str | None,
    quiet: bool,
    others: dict[str, Any],
) -> None:
    """``skier train --seeds``: the bad value or combination is one line, before any run."""
    from skier.config.search import parse_seeds
    from skier.runner import run_seeds

    chosen = parse_seeds(seeds, "--seeds")
    for flag, value in others.items():
        if value is not None:
            raise ConfigError(
                problem(flag, "left out with --seeds", value, "Run the seeds one at a time.")
            )
    cfg = _load_run_config(config, overrides, base)
    group = run_seeds(
        cfg, chosen, base_dir=base, out_dir=out, store_url=store, progress=progress_mode(quiet),
        echo=click.echo, epoch_lines=not quiet,
    )  # fmt: skip
    final = group.summary["final"]
    keys = [k for k in ("val_loss", "val_error", "val_accuracy") if k in final]
    parts = [f"{k} {final[k]['mean']:.4g} ± {final[k]['std']:.4g}" for k in keys]
    n = len(group.runs)
    click.echo(f"done: status {group.status}, {n} seed{'' if n == 1 else 's'}" +
               "".join(f", {p}" for p in parts) + " (at each seed's best epoch)")  # fmt: skip
    click.echo(f"run directory: {group.run_dir}")
    click.echo(f"report: {group.run_dir / RunFiles.REPORT}")
    click.echo(f"store: {group.store_url} (run {group.run_id})")
    if group.status == "failed":
        sys.exit(1)


@cli.command()
@click.option("--out", default=None, help="Folder for run directories (default: runs).")
@store_option
@quiet_option
def demo(out: str | None, store: str | None, quiet: bool) -> None:
    """Train the demo: a small CNN on scikit-learn's 8x8 digits (no download)."""
    from skier.config import demo_config

    _train(demo_config(), base_dir=None, out=out, resume=None, store=store, quiet=quiet)


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
    from skier.data import load_data
    from skier.train.batches import step_batch_size, steps_per_epoch

    n = len(load_data(cfg.data, base_dir=base_dir).train)
    batch = step_batch_size(cfg.train.batch_size, cfg.train.accumulate)  # a step's examples
    return max(steps_per_epoch(n, batch, drop_last=cfg.train.drop_last), 1)


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
    from skier.cli import diagnose, lessons, runs, search

    diagnose.register(cli)
    lessons.register(cli)
    search.register(cli)
    runs.register(cli)


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
