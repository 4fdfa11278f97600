"""The NumPy backend's planned step (backends/numpy_plan.py) computes what the step made call by
call computes, bit for bit (the same operations in the same order on the same buffers), for every
activation, loss and optimizer, in train_step and fit; the plan follows what it bound (a new
parameter buffer, a new optimizer, new X/Y arrays) and never the learning rate; plain SGD's guard
by a bound refuses exactly the steps that the exact check refuses, leaving every parameter and the
optimizer's state bit-identical."""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends.numpy_backend import NumpyBackend


class CallByCall(NumpyBackend):
    """The NumPy backend with its steps run call by call (Steps.step), unplanned: the reference."""
    plans = False


def pair(sizes, **options):
    """(planned, call-by-call) networks starting from the same parameters."""
    return (gb.MLP(sizes, backend=NumpyBackend(), seed=4, **options),
            gb.MLP(sizes, backend=CallByCall(), seed=4, **options))


def state_bytes(net):
    state = net.get_optimizer_state()
    return [a.tobytes() for W, b in net.get_params() for a in (W, b)] + [state["buffers"].tobytes(), state["step"]]


def data(sizes, rows, loss="mse", seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.normal(size=(rows, sizes[0]))
    if loss == "softmax_cross_entropy":
        return X, rng.integers(0, sizes[-1], rows)
    return X, rng.uniform(0.0, 1.0, size=(rows, sizes[-1]))


def plan_of(net, batch, check_finite=True):
    return net.steps.workspaces[batch].recordings.get(("plan", check_finite))


CONFIGS = [  # (hidden, output, loss, optimizer, dtype)
    ("sigmoid", "identity", "mse", "sgd", "float32"),
    ("sigmoid", "identity", "mse", "sgd", "float64"),
    ("tanh", "sigmoid", "mse", "momentum", "float32"),
    ("relu", "identity", "softmax_cross_entropy", "adam", "float64"),
    ("sigmoid", "identity", "sigmoid_binary_cross_entropy", "adamw", "float32"),
]


@pytest.mark.parametrize("hidden, output, loss, optimizer, dtype", CONFIGS)
def test_planned_steps_equal_the_steps_made_call_by_call(hidden, output, loss, optimizer, dtype):
    sizes = [5, 7, 6, 3]
    planned, reference = pair(sizes, hidden_activation=hidden, output_activation=output, loss=loss,
                              optimizer=optimizer, dtype=dtype)
    X, Y = data(sizes, 12, loss)
    for lr in (0.1, 0.05, 0.2):  # a new lr each step: read at each run, never baked into the plan
        for rows in (12, 4, 1):  # three workspaces, new X/Y views each call
            assert planned.train_step(X[:rows], Y[:rows], lr) == reference.train_step(X[:rows], Y[:rows], lr)
    assert plan_of(planned, 12) is not None and plan_of(reference, 12) is None
    schedule = gb.schedules.StepLR(0.1, step_size=3, gamma=0.5)  # a new lr every 3 steps, one plan
    h1 = planned.fit(X, Y, epochs=3, batch_size=5, lr=schedule, seed=2, progress=False)
    h2 = reference.fit(X, Y, epochs=3, batch_size=5, lr=schedule, seed=2, progress=False)
    assert h1.loss == h2.loss
    assert state_bytes(planned) == state_bytes(reference)


def test_the_plan_is_kept_across_lr_values_and_rebuilt_when_what_it_bound_changes():
    net, reference = pair([3, 4, 2], dtype="float32")
    X, Y = data([3, 4, 2], 6)
    net.train_step(X, Y, 0.1)
    reference.train_step(X, Y, 0.1)
    plan = plan_of(net, 6)
    for lr in numpy.linspace(0.01, 0.5, 20):
        assert net.train_step(X, Y, lr) == reference.train_step(X, Y, lr)
    assert plan_of(net, 6) is plan  # lr lives in Parameters.lrs, read at each run
    for other in (net, reference):  # a new parameter buffer: a new plan on it
        other.set_params([(W * 0.5, b + 0.25) for W, b in other.get_params()])
    assert net.train_step(X, Y, 0.1) == reference.train_step(X, Y, 0.1)
    assert plan_of(net, 6) is not plan and plan_of(net, 6).valid(net.steps.params)
    plan = plan_of(net, 6)
    for other in (net, reference):  # a new optimizer (fresh state): the recordings, plans included, go
        other.optimizer = "momentum"
    assert plan_of(net, 6) is None
    for _ in range(3):
        assert net.train_step(X, Y, 0.1) == reference.train_step(X, Y, 0.1)
    assert state_bytes(net) == state_bytes(reference)
    X2, Y2 = data([3, 4, 2], 6, seed=1)  # other arrays of the same shape: the plan rebinds them
    assert net.train_step(X2, Y2, 0.1) == reference.train_step(X2, Y2, 0.1)
    X2[0, 0] = 7.0  # the same array changed in place: read again (the plan holds the array, not a copy)
    assert net.train_step(X2, Y2, 0.1) == reference.train_step(X2, Y2, 0.1)
    assert state_bytes(net) == state_bytes(reference)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_beyond_the_bound_take_the_exact_check_and_train_on(dtype):
    # ‖θ‖ above half the dtype's largest number: the bound proves nothing, the exact check runs
    # (and finds every candidate finite): the step is taken, as the call-by-call step takes it.
    big = float(numpy.finfo(dtype).max) / 1.5
    planned, reference = pair([3, 4, 2], dtype=dtype)
    for net in (planned, reference):
        net.set_params([(numpy.full_like(W, big) if i == 0 else W, b) for i, (W, b) in enumerate(net.get_params())])
    X, Y = data([3, 4, 2], 6)
    with numpy.errstate(all="ignore"):
        assert planned.train_step(X, Y, 1e-3) == reference.train_step(X, Y, 1e-3)
    assert state_bytes(planned) == state_bytes(reference)
    assert planned.get_optimizer_state()["step"] == 1


@pytest.mark.parametrize("dtype, lr", [("float32", 3e38), ("float64", 1e308)])
def test_a_step_the_bound_cannot_prove_and_the_exact_check_refuses_changes_nothing(dtype, lr):
    planned, reference = pair([3, 4, 2], dtype=dtype)
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), rng.uniform(50, 100, size=(6, 2))
    before = state_bytes(planned)
    for net in (planned, reference):
        with pytest.raises(gb.NonFiniteLossError) as info:
            net.train_step(X, Y, lr)
        assert info.value.where == "update"
    assert state_bytes(planned) == before == state_bytes(reference)
    assert planned.train_step(X, Y, 0.01) == reference.train_step(X, Y, 0.01)  # and it trains on from there
    assert state_bytes(planned) == state_bytes(reference)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_gradient_is_refused_by_the_plan_with_nothing_changed(bad):
    planned, reference = pair([3, 4, 2], dtype="float32", optimizer="adam")
    X, Y = data([3, 4, 2], 6)
    planned.train_step(X, Y, 0.01)
    reference.train_step(X, Y, 0.01)
    X[2, 1] = bad  # sigmoid saturates: the loss can stay finite while a gradient is not
    before = state_bytes(planned)
    for net in (planned, reference):
        with pytest.raises(gb.NonFiniteLossError):
            net.train_step(X, Y, 0.01)
    assert state_bytes(planned) == before == state_bytes(reference)


def test_the_same_arrays_are_checked_again_when_their_layout_changed():
    # train_step skips its input checks for the very arrays of the last call with the same shape,
    # strides and dtype; an array reshaped in place in between is checked again.
    net = gb.MLP([3, 4, 2], backend="numpy", seed=0)
    X, Y = data([3, 4, 2], 6)
    net.train_step(X, Y, 0.1)
    X.shape = (9, 2)
    with pytest.raises(ValueError, match="X must have 3 columns"):
        net.train_step(X, Y, 0.1)
    X.shape = (6, 3)
    Y.shape = (4, 3)
    with pytest.raises(ValueError, match="Y must have 2 columns"):
        net.train_step(X, Y, 0.1)
    Y.shape = (6, 2)
    assert math.isfinite(net.train_step(X, Y, 0.1))


def test_the_quiet_error_state_is_the_callers_once_the_step_is_done():
    net = gb.MLP([3, 4, 2], backend="numpy", seed=0)
    X, Y = data([3, 4, 2], 6)
    old = numpy.getbufsize()
    numpy.setbufsize(4096)
    try:
        with numpy.errstate(all="raise"):
            with pytest.raises(gb.NonFiniteLossError):  # overflows inside are NumPy-silent: the guard reports them
                net.train_step(X, Y * 1e30, 3e38)
            assert numpy.geterr() == {"divide": "raise", "over": "raise", "under": "raise", "invalid": "raise"}
            assert numpy.getbufsize() == 4096
    finally:
        numpy.setbufsize(old)


@pytest.mark.parametrize("hidden, output, loss, optimizer, dtype", CONFIGS)
def test_elementwise_runs_in_cache_blocks_give_the_same_bits(monkeypatch, hidden, output, loss, optimizer, dtype):
    """numpy_blocks: the plan's runs of elementwise calls cut into blocks of rows (forced here on
    small arrays: 3-row blocks of a 12-row batch, and a batch of 1) compute what the call-by-call
    step computes, bit for bit, the update included."""
    from gpubackprop.backends import numpy_blocks
    monkeypatch.setattr(numpy_blocks, "MIN_BYTES", 0)
    monkeypatch.setattr(numpy_blocks, "BLOCK_BYTES", 3 * 7 * numpy.dtype(dtype).itemsize)
    sizes = [5, 7, 7, 3]
    planned, reference = pair(sizes, hidden_activation=hidden, output_activation=output, loss=loss,
                              optimizer=optimizer, dtype=dtype)
    X, Y = data(sizes, 12, loss)
    X[0, :2] = (80.0, -800.0)  # saturated units: σ's both branches, exp's underflow, relu's zeros
    for rows in (12, 1, 12):
        assert planned.train_step(X[:rows], Y[:rows], 0.1) == reference.train_step(X[:rows], Y[:rows], 0.1)
    plan = plan_of(planned, 12)
    assert any(isinstance(f, numpy_blocks.BlockedRun) for f, _ in plan.calls)
    assert state_bytes(planned) == state_bytes(reference)
    h1 = planned.fit(X, Y, epochs=2, batch_size=12, lr=0.05, seed=2, progress=False)
    h2 = reference.fit(X, Y, epochs=2, batch_size=12, lr=0.05, seed=2, progress=False)
    assert h1.loss == h2.loss
    assert state_bytes(planned) == state_bytes(reference)


def test_only_row_local_calls_are_cut_into_blocks(monkeypatch):
    """A call reading another row (a GEMM), a call with the batch's placeholder, a call with no
    output array, or operands of other row counts break a run; a broadcast row and scalars do not."""
    from gpubackprop.backends import numpy_blocks as nb
    z, t, g = (numpy.zeros((8, 4)) for _ in range(3))
    row, one = numpy.ones((1, 4)), numpy.array(1.0)
    assert nb._row_local(numpy.add, (z, row, z)) == 8
    assert nb._row_local(numpy.exp, (t, t)) == 8
    assert nb._row_local(numpy.add, (z, one, z)) == 8
    assert nb._row_local(numpy.exp, (t,)) is None  # returns its result
    assert nb._row_local(numpy.dot, (z, g.T, t)) is None  # not a ufunc
    assert nb._row_local(numpy.add, (z, numpy.zeros((4, 4)), z)) is None  # other rows (would broadcast)
    assert nb._row_local(numpy.add, (z, object(), z)) is None  # the batch's placeholder
    assert nb._row_local(numpy.add, (z[:, ::2], one, z[:, ::2])) is None  # not contiguous rows
    assert nb._row_local(numpy.matmul, (z, numpy.zeros((4, 4)), t)) is None  # a gufunc reads other rows
    assert nb._row_local(numpy.add, (z, numpy.zeros(4), z)) is None  # a 1-D operand broadcasts along the columns
    assert nb._row_local(numpy.add, (z, numpy.zeros(8), z)) is None  # ... even with as many elements as rows
    monkeypatch.setattr(nb, "MIN_BYTES", 0)
    monkeypatch.setattr(nb, "BLOCK_BYTES", 2 * 4 * 8)  # 2 rows of 4 float64
    out = nb.blocked([(numpy.add, (z, row, z)), (numpy.exp, (z, z)), (numpy.dot, (z, g.T, t)), (numpy.exp, (t, t))])
    assert [f if f is numpy.dot else type(f) for f, _ in out] == [nb.BlockedRun, numpy.dot, nb.BlockedRun]
    assert len(out[0][0].blocked) == 4 * 2  # 4 blocks of 2 rows, 2 calls each
    monkeypatch.setattr(nb, "MIN_BYTES", z.nbytes + 1)  # below the threshold: left as they were
    assert [f for f, _ in nb.blocked([(numpy.exp, (z, z))])] == [numpy.exp]
