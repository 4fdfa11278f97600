"""The CPU backend: NumPy, the reference arithmetic of every operation.

The CUDA kernels in ``kernels/`` perform the same operations in the same order (and round the
same way: they are built with ``--fmad=false``). At small sizes a step is nothing but call
overhead (about 0.2 µs per ufunc call at best, 0.4–0.6 µs when NumPy has to convert a Python
scalar or broadcast a 1-D operand), so the calls are made the cheap way:

- GEMMs through ``numpy.dot`` on transposed views (BLAS reads the transpose flags; half the
  call cost of ``numpy.matmul``);
- scalars as cached 0-d arrays of the array's dtype, biases as (1, n) rows: a ufunc call on
  operands of equal rank takes NumPy's fast path;
- the bias gradient Σ_batch δ as one BLAS gemv with a cached ones vector (``numpy.sum`` over an
  axis costs several times more at small sizes and runs one thread at large ones);
- output positional (``out`` by keyword costs a dict parse per call).

The caches here (0-d constants, ones vectors) hold values that never change after they are made:
networks sharing this backend share no mutable state.
"""
from __future__ import annotations

import math

import numpy

from .. import activations
from . import conversion
from .base import Backend, Eager, scratch_buffer
from .timers import WallTimer

_add, _subtract, _multiply, _divide, _tanh, _maximum, _greater, _dot = (
    numpy.add, numpy.subtract, numpy.multiply, numpy.divide, numpy.tanh, numpy.maximum, numpy.greater, numpy.dot)
_abs, _negative, _exp = numpy.abs, numpy.negative, numpy.exp


def sigmoid_into(z, t, one):
    """In place: z <- sigma(z) = 1 / (1 + e^-z), to the dtype's relative precision for every z; ``t``
    (z's shape and dtype) is scratch; ``one``: 1 as a 0-d array (or scalar) of z's dtype.

    Branch-free and overflow-free: with t = e^-|z| (in (0, 1]), sigma = 1 / (1 + t) for z >= 0 and
    t / (1 + t) = e^z / (1 + e^z) for z < 0, i.e. num / (1 + t) with num = max(H(z), t) (H: the
    Heaviside step, H(0) = 1), which is 1 or t exactly. Each step rounds once: a few ulp in all,
    relative, also where sigma(z) is tiny (float32 sigma(-20) = 2.06e-9, not the 0 that the
    absolute-precision form (1 + tanh(z/2))/2 gives); subnormal, then 0, beyond the dtype's range,
    where e^-|z| underflows (silent under the library's errstate(under="ignore"): see
    NumpyBackend.activate). NaN stays NaN. kernels/activations.cu (sigmoid_of) performs the same
    operations in the same order."""
    _abs(z, t)
    _negative(t, t)
    _exp(t, t)  # t = e^-|z|: underflows to 0 (subnormal first) for |z| beyond ~87 (float32) / ~708 (float64)
    numpy.heaviside(z, one, out=z)  # z = [z >= 0]: 1 or 0 (NaN stays NaN), in z's dtype: no cast
    _maximum(z, t, out=z)  # num = 1 (z >= 0) or t (z < 0): exact; NaN from t propagates
    _add(t, one, t)
    _divide(z, t, z)
    return z


class NumpyBackend(Backend):
    name = "numpy"
    device = "cpu"
    spec = "numpy"
    tf32 = False  # no TF32 on the CPU: precision="tf32" computes in float32

    def __init__(self, device_id: int = 0):
        if device_id != 0:
            raise ValueError(f"the numpy backend has one device, the CPU: use 'numpy', not 'numpy:{device_id}'")
        self._constants = {}  # dtype -> (0, 0.5, 1) as 0-d arrays of that dtype
        self._ones = {}  # (length, dtype) -> ones vector for the bias-gradient gemv
        self._zeros = {}  # (length, dtype) -> zeros vector for the update's finite check
        # Per activation name, its forward and backward below (a row of activations.TABLE without
        # them fails here, at construction, not in the middle of a step).
        self._forward = {name: getattr(self, f"_{name}_forward") for name in activations.NAMES}
        self._backward = {name: getattr(self, f"_{name}_backward") for name, act in activations.TABLE.items()
                          if not act.unit_derivative}

    # ------------------------------------------------------------------ the device
    @classmethod
    def probe(cls, short: bool = False):
        return None

    @classmethod
    def device_count(cls) -> int:
        return 1

    def device_name(self) -> str:
        return "CPU"

    def activate(self, quiet=False):
        # The CPU is always "current"; what is left is NumPy's floating-point error state, which
        # belongs to the caller's thread (context), so it is set per call, never globally.
        return numpy.errstate(all="ignore") if quiet else numpy.errstate(under="ignore")

    def versions(self) -> dict:
        return {"numpy": numpy.__version__}

    def timer(self):
        return WallTimer()

    # ------------------------------------------------------------------ arrays
    def empty(self, shape, dtype):
        return numpy.empty(shape, dtype=dtype)

    def asarray(self, array, dtype):
        return numpy.ascontiguousarray(array, dtype=dtype)

    def as_array(self, array, name: str):
        if isinstance(array, numpy.ndarray):
            return array
        device = conversion.dlpack_device(array)
        if device is not None:
            where = conversion.describe_device(*device)
            if device[0] != conversion.CPU:
                raise TypeError(
                    f"{name} lives on {where} ({type(array).__name__} from {conversion.library_of(array)}) but "
                    f"this network runs on the numpy backend (CPU); move it to the host first "
                    f"({conversion.host_hint(conversion.library_of(array), name)}), or build the network with "
                    f"backend='cupy' to train on the GPU")
            return conversion.from_dlpack(numpy.from_dlpack, array, name, where)
        if hasattr(array, "__cuda_array_interface__"):
            raise TypeError(
                f"{name} is a GPU array ({type(array).__module__}.{type(array).__name__}) but this network runs on "
                f"the numpy backend (CPU); move it to the host first (e.g. {name}.get() for CuPy, {name}.cpu() "
                f"for PyTorch), or build the network with backend='cupy'")
        return conversion.host_array(array, name)

    def is_native(self, array) -> bool:
        return isinstance(array, numpy.ndarray)

    def copyto(self, dst, src):
        numpy.copyto(dst, src)

    def device_copy(self, dst, src):
        numpy.copyto(dst, src)

    def to_numpy(self, array):
        return numpy.array(array, copy=True)

    def to_host(self, array, out):
        numpy.copyto(out, array)
        return out

    def gather_rows(self, source, index, out):
        # mode="clip": mode="raise" (the default) buffers ``out``; the indices are always valid.
        numpy.take(source, index, axis=0, out=out, mode="clip")
        return out

    def gather_rows_at(self, source, order, cursor, out):
        start = int(cursor[0])
        numpy.take(source, order[start:start + out.shape[0]], axis=0, out=out, mode="clip")  # as gather_rows
        return out

    def advance_cursor(self, cursor, rows):
        cursor[0] += rows

    def accumulate_step(self, status, totals, rows):
        # The kernel of kernels/fit.cu, in the same double operations (on Python floats: no warnings).
        total, good, bad_loss, bad_check, bad_update, correct = totals.tolist()
        if not (math.isfinite(bad_loss) and math.isfinite(bad_check) and math.isfinite(bad_update)):
            status[1] = bad_loss + bad_check + bad_update  # non-finite: the update's guard refuses the step
            return
        loss, check, update, hits = status.tolist()
        if math.isfinite(loss) and math.isfinite(check) and math.isfinite(update):
            totals[0], totals[1], totals[5] = total + loss * float(rows), good + 1.0, correct + hits
        else:
            totals[2], totals[3], totals[4] = loss, check, update

    def synchronize(self):
        pass

    # ------------------------------------------------------------------ helpers
    def _consts(self, dtype):
        c = self._constants.get(dtype)
        if c is None:
            c = self._constants[dtype] = tuple(numpy.array(v, dtype=dtype) for v in (0.0, 0.5, 1.0))
        return c

    def _ones_vector(self, length, dtype):
        return self._constant_vector(self._ones, 1, length, dtype)

    def _zeros_vector(self, length, dtype):
        return self._constant_vector(self._zeros, 0, length, dtype)

    @staticmethod
    def _constant_vector(cache, value, length, dtype):
        """A vector of ``value`` kept in ``cache`` per (length, dtype): made once, never written."""
        key = (length, dtype)
        vector = cache.get(key)
        if vector is None:
            vector = cache[key] = numpy.full(length, value, dtype=dtype)
        return vector

    # ------------------------------------------------------------------ GEMM
    def matmul(self, a, b, out, trans_a=False, trans_b=False, tf32=False):  # tf32: float32 BLAS, see self.tf32
        _dot(a.T if trans_a else a, b.T if trans_b else b, out)
        return out

    def gemm_sequence(self, gemms, tf32=False):
        calls = tuple((a.T if ta else a, b.T if tb else b, out) for a, b, out, ta, tb in gemms)

        def run():
            for a, b, out in calls:
                _dot(a, b, out)
        return run

    # ------------------------------------------------------------------ layer math
    def bias_activation(self, z, bias_row, activation, scratch=None):
        try:
            forward = self._forward[activation]
        except KeyError:
            raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}") from None
        _add(z, bias_row, z)
        forward(z, {} if scratch is None else scratch)
        return z

    def activation_backward(self, grad, a, activation, out, scratch):
        backward = self._backward.get(activation)
        if backward is None:
            if activation not in activations.TABLE:
                raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}")
            if out is not grad:  # act' == 1
                numpy.copyto(out, grad)
            return out
        s = scratch_buffer(scratch, a.shape, a.dtype, self.empty)
        backward(a, s)  # s = act'(z), read off a
        _multiply(grad, s, out)
        return out

    # Each activation: forward in place on z, and its derivative read off a into s; the kernels of
    # kernels/activations.cu do the same operations in the same order.
    def _sigmoid_forward(self, z, scratch):
        sigmoid_into(z, scratch_buffer(scratch, z.shape, z.dtype, self.empty), self._consts(z.dtype)[2])

    def _sigmoid_backward(self, a, s):  # sigma' = (1 - a) a
        _subtract(self._consts(a.dtype)[2], a, s)
        _multiply(s, a, s)

    def _tanh_forward(self, z, scratch):
        _tanh(z, z)

    def _tanh_backward(self, a, s):  # tanh' = 1 - a^2
        _multiply(a, a, s)
        _subtract(self._consts(a.dtype)[2], s, s)

    def _relu_forward(self, z, scratch):
        _maximum(z, self._consts(z.dtype)[0], out=z)  # (a third positional argument is deprecated here)

    def _relu_backward(self, a, s):  # relu' = [a > 0]
        _greater(a, self._consts(a.dtype)[0], s)

    def _identity_forward(self, z, scratch):
        pass

    def mse_loss_grad(self, yhat, y, grad, loss):
        _subtract(yhat, y, grad)
        flat = grad.reshape(-1)
        batch = yhat.shape[0]
        loss[...] = _dot(flat, flat) * (0.5 / batch)
        if batch != 1:  # x * 1.0 == x exactly: skipping it changes no number
            _multiply(grad, 1.0 / batch, grad)
        return loss

    def softmax_cross_entropy_loss_grad(self, z, y, grad, loss, correct, scratch):
        # Row by row as the kernel's thread per row (kernels/loss.cu: softmax_cross_entropy_rows):
        # m = max z, d = z - m, s = Σ e^d, loss_r = (Σ y) log s - Σ y d, grad = (e^d / s · Σ y - y) / B.
        rows, classes = z.shape
        inv_batch = 1.0 / rows
        columns = scratch_buffer(scratch, (5, rows, 1), z.dtype, self.empty)
        m, s, sy, syd, row_loss = columns
        d = scratch_buffer(scratch, z.shape, z.dtype, self.empty)
        numpy.max(z, axis=1, keepdims=True, out=m)
        _subtract(z, m, d)
        numpy.exp(d, grad)  # e^d: underflows to 0 for logits far below the row's maximum (documented)
        numpy.sum(grad, axis=1, keepdims=True, out=s)
        numpy.sum(y, axis=1, keepdims=True, out=sy)
        _multiply(y, d, d)
        numpy.sum(d, axis=1, keepdims=True, out=syd)
        numpy.log(s, row_loss)
        _multiply(row_loss, sy, row_loss)
        _subtract(row_loss, syd, row_loss)
        loss[...] = row_loss.sum() * inv_batch
        numpy.divide(grad, s, grad)  # softmax
        _multiply(grad, sy, grad)
        _subtract(grad, y, grad)
        if rows != 1:  # x * 1.0 == x exactly: skipping it changes no number
            _multiply(grad, inv_batch, grad)
        arg = scratch_buffer(scratch, (2, rows), numpy.int64, self.empty)
        numpy.argmax(z, axis=1, out=arg[0])  # first maximum, as the kernel's strict >
        numpy.argmax(y, axis=1, out=arg[1])
        hit = scratch_buffer(scratch, (rows,), numpy.bool_, self.empty)
        numpy.equal(arg[0], arg[1], hit)
        correct[...] = numpy.count_nonzero(hit)
        return loss

    def sigmoid_binary_cross_entropy_loss_grad(self, z, y, grad, loss, correct, scratch):
        # Elementwise as kernels/loss.cu: l = (max(z, 0) + log1p(e^-|z|)) - z y, grad = (sigmoid(z) - y) / B.
        zero, half = self._consts(z.dtype)[:2]
        inv_batch = 1.0 / z.shape[0]
        softplus = scratch_buffer(scratch, z.shape, z.dtype, self.empty)
        numpy.abs(z, softplus)
        numpy.negative(softplus, softplus)
        numpy.exp(softplus, softplus)  # underflows to 0 for |z| beyond ~100 (float32) / ~700 (float64): documented
        numpy.log1p(softplus, softplus)
        _maximum(z, zero, out=grad)
        _add(grad, softplus, grad)
        _multiply(z, y, softplus)
        _subtract(grad, softplus, grad)
        flat = grad.reshape(-1)
        loss[...] = _dot(flat, self._ones_vector(flat.shape[0], flat.dtype)) * inv_batch
        numpy.copyto(grad, z)
        sigmoid_into(grad, softplus, self._consts(z.dtype)[2])  # sigmoid(z) as the activation computes it (softplus: free scratch now)
        _subtract(grad, y, grad)
        if z.shape[0] != 1:
            _multiply(grad, inv_batch, grad)
        hits = scratch_buffer(scratch, (2, *z.shape), numpy.bool_, self.empty)
        _greater(z, zero, hits[0])
        numpy.greater_equal(y, half, hits[1])
        numpy.equal(hits[0], hits[1], hits[0])
        correct[...] = numpy.count_nonzero(hits[0])
        return loss

    def sum_rows(self, x, out):
        _dot(self._ones_vector(x.shape[0], x.dtype), x, out)  # Σ_batch as a gemv: 1ᵀ x
        return out

    def finite_check(self, x, out):
        _dot(x, self._ones_vector(x.shape[0], x.dtype), out)  # the sum as a BLAS dot: one threaded pass
        return out

    def sgd_check(self, param, grad, lr, out, scratch):
        candidate = scratch_buffer(scratch, grad.shape, grad.dtype, self.empty)
        _multiply(grad, lr, candidate)  # step = lr * grad, then param - step: as sgd_update rounds
        _subtract(param, candidate, candidate)
        if candidate.ndim != 1:  # (the network's parameter buffer is flat already)
            candidate = candidate.reshape(-1)
        # 0 when every candidate is finite, NaN otherwise (Inf·0 and NaN·0 are NaN): the kernel's
        # flag, in one BLAS pass.
        _dot(candidate, self._zeros_vector(candidate.shape[0], candidate.dtype), out)
        return out

    def sgd_update(self, param, grad, lr, guard, scratch):
        if guard is not None and not all(map(math.isfinite, guard.tolist())):
            return param  # the kernel's guard, checked on the host
        step = scratch_buffer(scratch, grad.shape, grad.dtype, self.empty)
        _multiply(grad, lr, step)  # step = lr * grad, then param - step: as the kernel rounds
        _subtract(param, step, param)
        return param

    # The stateful optimizers (gpubackprop.optimizers), as kernels/optimizers.cu: a check pass that
    # computes every candidate value into scratch space and flags a non-finite one, and a guarded
    # update that computes the same values in place; both through the same function below.
    def _momentum_candidate(self, param, grad, velocity, b, u, d, lr, momentum, nesterov, weight_decay):
        """b = mu velocity + d (b may be velocity), u = lr b or lr (d + mu b), d = grad + wd param."""
        if weight_decay:
            _multiply(param, weight_decay, d)
            _add(grad, d, d)
        else:
            d = grad
        _multiply(velocity, momentum, b)
        _add(b, d, b)
        if nesterov:
            _multiply(b, momentum, u)
            _add(d, u, u)
            _multiply(u, lr, u)
        else:
            _multiply(b, lr, u)

    def momentum_check(self, param, grad, velocity, lr, momentum, nesterov, weight_decay, out, scratch):
        d, b, u = scratch_buffer(scratch, (3, *grad.shape), grad.dtype, self.empty)
        self._momentum_candidate(param, grad, velocity, b, u, d, lr, momentum, nesterov, weight_decay)
        _subtract(param, u, u)  # the candidate parameters
        return self._flag_nonfinite_rows(scratch, grad, 1, 3, out)

    def momentum_update(self, param, grad, velocity, lr, momentum, nesterov, weight_decay, guard, scratch):
        if guard is not None and not all(map(math.isfinite, guard.tolist())):
            return param  # the kernel's guard, checked on the host: parameters and state untouched
        d, _, u = scratch_buffer(scratch, (3, *grad.shape), grad.dtype, self.empty)
        self._momentum_candidate(param, grad, velocity, velocity, u, d, lr, momentum, nesterov, weight_decay)
        _subtract(param, u, param)
        return param

    def _adam_candidate(self, param, grad, m, v, m_out, v_out, u, d, step, lr, beta1, beta2, eps, weight_decay):
        """m_out, v_out: the new moments (may be m, v); u: the step to subtract; for t = step[0] + 1."""
        t = float(step[0] + 1)
        step_size = lr / (1.0 - beta1 ** t)  # in double, as the kernel and torch
        sqrt_bc2 = math.sqrt(1.0 - beta2 ** t)
        if weight_decay:
            _multiply(param, weight_decay, d)  # d = g + wd p
            _add(grad, d, d)
        else:
            d = grad
        _multiply(m, beta1, m_out)  # m = b1 m + (1 - b1) d
        _multiply(d, 1.0 - beta1, u)
        _add(m_out, u, m_out)
        _multiply(v, beta2, v_out)  # v = b2 v + ((1 - b2) d) d
        _multiply(d, 1.0 - beta2, u)
        _multiply(u, d, u)
        _add(v_out, u, v_out)
        numpy.sqrt(v_out, u)  # u = step_size (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
        numpy.divide(u, sqrt_bc2, u)
        _add(u, eps, u)
        numpy.divide(m_out, u, u)
        _multiply(u, step_size, u)

    def adam_check(self, param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, out, scratch):
        d, u, m_new, v_new = scratch_buffer(scratch, (4, *grad.shape), grad.dtype, self.empty)
        self._adam_candidate(param, grad, m, v, m_new, v_new, u, d, step, lr, beta1, beta2, eps, weight_decay)
        _subtract(param, u, u)  # the candidate parameters
        return self._flag_nonfinite_rows(scratch, grad, 1, 4, out)

    def adam_update(self, param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, guard, scratch):
        if guard is not None and not all(map(math.isfinite, guard.tolist())):
            return param  # as the kernel: parameters, m, v and the step count untouched
        d, u = scratch_buffer(scratch, (4, *grad.shape), grad.dtype, self.empty)[:2]
        self._adam_candidate(param, grad, m, v, m, v, u, d, step, lr, beta1, beta2, eps, weight_decay)
        _subtract(param, u, param)
        step[0] += 1  # the kernel adam_advance_step
        return param

    def _flag_nonfinite_rows(self, scratch, grad, first, stop, out):
        """out = 0 when rows [first, stop) of the check's scratch block hold only finite values, NaN
        otherwise (Inf·0 and NaN·0 are NaN), in one BLAS pass, as sgd_check."""
        flat = scratch_buffer(scratch, (stop, *grad.shape), grad.dtype, self.empty)[first:stop].reshape(-1)
        _dot(flat, self._zeros_vector(flat.shape[0], flat.dtype), out)
        return out

    # ------------------------------------------------------------------ recording
    def recorder(self):
        return Eager()
