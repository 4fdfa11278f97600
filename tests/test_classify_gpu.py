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

from device_fixtures import cp, gpu  # noqa: F401 (fixtures)

DTYPES = ("float32", "float64")
RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture
def rng():
    return numpy.random.default_rng(2025)


def run(backend, name, z, y, to_device):
    grad = backend.empty(z.shape, z.dtype)
    loss, correct = backend.empty((), z.dtype), backend.empty((), z.dtype)
    backend.loss_grad(name, to_device(z), to_device(y), grad, loss, correct, {})
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


def optimizer_pass(backend, name, param, grad, state, step, lr, status, *, check, guarded=True, clip=None, **options):
    """One pass of ``backend.optimizer_step`` for the rule ``name`` (lr as the (1,) float64 device array it reads)."""
    lr_array = backend.asarray(numpy.full(1, lr), numpy.float64)
    backend.optimizer_step(gb.Optimizer(name, **options), param, grad, state, step, lr_array, status, check=check,
                           guarded=guarded, clip=clip, scratch={})


RULE_CASES = [("sgd", {"weight_decay": 0.01}), ("momentum", {"nesterov": False}),
              ("momentum", {"nesterov": True, "weight_decay": 0.01}), ("adam", {}), ("adam", {"weight_decay": 0.1}),
              ("adamw", {"weight_decay": 0.1})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, options", RULE_CASES)
@pytest.mark.parametrize("clip", [None, 1.0])
def test_every_rule_kernel_and_its_device_step_count_match_numpy(cp, gpu, cpu, rng, dtype, name, options, clip,
                                                               race_check):
    param, grad, m, v = flat_problem(rng, dtype)
    k = gb.Optimizer(name, **options).state_buffers
    state = numpy.stack([m, v][:k]) if k else numpy.zeros((0, param.size), dtype)
    # status: [loss, Σ g² (the clipping norm's square, as the gradients' check writes it), update check, correct]
    status = numpy.array([0.5, float(numpy.dot(grad.astype(numpy.float64), grad)), 0.0, 0.0], dtype)
    host = [param.copy(), state.copy(), numpy.array([4], numpy.int64), status.copy()]
    dev = [cp.asarray(a) for a in host]
    for _ in range(3):
        for check in (True, False):
            optimizer_pass(cpu, name, host[0], grad, host[1], host[2], 1e-3, host[3], check=check, clip=clip, **options)
            optimizer_pass(gpu, name, dev[0], cp.asarray(grad), dev[1], dev[2], 1e-3, dev[3], check=check, clip=clip,
                           **options)
    assert int(dev[2][0]) == host[2][0] == 7
    assert float(dev[3][2]) == float(host[3][2]) == 0.0  # the check passed, on both
    # --fmad=false: the same roundings elementwise; Adam's pow/sqrt in double may differ by an ulp.
    for h, d in zip(host[:2], dev[:2]):
        numpy.testing.assert_allclose(cp.asnumpy(d), h, rtol=RTOL[dtype] * 10, atol=0)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_guarded_kernels_refuse_and_change_nothing(cp, gpu, rng, name, race_check):
    param, grad, m, v = flat_problem(rng, "float32", 10_000)
    k = gb.Optimizer(name).state_buffers
    state = cp.asarray(numpy.stack([m, v][:k]) if k else numpy.zeros((0, param.size), numpy.float32))
    param, grad = cp.asarray(param), cp.asarray(grad)
    step = cp.asarray(numpy.array([2], numpy.int64))
    before = [a.copy() for a in (param, state, step)]
    status = cp.asarray(numpy.array([1.0, numpy.nan, 0.0, 0.0], numpy.float32))
    optimizer_pass(gpu, name, param, grad, state, step, 0.1, status, check=False)
    for a, b in zip(before, (param, state, step)):
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
