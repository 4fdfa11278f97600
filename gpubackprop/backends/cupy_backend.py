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
        self._constants = {}  # ones and zeros vectors, made once
        self._capture_stream = None
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
        self.kernel("mse_loss_grad", yhat.dtype)((1,), (_THREADS,), (yhat, y, grad, loss, numpy.int64(n), inv_batch))
        return loss

    def sum_rows(self, x, out):
        # Σ_batch as a cuBLAS gemv (1ᵀ x): no reduction temporaries, so it can be recorded in a graph.
        ones = self._ones_row(x.shape[0], x.dtype)
        self.matmul(ones, x, out=out.reshape(1, -1))
        return out

    def finite_check(self, x, out):
        out.fill(0)
        n = x.size
        self.kernel("flag_nonfinite", x.dtype)(self._grid(n), (_THREADS,), (x, numpy.int64(n), out))
        return out

    def sgd_update(self, param, grad, lr, guard=None):
        if guard is None:
            guard = self._finite_pair(param.dtype)
        n = param.size
        self.kernel("sgd_update", param.dtype)(
            self._grid(n), (_THREADS,), (param, grad, param.dtype.type(lr), numpy.int64(n), guard)
        )
        return param

    def _ones_row(self, length, dtype):
        key = ("ones", length, numpy.dtype(dtype).name)
        ones = self._constants.get(key)
        if ones is None:
            ones = self._constants[key] = self.xp.ones((1, length), dtype=dtype)
        return ones

    def _finite_pair(self, dtype):
        key = ("zeros", numpy.dtype(dtype).name)
        zeros = self._constants.get(key)
        if zeros is None:
            zeros = self._constants[key] = self.xp.zeros(2, dtype=dtype)
        return zeros

    # ------------------------------------------------------------------ CUDA graphs
    def run_recorded(self, step, recordings, arrays, scalars):
        """Record ``step`` into a CUDA graph at its second call with ``key``, replay it after.

        A step is a dozen or more launches whose Python and launch overhead dominates at small
        sizes; a graph replays them all in one launch. The first call runs eagerly, so kernels
        are compiled and cuBLAS is initialised outside the capture. Anything that cannot be
        captured falls back to running eagerly for that key, so a graph is only ever a speed-up.
        """
        key = (*scalars, *(a.data.ptr for a in arrays))
        entry = recordings.get(key)
        stream = self.xp.cuda.get_current_stream()
        if entry is None:
            if len(recordings) >= 16:  # inputs at ever new addresses: stop recording them
                recordings.clear()
            recordings[key] = "seen"
            step()
        elif entry == "seen":
            graph = self._capture(step)
            recordings[key] = graph if graph is not None else "eager"
            if graph is None:
                step()
            else:
                graph.launch(stream=stream)
        elif entry == "eager":
            step()
        else:
            entry.launch(stream=stream)

    def _capture(self, step):
        capture_stream = self._capture_stream
        if capture_stream is None:
            capture_stream = self._capture_stream = self.xp.cuda.Stream(non_blocking=True)
        try:
            with capture_stream:
                capture_stream.begin_capture()
                try:
                    step()
                finally:
                    graph = capture_stream.end_capture()
            return graph
        except Exception as exc:  # kept for `gpubackprop info`-style reports and the tests
            self.capture_error = f"{type(exc).__name__}: {exc}"
            return None
