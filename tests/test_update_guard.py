"""The guard covers the update itself: a step whose update would make any parameter NaN/Inf is
refused (NonFiniteLossError, where == "update") and every parameter stays bit-identical, on every
backend; a learning rate that rounds to 0 or Inf in the network's dtype is refused up front."""
import math

import numpy
import pytest

import gpubackprop as gb

SIZES = [3, 4, 2]


def batch(rows=6, seed=0):
    """Targets far from the initial outputs: gradients of a few units, so lr·grad overflows for lr
    near the dtype's largest number."""
    rng = numpy.random.default_rng(seed)
    return rng.normal(size=(rows, SIZES[0])), rng.uniform(50, 100, size=(rows, SIZES[-1]))


def param_bytes(net):
    return [array.tobytes() for pair in net.get_params() for array in pair]


@pytest.mark.parametrize("dtype, lr", [("float32", 3e38), ("float64", 1e308)])
def test_overflowing_update_is_refused_and_changes_nothing(backend, dtype, lr):
    net = gb.MLP(SIZES, dtype=dtype, backend=backend, seed=3)
    X, Y = batch()
    loss, grads = net.loss_and_grads(X, Y)  # finite loss and gradients: only the update overflows
    assert math.isfinite(loss) and all(numpy.isfinite(g).all() for pair in grads for g in pair)
    before = param_bytes(net)
    with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError) as info:
        net.train_step(X, Y, lr)
    assert info.value.where == "update" and "update overflowed" in str(info.value)
    assert "no parameter was changed" in str(info.value) and math.isfinite(info.value.loss)
    assert param_bytes(net) == before
    # and the network trains on at a sane rate, from exactly where it was
    reference = gb.MLP(SIZES, dtype=dtype, backend=backend, seed=3)
    assert net.train_step(X, Y, 0.1) == reference.train_step(X, Y, 0.1)
    assert param_bytes(net) == param_bytes(reference)


def test_the_refused_update_would_really_have_overflowed():
    # The test above is only worth something if the unguarded update does go non-finite.
    net = gb.MLP(SIZES, dtype="float32", backend="numpy", seed=3)
    with numpy.errstate(all="ignore"):
        net.train_step(*batch(), 3e38, check_finite=False)
    assert not all(numpy.isfinite(array).all() for pair in net.get_params() for array in pair)


def test_an_update_that_stays_finite_is_applied_exactly(backend):
    # Large but representable: the guard must not refuse it, and the result is param - lr * grad.
    net = gb.MLP(SIZES, dtype="float64", backend=backend, seed=5)
    X, Y = batch()
    before = net.get_params()
    _, grads = net.loss_and_grads(X, Y)
    net.train_step(X, Y, 0.5)
    for (W0, b0), (gW, gb_), (W1, b1) in zip(before, grads, net.get_params()):
        numpy.testing.assert_array_equal(W1, W0 - 0.5 * gW)
        numpy.testing.assert_array_equal(b1, b0 - 0.5 * gb_)


def test_fit_refuses_an_overflowing_update_too(backend):
    net = gb.MLP(SIZES, dtype="float32", backend=backend, seed=3)
    before = param_bytes(net)
    X, Y = batch(rows=8)
    with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError) as info:
        net.fit(X, Y, epochs=1, batch_size=4, lr=3e38, progress=False)
    assert info.value.where == "update"
    assert param_bytes(net) == before  # the first step already overflows: nothing was applied


@pytest.mark.parametrize("lr", [1e-50, 7e-46, 2.0 ** -150])
def test_lr_that_rounds_to_zero_in_float32_is_refused(lr):
    net = gb.MLP(SIZES, dtype="float32", backend="numpy", seed=0)
    before = param_bytes(net)
    for call in (lambda: net.train_step(*batch(), lr), lambda: net.fit(*batch(), epochs=1, batch_size=2, lr=lr)):
        with pytest.raises(ValueError) as info:
            call()
        assert "rounds to 0" in str(info.value) and "float32" in str(info.value) and repr(lr) in str(info.value)
    assert param_bytes(net) == before


@pytest.mark.parametrize("lr", [2.0 ** -149, 1e-44])  # the smallest float32 denormal and a little above
def test_lr_that_survives_rounding_is_accepted(lr):
    assert numpy.float32(lr) > 0
    assert math.isfinite(gb.MLP(SIZES, dtype="float32", backend="numpy", seed=0).train_step(*batch(), lr))


def test_float64_network_accepts_an_lr_float32_would_round_to_zero():
    assert math.isfinite(gb.MLP(SIZES, dtype="float64", backend="numpy", seed=0).train_step(*batch(), 1e-50))


@pytest.mark.parametrize("lr", [1e39, 3.5e38])
def test_lr_that_rounds_to_inf_in_float32_is_refused(lr):
    net = gb.MLP(SIZES, dtype="float32", backend="numpy", seed=0)
    with pytest.raises(ValueError, match="at most"):
        net.train_step(*batch(), lr)


def test_fit_stopped_by_an_overflowing_update_keeps_the_last_good_step(backend):
    # Outputs start at exactly 0 (last layer zeroed). Batch 1's residuals of 1e-154 give an update
    # of a few units (applied); batch 2's residuals of 1e150 keep the loss finite in float64 but
    # make lr·∂L/∂W overflow: fit stops there, naming the epoch, the batch and the cause, and the
    # parameters are exactly those after batch 1.
    def start():
        net = gb.MLP(SIZES, dtype="float64", backend=backend, seed=8)
        (W1, b1), (W2, _) = net.get_params()
        net.set_params([(W1, b1), (numpy.zeros_like(W2), numpy.zeros(SIZES[-1]))])
        return net

    net, reference = start(), start()
    X = numpy.random.default_rng(1).normal(size=(8, SIZES[0]))
    Y = numpy.full((8, SIZES[-1]), 1e-154)
    Y[4:] = 1e150
    lr = 1e160
    reference.train_step(X[:4], Y[:4], lr)
    assert param_bytes(reference) != param_bytes(net)  # batch 1 really changes something
    with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError) as info:
        net.fit(X, Y, epochs=3, batch_size=4, lr=lr, shuffle=False, progress=False)
    error = info.value
    assert (error.where, error.epoch, error.batch) == ("update", 1, 2) and math.isfinite(error.loss)
    assert "epoch 1, batch 2" in str(error) and "update overflowed" in str(error)
    assert "last good step (batch 1)" in str(error)
    assert param_bytes(net) == param_bytes(reference)
