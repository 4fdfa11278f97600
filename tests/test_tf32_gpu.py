"""precision="tf32" on CuPy: GEMMs through cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32, eager
and inside recorded CUDA graphs (the ctypes path), differ from FP32 GEMMs by TF32's rounding and
not more; training in TF32 follows FP32's loss.

Marked ``gpu``. TF32 keeps 10 of float32's 23 mantissa bits: each input is off by up to 2⁻¹¹
relative (about 4.9e-4), so a product of K terms with random signs is off by about 1e-3 of its
typical magnitude; FP32 GEMMs agree with a float64 product to about 1e-6.
"""
import numpy
import pytest
from conftest import skip

import gpubackprop as gb

pytestmark = pytest.mark.gpu


def relative_error(got, reference):
    return float(numpy.abs(numpy.asarray(got, numpy.float64) - reference).max() / numpy.abs(reference).max())


def needs_tf32(backend):
    if not backend.tf32:
        skip(f"{backend.describe()} has no TF32 tensor cores (compute capability < 8.0)")


@pytest.mark.parametrize("trans_a, trans_b", [(False, True), (True, False), (False, False)])  # the step's three
def test_tf32_gemm_differs_from_fp32_by_tf32_rounding_and_not_more(trans_a, trans_b):
    import cupy

    backend = gb.get_backend("cupy")
    needs_tf32(backend)
    rng = numpy.random.default_rng(0)
    m, n, k = 512, 384, 1024
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(numpy.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(numpy.float32)
    exact = (a.T if trans_a else a).astype(numpy.float64) @ (b.T if trans_b else b).astype(numpy.float64)
    a_dev, b_dev = cupy.asarray(a), cupy.asarray(b)
    fp32, tf32 = cupy.empty((m, n), numpy.float32), cupy.empty((m, n), numpy.float32)
    with backend.activate():
        backend.matmul(a_dev, b_dev, fp32, trans_a, trans_b)
        backend.matmul(a_dev, b_dev, tf32, trans_a, trans_b, tf32=True)
    fp32_error, tf32_error = relative_error(fp32.get(), exact), relative_error(tf32.get(), exact)
    assert fp32_error < 1e-5, fp32_error
    assert 3e-5 < tf32_error < 3e-3, tf32_error  # TF32's rounding: clearly there, and no more than it


def test_recorded_tf32_step_matches_the_eager_tf32_step():
    """The ctypes path (cublasGemmEx on the recorder's handle, inside a CUDA graph) computes what
    the eager path (CuPy's handle) does, up to the algorithms cuBLAS picks."""
    rng = numpy.random.default_rng(1)
    sizes, batch = [256, 512, 512, 8], 128
    X, Y = rng.standard_normal((batch, sizes[0])), rng.standard_normal((batch, sizes[-1]))
    recorded = gb.MLP(sizes, backend="cupy", precision="tf32", seed=2)
    needs_tf32(recorded.backend)
    fp32 = gb.MLP(sizes, backend="cupy", seed=2)
    losses = {"tf32": [], "fp32": []}
    for _ in range(5):  # 1: eager, 2: recorded and launched, 3-5: replayed
        losses["tf32"].append(recorded.train_step(X, Y, 0.01))
        losses["fp32"].append(fp32.train_step(X, Y, 0.01))
    assert recorded.recording == "used", recorded.recording
    assert losses["tf32"] != losses["fp32"]  # the TF32 path was taken
    numpy.testing.assert_allclose(losses["tf32"], losses["fp32"], rtol=5e-3)
    eager = gb.MLP(sizes, backend="cupy", precision="tf32", seed=2)
    eager.steps.recorder.error = "disabled for this test"  # every step eager: CuPy's handle, cublasGemmEx
    eager_losses = [eager.train_step(X, Y, 0.01) for _ in range(5)]
    numpy.testing.assert_allclose(eager_losses, losses["tf32"], rtol=1e-4)


def test_tf32_training_follows_fp32_within_one_percent_over_300_steps():
    """The issue's accuracy target at a size where a test runs fast: the loss after 300 steps in
    TF32 within 1% of FP32's (README: how the benchmark size is measured)."""
    rng = numpy.random.default_rng(3)
    sizes, batch, n = [256, 256, 256, 1], 256, 256 * 30
    X = rng.standard_normal((n, sizes[0])).astype(numpy.float32)
    Y = numpy.tanh(X[:, :8].sum(axis=1, keepdims=True) / 3)
    runs = {}
    for precision in ("fp32", "tf32"):
        net = gb.MLP(sizes, backend="cupy", precision=precision, seed=4)
        needs_tf32(net.backend)
        runs[precision] = net.fit(X, Y, epochs=10, batch_size=batch, lr=0.05, seed=5, progress=False).loss  # 300 steps
    assert runs["fp32"][-1] < runs["fp32"][0]
    assert abs(runs["tf32"][-1] - runs["fp32"][-1]) <= 0.01 * runs["fp32"][-1], runs
