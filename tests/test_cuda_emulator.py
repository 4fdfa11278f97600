"""The CUDA emulator itself (tests/cuda_emulator): that it catches what it promises to catch.

Each test compiles a few lines of CUDA C with the options CupyBackend gives NVRTC and launches them
as CuPy would. Skipped, with the reason, only where there is no C++ compiler.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
import pytest

import cuda_emulator
from cuda_emulator import EmulatorError, Module
from gpubackprop.backends.cupy_backend import _NVRTC_OPTIONS, kernel_source

pytestmark = pytest.mark.requires(cuda_emulator.skip_reason())

OPTIONS = _NVRTC_OPTIONS  # what CupyBackend passes (CuPy then appends -ftz=true)

REDUCE = r"""
#define N 256
extern "C" __global__ void block_sum(const float* x, float* out) {
    __shared__ float partial[N];
    partial[threadIdx.x] = x[blockIdx.x * N + threadIdx.x];
    __syncthreads();
    for (int half = N / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] = partial[threadIdx.x] + partial[threadIdx.x + half];
        BARRIER
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}
"""


def compile_(source, options=OPTIONS):
    return Module(textwrap.dedent(source), options)


@pytest.fixture
def race_check():
    cuda_emulator.SETTINGS.race_check = True
    yield
    cuda_emulator.SETTINGS.race_check = False


def test_a_block_reduction_with_its_barriers_is_exact_in_every_order(race_check):
    kernel = compile_(REDUCE.replace("BARRIER", "__syncthreads();")).get_function("block_sum")
    x = numpy.arange(3 * 256, dtype=numpy.float32)
    out = numpy.zeros(3, numpy.float32)
    kernel((3,), (256,), (x, out))  # race_check: index, reversed and shuffled order give the same bytes
    numpy.testing.assert_array_equal(out, x.reshape(3, 256).sum(axis=1))  # integers: exact in any order


def test_a_missing_barrier_is_a_race_that_shows(race_check):
    kernel = compile_(REDUCE.replace("BARRIER", "")).get_function("block_sum")
    x = numpy.arange(256, dtype=numpy.float32)
    with pytest.raises(EmulatorError, match="a race"):
        kernel((1,), (256,), (x, numpy.zeros(1, numpy.float32)))


def test_a_barrier_inside_a_branch_is_reported_as_divergent():
    kernel = compile_(r"""
        extern "C" __global__ void k(float* x) {
            if (threadIdx.x < 10) { __syncthreads(); }
            x[threadIdx.x] = 1.0f;
        }""").get_function("k")
    with pytest.raises(EmulatorError, match="divergent __syncthreads"):
        kernel((1,), (32,), (numpy.zeros(32, numpy.float32),))


def test_builtins_and_a_grid_stride_loop_that_wraps():
    kernel = compile_(r"""
        extern "C" __global__ void k(long long* who, long long n) {
            for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
                 i += (long long)blockDim.x * gridDim.x)
                who[i] = (long long)blockIdx.x * 1000 + threadIdx.x + 1000000 * (long long)gridDim.x;
        }""").get_function("k")
    n = 3 * 2 * 4 + 5  # three full grids of 2 blocks x 4 threads, then five more elements
    who = numpy.full(n, -1, numpy.int64)
    kernel((2,), (4,), (who, numpy.int64(n)))
    expected = [(i % 8) // 4 * 1000 + i % 4 + 2000000 for i in range(n)]
    assert who.tolist() == expected


def test_shared_memory_starts_as_garbage_in_every_block():
    kernel = compile_(r"""
        extern "C" __global__ void k(float* out) {
            __shared__ float s[4];
            out[blockIdx.x * 4 + threadIdx.x] = s[threadIdx.x];  // read before any write
            s[threadIdx.x] = 1.0f;                              // the next block must not see this
        }""").get_function("k")
    out = numpy.zeros(8, numpy.float32)
    kernel((2,), (4,), (out,))
    assert numpy.isnan(out).all()


@pytest.mark.parametrize("args, message", [
    (lambda x: (x,), "1 arguments for 3 parameters"),
    (lambda x: (x, numpy.int32(4), numpy.float32(2)), r"parameter 1 \(long long\): got a int32 scalar"),
    (lambda x: (x, numpy.int64(4), 2.0), r"parameter 2 \(float\): got a float64 scalar"),
    (lambda x: (x.astype(numpy.float64), numpy.int64(4), numpy.float32(2)), r"parameter 0 \(float \*\): got an array of float64"),
    (lambda x: (x[::2], numpy.int64(2), numpy.float32(2)), "not C-contiguous"),
    (lambda x: (numpy.float32(1), numpy.int64(4), numpy.float32(2)), "expected a device array"),
])
def test_every_argument_is_checked_against_the_compiled_signature(args, message):
    kernel = compile_(r"""
        extern "C" __global__ void scale(float* x, long long n, float factor) {
            for (long long i = threadIdx.x; i < n; i += blockDim.x) x[i] = x[i] * factor;
        }""").get_function("scale")
    assert kernel.signature == [(True, "f", 4), (False, "i", 8), (False, "f", 4)]
    x = numpy.ones(4, numpy.float32)
    with pytest.raises(EmulatorError, match=message):
        kernel((1,), (4,), args(x))
    kernel((1,), (4,), (x, 4, numpy.float32(2)))  # a Python int is passed as int64, as CuPy does
    assert x.tolist() == [2.0] * 4


@pytest.mark.parametrize("feature", ["atomicAdd(x, 1.0f)", "__shfl_down_sync(0xffffffffu, 1.0f, 1)"])
def test_unmodelled_features_fail_the_compile_by_name(feature):
    source = f'extern "C" __global__ void k(float* x) {{ {feature}; }}'
    with pytest.raises(EmulatorError, match=f"{feature.split('(')[0]} is not supported"):
        compile_(source)


@pytest.mark.parametrize("options, message", [(("--fmad=true",), "--fmad=false only"),
                                              (("--fmad=false", "-G"), "no meaning in the CUDA emulator")])
def test_options_it_cannot_honour_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        compile_('extern "C" __global__ void k(float* x) { x[0] = 1.0f; }', options)


def test_ftz_flushes_float32_subnormals_as_cupy_compiles_them():
    # CuPy appends -ftz=true after our options (cupy/cuda/compiler.py): float32 results and inputs
    # below 2^-126 become 0 on the GPU. The emulator honours the flag, so the difference is testable.
    source = 'extern "C" __global__ void k(const float* a, float* out) { out[0] = a[0] * a[1]; }'
    a = numpy.array([2.0**-70, 2.0**-70], numpy.float32)  # 2^-140: a float32 subnormal
    for options, expected in ((OPTIONS, numpy.float32(2.0**-140)), ((*OPTIONS, "-ftz=true"), numpy.float32(0))):
        out = numpy.full(1, numpy.nan, numpy.float32)
        compile_(source, options).get_function("k")((1,), (1,), (a, out))
        assert out[0] == expected and a[0] * a[1] == numpy.float32(2.0**-140)  # NumPy keeps it


def test_every_kernel_of_the_backend_compiles_for_the_emulator():
    for dtype in ("float32", "float64"):
        module = Module(kernel_source(dtype), OPTIONS)
        assert {"sgd_step", "adamw_step", "gather_batch_at", "mse_loss_grad", "bias_sigmoid_forward",
                "accumulate_step"} <= set(module.names)
        for name in module.names:
            module.get_function(name)  # its signature is read back from the compiled code


def _libasan():
    found = subprocess.run([cuda_emulator.compiler(), "-print-file-name=libasan.so"], capture_output=True,
                           text=True).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.requires("no libasan for the host compiler" if _libasan() is None else None)  # (AddressSanitizer mode)
@pytest.mark.parametrize("bound", ["i < n", "i <= n"], ids=["in_bounds", "off_by_one"])
def test_address_sanitizer_mode_catches_a_read_past_the_end(bound, tmp_path):
    script = tmp_path / "asan_run.py"
    script.write_text(textwrap.dedent(f"""
        import numpy, cuda_emulator
        kernel = cuda_emulator.Module('''
            extern "C" __global__ void total(const double* x, long long n, double* out) {{
                double s = 0;
                for (long long i = threadIdx.x; {bound}; i += blockDim.x) s = s + x[i];
                if (threadIdx.x == 0) out[0] = s;
            }}''', ("--std=c++14", "--fmad=false")).get_function("total")
        x = numpy.ones(1000)
        out = numpy.zeros(1)
        kernel((1,), (1,), (x, numpy.int64(1000), out))
        print("total", out[0])
    """))
    env = dict(os.environ, LD_PRELOAD=_libasan(), ASAN_OPTIONS="detect_leaks=0", GPUBACKPROP_EMULATOR_ASAN="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    if bound == "i < n":
        assert done.returncode == 0 and "total 1000.0" in done.stdout, done.stderr[-3000:]
    else:
        assert done.returncode != 0 and "heap-buffer-overflow" in done.stderr, done.stderr[-3000:]


def test_without_a_cpp_compiler_the_emulated_tests_skip_with_the_reason(monkeypatch):
    monkeypatch.setattr(cuda_emulator, "compiler", lambda: None)
    assert "no C++ compiler" in cuda_emulator.skip_reason()
    with pytest.raises(EmulatorError, match="no C\\+\\+ compiler"):
        Module('extern "C" __global__ void k(float* x) { x[0] = 1.0f; }', OPTIONS)
