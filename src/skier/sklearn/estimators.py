"""``SkierClassifier`` and ``SkierRegressor``: skier's training as scikit-learn estimators.

The constructors store their arguments; ``fit`` validates the data with scikit-learn's own
``validate_data``, builds the config from the stored sections (the YAML schema checks it), builds
the model and trains it with :func:`skier.train.fit` on in-memory tensors, or, with ``record``,
through :func:`skier.runner.run_training`, which writes a run directory and a store row.

Example::

    from sklearn.model_selection import GridSearchCV
    from skier.sklearn import SkierClassifier

    clf = SkierClassifier(model={"hidden_sizes": [64]}, train={"epochs": 30}, random_state=0)
    search = GridSearchCV(clf, {"optim__lr": [1e-3, 1e-2]}, cv=3, n_jobs=2).fit(X, y)
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from skier.config import RunConfig
from skier.data.splits import stratified_split
from skier.data.types import DataBundle, Split, Task
from skier.errors import ConfigError, DataError
from skier.history import History
from skier.models import build_from_factory
from skier.optim import build_optimizer
from skier.sklearn.params import (
    SECTIONS,
    Settings,
    section_params,
    split_params,
    updated_section,
)
from skier.train import FitResult, fit

__all__ = ["SkierClassifier", "SkierRegressor"]

_PREDICT_BATCH = 4096  # rows per forward pass when predicting


class _SkierEstimator(BaseEstimator):
    """What the classifier and the regressor share: the stored sections, their routed
    ``section__field`` parameters, training and the forward pass."""

    _task: Task = "classification"
    # Set by fit (scikit-learn's trailing underscore): declared for the type checker only.
    model_: torch.nn.Module
    optimizer_: torch.optim.Optimizer | None
    history_: History
    n_iter_: int
    run_id_: str | None
    n_features_in_: int
    validation_scores_: list[float] | None
    best_validation_score_: float | None

    def __init__(
        self,
        model: Any = "mlp",
        *,
        optim: Any = None,
        train: Any = None,
        schedule: Any = None,
        regularization: Any = None,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        record: Any = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
    ) -> None:
        self.model = model
        self.optim = optim
        self.train = train
        self.schedule = schedule
        self.regularization = regularization
        self.random_state = random_state
        self.warm_start = warm_start
        self.record = record
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol

    # --- parameters -------------------------------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters; with ``deep``, also ``section__field`` for each field
        a section's mapping sets (``optim__lr``, ``train__epochs``, ...)."""
        params = super().get_params(deep=False)
        if deep:
            for section in SECTIONS:
                params.update(section_params(section, params.get(section)))
        return params

    def set_params(self, **params: Any) -> _SkierEstimator:
        """Set parameters; ``section__field`` (``optim__lr=0.01``, ``model__hidden_sizes=[64]``)
        replaces that section with a new mapping holding the field.

        >>> SkierClassifier(optim="sgd").set_params(optim__lr=0.1).optim
        {'name': 'sgd', 'lr': 0.1}
        """
        valid = super().get_params(deep=False)
        plain, nested = split_params(params, valid, type(self).__name__)
        for key, value in plain.items():
            setattr(self, key, value)
        for section, fields in nested.items():
            setattr(self, section, updated_section(section, getattr(self, section), fields))
        return self

    # --- training ---------------------------------------------------------------------------

    def _check_stopping(self) -> None:
        """The early-stopping parameters, checked before ``fit`` changes anything (one line
        naming the first bad one, as scikit-learn's parameter checks do)."""
        fraction, patience, tol = self.validation_fraction, self.n_iter_no_change, self.tol
        if not isinstance(self.early_stopping, bool | np.bool_):
            raise ValueError(f"early_stopping must be True or False; got {self.early_stopping!r}.")
        if not (isinstance(fraction, numbers.Real) and 0 < fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1); got {fraction!r}.")
        if not (isinstance(patience, numbers.Integral) and patience >= 1):
            raise ValueError(f"n_iter_no_change must be an integer >= 1; got {patience!r}.")
        if not (isinstance(tol, numbers.Real) and tol >= 0):
            raise ValueError(f"tol must be a number >= 0; got {tol!r}.")

    def _stopping_config(self, config: RunConfig) -> RunConfig:
        """``config`` with skier's early stopping on the validation score: accuracy for the
        classifier, R² (``train.metrics: [r2]``) for the regressor — what ``score`` returns."""
        key = "val_accuracy" if self._task == "classification" else "val_r2"
        metrics = list(config.train.metrics)
        if key == "val_r2" and "r2" not in metrics:
            metrics.append("r2")
        stopping = config.early_stopping.model_copy(
            update={"enabled": True, "monitor": key, "mode": "max", "min_delta": float(self.tol),
                    "patience": int(self.n_iter_no_change), "restore_best": True}
        )  # fmt: skip
        train = config.train.model_copy(update={"metrics": metrics})
        return config.model_copy(update={"early_stopping": stopping, "train": train})

    def _hold_out(self, bundle: DataBundle, seed: int) -> DataBundle:
        """``bundle`` with ``validation_fraction`` of its training examples moved to a
        validation split (stratified by class for the classifier; seeded)."""
        split, fraction = bundle.train, float(self.validation_fraction)
        try:
            train, val, _ = stratified_split(split.targets.numpy(), fraction, seed=seed)
        except DataError as exc:  # too few rows (of a class) to hold some out
            n = len(split)
            raise ValueError(
                f"early_stopping: validation_fraction={fraction} of {n} sample"
                f"{'' if n == 1 else 's'} leaves no split to train and validate on: {exc}"
            ) from None
        return dataclasses.replace(
            bundle, train=split.take(torch.from_numpy(train)), val=split.take(torch.from_numpy(val))
        )

    def _settings(self, epochs_before: int) -> Settings:
        seed = None  # None: train.seed (0 unless set), so every fit is reproducible
        if isinstance(self.random_state, numbers.Integral):
            seed = int(self.random_state)  # the seed itself, as train.seed would be
        elif self.random_state is not None:
            seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        settings = Settings(self.get_params(deep=False), owner=type(self).__name__, seed=seed)
        if epochs_before:  # a continued fit: fresh shuffles, not the first fit's again
            train = settings.config.train
            settings.config = settings.config.model_copy(
                update={"train": train.model_copy(update={"seed": train.seed + epochs_before})}
            )
        return settings

    def _fit_tensors(
        self,
        bundle: DataBundle,
        *,
        continuing: bool,
        epochs: int | None = None,
    ) -> _SkierEstimator:
        """Train on ``bundle``: a new model, or (``continuing``) the fitted one further;
        ``epochs=None`` (``fit``, not ``partial_fit``): with ``early_stopping``, on all but a
        held-out validation split, stopping and restoring by its score."""
        before = int(getattr(self, "n_iter_", 0)) if continuing else 0
        settings = self._settings(before)
        config = settings.config
        stopping = bool(self.early_stopping) and epochs is None
        if epochs is not None:
            config = config.model_copy(
                update={"train": config.train.model_copy(update={"epochs": epochs})}
            )
        if stopping:
            config = self._stopping_config(config)
            bundle = self._hold_out(bundle, config.train.seed)
        if settings.record and not continuing:
            result, run_id = self._fit_recorded(settings, config, bundle)
            self.optimizer_, self.run_id_ = None, run_id
        else:
            if settings.record:
                raise ConfigError(
                    "record must be None to continue training (warm_start or partial_fit); "
                    "only a new fit is recorded as a run."
                )
            model = self.model_ if continuing else self._new_model(settings, config, bundle)
            optimizer = self.optimizer_ if continuing else None
            result, self.optimizer_ = _fit(model, bundle, config, optimizer)
            self.run_id_ = None
        assert result.model is not None  # fit returns the model it trained
        self.model_ = result.model
        history = History()
        if continuing:
            history.extend(self.history_.rows)
        history.extend(result.history.rows)
        self.history_ = history
        self.n_iter_ = before + result.epochs_done
        self.validation_scores_, self.best_validation_score_ = None, None
        if stopping:
            key = config.early_stopping.monitor
            self.validation_scores_ = [row[key] for row in result.history.rows if key in row]
            self.best_validation_score_ = result.best_value
        return self

    def _new_model(self, settings: Settings, config: RunConfig, bundle: DataBundle) -> Any:
        if settings.factory is None:
            from skier.runner.training import build_initial_model

            return build_initial_model(config, bundle)
        torch.manual_seed(config.train.seed)  # as a run seeds the built-in models
        return build_from_factory(
            settings.factory, settings.factory_kwargs, input_shape=bundle.input_shape,
            output_size=bundle.output_size, field="model",
        )  # fmt: skip

    def _fit_recorded(
        self, settings: Settings, config: RunConfig, bundle: DataBundle
    ) -> tuple[FitResult, str]:
        from skier.runner import run_training

        if settings.factory is not None:
            module = getattr(settings.factory, "__module__", None)
            name = getattr(settings.factory, "__qualname__", "")
            if module is None or "<" in name or module == "__main__":
                raise ConfigError(
                    f"model must be importable to be recorded (a 'package.module:function' "
                    f"the run's config can name); got {settings.factory!r}. Define it in a "
                    "module, or set record=None."
                )
            config = config.model_copy(
                update={"model": config.model.model_copy(
                    update={"name": f"{module}:{name}", "kwargs": settings.factory_kwargs}
                )}
            )  # fmt: skip
        if config.record.name is None:  # the config's data section is not where X came from
            name = f"{type(self).__name__}-{config.model.name.rpartition(':')[2]}"
            config = config.model_copy(
                update={"record": config.record.model_copy(update={"name": name})}
            )
        outcome = run_training(config, data=bundle, progress=False)
        return outcome.result, outcome.run_id

    def _bundle(
        self,
        X: np.ndarray,
        targets: torch.Tensor,
        sample_weight: np.ndarray | None,
        **facts: Any,
    ) -> DataBundle:
        weights = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            total = w.sum()
            if total <= 0:
                raise ValueError(f"sample_weight must have a positive sum; got {total}.")
            if not np.all(w == w[0]):  # equal weights change nothing: the unweighted path
                weights = torch.tensor(w * (len(w) / total), dtype=torch.float32)
        split = Split((torch.tensor(X, dtype=torch.float32),), targets, weights)
        names = tuple(getattr(self, "feature_names_in_", ()))
        return DataBundle(
            split, None, None, task=self._task, name="sklearn", feature_names=names,
            **facts,
        )  # fmt: skip

    # --- prediction -------------------------------------------------------------------------

    def _forward(self, X: Any) -> np.ndarray:
        """The model's outputs for ``X`` (float64), in eval mode, without gradients."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        model = self.model_
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        was_training = model.training
        model.eval()
        outs = []
        try:
            with torch.no_grad():
                for lo in range(0, max(len(X), 1), _PREDICT_BATCH):
                    x = torch.tensor(X[lo : lo + _PREDICT_BATCH], device=device)
                    outs.append(model(x).double().cpu().numpy())
        finally:
            model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0, 1))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")


def _fit(
    model: torch.nn.Module,
    bundle: DataBundle,
    config: RunConfig,
    optimizer: torch.optim.Optimizer | None,
) -> tuple[FitResult, torch.optim.Optimizer | None]:
    """skier's fit on the bundle with the config's sections, and the optimizer it trained with
    (kept for a warm start; SAM's is rebuilt by fit, so it is not kept)."""
    from pathlib import Path

    from skier.runner.preflight import monitoring_callbacks

    if optimizer is None and config.optim.sam is None:
        optimizer = build_optimizer(model.parameters(), config.optim)
    result = fit(
        model, bundle, optimizer=optimizer if optimizer is not None else config.optim.name,
        schedule=config.schedule, train_config=config.train, optim_config=config.optim,
        regularization=config.regularization,
        callbacks=monitoring_callbacks(config.early_stopping, None, Path()),
    )  # fmt: skip
    return result, optimizer


class SkierClassifier(ClassifierMixin, _SkierEstimator):
    """A skier network as a scikit-learn classifier (cross-entropy on the class indices).

    ``model``: a built-in name (``"mlp"``, ``"cnn"``, ``"tabular"``), a
    ``"package.module:function"`` reference, a factory called as ``factory(input_shape=...,
    output_size=..., **model_fields)``, or a mapping of the YAML ``model`` section. ``optim``,
    ``train``, ``schedule``, ``regularization``: mappings of those YAML sections (or their config
    objects, or a name); ``optim__lr``-style names reach their fields in ``set_params`` and
    searches. ``random_state`` (int) replaces ``train.seed``: equal seeds give equal models.
    ``warm_start`` continues from the fitted weights and optimizer state; ``partial_fit`` trains
    one epoch on the batch it is given. ``record`` (``True`` or a mapping of the ``record``
    section: ``dir``, ``store``, ``name``) records each fit as a run in skier's store.
    ``early_stopping``, ``validation_fraction``, ``n_iter_no_change``, ``tol``: scikit-learn's
    MLP early stopping — ``fit`` holds out a stratified, seeded fraction of the rows, stops when
    its accuracy has not beaten the best by more than ``tol`` for ``n_iter_no_change`` epochs and
    keeps the best epoch's weights (``validation_scores_``, ``best_validation_score_``; skier's
    :class:`~skier.train.EarlyStopping` with ``min_delta=tol``); ``partial_fit`` ignores it.

    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [0.9], [1.0]]); y = np.array(["no", "no", "yes", "yes"])
    >>> clf = SkierClassifier(model={"hidden_sizes": [8]}, optim={"lr": 0.1},
    ...                       train={"epochs": 50}, random_state=0).fit(X, y)
    >>> clf.classes_.tolist(), clf.predict([[0.05], [0.95]]).tolist()
    (['no', 'yes'], ['no', 'yes'])
    """

    _task: Task = "classification"
    classes_: np.ndarray

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SkierClassifier:
        """Train on ``X`` (n_samples x n_features) and labels ``y`` of any type."""
        self._check_stopping()
        continuing = self.warm_start and hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=np.float32, reset=not continuing)
        check_classification_targets(y)
        if not continuing:
            self._encoder = LabelEncoder().fit(y)
            self.classes_ = self._encoder.classes_
        codes = self._codes(y)
        weights = _weights(sample_weight, X)
        bundle = self._bundle(X, codes, weights, num_classes=len(self.classes_))
        self._fit_tensors(bundle, continuing=continuing)
        return self

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> SkierClassifier:
        """One epoch on this batch; the first call fixes ``classes`` (default: those in ``y``)."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=np.float32, reset=first)
        check_classification_targets(y)
        if first:
            self._encoder = LabelEncoder().fit(y if classes is None else classes)
            self.classes_ = self._encoder.classes_
        codes = self._codes(y)
        weights = _weights(sample_weight, X)
        bundle = self._bundle(X, codes, weights, num_classes=len(self.classes_))
        self._fit_tensors(bundle, continuing=not first, epochs=1)
        return self

    def _codes(self, y: np.ndarray) -> torch.Tensor:
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(
                f"y must hold only the classes of the first fit {self.classes_.tolist()}; "
                f"got {unseen.tolist()}."
            )
        return torch.tensor(self._encoder.transform(y), dtype=torch.long)

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits (n_samples x n_classes); for two classes the logit difference, whose
        sign is the prediction."""
        out = self._forward(X)
        return out[:, 1] - out[:, 0] if out.shape[1] == 2 else out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities: the softmax of the logits, in float64."""
        out = self._forward(X)
        out = out - out.max(axis=1, keepdims=True)
        exp = np.exp(out)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, as one of ``classes_``."""
        out = self._forward(X)
        return self.classes_[out.argmax(axis=1)]


class SkierRegressor(RegressorMixin, _SkierEstimator):
    """A skier network as a scikit-learn regressor (mean squared error; ``y`` may have several
    columns). Its parameters are :class:`SkierClassifier`'s; early stopping scores the
    held-out rows (a plain shuffle) by R², as ``score`` does.

    >>> import numpy as np
    >>> X = np.linspace(-1, 1, 32).reshape(-1, 1); y = 2 * X.ravel()
    >>> reg = SkierRegressor(model={"hidden_sizes": [16]}, optim={"lr": 0.03},
    ...                      train={"epochs": 200, "batch_size": "full"}, random_state=0)
    >>> round(reg.fit(X, y).score(X, y), 2) > 0.95
    True
    """

    _task: Task = "regression"
    n_outputs_: int

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SkierRegressor:
        """Train on ``X`` (n_samples x n_features) and targets ``y`` (n_samples or
        n_samples x n_outputs)."""
        self._check_stopping()
        continuing = self.warm_start and hasattr(self, "model_")
        return self._fit_rows(X, y, sample_weight, continuing=continuing, epochs=None)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> SkierRegressor:
        """One epoch on this batch, continuing from the last call."""
        return self._fit_rows(X, y, sample_weight, continuing=hasattr(self, "model_"), epochs=1)

    def _fit_rows(
        self, X: Any, y: Any, sample_weight: Any, *, continuing: bool, epochs: int | None
    ) -> SkierRegressor:
        X, y = validate_data(
            self, X, y, dtype=np.float32, multi_output=True, y_numeric=True, reset=not continuing
        )
        targets = torch.tensor(np.asarray(y, dtype=np.float32))
        targets = targets.unsqueeze(1) if targets.dim() == 1 else targets
        if continuing and targets.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y must have the {self.n_outputs_} outputs of the first fit; "
                f"got {targets.shape[1]}."
            )
        self.n_outputs_ = int(targets.shape[1])
        self._y_ndim = np.ndim(y)
        weights = _weights(sample_weight, X)
        bundle = self._bundle(X, targets, weights, num_targets=self.n_outputs_)
        self._fit_tensors(bundle, continuing=continuing, epochs=epochs)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The network's outputs: ``n_samples`` values, or ``n_samples x n_outputs`` when
        ``y`` had several columns."""
        out = self._forward(X)
        return out.ravel() if self._y_ndim == 1 else out


def _weights(sample_weight: Any, X: np.ndarray) -> np.ndarray | None:
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return None  # one weight for every example: the same as none
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
