"""pytest-benchmark view of the same cases as ``gpubackprop bench`` (``pytest bench/ --benchmark-only``).

The cases come from ``gpubackprop.benchmark``; pytest-benchmark does the timing here (its own
rounds and statistics), so no timing logic is repeated. Sizes: tiny, small, medium by default;
GPUBACKPROP_BENCH_SIZES="tiny;large" (names or 'n0,...,nL@batch') to choose.
"""
import os

import pytest

import gpubackprop as gb
from gpubackprop import benchmark

SIZES = [benchmark.parse_size(s) for s in os.environ.get("GPUBACKPROP_BENCH_SIZES", "tiny;small;medium").replace(";", " ").split()]
BACKENDS = gb.available_backends()
# fit and torch_fit time one epoch per call (Case.steps_per_call steps; see extra_info).
MAKERS = {"gpubackprop": benchmark.make_ours, "fit": benchmark.make_fit, "floor": benchmark.make_floor,
          "torch": benchmark.make_torch, "torch_manual": benchmark.make_torch_manual, "jax_jit": benchmark.make_jax_jit,
          "torch_graphed": benchmark.make_torch_graphed,
          "torch_fit": benchmark.make_torch_fit}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("case_name", list(MAKERS))
@pytest.mark.parametrize("size", SIZES, ids=[s[0] for s in SIZES])
def test_train_step(benchmark_fixture_alias, backend_name, case_name, size):
    name, layer_sizes, batch = size
    backend = gb.get_backend(backend_name)
    case = MAKERS[case_name](backend, layer_sizes, batch, "float32")
    if case.unavailable:
        pytest.skip(f"{case_name}: {case.unavailable}")
    for _ in range(3):  # warm-up: kernel compilation, workspace allocation
        case.step()
    benchmark_fixture_alias.group = f"{name} {layer_sizes} batch {batch} ({backend_name})"
    benchmark_fixture_alias.extra_info["gemm_flops"] = benchmark.gemm_flops(layer_sizes, batch)
    benchmark_fixture_alias.extra_info["steps_per_call"] = case.steps_per_call
    if backend_name == "cupy":  # time whole steps including their one synchronisation
        benchmark_fixture_alias.pedantic(case.step, rounds=20, iterations=5, warmup_rounds=1)
    else:
        benchmark_fixture_alias(case.step)


@pytest.fixture
def benchmark_fixture_alias(benchmark):
    return benchmark
