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

    def sgd_update(self, param, grad, lr):
        n = param.size
        self.kernel("sgd_update", param.dtype)(
            self._grid(n), (_THREADS,), (param, grad, param.dtype.type(lr), numpy.int64(n))
        )
        return param
