"""Networks for skier: MLP, CNN and TabularNet, built from a config, their initialisation
(:func:`initialize`), plus shape checks.

>>> from skier.config import ModelConfig
>>> model = build_model(ModelConfig(name="cnn"), input_shape=(1, 8, 8), output_size=10)
>>> check_output_shape(model, (1, 8, 8), 10)  # raises ModelError on a mismatch

This layer imports only :mod:`skier.config`, :mod:`skier.errors`, :mod:`skier.history` and
third-party libraries; it takes plain shapes rather than :mod:`skier.data` objects.
"""

from skier.models.blocks import ACTIVATIONS, DenseBlock, activation
from skier.models.build import build_from_factory, build_model, count_parameters
from skier.models.cnn import CNN
from skier.models.init import INIT_LAYERS, SCHEMES, InitReport, initialize
from skier.models.mlp import MLP
from skier.models.shapes import check_output_shape
from skier.models.tabular import TabularNet, embedding_size

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "INIT_LAYERS",
    "MLP",
    "SCHEMES",
    "DenseBlock",
    "InitReport",
    "TabularNet",
    "activation",
    "build_from_factory",
    "build_model",
    "check_output_shape",
    "count_parameters",
    "embedding_size",
    "initialize",
]
