"""cuBLAS GEMMs that a CUDA graph can record: a cuBLAS handle of our own, called through ctypes."""
from __future__ import annotations


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

        from cuda import pathfinder

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
