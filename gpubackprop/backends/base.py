"""What a backend is: one device (the CPU, or one GPU), its array library, and one method per
operation the matrix form of backpropagation needs.

This class is the interface only: ``NumpyBackend`` implements it for the CPU (the reference
arithmetic), ``CupyBackend`` for one CUDA device (cuBLAS and the fused kernels of ``kernels/``),
performing the same operations in the same order. Nothing outside ``backends/`` knows which
backend it holds: conversions of incoming arrays, row gathers, host copies, timers and the
one-line description are methods here too.

A backend holds no state that belongs to a network: buffers, scratch space and recorded steps
live in the network's workspace, so networks sharing a backend never share mutable memory.
Operations take their outputs (``out=``) and, where NumPy needs a temporary, a ``scratch`` dict
owned by the caller's workspace (see :func:`scratch_buffer`).
"""
from __future__ import annotations

import abc


def scratch_buffer(scratch: dict, shape, dtype, empty):
    """A temporary of ``shape`` and ``dtype`` kept in the caller's ``scratch`` dict: allocated at
    first use, reused after, its content undefined between calls."""
    key = (shape, dtype)
    buffer = scratch.get(key)
    if buffer is None:
        buffer = scratch[key] = empty(shape, dtype)
    return buffer


class Backend(abc.ABC):
    """One device and the operations of one MLP layer, forward and backward."""

    name: str  # "numpy", "cupy": the registry's name of the class
    device: str  # where the arrays live, in DLPack/PyTorch words: "cpu", "cuda:1"
    spec: str  # what get_backend() takes to give this backend back: "numpy", "cupy:1"

    # ------------------------------------------------------------------ the device
    @classmethod
    @abc.abstractmethod
    def probe(cls, short: bool = False) -> str | None:
        """None when this kind of backend can run here; otherwise why not and how to fix it
        (``short``: only the why, for one-line headers)."""

    @classmethod
    @abc.abstractmethod
    def device_count(cls) -> int:
        """How many devices of this kind are usable here (0 when ``probe()`` says why not)."""

    @abc.abstractmethod
    def device_name(self) -> str:
        """The hardware, e.g. "CPU" or "NVIDIA H200"."""

    def describe(self) -> str:
        """One line for headers: "cupy:0 (NVIDIA H200)", "numpy (CPU)"."""
        return f"{self.spec} ({self.device_name()})"

    @abc.abstractmethod
    def activate(self, quiet: bool = False):
        """A context manager under which this backend's device is the current one (for the
        calling thread) and its arithmetic signals no underflow (a result too small for the
        dtype becomes a denormal or 0: harmless), whatever ``numpy.errstate`` the caller set;
        with ``quiet`` (the training step, whose own checks report NaN/Inf), no overflow or
        invalid operation either. Every array operation of a network runs under it."""

    @abc.abstractmethod
    def versions(self) -> dict:
        """Versions of the libraries this backend runs on, for reports."""

    @abc.abstractmethod
    def timer(self):
        """A timer of this device's work: ``measure(fn, n)`` gives the seconds ``n`` calls took."""

    # ------------------------------------------------------------------ arrays
    @abc.abstractmethod
    def empty(self, shape, dtype):
        """An uninitialised array on the device."""

    @abc.abstractmethod
    def asarray(self, array, dtype):
        """A C-contiguous device array of ``dtype`` holding ``array`` (a copy only where needed)."""

    @abc.abstractmethod
    def as_array(self, array, name: str):
        """A user's array as either this backend's own kind (DLPack producers on this device as
        zero-copy views) or a NumPy array for the backend to upload; anything on another device
        is a TypeError saying how to move it. ``name`` names the argument in errors."""

    @abc.abstractmethod
    def is_native(self, array) -> bool:
        """True when ``array`` is this backend's own kind (no transfer needed)."""

    @abc.abstractmethod
    def copyto(self, dst, src):
        """dst[...] = src, src a device or NumPy array (cast to dst's dtype)."""

    @abc.abstractmethod
    def device_copy(self, dst, src):
        """dst = src as a raw copy of bytes (same shape and dtype, both contiguous)."""

    @abc.abstractmethod
    def to_numpy(self, array):
        """A NumPy copy of a device array (host memory)."""

    @abc.abstractmethod
    def to_host(self, array, out):
        """out (a C-contiguous NumPy array) = array: one copy, no temporary."""

    @abc.abstractmethod
    def gather_rows(self, source, index, out):
        """out[i] = source[index[i]] for a vector of row indices, without a temporary."""

    @abc.abstractmethod
    def gather_rows_at(self, source, order, cursor, out):
        """out[r] = source[order[cursor[0] + r]] for every row r of out: the next batch of an
        epoch's permutation ``order`` (int64), the position ``cursor`` (an int64 array of one
        element) read where the work runs, so that recorded work gathers a new batch each time."""

    @abc.abstractmethod
    def advance_cursor(self, cursor, rows: int):
        """cursor[0] += rows, queued after the work before it."""

    @abc.abstractmethod
    def accumulate_step(self, status, totals, rows: int):
        """Between a step's finite checks and its update: ``totals`` (float64, 6 elements, zeroed
        by the caller) = [Σ loss·rows, good steps, loss, gradient check and update check of the
        first bad step, Σ right predictions]. While every step so far was good, a step with a
        finite ``status`` ([loss, gradient check, update check, right predictions])
        adds its loss·rows and its right predictions and counts itself; a non-finite one is recorded as the first bad step;
        after a bad step every later step is refused: its ``status`` is made non-finite, so the
        guarded update skips it (sticky), and the parameters stay those after the last good step."""

    @abc.abstractmethod
    def synchronize(self):
        """Wait for queued device work (nothing to wait for on the CPU)."""

    # ------------------------------------------------------------------ GEMM
    tf32: bool  # whether matmul(..., tf32=True) runs on TF32 tensor cores here (else in float32)

    @abc.abstractmethod
    def matmul(self, a, b, out, trans_a=False, trans_b=False, tf32=False):
        """out = op(a) @ op(b), with op the transpose where asked (flags, never copies).
        ``tf32`` (float32 arrays only): multiply in TF32 (10-bit mantissa inputs, float32
        accumulation) where the device has TF32 tensor cores (``self.tf32``), else in float32."""

    @abc.abstractmethod
    def gemm_sequence(self, gemms, tf32=False):
        """A function of no arguments that issues the GEMMs ``[(a, b, out, trans_a, trans_b)]``
        as cheaply as this backend can: the benchmark's floor."""

    # ------------------------------------------------------------------ layer math
    @abc.abstractmethod
    def bias_activation(self, z, bias_row, activation: str, scratch: dict | None = None):
        """In place: z <- act(z + bias), the (1, n) bias row broadcast over the batch rows; ``scratch``:
        the caller's temporaries (see ``scratch_buffer``; None: fresh ones, allocated per call)."""

    @abc.abstractmethod
    def activation_backward(self, grad, a, activation: str, out, scratch: dict):
        """out = grad * act'(z), act' read off the stored activation a (out may be grad)."""

    @abc.abstractmethod
    def mse_loss_grad(self, yhat, y, grad, loss):
        """grad = (yhat - y) / B and loss[()] = sum((yhat - y)^2) / (2B); returns loss (0-d)."""

    @abc.abstractmethod
    def softmax_cross_entropy_loss_grad(self, z, y, grad, loss, correct, scratch: dict):
        """From logits z and target rows y (batch, classes): grad = (softmax(z)·Σ_j y_j − y)/B,
        loss[()] = −1/B Σ y log softmax(z) (log-sum-exp shifted), correct[()] = the number of rows
        whose argmax z equals argmax y (first maximum); returns loss. See ``gpubackprop.losses``."""

    @abc.abstractmethod
    def sigmoid_binary_cross_entropy_loss_grad(self, z, y, grad, loss, correct, scratch: dict):
        """From logits z and probabilities y: grad = (sigmoid(z) − y)/B, loss[()] = 1/B Σ (max(z, 0)
        + log(1 + e^−|z|) − z y), correct[()] = the number of elements with [z > 0] = [y ≥ ½];
        returns loss. See ``gpubackprop.losses``."""

    @abc.abstractmethod
    def sum_rows(self, x, out):
        """out = sum of x over the batch axis (the bias gradient)."""

    @abc.abstractmethod
    def finite_check(self, x, out):
        """out[()] = a value that is finite exactly when every element of x is (NaN and Inf reach
        a sum; only a finite sum beyond the dtype's range gives a false alarm)."""

    @abc.abstractmethod
    def sgd_check(self, param, grad, lr, out, scratch: dict):
        """out[()] = 0 when every candidate param - lr * grad is finite, NaN otherwise; nothing
        else is written. The first pass of a guarded update (the candidate is computed as the
        update will compute it, not stored); another update rule checks its own candidate the
        same way, into the same status slot."""

    @abc.abstractmethod
    def sgd_update(self, param, grad, lr, guard, scratch: dict):
        """In place: param <- param - lr * grad (grad unchanged), skipped entirely when ``guard``
        (the step's status vector, or None for no guard) holds NaN/Inf in any slot; a device
        checks it on the device, so no host round trip precedes the update."""

    @abc.abstractmethod
    def momentum_check(self, param, grad, velocity, lr, momentum, nesterov, weight_decay, out, scratch: dict):
        """out[()] = 0 when every candidate parameter and velocity of momentum_update is finite, NaN
        otherwise; nothing else is written (the first pass of the guarded update, as sgd_check)."""

    @abc.abstractmethod
    def momentum_update(self, param, grad, velocity, lr, momentum, nesterov, weight_decay, guard, scratch: dict):
        """In place, torch.optim.SGD's momentum step: d = grad + weight_decay·param; velocity <-
        momentum·velocity + d; param <- param - lr·velocity (Nesterov: - lr·(d + momentum·velocity)).
        Skipped entirely (param and velocity unchanged) when ``guard`` holds NaN/Inf, as sgd_update."""

    @abc.abstractmethod
    def adam_check(self, param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, out, scratch: dict):
        """out[()] = 0 when every candidate parameter, m and v of adam_update is finite, NaN
        otherwise; nothing else is written, ``step`` included (the first pass of the guarded update)."""

    @abc.abstractmethod
    def adam_update(self, param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, guard, scratch: dict):
        """In place, torch.optim.Adam's step (see ``gpubackprop.optimizers``) with t = step[0] + 1,
        ``step`` a (1,) int64 array on the device; then step[0] <- t. Skipped entirely (param, m, v
        and step unchanged) when ``guard`` holds NaN/Inf; the count is read and advanced on the
        device, so a recorded step replays correctly."""

    # ------------------------------------------------------------------ recording
    @abc.abstractmethod
    def recorder(self):
        """A new recorder for one network: ``run(step, recordings, arrays, scalars)`` runs
        ``step()`` (work queued on buffers that outlive it) and may replay a recording of it on
        later calls with the same ``arrays`` (by address) and ``scalars``; ``error`` says why
        recording failed, if it did."""


class Eager:
    """The recorder of a backend that does not record: every step runs as it is."""

    error = None
    records = False

    def run(self, step, recordings, arrays, scalars):
        step()
