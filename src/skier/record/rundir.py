"""The run directory: one folder per run holding its config, metrics, result, checkpoints and plots.

>>> import tempfile
>>> run = RunDir.create(tempfile.mkdtemp(), new_run_id())
>>> run.write_result({"status": "completed", "best_value": float("nan")}).name
'result.json'
>>> run.read_result()
{'status': 'completed', 'best_value': None}
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skier._io import atomic_write_text
from skier.errors import StoreError
from skier.history import History

__all__ = ["RunDir", "RunFiles", "json_safe", "new_run_id"]


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus 6 random hex digits.

    >>> len(new_run_id())  # e.g. '20261121-215501-3fa2c1'
    22
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by ``None`` (strict JSON has neither).

    >>> json_safe({"a": [1.0, float("inf")]})
    {'a': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class RunFiles:
    """Every file name of a run directory, one constant each, so a rename is one line here.

    Writers (runner, CLI) and readers (report, CLI) name files only through these constants;
    a test scans ``src/skier`` for any of the names spelt out elsewhere.

    >>> RunFiles.RESULT, "lr_find.json" in RunFiles.names()
    ('result.json', True)
    """

    # every run
    CONFIG = "config.yaml"
    METRICS = "metrics.csv"
    RESULT = "result.json"
    REPORT = "report.html"
    CHECKPOINTS = "checkpoints"
    # training
    LEARNING_CURVES_PNG = "learning_curves.png"
    LR_CSV = "lr.csv"
    PREPROCESSING_JSON = "preprocessing.json"
    GRADIENT_FLOW_CSV = "gradient_flow.csv"
    GRADIENT_FLOW_PNG = "gradient_flow.png"
    SHARPNESS_STEPS_CSV = "sharpness_steps.csv"
    SHARPNESS_STEPS_PNG = "sharpness_steps.png"
    # trackers (record.loggers): TensorBoard's folder, where each logger got to (for a resume),
    # and the default MLflow store, beside the run directories
    TENSORBOARD = "tensorboard"
    TRACKERS_JSON = "trackers.json"
    MLFLOW_DB = "mlflow.db"
    # LR range test (its own run, or optim.lr: auto in a training run)
    LR_FIND_JSON = "lr_find.json"
    LR_FIND_CSV = "lr_find.csv"
    LR_FIND_PNG = "lr_find.png"
    # cross-validation
    FOLDS = "folds"  # the folder of the fold runs
    FOLDS_CSV = "folds.csv"
    CV_CURVES_PNG = "cv_curves.png"
    # runs over seeds (a group: one training run per seed)
    SEEDS = "seeds"  # the folder of the seed runs
    SEEDS_CSV = "seeds.csv"
    SEED_BANDS_CSV = "seed_bands.csv"
    SEED_BANDS_PNG = "seed_bands.png"
    # tuning
    SPACE_YAML = "space.yaml"
    STUDY_JSON = "study.json"
    TRIALS_CSV = "trials.csv"
    BEST_CONFIG_YAML = "best_config.yaml"
    OPTIMIZATION_HISTORY_PNG = "optimization_history.png"
    PARAM_IMPORTANCES_PNG = "param_importances.png"
    PARALLEL_COORDINATES_PNG = "parallel_coordinates.png"
    SLICES_PNG = "slices.png"
    # diagnostics
    PARTIAL_JSON = "partial.json"
    LANDSCAPE_CSV = "landscape.csv"
    LANDSCAPE_PNG = "landscape.png"
    LANDSCAPE_LOG_PNG = "landscape_log.png"
    LANDSCAPE_BATCHES_PNG = "landscape_batches.png"
    EIGENVALUES_CSV = "eigenvalues.csv"
    SHARPNESS_PNG = "sharpness.png"
    HESSIAN_SPECTRUM_PNG = "hessian_spectrum.png"
    CONNECTIVITY_CSV = "connectivity.csv"
    CONNECTIVITY_PNG = "connectivity.png"
    CURVE_PT = "curve.pt"
    # lessons
    COURSE_HTML = "course.html"

    @staticmethod
    def settings(kind: str) -> str:
        """The diagnostic's own settings file, e.g. ``landscape.yaml``."""
        return f"{kind}.yaml"

    @classmethod
    def names(cls) -> frozenset[str]:
        """Every constant file name above (the folders, such as ``checkpoints``, aside)."""
        return frozenset(
            value
            for key, value in vars(cls).items()
            if key.isupper() and isinstance(value, str) and "." in value
        )


class RunDir:
    """Paths and atomic writers for one run directory ``ROOT/RUN_ID/``.

    ``RunDir(path)`` wraps an existing directory; :meth:`create` makes a new one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | Path, run_id: str, *, exist_ok: bool = False) -> RunDir:
        """Make ``root/run_id/`` and its ``checkpoints/`` folder.

        ``exist_ok=True`` reuses the folder (resuming a run); otherwise an existing one is an error,
        so that two runs never mix their files.
        """
        run = cls(Path(root) / run_id)
        try:
            run.path.mkdir(parents=True, exist_ok=exist_ok)
        except FileExistsError:
            raise StoreError(
                f"run directory must be new; got {str(run.path)!r}, which exists. "
                "Pick another run id or pass exist_ok=True to resume into it."
            ) from None
        run.checkpoints.mkdir(exist_ok=True)
        return run

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / RunFiles.CONFIG

    @property
    def metrics_csv(self) -> Path:
        return self.path / RunFiles.METRICS

    @property
    def result_json(self) -> Path:
        return self.path / RunFiles.RESULT

    @property
    def checkpoints(self) -> Path:
        return self.path / RunFiles.CHECKPOINTS

    @property
    def learning_curves_png(self) -> Path:
        return self.path / RunFiles.LEARNING_CURVES_PNG

    @property
    def report_html(self) -> Path:
        return self.path / RunFiles.REPORT

    def file(self, name: str) -> Path:
        """The path of file ``name`` (one of :class:`RunFiles`) in this run directory."""
        return self.path / name

    def write_config(self, yaml_text: str) -> Path:
        """Write the resolved config (YAML text, as produced by ``config_to_yaml``)."""
        return atomic_write_text(self.config_path, yaml_text)

    def write_metrics(self, history: History, *, sync: bool = True) -> Path:
        """Write one CSV row per epoch; empty cells where a value is missing or NaN.

        During training it is rewritten every epoch with ``sync=False`` (atomic, not flushed to
        the disk: the store holds the same rows); the run's final write is synced."""
        return atomic_write_text(self.metrics_csv, history.to_csv(), sync=sync)

    def read_metrics(self) -> History:
        if not self.metrics_csv.is_file():
            raise StoreError(f"metrics file must exist; got {str(self.metrics_csv)!r}, missing.")
        return History.from_csv(self.metrics_csv)

    def write_result(self, result: Mapping[str, Any]) -> Path:
        """Write ``result`` as strict JSON: NaN and infinities become ``null``."""
        text = json.dumps(json_safe(result), indent=2, allow_nan=False, default=str)
        return atomic_write_text(self.result_json, text + "\n")

    def read_result(self) -> dict[str, Any]:
        try:
            data = json.loads(self.result_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(
                f"result file must exist; got {str(self.result_json)!r}, missing. "
                "The run may not have finished."
            ) from None
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"result file must be JSON; got {str(self.result_json)!r}: {exc}."
            ) from None
        if not isinstance(data, dict):
            raise StoreError(
                f"result file must hold a JSON object; got {type(data).__name__} "
                f"in {str(self.result_json)!r}."
            )
        return data
