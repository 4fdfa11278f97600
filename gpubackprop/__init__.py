"""gpubackprop: multilayer perceptrons trained with the matrix form of backpropagation,
on a CUDA GPU through CuPy, or on the CPU through NumPy, with the same API and numbers."""
from .backends import Backend, available_backends, get_backend
from .errors import (BackendUnavailableError, BatchTooLargeError, CheckpointError, DistributedError,
                     DistributedTimeoutError, DistributedUnavailableError, NonFiniteLossError, TrainingInterrupted)
from . import distributed, losses, optimizers
from .mlp import MLP
from .optimizers import Optimizer

__version__ = "0.1.0"
__all__ = ["MLP", "Backend", "BackendUnavailableError", "NonFiniteLossError", "BatchTooLargeError", "CheckpointError",
           "DistributedError", "DistributedTimeoutError", "DistributedUnavailableError", "Optimizer",
           "TrainingInterrupted", "available_backends", "distributed", "get_backend", "__version__"]
