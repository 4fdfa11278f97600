"""Numerical stability: no floating-point warning (overflow, underflow, invalid, divide) in the
forward or backward pass for pre-activations up to ±1e4 in float32 and ±1e6 in float64, on every
activation, checked with numpy.errstate(all="raise").

The pre-activation grid spans zero, moderate values and the extremes; magnitudes below about
1e-19 (float32) are outside it on purpose: there tanh' = 1 - a·a underflows a·a, as any product of
two such tiny numbers does (NumPy ignores underflow by default)."""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import activations

LIMITS = {"float32": 1e4, "float64": 1e6}


def pre_activation_grid(dtype):
    big = LIMITS[dtype]
    fixed = [0.0, 1e-3, 0.5, 1.0, 5.0, 20.0, 40.0, 100.0, 1e3, big / 2, big]
    values = numpy.concatenate([fixed, [-v for v in fixed], numpy.linspace(-big, big, 101)])
    return values.reshape(-1, 1).astype(dtype)


def layer_net(sizes, hidden, output, dtype):
    """Every W = 1 and b = 0, so each first-layer pre-activation is the input itself."""
    net = gb.MLP(sizes, hidden_activation=hidden, output_activation=output, dtype=dtype, backend="numpy")
    net.set_params([(numpy.ones((n_out, n_in)), numpy.zeros(n_out)) for n_in, n_out in zip(sizes[:-1], sizes[1:])])
    return net


def run_everything(net, X, Y):
    out = net.forward(X)
    loss, grads = net.loss_and_grads(X, Y)
    step_loss = net.train_step(X, Y, 1e-6)
    return out, loss, grads, step_loss


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden", activations.HIDDEN)
def test_hidden_activation_raises_no_floating_point_warning(dtype, hidden):
    net = layer_net([1, 1, 1], hidden, "identity", dtype)
    X = pre_activation_grid(dtype)
    Y = numpy.full_like(X, 0.5)
    with numpy.errstate(all="raise"):
        out, loss, grads, step_loss = run_everything(net, X, Y)
    assert numpy.isfinite(out).all() and math.isfinite(loss) and math.isfinite(step_loss)
    assert all(numpy.isfinite(g).all() for pair in grads for g in pair)
    if hidden != "relu":  # bounded activations: ŷ = act(x) (W2 = 1, b2 = 0), saturated exactly at the ends
        low, high = (0.0, 1.0) if hidden == "sigmoid" else (-1.0, 1.0)
        assert out.min() == low and out.max() == high


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", activations.OUTPUT)
def test_output_activation_raises_no_floating_point_warning(dtype, output):
    net = layer_net([1, 1], "sigmoid", output, dtype)
    X = pre_activation_grid(dtype)
    Y = numpy.zeros_like(X)
    with numpy.errstate(all="raise"):
        out, loss, grads, step_loss = run_everything(net, X, Y)
    assert numpy.isfinite(out).all() and math.isfinite(loss) and math.isfinite(step_loss)
    assert all(numpy.isfinite(g).all() for pair in grads for g in pair)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_matches_the_textbook_formula_where_that_one_is_safe(dtype):
    # The stable form num / (1 + e^-|z|) is the same function: compare where 1/(1+exp(-z)) cannot overflow
    # (tests/test_sigmoid_precision.py checks its relative precision over the whole range).
    z = numpy.linspace(-30, 30, 121).reshape(-1, 1)
    net = layer_net([1, 1], "sigmoid", "sigmoid", dtype)
    with numpy.errstate(all="raise"):
        out = net.forward(z.astype(dtype))
    tol = 1e-6 if dtype == "float32" else 1e-14
    numpy.testing.assert_allclose(out, 1 / (1 + numpy.exp(-z)), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_deep_saturated_network_raises_no_warning(dtype):
    # Saturation in every layer: σ' is exactly 0 and the gradients below vanish without underflow.
    net = layer_net([1, 3, 3, 3, 1], "sigmoid", "sigmoid", dtype)
    X = pre_activation_grid(dtype)
    with numpy.errstate(all="raise"):
        run_everything(net, X, numpy.full_like(X, 0.25))
