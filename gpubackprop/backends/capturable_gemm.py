"""cuBLAS GEMMs that a CUDA graph can record: a cuBLAS handle of our own, called through ctypes."""
from __future__ import annotations

# cuBLAS's enum values (cublas_api.h, library_types.h): TF32 tensor-core GEMMs on float32 storage.
CUDA_R_32F = 0
CUBLAS_COMPUTE_32F_FAST_TF32 = 77
CUBLAS_GEMM_DEFAULT = -1


def column_major_arguments(a, b, out, trans_a, trans_b):
    """out = op(a) @ op(b) for C-contiguous (row-major) arrays, as the arguments of a column-major
    cuBLAS GEMM: (transa, transb, m, n, k, A, lda, B, ldb, C, ldc), pointers as ints. cuBLAS
    computes outᵀ = op(b)ᵀ op(a)ᵀ, reading each row-major matrix as its column-major transpose."""
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    if out.shape != (m, n) or not (a.flags.c_contiguous and b.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"cuBLAS GEMM needs C-contiguous operands: {a.shape} x {b.shape} -> {out.shape}")
    return int(trans_b), int(trans_a), n, m, k, b.data.ptr, b.shape[1], a.data.ptr, a.shape[1], out.data.ptr, n


class CapturableGemm:
    """cuBLAS GEMMs that a CUDA graph can record, called through ctypes on a handle of our own.

    CuPy's cuBLAS wrappers refuse to run while a stream is being captured (they re-bind the
    handle's stream on every call and reject a capturing one), although cuBLAS itself supports
    capture when the handle has a fixed workspace. This handle is bound once, outside any
    capture, to the capture stream and to a workspace allocated here, and is used only while its
    recorder captures (in that thread); every other GEMM goes through ``cupy.cublas.gemm``.
    One is made per network (by its recorder, on the network's device), so two networks capturing
    or replaying at the same time never share a handle, a stream or a workspace.
    """

    WORKSPACE_BYTES = 32 << 20  # cuBLAS's own recommendation for Hopper is 32 MiB

    def __init__(self, cupy, stream):
        import ctypes

        try:
            from cuda import pathfinder  # brought by CuPy >= 14 (the cuda12 and cuda13 extras ask for it)
        except ImportError as exc:
            raise ImportError(f"recording a step as a CUDA graph needs cuda.pathfinder, which CuPy >= 14 brings "
                              f"(this is CuPy {getattr(cupy, '__version__', '?')}): pip install 'cupy-cuda12x>=14' "
                              f"or 'cupy-cuda13x>=14' ({exc})") from exc

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
        lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
        lib.cublasGemmEx.restype = i
        self._gemm_ex = lib.cublasGemmEx  # float32 storage on TF32 tensor cores
        handle = vp()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self._handle = handle
        self._destroy = lib.cublasDestroy_v2
        self._check(lib.cublasSetStream_v2(handle, vp(stream.ptr)), "cublasSetStream")
        self._workspace = cupy.empty(self.WORKSPACE_BYTES, dtype=cupy.uint8)
        self._check(lib.cublasSetWorkspace_v2(handle, vp(self._workspace.data.ptr), ctypes.c_size_t(self.WORKSPACE_BYTES)),
                    "cublasSetWorkspace")

    def close(self):
        """Destroy the handle (the recorder calls this when it is collected); idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._destroy(handle)

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def __call__(self, a, b, out, trans_a, trans_b, tf32=False):
        """out = op(a) @ op(b) for C-contiguous arrays (see ``column_major_arguments``); with
        ``tf32`` (float32 only) on TF32 tensor cores, through cublasGemmEx's compute type."""
        transa, transb, m, n, k, A, lda, B, ldb, C, ldc = column_major_arguments(a, b, out, trans_a, trans_b)
        vp, byref = self._ctypes.c_void_p, self._ctypes.byref
        if tf32:
            one, zero = self._ctypes.c_float(1.0), self._ctypes.c_float(0.0)
            self._check(self._gemm_ex(self._handle, transa, transb, m, n, k, byref(one), vp(A), CUDA_R_32F, lda,
                                      vp(B), CUDA_R_32F, ldb, byref(zero), vp(C), CUDA_R_32F, ldc,
                                      CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT), "cublasGemmEx")
            return
        fn, scalar = self._gemm[out.dtype.name]
        one, zero = scalar(1.0), scalar(0.0)
        self._check(fn(self._handle, transa, transb, m, n, k, byref(one), vp(A), lda, vp(B), ldb, byref(zero),
                       vp(C), ldc), "cublasGemm")
