"""Steady state on the GPU: a train_step allocates nothing from CuPy's memory pool, and the
benchmark cases run there (kernels compile, CUDA events time, the GEMM floor is cuBLAS)."""
import numpy
import pytest

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
    rows = benchmark.bench_size(backend, "tiny", [2, 2, 1], 1, seconds=0.05, with_torch=False)
    ours, floor = rows[0], rows[1]
    assert ours.case == "gpubackprop" and ours.us_per_step > 0
    assert floor.case == "floor" and floor.us_per_step > 0
    kernels = benchmark.bench_kernels(backend, n=1 << 20, seconds=0.05)
    assert all(k["GB/s"] > 0 for k in kernels)
