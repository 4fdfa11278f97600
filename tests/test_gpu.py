"""The CuPy backend against the NumPy backend: every kernel, cuBLAS GEMMs, the lesson, a training step.

One body, two devices (the ``device`` fixture of conftest): every test runs on the CUDA emulator
(tests/cuda_emulator: the kernels compiled for the CPU, the real CupyBackend launching them, its cuBLAS
calls done by NumPy through the same column-major arguments) on every machine, and again on a real
CUDA device where there is one (that parameter is marked ``gpu``). Only what needs the hardware itself
(the device's name in the selection) is GPU-only. On the emulator, the kernel tests also run every
launch in three orders of threads (``race_check``).

Tolerances: float64 1e-12 relative, float32 1e-5 relative. The elementwise kernels do the same
IEEE operations in the same order as NumPy (--fmad=false); what differs is tanh's last bit
(CUDA's libdevice vs the C library) and, in GEMMs and reductions, the summation order. Where a
result can cancel to ~0 (GEMMs, gradients), errors are measured against the size of the terms
(|A||B|, or the largest entry) because an elementwise relative error means nothing there.
"""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import activations
from gpubackprop import lesson
from gpubackprop.backends import ENV_VAR



from device_fixtures import cp, gpu  # noqa: F401 (fixtures)

DTYPES = ("float32", "float64")
RTOL = {"float32": 1e-5, "float64": 1e-12}
# Absolute floor for values near 0 (tanh, GEMM entries that cancel): a few units in the last place of 1.
ATOL = {"float32": 1e-6, "float64": 1e-14}


@pytest.fixture
def rng():
    return numpy.random.default_rng(2024)


def several_grids_shape(cp, cols=257):
    """(rows, cols) with more than 4.5 full grids of elements (and > 300k), so every thread strides,
    through the backward kernels' four-at-a-time loop and then their one-at-a-time tail.

    CupyBackend caps a grid at one full load of resident threads: SMs x 2048 (8 blocks of 256).
    """
    attributes = cp.cuda.Device().attributes
    threads_per_grid = attributes["MultiProcessorCount"] * attributes["MaxThreadsPerMultiProcessor"]
    n = max(int(4.5 * threads_per_grid), 300_001)
    rows = n // cols + 1
    assert rows * cols > 4 * threads_per_grid and (rows * cols) % threads_per_grid
    return rows, cols


def assert_close_normwise(actual, expected, rtol, what=""):
    """max |actual - expected| <= rtol * max |expected| (for results that may cancel to ~0)."""
    actual, expected = numpy.asarray(actual, numpy.float64), numpy.asarray(expected, numpy.float64)
    assert actual.shape == expected.shape, what
    scale = max(numpy.abs(expected).max(), numpy.finfo(numpy.float64).tiny)
    error = numpy.abs(actual - expected).max()
    assert error <= rtol * scale, f"{what}: max error {error:.3g} > {rtol:g} * {scale:.3g}"


# ---------------------------------------------------------------------- selection on a GPU machine
@pytest.mark.gpu
def test_cupy_is_selected_and_described(monkeypatch):
    from gpubackprop.backends import CupyBackend, describe

    monkeypatch.delenv(ENV_VAR, raising=False)
    real = gb.get_backend("cupy")
    assert gb.available_backends() == ["numpy", *(f"cupy:{i}" for i in range(CupyBackend.device_count()))]
    assert "cupy:0" in gb.available_backends()
    assert gb.get_backend() is real and gb.get_backend("auto") is real and gb.get_backend("cupy:0") is real
    assert real.name == "cupy" and real.spec == "cupy:0"
    name = real.device_name()
    assert isinstance(name, str) and name
    assert describe(real) == f"cupy:0 ({name})"


def test_kernels_are_compiled_once_per_dtype(gpu):
    for dtype in DTYPES:
        assert gpu.kernel("sgd_step", dtype) is gpu.kernel("sgd_step", numpy.dtype(dtype))
    assert gpu.kernel("sgd_step", "float32") is not gpu.kernel("sgd_step", "float64")


# ---------------------------------------------------------------------- kernels vs NumPy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", activations.NAMES)
def test_bias_activation_kernel(cp, gpu, cpu, rng, dtype, activation, race_check):
    rows, cols = several_grids_shape(cp)
    z = rng.normal(0.0, 3.0, (rows, cols)).astype(dtype)
    # Saturated entries: sigmoid and tanh must give 0/±1 there, with no inf or NaN on the way.
    z.flat[::997] = 1e4
    z.flat[1::997] = -1e4
    bias = rng.normal(0.0, 1.0, cols).astype(dtype)
    expected = cpu.bias_activation(z.copy(), bias, activation)

    z_gpu = cp.asarray(z)
    assert gpu.bias_activation(z_gpu, cp.asarray(bias), activation) is z_gpu  # in place
    result = cp.asnumpy(z_gpu)
    assert result.dtype == numpy.dtype(dtype)
    assert numpy.isfinite(result).all()
    numpy.testing.assert_allclose(result, expected, rtol=RTOL[dtype], atol=ATOL[dtype])
    if activation == "sigmoid":
        assert (result.flat[::997] == 1).all() and (result.flat[1::997] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_kernel_keeps_relative_precision(cp, gpu, cpu, dtype, race_check):
    """σ to the dtype's relative precision for negative z (issue 15, part 5), as the NumPy backend:
    the absolute-precision form (1 + tanh(z/2))/2 gives 0 at z = -20 in float32 and would fail here.
    Down to z = -80 (float32) / -700 (float64) σ stays a normal number, so the device's flush to zero
    of subnormals (CuPy's -ftz=true) does not enter. Bound: e^-|z| within ~2.5 ulp on either side
    (libdevice or the C library against NumPy's SIMD exp), then one rounding each for 1 + t and the
    division: 8 ulp relative between the two backends, with no absolute slack."""
    lo = {"float32": -80.0, "float64": -700.0}[dtype]
    z = numpy.linspace(lo, 0.0, 4099).astype(dtype).reshape(1, -1)
    expected = cpu.bias_activation(z.copy(), numpy.zeros(z.shape[1], dtype), "sigmoid")
    z_gpu = cp.asarray(z)
    gpu.bias_activation(z_gpu, cp.asarray(numpy.zeros(z.shape[1], dtype)), "sigmoid")
    result = cp.asnumpy(z_gpu)
    assert (result > 0).all()
    numpy.testing.assert_allclose(result, expected, rtol=8 * numpy.finfo(dtype).eps, atol=0)


def _stored_activation(rng, activation, shape, dtype):
    """Values an activation can hold: (0, 1) for sigmoid, (-1, 1) for tanh, >= 0 with zeros for relu."""
    z = rng.normal(0.0, 2.0, shape)
    a = {"sigmoid": 1 / (1 + numpy.exp(-z)), "tanh": numpy.tanh(z), "relu": numpy.maximum(z, 0), "identity": z}
    return a[activation].astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "in_place"])
@pytest.mark.parametrize("activation", activations.NAMES)
def test_activation_backward_kernel(cp, gpu, cpu, rng, dtype, activation, in_place, race_check):
    shape = several_grids_shape(cp)
    a = _stored_activation(rng, activation, shape, dtype)
    grad = rng.normal(0.0, 1.0, shape).astype(dtype)
    expected = cpu.activation_backward(grad.copy(), a, activation, numpy.empty_like(grad), {})

    grad_gpu, a_gpu = cp.asarray(grad), cp.asarray(a)
    out_gpu = grad_gpu if in_place else cp.full(shape, float("nan"), dtype=dtype)
    assert gpu.activation_backward(grad_gpu, a_gpu, activation, out_gpu, {}) is out_gpu
    numpy.testing.assert_allclose(cp.asnumpy(out_gpu), expected, rtol=RTOL[dtype], atol=ATOL[dtype])
    numpy.testing.assert_array_equal(cp.asnumpy(a_gpu), a)  # the stored activation is only read
    if not in_place:
        numpy.testing.assert_array_equal(cp.asnumpy(grad_gpu), grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(50_021, 7), (1, 1), (3, 1)])
def test_mse_loss_grad_kernel(cp, gpu, cpu, rng, dtype, shape, race_check):
    yhat = rng.normal(0.0, 1.0, shape).astype(dtype)
    y = rng.normal(0.0, 1.0, shape).astype(dtype)
    expected_grad = numpy.empty_like(yhat)
    cpu.loss_grad("mse", yhat, y, expected_grad, numpy.empty((), dtype), numpy.empty((), dtype), {})
    exact_loss = 0.5 * numpy.sum((yhat.astype(numpy.float64) - y) ** 2) / shape[0]

    grad_gpu = cp.full(shape, float("nan"), dtype=dtype)
    loss_gpu = cp.empty((), dtype=dtype)
    gpu.loss_grad("mse", cp.asarray(yhat), cp.asarray(y), grad_gpu, loss_gpu, cp.empty((), dtype=dtype), {})
    numpy.testing.assert_allclose(cp.asnumpy(grad_gpu), expected_grad, rtol=RTOL[dtype], atol=0)
    # One block of 256 threads sums n/256 positive terms each, then a tree: the float32 rounding
    # bound is about (n/256 + 8) * 2^-24 ~ 8e-5 for n = 350k, hence 1e-4 there (float64: 1e-12).
    loss_rtol = 1e-4 if dtype == "float32" else RTOL[dtype]
    assert float(loss_gpu) == pytest.approx(exact_loss, rel=loss_rtol)


def sgd_pass(backend, param, grad, lr, status, check, guarded=True):
    """One pass of plain SGD through ``backend.optimizer_step`` (lr as the (1,) float64 array it reads)."""
    lr_array = backend.asarray(numpy.full(1, lr), numpy.float64)
    state = backend.empty((0, param.size), param.dtype)
    step = backend.asarray(numpy.zeros(1, numpy.int64), numpy.int64)
    backend.optimizer_step(gb.Optimizer("sgd"), param.reshape(-1), grad.reshape(-1), state, step, lr_array, status,
                           check=check, guarded=guarded, scratch={})


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_kernel(cp, gpu, cpu, rng, dtype, race_check):
    shape = several_grids_shape(cp)
    param = rng.normal(0.0, 1.0, shape).astype(dtype)
    grad = rng.normal(0.0, 1.0, shape).astype(dtype)
    expected = param.copy()
    sgd_pass(cpu, expected, grad, 0.37, numpy.zeros(4, dtype), check=False, guarded=False)

    param_gpu, grad_gpu = cp.asarray(param), cp.asarray(grad)
    sgd_pass(gpu, param_gpu, grad_gpu, 0.37, cp.asarray(numpy.zeros(4, dtype)), check=False, guarded=False)
    numpy.testing.assert_allclose(cp.asnumpy(param_gpu), expected, rtol=RTOL[dtype], atol=ATOL[dtype])
    numpy.testing.assert_array_equal(cp.asnumpy(grad_gpu), grad)  # the gradient is left as it was


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["finite", "overflowing_update", "bad_loss_slot"])
def test_guarded_sgd_update_kernels_match_numpy(cp, gpu, cpu, rng, dtype, case, race_check):
    # The check pass writes the status's update-check slot (0 or NaN) as NumPy's mirror does, and
    # the update pass applies the step, bit for bit as NumPy, or changes nothing at all.
    shape = several_grids_shape(cp)
    param = rng.normal(0.0, 1.0, shape).astype(dtype)
    grad = rng.normal(0.0, 1.0, shape).astype(dtype)
    lr = 0.37
    status = numpy.zeros(4, dtype)
    if case == "overflowing_update":
        grad.reshape(-1)[-1] = numpy.finfo(dtype).max  # one element in the last block overflows
        lr = 10.0
    elif case == "bad_loss_slot":
        status[0] = numpy.nan
    expected, expected_status = param.copy(), status.copy()
    with numpy.errstate(all="ignore"):
        sgd_pass(cpu, expected, grad, lr, expected_status, check=True)
        sgd_pass(cpu, expected, grad, lr, expected_status, check=False)
    param_gpu, grad_gpu, status_gpu = cp.asarray(param), cp.asarray(grad), cp.asarray(status)
    sgd_pass(gpu, param_gpu, grad_gpu, lr, status_gpu, check=True)
    sgd_pass(gpu, param_gpu, grad_gpu, lr, status_gpu, check=False)
    got_status = cp.asnumpy(status_gpu)
    assert numpy.isnan(got_status[2]) == numpy.isnan(expected_status[2]) == (case == "overflowing_update")
    if case == "finite":
        numpy.testing.assert_array_equal(cp.asnumpy(param_gpu), expected)  # --fmad=false: same roundings
    else:
        assert cp.asnumpy(param_gpu).tobytes() == param.tobytes() == expected.tobytes()


# (m, n, k): an MLP's shapes, including single rows/columns (arrays both C- and F-contiguous).
# k <= 128 keeps the float32 worst-case bound k * 2^-24 below 1e-5.
GEMM_SHAPES = [(300, 200, 128), (1, 200, 128), (300, 1, 128), (37, 5, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
def test_matmul_with_transpose_flags(cp, gpu, cpu, rng, dtype, trans_a, trans_b, m, n, k):
    a = rng.normal(0.0, 1.0, (k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.normal(0.0, 1.0, (n, k) if trans_b else (k, n)).astype(dtype)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    exact = op_a.astype(numpy.float64) @ op_b.astype(numpy.float64)
    bound = numpy.abs(op_a).astype(numpy.float64) @ numpy.abs(op_b).astype(numpy.float64)

    out_gpu = cp.full((m, n), float("nan"), dtype=dtype)  # NaN: every entry must be written
    assert gpu.matmul(cp.asarray(a), cp.asarray(b), out=out_gpu, trans_a=trans_a, trans_b=trans_b) is out_gpu
    out_cpu = cpu.matmul(a, b, out=numpy.empty((m, n), dtype), trans_a=trans_a, trans_b=trans_b)
    for name, result in (("cupy", cp.asnumpy(out_gpu)), ("numpy", out_cpu)):
        error = numpy.abs(result - exact)
        assert (error <= RTOL[dtype] * bound + numpy.finfo(numpy.float64).tiny).all(), (
            f"{name}: worst error {(error / numpy.maximum(bound, 1e-300)).max():.3g} of |A||B|")


# ---------------------------------------------------------------------- the lesson and training
def test_lesson_on_cupy(gpu, cpu):
    on_gpu, on_cpu = lesson.run(gpu, "float64"), lesson.run(cpu, "float64")
    assert [row[0] for row in on_gpu] == [label for label, _ in lesson.PRINTED]
    for (label, computed, printed), (_, reference, _) in zip(on_gpu, on_cpu):
        assert abs(computed - printed) <= lesson.TOLERANCE, label
        assert computed == pytest.approx(reference, rel=1e-12, abs=1e-15), label


def _networks(hidden, output, dtype, sizes, seed, gpu):
    """The same network (same seed: same host-drawn start) on both backends."""
    kwargs = dict(hidden_activation=hidden, output_activation=output, dtype=dtype, seed=seed)
    return gb.MLP(sizes, backend="numpy", **kwargs), gb.MLP(sizes, backend=gpu, **kwargs)


def _data_away_from_relu_kink(rng, net, batch, dtype):
    """Inputs whose hidden pre-activations all stay clear of 0 (checked in float64 on the host):
    a relu unit sitting on the kink could take different sides on the two backends. The margin,
    1e-5, is above float32 GEMM rounding here (k <= 64: k * 2^-24 ~ 4e-6 of terms of size ~1)."""
    params = [(W.astype(numpy.float64), b.astype(numpy.float64)) for W, b in net.get_params()]
    for _ in range(100):
        X = rng.normal(0.0, 1.0, (batch, net.layer_sizes[0])).astype(dtype)
        a = X.astype(numpy.float64)
        clear = True
        for W, b in params[:-1]:
            z = a @ W.T + b
            clear = clear and numpy.abs(z).min() > 1e-5
            a = numpy.maximum(z, 0)
        if clear:
            return X
    pytest.fail("could not draw inputs away from the relu kink")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", activations.OUTPUT)
@pytest.mark.parametrize("hidden", activations.HIDDEN)
def test_training_step_matches_numpy(cp, gpu, rng, dtype, hidden, output):
    sizes, batch, lr = [32, 64, 48, 8], 128, 0.05
    net_cpu, net_gpu = _networks(hidden, output, dtype, sizes, seed=7, gpu=gpu)
    if hidden == "relu":
        X = _data_away_from_relu_kink(rng, net_cpu, batch, dtype)
    else:
        X = rng.normal(0.0, 1.0, (batch, sizes[0])).astype(dtype)
    Y = rng.uniform(0.0, 1.0, (batch, sizes[-1])).astype(dtype)
    rtol = RTOL[dtype]

    for (W_c, b_c), (W_g, b_g) in zip(net_cpu.get_params(), net_gpu.get_params()):
        numpy.testing.assert_array_equal(W_g, W_c)  # same seed, same start
        numpy.testing.assert_array_equal(b_g, b_c)
    numpy.testing.assert_allclose(cp.asnumpy(net_gpu.forward(X)), net_cpu.forward(X), rtol=rtol, atol=ATOL[dtype])

    loss_c, grads_c = net_cpu.loss_and_grads(X, Y)
    loss_g, grads_g = net_gpu.loss_and_grads(X, Y)
    assert loss_g == pytest.approx(loss_c, rel=rtol)
    for layer, ((dW_c, db_c), (dW_g, db_g)) in enumerate(zip(grads_c, grads_g)):
        assert isinstance(dW_g, numpy.ndarray) and dW_g.dtype == numpy.dtype(dtype)
        assert_close_normwise(dW_g, dW_c, rtol, f"layer {layer} dW")
        assert_close_normwise(db_g, db_c, rtol, f"layer {layer} db")

    # The step itself, from host arrays on one side and device arrays on the other.
    step_c = net_cpu.train_step(X, Y, lr)
    step_g = net_gpu.train_step(cp.asarray(X), cp.asarray(Y), lr)
    assert isinstance(step_g, float)
    assert step_g == pytest.approx(step_c, rel=rtol) and step_c == loss_c
    for layer, ((W_c, b_c), (W_g, b_g)) in enumerate(zip(net_cpu.get_params(), net_gpu.get_params())):
        assert_close_normwise(W_g, W_c, rtol, f"layer {layer} W after the step")
        assert_close_normwise(b_g, b_c, rtol, f"layer {layer} b after the step")
    # And the step did train: the loss went down on both.
    assert net_gpu.loss_and_grads(X, Y)[0] < loss_g
    assert net_cpu.loss_and_grads(X, Y)[0] < loss_c


def test_float32_sigmoid_network_survives_huge_inputs(cp, gpu):
    # |z| up to 1e4 in float32: the forward pass must saturate, not overflow to inf/NaN.
    net = gb.MLP([3, 4, 1], hidden_activation="sigmoid", output_activation="sigmoid", dtype="float32",
                 backend=gpu, seed=0)
    X = numpy.array([[1e4, -1e4, 1e4], [-1e4, 1e4, -1e4]], dtype=numpy.float32)
    yhat = cp.asnumpy(net.forward(X))
    assert numpy.isfinite(yhat).all() and ((yhat >= 0) & (yhat <= 1)).all()
    loss = net.train_step(X, numpy.array([1.0, 0.0], dtype=numpy.float32), 0.1)
    assert math.isfinite(loss)
