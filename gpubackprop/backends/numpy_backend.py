"""The CPU backend: NumPy, the operations of ``Backend`` with the per-call overhead taken out.

Same operations, same order and same roundings as ``Backend`` (and as the CUDA kernels); what
changes is only how they are called, because at small sizes a step is nothing but call
overhead (about 0.2 µs per ufunc call at best, 0.4–0.6 µs when NumPy has to convert a Python
scalar or broadcast a 1-D operand):

- GEMMs through ``numpy.dot`` on transposed views (BLAS reads the transpose flags; half the
  call cost of ``numpy.matmul``);
- scalars as cached 0-d arrays of the array's dtype, biases as (1, n) views: a ufunc call on
  operands of equal rank takes NumPy's fast path;
- the bias gradient Σ_batch δ as one BLAS gemv with a cached ones vector (``numpy.sum`` over an
  axis costs several times more at small sizes and runs one thread at large ones);
- output positional (``out`` by keyword costs a dict parse per call).
"""
from __future__ import annotations

import math

import numpy

from .base import ACTIVATIONS, Backend

_add, _subtract, _multiply, _tanh, _maximum, _greater, _dot = (
    numpy.add, numpy.subtract, numpy.multiply, numpy.tanh, numpy.maximum, numpy.greater, numpy.dot)


class NumpyBackend(Backend):
    name = "numpy"
    xp = numpy

    def __init__(self):
        super().__init__()
        self._constants = {}  # dtype -> (0, 0.5, 1) as 0-d arrays of that dtype
        self._ones = {}  # (length, dtype) -> ones vector for the bias-gradient gemv
        self._rows = {}  # id(bias) -> (bias, bias as a (1, n) view)

    def device_name(self) -> str:
        return "CPU"

    def to_numpy(self, array):
        return numpy.array(array, copy=True)

    # ------------------------------------------------------------------ helpers
    def _consts(self, dtype):
        c = self._constants.get(dtype)
        if c is None:
            c = self._constants[dtype] = tuple(numpy.array(v, dtype=dtype) for v in (0.0, 0.5, 1.0))
        return c

    def _row(self, bias):
        """bias (n,) as a (1, n) view, cached: broadcasting a 1-D operand costs a slow path."""
        hit = self._rows.get(id(bias))
        if hit is not None and hit[0] is bias:
            return hit[1]
        if len(self._rows) > 256:  # parameters replaced many times: forget the old ones
            self._rows.clear()
        row = bias.reshape(1, -1)
        self._rows[id(bias)] = (bias, row)
        return row

    # ------------------------------------------------------------------ GEMM
    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        _dot(a.T if trans_a else a, b.T if trans_b else b, out)
        return out

    # ------------------------------------------------------------------ layer math
    def bias_activation(self, z, bias, activation):
        _add(z, self._row(bias), z)
        if activation == "sigmoid":
            _, half, _ = self._consts(z.dtype)
            # sigma(z) = (1 + tanh(z/2)) / 2, as Backend and the kernel: * 0.5, tanh, * 0.5, + 0.5
            _multiply(z, half, z)
            _tanh(z, z)
            _multiply(z, half, z)
            _add(z, half, z)
        elif activation == "tanh":
            _tanh(z, z)
        elif activation == "relu":
            _maximum(z, self._consts(z.dtype)[0], out=z)
        elif activation != "identity":
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        return z

    def activation_backward(self, grad, a, activation, out):
        if activation == "identity":
            if out is not grad:
                numpy.copyto(out, grad)
            return out
        zero, _, one = self._consts(a.dtype)
        s = self.scratch(a.shape, a.dtype)
        if activation == "sigmoid":  # sigma' = (1 - a) a
            _subtract(one, a, s)
            _multiply(s, a, s)
        elif activation == "tanh":  # tanh' = 1 - a^2
            _multiply(a, a, s)
            _subtract(one, s, s)
        elif activation == "relu":  # relu' = [a > 0]
            _greater(a, zero, s)
        else:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        _multiply(grad, s, out)
        return out

    def mse_loss_grad(self, yhat, y, grad, loss):
        _subtract(yhat, y, grad)
        flat = grad.reshape(-1)
        batch = yhat.shape[0]
        loss[...] = _dot(flat, flat) * (0.5 / batch)
        if batch != 1:  # x * 1.0 == x exactly: skipping it changes no number
            _multiply(grad, 1.0 / batch, grad)
        return loss

    def _ones_vector(self, length, dtype):
        key = (length, dtype)
        ones = self._ones.get(key)
        if ones is None:
            ones = self._ones[key] = numpy.ones(length, dtype=dtype)
        return ones

    def sum_rows(self, x, out):
        _dot(self._ones_vector(x.shape[0], x.dtype), x, out)  # Σ_batch as a gemv: 1ᵀ x
        return out

    def finite_check(self, x, out):
        _dot(x, self._ones_vector(x.shape[0], x.dtype), out)  # the sum as a BLAS dot: one threaded pass
        return out

    def sgd_update(self, param, grad, lr, guard=None):
        if guard is not None and not all(map(math.isfinite, guard.tolist())):
            return param  # the kernel's guard, checked on the host
        step = self.scratch(grad.shape, grad.dtype)
        _multiply(grad, lr, step)  # step = lr * grad, then param - step: as the kernel rounds
        _subtract(param, step, param)
        return param
