"""A CuPy device that only counts: the real ``CupyBackend`` code on NumPy arrays, each of its launch
points (``RawKernel`` launches, cuBLAS GEMM calls, ``fill(0)`` memsets, CuPy's elementwise calls,
device copies, host transfers) reported to a ``LaunchLog`` instead of run. No arithmetic happens:
kernels and GEMMs only count, and the arrays start at zero, so every check of a step passes.

For ``gpubackprop.benchmark.launches`` (GPU launches per step, counted without a GPU); not
registered with ``get_backend``: construct ``CountingCupyBackend()`` and pass it to ``MLP(backend=)``.
The emulated device of issue 16 may replace it.
"""
from __future__ import annotations

import collections
import contextlib
import re
import threading

import numpy

from .cupy_backend import CupyBackend, kernel_source
from .timers import WallTimer

GRAPH_KINDS = ("kernel", "cublas", "memset", "elementwise", "memcpy")  # what a CUDA graph records as nodes
HOST_KINDS = ("upload", "download")  # host transfers: outside any graph, each a synchronisation point or a copy


class LaunchLog:
    """Events (kind, name) as the shim's launch points report them, each tagged with the recorded
    unit it happened in (None outside ``unit``)."""

    def __init__(self):
        self.events = []  # (unit index or None, kind, name)
        self.units = []  # the scalars of each recorded unit, in order
        self._unit = None

    def add(self, kind, name):
        self.events.append((self._unit, kind, name))

    @contextlib.contextmanager
    def unit(self, scalars):
        """Events inside are one recorded unit (one CUDA graph's nodes)."""
        self.units.append(scalars)
        self._unit, previous = len(self.units) - 1, self._unit
        try:
            yield
        finally:
            self._unit = previous

    def clear(self):
        self.events.clear()
        self.units.clear()

    def counts(self, inside=True):
        """Counter of kinds, of the events inside recorded units (``inside``) or outside them."""
        return collections.Counter(kind for unit, kind, _ in self.events if (unit is not None) == inside)

    def names(self, inside=True):
        """Counter of (kind, name) inside (or outside) recorded units."""
        return collections.Counter((kind, name) for unit, kind, name in self.events if (unit is not None) == inside)


# ---------------------------------------------------------------------- the shim's arrays and module
class _Memory:
    """What CuPy's ``ndarray.data`` offers the backend: the address and a device-to-device copy."""

    def __init__(self, array):
        self._array = array
        self.ptr = array.__array_interface__["data"][0]

    def copy_from_device_async(self, src, nbytes):
        self._array._log.add("memcpy", "device_copy")
        dst = self._array.reshape(-1).view(numpy.uint8)
        dst[:nbytes] = src._array.reshape(-1).view(numpy.uint8)[:nbytes]


class _Device:
    id = 0


class _DeviceArray(numpy.ndarray):
    """A NumPy array standing for a CuPy array: the methods CuPy's ndarray has and NumPy's has not
    (``set``, ``get``, ``data.ptr``, ``device.id``), and ``fill``/``tolist`` counted as CuPy runs them."""

    _log: LaunchLog  # set on the subclass each shim makes

    @property
    def data(self):
        return _Memory(self)

    @property
    def device(self):
        return _Device()

    def fill(self, value):
        contiguous = self.flags.c_contiguous
        self._log.add("memset" if value == 0 and contiguous else "elementwise", "fill")
        super().fill(value)

    def set(self, host):
        self._log.add("upload", "set")
        numpy.copyto(self, host)

    def get(self, out=None):
        self._log.add("download", "get")
        if out is None:
            return numpy.array(self)
        numpy.copyto(out, self)
        return out

    def tolist(self):
        self._log.add("download", "tolist")
        return numpy.asarray(self).tolist()


class _Stream:
    def synchronize(self):
        pass


class _Cuda:
    @staticmethod
    def get_current_stream():
        return _Stream()


class _CountingCupy:
    """The part of the ``cupy`` module the backend calls, on NumPy, each launch counted."""

    cuda = _Cuda()

    def __init__(self, log):
        self._log = log
        self.ndarray = type("DeviceArray", (_DeviceArray,), {"_log": log})
        self.__version__ = "counting shim"

    def _device(self, array):
        return array.view(self.ndarray)

    def empty(self, shape, dtype):
        return self._device(numpy.zeros(shape, dtype=dtype))  # zeros: the shim's checks always pass

    def asarray(self, array, dtype=None):
        if isinstance(array, self.ndarray):
            if dtype is None or array.dtype == dtype:
                return array
            self._log.add("elementwise", "astype")
            return self._device(numpy.array(array, dtype=dtype))
        self._log.add("upload", "asarray")
        return self._device(numpy.array(array, dtype=dtype))

    def ascontiguousarray(self, array):
        if array.flags.c_contiguous:
            return array
        self._log.add("elementwise", "ascontiguousarray")
        return self._device(numpy.ascontiguousarray(array))

    def full(self, shape, value, dtype):
        self._log.add("elementwise", "full")
        return self._device(numpy.full(shape, value, dtype=dtype))

    def copyto(self, dst, src):
        self._log.add("elementwise", "copyto")
        numpy.copyto(dst, src)

    def add(self, a, b, out):
        self._log.add("elementwise", "add")
        numpy.add(a, b, out=out)
        return out

    def take(self, source, index, axis, out):
        self._log.add("elementwise", "take")
        numpy.take(source, index, axis=axis, out=out, mode="clip")
        return out

    def asnumpy(self, array):
        self._log.add("download", "asnumpy")
        return numpy.array(array)


class _CountingKernel:
    def __init__(self, log, name):
        self._log, self.name = log, name

    def __call__(self, grid, block, args):
        self._log.add("kernel", self.name)


class _CountingRecorder:
    """The CUDA graph recorder's interface: each ``run`` is one recorded unit of the log (what a
    graph would capture once and replay)."""

    records = True
    error = None

    def __init__(self, log):
        self._log = log

    def run(self, step, recordings, arrays, scalars):
        with self._log.unit(scalars):
            step()


def kernel_names(dtype="float32") -> frozenset:
    """Every ``__global__`` function of ``kernels/*.cu``, macro-made ones included."""
    source = kernel_source(dtype)
    names = set(re.findall(r'__global__\s+void\s+(\w+)\s*\(', source)) - {"name"}
    for macro in re.findall(r'#define\s+(\w+)\(name\b[^\n]*\n(?:[^\n]*\\\n)*?[^\n]*__global__\s+void\s+name', source):
        names.update(re.findall(rf'^{macro}\((\w+)', source, flags=re.M))
    return frozenset(names)


class CountingCupyBackend(CupyBackend):
    """The CuPy backend's code on a device that only counts (see the module's docstring).

    ``multiprocessors``, ``threads_per_multiprocessor``: the device the grids are sized for (an
    H200 by default: 132 SMs of 2048 threads); grid sizes change no count."""

    name = "cupy"

    def __init__(self, log=None, multiprocessors=132, threads_per_multiprocessor=2048):  # noqa: super() needs a GPU
        self.log = log if log is not None else LaunchLog()
        self.xp = _CountingCupy(self.log)
        self.device_id, self.device, self.spec = 0, "cuda:0", "cupy:0 (counting shim)"
        self._device = contextlib.nullcontext()
        self._max_blocks = multiprocessors * (threads_per_multiprocessor // 256)
        self._lock = threading.Lock()
        self._modules, self._kernels, self._constants = {}, {}, {}
        self._capturing = threading.local()
        self.tf32 = True
        self._tf32_scalars = (numpy.ones((), numpy.float32), numpy.zeros((), numpy.float32))
        self._known = kernel_names()

    @classmethod
    def probe(cls, short=False):
        return None

    @classmethod
    def device_count(cls):
        return 1

    def device_name(self):
        return "no device: launches counted"

    def versions(self):
        return {"numpy": numpy.__version__, "cupy": "counting shim"}

    def timer(self):
        return WallTimer()

    def kernel(self, name, dtype):
        if name not in self._known:
            raise ValueError(f"kernel {name!r} is in none of kernels/*.cu (known: {', '.join(sorted(self._known))})")
        return _CountingKernel(self.log, name)

    def matmul(self, a, b, out, trans_a=False, trans_b=False, tf32=False):
        self.log.add("cublas", "gemmEx (tf32)" if tf32 else "gemm")
        return out

    def recorder(self):
        return _CountingRecorder(self.log)
