"""What every benchmark case trains on: its data and learning rate."""
from __future__ import annotations

import numpy

LEARNING_RATE = 1e-3


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
