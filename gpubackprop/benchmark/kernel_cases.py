"""The fused kernels' bandwidth cases (``gpubackprop bench --kernels``): each beside a raw device
copy of the same bytes."""
from __future__ import annotations

import numpy

from ..layouts import STATUS
from ..optimizers import Optimizer
from .data import Case


def kernel_cases(backend, dtype, n):
    """The fused sigmoid backward δ = g·a·(1−a) (reads g and a, writes δ: 3 arrays of n) and a
    raw device copy of the same bytes (1.5 n read, 1.5 n written); with their bytes moved."""
    g = backend.asarray(numpy.random.default_rng(0).uniform(-1, 1, n), dtype)
    a = backend.asarray(numpy.random.default_rng(1).uniform(0, 1, n), dtype)
    out, scratch = backend.empty((n,), dtype), {}
    return _beside_a_copy(backend, dtype, "sigmoid_backward (fused)", 3 * n,
                          lambda: backend.activation_backward(g, a, "sigmoid", out=out, scratch=scratch))


def adam_kernel_cases(backend, dtype, n):
    """The fused Adam update over n parameters (reads θ, g, m, v; writes θ, m, v: 7 numbers per
    parameter, plus the one-thread step-count kernel) and a raw device copy of the same bytes
    (3.5 n read, 3.5 n written); with their bytes moved."""
    rng = numpy.random.default_rng(2)
    param, grad = backend.asarray(rng.uniform(-1, 1, n), dtype), backend.asarray(rng.uniform(-1e-3, 1e-3, n), dtype)
    state = backend.asarray(numpy.zeros((2, n)), dtype)  # m, v
    step = backend.asarray(numpy.zeros(1, numpy.int64), numpy.int64)
    lr, status = backend.asarray(numpy.full(1, 1e-9), numpy.float64), backend.asarray(numpy.zeros(len(STATUS)), dtype)
    adam, scratch = Optimizer("adam"), {}
    return _beside_a_copy(backend, dtype, "adam_update (fused)", 7 * n,
                          lambda: backend.optimizer_step(adam, param, grad, state, step, lr, status, check=False,
                                                         guarded=False, scratch=scratch))


def _beside_a_copy(backend, dtype, name, numbers, run):
    """[(case, bytes moved)] for ``run()``, which moves ``numbers`` elements of ``dtype``, and for a
    raw device copy of the same bytes (half of them read, half written), under the device."""
    half = numbers // 2
    src, dst = backend.empty((half,), dtype), backend.empty((half,), dtype)  # a copy moves bytes, whatever they hold
    activate = backend.activate

    def fused():
        with activate():
            run()

    def copy():
        with activate():
            backend.device_copy(dst, src)

    itemsize = numpy.dtype(dtype).itemsize
    timer = backend.timer()
    return [(Case(name, fused, timer), numbers * itemsize), (Case("device copy, same bytes", copy, timer), 2 * half * itemsize)]
