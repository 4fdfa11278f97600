"""The CUDA backend: CuPy arrays, cuBLAS GEMMs and the fused kernels of ``kernels/``.

Only the operations that a kernel or cuBLAS makes faster are overridden; everything else is
``Backend``'s NumPy-semantics code running on CuPy. Kernels are compiled on first use, once per
dtype (CuPy caches the binaries on disk), never at import.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy

from .base import ACTIVATIONS, Backend

_THREADS = 256
_SEEN = object()  # a step key met once: recorded at the next meeting
_KERNEL_FILES = ("activations.cu", "loss.cu", "sgd.cu")
# --fmad=false: each multiply and add rounds on its own, as NumPy's ufuncs do, so the kernels
# reproduce the NumPy backend's arithmetic instead of drifting by fused-multiply-add roundings.
_NVRTC_OPTIONS = ("--std=c++14", "--fmad=false")


def kernel_dir() -> Path:
    """Where the .cu sources are: inside the installed package, else the source tree's kernels/."""
    override = os.environ.get("GPUBACKPROP_KERNEL_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent.parent  # gpubackprop/
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / _KERNEL_FILES[0]).is_file():
            return candidate
    raise FileNotFoundError(
        f"gpubackprop's CUDA sources ({', '.join(_KERNEL_FILES)}) are neither in {here / 'kernels'} "
        f"nor in {here.parent / 'kernels'}; reinstall the package or set GPUBACKPROP_KERNEL_DIR"
    )


def kernel_source(dtype) -> str:
    """All kernel sources as one translation unit, with GB_REAL set to the C type of dtype."""
    ctype = {"float32": "float", "float64": "double"}[numpy.dtype(dtype).name]
    parts = [f"#define GB_REAL {ctype}\n"]
    for name in _KERNEL_FILES:
        parts.append(f'#line 1 "{name}"\n' + (kernel_dir() / name).read_text())
    return "\n".join(parts)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, device_id: int = 0):
        super().__init__()
        import cupy  # imported here: importing gpubackprop never imports CuPy

        self.xp = cupy
        self._device = cupy.cuda.Device(device_id)
        attrs = self._device.attributes
        # Enough resident blocks to fill every multiprocessor; grids stride past that.
        self._max_blocks = attrs["MultiProcessorCount"] * (attrs["MaxThreadsPerMultiProcessor"] // _THREADS)
        self._modules = {}  # dtype name -> cupy.RawModule
        self._kernels = {}  # (dtype name, kernel name) -> cupy.RawKernel
        self._constants = {}  # (value, shape, dtype) -> a filled device array, see _constant
        self._capture_stream = None
        self._capture_gemm = None  # _CapturableGemm, made with the capture stream
        self.capture_error = None  # why the last CUDA graph capture failed, if one did

    # ------------------------------------------------------------------ arrays
    def device_name(self) -> str:
        props = self.xp.cuda.runtime.getDeviceProperties(self._device.id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def to_numpy(self, array):
        return self.xp.asnumpy(array)

    def asarray(self, array, dtype):
        return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=dtype))

    def copyto(self, dst, src):
        if isinstance(src, numpy.ndarray):  # host to device: one transfer, no device temporary
            src = numpy.ascontiguousarray(src, dtype=dst.dtype)
            dst.set(src)
        else:
            self.xp.copyto(dst, src)

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    # ------------------------------------------------------------------ kernels
    def kernel(self, name: str, dtype):
        """The compiled kernel ``name`` for ``dtype``, compiled on first use and cached."""
        dtype_name = numpy.dtype(dtype).name
        key = (dtype_name, name)
        fn = self._kernels.get(key)
        if fn is None:
            module = self._modules.get(dtype_name)
            if module is None:
                module = self._modules[dtype_name] = self.xp.RawModule(
                    code=kernel_source(dtype_name), options=_NVRTC_OPTIONS
                )
            fn = self._kernels[key] = module.get_function(name)
        return fn

    def _grid(self, n: int):
        return (max(1, min((n + _THREADS - 1) // _THREADS, self._max_blocks)),)

    # ------------------------------------------------------------------ GEMM
    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        if self._capture_gemm is not None and self._capture_gemm.active:
            self._capture_gemm(a, b, out, trans_a, trans_b)
            return out
        from cupy import cublas

        # cuBLAS reads the transposes from the flags: no transposed copies are made.
        cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", a, b, out=out)
        return out

    # ------------------------------------------------------------------ layer math
    def bias_activation(self, z, bias, activation):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        n = z.size
        self.kernel(f"bias_{activation}_forward", z.dtype)(
            self._grid(n), (_THREADS,), (z, bias, numpy.int64(n), numpy.int64(z.shape[-1]))
        )
        return z

    def activation_backward(self, grad, a, activation, out):
        if activation == "identity":
            if out is not grad:
                self.xp.copyto(out, grad)
            return out
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        n = a.size
        self.kernel(f"{activation}_backward", a.dtype)(
            self._grid(n), (_THREADS,), (grad, a, out, numpy.int64(n))
        )
        return out

    def mse_loss_grad(self, yhat, y, grad, loss):
        n = yhat.size
        inv_batch = yhat.dtype.type(1.0 / yhat.shape[0])
        # One block of exactly LOSS_THREADS (= _THREADS, loss.cu) threads: a deterministic sum.
        self.kernel("mse_loss_grad", yhat.dtype)((1,), (_THREADS,), (yhat, y, grad, loss, numpy.int64(n), inv_batch))
        return loss

    def sum_rows(self, x, out):
        # Σ_batch as a cuBLAS product 1ᵀ x: no reduction temporaries, so a graph can record it.
        ones = self._constant(1, (1, x.shape[0]), x.dtype)
        self.matmul(ones, x, out=out.reshape(1, -1))
        return out

    def finite_check(self, x, out):
        out.fill(0)
        n = x.size
        self.kernel("flag_nonfinite", x.dtype)(self._grid(n), (_THREADS,), (x, numpy.int64(n), out))
        return out

    def sgd_update(self, param, grad, lr, guard=None):
        if guard is None:
            guard = self._constant(0, (2,), param.dtype)  # a guard that always lets the update through
        n = param.size
        self.kernel("sgd_update", param.dtype)(
            self._grid(n), (_THREADS,), (param, grad, param.dtype.type(lr), numpy.int64(n), guard)
        )
        return param

    def _constant(self, value, shape, dtype):
        """A device array filled with ``value``, made once (outside any graph capture) and kept."""
        key = (value, shape, numpy.dtype(dtype).name)
        array = self._constants.get(key)
        if array is None:
            array = self._constants[key] = self.xp.full(shape, value, dtype=dtype)
        return array

    # ------------------------------------------------------------------ CUDA graphs
    def run_recorded(self, step, recordings, arrays, scalars):
        """Record ``step`` into a CUDA graph at its second call with the same arrays (by address)
        and scalars; replay the graph from then on.

        A step is a dozen or more launches whose Python and launch overhead dominates at small
        sizes; a graph replays them all in one launch. The first call runs eagerly, so kernels
        are compiled and cuBLAS is initialised outside the capture. If a capture fails, every
        step runs eagerly from then on (the reason is kept in ``capture_error``): a graph is only
        ever a speed-up.
        """
        if self.capture_error is not None:
            step()
            return
        key = (*scalars, *(a.data.ptr for a in arrays))
        graph = recordings.get(key)
        if graph is None:
            if len(recordings) >= 16:  # inputs at ever new addresses: stop keeping their graphs
                recordings.clear()
            recordings[key] = _SEEN
            step()
            return
        if graph is _SEEN:
            graph = self._capture(step)
            if graph is None:
                step()
                return
            recordings[key] = graph
        graph.launch(stream=self.xp.cuda.get_current_stream())

    def _capture(self, step):
        try:
            if self._capture_stream is None:
                self._capture_stream = self.xp.cuda.Stream(non_blocking=True)
                self._capture_gemm = _CapturableGemm(self.xp, self._capture_stream)
            capture_stream, gemm = self._capture_stream, self._capture_gemm
            with capture_stream:
                capture_stream.begin_capture()
                gemm.active = True
                try:
                    step()
                finally:
                    gemm.active = False
                    graph = capture_stream.end_capture()
            return graph
        except Exception as exc:  # kept for the tests and the benchmark's report
            self.capture_error = f"{type(exc).__name__}: {exc}"
            return None


class _CapturableGemm:
    """cuBLAS GEMMs that a CUDA graph can record, called through ctypes on a handle of our own.

    CuPy's cuBLAS wrappers refuse to run while a stream is being captured (they re-bind the
    handle's stream on every call and reject a capturing one), although cuBLAS itself supports
    capture when the handle has a fixed workspace. This handle is bound once, outside any
    capture, to the capture stream and to a workspace allocated here, and is used only while
    ``active`` (during a capture); every other GEMM goes through ``cupy.cublas.gemm``.
    """

    WORKSPACE_BYTES = 32 << 20  # cuBLAS's own recommendation for Hopper is 32 MiB

    def __init__(self, cupy, stream):
        import ctypes

        from cuda import pathfinder

        self.active = False
        self._ctypes = ctypes
        loaded = pathfinder.load_nvidia_dynamic_lib("cublas")  # the library CuPy itself loaded
        # abs_path is None when the library came from elsewhere (e.g. the system): reuse its handle.
        lib = ctypes.CDLL(loaded.abs_path) if loaded.abs_path else ctypes.CDLL(None, handle=loaded._handle_uint)
        vp, i = ctypes.c_void_p, ctypes.c_int
        for name, scalar in (("cublasSgemm_v2", ctypes.c_float), ("cublasDgemm_v2", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.argtypes = [vp, i, i, i, i, i, ctypes.POINTER(scalar), vp, i, vp, i, ctypes.POINTER(scalar), vp, i]
            fn.restype = i
        self._gemm = {"float32": (lib.cublasSgemm_v2, ctypes.c_float), "float64": (lib.cublasDgemm_v2, ctypes.c_double)}
        handle = vp()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self._handle = handle
        self._check(lib.cublasSetStream_v2(handle, vp(stream.ptr)), "cublasSetStream")
        self._workspace = cupy.empty(self.WORKSPACE_BYTES, dtype=cupy.uint8)
        self._check(lib.cublasSetWorkspace_v2(handle, vp(self._workspace.data.ptr), ctypes.c_size_t(self.WORKSPACE_BYTES)),
                    "cublasSetWorkspace")

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def __call__(self, a, b, out, trans_a, trans_b):
        """out = op(a) @ op(b) for C-contiguous arrays: cuBLAS is column-major, so it computes
        outᵀ = op(b)ᵀ op(a)ᵀ, reading each row-major matrix as its column-major transpose."""
        fn, scalar = self._gemm[out.dtype.name]
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        n = b.shape[0] if trans_b else b.shape[1]
        if out.shape != (m, n) or not (a.flags.c_contiguous and b.flags.c_contiguous and out.flags.c_contiguous):
            raise ValueError(f"capturable GEMM needs C-contiguous operands: {a.shape} x {b.shape} -> {out.shape}")
        one, zero = scalar(1.0), scalar(0.0)
        vp, byref = self._ctypes.c_void_p, self._ctypes.byref
        self._check(fn(self._handle, int(trans_b), int(trans_a), n, m, k, byref(one),
                       vp(b.data.ptr), b.shape[1], vp(a.data.ptr), a.shape[1], byref(zero),
                       vp(out.data.ptr), n), "cublasGemm")
