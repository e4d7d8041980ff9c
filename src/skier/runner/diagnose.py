"""Diagnostic runs: the LR range test, loss landscapes and sharpness on a config or a finished run,
each written as its own run directory and store row, linked to the run it looked at.

What ``skier lr-find``, ``skier landscape`` and ``skier sharpness`` call::

    from skier.runner.diagnose import load_source, run_landscape
    source = load_source("runs/20261122-101500-ab12cd")   # a finished run directory
    outcome = run_landscape(source, {"dims": 2, "points": 31})
    print(outcome.run_dir / "report.html")

A diagnostic run directory holds ``config.yaml`` (the run config it used), ``<kind>.yaml`` (the
diagnostic's settings), ``result.json``, the values as CSV, the figures and ``report.html``.
When the source is a run, its own ``report.html`` is rewritten with the new figures in a
"Diagnostics" section. A landscape grid saves its rows as it goes (``partial.json``), so a run
that was stopped resumes where it stopped (``resume=``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from skier._io import atomic_write_text
from skier.config import (
    ConnectConfig,
    LandscapeConfig,
    LRFindConfig,
    RunConfig,
    SharpnessConfig,
)
from skier.config.base import as_section
from skier.errors import CheckpointError, ConfigError
from skier.record.rundir import RunFiles
from skier.runner._sources import (
    DiagnosticOutcome,
    Echo,
    Recorder,
    Source,
    Weights,
    initial_model,
    load_source,
    recorded,
    refresh_report,
)

if TYPE_CHECKING:
    from skier.train.losses import Loss

__all__ = [
    "DiagnosticOutcome",
    "Source",
    "load_source",
    "refresh_report",
    "run_connect",
    "run_landscape",
    "run_lr_find",
    "run_sharpness",
    "saved_landscape_settings",
]


def run_lr_find(
    source: Source,
    settings: LRFindConfig | Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    progress: bool = False,
    echo: Echo | None = None,
) -> DiagnosticOutcome:
    """The LR range test on the source's model (normally at its initial weights), recorded."""
    from skier.diagnostics.lr_range import lr_range_test
    from skier.plots.lr_range import plot_lr_range

    cfg: LRFindConfig = as_section(LRFindConfig, settings or source.config.lr_find, "lr_find.")
    say = echo or (lambda _m: None)
    optim = source.config.optim
    if optim.lr == "auto":
        optim = optim.model_copy(update={"lr": cfg.start_lr})
    recorder = Recorder(
        "lr_find", source, cfg.model_dump(mode="json"), out_dir=out_dir, store_url=store_url
    )
    say(f"lr-find {recorder.run_id} → {recorder.run_dir.path}")

    def work() -> DiagnosticOutcome:
        result = lr_range_test(
            source.model,
            source.data,
            optim_config=optim,
            train_config=source.config.train,
            settings=cfg,
            task=source.data.task,
            progress=progress,
        )
        recorder.text(RunFiles.LR_FIND_CSV, _lr_csv(result))
        recorder.figure("LR range test", RunFiles.LR_FIND_PNG, plot_lr_range(result).figure)
        summary = {
            "suggestion": result.suggestion,
            "lr": result.lr,
            "suggestions": dict(result.suggestions),
            "diverged": result.diverged,
            "steps": len(result.lrs),
        }
        return recorder.finish(result, summary, f"LR range test · {source.describe()}")

    return recorded(recorder, work)


def _lr_csv(result: Any) -> str:
    lines = ["step,lr,loss,smoothed_loss"]
    for i, (lr, loss, smooth) in enumerate(
        zip(result.lrs, result.losses, result.smoothed, strict=True), 1
    ):
        lines.append(f"{i},{lr!r},{float(loss)!r},{float(smooth)!r}")
    return "\n".join(lines) + "\n"


def run_landscape(
    source: Source,
    settings: LandscapeConfig | Mapping[str, Any] | None = None,
    *,
    other: Source | None = None,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    resume_dir: str | Path | None = None,
    progress: bool = False,
    log_scale: bool = False,
    batch_points: int | None = None,
    echo: Echo | None = None,
) -> DiagnosticOutcome:
    """A loss landscape of the source's model, recorded.

    ``settings.direction``: ``random`` / ``hessian`` (1-D or 2-D around the weights), ``init``
    (the line from the run's initial weights to its final ones) or ``run`` (the line to
    ``other``, another run of the same architecture). ``resume_dir`` continues a landscape run
    that was stopped, from its ``partial.json``.
    """
    from skier.diagnostics.landscape import interpolate, landscape
    from skier.plots.landscape import plot_landscape_batches, plot_landscape_figure

    cfg: LandscapeConfig = as_section(LandscapeConfig, settings, "landscape.")
    if cfg.direction == "run" and other is None:
        raise ConfigError(
            "landscape.direction 'run' needs the other run; got none. Pass --to OTHER_RUN_DIR."
        )
    if other is not None and cfg.direction != "run":
        raise ConfigError(
            f"landscape.direction must be 'run' with another run (--to); got {cfg.direction!r}."
        )
    if other is not None and other.config.model != source.config.model:
        raise ConfigError(
            "the two runs must have the same model config (architecture) to interpolate; "
            f"got {other.config.model.name!r} and {source.config.model.name!r} with different "
            "settings."
        )
    if cfg.direction == "init" and source.weights == "init":
        raise ConfigError(
            "landscape.direction 'init' needs a trained model: give a finished run directory "
            "(a bare config has only its initial weights)."
        )
    say = echo or (lambda _m: None)
    partial_path: Path | None = None
    resume = None
    if resume_dir is not None:
        partial_path = Path(resume_dir) / RunFiles.PARTIAL_JSON
        if not partial_path.is_file():
            raise CheckpointError(
                f"resume directory {str(resume_dir)!r} must hold partial.json (a stopped "
                "landscape); it has none."
            )
        resume = json.loads(partial_path.read_text())
    recorder = Recorder(
        "landscape",
        source,
        cfg.model_dump(mode="json"),
        out_dir=out_dir,
        store_url=store_url,
        resume_dir=resume_dir,
    )
    partial_path = recorder.run_dir.path / RunFiles.PARTIAL_JSON
    say(f"landscape {recorder.run_id} → {recorder.run_dir.path}")

    def save_partial(state: dict[str, Any]) -> None:
        atomic_write_text(partial_path, json.dumps(state))

    def work() -> DiagnosticOutcome:
        if cfg.direction in ("init", "run"):
            if cfg.direction == "init":
                start = initial_model(source.config, source.data, source.base_dir)
                end, labels = source.model.state_dict(), ("initial", source.weights)
            else:
                assert other is not None
                start, end = source.model, other.model.state_dict()
                labels = (f"run {source.run_id or 'A'}", f"run {other.run_id or 'B'}")
            result = interpolate(
                start, end, source.data, cfg, task=source.data.task, loss=_run_loss(source),
                labels=labels, progress=progress,
            )  # fmt: skip
        else:
            result = landscape(
                source.model, source.data, cfg, task=source.data.task, loss=_run_loss(source),
                batch_points=batch_points, progress=progress, resume=resume, on_row=save_partial,
            )  # fmt: skip
        recorder.text(RunFiles.LANDSCAPE_CSV, result.to_csv())
        caption = f"Loss landscape ({cfg.dims}-D, {cfg.direction})"
        recorder.figure(caption, RunFiles.LANDSCAPE_PNG, plot_landscape_figure(result))
        if log_scale or cfg.dims == 2:
            recorder.figure(
                caption + ", log scale",
                RunFiles.LANDSCAPE_LOG_PNG,
                plot_landscape_figure(result, log_scale=True),
            )
        if result.batches:
            recorder.figure(
                "The same plane on two mini-batches",
                RunFiles.LANDSCAPE_BATCHES_PNG,
                plot_landscape_batches(result, log_scale=log_scale),
            )
        partial_path.unlink(missing_ok=True)
        summary = {
            "dims": cfg.dims,
            "direction": cfg.direction,
            "points": int(result.loss.size),
            "minimum": result.minimum,
            "center_loss": result.center_loss,
            "examples": result.surface.examples,
            "seconds": result.seconds,
        }
        return recorder.finish(result, summary, f"Loss landscape · {source.describe()}")

    return recorded(recorder, work)


def _run_loss(source: Source) -> Loss:
    """The loss the source's run trains with (``train.loss`` and its options), which its
    landscape and sharpness measure."""
    from skier.train.losses import loss_for

    return loss_for(source.config.train, source.data.task)


def run_sharpness(
    source: Source,
    settings: SharpnessConfig | Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    progress: bool = False,
    echo: Echo | None = None,
) -> DiagnosticOutcome:
    """Top Hessian eigenvalues and the Hessian trace of the source's model, recorded."""
    from skier.diagnostics.sharpness import check_sharpness, sharpness
    from skier.plots.sharpness import plot_hessian_spectrum, plot_sharpness

    cfg: SharpnessConfig = as_section(SharpnessConfig, settings, "sharpness.")
    # Input errors (a trace_method the model does not allow, top_k past the parameter count)
    # before the run's directory and record are made.
    loss = _run_loss(source)
    check_sharpness(source.model, source.data, settings=cfg, task=source.data.task, loss=loss)
    say = echo or (lambda _m: None)
    recorder = Recorder(
        "sharpness", source, cfg.model_dump(mode="json"), out_dir=out_dir, store_url=store_url
    )
    say(f"sharpness {recorder.run_id} → {recorder.run_dir.path}")

    def work() -> DiagnosticOutcome:
        result = sharpness(
            source.model, source.data, settings=cfg, task=source.data.task, loss=loss,
            progress=progress,
        )  # fmt: skip
        lines = ["index,eigenvalue,iterations,converged"]
        for i, (value, its, ok) in enumerate(
            zip(result.eigenvalues, result.iterations, result.converged, strict=True), 1
        ):
            lines.append(f"{i},{value!r},{its},{ok}")
        recorder.text(RunFiles.EIGENVALUES_CSV, "\n".join(lines) + "\n")
        recorder.figure("Power iteration", RunFiles.SHARPNESS_PNG, plot_sharpness(result).figure)
        recorder.figure(
            "Top Hessian eigenvalues",
            RunFiles.HESSIAN_SPECTRUM_PNG,
            plot_hessian_spectrum(result).figure,
        )
        summary = {
            "top_eigenvalue": result.eigenvalues[0] if result.eigenvalues else None,
            "eigenvalues": list(result.eigenvalues),
            "converged": all(result.converged),
            "trace": result.trace,
            "trace_std_error": result.trace_std_error,
            "trace_basis": result.trace_basis,
            "trace_method": result.trace_method,
            "examples": result.examples,
        }
        return recorder.finish(result, summary, f"Sharpness · {source.describe()}")

    return recorded(recorder, work)


def run_connect(
    source: Source,
    other: Source,
    settings: ConnectConfig | Mapping[str, Any] | None = None,
    *,
    config: RunConfig | None = None,
    out_dir: str | Path | None = None,
    store_url: str | None = None,
    progress: bool = False,
    echo: Echo | None = None,
) -> DiagnosticOutcome:
    """Mode connectivity between two runs of the same model on the same data, recorded.

    The curve is trained with ``config``'s ``optim``, ``train`` (batch size) and ``schedule``
    sections (default: the first run's config). The run directory holds ``connectivity.csv``
    (both paths at every t), the figure, ``curve.pt`` (the bends, a weights-only checkpoint) and
    the report; the summary holds the barrier heights and their reduction.
    """
    from skier.diagnostics.connectivity import connect
    from skier.plots.connectivity import plot_connectivity_figure
    from skier.train.checkpoint import save_checkpoint

    cfg: ConnectConfig = as_section(ConnectConfig, settings, "connect.")
    if other.config.model != source.config.model:
        raise ConfigError(
            "the two runs must have the same model config (architecture) to be connected; got "
            f"{source.config.model.name!r} and {other.config.model.name!r} with different settings."
        )
    if other.config.data != source.config.data:
        raise ConfigError(
            "the two runs must be trained on the same data config to be connected; their data "
            "sections differ."
        )
    training = config or source.config
    say = echo or (lambda _m: None)
    recorder = Recorder(
        "connect",
        source,
        {**cfg.model_dump(mode="json"), "other": str(other.run_dir.path.resolve())
         if other.run_dir is not None else None},
        out_dir=out_dir,
        store_url=store_url,
    )  # fmt: skip
    say(f"connect {recorder.run_id} → {recorder.run_dir.path}")

    def work() -> DiagnosticOutcome:
        result = connect(
            source.model, source.model.state_dict(), other.model.state_dict(), source.data, cfg,
            optim_config=training.optim, train_config=training.train,
            schedule_config=training.schedule, progress=progress,
        )  # fmt: skip
        recorder.text(RunFiles.CONNECTIVITY_CSV, result.to_csv())
        save_checkpoint(
            recorder.run_dir.path / RunFiles.CURVE_PT,
            {"bends": result.bends, "curve": cfg.curve, "count": cfg.bends},
        )
        recorder.store.add_artifact(
            recorder.run_id,
            RunFiles.CURVE_PT,
            recorder.run_dir.path / RunFiles.CURVE_PT,
            "checkpoint",
        )
        recorder.figure(
            f"Mode connectivity ({cfg.curve}, {cfg.bends} bend{'s' if cfg.bends > 1 else ''})",
            RunFiles.CONNECTIVITY_PNG,
            plot_connectivity_figure(result),
        )
        summary = {
            "barrier_reduction": result.summary["barrier_reduction"],
            "line_train_loss_barrier": result.summary["line_train_loss_barrier"],
            "curve_train_loss_barrier": result.summary["curve_train_loss_barrier"],
            "line": result.summary["line"],
            "curve": result.summary["curve"],
            "ensemble": result.ensemble,
            "run_a": source.run_id,
            "run_b": other.run_id,
            "training_seconds": result.training_seconds,
            "seconds": result.seconds,
        }
        title = f"Mode connectivity · run {source.run_id or 'A'} ↔ run {other.run_id or 'B'}"
        return recorder.finish(result, summary, title)

    return recorded(recorder, work)


def saved_landscape_settings(
    run_dir: str | Path,
) -> tuple[str, Weights, bool | None, dict[str, Any]]:
    """The source, weights, weight average (``load_source``'s ``average``) and settings a
    landscape run directory was started with."""
    path = Path(run_dir) / RunFiles.settings("landscape")
    if not path.is_file():
        raise CheckpointError(
            f"resume directory {str(run_dir)!r} must be a landscape run (landscape.yaml); "
            "it is not."
        )
    saved = yaml.safe_load(path.read_text()) or {}
    source = saved.pop("source", "config")
    weights = saved.pop("weights", "final")
    average = saved.pop("average", None)
    if source == "config":
        raise CheckpointError(
            f"resume directory {str(run_dir)!r} was a landscape of a bare config; run it again."
        )
    return str(source), weights, average, saved
