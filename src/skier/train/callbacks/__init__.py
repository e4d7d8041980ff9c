"""Callbacks: narrow hooks around the loop."""

from skier.train.callbacks.base import Callback
from skier.train.callbacks.checkpoint import Checkpoint
from skier.train.callbacks.early_stopping import EarlyStopping
from skier.train.callbacks.gradient_flow import GradientFlow
from skier.train.callbacks.live import LiveDisplay
from skier.train.callbacks.mlflow_logger import MLflowLogger
from skier.train.callbacks.monitor import Monitor
from skier.train.callbacks.progress import ProgressBar
from skier.train.callbacks.sharpness import SharpnessTracker
from skier.train.callbacks.tensorboard_logger import TensorBoardLogger
from skier.train.callbacks.trackers import TrackerLogger

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "GradientFlow",
    "LiveDisplay",
    "MLflowLogger",
    "Monitor",
    "ProgressBar",
    "SharpnessTracker",
    "TensorBoardLogger",
    "TrackerLogger",
]
