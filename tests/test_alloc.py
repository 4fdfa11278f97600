"""The NumPy backend's steady state allocates nothing: 100 train_steps after a warm-up step.

tracemalloc sees NumPy's array data (NumPy reports it to tracemalloc). We check both the growth
across the 100 steps (a leak) and the peak above the starting point (a temporary array made and
freed inside a step). The slack allows NumPy's fixed-size iterator buffer (numpy.getbufsize()
elements, used by broadcasting ufuncs whatever the array size) and Python-object noise; the
large networks are sized so that every weight and activation array is bigger than that slack,
so one temporary or leaked copy of any of them fails the test. (Biases are small, but they go
through the same sum_rows / optimizer_step code as the weights.)
"""
import tracemalloc

import numpy
import pytest

import gpubackprop as gb

STEPS = 100
NOISE = 8 * 1024  # Python objects: floats returned, small views, dict entries
# A smaller iterator buffer than NumPy's default (8192 elements) keeps the slack small, so that
# small (fast) networks are still bigger than it.
BUFSIZE = 1024


@pytest.fixture(autouse=True)
def small_numpy_buffer():
    old = numpy.setbufsize(BUFSIZE)
    yield
    numpy.setbufsize(old)


def slack(dtype):
    return 2 * BUFSIZE * numpy.dtype(dtype).itemsize + NOISE


def assert_steps_allocate_nothing(net, X, Y, dtype):
    """STEPS train_steps after the warm-up: no growth (a leak) and no peak (a temporary) above the slack."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(STEPS):
            net.train_step(X, Y, 1e-3)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start <= NOISE, f"memory grew by {end - start} bytes over {STEPS} steps"
    assert peak - start <= slack(dtype), f"a step allocated {peak - start} bytes at its peak"


CASES = [
    # (layer_sizes, batch, hidden, output): every array except biases holds >= 6144 elements,
    # more than the float32 slack (4096 elements' worth) and the float64 one (3072)
    ([64, 96, 96, 64], 96, "sigmoid", "identity"),
    ([64, 96, 64], 96, "relu", "sigmoid"),
    ([64, 96, 64], 96, "tanh", "identity"),
    ([2, 2, 1], 1, "sigmoid", "identity"),  # the lesson's shape: one sample, one output
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes, batch, hidden, output", CASES)
def test_steady_state_train_step_allocates_nothing(sizes, batch, hidden, output, dtype):
    net = gb.MLP(sizes, hidden_activation=hidden, output_activation=output, dtype=dtype,
                 backend="numpy", seed=0)
    rng = numpy.random.default_rng(0)
    X = rng.normal(0.0, 1.0, (batch, sizes[0])).astype(dtype)
    Y = rng.uniform(0.0, 1.0, (batch, sizes[-1])).astype(dtype)
    if sizes[-1] == 1:
        Y = Y[:, 0]  # 1-D targets take the reshape path
    smallest = min(n * m for n, m in zip(sizes[:-1], sizes[1:])) * numpy.dtype(dtype).itemsize
    if batch > 1:
        assert smallest > slack(dtype), "the network is too small for this test to see a leaked weight array"
        assert batch * min(sizes) * numpy.dtype(dtype).itemsize > slack(dtype)

    net.train_step(X, Y, 1e-3)  # warm-up: the workspace for this batch size is allocated here
    assert_steps_allocate_nothing(net, X, Y, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, optimizer, options", [
    ("softmax_cross_entropy", "adam", {"weight_decay": 0.01}),
    ("sigmoid_binary_cross_entropy", "momentum", {"nesterov": True, "weight_decay": 0.01}),
    ("mse", "adam", {}),
])
def test_classification_losses_and_optimizers_allocate_nothing_either(loss, optimizer, options, dtype):
    # Targets as rows (one-hot for softmax): integer labels are turned into rows on the host per call.
    sizes, batch = [64, 96, 64], 96
    net = gb.MLP(sizes, hidden_activation="relu", loss=loss, optimizer=optimizer, dtype=dtype, backend="numpy",
                 seed=0, **options)
    rng = numpy.random.default_rng(0)
    X = rng.normal(0.0, 1.0, (batch, sizes[0])).astype(dtype)
    Y = gb.validation.one_hot(rng.integers(0, sizes[-1], batch), sizes[-1]).astype(dtype)
    net.train_step(X, Y, 1e-3)
    assert_steps_allocate_nothing(net, X, Y, dtype)


def test_the_check_would_see_a_temporary_array():
    # The measurement itself: a step that makes one activation-sized temporary is caught.
    net = gb.MLP([64, 96, 64], dtype="float32", backend="numpy", seed=0)
    X = numpy.ones((96, 64), numpy.float32)
    net.train_step(X, X, 1e-3)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        net.train_step(X, X, 1e-3)
        temporary = X * 2.0  # what a leaky step would do
        del temporary
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start > slack("float32")


def test_buffers_are_kept_for_a_bounded_number_of_batch_sizes():
    # forward/predict on ever new batch sizes must not grow memory without bound.
    from gpubackprop.model.step import MAX_WORKSPACES as _MAX_WORKSPACES

    net = gb.MLP([3, 5, 2], backend="numpy", seed=0)
    for batch in range(1, 3 * _MAX_WORKSPACES):
        net.forward(numpy.ones((batch, 3)))
    assert len(net.steps.workspaces) == _MAX_WORKSPACES
    assert max(net.steps.workspaces) == 3 * _MAX_WORKSPACES - 1  # the newest are kept
