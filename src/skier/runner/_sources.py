"""Where a diagnostic starts and how it is recorded: :class:`Source` (a config or a finished run,
with its data and model), and the recorder that gives every diagnostic its own run directory and
store row, linked to the run it looked at, and refreshes that run's report."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from skier._io import atomic_write_text
from skier.config import (
    RunConfig,
    config_to_yaml,
)
from skier.data import DataBundle, load_data
from skier.errors import CheckpointError, ConfigError, DataError, SkierError, problem
from skier.plots import save_figure
from skier.record import RunDir, RunFiles, RunStore, default_store_url, new_run_id
from skier.report import write_report
from skier.runner.lifecycle import resolve_store_url, run_ending, run_name
from skier.runner.training import build_initial_model
from skier.train import Checkpoint
from skier.train.averaging import (
    checkpoint_average,
    has_batch_norm,
    input_batches,
    recompute_batch_norm,
)
from skier.train.checkpoint import load_checkpoint

__all__ = [
    "DiagnosticOutcome",
    "Echo",
    "Recorder",
    "Source",
    "Weights",
    "initial_model",
    "load_source",
    "recorded",
    "refresh_report",
]

Echo = Callable[[str], None]
Weights = Literal["final", "best", "last", "init"]


@dataclass
class Source:
    """What a diagnostic looks at: a run config, its data, and a model with chosen weights.

    ``run_dir`` is the finished run it came from (None for a bare config). ``averaged`` is
    ``"ema"`` or ``"swa"`` when the model holds the run's weight average, not its raw weights.
    """

    config: RunConfig
    data: DataBundle
    model: Any
    weights: str
    run_dir: RunDir | None = None
    base_dir: Path | None = None
    averaged: str | None = None

    @property
    def run_id(self) -> str | None:
        return self.run_dir.run_id if self.run_dir is not None else None

    def describe(self) -> str:
        where = f"run {self.run_id}" if self.run_dir is not None else "config"
        kind = f"{self.averaged.upper()}-averaged " if self.averaged is not None else ""
        return f"{where} ({self.weights} {kind}weights)"


@dataclass
class DiagnosticOutcome:
    """Where a diagnostic run was written and what it found."""

    kind: str
    run_id: str
    run_dir: Path
    store_url: str
    result: Any
    source_run: str | None
    figures: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


# --- sources -------------------------------------------------------------------------------------


def initial_model(config: RunConfig, data: DataBundle, base_dir: Path | None) -> Any:
    """The model exactly as the run started it: built and initialised by the same code as
    :func:`~skier.runner.training.run_training` (seeded first), so the same config gives the same
    initial weights."""
    return build_initial_model(config, data, base_dir)


def _checkpoint_for(run_dir: RunDir, weights: Weights) -> Path:
    folder = run_dir.checkpoints
    best, last = folder / Checkpoint.BEST_FILE, folder / Checkpoint.LAST_FILE
    if weights == "final":
        # The weights the run ended with: early stopping's restore_best leaves the best ones.
        restored = False
        if run_dir.result_json.is_file():
            restored = bool(run_dir.read_result().get("restored"))
        chosen = best if restored and best.is_file() else last
    else:
        chosen = best if weights == "best" else last
    if not chosen.is_file():
        raise CheckpointError(
            f"run directory {str(run_dir.path)!r} must have checkpoints/{chosen.name} for the "
            f"{weights!r} weights; it has none (was checkpoint.enabled off?)."
        )
    return chosen


def _load_weights(
    model: Any, config: RunConfig, data: DataBundle, path: Path, average: bool | None
) -> str | None:
    """Load the checkpoint's raw weights or its weight average into ``model``; the average's
    tag, or ``None`` for the raw weights.

    ``average`` None: the copy the run selected (``train.average_select``), so a run that
    returned its average is analysed as it returned it; where that average held nothing yet
    at the checkpoint (SWA before ``swa_start``), the raw weights, as the run judged them.
    """
    state = load_checkpoint(path)
    found = checkpoint_average(state)
    use = average if average is not None else config.train.average_select == "average"
    if not use:
        model.load_state_dict(state["model"])
        return None
    if found is None:
        if average:
            raise CheckpointError(
                f"checkpoint {str(path)!r} must hold a weight average for --average; it has "
                + ("none (the run set neither train.ema nor train.swa_start)."
                   if state.get("average") is None else
                   "one that holds nothing yet (SWA starts at train.swa_start). Use --raw.")
            )  # fmt: skip
        model.load_state_dict(state["model"])
        return None
    tag, weights, bn_stale = found
    model.load_state_dict(weights)
    if bn_stale and has_batch_norm(model):  # SWA: as the loop recomputes them, before use
        recompute_batch_norm(model, input_batches(data.train, config.train.batch_size))
    return tag


def load_source(
    source: str | Path | RunConfig,
    *,
    weights: Weights = "final",
    average: bool | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    base_dir: str | Path | None = None,
) -> Source:
    """A finished run directory (its config, data and checkpoint) or a config (YAML path or
    :class:`RunConfig`: the model at its initial weights).

    ``weights``: ``final`` (what the run ended with), ``best``, ``last`` or ``init`` (rebuilt
    from the config's seed). ``average``, for a run that kept a weight average (``train.ema``
    or ``train.swa_start``): ``True`` the average, ``False`` the raw weights, ``None`` the
    copy the run selected (``train.average_select``). ``overrides`` are ``--set`` values
    applied to the config, e.g. a different ``data`` split; the model's architecture must stay
    the same.
    """
    from skier.config import load_config

    run_dir: RunDir | None = None
    base = Path(base_dir) if base_dir is not None else None
    if isinstance(source, RunConfig):
        config = source
        if overrides:
            raise ConfigError("overrides must be applied to the config before it is passed in.")
    else:
        path = Path(source)
        if path.is_dir():
            run_dir = RunDir(path)
            if not run_dir.config_path.is_file():
                raise ConfigError(
                    f"source must be a config file or a run directory with config.yaml; got "
                    f"{str(path)!r}, a folder without one."
                )
            config = load_config(run_dir.config_path, overrides)
        else:
            config = load_config(path, overrides)
            base = base or path.resolve().parent
    if config.optim.lr == "auto":
        config = config.model_copy(
            update={"optim": config.optim.model_copy(update={"lr": config.lr_find.start_lr})}
        )
    if average and (run_dir is None or weights == "init"):
        raise ConfigError(
            "average must be off for a model at its initial weights (a bare config or --weights "
            "init): only a finished run's checkpoint holds a weight average."
        )
    data = load_data(config.data, base_dir=base)
    if data.streams:
        raise DataError(
            problem("data.name", "an in-memory data set for a diagnostic", "dataset",
                    "Diagnostics evaluate whole splits in memory; data.name 'dataset' reads a "
                    "Dataset as it trains (skier train only).")
        )  # fmt: skip
    model = initial_model(config, data, base)
    averaged = None
    if run_dir is not None and weights != "init":
        averaged = _load_weights(model, config, data, _checkpoint_for(run_dir, weights), average)
    elif run_dir is None and weights != "init":
        weights = "init"  # a bare config has no trained weights
    return Source(config, data, model, weights, run_dir, base, averaged)


# --- recording -----------------------------------------------------------------------------------


class Recorder:
    """One diagnostic run: its directory, store row, files and report."""

    def __init__(
        self,
        kind: str,
        source: Source,
        settings: Mapping[str, Any],
        *,
        out_dir: str | Path | None,
        store_url: str | None,
        resume_dir: str | Path | None = None,
    ) -> None:
        self.kind, self.source, self.settings = kind, source, dict(settings)
        if resume_dir is not None:
            self.run_dir = RunDir(resume_dir)
            root = self.run_dir.path.parent
        elif out_dir is not None:
            root = Path(out_dir)
        elif source.run_dir is not None:
            root = source.run_dir.path.parent
        else:
            root = Path(source.config.record.dir)
        self.url = resolve_store_url(store_url, source.config.record.store, root)
        self.store = RunStore(self.url).open()
        if resume_dir is not None:
            self.run_id = self.run_dir.run_id
            self.store.resume_run(self.run_id)
        else:
            self.run_id = new_run_id()
            self.run_dir = RunDir.create(root, self.run_id)
            self.run_dir.checkpoints.rmdir()  # a diagnostic writes no checkpoints
            cfg = source.config
            name = run_name(cfg, kind)
            config = {**source.config.model_dump(mode="json"), kind: self.settings}
            self.store.create_run(
                name,
                config,
                self.run_dir.path,
                kind=kind,
                task=source.data.task,
                run_id=self.run_id,
                parent_id=self._parent(),
            )
            self.run_dir.write_config(config_to_yaml(source.config))
            settings_text = yaml.safe_dump(
                {
                    "source": self._source_text(),
                    "weights": source.weights,
                    "average": source.averaged is not None,
                    **self.settings,
                },
                sort_keys=False,
            )
            atomic_write_text(self.run_dir.path / RunFiles.settings(kind), settings_text)
        self.started = time.perf_counter()
        self.figures: dict[str, Path] = {}

    def _parent(self) -> str | None:
        if self.source.run_dir is None:
            return None
        try:  # the source run may live in another store
            self.store.get_run(self.source.run_dir.run_id)
        except SkierError:
            return None
        return self.source.run_dir.run_id

    def _source_text(self) -> str:
        if self.source.run_dir is not None:
            return str(self.source.run_dir.path.resolve())
        return "config"

    def figure(self, caption: str, name: str, figure: Any) -> None:
        path = self.run_dir.path / name
        save_figure(figure, path)
        self.store.add_artifact(self.run_id, name, path, "figure")
        self.figures[caption] = path

    def text(self, name: str, text: str, kind: str = "csv") -> Path:
        path = atomic_write_text(self.run_dir.path / name, text)
        self.store.add_artifact(self.run_id, name, path, kind)
        return path

    def finish(self, result: Any, summary: Mapping[str, Any], title: str) -> DiagnosticOutcome:
        seconds = time.perf_counter() - self.started
        full = {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": "completed",
            "source": self._source_text(),
            "source_run": self.source.run_id,
            "weights": self.source.weights,
            "averaged": self.source.averaged,
            "summary": dict(summary),
            "result": result.to_dict(),
            "duration_s": seconds,
        }
        self.run_dir.write_result(full)
        self.store.add_artifact(self.run_id, RunFiles.RESULT, self.run_dir.result_json, "json")
        self.store.add_artifact(self.run_id, RunFiles.CONFIG, self.run_dir.config_path, "config")
        write_report(
            self.run_dir.report_html,
            title=title,
            config={**self.source.config.model_dump(mode="json"), self.kind: self.settings},
            result={"run_id": self.run_id, "status": "completed", **_flat_summary(summary)},
            figures=self.figures,
            history=None,
        )
        self.store.add_artifact(self.run_id, RunFiles.REPORT, self.run_dir.report_html, "report")
        self.store.finish_run(self.run_id, "completed", duration_s=seconds, summary=summary)
        self.store.close()
        if self.source.run_dir is not None:
            refresh_report(self.source.run_dir)
        return DiagnosticOutcome(
            self.kind,
            self.run_id,
            self.run_dir.path,
            self.store.safe_url,
            result,
            self.source.run_id,
            dict(self.figures),
            dict(summary),
        )


def _flat_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of a summary for the report's run table."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, (int, float, str)) or value is None:
            out[key] = value
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(v, (int, float, str)):
                    out[f"{key}.{k}"] = v
    return out


def refresh_report(run_dir: RunDir) -> Path | None:
    """Rewrite a training run's ``report.html`` with every section its data allows, the
    diagnostics run on it included (linked in the store beside it, ``skier.db``, or found
    beside it: run directories whose result names it as source).

    Nothing is written when the run has no result.json yet (it has not finished).
    """
    from skier.report import write_run_report

    if not run_dir.result_json.is_file():
        return None
    db = run_dir.path.parent / "skier.db"
    if not db.is_file():
        return write_run_report(run_dir.path)
    with RunStore(default_store_url(run_dir.path.parent)) as store:
        return write_run_report(run_dir.path, store=store)


def recorded(recorder: Recorder, work: Callable[[], DiagnosticOutcome]) -> DiagnosticOutcome:
    try:
        with run_ending(recorder.store, recorder.run_id, started=recorder.started):
            return work()
    except BaseException:
        recorder.store.close()
        raise


# --- the three diagnostics -----------------------------------------------------------------------
