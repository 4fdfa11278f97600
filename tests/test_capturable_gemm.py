"""The argument mapping of CupyBackend's capturable GEMM (row-major arrays onto column-major
cuBLAS), checked on the CPU: a stand-in for cublas<t>gemm computes what cuBLAS's specification
says on the raw buffers, and the result must be op(a) @ op(b) for every transpose combination.
The real call runs in the gpu tests (test_graphs_gpu.py)."""
import ctypes
import types

import numpy
import pytest

from gpubackprop.backends.capturable_gemm import CapturableGemm


class DeviceLike:
    """A NumPy array seen the way CapturableGemm sees a CuPy array (shape, flags, dtype, data.ptr)."""

    registry = {}

    def __init__(self, array):
        self.array = numpy.ascontiguousarray(array)
        self.shape, self.flags, self.dtype = self.array.shape, self.array.flags, self.array.dtype
        self.data = types.SimpleNamespace(ptr=self.array.ctypes.data)
        DeviceLike.registry[self.data.ptr] = self.array


def reference_column_major_gemm(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """C (m x n, column-major, leading dimension ldc) = alpha op(A) op(B) + beta C, as cuBLAS
    specifies it (op(A) is m x k, stored k x m when transposed; C is not read when beta is 0)."""
    def column_major(ptr, rows, cols, ld):
        flat = DeviceLike.registry[ptr.value].reshape(-1)
        return numpy.lib.stride_tricks.as_strided(flat, (rows, cols), (flat.itemsize, ld * flat.itemsize))

    opA = column_major(A, k, m, lda).T if transa else column_major(A, m, k, lda)
    opB = column_major(B, n, k, ldb).T if transb else column_major(B, k, n, ldb)
    out = column_major(C, m, n, ldc)
    product = alpha._obj.value * (opA @ opB)
    out[...] = product if beta._obj.value == 0 else product + beta._obj.value * out  # beta = 0: C is not read
    return 0


@pytest.mark.parametrize("dtype, scalar", [("float32", ctypes.c_float), ("float64", ctypes.c_double)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_row_major_product_for_every_transpose(dtype, scalar, trans_a, trans_b):
    rng = numpy.random.default_rng(0)
    m, n, k = 5, 3, 7
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    gemm = object.__new__(CapturableGemm)
    gemm._ctypes, gemm._handle = ctypes, None
    gemm._gemm = {dtype: (reference_column_major_gemm, scalar)}
    out = DeviceLike(numpy.full((m, n), numpy.nan, dtype))
    gemm(DeviceLike(a), DeviceLike(b), out, trans_a, trans_b)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    numpy.testing.assert_allclose(out.array, expected, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_a_bias_gradient_shape_ones_row_times_delta():
    # sum_rows computes (1, B) @ (B, n) into a (1, n) view: the degenerate m = 1 case.
    rng = numpy.random.default_rng(1)
    delta = rng.normal(size=(6, 4))
    gemm = object.__new__(CapturableGemm)
    gemm._ctypes, gemm._handle = ctypes, None
    gemm._gemm = {"float64": (reference_column_major_gemm, ctypes.c_double)}
    out = DeviceLike(numpy.zeros((1, 4)))
    gemm(DeviceLike(numpy.ones((1, 6))), DeviceLike(delta), out, False, False)
    numpy.testing.assert_allclose(out.array[0], delta.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_tf32_goes_through_gemm_ex_with_the_tf32_compute_type(trans_a, trans_b):
    """precision='tf32': cublasGemmEx on float32 data (CUDA_R_32F) with compute type
    CUBLAS_COMPUTE_32F_FAST_TF32 and the default algorithm, the same argument mapping as sgemm."""
    from gpubackprop.backends import capturable_gemm

    seen = []

    def gemm_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
                compute, algo):
        seen.append((Atype, Btype, Ctype, compute, algo))
        return reference_column_major_gemm(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)

    rng = numpy.random.default_rng(2)
    m, n, k = 4, 6, 5
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype("float32")
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype("float32")
    gemm = object.__new__(CapturableGemm)
    gemm._ctypes, gemm._handle = ctypes, None
    gemm._gemm = {}  # sgemm must not be called
    gemm._gemm_ex = gemm_ex
    out = DeviceLike(numpy.full((m, n), numpy.nan, "float32"))
    gemm(DeviceLike(a), DeviceLike(b), out, trans_a, trans_b, tf32=True)
    numpy.testing.assert_allclose(out.array, (a.T if trans_a else a) @ (b.T if trans_b else b), rtol=1e-5)
    assert seen == [(0, 0, 0, 77, -1)]
    assert capturable_gemm.CUBLAS_COMPUTE_32F_FAST_TF32 == 77 and capturable_gemm.CUDA_R_32F == 0


def test_close_destroys_the_handle_once():
    """The recorder calls close() when it is collected (one handle per recording network, none leaked)."""
    gemm = object.__new__(CapturableGemm)
    destroyed = []
    gemm._handle, gemm._destroy = ctypes.c_void_p(1234), lambda handle: destroyed.append(handle.value)
    gemm.close()
    gemm.close()
    assert destroyed == [1234]


def test_without_cuda_pathfinder_the_message_says_which_cupy_recording_needs(monkeypatch):
    import sys

    package = types.ModuleType("cuda")
    package.__path__ = []  # a cuda package without pathfinder, as under CuPy 13
    monkeypatch.setitem(sys.modules, "cuda", package)
    monkeypatch.delitem(sys.modules, "cuda.pathfinder", raising=False)
    cupy = types.SimpleNamespace(__version__="13.6.0")
    with pytest.raises(ImportError, match=r"needs cuda.pathfinder, which CuPy >= 14 brings \(this is CuPy 13.6.0\)"):
        CapturableGemm(cupy, stream=None)
