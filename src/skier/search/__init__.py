"""Model selection on top of the train loop: cross-validation folds and hyper-parameter search.

The engines are scikit-learn's splitters (:mod:`skier.search.crossval`) and Optuna's samplers,
pruners and storages (:mod:`skier.search.tune`); :mod:`skier.runner.cv` and
:mod:`skier.runner.tune` run recorded skier runs through them (``skier cv``, ``skier tune``).
"""

from skier.search.crossval import (
    CVData,
    Fold,
    FoldResult,
    chosen_metrics,
    cv_data,
    fold_bundle,
    make_folds,
    mean_curve,
    refit_bundle,
    summarize_folds,
)

__all__ = [
    "CVData",
    "Fold",
    "FoldResult",
    "chosen_metrics",
    "cv_data",
    "fold_bundle",
    "make_folds",
    "mean_curve",
    "refit_bundle",
    "summarize_folds",
]
