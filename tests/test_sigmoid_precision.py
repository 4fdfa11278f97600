"""The logistic function σ(z) = 1/(1 + e^-z) to the dtype's relative precision, wherever it appears:
the sigmoid activation (forward, and its derivative a(1 − a) read off a), predict_proba and the
sigmoid binary cross-entropy gradient. (1 + tanh(z/2))/2, the form used before, has absolute
precision only: float32 σ(-20) = 0 (true 2.06e-9), float64 σ(-40) = 0 (true 4.25e-18).

The truth: 1/(1 + e^-z) in numpy.longdouble (80-bit extended on x86-64: 11 more bits than float64
and a far wider exponent), rounded once to the dtype. Where the platform's long double is plain
float64 the float64 comparisons lose their margin, so they are skipped there.

The ulp bound: e^-|z| is within ~2.5 ulp in float32 (NumPy's SIMD expf; the C library's exp is
within 1 ulp in float64), then 1 + t and the division each round once (½ ulp each, and t/(1 + t)
carries t's relative error at most once): ≤ 4 ulp float32, ≤ 3 ulp float64. Beyond the dtype's
normal range the result is subnormal, where a ulp is the subnormal spacing, then exactly 0."""
import numpy
import pytest
from conftest import need, skip

import gpubackprop as gb
from gpubackprop.backends.numpy_backend import NumpyBackend

ULPS = {"float32": 4, "float64": 3}
# Where σ(z) (or 1 − σ(z)) is representable, with relative precision expected: z in [-80, 40] (float32),
# [-700, 700] (float64); the grids go beyond, into the subnormals and to exact 0 / 1.
RANGE = {"float32": (-80.0, 40.0), "float64": (-700.0, 700.0)}
WIDE = {"float32": (-120.0, 100.0), "float64": (-760.0, 760.0)}
LIMITS = {"float32": 1e4, "float64": 1e6}  # as tests/test_stability.py: no warning up to these
EXTENDED = numpy.finfo(numpy.longdouble).nmant > numpy.finfo(numpy.float64).nmant


def needs_extended(dtype):
    if dtype == "float64" and not EXTENDED:
        skip("float64 truth needs numpy.longdouble wider than float64 (x86-64 has it; this platform not)")


def grid(dtype, n=200001):
    lo, hi = WIDE[dtype]
    big = LIMITS[dtype]
    z = numpy.concatenate([numpy.linspace(lo, hi, n), [-big, -big / 2, -1e3, 0.0, -0.0, 1e3, big / 2, big]])
    return z.astype(dtype)


def truth(z):
    zl = z.astype(numpy.longdouble)
    with numpy.errstate(over="ignore"):  # e^-z = inf for very negative z: 1/(1 + inf) = 0, the truth there
        return (1 / (1 + numpy.exp(-zl))).astype(z.dtype)


def ulps(value, expected):
    """|value − expected| in units of the last place of expected (the subnormal spacing below the
    normal range; exact 0 is one subnormal away from the smallest one)."""
    return numpy.abs(value.astype(numpy.float64) - expected.astype(numpy.float64)) / numpy.spacing(
        numpy.abs(expected)).astype(numpy.float64)


def identity_layer(dtype, output="sigmoid", loss="mse"):
    """A 1-1 network with W = 1, b = 0: its output pre-activation is the input."""
    net = gb.MLP([1, 1], output_activation=output, loss=loss, dtype=dtype, backend="numpy")
    net.set_params([(numpy.ones((1, 1)), numpy.zeros(1))])
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_activation_is_relatively_precise_over_the_whole_range(dtype):
    needs_extended(dtype)
    z = grid(dtype)
    with numpy.errstate(all="raise"):  # no overflow, underflow or invalid warning reaches the caller
        out = identity_layer(dtype).forward(z.reshape(-1, 1)).ravel()
    assert out.dtype == numpy.dtype(dtype)
    expected = truth(z)
    err = ulps(out, expected)
    assert err.max() <= ULPS[dtype], (z[err.argmax()], out[err.argmax()], expected[err.argmax()])
    lo, hi = RANGE[dtype]
    inside = (z >= lo) & (z <= hi)
    assert (out[inside] > 0).all()  # no rare event rounds to 0 where the dtype can hold its σ
    assert out[z <= -LIMITS[dtype] / 2].max() == 0 and out[z >= LIMITS[dtype] / 2].min() == 1
    assert (out[z == 0] == 0.5).all()  # also at -0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_examples_of_the_issue(dtype):
    z = numpy.array([[-20.0], [-17.0], [-40.0]], dtype)
    with numpy.errstate(all="raise"):
        out = identity_layer(dtype).forward(z).ravel()
    # float32 σ(-20) = 2.06e-9, σ(-17) = 4.14e-8; float64 σ(-40) = 4.25e-18 (all were 0 or 5.96e-8 before)
    numpy.testing.assert_allclose(out, [2.0611536e-09, 4.1399375e-08, 4.2483543e-18], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_matches_scipy_expit(dtype):
    special = need("scipy.special")
    z = grid(dtype, 20001)
    out = identity_layer(dtype).forward(z.reshape(-1, 1)).ravel()
    # expit in the same dtype: each side within a few ulp of the truth, so within their sum of each other;
    # where σ is subnormal expit gives 0 (1/(1 + e^-z) with e^-z = inf): there the truth test above rules.
    expected = special.expit(z)
    assert expected.dtype == numpy.dtype(dtype)
    normal = expected >= numpy.finfo(dtype).tiny
    assert ulps(out[normal], expected[normal]).max() <= 2 * ULPS[dtype]
    assert (out[~normal] < numpy.finfo(dtype).tiny).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_matches_torch_sigmoid(dtype):
    torch = need("torch")
    z = grid(dtype, 20001)
    out = identity_layer(dtype).forward(z.reshape(-1, 1)).ravel()
    expected = torch.sigmoid(torch.from_numpy(z.copy())).numpy()
    normal = expected >= numpy.finfo(dtype).tiny  # torch, like expit, gives 0 where σ is subnormal
    assert ulps(out[normal], expected[normal]).max() <= 2 * ULPS[dtype]
    assert (out[~normal] < numpy.finfo(dtype).tiny).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_derivative_is_relatively_precise_for_rare_events(dtype):
    # σ'(z) = a(1 − a), read off a: relative precision wherever a is small (z < 0).
    needs_extended(dtype)
    lo = RANGE[dtype][0]
    z = numpy.linspace(lo, 0.0, 2001).astype(dtype).reshape(-1, 1)
    backend = NumpyBackend()
    with backend.activate(), numpy.errstate(all="raise", under="ignore"):
        a = backend.bias_activation(z.copy(), numpy.zeros((1, 1), dtype), "sigmoid", {})
        slope = backend.activation_backward(numpy.ones_like(a), a, "sigmoid", numpy.empty_like(a), {})
    zl = z.astype(numpy.longdouble)
    e = numpy.exp(zl)
    expected = (e / (1 + e) ** 2).astype(dtype)
    normal = expected >= numpy.finfo(dtype).tiny
    # a has ≤ ULPS ulp, 1 − a and the product round once each.
    assert ulps(slope[normal], expected[normal]).max() <= ULPS[dtype] + 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_proba_keeps_rare_events_apart(dtype):
    # Logits that separate rare events must give probabilities that do too (ROC AUC from the
    # probabilities = ROC AUC from the logits); (1 + tanh(z/2))/2 tied them all at 0.
    net = gb.MLP([1, 1], loss="sigmoid_binary_cross_entropy", dtype=dtype, backend="numpy")
    net.set_params([(numpy.ones((1, 1)), numpy.zeros(1))])
    lo = -80.0 if dtype == "float32" else -700.0
    logits = numpy.linspace(lo, -15.0, 400).reshape(-1, 1)
    with numpy.errstate(all="raise"):
        proba = net.predict_proba(logits).ravel()
    assert proba.dtype == numpy.dtype(dtype)
    assert (numpy.diff(proba) > 0).all()  # strictly increasing, as the logits are
    needs_extended(dtype)
    assert ulps(proba, truth(logits.astype(dtype).ravel())).max() <= ULPS[dtype]


def test_predict_proba_roc_auc_equals_the_logits_roc_auc():
    metrics = need("sklearn.metrics")
    rng = numpy.random.default_rng(0)
    # A rare-event score: most logits far below 0, positives a little higher on average.
    y = (rng.random(2000) < 0.05).astype(int)
    logits = rng.normal(-22.0, 2.0, 2000) + 2.0 * y
    net = gb.MLP([1, 1], loss="sigmoid_binary_cross_entropy", dtype="float32", backend="numpy")
    net.set_params([(numpy.ones((1, 1)), numpy.zeros(1))])
    proba = net.predict_proba(logits.reshape(-1, 1)).ravel()
    z = net.predict(logits.reshape(-1, 1)).ravel()
    assert metrics.roc_auc_score(y, proba) == metrics.roc_auc_score(y, z)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_gradient_uses_the_precise_sigmoid(dtype):
    # ∂L/∂z = (σ(z) − y)/B: with y = 0 it is σ(z)/B, relatively precise for very negative z.
    needs_extended(dtype)
    net = identity_layer(dtype, output="identity", loss="sigmoid_binary_cross_entropy")
    z = numpy.array([[-20.0], [-17.0], [-40.0], [-90.0], [3.0]], dtype)
    y = numpy.zeros_like(z)
    with numpy.errstate(all="raise"):
        trace = net.trace(z, y)
    grad = trace["layers"][-1]["grad_a"].ravel()
    expected = truth(z.ravel()) / len(z)
    normal = expected >= numpy.finfo(dtype).tiny
    # σ within ULPS ulp; − 0 is exact; / B (B = 5) rounds once more.
    assert ulps(grad[normal], expected[normal]).max() <= ULPS[dtype] + 1
    assert grad[0] > 0 and grad[1] > grad[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_negative_abs_by_the_sign_bit_is_negative_of_abs_bit_for_bit(dtype):
    """The NumPy sigmoid's -|z| (one pass setting the sign bit) has the bits of negative(abs(z)),
    which the kernels compute as -fabs(z): zeros of both signs, subnormals, infinities, NaNs."""
    from gpubackprop.backends.numpy_layers import negative_abs_call
    info = numpy.finfo(dtype)
    z = numpy.concatenate([grid(dtype, 1001), [0.0, -0.0, info.tiny / 4, -info.tiny / 4, info.max, -info.max,
                                               numpy.inf, -numpy.inf, numpy.nan, -numpy.nan]]).astype(dtype)
    out = numpy.empty_like(z)
    f, args = negative_abs_call(z, out)
    f(*args)
    bits = numpy.uint32 if dtype == "float32" else numpy.uint64
    assert numpy.array_equal(out.view(bits), numpy.negative(numpy.abs(z)).view(bits))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_with_sign_for_the_step_on_few_elements_gives_the_same_bits(dtype, monkeypatch):
    """sigmoid_calls on a few elements uses sign(z) where larger arrays use H(z) = [z >= 0]:
    σ comes out bit for bit the same for every number z; a NaN z (either sign) gives NaN both ways
    (its sign bit may differ: not compared)."""
    from gpubackprop.backends import numpy_layers
    info = numpy.finfo(dtype)
    z = numpy.concatenate([grid(dtype, 1001), [0.0, -0.0, info.tiny / 4, -info.tiny / 4, info.max, -info.max,
                                               numpy.inf, -numpy.inf, numpy.nan, -numpy.nan]]).astype(dtype)
    one = numpy.array(1, dtype)
    results = []
    for limit in (0, z.size):  # H(z), then sign(z)
        monkeypatch.setattr(numpy_layers, "SIGN_STEP_MAX", limit)
        calls = numpy_layers.sigmoid_calls(a := z.copy(), numpy.empty_like(z), one)
        assert (calls[2][0] is numpy.sign) == (limit > 0)
        for f, args in calls:
            f(*args)
        results.append(a)
    bits = numpy.uint32 if dtype == "float32" else numpy.uint64
    nan = numpy.isnan(z)
    assert numpy.array_equal(numpy.isnan(results[0]), nan) and numpy.array_equal(numpy.isnan(results[1]), nan)
    assert numpy.array_equal(results[0][~nan].view(bits), results[1][~nan].view(bits))
