"""The classification losses' and the optimizers' CUDA kernels against the NumPy backend, and Adam
recorded in a CUDA graph. One body, two devices: each test runs on the
CUDA emulator (tests/cuda_emulator, the real CupyBackend over kernels compiled for the CPU) everywhere,
and on a real CUDA device (that parameter marked ``gpu``) where there is one.

Tolerances as tests/test_gpu.py: float64 1e-12, float32 1e-5 relative (exp/log/tanh/pow differ in the
last bit between libdevice and the C library; the per-row sums run in another order than NumPy's
pairwise sums).
"""
import numpy
import pytest

import gpubackprop as gb

@pytest.fixture
def cp(device):
    """The device's array module: CuPy, or the emulator's stand-in for it."""
    return device.xp


@pytest.fixture
def gpu(device):
    return device.backend

DTYPES = ("float32", "float64")
RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture
def rng():
    return numpy.random.default_rng(2025)


def run(backend, name, z, y, to_device):
    grad = backend.empty(z.shape, z.dtype)
    loss, correct = backend.empty((), z.dtype), backend.empty((), z.dtype)
    getattr(backend, f"{name}_loss_grad")(to_device(z), to_device(y), grad, loss, correct, {})
    return float(loss), backend.to_numpy(grad), float(correct)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, classes", [(1, 2), (3000, 10), (70_001, 3), (5, 1000)])
def test_softmax_cross_entropy_kernel(cp, gpu, cpu, rng, dtype, rows, classes, race_check):
    z = rng.normal(0, 5, (rows, classes)).astype(dtype)
    z[0, :2] = (1e4, -1e4) if dtype == "float32" else (1e300, -1e300)  # no overflow at extreme logits
    labels = rng.integers(0, classes, rows)
    for y in (gb.validation.one_hot(labels, classes).astype(dtype), rng.dirichlet(numpy.ones(classes), rows).astype(dtype)):
        loss, grad, correct = run(cpu, "softmax_cross_entropy", z, y, lambda a: a)
        loss_gpu, grad_gpu, correct_gpu = run(gpu, "softmax_cross_entropy", z, y, cp.asarray)
        assert numpy.isfinite(grad_gpu).all() and numpy.isfinite(loss_gpu)
        assert loss_gpu == pytest.approx(loss, rel=RTOL[dtype] * (10 if dtype == "float32" else 1))
        # float32: each row's sum of exponentials runs in another order than NumPy's pairwise sum
        # (up to 1000 terms here): a few units of 2^-24 · √classes, hence 5e-5.
        grad_rtol = 5e-5 if dtype == "float32" else RTOL[dtype]
        numpy.testing.assert_allclose(grad_gpu, grad, rtol=grad_rtol, atol=grad_rtol / rows)
        assert correct_gpu == correct


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (4099, 3), (50_000, 1)])
def test_sigmoid_binary_cross_entropy_kernel(cp, gpu, cpu, rng, dtype, shape, race_check):
    z, y = rng.normal(0, 5, shape).astype(dtype), rng.uniform(0, 1, shape).astype(dtype)
    loss, grad, correct = run(cpu, "sigmoid_binary_cross_entropy", z, y, lambda a: a)
    loss_gpu, grad_gpu, correct_gpu = run(gpu, "sigmoid_binary_cross_entropy", z, y, cp.asarray)
    assert loss_gpu == pytest.approx(loss, rel=1e-4 if dtype == "float32" else RTOL[dtype])
    numpy.testing.assert_allclose(grad_gpu, grad, rtol=RTOL[dtype], atol=RTOL[dtype] / shape[0])
    assert correct_gpu == correct


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_binary_cross_entropy_gradient_keeps_relative_precision(cp, gpu, cpu, dtype, race_check):
    """The gradient (σ(z) − y)/B at y = 0 is σ(z)/B: to relative precision for negative z (issue 15,
    part 5), as NumPy gives it; (1 + tanh(z/2))/2 would give 0 below z ≈ -17 (float32). Normal range
    only (the device flushes float32 subnormals; the 1/B scaling moves the edge up by ln B). Bound: e^-|z| within ~2.5 ulp on either side, one
    rounding each for 1 + t, the division, the subtraction of 0 and the scaling: 8 ulp relative."""
    lo = {"float32": -70.0, "float64": -690.0}[dtype]  # σ(lo)/B still a normal number
    z = numpy.linspace(lo, 0.0, 2051).astype(dtype).reshape(-1, 1)
    y = numpy.zeros_like(z)
    _, grad, _ = run(cpu, "sigmoid_binary_cross_entropy", z, y, lambda a: a)
    _, grad_gpu, _ = run(gpu, "sigmoid_binary_cross_entropy", z, y, cp.asarray)
    assert (grad_gpu > 0).all()
    numpy.testing.assert_allclose(grad_gpu, grad, rtol=8 * numpy.finfo(dtype).eps, atol=0)


def flat_problem(rng, dtype, n=1_000_003):
    return (rng.normal(0, 1, n).astype(dtype), rng.normal(0, 1, n).astype(dtype),
            rng.normal(0, 0.1, n).astype(dtype), rng.uniform(0, 0.1, n).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov, weight_decay", [(False, 0.0), (True, 0.01)])
def test_momentum_kernel(cp, gpu, cpu, rng, dtype, nesterov, weight_decay, race_check):
    param, grad, velocity, _ = flat_problem(rng, dtype)
    p_cpu, b_cpu = param.copy(), velocity.copy()
    cpu.momentum_update(p_cpu, grad, b_cpu, 0.05, 0.9, nesterov, weight_decay, None, {})
    p_gpu, b_gpu = cp.asarray(param), cp.asarray(velocity)
    gpu.momentum_update(p_gpu, cp.asarray(grad), b_gpu, 0.05, 0.9, nesterov, weight_decay, None, {})
    numpy.testing.assert_allclose(cp.asnumpy(p_gpu), p_cpu, rtol=RTOL[dtype], atol=0)
    numpy.testing.assert_allclose(cp.asnumpy(b_gpu), b_cpu, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_kernel_and_its_device_step_count(cp, gpu, cpu, rng, dtype, weight_decay, race_check):
    param, grad, m, v = flat_problem(rng, dtype)
    host = [param.copy(), m.copy(), v.copy(), numpy.array([4], numpy.int64)]
    dev = [cp.asarray(param), cp.asarray(m), cp.asarray(v), cp.asarray(host[3])]
    for _ in range(3):
        cpu.adam_update(host[0], grad, host[1], host[2], host[3], 1e-3, 0.9, 0.999, 1e-8, weight_decay, None, {})
        gpu.adam_update(dev[0], cp.asarray(grad), dev[1], dev[2], dev[3], 1e-3, 0.9, 0.999, 1e-8, weight_decay, None, {})
    assert int(dev[3][0]) == host[3][0] == 7
    for h, d in zip(host[:3], dev[:3]):
        numpy.testing.assert_allclose(cp.asnumpy(d), h, rtol=RTOL[dtype] * 10, atol=0)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_guarded_kernels_refuse_and_change_nothing(cp, gpu, rng, name, race_check):
    param, grad, m, v = (cp.asarray(a) for a in flat_problem(rng, "float32", 10_000))
    step = cp.asarray(numpy.array([2], numpy.int64))
    before = [a.copy() for a in (param, m, v, step)]
    guard = cp.asarray(numpy.array([1.0, numpy.nan], numpy.float32))
    if name == "momentum":
        gpu.momentum_update(param, grad, m, 0.1, 0.9, True, 0.01, guard, {})
    else:
        gpu.adam_update(param, grad, m, v, step, 0.1, 0.9, 0.999, 1e-8, 0.01, guard, {})
    for a, b in zip(before, (param, m, v, step)):
        assert cp.asnumpy(a).tobytes() == cp.asnumpy(b).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_softmax_training_replayed_as_a_graph_matches_numpy(gpu, rng, dtype):
    nets = [gb.MLP([20, 32, 5], loss="softmax_cross_entropy", optimizer="adam", weight_decay=0.01, dtype=dtype,
                   backend=b, seed=1) for b in ("numpy", gpu)]
    X, labels = rng.normal(size=(64, 20)), rng.integers(0, 5, 64)
    Y = gb.validation.one_hot(labels, 5)  # rows: the graph's inputs stay in the workspace buffers
    for step in range(12):
        losses = [net.train_step(X, Y, 1e-2) for net in nets]
        assert losses[1] == pytest.approx(losses[0], rel=1e-4 if dtype == "float32" else 1e-10), step
    assert nets[1].recording == "used"
    assert nets[1].get_optimizer_state()["step"] == nets[0].get_optimizer_state()["step"] == 12
    for (W0, b0), (W1, b1) in zip(nets[0].get_params(), nets[1].get_params()):
        numpy.testing.assert_allclose(W1, W0, rtol=1e-3 if dtype == "float32" else 1e-9, atol=1e-6)
    X_bad = X.copy()
    X_bad[0, 0] = numpy.nan  # a refused step inside the replayed graph leaves t where it was
    with pytest.raises(gb.NonFiniteLossError):
        nets[1].train_step(X_bad, Y, 1e-2)
    assert nets[1].get_optimizer_state()["step"] == 12
