"""skier: train deep nets with PyTorch and see what training does.

Example::

    import skier
    data = skier.load_data(skier.DataConfig(name="digits"))
    model = skier.build_model(
        skier.ModelConfig(), input_shape=data.input_shape, output_size=data.output_size
    )
    result = skier.fit(model, data, epochs=5)      # train, validate, test
    print(result.test_metrics)

The public names are imported lazily, so ``import skier`` stays fast and torch is loaded only
when something that needs it is used.
"""

from __future__ import annotations

from skier._lazy import lazy_names

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    # config and errors
    "RunConfig": "skier.config",
    "DataConfig": "skier.config",
    "ModelConfig": "skier.config",
    "OptimConfig": "skier.config",
    "TrainConfig": "skier.config",
    "load_config": "skier.config",
    "SkierError": "skier.errors",
    "ConfigError": "skier.errors",
    "DataError": "skier.errors",
    "History": "skier.history",
    # data and models
    "DataBundle": "skier.data",
    "Split": "skier.data",
    "load_data": "skier.data",
    "build_model": "skier.models",
    # training
    "fit": "skier.train",
    "evaluate": "skier.train",
    "FitResult": "skier.train",
    "Callback": "skier.train",
    "Monitor": "skier.train",
    "EarlyStopping": "skier.train",
    "MLflowLogger": "skier.train",
    "TensorBoardLogger": "skier.train",
    "Checkpoint": "skier.train",
    # whole runs
    "run_training": "skier.runner",
    "run_seeds": "skier.runner",
}

__all__ = ["__version__", *sorted(_LAZY)]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)
