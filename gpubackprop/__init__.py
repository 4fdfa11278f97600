"""gpubackprop: multilayer perceptrons trained with the matrix form of backpropagation,
on a CUDA GPU through CuPy, or on the CPU through NumPy, with the same API and numbers."""
from .backends import Backend, available_backends, get_backend
from .errors import (BackendUnavailableError, BatchTooLargeError, CheckpointError, DistributedError,
                     DistributedTimeoutError, DistributedUnavailableError, NonFiniteLossError, TrainingInterrupted)
from . import checkpoint, distributed, losses, optimizers, training
from .model import MLP
from .optimizers import Optimizer, schedules
from .training import Callback, EarlyStopping

MLP.file_format = checkpoint  # the model saves and loads through it, without importing it

__version__ = "0.1.0"
__all__ = ["MLP", "Backend", "BackendUnavailableError", "NonFiniteLossError", "BatchTooLargeError", "CheckpointError",
           "DistributedError", "DistributedTimeoutError", "DistributedUnavailableError", "Optimizer",
           "TrainingInterrupted", "available_backends", "distributed", "get_backend", "__version__", "Callback",
           "EarlyStopping", "schedules"]
