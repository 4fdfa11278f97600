"""What every benchmark case is and trains on: ``Case`` (a timed callable), ``Training`` (its loss and
optimizer), the data and the learning rate."""
from __future__ import annotations

import dataclasses
import statistics

import numpy

LEARNING_RATE = 1e-3


# ---------------------------------------------------------------------- cases
@dataclasses.dataclass
class Case:
    """One thing to time: ``step()`` runs one training step (or its GEMMs) and returns a float."""

    name: str
    step: object = None
    timer: object = None
    unavailable: str | None = None  # why this case cannot run here
    samples: list = dataclasses.field(default_factory=list)  # seconds per call, one per round
    net: object = None  # the network timed, for the report (ours only)
    params: object = None  # the peers: a function giving their [(W, b) per layer] as NumPy (for the tests)
    steps_per_call: int = 1  # training steps one call runs (an epoch for the fit cases)

    @property
    def seconds(self):
        """Median seconds per training step."""
        return statistics.median(self.samples) / self.steps_per_call if self.samples else None


@dataclasses.dataclass(frozen=True)
class Training:
    """What every case trains with: a loss of ``gpubackprop.losses`` and an optimizer of
    ``gpubackprop.optimizers`` (at their default settings)."""

    loss: str = "mse"
    optimizer: str = "sgd"

    def describe(self) -> str:
        return f"loss {self.loss}, optimizer {self.optimizer}"


MSE_SGD = Training()


def _data(sizes, batch, seed=0, loss="mse"):
    """(X, Y, labels): Y as ours takes it (values; one-hot rows for softmax cross-entropy;
    probabilities for binary cross-entropy), labels the classes behind softmax's rows (else None)."""
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0]))
    if loss == "softmax_cross_entropy":
        labels = rng.integers(0, sizes[-1], batch)
        Y = numpy.zeros((batch, sizes[-1]))
        Y[numpy.arange(batch), labels] = 1.0
        return X, Y, labels
    if loss == "sigmoid_binary_cross_entropy":
        return X, rng.uniform(0.0, 1.0, (batch, sizes[-1])), None
    return X, rng.uniform(-1.0, 1.0, (batch, sizes[-1])), None
