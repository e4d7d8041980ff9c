"""Run kinds as data: every kind of run skier records, what the report calls it, which of the
run directory's files it writes and which report sections show it. The runner, the CLI and the
report read this table, so a new run kind is one entry here (a test checks that every kind the
runner writes has one, and that every section an entry names is one the report has).

>>> RUN_KINDS["lr_find"].title, RUN_KINDS["lr_find"].role
('LR range test', 'diagnostic')
>>> run_kind("lr-find")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
skier.errors.StoreError: run kind must be one of ...; got 'lr-find'. Did you mean 'lr_find'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from skier.errors import StoreError
from skier.record.rundir import RunFiles

__all__ = ["DIAGNOSTIC_KINDS", "RUN_KINDS", "RunKind", "run_kind"]

# "group": runs of one config that differ only by seed, summarized as mean ± std
Role = Literal["training", "member", "search", "group", "diagnostic", "lesson"]


@dataclass(frozen=True)
class RunKind:
    """One kind of run: its name in the store, its title in the report, its role and files.

    ``files`` are the files every finished run of the kind writes (names from
    :class:`RunFiles`); ``figures`` the figures the report embeds for it, those not in ``files``
    being optional; ``sections`` name the report sections (``skier.report.sections``) that show
    its findings: on its own page, on the page of the run a diagnostic looked at, and on the
    pages of a search's members.
    """

    name: str
    title: str
    role: Role
    files: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()

    def missing_figures(self, present: Iterable[str]) -> list[str]:
        """The figures every run of this kind writes that are not in ``present``.

        >>> RUN_KINDS["cv"].missing_figures([])
        ['cv_curves.png']
        """
        have = set(present)
        return [f for f in self.figures if f in self.files and f not in have]


_EVERY_RUN = (RunFiles.CONFIG, RunFiles.RESULT, RunFiles.REPORT)
_TRAINING = (*_EVERY_RUN, RunFiles.METRICS, RunFiles.LEARNING_CURVES_PNG, RunFiles.LR_CSV)
# the figures of a training run that have a section of their own (learning curves, gradient
# flow, sharpness against 2/lr, the range test of optim.lr: auto)
_TRAINING_FIGURES = (
    RunFiles.LEARNING_CURVES_PNG,
    RunFiles.GRADIENT_FLOW_PNG,
    RunFiles.SHARPNESS_STEPS_PNG,
    RunFiles.LR_FIND_PNG,
)
_LINES = (*_EVERY_RUN, RunFiles.CONNECTIVITY_CSV, RunFiles.CONNECTIVITY_PNG, RunFiles.CURVE_PT)
_SEARCH_FIGURES = (
    RunFiles.OPTIMIZATION_HISTORY_PNG,
    RunFiles.PARAM_IMPORTANCES_PNG,
    RunFiles.PARALLEL_COORDINATES_PNG,
    RunFiles.SLICES_PNG,
)

_KINDS = (
    RunKind("train", "Training", "training", _TRAINING, _TRAINING_FIGURES),
    RunKind("cv_fold", "Cross-validation fold", "member", _TRAINING, _TRAINING_FIGURES),
    RunKind("trial", "Search trial", "member", _TRAINING, _TRAINING_FIGURES),
    RunKind("seed", "Seed run", "member", _TRAINING, _TRAINING_FIGURES),
    RunKind("seeds", "Runs over seeds", "group",
            (*_EVERY_RUN, RunFiles.METRICS, RunFiles.SEEDS_CSV, RunFiles.SEED_BANDS_CSV,
             RunFiles.SEED_BANDS_PNG),
            (RunFiles.SEED_BANDS_PNG,), ("seeds",)),
    RunKind("cv", "Cross-validation", "search",
            (*_EVERY_RUN, RunFiles.FOLDS_CSV, RunFiles.CV_CURVES_PNG),
            (RunFiles.CV_CURVES_PNG,), ("cross_validation",)),
    RunKind("tune", "Search", "search",
            (*_EVERY_RUN, RunFiles.SPACE_YAML, RunFiles.STUDY_JSON, RunFiles.TRIALS_CSV,
             RunFiles.BEST_CONFIG_YAML),
            _SEARCH_FIGURES, ("search",)),
    RunKind("lr_find", "LR range test", "diagnostic",
            (*_EVERY_RUN, RunFiles.LR_FIND_CSV, RunFiles.LR_FIND_PNG),
            (RunFiles.LR_FIND_PNG,), ("lr_range_test",)),
    RunKind("landscape", "Loss landscape", "diagnostic",
            (*_EVERY_RUN, RunFiles.LANDSCAPE_CSV, RunFiles.LANDSCAPE_PNG),
            (RunFiles.LANDSCAPE_PNG, RunFiles.LANDSCAPE_LOG_PNG, RunFiles.LANDSCAPE_BATCHES_PNG),
            ("loss_landscapes", "connectivity")),  # a line from init or another run: connectivity
    RunKind("sharpness", "Sharpness", "diagnostic",
            (*_EVERY_RUN, RunFiles.EIGENVALUES_CSV, RunFiles.SHARPNESS_PNG),
            (RunFiles.SHARPNESS_PNG, RunFiles.HESSIAN_SPECTRUM_PNG), ("sharpness",)),
    RunKind("connect", "Mode connectivity", "diagnostic", _LINES, (RunFiles.CONNECTIVITY_PNG,),
            ("connectivity",)),
    # the name older records carry for the same runs
    RunKind("connectivity", "Mode connectivity", "diagnostic", _LINES,
            (RunFiles.CONNECTIVITY_PNG,), ("connectivity",)),
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
