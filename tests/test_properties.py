"""Property-based checks with hypothesis: random architectures, batches, seeds and garbage.

Settings are modest (a shared 2-core CI): a few dozen examples per property, no deadline.
"""
import math

import numpy
import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import gpubackprop as gb
from gpubackprop import activations

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes_st = st.lists(st.integers(1, 5), min_size=2, max_size=4)
hidden_st = st.sampled_from(activations.HIDDEN)
output_st = st.sampled_from(activations.OUTPUT)
seed_st = st.integers(0, 2**32 - 1)


def make(sizes, hidden, output, seed, dtype="float64"):
    return gb.MLP(sizes, hidden_activation=hidden, output_activation=output, dtype=dtype,
                  backend="numpy", seed=seed)


def batch(sizes, rows, seed, dtype="float64"):
    rng = numpy.random.default_rng(seed)
    return rng.normal(size=(rows, sizes[0])).astype(dtype), rng.uniform(size=(rows, sizes[-1])).astype(dtype)


@SETTINGS
@given(sizes=sizes_st, hidden=hidden_st, output=output_st, seed=seed_st, rows=st.integers(1, 6))
def test_gradients_match_central_finite_differences(sizes, hidden, output, seed, rows):
    net = make(sizes, hidden, output, seed)
    params = net.get_params()
    rng = numpy.random.default_rng(seed)
    params = [(W, rng.normal(scale=0.3, size=b.shape)) for W, b in params]  # non-zero biases too
    net.set_params(params)
    X, Y = batch(sizes, rows, seed)
    trace = net.trace(X, Y)
    # relu's kink: a finite difference across it measures neither side
    assume(all(numpy.abs(layer["z"]).min() > 1e-3 for layer in trace["layers"][:-1]) or hidden != "relu")
    loss, grads = net.loss_and_grads(X, Y)
    eps = 1e-6
    for layer, (W, b) in enumerate(params):
        for which, array in ((0, W), (1, b)):
            numeric = numpy.empty_like(array)
            for index in numpy.ndindex(array.shape):
                values = []
                for sign in (1, -1):
                    shifted = [(w.copy(), c.copy()) for w, c in params]
                    shifted[layer][which][index] += sign * eps
                    net.set_params(shifted)
                    values.append(net.loss_and_grads(X, Y)[0])
                numeric[index] = (values[0] - values[1]) / (2 * eps)
            numpy.testing.assert_allclose(grads[layer][which], numeric, rtol=1e-5, atol=1e-8)
    net.set_params(params)


def layouts(X):
    """The same values as C order, Fortran order and a strided view of a larger array."""
    big = numpy.zeros((2 * X.shape[0], 3 * X.shape[1]), X.dtype)
    view = big[::2, 1::3]
    view[...] = X
    return [numpy.ascontiguousarray(X), numpy.asfortranarray(X), view, X[::-1][::-1]]


@SETTINGS
@given(sizes=sizes_st, hidden=hidden_st, output=output_st, seed=seed_st, rows=st.integers(1, 6),
       dtype=st.sampled_from(["float32", "float64"]))
def test_results_do_not_depend_on_memory_layout(sizes, hidden, output, seed, rows, dtype):
    X, Y = batch(sizes, rows, seed, dtype)
    results = []
    for X_l, Y_l in zip(layouts(X), layouts(Y)):
        net = make(sizes, hidden, output, seed, dtype)
        out = net.forward(X_l)
        loss, grads = net.loss_and_grads(X_l, Y_l)
        step = net.train_step(X_l, Y_l, 0.1)
        results.append((out.tobytes(), loss, [g.tobytes() for pair in grads for g in pair], step,
                        [p.tobytes() for pair in net.get_params() for p in pair]))
    assert all(r == results[0] for r in results[1:])


@SETTINGS
@given(sizes=sizes_st, hidden=hidden_st, output=output_st, seed=seed_st, rows=st.integers(1, 6))
def test_float32_tracks_float64(sizes, hidden, output, seed, rows):
    net64 = make(sizes, hidden, output, seed, "float64")
    net32 = make(sizes, hidden, output, seed, "float32")
    net32.set_params(net64.get_params())
    X, Y = batch(sizes, rows, seed)
    loss64, grads64 = net64.loss_and_grads(X, Y)
    loss32, grads32 = net32.loss_and_grads(X, Y)
    assert loss32 == pytest.approx(loss64, rel=1e-4, abs=1e-6)
    for g64, g32 in zip((g for pair in grads64 for g in pair), (g for pair in grads32 for g in pair)):
        assert g32.dtype == numpy.float32
        scale = max(1.0, float(numpy.abs(g64).max()))
        numpy.testing.assert_allclose(g32, g64, rtol=0, atol=1e-4 * scale)
    for _ in range(3):
        net64.train_step(X, Y, 0.1)
        net32.train_step(X, Y, 0.1)
    for (W64, b64), (W32, b32) in zip(net64.get_params(), net32.get_params()):
        numpy.testing.assert_allclose(W32, W64, rtol=0, atol=1e-4 * max(1.0, float(numpy.abs(W64).max())))
        numpy.testing.assert_allclose(b32, b64, rtol=0, atol=1e-4 * max(1.0, float(numpy.abs(b64).max())))


@SETTINGS
@given(sizes=sizes_st, hidden=hidden_st, output=output_st, seed=seed_st, rows=st.integers(1, 6),
       dtype=st.sampled_from(["float32", "float64"]))
def test_same_seed_gives_bit_identical_training(sizes, hidden, output, seed, rows, dtype):
    X, Y = batch(sizes, rows, seed, dtype)
    runs = []
    for _ in range(2):
        net = make(sizes, hidden, output, seed, dtype)
        losses = [net.train_step(X, Y, 0.2) for _ in range(3)]
        runs.append((losses, [p.tobytes() for pair in net.get_params() for p in pair]))
    assert runs[0] == runs[1]


# ------------------------------------------------------------------ garbage at the API
GARBAGE_DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "complex64", "object",
                  "U3", "S2", "datetime64[s]", "timedelta64[s]"]


@st.composite
def garbage_arrays(draw):
    dtype = numpy.dtype(draw(st.sampled_from(GARBAGE_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype.kind in "fc":
        elements = st.floats(-10, 10, width=16 if dtype.itemsize == 2 else 32)  # finite: the loss is checked elsewhere
    elif dtype.kind == "O":
        elements = st.one_of(st.none(), st.floats(-10, 10), st.text(max_size=2))
    elif dtype.kind in "Mm":
        elements = st.integers(-10, 10).map(lambda v: numpy.array(v).astype(dtype)[()])
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


# Nearly valid: real arrays of about the right shape, so that the success path is taken often too.
near_valid = st.one_of(
    hnp.arrays(st.sampled_from(["float32", "float64", "int16"]),
               st.tuples(st.integers(0, 3), st.integers(0, 3)), elements=st.integers(-3, 3)),
    hnp.arrays("bool", st.tuples(st.integers(0, 3), st.integers(0, 3))),
    hnp.arrays(st.sampled_from(["float64", "int8"]), st.integers(0, 3), elements=st.integers(-3, 3)),
)

garbage = st.one_of(
    near_valid, near_valid,
    st.none(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.complex_numbers(max_magnitude=5, allow_nan=False), st.text(max_size=3), st.binary(max_size=3),
    st.lists(st.integers(-3, 3), max_size=4),
    st.lists(st.lists(st.floats(-3, 3), min_size=0, max_size=4), max_size=5),  # often ragged
    st.lists(st.one_of(st.none(), st.text(max_size=1), st.floats(-1, 1)), max_size=3),
    st.dictionaries(st.text(max_size=1), st.integers(), max_size=2),
    garbage_arrays(),
)

GARBAGE_SIZES = [2, 3, 1]


def as_reference(value, columns, dtype):
    """How a valid input must have been understood: a (batch, columns) array of dtype."""
    return numpy.asarray(value).astype(dtype).reshape(-1, columns)


@settings(max_examples=50, deadline=None)
@given(X=garbage, Y=garbage, lr=st.one_of(garbage, st.floats(1e-3, 1.0)), dtype=st.sampled_from(["float32", "float64"]))
def test_garbage_gets_a_correct_result_or_value_or_type_error(X, Y, lr, dtype):
    check_result_or_clean_error(X, Y, lr, dtype)


def near_shape(rows, columns):
    """A shape that is usually (rows, columns) or (rows,) and sometimes off by a little."""
    good = [(rows, columns)] * 3 + ([(rows,)] * 2 if columns == 1 else [])
    return st.sampled_from(good + [(rows + 1, columns), (rows, columns + 1), (0, columns), (rows, columns, 1), ()])


@settings(max_examples=50, deadline=None)
@given(data=st.data(), rows=st.integers(1, 4), lr=st.floats(1e-3, 1.0), dtype=st.sampled_from(["float32", "float64"]))
def test_nearly_valid_batches_get_a_correct_result_or_value_or_type_error(data, rows, lr, dtype):
    # Shapes near the valid ones: the success path is taken often here, the garbage test rarely.
    real = st.sampled_from(["float16", "float32", "float64", "int8", "uint8", "int64", "bool", "complex64"])
    X = data.draw(hnp.arrays(real, near_shape(rows, GARBAGE_SIZES[0]), elements=st.booleans()), label="X")
    Y = data.draw(hnp.arrays(real, near_shape(rows, GARBAGE_SIZES[-1]), elements=st.booleans()), label="Y")
    check_result_or_clean_error(X, Y, lr, dtype)


def check_result_or_clean_error(X, Y, lr, dtype):
    net = gb.MLP(GARBAGE_SIZES, dtype=dtype, backend="numpy", seed=0)
    reference = gb.MLP(GARBAGE_SIZES, dtype=dtype, backend="numpy", seed=0)
    before = [p.tobytes() for pair in net.get_params() for p in pair]

    try:
        out = net.forward(X)
    except (ValueError, TypeError):
        out = None
    if out is not None:
        X_ref = as_reference(X, GARBAGE_SIZES[0], dtype)
        assert out.shape == (X_ref.shape[0], GARBAGE_SIZES[-1]) and out.dtype == dtype
        assert out.tobytes() == reference.forward(X_ref).tobytes()

    try:
        loss = net.train_step(X, Y, lr)
    except (ValueError, TypeError):
        assert [p.tobytes() for pair in net.get_params() for p in pair] == before
        return
    X_ref = as_reference(X, GARBAGE_SIZES[0], dtype)
    Y_ref = as_reference(Y, GARBAGE_SIZES[-1], dtype)
    assert isinstance(loss, float) and math.isfinite(loss)
    assert loss == reference.train_step(X_ref, Y_ref, float(lr))
    assert [p.tobytes() for pair in net.get_params() for p in pair] == \
        [p.tobytes() for pair in reference.get_params() for p in pair]
    event("train_step succeeded")


@SETTINGS
@given(params=st.one_of(garbage, st.lists(st.tuples(garbage, garbage), max_size=3)))
def test_garbage_params_get_value_or_type_error_and_change_nothing(params):
    net = gb.MLP(GARBAGE_SIZES, backend="numpy", seed=0)
    before = [p.tobytes() for pair in net.get_params() for p in pair]
    try:
        net.set_params(params)
    except (ValueError, TypeError):
        assert [p.tobytes() for pair in net.get_params() for p in pair] == before
    else:  # only shape-correct real arrays get here
        assert [p.shape for pair in net.get_params() for p in pair] == [(3, 2), (3,), (1, 3), (1,)]
