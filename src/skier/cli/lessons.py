"""``skier lesson``: the course's claims as experiments that run, draw and check themselves."""

from __future__ import annotations

import click

from skier.cli.common import store_option
from skier.record.rundir import RunFiles

__all__ = ["register"]


@click.group("lesson")
def lesson_group() -> None:
    """Executable lessons: each claim of the course reproduced, measured and checked."""


@lesson_group.command("list")
def lesson_list() -> None:
    """Every lesson: number, name, expected time (quick / full) and its claim."""
    from skier.lessons import lessons

    for item in lessons():
        quick, full = item.seconds
        click.echo(
            f"{item.number:>2}. {item.name:<20} ~{quick:.0f} s / ~{full:.0f} s  {item.title}"
        )
        click.echo(f"    {item.claim}")


def _seeds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    from skier.errors import ConfigError

    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers; got {value!r}.") from None
    if not seeds:
        raise ConfigError(f"--seeds must name at least one seed; got {value!r}.")
    return seeds


def _device(name: str) -> str:
    """``--device`` checked before anything runs; ``auto`` becomes the device it picks."""
    import re

    import torch

    from skier.errors import ConfigError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise ConfigError(f"--device must be cpu, cuda, cuda:N, mps or auto; got {name!r}.")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device must be an available device; got {name!r}. No CUDA: use cpu.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device must be an available device; got {name!r}. Use cpu.")
    return name


@lesson_group.command("run")
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Every lesson, and the course report.")
@click.option("--quick", is_flag=True, help="The small versions (one seed; what the tests run).")
@click.option("--seeds", default=None, help="Comma-separated seeds [full: 0,1,2; quick: 0].")
@click.option(
    "--device", default="cpu", show_default=True,
    help="Where every lesson trains: cpu, cuda, cuda:N, mps or auto.",
)  # fmt: skip
@click.option(
    "--threads", type=int, default=1, show_default=True, help="torch CPU threads for the lessons."
)
@click.option("--out", default="runs", show_default=True, help="Folder for run directories.")
@store_option
def lesson_run(
    names: tuple[str, ...],
    run_all: bool,
    quick: bool,
    seeds: str | None,
    device: str,
    threads: int,
    out: str,
    store: str | None,
) -> None:
    """Run lesson NAME (or several, or --all): its figures, its text and its verdict go to a
    run directory and the store; several lessons also make the course report."""
    from skier.errors import ConfigError
    from skier.lessons import get_lesson
    from skier.runner.lessons import run_course, run_lesson

    if not names and not run_all:
        raise ConfigError(
            "lesson run needs NAME or --all; got neither. List the lessons: skier lesson list."
        )
    if names and run_all:
        raise ConfigError(f"lesson run takes NAME or --all, not both; got {list(names)} and --all.")
    for name in names:
        get_lesson(name)  # every name checked before anything runs
    chosen = _seeds(seeds)
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1; got {threads}.")
    device = _device(device)
    if len(names) == 1:
        outcome = run_lesson(
            names[0], quick=quick, seeds=chosen, out_dir=out, store_url=store, device=device,
            threads=threads, echo=click.echo,
        )  # fmt: skip
        if outcome.result is None:
            click.echo(f"lesson {outcome.name} failed: {outcome.error}", err=True)
            raise SystemExit(1)
        click.echo(outcome.result.text().rstrip())
        click.echo(f"run directory: {outcome.run_dir}")
        click.echo(f"report: {outcome.run_dir / RunFiles.REPORT}")
        return
    course = run_course(
        quick=quick, names=list(names) or None, seeds=chosen, out_dir=out, store_url=store,
        device=device, threads=threads, echo=click.echo,
    )  # fmt: skip
    failed = [o.name for o in course.lessons if o.result is None]
    click.echo(
        f"course: {course.held} of {len(course.lessons)} claims held in {course.seconds:.0f} s"
        + (f"; failed to run: {', '.join(failed)}" if failed else "")
    )
    for o in course.lessons:
        if o.result is not None and not o.result.held:
            click.echo(f"did not hold: {o.name} ({o.result.held_count}/{len(o.result.trials)})")
    click.echo(f"course report: {course.report}")
    if failed:
        raise SystemExit(1)


@lesson_group.command("notebook")
@click.argument("name")
@click.option(
    "-o", "--output", default=None, type=click.Path(dir_okay=False),
    help="Where the notebook goes  [default: NAME.ipynb].",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def lesson_notebook(name: str, output: str | None, force: bool) -> None:
    """Write lesson NAME as a runnable Jupyter notebook: its claim and set-up, its experiment as
    code to read and edit, the run, the checks and the figure."""
    from skier.lessons import write_lesson_notebook

    path = write_lesson_notebook(name, output or f"{name}.ipynb", force=force)
    click.echo(f"notebook: {path}")


def register(group: click.Group) -> None:
    """Add ``lesson list``, ``lesson run`` and ``lesson notebook`` to the ``skier`` group."""
    group.add_command(lesson_group)
