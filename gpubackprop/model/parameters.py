"""A network's parameters and its optimizer's device state, in a few flat buffers.

Every W and b is a view into ONE flat buffer laid out as the workspace's gradients (W₁, b₁, W₂, b₂,
...), so an optimizer updates all of them in one operation. The optimizer's state rows (momentum's
velocity; Adam's m and v) are laid out alike; ``step`` counts the accepted optimizer steps (on the
device, so a recorded step replays correctly; what learning-rate schedules count); ``lrs`` holds
the learning rates of the next steps (float64, on the device: the kernels read them there, so a
recorded step survives a change of the learning rate).
"""
from __future__ import annotations

import numpy

from .. import validation
from ..layouts import STEPS_PER_LAUNCH as LR_SLOTS  # one learning rate per step of a recorded launch


class Parameters:
    """The flat parameter buffer with its per-layer views, and the optimizer's state."""

    def __init__(self, backend, layer_sizes, dtype, optimizer):
        self.backend, self.layer_sizes, self.dtype, self.optimizer = backend, layer_sizes, dtype, optimizer
        self.weights, self.biases, self.bias_rows, self.flat = (), (), (), None
        self.n_params = sum(n_out * (n_in + 1) for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]))
        self.optimizer_state = self.step = None
        self.set_optimizer(optimizer)
        self.lrs = backend.empty((LR_SLOTS,), numpy.float64)
        self._host_lrs = numpy.zeros(LR_SLOTS)  # the staging copy: written, then copied in one transfer
        self._host_lr = self._host_lrs[:1]
        self._written_lr = None  # what lrs[0] holds, when write_lr wrote it last (a step in a loop skips the copy)
        self.lr_views = tuple(self.lrs[i:i + 1] for i in range(LR_SLOTS))

    def set(self, params):
        """Replace every (W, b), checked first, copied (cast to our dtype)."""
        backend = self.backend
        checked = validation.check_params(params, self.layer_sizes, backend)
        arrays = [array for pair in checked for array in pair]
        flat = backend.empty((sum(array.size for array in arrays),), self.dtype)
        views, offset = [], 0
        for array in arrays:
            view = flat[offset:offset + array.size].reshape(array.shape)
            backend.copyto(view, array)
            views.append(view)
            offset += array.size
        # Only once every copy has succeeded:
        self.weights, self.biases, self.flat = tuple(views[0::2]), tuple(views[1::2]), flat
        self.bias_rows = tuple(b.reshape(1, -1) for b in self.biases)  # broadcast over the batch rows

    def get(self):
        to_numpy = self.backend.to_numpy
        return [(to_numpy(W), to_numpy(b)) for W, b in zip(self.weights, self.biases)]

    def set_optimizer(self, optimizer):
        """A new optimizer with its state fresh (zero rows, step count 0): new buffers, made before
        anything is replaced."""
        state = self.backend.empty((optimizer.state_buffers, self.n_params), self.dtype)
        step = self.backend.empty((1,), numpy.int64)
        self.backend.copyto(state, numpy.zeros(state.shape))
        self.backend.copyto(step, numpy.zeros(1, numpy.int64))
        self.optimizer, self.optimizer_state, self.step = optimizer, state, step

    def reset_optimizer(self):
        self.backend.copyto(self.optimizer_state, numpy.zeros(self.optimizer_state.shape))
        self.backend.copyto(self.step, numpy.zeros(1, numpy.int64))

    def get_optimizer_state(self):
        return {"buffers": self.backend.to_numpy(self.optimizer_state),
                "step": int(self.backend.to_numpy(self.step)[0])}

    def set_optimizer_state(self, state):
        """Checked before anything changes (``Optimizer.check_state``: what no training produces is
        a ValueError naming it; a non-dict a TypeError), then copied in."""
        try:
            buffers, step = state["buffers"], state["step"]
        except (TypeError, KeyError, IndexError):
            raise TypeError("state must be a dict with 'buffers' and 'step', as get_optimizer_state returns") from None
        buffers = self.backend.to_numpy(buffers) if self.backend.is_native(buffers) else numpy.asarray(buffers)
        if buffers.dtype.kind in "fiub" and buffers.dtype != self.dtype:
            with numpy.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
                buffers = buffers.astype(self.dtype)
        problem = self.optimizer.check_state(buffers, step, self.n_params)
        if problem is not None:
            raise ValueError(f"optimizer state: expected {problem}")
        self.backend.copyto(self.optimizer_state, buffers)
        self.backend.copyto(self.step, numpy.array([step], numpy.int64))

    def steps_taken(self) -> int:
        """The accepted optimizer steps so far (one read from the device)."""
        return int(self.backend.to_numpy(self.step)[0])

    def write_lrs(self, values):
        """lrs[:len(values)] = values, in one host-to-device copy (queued after earlier work)."""
        count = len(values)
        self._written_lr = None
        self._host_lrs[:count] = values
        self.backend.copyto(self.lrs[:count], self._host_lrs[:count])

    def write_lr(self, value: float):
        """lrs[0] = value (train_step's learning rate); no copy when it holds it already."""
        if value != self._written_lr:
            self._host_lr[0] = value
            self.backend.copyto(self.lr_views[0], self._host_lr)
            self._written_lr = value
