"""Optuna, imported without tqdm's notebook warning.

Optuna imports ``tqdm.auto`` for its own progress bar, which skier never shows; in a Jupyter
kernel without ipywidgets that import warns ("TqdmWarning: IProgress not found") into the
notebook. Importing optuna here, with that one warning silenced, caches ``tqdm.auto`` quietly,
so a later ``import optuna`` anywhere says nothing either. Every skier module that needs optuna
at import time imports it from here.
"""

from __future__ import annotations

import warnings

from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=TqdmWarning)
    import optuna

__all__ = ["optuna"]
