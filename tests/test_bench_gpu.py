"""Steady state on the GPU: a train_step allocates nothing from CuPy's memory pool, and the
benchmark cases run there (kernels compile, CUDA events time, the GEMM floor is cuBLAS)."""
import numpy
import pytest
from conftest import need, skip

import gpubackprop as gb

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("sizes,batch", [([2, 2, 1], 1), ([64, 128, 128, 1], 64)])
def test_cupy_train_step_allocates_nothing_in_steady_state(sizes, batch):
    import cupy

    net = gb.MLP(sizes, backend="cupy", seed=0)
    rng = numpy.random.default_rng(0)
    X = cupy.asarray(rng.standard_normal((batch, sizes[0])), dtype=cupy.float32)
    Y = cupy.asarray(rng.uniform(-1, 1, (batch, sizes[-1])), dtype=cupy.float32)
    for _ in range(5):  # warm-up: kernels compile, the workspace and scratch buffers are made
        net.train_step(X, Y, 1e-3)
    cupy.cuda.get_current_stream().synchronize()
    pool = cupy.get_default_memory_pool()
    before = pool.used_bytes()
    for _ in range(100):
        net.train_step(X, Y, 1e-3)
    cupy.cuda.get_current_stream().synchronize()
    assert pool.used_bytes() == before


def test_benchmark_cases_run_on_cupy():
    from gpubackprop import benchmark

    backend = gb.get_backend("cupy")
    rows = {r.case: r for r in benchmark.bench_size(backend, "tiny", [2, 2, 1], 1, seconds=0.05, with_torch=False)}
    assert rows["gpubackprop"].us_per_step > 0 and rows["floor"].us_per_step > 0
    assert rows["fit"].us_per_step > 0 and rows["fit"].steps_per_call == benchmark.FIT_BATCHES["tiny"]
    kernels = benchmark.bench_kernels(backend, n=1 << 20, seconds=0.05)
    assert all(k["GB/s"] > 0 for k in kernels)


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_torch_graphed_cases_run_and_report_ratios(precision):
    from gpubackprop import benchmark

    torch = need("torch")
    if not torch.cuda.is_available():
        skip("torch has no CUDA device")
    backend = gb.get_backend("cupy")
    rows = {r.case: r for r in benchmark.bench_size(backend, "small", [64, 128, 128, 1], 64, seconds=0.05,
                                                     precision=precision)}
    for case in ("torch", "torch_graphed", "torch_fit", "fit"):
        assert rows[case].us_per_step > 0, (case, rows[case].note)
    assert rows["fit"].x_torch_fit > 0 and rows["gpubackprop"].x_torch_graphed > 0
    assert torch.get_float32_matmul_precision() == "highest"  # tf32 set only while torch ran


def test_fit_allocates_nothing_per_epoch_once_recorded():
    import cupy

    net = gb.MLP([16, 32, 4], backend="cupy", seed=0)
    rng = numpy.random.default_rng(0)
    X = cupy.asarray(rng.normal(size=(40 * 8 + 3, 16)), dtype=cupy.float32)
    Y = cupy.asarray(rng.normal(size=(40 * 8 + 3, 4)), dtype=cupy.float32)
    net.fit(X, Y, epochs=3, batch_size=8, lr=0.01, seed=0, progress=False)  # eager, recorded, replayed
    pool = cupy.get_default_memory_pool()
    cupy.cuda.get_current_stream().synchronize()
    before = pool.used_bytes()
    net.fit(X, Y, epochs=3, batch_size=8, lr=0.01, seed=1, progress=False)
    cupy.cuda.get_current_stream().synchronize()
    assert pool.used_bytes() == before
    assert net.recording == "used"
