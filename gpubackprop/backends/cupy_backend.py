"""The CUDA backend: one GPU through CuPy, cuBLAS GEMMs and the fused kernels of ``kernels/``.

Every operation is the NumPy backend's, in the same order, as one kernel or one cuBLAS call.
Kernels are compiled on first use, once per dtype (CuPy caches the binaries on disk), never at
import. A ``CupyBackend`` is one device: its methods assume that device is current, which the
network ensures by running every call under ``activate()``.
"""
from __future__ import annotations

import threading

import numpy

from ..extras import cuda_hint
from . import conversion
from .base import Backend
from .cuda_graphs import GraphRecorder
from .cuda_layers import _THREADS, CudaLayerOps
from .cuda_kernels import _NVRTC_OPTIONS, kernel_dir, kernel_files, kernel_source  # noqa: F401 (public here too)
from .capturable_gemm import CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT, CUDA_R_32F, CapturableGemm, \
    column_major_arguments
from .timers import EventTimer

_INSTALL_HINT = cuda_hint()  # gpubackprop is not on PyPI: the CuPy wheels themselves
_probe_memo: list = []  # [(short, full)] of the one probe: (None, None) when CuPy and a device are usable


def _probe():
    """(short, full) reasons why CuPy cannot run here, or (None, None)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, but also broken installs raising anything else
        what = "CuPy not installed" if isinstance(exc, ImportError) else "CuPy not importable"
        return what, f"{what} ({type(exc).__name__}: {exc}); to fix: {_INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        try:
            driver = cupy.cuda.runtime.driverGetVersion()
            runtime = cupy.cuda.runtime.runtimeGetVersion()
        except Exception:
            driver = runtime = None
        if driver == 0:
            what = "no CUDA driver found"
        elif driver is not None and runtime is not None and driver < runtime:
            what = f"CUDA driver too old (it supports CUDA {driver}, CuPy needs {runtime})"
        else:
            what = "no usable CUDA device"
        return what, (
            f"CuPy {cupy.__version__} is installed but {what} ({type(exc).__name__}: {exc}); "
            f"to fix: run on a machine with an NVIDIA GPU and its driver, or install the CuPy "
            f"wheel that matches the driver: {_INSTALL_HINT}"
        )
    if count < 1:
        what = "no CUDA device"
        return what, f"CuPy {cupy.__version__} is installed but sees {what}; to fix: run on a machine with an NVIDIA GPU"
    return None, None


class CupyBackend(CudaLayerOps, Backend):
    name = "cupy"

    def __init__(self, device_id: int = 0):
        import cupy  # imported here: importing gpubackprop never imports CuPy

        self.xp = cupy
        self.device_id = device_id
        self.device = f"cuda:{device_id}"
        self.spec = f"cupy:{device_id}"
        self._device = cupy.cuda.Device(device_id)
        attrs = self._device.attributes
        # Enough resident blocks to fill every multiprocessor; grids stride past that.
        self._max_blocks = attrs["MultiProcessorCount"] * (attrs["MaxThreadsPerMultiProcessor"] // _THREADS)
        # Caches of values that never change once made (compiled kernels, constant arrays):
        # shared by the networks on this device, filled under a lock.
        self._lock = threading.Lock()
        self._modules = {}  # dtype name -> cupy.RawModule
        self._kernels = {}  # (dtype name, kernel name) -> cupy.RawKernel
        self._constants = {}  # (value, shape, dtype) -> a filled device array, see _constant
        # The capturable GEMM of the recorder capturing in this thread, if one is (see GraphRecorder).
        self._capturing = threading.local()
        # TF32 tensor cores from compute capability 8.0 (Ampere) on; before, cuBLAS computes in FP32.
        self.tf32 = int(self._device.compute_capability) >= 80
        # Host alpha = 1, beta = 0 of every GEMM, per dtype.
        self._gemm_scalars = {name: (numpy.ones((), name), numpy.zeros((), name)) for name in ("float32", "float64")}
        self._cublas = self._get_cublas_handle = None  # CuPy's cuBLAS bindings, imported at the first GEMM
        self._capturable_gemm = CapturableGemm  # what a recorder captures GEMMs with

    # ------------------------------------------------------------------ the device
    @classmethod
    def probe(cls, short: bool = False):
        if not _probe_memo:
            _probe_memo.append(_probe())
        return _probe_memo[0][0 if short else 1]

    @classmethod
    def device_count(cls) -> int:
        if cls.probe():
            return 0
        import cupy

        return cupy.cuda.runtime.getDeviceCount()

    def device_name(self) -> str:
        props = self.xp.cuda.runtime.getDeviceProperties(self.device_id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def activate(self, quiet=False):
        # cupy.cuda.Device: makes itself current, restores the previous one on exit. A device
        # raises no floating-point signals, so ``quiet`` changes nothing here.
        return self._device

    def versions(self) -> dict:
        return {"numpy": numpy.__version__, "cupy": self.xp.__version__,
                "cuda_runtime": self.xp.cuda.runtime.runtimeGetVersion()}

    def timer(self):
        with self._device:
            return EventTimer(self.xp.cuda.Event(), self.xp.cuda.Event(), self.xp.cuda.get_elapsed_time)

    # ------------------------------------------------------------------ arrays
    def empty(self, shape, dtype):
        with self._device:
            return self.xp.empty(shape, dtype=dtype)

    def asarray(self, array, dtype):
        with self._device:
            return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=dtype))

    def as_array(self, array, name: str):
        cupy = self.xp
        if isinstance(array, cupy.ndarray):
            if array.device.id != self.device_id:
                raise TypeError(
                    f"{name} lives on cuda:{array.device.id} but this network computes on {self.device}; move it "
                    f"there first ({conversion.device_hint('cupy', name, self.device)})")
            return array
        if isinstance(array, numpy.ndarray):
            return array  # uploaded by the network: the documented way in
        device = conversion.dlpack_device(array)
        if device is not None:
            kind, index = device
            where, library = conversion.describe_device(kind, index), conversion.library_of(array)
            if kind != conversion.CUDA:
                raise TypeError(
                    f"{name} lives on {where} ({type(array).__name__} from {library}) but this network runs "
                    f"on the cupy backend (GPU); move it to the GPU first "
                    f"({conversion.device_hint(library, name, 'cuda')}), or pass a NumPy array, which the "
                    f"network uploads itself")
            if index != self.device_id:
                raise TypeError(
                    f"{name} lives on {where} but this network computes on {self.device}; move it there "
                    f"first ({conversion.device_hint(library, name, self.device)})")
            with self._device:
                return conversion.from_dlpack(cupy.from_dlpack, array, name, where)
        return conversion.host_array(array, name)

    def is_native(self, array) -> bool:
        return isinstance(array, self.xp.ndarray)

    def copyto(self, dst, src):
        if isinstance(src, numpy.ndarray):  # host to device: one transfer, no device temporary
            dst.set(numpy.ascontiguousarray(src, dtype=dst.dtype))
        else:
            self.xp.copyto(dst, src)

    def device_copy(self, dst, src):
        dst.data.copy_from_device_async(src.data, src.nbytes)

    def to_numpy(self, array):
        with self._device:
            return self.xp.asnumpy(array)

    def to_host(self, array, out):
        array.get(out=out)
        return out

    def gather_rows(self, source, index, out):
        self.xp.take(source, index, axis=0, out=out)
        return out

    def gather_rows_at(self, source, order, cursor, out):
        rows, cols = out.shape
        self.kernel("gather_rows_at", out.dtype)(
            self._grid(out.size), (_THREADS,), (source, order, cursor, out, numpy.int64(rows), numpy.int64(cols)))
        return out

    def gather_batch_at(self, x_source, y_source, order, cursor, x_out, y_out, scratch):
        rows = x_out.shape[0]
        self.kernel("gather_batch_at", x_out.dtype)(
            self._grid(x_out.size + y_out.size), (_THREADS,),
            (x_source, y_source, order, cursor, x_out, y_out, numpy.int64(rows), numpy.int64(x_out.shape[1]),
             numpy.int64(y_out.shape[1]), self._blocks_done(scratch)))
        return x_out, y_out

    def advance_cursor(self, cursor, rows):
        self.xp.add(cursor, numpy.int64(rows), out=cursor)  # one elementwise launch, no allocation

    def accumulate_step(self, status, totals, rows):
        self.kernel("accumulate_step", status.dtype)((1,), (1,), (status, totals, numpy.float64(rows)))

    def synchronize(self):
        with self._device:
            self.xp.cuda.get_current_stream().synchronize()

    # ------------------------------------------------------------------ kernels
    def kernel(self, name: str, dtype):
        """The compiled kernel ``name`` for ``dtype``, compiled on first use and cached."""
        key = (numpy.dtype(dtype).name, name)
        fn = self._kernels.get(key)
        if fn is None:
            with self._lock:  # one compilation per dtype, however many threads ask at once
                module = self._modules.get(key[0])
                if module is None:
                    module = self._modules[key[0]] = self.xp.RawModule(
                        code=kernel_source(key[0]), options=_NVRTC_OPTIONS)
                fn = self._kernels[key] = module.get_function(name)
        return fn

    def _grid(self, n: int):
        return (max(1, min((n + _THREADS - 1) // _THREADS, self._max_blocks)),)

    def _constant(self, value, shape, dtype):
        """A device array filled with ``value``, made once (outside any graph capture) and never written."""
        key = (value, shape, numpy.dtype(dtype).name)
        array = self._constants.get(key)
        if array is None:
            with self._lock:
                array = self._constants.get(key)
                if array is None:
                    array = self._constants[key] = self.xp.full(shape, value, dtype=dtype)
        return array

    # ------------------------------------------------------------------ GEMM
    def matmul(self, a, b, out, trans_a=False, trans_b=False, tf32=False):
        capture_gemm = getattr(self._capturing, "gemm", None)
        if capture_gemm is not None:
            capture_gemm(a, b, out, trans_a, trans_b, tf32)
            return out
        return self._gemm(a, b, out, trans_a, trans_b, tf32)

    def _cublas_api(self):
        """(CuPy's cuBLAS bindings, CuPy's handle for this device and the current stream)."""
        if self._cublas is None:
            from cupy.cuda import device
            from cupy_backends.cuda.libs import cublas

            self._cublas, self._get_cublas_handle = cublas, device.get_cublas_handle
        return self._cublas, self._get_cublas_handle()

    def _gemm(self, a, b, out, trans_a, trans_b, tf32):
        """One cuBLAS GEMM on CuPy's handle with exactly the column-major arguments that a recorded
        step's GEMM gets (capturable_gemm.column_major_arguments), so that an eager and a recorded
        step issue the same call. (``cupy.cublas.gemm`` maps a (1, n) row, C- and F-contiguous at
        once, to the other form.) TF32: cublasGemmEx with compute type CUBLAS_COMPUTE_32F_FAST_TF32,
        an argument of the call: no setting of the shared handle changes. The scalars 1 and 0 are
        read from host memory (pointer mode host, restored after)."""
        cublas, handle = self._cublas_api()
        transa, transb, m, n, k, A, lda, B, ldb, C, ldc = column_major_arguments(a, b, out, trans_a, trans_b)
        one, zero = self._gemm_scalars[out.dtype.name]
        mode = cublas.getPointerMode(handle)
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        try:
            if tf32 and out.dtype == numpy.float32:
                cublas.gemmEx(handle, transa, transb, m, n, k, one.ctypes.data, A, CUDA_R_32F, lda, B, CUDA_R_32F,
                              ldb, zero.ctypes.data, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_TF32,
                              CUBLAS_GEMM_DEFAULT)
            else:
                gemm = cublas.sgemm if out.dtype == numpy.float32 else cublas.dgemm
                gemm(handle, transa, transb, m, n, k, one.ctypes.data, A, lda, B, ldb, zero.ctypes.data, C, ldc)
        finally:
            cublas.setPointerMode(handle, mode)
        return out

    def gemm_sequence(self, gemms, tf32=False):
        def run():
            for a, b, out, trans_a, trans_b in gemms:
                self.matmul(a, b, out, trans_a, trans_b, tf32)
        return run

    # ------------------------------------------------------------------ CUDA graphs
    def recorder(self):
        return GraphRecorder(self)
