"""The one table of losses: what each is called, which output activation it needs, what targets it
takes, and how its outputs become probabilities and classes.

Everything that lists losses reads this table: ``MLP``, checkpoints, the command line's choices and
the tests. The math is the backend's ``loss_grad(name, ...)`` (NumPy reference, CUDA kernel in
``kernels/loss.cu``): one pass that writes the loss, ∂L/∂ŷ and, for the classification losses, how
many predictions were right (for accuracy).

Definitions, over a batch of B rows (z: the last layer's output, y: the targets):

- ``mse``: L = 1/(2B) Σ (z − y)², ∂L/∂z = (z − y)/B (the lesson's ½(ŷ − y)² for one sample).
- ``softmax_cross_entropy``: L = −1/B Σ_rows Σ_j y_j log softmax(z)_j, computed with the log-sum-exp
  shift (z − max z); ∂L/∂z = (softmax(z)·Σ_j y_j − y)/B, i.e. (softmax(z) − y)/B for rows that sum to
  1. Targets: integer class labels (B,) or probability rows (B, classes): values in [0, 1], each row
  summing to 1 (``fit`` and ``evaluate`` check, see ``validation.check_target_values``). Equals PyTorch's
  ``F.cross_entropy(z, y)`` (reduction "mean" over the rows).
- ``sigmoid_binary_cross_entropy``: L = 1/B Σ [max(z, 0) − z·y + log(1 + e^(−|z|))] over rows and
  outputs, ∂L/∂z = (sigmoid(z) − y)/B; targets are probabilities (B, outputs) in [0, 1] (one output:
  (B,) too; ``fit`` and ``evaluate`` check: outside [0, 1] the loss has no minimum). Equals PyTorch's ``F.binary_cross_entropy_with_logits(z, y, reduction="sum") / B``
  (summed over the outputs, like the other two losses, not averaged over them).

The classification losses take logits: their output activation is the identity (the softmax or
sigmoid lives in the loss). Accuracy counts a row right when argmax z = argmax y (softmax), an output
right when [z > 0] = [y ≥ ½] (sigmoid: per output, so multi-label targets work).
"""
from __future__ import annotations

import dataclasses

import numpy

from .backends.numpy_layers import sigmoid_into


@dataclasses.dataclass(frozen=True)
class Loss:
    name: str
    output_activation: str | None  # the output activation this loss needs (None: any)
    targets: str  # what Y may be, for messages and docs
    classification: bool  # reports accuracy; predict_proba / predict_classes apply
    labels: bool = False  # accepts integer class labels (B,) and turns them into one-hot rows
    min_outputs: int = 1


TABLE = {loss.name: loss for loss in (
    Loss("mse", None, "values (batch, outputs), or (batch,) for one output", classification=False),
    Loss("softmax_cross_entropy", "identity", "integer class labels (batch,) or probability rows (batch, classes)",
         classification=True, labels=True, min_outputs=2),
    Loss("sigmoid_binary_cross_entropy", "identity",
         "probabilities in [0, 1] (batch, outputs), or (batch,) for one output", classification=True),
)}
NAMES = tuple(TABLE)
CLASSIFICATION = tuple(name for name, loss in TABLE.items() if loss.classification)


def probabilities(name: str, z):
    """The probabilities a classification loss reads off the outputs ``z`` (a NumPy array):
    softmax over each row, or the sigmoid of each output; computed without overflow."""
    if name == "softmax_cross_entropy":
        shifted = z - z.max(axis=1, keepdims=True)
        with numpy.errstate(under="ignore"):  # exp of very negative logits is 0, as it should be
            e = numpy.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    if name == "sigmoid_binary_cross_entropy":
        # The sigmoid as the network computes it (numpy_layers.sigmoid_into): relative precision for
        # every z, so rare events keep distinct scores (float32 σ(-20) = 2.06e-9, not 0); no overflow.
        p = numpy.array(z, dtype=numpy.result_type(z, numpy.float32), copy=True)
        with numpy.errstate(under="ignore"):  # e^-|z| is subnormal, then 0, for large |z|: as it should be
            return sigmoid_into(p, numpy.empty_like(p), p.dtype.type(1))
    raise ValueError(f"{name!r} is not a classification loss; probabilities apply to {', '.join(CLASSIFICATION)}")


def classes(name: str, z):
    """The predicted labels: argmax of each row (softmax; shape (N,)), or [z > 0] per output (sigmoid;
    shape (N, outputs)), as int64."""
    if name == "softmax_cross_entropy":
        return z.argmax(axis=1).astype(numpy.int64)
    if name == "sigmoid_binary_cross_entropy":
        return (z > 0).astype(numpy.int64)
    raise ValueError(f"{name!r} is not a classification loss; classes apply to {', '.join(CLASSIFICATION)}")


def correct_per_batch_unit(name: str, outputs: int) -> int:
    """How many counted predictions one row holds: 1 (softmax: one label per row) or ``outputs``
    (sigmoid: one per output). Accuracy = correct / (rows × this)."""
    return outputs if name == "sigmoid_binary_cross_entropy" else 1


def constant_baseline(name: str, Y, outputs: int | None = None) -> float:
    """The loss of the best prediction that ignores the inputs, on the targets ``Y`` (a NumPy array:
    rows (B, outputs), or labels (B,) for softmax with ``outputs`` classes): the figure a trained
    network must beat to have learnt anything from its inputs.

    - ``mse``: predicting each output's mean, L = Σ_j Var(Y_j)/2 (population variance, the
      definition's 1/(2B) Σ over rows and outputs).
    - ``softmax_cross_entropy``: predicting the class frequencies p̄ (the mean target row), L = −Σ_j
      p̄_j log p̄_j (their entropy), since −1/B Σ_rows Σ_j y_j log p̄_j = −Σ_j p̄_j log p̄_j.
    - ``sigmoid_binary_cross_entropy``: predicting each output's mean p_j, L = Σ_j −[p_j log p_j +
      (1 − p_j) log(1 − p_j)] (0 log 0 = 0), likewise linear in y.
    """
    Y = numpy.asarray(Y, dtype=numpy.float64)
    if name == "mse":
        Y = Y.reshape(len(Y), -1)
        return float(Y.var(axis=0).sum() / 2)
    if name == "softmax_cross_entropy":
        if Y.ndim == 1:
            Y = numpy.bincount(Y.astype(numpy.int64), minlength=outputs or 0)[None, :] / len(Y)
        p = Y.mean(axis=0)
        return float(-(p[p > 0] * numpy.log(p[p > 0])).sum())
    if name == "sigmoid_binary_cross_entropy":
        p = Y.reshape(len(Y), -1).mean(axis=0)
        q = 1 - p
        return float(-(p[p > 0] * numpy.log(p[p > 0])).sum() - (q[q > 0] * numpy.log(q[q > 0])).sum())
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(NAMES)}")
