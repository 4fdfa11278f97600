"""Every buffer one step needs at one batch size, allocated once and reused (a network keeps a few,
one per batch size)."""
from __future__ import annotations

import numpy

from ..layouts import GUARD, PAYLOAD_TAIL, STATUS


def gradient_count(sizes) -> int:
    """How many numbers ∂L/∂W and ∂L/∂b of every layer hold together (= the parameters)."""
    return sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))


class Workspace:
    """The buffers of one step at one batch size.

    ``inputs``/``targets``: X and Y converted to the network's dtype and device, or gathered by fit;
    ``activations`` and ``grad_outputs`` per layer (∂L/∂a, turned into δ in place by the activation
    backward); ``payload``: [every ∂L/∂W and ∂L/∂b (``grads``, laid out as the flat parameters, with
    per-layer views ``grad_weights``/``grad_biases``), the step's status (``layouts.STATUS``), the
    batch's rows]: what a data-parallel step all-reduces at once. ``status`` is read back in ONE
    transfer per step; its first ``layouts.GUARD`` slots are the update's ``guard``. ``scratch``:
    temporaries the backend asks for; ``recordings``: recorded steps on these buffers (CUDA graphs).
    """

    def __init__(self, backend, sizes, batch: int, dtype):
        empty = backend.empty
        self.inputs = empty((batch, sizes[0]), dtype)
        self.targets = empty((batch, sizes[-1]), dtype)
        self.activations = [empty((batch, n), dtype) for n in sizes[1:]]
        self.grad_outputs = [empty((batch, n), dtype) for n in sizes[1:]]
        n_grads = gradient_count(sizes)
        self.payload = empty((n_grads + len(PAYLOAD_TAIL),), dtype)
        self.grads = self.payload[:n_grads]
        self.grad_weights, self.grad_biases, offset = [], [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.grad_weights.append(self.grads[offset:offset + n_out * n_in].reshape(n_out, n_in))
            offset += n_out * n_in
            self.grad_biases.append(self.grads[offset:offset + n_out])
            offset += n_out
        self.status = self.payload[n_grads:n_grads + len(STATUS)]
        backend.copyto(self.status, numpy.zeros(len(STATUS)))  # the count stays 0 where no loss writes it (mse)
        slot = lambda index: self.status[index:index + 1].reshape(())  # noqa: E731  (0-d views)
        self.loss, self.grad_check = slot(STATUS.loss), slot(STATUS.grad_check)
        self.update_check, self.correct = slot(STATUS.update_check), slot(STATUS.correct)
        self.guard = self.status[:GUARD]
        self.scratch = {}
        self.recordings = {}

    @staticmethod
    def nbytes(sizes, batch: int, dtype) -> int:
        """Bytes that the buffers of one batch size take (for the out-of-memory message)."""
        per_row = sizes[0] + sizes[-1] + 2 * sum(sizes[1:])
        return (batch * per_row + gradient_count(sizes) + len(PAYLOAD_TAIL)) * numpy.dtype(dtype).itemsize
