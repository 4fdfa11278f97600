"""Bad inputs at the API boundary: each gets a ValueError/TypeError that names the argument,
what was expected and what came, and no bad call changes any parameter."""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends import NumpyBackend

SIZES = [3, 4, 2]


@pytest.fixture
def net():
    return gb.MLP(SIZES, backend="numpy", seed=7)


def good_batch(rows=5):
    rng = numpy.random.default_rng(0)
    return rng.normal(size=(rows, SIZES[0])), rng.uniform(size=(rows, SIZES[-1]))


def params_snapshot(net):
    return [(W.copy(), b.copy()) for W, b in net.get_params()]


def assert_params_unchanged(net, before):
    for (W0, b0), (W1, b1) in zip(before, net.get_params()):
        # bit for bit: compare the bytes, so that even NaN payloads or -0.0 would count
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()


class FakeGpuArray:
    """Stands for a CuPy array: exposes __cuda_array_interface__ and refuses host conversion."""

    shape = (5, 3)
    dtype = numpy.dtype("float32")

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": "<f4", "data": (0, False), "version": 3}

    def __array__(self, *args, **kwargs):
        raise AssertionError("a GPU array must never be copied to the host silently")


X_OK, Y_OK = good_batch()

# (X, Y, exception, fragments the message must hold)
BAD_BATCHES = [
    (numpy.zeros((5, 3, 1)), Y_OK, ValueError, ["X", "2-D", "(5, 3, 1)"]),
    (numpy.zeros((5, 4)), Y_OK, ValueError, ["X", "3 columns", "(5, 4)"]),
    (numpy.zeros(3), Y_OK, ValueError, ["X", "(3,)", "reshape(1, -1)"]),
    (numpy.float64(1.0), Y_OK, ValueError, ["X", "2-D", "()"]),
    (numpy.zeros((0, 3)), numpy.zeros((0, 2)), ValueError, ["X", "empty", "(0, 3)"]),
    (None, Y_OK, TypeError, ["X", "real numbers", "object"]),
    ("abc", Y_OK, TypeError, ["X", "real numbers", "<U3"]),
    (b"abc", Y_OK, TypeError, ["X", "real numbers"]),
    ({"a": 1}, Y_OK, TypeError, ["X", "real numbers"]),
    (X_OK.astype(complex), Y_OK, TypeError, ["X", "complex"]),
    (X_OK.astype(object), Y_OK, TypeError, ["X", "object"]),
    (numpy.zeros((5, 3), "datetime64[s]"), Y_OK, TypeError, ["X", "datetime64"]),
    ([[1.0, 2.0, 3.0], [1.0, 2.0]], Y_OK[:2], ValueError, ["X", "list", "cannot convert"]),
    (X_OK, numpy.zeros((5, 3)), ValueError, ["Y", "2 columns", "(5, 3)"]),
    (X_OK, numpy.zeros(5), ValueError, ["Y", "2-D", "(5,)"]),
    (X_OK, numpy.zeros((4, 2)), ValueError, ["Y", "4 rows", "X has 5"]),
    (X_OK, Y_OK.astype(complex), TypeError, ["Y", "complex"]),
    (X_OK, None, TypeError, ["Y", "real numbers"]),
    (FakeGpuArray(), Y_OK, TypeError, ["X", "GPU array", "numpy backend", "X.get()"]),
]


@pytest.mark.parametrize("X, Y, error, fragments", BAD_BATCHES)
def test_bad_batch_raises_a_named_error_and_changes_nothing(net, X, Y, error, fragments):
    before = params_snapshot(net)
    with pytest.raises(error) as info:
        net.train_step(X, Y, 0.1)
    for fragment in fragments:
        assert fragment in str(info.value)
    with pytest.raises(error):
        net.loss_and_grads(X, Y)
    assert_params_unchanged(net, before)


@pytest.mark.parametrize("X, Y, error, fragments", [case for case in BAD_BATCHES if "X" in case[3]])
def test_forward_rejects_the_same_bad_inputs(net, X, Y, error, fragments):
    with pytest.raises(error):
        net.forward(X)


def test_one_dimensional_inputs_are_one_feature_per_sample():
    net = gb.MLP([1, 3, 1], backend="numpy", seed=1)
    x = numpy.linspace(-1, 1, 6)
    numpy.testing.assert_array_equal(net.forward(x), net.forward(x.reshape(-1, 1)))
    assert net.loss_and_grads(x, x)[0] == net.loss_and_grads(x.reshape(-1, 1), x.reshape(-1, 1))[0]


@pytest.mark.parametrize("kind", ["int64", "int8", "uint16", "bool", "float16"])
def test_int_bool_and_other_float_inputs_are_cast_to_the_network_dtype(kind):
    raw = numpy.random.default_rng(3).integers(0, 2, size=(6, 3))
    X, Y = raw.astype(kind), raw[:, :2].astype(kind)
    cast = gb.MLP(SIZES, backend="numpy", seed=5)
    reference = gb.MLP(SIZES, backend="numpy", seed=5)
    assert cast.train_step(X, Y, 0.5) == reference.train_step(X.astype("float32"), Y.astype("float32"), 0.5)
    for (W0, b0), (W1, b1) in zip(cast.get_params(), reference.get_params()):
        numpy.testing.assert_array_equal(W0, W1)
        numpy.testing.assert_array_equal(b0, b1)


def test_python_lists_are_accepted(net):
    expected = net.forward(numpy.asarray(X_OK, dtype="float32"))
    numpy.testing.assert_array_equal(net.forward(X_OK.tolist()), expected)


@pytest.mark.parametrize("lr, error", [
    (0, ValueError), (-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
    (1e39, ValueError),  # finite as a Python float, but inf in the float32 network
    ("0.1", TypeError), (None, TypeError), (True, TypeError), ([0.1], TypeError), (0.1 + 0j, TypeError),
    (numpy.array([0.1]), TypeError),
])
def test_bad_learning_rate_raises_and_changes_nothing(net, lr, error):
    before = params_snapshot(net)
    with pytest.raises(error) as info:
        net.train_step(X_OK, Y_OK, lr)
    assert "lr" in str(info.value) and repr(lr)[:10] in str(info.value)
    assert_params_unchanged(net, before)


@pytest.mark.parametrize("lr", [1, numpy.float32(0.25), numpy.int64(1), 1e-30])
def test_learning_rates_of_other_real_types_are_accepted(net, lr):
    assert math.isfinite(net.train_step(X_OK, Y_OK, lr))


@pytest.mark.parametrize("sizes, error, fragment", [
    ([3], ValueError, "at least 2"), ([], ValueError, "at least 2"), ([3, 0], ValueError, "positive"),
    ([3, -2], ValueError, "positive"), ([3, 2.5], TypeError, "ints"), ([3, True], TypeError, "ints"),
    (["3", 2], TypeError, "ints"), ("32", TypeError, "sequence"), (5, TypeError, "sequence"),
    (None, TypeError, "sequence"),
])
def test_bad_layer_sizes(sizes, error, fragment):
    with pytest.raises(error) as info:
        gb.MLP(sizes, backend="numpy")
    assert "layer_sizes" in str(info.value) and fragment in str(info.value)


def test_numpy_integer_layer_sizes_are_accepted():
    assert gb.MLP(numpy.array([3, 2, 1]), backend="numpy").layer_sizes == [3, 2, 1]


@pytest.mark.parametrize("argument, value, valid", [
    ("hidden_activation", "softmax", ["sigmoid", "tanh", "relu"]),
    ("hidden_activation", None, ["sigmoid"]),
    ("hidden_activation", ["relu"], ["sigmoid"]),
    ("output_activation", "relu", ["identity", "sigmoid"]),
    ("dtype", "float16", ["float32", "float64"]),
    ("dtype", "not a dtype", ["float32"]),
])
def test_unknown_activation_or_dtype_lists_the_valid_ones(argument, value, valid):
    with pytest.raises(ValueError) as info:
        gb.MLP([2, 2, 1], backend="numpy", **{argument: value})
    message = str(info.value)
    assert argument in message and repr(value) in message
    for name in valid:
        assert repr(name) in message


def good_params():
    rng = numpy.random.default_rng(1)
    return [(rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)) for n_in, n_out in zip(SIZES[:-1], SIZES[1:])]


@pytest.mark.parametrize("mutate, error, fragment", [
    (lambda p: p[:1], ValueError, "2 (W, b) pairs"),
    (lambda p: p + p[:1], ValueError, "2 (W, b) pairs"),
    (lambda p: [p[0], (p[1][0].T, p[1][1])], ValueError, "params[1] W"),
    (lambda p: [p[0], (p[1][0], p[1][1][:1])], ValueError, "params[1] b"),
    (lambda p: [p[0], (p[1][0].astype(complex), p[1][1])], TypeError, "params[1] W"),
    (lambda p: [p[0], (p[1][0], None)], TypeError, "params[1] b"),
    (lambda p: [p[0], p[1][0]], ValueError, "params[1] W"),  # a (2, 4) W unpacks into two rows
    (lambda p: [p[0], 3.0], TypeError, "params[1] must be a (W, b) pair"),
    (lambda p: [p[0], (FakeGpuArray(), p[1][1])], TypeError, ".get()"),
    (lambda p: None, TypeError, "params"),
    (lambda p: "W", TypeError, "params"),
])
def test_bad_set_params_changes_nothing(net, mutate, error, fragment):
    before = params_snapshot(net)
    with pytest.raises(error) as info:
        net.set_params(mutate(good_params()))
    assert fragment in str(info.value)
    assert_params_unchanged(net, before)


# ------------------------------------------------------------------ nothing lost: non-finite steps
def saturated_net(dtype="float32"):
    """A net whose first layer saturates its sigmoid: an Inf input then gives a finite loss."""
    net = gb.MLP([3, 4, 2], backend="numpy", dtype=dtype, seed=2)
    params = net.get_params()
    params[0] = (numpy.full((4, 3), 50.0), params[0][1])
    net.set_params(params)
    return net


def with_value(array, index, value):
    array = numpy.array(array, dtype=float)
    array[index] = value
    return array


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("where, value", [
    ("X", math.nan), ("X", math.inf), ("X", -math.inf), ("Y", math.nan), ("Y", math.inf), ("Y", -math.inf),
])
def test_non_finite_batch_raises_and_leaves_every_parameter_bit_identical(dtype, where, value):
    net = saturated_net(dtype)
    X, Y = good_batch()
    X, Y = (with_value(X, (2, 1), value), Y) if where == "X" else (X, with_value(Y, (3, 0), value))
    before = params_snapshot(net)
    with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError) as info:
        net.train_step(X, Y, 0.1)
    assert isinstance(info.value, FloatingPointError)
    assert repr(info.value.loss) in str(info.value)
    assert "no parameter was changed" in str(info.value)
    assert_params_unchanged(net, before)
    # the same net then trains on good data
    assert math.isfinite(net.train_step(*good_batch(), 0.1))


def test_inf_input_behind_a_saturated_sigmoid_has_a_finite_loss_but_still_raises():
    # Why the gradients are checked and not only the loss: this case passes a loss-only check.
    net = saturated_net()
    X = with_value(good_batch()[0], (0, 0), math.inf)
    with numpy.errstate(all="ignore"):
        trace = net.trace(X, good_batch()[1])
        assert math.isfinite(trace["loss"])
        with pytest.raises(gb.NonFiniteLossError) as info:
            net.train_step(X, good_batch()[1], 0.1)
    assert math.isfinite(info.value.loss) and info.value.where == "gradients"


def test_diverging_step_raises_before_the_update():
    net = gb.MLP([3, 4, 2], backend="numpy", seed=0, hidden_activation="relu")
    X, Y = good_batch()
    before = params_snapshot(net)
    with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError):
        net.train_step(X * 1e30, Y, 0.1)  # the loss overflows float32
    assert_params_unchanged(net, before)


def test_check_finite_false_skips_the_check_and_lets_nan_in():
    # The documented trade: no check, and a bad batch poisons the parameters.
    net = gb.MLP(SIZES, backend="numpy", seed=1)
    with numpy.errstate(all="ignore"):
        loss = net.train_step(with_value(X_OK, (0, 0), math.nan), Y_OK, 0.1, check_finite=False)
    assert math.isnan(loss)
    assert numpy.isnan(net.get_params()[0][0]).any()


def test_check_finite_false_gives_the_same_step_on_good_data():
    checked, unchecked = gb.MLP(SIZES, backend="numpy", seed=4), gb.MLP(SIZES, backend="numpy", seed=4)
    assert checked.train_step(X_OK, Y_OK, 0.3) == unchecked.train_step(X_OK, Y_OK, 0.3, check_finite=False)
    for (W0, b0), (W1, b1) in zip(checked.get_params(), unchecked.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()


def test_loss_and_grads_of_a_nan_batch_raises(net):
    with pytest.raises(gb.NonFiniteLossError):
        net.loss_and_grads(with_value(X_OK, (0, 0), math.nan), Y_OK)


def test_forward_of_a_nan_input_returns_nan_without_raising(net):
    out = net.forward(with_value(X_OK, (1, 1), math.nan))
    assert numpy.isnan(out[1]).all() and numpy.isfinite(numpy.delete(out, 1, axis=0)).all()


# ------------------------------------------------------------------ batches too large for memory
class FailingBackend(NumpyBackend):
    """A NumPy backend whose allocations fail from ``limit`` rows up, as a full device would."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def empty(self, shape, dtype):
        if shape and shape[0] >= self.limit and len(shape) == 2 and shape[1] == SIZES[0]:
            raise MemoryError(f"Unable to allocate array with shape {shape}")
        return super().empty(shape, dtype)


def test_batch_too_large_names_the_sizes_and_the_net_still_trains():
    net = gb.MLP(SIZES, backend=FailingBackend(1000), seed=3)
    before = params_snapshot(net)
    X = numpy.broadcast_to(numpy.float32(1), (4096, SIZES[0]))  # no memory behind it
    Y = numpy.broadcast_to(numpy.float32(0), (4096, SIZES[-1]))
    with pytest.raises(gb.BatchTooLargeError) as info:
        net.train_step(X, Y, 0.1)
    error = info.value
    assert isinstance(error, MemoryError)
    nbytes = 4 * (4096 * (3 + 2 + 2 * (4 + 2)) + (4 * 4 + 2 * 5) + 5)  # + the 4-slot status, the batch rows
    assert error.batch == 4096 and error.nbytes == nbytes
    assert "4096 rows" in str(error) and str(nbytes) in str(error) and "[3, 4, 2]" in str(error)
    assert_params_unchanged(net, before)
    assert math.isfinite(net.train_step(X[:10], Y[:10], 0.1))  # smaller batches still train
    with pytest.raises(gb.BatchTooLargeError):  # and the failed size was not cached half-built
        net.forward(X)
