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

    def gather_batch_at(self, x_source, y_source, order, cursor, x_out, y_out, scratch: dict):
        """fit's batch: ``gather_rows_at`` of the inputs and of the targets at the same ``cursor``,
        then ``advance_cursor`` by their rows, in this order; one kernel on a device. ``scratch``: the
        caller's temporaries."""
        self.gather_rows_at(x_source, order, cursor, x_out)
        self.gather_rows_at(y_source, order, cursor, y_out)
        self.advance_cursor(cursor, x_out.shape[0])
        return x_out, y_out

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
        guarded update skips it (sticky), and the parameters stay those after the last good step.
        A fit step passes ``totals`` to the update instead (``optimizer_step``): the same outcome,
        with no launch of its own on a device (the refuse-or-apply decision taken first, by every
        block; the totals written last, by the update's last block)."""

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

    def loss_grad(self, name: str, z, y, grad, loss, correct, scratch: dict):
        """The loss ``name`` of ``gpubackprop.losses`` (one row of its table, one method here):
        from the last layer's output z and the targets y (batch, outputs), grad = ∂L/∂z, loss[()] =
        L and, for a classification loss, correct[()] = the right predictions; returns loss. The
        backend's ``_<name>_loss`` method, found once per name and kept."""
        table = self.__dict__.setdefault("_loss_table", {})
        function = table.get(name)
        if function is None:
            function = table[name] = getattr(self, f"_{name}_loss")
        return function(z, y, grad, loss, correct, scratch)

    def activation_backward_bias(self, grad, a, activation: str, out, grad_bias, scratch: dict):
        """A hidden layer's backward: ``activation_backward`` (δ into out, which may be grad), then
        the bias gradient Σ_batch δ into ``grad_bias`` (``sum_rows``), in this order here; one kernel
        on a device (its additions then in the kernel's own order). Returns out."""
        self.activation_backward(grad, a, activation, out=out, scratch=scratch)
        self.sum_rows(out, out=grad_bias)
        return out

    def loss_backward(self, name: str, z, y, activation: str, delta, grad_bias, loss, correct, scratch: dict,
                      bias_row=None):
        """Training's output layer, from its activation z and the targets y (batch, outputs); with
        ``bias_row``, z holds X Wᵀ and the layer's forward ends here first (``bias_activation``, in
        place). Then ``loss_grad`` into ``delta``, δ = ∂L/∂a ⊙ act'(z) in place
        (``activation_backward``) and the bias gradient Σ_batch δ into ``grad_bias`` (``sum_rows``):
        these, in this order, here; a device backend runs them as one kernel (the bias gradient's
        additions then in the kernel's own order). Returns loss."""
        if bias_row is not None:
            self.bias_activation(z, bias_row, activation, scratch)
        self.loss_grad(name, z, y, delta, loss, correct, scratch)
        self.activation_backward(delta, z, activation, out=delta, scratch=scratch)
        self.sum_rows(delta, out=grad_bias)
        return loss

    @abc.abstractmethod
    def sum_rows(self, x, out):
        """out = sum of x over the batch axis (the bias gradient)."""

    @abc.abstractmethod
    def finite_check(self, x, out, squares=False):
        """out[()] = a value that is finite exactly when every element of x is: their sum (NaN and
        Inf reach a sum; only a finite sum beyond the dtype's range gives a false alarm), or with
        ``squares`` their sum of squares (the squared norm, for gradient clipping)."""

    @abc.abstractmethod
    def optimizer_step(self, optimizer, param, grad, state, step, lr, status, *, check, guarded=True, clip=None,
                       scratch: dict, check_grads: bool = False, totals=None, rows: int = 0,
                       flags_zero: bool = False):
        """One pass of ``optimizer``'s guarded update (a ``gpubackprop.optimizers.Optimizer``) over
        the flat ``param`` with gradients ``grad``, state rows ``state`` (k, n) and the step count
        ``step`` ((1,) int64: t = step[0] + 1); ``lr`` is a (1,) float64 device array, read where
        the work runs (a recorded step survives its changes). ``check``: the first pass, which writes
        nothing but status[STATUS.update_check] = 0, or NaN when any candidate value is not finite.
        Else the update, skipped entirely (param, state, step) when ``guarded`` and any of the
        status's guard slots is NaN/Inf; then step[0] += 1. ``clip``: gradients scaled by
        min(1, clip / (norm + 1e-6)) first, norm = √status[STATUS.grad_check] (torch's
        clip_grad_norm_). ``check_grads`` (check pass only, no ``clip``): the gradients' finite check
        too (``finite_check`` into status[STATUS.grad_check]), fused into the check pass on a device
        (one read of the gradients, one launch). ``totals`` (update pass, guarded, fit only): fit's
        totals summed with this step's ``rows`` as ``accumulate_step`` does, the update skipped also
        after an earlier bad step (the sticky refusal); on a device inside the update's launch (its
        last block), no launch of its own; then status[STATUS.grad_check] and [STATUS.update_check]
        are set to 0. ``flags_zero`` (check pass): those two are 0 already (fit's steps after the
        first of a launch: the previous update with ``totals`` zeroed them), so a device's check
        pass needs no memset of them. The rule's arithmetic: its NumPy reference or its kernel."""

    # ------------------------------------------------------------------ recording
    @abc.abstractmethod
    def recorder(self):
        """A new recorder for one network: ``run(step, recordings, arrays, scalars)`` runs
        ``step()`` (work queued on buffers that outlive it) and may replay a recording of it on
        later calls with the same ``arrays`` (by address) and ``scalars``; ``error`` says why
        recording failed, if it did."""


    plans = False  # whether ``plan_step`` plans steps (the NumPy backend); a recording backend records them

    def plan_step(self, steps, ws, check_finite: bool):
        """A plan of ``steps``' step on workspace ``ws`` (``numpy_plan.StepPlan``: ``valid(params)``,
        ``run(X, Y, lr, totals=None, rows=0)`` -> the status as a list), made once and replayed; only
        where ``plans`` is True."""
        raise NotImplementedError(f"the {self.name} backend records steps instead of planning them")


class Eager:
    """The recorder of a backend that does not record: every step runs as it is."""

    error = None
    records = False

    def run(self, step, recordings, arrays, scalars):
        step()
