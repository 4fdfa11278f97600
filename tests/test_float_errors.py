"""NumPy floating-point signals and the library: underflow (harmless: a result too small for the
dtype becomes a denormal or 0) never raises, even under numpy.errstate(all="raise"); the training
step reports overflow and invalid values through its own checks (NonFiniteLossError), never as a
NumPy warning; outside the step the caller's errstate for overflow and invalid still holds; and
the caller's errstate is left as it was."""
import contextlib
import warnings

import numpy
import pytest

import gpubackprop as gb


def deep_saturating_net(z, depth, dtype="float32"):
    """[1, 1 × depth, 1], sigmoid everywhere, parameters such that every pre-activation is about z
    (for an input of 1): σ' ≈ 1e-7 per layer, so the gradients of the first layers underflow."""
    net = gb.MLP([1] + [1] * depth + [1], hidden_activation="sigmoid", output_activation="sigmoid",
                 dtype=dtype, backend="numpy")
    net.set_params([(numpy.full((1, 1), z), numpy.zeros(1))]
                   + [(numpy.ones((1, 1)), numpy.full(1, z - 1.0))] * depth)
    return net


def every_public_call(net, X, Y):
    net.forward(X)
    net.predict(X)
    net.evaluate(X, Y)
    net.loss_and_grads(X, Y)
    net.trace(X, Y)
    net.train_step(X, Y, 0.1)
    net.fit(X, Y, epochs=2, batch_size=2, lr=0.1, progress=False)


# z = 17 is not among the positive ones: float32 σ(17) = 1/(1 + 4.1e-8) rounds to 1 (a half ulp of 1 is
# 6e-8), so σ' = a(1 − a) is exactly 0 there and nothing is left to underflow.
@pytest.mark.parametrize("z", [15.0, 16.0, 16.5, -15.0, -16.0, -17.0])
@pytest.mark.parametrize("depth", [5, 8])
def test_deep_sigmoid_float32_underflow_raises_nothing(z, depth, monkeypatch):
    X = numpy.ones((4, 1), numpy.float32)
    Y = numpy.zeros((4, 1)) if z > 0 else numpy.ones((4, 1))
    net = deep_saturating_net(z, depth)
    with numpy.errstate(all="raise"):
        every_public_call(net, X, Y)
    assert all(numpy.isfinite(a).all() for pair in net.get_params() for a in pair)
    # The case is real: without the library's own errstate, the same step raises on underflow.
    monkeypatch.setattr(net.backend, "activate", lambda quiet=False: contextlib.nullcontext())
    with numpy.errstate(all="raise"), pytest.raises(FloatingPointError, match="underflow"):
        deep_saturating_net(z, depth).train_step(X, Y, 0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tiny_residuals_raise_nothing(dtype):
    net = gb.MLP([2, 3, 1], dtype=dtype, backend="numpy", seed=0)
    X = numpy.random.default_rng(0).normal(size=(8, 2)).astype(dtype)
    tiny = numpy.finfo(dtype).tiny  # the smallest normal number: (ŷ − y)² and (ŷ − y)/B underflow
    Y = net.predict(X).astype(numpy.float64) + tiny
    with numpy.errstate(all="raise"):
        every_public_call(net, X, Y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_denormal_inputs_raise_nothing(dtype):
    net = gb.MLP([2, 3, 1], dtype=dtype, backend="numpy", seed=0)
    denormal = numpy.finfo(dtype).smallest_subnormal * 3
    X = numpy.full((8, 2), denormal, dtype)
    with numpy.errstate(all="raise"):
        every_public_call(net, X, numpy.zeros((8, 1)))


def test_overflow_in_the_step_is_a_non_finite_loss_error_under_errstate_raise():
    net = gb.MLP([3, 4, 1], backend="numpy", seed=0, hidden_activation="relu")
    before = [a.tobytes() for pair in net.get_params() for a in pair]
    X = numpy.full((4, 3), 1e30)
    with numpy.errstate(all="raise"), pytest.raises(gb.NonFiniteLossError):
        net.train_step(X, numpy.zeros((4, 1)), 0.1)
    with numpy.errstate(all="raise"), pytest.raises(gb.NonFiniteLossError):
        net.fit(X, numpy.zeros((4, 1)), epochs=1, batch_size=2, lr=0.1, progress=False)
    assert [a.tobytes() for pair in net.get_params() for a in pair] == before


def test_overflow_outside_the_step_follows_the_callers_errstate():
    # forward is not guarded: the caller's errstate for overflow still holds there.
    net = gb.MLP([1, 1], backend="numpy", output_activation="identity")
    net.set_params([(numpy.full((1, 1), 1e30), numpy.zeros(1))])
    X = numpy.full((1, 1), 1e30)
    with numpy.errstate(all="raise"), pytest.raises(FloatingPointError, match="overflow"):
        net.forward(X)
    with numpy.errstate(over="ignore"):
        assert numpy.isinf(net.forward(X)).all()


def test_a_diverging_fit_gives_its_error_and_no_numpy_warning():
    rng = numpy.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(256, 2))
    Y = numpy.sin(X[:, :1])
    net = gb.MLP([2, 16, 1], backend="numpy", seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(gb.NonFiniteLossError):
            net.fit(X, Y, epochs=50, batch_size=8, lr=50.0, progress=False)
        with pytest.raises(gb.NonFiniteLossError):
            gb.MLP([2, 16, 1], backend="numpy", seed=0).train_step(X * 1e200, Y, 50.0)
    assert [str(w.message) for w in caught] == []


def test_the_callers_errstate_is_left_as_it_was():
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    X, Y = numpy.ones((4, 2)), numpy.zeros((4, 1))
    with numpy.errstate(all="raise", under="warn"):
        before = numpy.geterr()
        net.train_step(X, Y, 0.1)
        net.fit(X, Y, progress=False)
        net.forward(X)
        assert numpy.geterr() == before
