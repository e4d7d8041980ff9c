"""Training: the loop, its state, callbacks, metrics and checkpoints."""

from skier.train.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    GradientFlow,
    LiveDisplay,
    MLflowLogger,
    Monitor,
    ProgressBar,
    SharpnessTracker,
    TensorBoardLogger,
)
from skier.train.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from skier.train.loop import FitResult, check_fit, evaluate, fit
from skier.train.state import TrainState

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "FitResult",
    "GradientFlow",
    "LiveDisplay",
    "MLflowLogger",
    "Monitor",
    "ProgressBar",
    "SharpnessTracker",
    "TensorBoardLogger",
    "TrainState",
    "check_fit",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model_weights",
    "save_checkpoint",
]
