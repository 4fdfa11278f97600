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

import numpy

from .. import activations
from . import conversion
from .base import Backend, Eager
from .numpy_epochs import NumpyEpochOps
from .numpy_layers import NumpyLayerOps
from .timers import WallTimer


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

    def synchronize(self):
        pass

    # ------------------------------------------------------------------ recording
    def recorder(self):
        return Eager()
