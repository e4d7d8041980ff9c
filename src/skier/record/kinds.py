"""Run kinds as data: every kind of run skier records, what the report calls it and which of
the run directory's files it writes. The runner, the CLI and the report read this table, so a
new run kind is one entry here (a test checks that every kind the runner writes has one).

>>> RUN_KINDS["lr_find"].title, RUN_KINDS["lr_find"].role
('LR range test', 'diagnostic')
>>> run_kind("lr-find")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
skier.errors.StoreError: run kind must be one of ...; got 'lr-find'. Did you mean 'lr_find'?
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from skier.errors import StoreError
from skier.record.rundir import RunFiles

__all__ = ["DIAGNOSTIC_KINDS", "RUN_KINDS", "RunKind", "run_kind"]

Role = Literal["training", "member", "search", "diagnostic", "lesson"]


@dataclass(frozen=True)
class RunKind:
    """One kind of run: its name in the store, its title in the report, its role and files."""

    name: str
    title: str
    role: Role
    files: tuple[str, ...] = ()


_EVERY_RUN = (RunFiles.CONFIG, RunFiles.RESULT, RunFiles.REPORT)
_TRAINING = (*_EVERY_RUN, RunFiles.METRICS, RunFiles.LEARNING_CURVES_PNG, RunFiles.LR_CSV)
_LINES = (*_EVERY_RUN, RunFiles.CONNECTIVITY_CSV, RunFiles.CONNECTIVITY_PNG, RunFiles.CURVE_PT)

_KINDS = (
    RunKind("train", "Training", "training", _TRAINING),
    RunKind("cv_fold", "Cross-validation fold", "member", _TRAINING),
    RunKind("trial", "Search trial", "member", _TRAINING),
    RunKind("cv", "Cross-validation", "search", (*_EVERY_RUN, RunFiles.FOLDS_CSV,
                                                RunFiles.CV_CURVES_PNG)),
    RunKind("tune", "Search", "search", (*_EVERY_RUN, RunFiles.SPACE_YAML, RunFiles.STUDY_JSON,
                                         RunFiles.TRIALS_CSV, RunFiles.BEST_CONFIG_YAML)),
    RunKind("lr_find", "LR range test", "diagnostic", (*_EVERY_RUN, RunFiles.LR_FIND_CSV,
                                                       RunFiles.LR_FIND_PNG)),
    RunKind("landscape", "Loss landscape", "diagnostic", (*_EVERY_RUN, RunFiles.LANDSCAPE_CSV,
                                                          RunFiles.LANDSCAPE_PNG)),
    RunKind("sharpness", "Sharpness", "diagnostic", (*_EVERY_RUN, RunFiles.EIGENVALUES_CSV,
                                                     RunFiles.SHARPNESS_PNG)),
    RunKind("connect", "Mode connectivity", "diagnostic", _LINES),
    # the name older records carry for the same runs
    RunKind("connectivity", "Mode connectivity", "diagnostic", _LINES),
    RunKind("lesson", "Lesson", "lesson", (RunFiles.RESULT, RunFiles.REPORT)),
    RunKind("course", "Course", "lesson", (RunFiles.COURSE_HTML,)),
)  # fmt: skip

RUN_KINDS: Final = MappingProxyType({kind.name: kind for kind in _KINDS})
DIAGNOSTIC_KINDS: Final = tuple(k.name for k in _KINDS if k.role == "diagnostic")


def run_kind(name: str) -> RunKind:
    """The registered kind ``name``; an unknown name is an error that lists the known ones."""
    try:
        return RUN_KINDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(RUN_KINDS), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else "Register it in skier.record.kinds."
        raise StoreError(
            f"run kind must be one of {', '.join(RUN_KINDS)}; got {name!r}. {hint}"
        ) from None
