"""An emulated CUDA device under the real ``CupyBackend``: a small stand-in for the part of CuPy the
backend uses, NumPy arrays as device memory, the emulator's modules in place of NVRTC's, NumPy GEMMs
in place of cuBLAS (called with cuBLAS's column-major arguments, through raw pointers, every call
logged with its transposes, leading dimensions, compute type and handle), and stream capture that
records the launches (arrays by address, scalars by value, as a CUDA graph does) for replay.

Everything the backend does itself (grids, argument types, scratch buffers, guards, fit's cursor and
totals, Adam's step count, the recorder's keys) then runs for real. What it cannot stand for: cuBLAS's
own kernels and their summation orders, NVRTC, CuPy's memory pool and streams, timings.
"""
from __future__ import annotations

import ctypes
import threading
import time
import types

import numpy

from . import Module

MULTIPROCESSORS, THREADS_PER_MULTIPROCESSOR = 2, 512  # a tiny device: grids of at most 4 blocks of 256


class _Memory:
    def __init__(self, array):
        self._array = array

    @property
    def ptr(self):
        return self._array.ctypes.data

    def copy_from_device_async(self, src, nbytes):
        dst_ptr, src_ptr = self.ptr, src.ptr
        _submit(lambda: ctypes.memmove(dst_ptr, src_ptr, nbytes))


class _DeviceRef:
    id = 0


class ndarray(numpy.ndarray):
    """A device array: NumPy memory, with CuPy's .data.ptr, .device, .set, .get and a queued .fill."""

    @property
    def data(self):
        return _Memory(self)

    @property
    def device(self):
        return _DeviceRef()

    def set(self, array):
        src = numpy.ascontiguousarray(array, dtype=self.dtype).reshape(self.shape).copy()
        _submit(lambda: numpy.copyto(self, src))

    def get(self, out=None):
        _check_not_capturing("a device-to-host copy")
        if out is None:
            return numpy.array(self, copy=True).view(numpy.ndarray)
        numpy.copyto(out, self)
        return out

    def fill(self, value):
        _submit(lambda: numpy.ndarray.fill(self, value))

    def tolist(self):
        _check_not_capturing("a device-to-host copy")
        return numpy.ndarray.tolist(self)

    def __float__(self):
        _check_not_capturing("a device-to-host copy")
        return float(numpy.asarray(self).view(numpy.ndarray))


# ---------------------------------------------------------------------- streams and graphs
_capture = threading.local()  # .graph: the graph being recorded by this thread, if any


def _submit(work):
    graph = getattr(_capture, "graph", None)
    if graph is not None:
        graph.work.append(work)
    else:
        work()


def _check_not_capturing(what):
    if getattr(_capture, "graph", None) is not None:
        raise RuntimeError(f"{what} during stream capture (CUDA: cudaErrorStreamCaptureUnsupported)")


class Graph:
    """A recorded stream: its launches, replayed in order by ``launch``."""

    def __init__(self):
        self.work = []
        self.launches = 0

    def launch(self, stream=None):
        _check_not_capturing("a graph launch")
        self.launches += 1
        for work in self.work:
            work()


class Stream:
    def __init__(self, non_blocking=False):
        self.ptr = id(self)
        self._graph = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass

    def begin_capture(self):
        if getattr(_capture, "graph", None) is not None:
            raise RuntimeError("already capturing")
        self._graph = _capture.graph = Graph()

    def end_capture(self):
        graph, self._graph = self._graph, None
        _capture.graph = None
        return graph


class Event:
    def __init__(self, *args, **kwargs):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def get_elapsed_time(start, end):
    return (end.time - start.time) * 1e3


class Device:
    def __init__(self, device_id=0):
        if device_id != 0:
            raise RuntimeError(f"the emulated machine has one device, not cuda:{device_id}")
        self.id = 0
        self.attributes = {"MultiProcessorCount": MULTIPROCESSORS, "MaxThreadsPerMultiProcessor": THREADS_PER_MULTIPROCESSOR}
        self.compute_capability = "90"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------- cuBLAS, column-major, on raw pointers
CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE = 0, 1
CUDA_R_32F, CUDA_R_64F = 0, 1
CUBLAS_COMPUTE_32F_FAST_TF32 = 77


class GemmLog(list):
    """Every GEMM issued: dicts with routine, handle, transa, transb, m, n, k, lda, ldb, ldc, compute."""


GEMMS = GemmLog()
_handles = {"created": 0, "destroyed": 0}
_pointer_mode = {}


def _column_major(ptr, dtype, rows, cols, ld):
    """The column-major rows x cols matrix at ``ptr`` with leading dimension ld, as a NumPy view."""
    if ld < max(1, rows):
        raise ValueError(f"cuBLAS: leading dimension {ld} < rows {rows} (CUBLAS_STATUS_INVALID_VALUE)")
    itemsize = numpy.dtype(dtype).itemsize
    count = ld * (cols - 1) + rows
    buffer = (ctypes.c_char * (count * itemsize)).from_address(ptr)
    flat = numpy.frombuffer(buffer, dtype=dtype, count=count)
    return numpy.lib.stride_tricks.as_strided(flat, shape=(rows, cols), strides=(itemsize, ld * itemsize))


def _tf32(x):
    """float32 rounded to TF32 (10 mantissa bits, to nearest even), as tensor cores read their inputs."""
    bits = numpy.ascontiguousarray(x, numpy.float32).view(numpy.uint32)
    rounded = (bits + numpy.uint32(0xFFF) + ((bits >> 13) & 1)) & numpy.uint32(0xFFFFE000)
    return rounded.view(numpy.float32)


def _gemm(routine, handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, dtype, compute=None):
    if handle not in _pointer_mode:
        raise RuntimeError(f"cuBLAS handle {handle!r} was never created or is destroyed (CUBLAS_STATUS_NOT_INITIALIZED)")
    if _pointer_mode[handle] != CUBLAS_POINTER_MODE_HOST:
        raise RuntimeError("the emulated cuBLAS takes alpha and beta from the host (CUBLAS_POINTER_MODE_HOST)")
    GEMMS.append(dict(routine=routine, handle=handle, transa=transa, transb=transb, m=m, n=n, k=k, lda=lda, ldb=ldb,
                      ldc=ldc, compute=compute))
    scalar = ctypes.c_float if dtype == numpy.float32 else ctypes.c_double
    a_value, b_value = scalar.from_address(alpha).value, scalar.from_address(beta).value

    def run():
        op_a = _column_major(A, dtype, *((k, m) if transa else (m, k)), lda)
        op_b = _column_major(B, dtype, *((n, k) if transb else (k, n)), ldb)
        op_a, op_b = (op_a.T if transa else op_a), (op_b.T if transb else op_b)
        if compute == CUBLAS_COMPUTE_32F_FAST_TF32:
            op_a, op_b = _tf32(op_a), _tf32(op_b)
        c = _column_major(C, dtype, m, n, ldc)
        with numpy.errstate(all="ignore"):  # a GPU raises no floating-point warnings
            product = numpy.dot(numpy.ascontiguousarray(op_a), numpy.ascontiguousarray(op_b))
        if a_value != 1:
            product = product * dtype(a_value)
        if b_value != 0:
            product = product + dtype(b_value) * c
        c[...] = product
    _submit(run)


def _sgemm(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    _gemm("sgemm", handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, numpy.float32)


def _dgemm(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    _gemm("dgemm", handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, numpy.float64)


def _gemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, compute, algo):
    if not Atype == Btype == Ctype == CUDA_R_32F:
        raise RuntimeError("the emulated cublasGemmEx takes float32 storage only")
    _gemm("gemmEx", handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, numpy.float32, compute)


def _create():
    handle = object()
    _pointer_mode[handle] = CUBLAS_POINTER_MODE_DEVICE  # cuBLAS's default is host; CuPy's handles: see below
    _handles["created"] += 1
    return handle


def _destroy(handle):
    del _pointer_mode[handle]
    _handles["destroyed"] += 1


_cupy_handle = None


def get_cublas_handle():
    """CuPy's handle of the current device (pointer mode as CuPy leaves it: device)."""
    global _cupy_handle
    if _cupy_handle is None:
        _cupy_handle = _create()
    return _cupy_handle


cublas = types.SimpleNamespace(
    CUBLAS_POINTER_MODE_HOST=CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE=CUBLAS_POINTER_MODE_DEVICE,
    sgemm=_sgemm, dgemm=_dgemm, gemmEx=_gemmEx, create=_create, destroy=_destroy,
    getPointerMode=lambda handle: _pointer_mode[handle],
    setPointerMode=lambda handle, mode: _pointer_mode.__setitem__(handle, mode),
    setStream=lambda handle, stream: None)


class CapturableGemm:
    """The emulated stand-in for backends.capturable_gemm.CapturableGemm: its own handle, the same
    column-major arguments, host scalars, cublasGemmEx for TF32; ``close`` destroys the handle."""

    def __init__(self, cupy, stream):
        from gpubackprop.backends.capturable_gemm import column_major_arguments

        self._arguments = column_major_arguments
        self.handle = _create()
        _pointer_mode[self.handle] = CUBLAS_POINTER_MODE_HOST
        self._scalars = {name: (numpy.ones((), name), numpy.zeros((), name)) for name in ("float32", "float64")}

    def __call__(self, a, b, out, trans_a, trans_b, tf32=False):
        transa, transb, m, n, k, A, lda, B, ldb, C, ldc = self._arguments(a, b, out, trans_a, trans_b)
        one, zero = self._scalars[out.dtype.name]
        if tf32:
            _gemmEx(self.handle, transa, transb, m, n, k, one.ctypes.data, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                    zero.ctypes.data, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_TF32, -1)
        else:
            (_sgemm if out.dtype == numpy.float32 else _dgemm)(self.handle, transa, transb, m, n, k, one.ctypes.data,
                                                                A, lda, B, ldb, zero.ctypes.data, C, ldc)

    def close(self):
        if self.handle is not None:
            _destroy(self.handle)
            self.handle = None


# ---------------------------------------------------------------------- the module object
class RawModule:
    """cupy.RawModule: CuPy appends -ftz=true to the options (cupy/cuda/compiler.py), so do we."""

    _cache = {}

    def __init__(self, code, options=()):
        options = (*options, "-ftz=true")
        key = (code, options)
        if key not in self._cache:
            self._cache[key] = Module(code, options)
        self.module = self._cache[key]

    def get_function(self, name):
        kernel = self.module.get_function(name)
        return lambda grid, block, args, **kw: _launch(kernel, grid, block, args, kw)


def _launch(kernel, grid, block, args, kw):
    packed = kernel._marshal(args)  # checked at launch (also during capture), as CuPy converts arguments then
    del packed

    def run():
        kernel(grid, block, args, **kw)
        for index, arg in enumerate(args):
            if isinstance(arg, numpy.ndarray):
                _check_redzone(arg, f"{kernel.name} argument {index}")
    _submit(run)


# Every device allocation ends in a red zone of REDZONE bytes, checked after every launch that took
# the array: a kernel writing past the end fails there. Float arrays' red zones hold signalling NaNs:
# any arithmetic on one gives a quiet NaN (other bytes), so even param[n] = param[n] - step is seen,
# and a read past the end turns a sum into NaN. Others hold 0xFF bytes (-1). Reads are caught exactly
# under ASan (GPUBACKPROP_EMULATOR_ASAN).
REDZONE = 64
_SIGNALLING_NAN = {4: numpy.uint32(0x7FA00001), 8: numpy.uint64(0x7FF4000000000001)}
_redzones = {}  # id(raw allocation) -> (weak reference to it, first red-zone byte, its bytes)


def _root(array):
    while isinstance(array.base, numpy.ndarray):
        array = array.base
    return array


def _check_redzone(array, what):
    root = _root(array)
    entry = _redzones.get(id(root))
    if entry is None or entry[0]() is not root:
        return
    _, start, expected = entry
    tail = root[start:]
    if tail.tobytes() != expected:
        tail[...] = numpy.frombuffer(expected, numpy.uint8)
        raise EmulatorOutOfBounds(f"{what}: the kernel wrote past the end of the array (its red zone changed)")


class EmulatorOutOfBounds(RuntimeError):
    pass


def _empty(shape, dtype=numpy.float64):
    import weakref

    dtype = numpy.dtype(dtype)
    nbytes = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
    raw = numpy.empty(nbytes + REDZONE, numpy.uint8)
    numpy.ndarray.fill(raw, 0xFF)  # garbage until written: NaN / -1 / max
    if dtype.kind == "f" and dtype.itemsize in _SIGNALLING_NAN:
        pattern = _SIGNALLING_NAN[dtype.itemsize]
        raw[nbytes:] = numpy.full(REDZONE // dtype.itemsize, pattern).view(numpy.uint8)
    _redzones[id(raw)] = (weakref.ref(raw, lambda _, key=id(raw): _redzones.pop(key, None)), nbytes,
                          raw[nbytes:].tobytes())
    return raw[:nbytes].view(dtype).reshape(shape).view(ndarray)


def _full(shape, value, dtype=numpy.float64):
    array = _empty(shape, dtype)
    array.fill(value)
    return array


def _asarray(array, dtype=None):
    if isinstance(array, ndarray) and (dtype is None or array.dtype == numpy.dtype(dtype)):
        return array
    host = numpy.asarray(array, dtype=dtype)
    out = _empty(host.shape, host.dtype)
    src = host.copy()
    _submit(lambda: numpy.copyto(out, src))
    return out


def _ascontiguousarray(array):
    if array.flags.c_contiguous:
        return array
    out = _empty(array.shape, array.dtype)
    _submit(lambda: numpy.copyto(out, array))
    return out


def _device_only(name, *arrays):
    for array in arrays:
        if isinstance(array, numpy.ndarray) and not isinstance(array, ndarray):
            raise TypeError(f"cupy.{name}: a host (NumPy) array where CuPy takes device arrays only")


def _copyto(dst, src):
    _device_only("copyto", dst, src)
    _submit(lambda: numpy.copyto(dst, src))


def _take(source, index, axis=None, out=None):
    _device_only("take", source, index, out)
    _submit(lambda: numpy.take(source, index, axis=axis, out=out, mode="clip"))
    return out


def _add(a, b, out=None):
    _device_only("add", a, b, out)
    _submit(lambda: numpy.add(a, b, out=out))
    return out


def _asnumpy(array):
    _check_not_capturing("a device-to-host copy")
    return numpy.array(array, copy=True).view(numpy.ndarray)


def _make_cupy():
    """A module object with the part of CuPy that CupyBackend uses."""
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000,
        getDeviceProperties=lambda i: {"name": b"CUDA emulator (CPU)"})
    cuda = types.SimpleNamespace(
        Device=Device, Stream=Stream, Event=Event, get_elapsed_time=get_elapsed_time, runtime=runtime,
        get_current_stream=lambda: Stream(), graph=types.SimpleNamespace(Graph=Graph),
        device=types.SimpleNamespace(get_cublas_handle=get_cublas_handle))
    return types.SimpleNamespace(
        __name__="cupy (emulated)", __version__="emulated", ndarray=ndarray, cuda=cuda, float32=numpy.float32,
        float64=numpy.float64, int64=numpy.int64, empty=_empty, full=_full, asarray=_asarray,
        ascontiguousarray=_ascontiguousarray, copyto=_copyto, take=_take, add=_add, asnumpy=_asnumpy,
        RawModule=RawModule, cublas_lib=cublas)


_FAKE = []


def make_cupy():
    """The emulated CuPy module object (one per process: arrays and kernels of one device)."""
    if not _FAKE:
        _FAKE.append(_make_cupy())
    return _FAKE[0]


def emulated_backend():
    """A real CupyBackend on the emulated device."""
    import sys
    from unittest import mock

    from gpubackprop.backends import cupy_backend

    fake = make_cupy()
    with mock.patch.dict(sys.modules, {"cupy": fake}):
        backend = cupy_backend.CupyBackend(0)
    backend._cublas = cublas
    backend._get_cublas_handle = get_cublas_handle
    backend._capturable_gemm = CapturableGemm
    return backend


def handle_counts():
    return dict(_handles)
