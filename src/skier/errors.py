"""Errors skier raises on purpose.

Every message follows one shape: what happened, what was expected, how to fix it::

    "{field} must be {constraint}; got {value!r}. {hint}"

The CLI turns a :class:`SkierError` into one line on stderr and exit status 2 (bad input) or 1
(a failure while running). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable, Sequence

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MissingExtraError",
    "ModelError",
    "SkierError",
    "StoreError",
    "TrainingError",
    "WriteError",
    "did_you_mean",
    "problem",
    "require_extra",
]


class SkierError(Exception):
    """Base class of every error skier raises on purpose.

    ``problems`` holds one line per problem, so that a config with three mistakes is reported
    once with all three. ``exit_code`` is what the CLI exits with: 2 for bad input, 1 for a
    failure while running.
    """

    exit_code = 2

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(self.problems[0] if len(self.problems) == 1 else self._joined())

    def _joined(self) -> str:
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigError(SkierError):
    """A setting is missing, misspelt, of the wrong type or out of range."""


class DataError(SkierError):
    """A data file is missing or its contents do not fit what was asked for."""


class ModelError(SkierError):
    """The model cannot be built, or its output does not fit the data."""


class CheckpointError(SkierError):
    """A checkpoint is missing, corrupt or does not match the run it is resumed into."""


class StoreError(SkierError):
    """The run store cannot be opened or written."""


class TrainingError(SkierError):
    """Training could not go on (e.g. a non-finite loss with no guard to stop it)."""

    exit_code = 1


class WriteError(SkierError):
    """A file could not be written (disk full, no permission); the previous file is intact."""

    exit_code = 1


class MissingExtraError(SkierError):
    """An optional package a feature needs is not installed."""


def require_extra(module: str, extra: str, feature: str) -> None:
    """Raise a one-line error naming the extra to install when ``module`` is missing.

    >>> require_extra("json", "x", "json logging")  # present: nothing happens
    >>> try:
    ...     require_extra("no_such_module", "demo", "Demo")
    ... except MissingExtraError as exc:
    ...     print(exc)
    Demo needs the no_such_module package; install it with: pip install 'skier[demo]'
    """
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{feature} needs the {module} package; install it with: pip install 'skier[{extra}]'"
        )


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` when none is close.

    >>> did_you_mean("lrr", ["lr", "epochs"])
    " Did you mean 'lr'?"
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def problem(field: str, constraint: str, value: object, hint: str = "") -> str:
    """Format one problem in skier's message shape."""
    text = f"{field} must be {constraint}; got {value!r}."
    return f"{text} {hint}".rstrip() if hint else text
