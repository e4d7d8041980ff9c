"""What every ``skier`` verb shares: option declarations, config loading, error output.

Verb modules (``diagnose``, ``search``) define ``register(group)`` and are added to the
``skier`` group by :mod:`skier.cli.main`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, NoReturn

import click

from skier.errors import SkierError

__all__ = [
    "CONTEXT",
    "base_dir_of",
    "fail",
    "load",
    "progress_mode",
    "quiet_option",
    "set_option",
    "store_option",
]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(exc: SkierError) -> NoReturn:
    lines = str(exc).splitlines()
    click.echo(f"skier: error: {lines[0]}", err=True)
    for line in lines[1:]:
        click.echo(f"  {line.strip()}", err=True)
    sys.exit(exc.exit_code)


def progress_mode(quiet: bool) -> bool | Literal["auto"]:
    # Bars only on a terminal, never under CI (the CI variable is read here, not in the library);
    # without bars the run prints a line per epoch unless --quiet.
    if quiet or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return "auto"


def load(config: str | None, overrides: tuple[str, ...]) -> Any:
    from skier.config import load_config

    return load_config(config, overrides)


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a setting (repeatable), e.g. --set optim.lr=0.01.",
)
store_option = click.option("--store", default=None, help="SQLAlchemy URL of the run store.")
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines; the summary only."
)


def base_dir_of(config: str | None) -> Path | None:
    """Relative paths in a config file are relative to its folder."""
    return Path(config).resolve().parent if config else None
