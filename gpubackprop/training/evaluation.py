"""A network over a whole data set without training: ``predict`` and ``evaluate``, in chunks, and the
loss sums that ``fit``'s validation reads."""
from __future__ import annotations

import numpy

from .. import losses, validation
from ..layouts import STATUS
from .history import Evaluation

# predict()'s default chunk: rows such that the widest activation buffer holds about this many
# elements (16 MiB in float32), so that huge X never needs a batch-sized workspace of its own.
CHUNK_ELEMENTS = 1 << 22


def predict_chunk(net) -> int:
    return max(256, CHUNK_ELEMENTS // max(net.layer_sizes[1:]))


def to_device(net, X, Y, what="", finite=False):
    """(X, Y) checked and placed on the net's device in its dtype, C-contiguous; copied only when
    they are not already in that form. The targets' values are checked for the loss (one pass:
    ``validation.check_target_values``); with ``finite`` (validation data) X and Y are checked to
    hold no NaN/Inf first (one pass each)."""
    backend = net.backend
    X = validation.as_batch(backend, X, f"{what}X", net.layer_sizes[0])
    if finite:
        validation.check_finite(X, f"{what}X")
    Y = validation.as_targets(backend, Y, f"{what}Y", net.layer_sizes[-1], X.shape[0], net.loss_spec,
                              check_values=True, finite=finite)
    return backend.asarray(X, net.dtype), backend.asarray(Y, net.dtype)


def accuracy_units(net) -> int | None:
    """Predictions counted per row (None: the loss reports no accuracy)."""
    spec = net.loss_spec
    return losses.correct_per_batch_unit(spec.name, net.layer_sizes[-1]) if spec.classification else None


def loss_sums(net, X, Y, chunk: int):
    """(Σ loss·rows, Σ right predictions) over device arrays (X, Y) in chunks (each chunk's loss is
    the mean over its rows, so it is weighted by them)."""

    n, steps = X.shape[0], net.steps
    total = correct = 0.0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ws = steps.workspace(stop - start)
        xb, yb = steps.own_or_copied(ws.inputs, X[start:stop]), steps.own_or_copied(ws.targets, Y[start:stop])
        steps.loss_async(xb, yb, ws)
        status = ws.status.tolist()  # one transfer: the loss and the right predictions
        total += status[STATUS.loss] * (stop - start)
        correct += status[STATUS.correct]
    return total, correct


def predict(net, X, batch_size=None):
    """ŷ for every row of X as a NumPy array (samples, outputs), computed ``batch_size`` rows at a
    time (default: chunks sized so the widest layer's buffer stays near 16 MiB); each chunk's ŷ is
    copied once, from the workspace straight into the result."""
    chunk = predict_chunk(net) if batch_size is None else validation.positive_int("batch_size", batch_size)
    X = validation.as_batch(net.backend, X, "X", net.layer_sizes[0])
    n, steps = X.shape[0], net.steps
    out = numpy.empty((n, net.layer_sizes[-1]), dtype=net.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ws = steps.workspace(stop - start)
        yhat = steps.forward(steps.own_or_copied(ws.inputs, X[start:stop]), ws)
        net.backend.to_host(yhat, out[start:stop])
    return out


def evaluate(net, X, Y, batch_size=None) -> Evaluation:
    """The loss (and accuracy) over every row of (X, Y), in chunks as ``predict``: an ``Evaluation``."""
    chunk = predict_chunk(net) if batch_size is None else validation.positive_int("batch_size", batch_size)
    X, Y = to_device(net, X, Y)
    n = X.shape[0]
    total, correct = loss_sums(net, X, Y, chunk)
    units = accuracy_units(net)
    return Evaluation(total / n, None if units is None else correct / (n * units))
