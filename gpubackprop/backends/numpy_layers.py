"""The NumPy backend's layer operations: GEMMs, activations, losses, reductions (the reference
arithmetic; see ``numpy_backend`` for how the calls are made cheap)."""
from __future__ import annotations

import functools

import numpy

from .. import activations
from .base import scratch_buffer

_add, _subtract, _multiply, _divide, _tanh, _maximum, _greater = (
    numpy.add, numpy.subtract, numpy.multiply, numpy.divide, numpy.tanh, numpy.maximum, numpy.greater)
_exp, _fmax, _sign = numpy.exp, numpy.fmax, numpy.sign
SIGN_STEP_MAX = 1024  # elements: sign(z) for H(z) up to this size (see sigmoid_calls; measured crossover ~1-2 K on AVX2)
# [z >= 0] written as 1.0 or 0.0 in z's own dtype, in place: a comparison cast on the way out
# (numpy.heaviside, the same values, is not vectorised: 15x slower on AVX2).
_step = functools.partial(numpy.greater_equal, casting="unsafe")
# numpy.dot without its __array_function__ dispatcher (a Python-level wrapper: ~0.4 µs per call);
# every operand here is a NumPy array, which the dispatcher would hand to this same function.
_dot = getattr(numpy.dot, "__wrapped__", numpy.dot)
_ZERO = {}  # dtype -> 0 as a 0-d array of it
_bitwise_or = numpy.bitwise_or
_BITS = {numpy.dtype(numpy.float32): numpy.uint32, numpy.dtype(numpy.float64): numpy.uint64}
_SIGN = {}  # float dtype -> its sign bit as a 0-d array of the unsigned integer of its size


def negative_abs_call(x, out):
    """(function, args): out <- -|x|, as one pass setting the sign bit (x | sign, on the unsigned
    integers of the same size): the bits of ``negative(abs(x))`` (NaN included: a NaN with the
    sign set), at about 70 % of the cost of those two passes."""
    bits = _BITS[x.dtype]
    sign = _SIGN.get(x.dtype)
    if sign is None:
        sign = _SIGN[x.dtype] = numpy.array(1 << (8 * x.dtype.itemsize - 1), dtype=bits)
    return (_bitwise_or, (x.view(bits), sign, out.view(bits)))


def sigmoid_calls(z, t, one):
    """[(function, args)]: in place, z <- sigma(z) = 1 / (1 + e^-z), to the dtype's relative
    precision for every z; ``t`` (z's shape and dtype) is scratch; ``one``: 1 as a 0-d array of z's
    dtype.

    Branch-free and overflow-free: with t = e^-|z| (in (0, 1]), sigma = 1 / (1 + t) for z >= 0 and
    t / (1 + t) = e^z / (1 + e^z) for z < 0, i.e. num / (1 + t) with num = max(H(z), t) (H: the
    Heaviside step, H(0) = 1), which is 1 or t exactly. Each step rounds once: a few ulp in all,
    relative, also where sigma(z) is tiny (float32 sigma(-20) = 2.06e-9, not the 0 that the
    absolute-precision form (1 + tanh(z/2))/2 gives); subnormal, then 0, beyond the dtype's range,
    where e^-|z| underflows (silent under the library's errstate(under="ignore"): see
    NumpyBackend.activate). NaN stays NaN. kernels/activations.cu (sigmoid_of) performs the same
    operations in the same order, with the same values: H(z) as [z >= 0] (1 at -0 too), and fmax,
    which is max wherever t is a number (for a NaN z, num is 0 or 1 and 1 + t is NaN: σ is NaN).
    Six passes, one transcendental (exp: about half of tanh's cost here), each vectorised:
    cheaper than (1 + tanh(z/2))/2 (measured 307 vs 452 µs on 256×256 float32, AVX2, with -|z|
    then as two passes).

    Up to ``SIGN_STEP_MAX`` elements, sign(z) stands for H(z): the comparison written as floats
    costs ~2 µs a call on any size (a casting loop), sign ~0.4 µs on a few elements, and σ comes
    out with the same bits for every number z: fmax(sign(z), t) = fmax(H(z), t) = 1 for z > 0; t for
    z < 0 (fmax(-1, t) = fmax(0, t) = t, as t >= 0); for z = ±0, t = 1 and both give 1. A NaN z
    gives a NaN σ both ways, its sign bit possibly not the same (-NaN: +NaN by the comparison,
    -NaN by sign). numpy.sign is not vectorised, so larger arrays keep the comparison (the
    kernel's form)."""
    zero = _ZERO.get(z.dtype)
    if zero is None:
        zero = _ZERO[z.dtype] = numpy.array(0, dtype=z.dtype)
    step = (_sign, (z, z)) if z.size <= SIGN_STEP_MAX else (_step, (z, zero, z))
    return [negative_abs_call(z, t),  # t = -|z| (kernel: -fabs(z), the same bits)
            (_exp, (t, t)),  # t = e^-|z|: underflows to 0 (subnormal first) for |z| beyond ~87 (float32) / ~708 (float64)
            step,  # z = H(z) = [z >= 0] (1 or 0, in z's dtype), or sign(z) on a few elements
            (_fmax, (z, t, z)),  # num = 1 (z >= 0) or t (z < 0): exact
            (_add, (t, one, t)),
            (_divide, (z, t, z))]


def sigmoid_into(z, t, one):
    """``sigmoid_calls`` run: z <- sigma(z) in place (``t`` scratch); returns z."""
    for f, args in sigmoid_calls(z, t, one):
        f(*args)
    return z


class NumpyLayerOps:
    """Forward and backward of one layer, the losses, and the constants they use (cached per dtype)."""

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
    # Every activation and the MSE are lists of bound calls ``[(ufunc, args)]`` on given buffers:
    # run here one by one, or planned once and replayed by a step plan (``numpy_plan``). One list,
    # so both run the same operations in the same order (the kernels of kernels/ too).
    def bias_activation(self, z, bias_row, activation, scratch=None):
        try:
            forward = self._forward[activation]
        except KeyError:
            raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}") from None
        for f, args in forward(z, bias_row, {} if scratch is None else scratch):
            f(*args)
        return z

    def forward_calls(self, z, bias_row, activation, scratch):
        """[(function, args)]: z <- act(z + bias), in place (``scratch``: the caller's temporaries)."""
        return self._forward[activation](z, bias_row, scratch)

    def backward_calls(self, grad, a, activation, out, scratch):
        """[(function, args)]: out = grad * act'(z), act' read off a (out may be grad)."""
        backward = self._backward.get(activation)
        if backward is None:
            if activation not in activations.TABLE:
                raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}")
            return [] if out is grad else [(numpy.copyto, (out, grad))]  # act' == 1
        s = scratch_buffer(scratch, a.shape, a.dtype, self.empty)
        return backward(a, s) + [(_multiply, (grad, s, out))]  # s = act'(z), read off a

    def activation_backward(self, grad, a, activation, out, scratch):
        for f, args in self.backward_calls(grad, a, activation, out, scratch):
            f(*args)
        return out

    # Each activation: forward in place on z (after the bias add), and its derivative read off a
    # into s; the kernels of kernels/activations.cu do the same operations in the same order.
    def _sigmoid_forward(self, z, b, scratch):
        t = scratch_buffer(scratch, z.shape, z.dtype, self.empty)
        return [(_add, (z, b, z))] + sigmoid_calls(z, t, self._consts(z.dtype)[2])

    def _sigmoid_backward(self, a, s):  # sigma' = (1 - a) a
        return [(_subtract, (self._consts(a.dtype)[2], a, s)), (_multiply, (s, a, s))]

    def _tanh_forward(self, z, b, scratch):
        return [(_add, (z, b, z)), (_tanh, (z, z))]

    def _tanh_backward(self, a, s):  # tanh' = 1 - a^2
        return [(_multiply, (a, a, s)), (_subtract, (self._consts(a.dtype)[2], s, s))]

    def _relu_forward(self, z, b, scratch):
        # (out by keyword: a third positional argument is deprecated for maximum; NaN propagates)
        return [(_add, (z, b, z)), (functools.partial(_maximum, out=z), (z, self._consts(z.dtype)[0]))]

    def _relu_backward(self, a, s):  # relu' = [a > 0]
        return [(_greater, (a, self._consts(a.dtype)[0], s))]

    def _identity_forward(self, z, b, scratch):
        return [(_add, (z, b, z))]

    def mse_calls(self, yhat, y, grad, loss):
        """[(function, args)]: grad = (ŷ − y)/B and loss[()] = Σ (ŷ − y)² / (2B), in float of the dtype."""
        flat = grad.reshape(-1)
        batch = yhat.shape[0]
        scale, inv = self._batch_consts(batch, yhat.dtype)
        calls = [(_subtract, (yhat, y, grad)), (_dot, (flat, flat, loss)), (_multiply, (loss, scale, loss))]
        if batch != 1:  # x * 1.0 == x exactly: skipping it changes no number
            calls.append((_multiply, (grad, inv, grad)))
        return calls

    def _batch_consts(self, batch, dtype):
        """(0.5 / batch, 1 / batch) as 0-d arrays of ``dtype`` (as a Python float would be rounded to it)."""
        key = ("batch", batch, dtype)
        c = self._constants.get(key)
        if c is None:
            c = self._constants[key] = (numpy.array(0.5 / batch, dtype=dtype), numpy.array(1.0 / batch, dtype=dtype))
        return c

    def _mse_loss(self, yhat, y, grad, loss, correct, scratch):
        for f, args in self.mse_calls(yhat, y, grad, loss):
            f(*args)
        return loss

    def _softmax_cross_entropy_loss(self, z, y, grad, loss, correct, scratch):
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

    def _sigmoid_binary_cross_entropy_loss(self, z, y, grad, loss, correct, scratch):
        # Elementwise as kernels/loss.cu: l = (max(z, 0) + log1p(e^-|z|)) - z y, grad = (sigmoid(z) - y) / B.
        zero, half = self._consts(z.dtype)[:2]
        inv_batch = 1.0 / z.shape[0]
        softplus = scratch_buffer(scratch, z.shape, z.dtype, self.empty)
        f, args = negative_abs_call(z, softplus)  # -|z|
        f(*args)
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

    def finite_check(self, x, out, squares=False):
        # The sum (or with ``squares`` the sum of squares: the norm for clipping) as a BLAS dot: one threaded pass.
        _dot(x, x if squares else self._ones_vector(x.shape[0], x.dtype), out)
        return out
