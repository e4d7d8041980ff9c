"""Everything a run's config can be checked for before any data is read, reported at once.

:func:`check_run_config` is what ``skier train CONFIG`` calls and :func:`~skier.runner.
run_training` repeats: the config itself, then (for each section valid on its own) the
optimizer's own checks, the data settings and files, ``init.pretrained``, and every monitored
key against the keys the loop could produce. What only the data can tell comes after loading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skier.config import (
    CheckpointConfig,
    EarlyStoppingConfig,
    OptimConfig,
    RunConfig,
    config_from_mapping,
)
from skier.data import data_problems
from skier.errors import ConfigError, DataError, problem
from skier.optim import build_optimizer
from skier.train import Callback, Checkpoint, EarlyStopping
from skier.train.scoring import metric_name
from skier.train.setup import loop_keys, monitor_problems

__all__ = ["check_run_config"]


def monitoring_callbacks(
    es: EarlyStoppingConfig | None, ck: CheckpointConfig | None, checkpoints: Path
) -> list[Callback]:
    """The callbacks the config turns on that read a monitored key (``None``: a section that
    is not valid, so nothing of it is built)."""
    cbs: list[Callback] = []
    if es is not None and es.enabled:
        cbs.append(
            EarlyStopping(
                monitor=es.monitor,
                mode=es.mode,
                patience=es.patience,
                min_delta=es.min_delta,
                warmup_epochs=es.warmup_epochs,
                restore_best=es.restore_best,
                criterion=es.criterion,
                strips=es.strips,
                threshold=es.threshold,
            )
        )
    if ck is not None and ck.enabled:
        cbs.append(
            Checkpoint(
                checkpoints,
                every=ck.every,
                keep_best=ck.keep_best,
                monitor=ck.monitor,
                every_s=ck.every_s,
            )
        )
    return cbs


def pretrained_path(value: str, base_dir: Path | None) -> Path:
    """``init.pretrained`` resolved against the config file's folder; it must exist."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        where = f"the config file's folder {str(base_dir)!r}" if base_dir else "the working folder"
        raise ConfigError(
            f"init.pretrained must be an existing checkpoint or state-dict file; got {value!r}. "
            f"No file at {str(path)!r} (a relative path is relative to {where})."
        )
    return path.resolve()


def _optimizer_problems(optim: OptimConfig) -> list[str]:
    """The optimizer's own checks (a misspelt name, a setting it does not take), run on one
    stand-in parameter: they need no model. ``lr: auto`` stands in for the number it becomes."""
    import torch  # local: the check builds a real optimizer

    if optim.lr == "auto":
        optim = optim.model_copy(update={"lr": 1e-3})
    try:
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], optim)
    except ConfigError as exc:
        return exc.problems
    return []


def _streaming_problems(sections: Mapping[str, Any]) -> list[str]:
    """What needs the training examples in memory, refused for ``data.name: dataset``."""
    optim, diag = sections.get("optim"), sections.get("diagnostics")
    hint = "They need in-memory training data; data.name 'dataset' reads a Dataset as it trains."
    out = []
    if optim is not None and optim.lr == "auto":
        out.append(problem("optim.lr", "a number with data.name 'dataset'", "auto", hint))
    if diag is not None and diag.sharpness_every is not None:
        out.append(problem("diagnostics.sharpness_every", "null with data.name 'dataset'",
                           diag.sharpness_every, hint))  # fmt: skip
    return out


def preflight(
    sections: Mapping[str, Any], base_dir: Path | None, *, resuming: bool
) -> tuple[list[str], list[str], list[str]]:
    """Problems found without reading any data, from the config sections that are valid:
    (the optimizer's settings, the data settings and files with ``init.pretrained``, each
    monitored key against every key the loop could produce with this config).

    The task of a csv/npz file with ``data.task: auto`` is known only once it is read, so
    ``error`` and ``accuracy`` pass here; :func:`~skier.train.check_fit` checks the exact keys
    after loading, still before anything is written.
    """
    optim, data, init = sections.get("optim"), sections.get("data"), sections.get("init")
    settings = _optimizer_problems(optim) if optim is not None else []
    files = data_problems(data, base_dir) if data is not None else []
    if init is not None and init.pretrained is not None and not resuming:
        try:
            pretrained_path(init.pretrained, base_dir)
        except ConfigError as exc:
            files += exc.problems
    if data is not None and data.name == "dataset":
        files += _streaming_problems(sections)
    reg, train = sections.get("regularization"), sections.get("train")
    possible = loop_keys(
        classification=data is None or data.task != "regression",
        validation=True,  # a config's data always has a validation share (val_fraction > 0)
        penalty=reg is None or bool(reg.l1 or reg.l2),
        metrics=[metric_name(m) for m in train.metrics] if train is not None else (),
        train_metrics=train is not None and train.exact_train_error,
    )
    callbacks = monitoring_callbacks(
        sections.get("early_stopping"), sections.get("checkpoint"), Path("checkpoints")
    )
    monitors = monitor_problems(callbacks, possible, sections.get("schedule"))
    return settings, files, monitors


def _validconfig_sections(data: Any) -> dict[str, Any]:
    """Each section of a raw config that is valid on its own: a mistake in one section does
    not hide the problems of the files and monitors another one names."""
    if not isinstance(data, Mapping):
        return {}
    sections = {}
    for name in RunConfig.model_fields:
        try:
            alone = config_from_mapping({name: data[name]} if name in data else {})
        except ConfigError:
            continue
        sections[name] = getattr(alone, name)
    return sections


def config_sections(config: RunConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in RunConfig.model_fields}


def raise_problems(
    config: Sequence[str], settings: Sequence[str], files: Sequence[str], monitors: Sequence[str]
) -> None:
    """One error for every problem, in the order of the stages: a :class:`DataError` when the
    data files are all that is wrong, else a :class:`ConfigError`."""
    if config or settings or monitors:
        raise ConfigError([*config, *settings, *files, *monitors])
    if files:
        raise DataError(list(files))


def check_run_config(
    data: Mapping[str, Any] | None, source: str = "", *, base_dir: str | Path | None = None
) -> RunConfig:
    """A raw config (as read from YAML) validated, with its data files and monitored keys,
    before any data is read; one error lists every problem found, in that order.

    ``source`` names the file the values came from; ``base_dir`` is the folder relative data
    paths are read from (the config file's). What only the data can tell (a column, a value,
    the task of a csv/npz file with ``data.task: auto``) is checked when it is loaded::

        check_run_config({"optim": {"lrr": 0.1},
                          "data": {"name": "csv", "path": "gone.csv", "target": "y"}})
        # ConfigError: 2 problems:
        #   - optim.lrr is not a known setting. Did you mean 'lr'?
        #   - data.path must be an existing CSV file; got 'gone.csv'. Check the path; ...
    """
    base = Path(base_dir) if base_dir is not None else None
    try:
        config = config_from_mapping(data, source)
    except ConfigError as exc:  # go on with the sections that are valid on their own
        problems, sections = exc.problems, _validconfig_sections(data)
    else:
        problems, sections = [], config_sections(config)
    raise_problems(problems, *preflight(sections, base, resuming=False))  # raises if any
    return config
