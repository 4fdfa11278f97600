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
- output positional (``out`` by keyword costs a dict parse per call);
- ``train_step`` and ``fit``'s steps planned once per workspace (``numpy_plan``): the calls above
  bound to their buffers in a list and replayed, with plain SGD's update check proved by a bound
  (no candidate array) where it can be; the error state set through ``QuietErrors``.

The caches here (0-d constants, ones vectors) hold values that never change after they are made:
networks sharing this backend share no mutable state.
"""
from __future__ import annotations

import numpy

from .. import activations
from . import conversion
from .base import Backend, Eager
from .numpy_epochs import NumpyEpochOps
from .numpy_layers import NumpyLayerOps
from .numpy_plan import StepPlan
from .timers import WallTimer


try:  # NumPy >= 2: the error state is a context variable holding an "extobj" (private names)
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
except ImportError:  # another NumPy: numpy.errstate itself
    _extobj_contextvar = None


class QuietErrors:
    """``numpy.errstate(all="ignore")`` for ``train_step`` and ``fit`` (their checks report NaN/Inf,
    not NumPy), at a fifth of its cost (~0.5 µs instead of ~2.4 µs per step: a step of a tiny network
    is ~15 µs): the ignoring error state is made once per error state it replaces (kept for the last
    one seen; the buffer size and the error callback come from it, as numpy.errstate's) and set
    and reset through NumPy's context variable. One object per entry, as numpy.errstate."""

    __slots__ = ("token", "fallback")
    _last = (None, None)  # (the error state replaced, its all="ignore" version): one tuple, swapped whole

    def __enter__(self):
        if _extobj_contextvar is None:
            self.fallback = numpy.errstate(all="ignore")
            return self.fallback.__enter__()
        self.fallback = None
        current = _extobj_contextvar.get()
        replaced, quiet = QuietErrors._last
        if replaced is not current:
            quiet = _make_extobj(all="ignore")
            QuietErrors._last = (current, quiet)
        self.token = _extobj_contextvar.set(quiet)

    def __exit__(self, *exc_info):
        if self.fallback is not None:
            return self.fallback.__exit__(*exc_info)
        _extobj_contextvar.reset(self.token)


class NumpyBackend(NumpyLayerOps, NumpyEpochOps, Backend):
    """The CPU: device and arrays here; layer operations in ``numpy_layers``, epoch operations
    (fit's gather and totals, the optimizer's update) in ``numpy_epochs``."""

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
        return QuietErrors() if quiet else numpy.errstate(under="ignore")

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

    def synchronize(self):
        pass

    # ------------------------------------------------------------------ recording
    def recorder(self):
        return Eager()

    plans = True

    def plan_step(self, steps, ws, check_finite):
        return StepPlan(self, steps, ws, check_finite)
